"""What the second stage knows of each candidate: every retriever's score, rank and z-score,
the track's popularity and the ETL's degree / 2-hop features, its album and artist overlap with
the seeds, its similarity to the seeds in each retriever's item space, and the query's seed count
and category. :func:`groups` sorts them into the groups the ablation (bench/rerank_ablation.py)
drops one by one.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from etl import contract
from trainer.evaluation.scoring import Queries, Scorer, in_threads
from trainer.io.catalogue import Catalogue
from trainer.io.graph import node_columns
from trainer.ranker.candidates import Candidates

CATEGORY_CODE = {c.name: i for i, c in enumerate(contract.SEED_CATEGORIES)}
# What the features mean; a ranker built on another version is refused (trainer.io.ranker).
# 2: the GNN's seed cosines leave out the bias its track vectors end in.
# 3: candidates only from the catalogue evaluation ranks (the visible one): before, tracks known
#    only through held-out playlists' hidden edges were candidates, and labels.
VERSION = 3


class TrackFeatures:
    """Per-track columns the features read, indexed by track id."""

    def __init__(self, graph: Catalogue, popularity: np.ndarray):
        t = node_columns(graph.path, "track", ["album_id", "artist_id", "deg_playlist", "hop2_walks", "hop2_reach"])
        albums = node_columns(graph.path, "album", ["deg_track"])["deg_track"]
        artists = node_columns(graph.path, "artist", ["deg_track"])["deg_track"]
        self.album = t["album_id"].astype(np.int64)
        self.artist = t["artist_id"].astype(np.int64)
        self.columns = {
            "popularity": np.log1p(popularity).astype(np.float32),
            "deg_playlist": np.log1p(t["deg_playlist"].astype(np.float64)).astype(np.float32),
            # hop2 columns are null under --hop2 off: NaN, which the booster reads as missing
            "hop2_walks": np.log1p(t["hop2_walks"].astype(np.float64)).astype(np.float32),
            "hop2_reach": np.log1p(t["hop2_reach"].astype(np.float64)).astype(np.float32),
            "album_tracks": np.log1p(albums[self.album].astype(np.float64)).astype(np.float32),
            "artist_tracks": np.log1p(artists[self.artist].astype(np.float64)).astype(np.float32),
        }


class SeedSimilarity:
    """How close a candidate is to the query's seeds, where a retriever's score sums over them:
    the cosine of the track vectors of each retriever that has them (the GNN's embeddings, ALS's
    factors), and the cosine of the training-playlist co-occurrence (item-kNN's track × playlist
    matrix); each as the best seed and the mean over seeds, and the share of seeds that co-occur
    with the candidate at all."""

    def __init__(self, retrievers: dict[str, Scorer]):
        self.vectors: dict[str, torch.Tensor] = {}
        self.by_track: sp.csr_matrix | None = None
        for name, scorer in retrievers.items():
            if isinstance(getattr(scorer, "tracks", None), torch.Tensor):
                vectors = scorer.tracks[:, :-1] if getattr(scorer, "bias_column", False) else scorer.tracks
                self.vectors[name] = torch.nn.functional.normalize(vectors.detach().float().cpu(), dim=1)
            elif getattr(scorer, "by_track", None) is not None:
                # The graph's edge matrices hold 1.0 per edge (Catalogue.edges): shared, not copied.
                self.by_track = scorer.by_track
                self.df = np.diff(self.by_track.indptr).astype(np.float64)

    def columns(self, cands: Candidates, queries: Queries) -> dict[str, np.ndarray]:
        names = [f"{m}_seed_{s}" for m in self.vectors for s in ("max", "mean")]
        if self.by_track is not None:
            names += ["co_seed_max", "co_seed_mean", "co_seed_share"]
        out = {name: np.full(len(cands.tracks), np.nan, np.float32) for name in names}
        rows = [b for b in range(len(cands)) if cands.indptr[b + 1] > cands.indptr[b] and len(queries.seeds(b))]
        for b in rows:
            lo, hi = cands.indptr[b], cands.indptr[b + 1]
            mine, seeds = torch.from_numpy(cands.tracks[lo:hi]), torch.from_numpy(queries.seeds(b))
            for m, v in self.vectors.items():
                sim = (v[mine] @ v[seeds].T).numpy()
                out[f"{m}_seed_max"][lo:hi], out[f"{m}_seed_mean"][lo:hi] = sim.max(1), sim.mean(1)
        if self.by_track is None:
            return out

        def co_occurrence(part: list[int]) -> None:
            for b in part:
                lo, hi = cands.indptr[b], cands.indptr[b + 1]
                mine, seeds = cands.tracks[lo:hi], queries.seeds(b)
                co = (self.by_track[mine] @ self.by_track[seeds].T).toarray()
                cos = co / np.sqrt(np.maximum(np.outer(self.df[mine], self.df[seeds]), 1.0))
                out["co_seed_max"][lo:hi], out["co_seed_mean"][lo:hi] = cos.max(1), cos.mean(1)
                out["co_seed_share"][lo:hi] = (co > 0).mean(1)

        # The sparse products (scipy releases the GIL) on every intra-op thread, each on its own
        # queries' rows of ``out``; the cosines above stay on this thread, as torch's own threads
        # serve them.
        threads = max(1, torch.get_num_threads())
        in_threads(co_occurrence, [rows[i::threads] for i in range(threads)])
        return out


def _per_row(values: np.ndarray, rows: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the non-NaN ``values`` of each row."""
    ok = ~np.isnan(values)
    count = np.bincount(rows[ok], minlength=n)
    total = np.bincount(rows[ok], values[ok], minlength=n)
    mean = total / np.maximum(count, 1)
    var = np.bincount(rows[ok], (values[ok] - mean[rows[ok]]) ** 2, minlength=n) / np.maximum(count, 1)
    return mean, np.sqrt(var)


def _seed_overlap(cands: Candidates, queries: Queries, of_track: np.ndarray) -> np.ndarray:
    """How many of the query's seeds share the candidate's album (or artist): ``of_track``."""
    seed_rows = np.repeat(np.arange(len(queries), dtype=np.int64), queries.num_seeds())
    width = int(of_track.max(initial=0)) + 1
    keys, counts = np.unique(seed_rows * width + of_track[queries.seed_tracks], return_counts=True)
    if not len(keys):
        return np.zeros(len(cands.tracks), np.float32)
    want = cands.rows() * width + of_track[cands.tracks]
    at = np.minimum(np.searchsorted(keys, want), len(keys) - 1)
    return np.where(keys[at] == want, counts[at], 0).astype(np.float32)


def features(
    cands: Candidates,
    queries: Queries,
    tracks: TrackFeatures,
    categories: np.ndarray | None = None,
    similarity: SeedSimilarity | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The feature matrix float32 [candidates, features] and the features' names."""
    rows, n = cands.rows(), len(cands)
    cols: dict[str, np.ndarray] = {}
    for name in cands.scores:
        score = cands.scores[name]
        mean, std = _per_row(score, rows, n)
        cols[f"{name}_score"] = score
        cols[f"{name}_rank"] = cands.ranks[name]
        cols[f"{name}_z"] = ((score - mean[rows]) / np.maximum(std[rows], 1e-6)).astype(np.float32)
    cols["proposed_by"] = sum((~np.isnan(r)).astype(np.float32) for r in cands.ranks.values())
    for name, column in tracks.columns.items():
        cols[name] = column[cands.tracks]
    num_seeds = queries.num_seeds().astype(np.float32)
    for part, of_track in (("album", tracks.album), ("artist", tracks.artist)):
        same = _seed_overlap(cands, queries, of_track)
        cols[f"same_{part}_seeds"] = same
        cols[f"same_{part}_share"] = same / np.maximum(num_seeds[rows], 1.0)
    if similarity is not None:
        cols.update(similarity.columns(cands, queries))
    cols["num_seeds"] = num_seeds[rows]
    code = np.array(
        [
            CATEGORY_CODE.get(c, -1) if c is not None else -1
            for c in (categories if categories is not None else [None] * n)
        ],
        np.float32,
    )
    cols["category"] = code[rows]
    names = list(cols)
    return np.stack([cols[c].astype(np.float32) for c in names], axis=1), names


def _group(name: str) -> str:
    if "_seed_" in name:
        return "seed_similarity"
    if name.startswith("same_"):
        return "seed_overlap"
    if name in ("num_seeds", "category"):
        return "query"
    if name.startswith("title_"):  # the title model's score, rank and z: apart from the seeds' retrievers
        return "title"
    if name.endswith(("_score", "_rank", "_z")) or name == "proposed_by":
        return "retrievers"
    return "track"


def groups(names: list[str]) -> dict[str, list[str]]:
    """The features by group: retrievers, title, track, seed_overlap, seed_similarity, query."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(_group(name), []).append(name)
    return out
