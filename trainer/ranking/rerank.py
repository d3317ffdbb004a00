"""The second stage: a LightGBM ``lambdarank`` model re-orders the first stage's candidates
(``trainer.ranking.candidates``) with what no single retriever sees: every retriever's score and
rank at once, track popularity and the ETL's degree / 2-hop features, the candidate's album and
artist overlap with the seeds, and the query's seed count and category.

It is trained on the val playlists: their hidden tracks are edges no retriever was fitted on
(item-kNN and ALS read training playlists' train edges, the GNN propagates visible edges), where
a training playlist's would be scored with its own answers known. Folds of the val playlists pick
the number of boosting rounds; the model is then fitted on all of them. Test stays untouched.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from etl import contract
from trainer.io.graph import Catalogue, node_columns
from trainer.ranking.baselines import _below
from trainer.ranking.candidates import Candidates, generate
from trainer.ranking.scoring import ChunkScores, Queries, Scorer

log = logging.getLogger(__name__)

RETRIEVERS = ("gnn", "als", "itemknn")
CATEGORY_CODE = {c.name: i for i, c in enumerate(contract.SEED_CATEGORIES)}


@dataclass(frozen=True)
class RerankParams:
    """Candidates per retriever and the booster's settings."""

    k: int = 500
    num_leaves: int = 31
    learning_rate: float = 0.05
    min_data_in_leaf: int = 50
    max_rounds: int = 1000
    early_stopping: int = 50
    folds: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.k < 1 or self.folds < 2 or self.max_rounds < 1:
            raise ValueError(f"rerank: need k >= 1, folds >= 2 and max_rounds >= 1; got {self}")

    def as_dict(self) -> dict:
        return asdict(self)


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


def features(cands: Candidates, queries: Queries, tracks: TrackFeatures,
             categories: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
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
    cols["num_seeds"] = num_seeds[rows]
    code = np.array([CATEGORY_CODE.get(c, -1) if c is not None else -1 for c in
                     (categories if categories is not None else [None] * n)], np.float32)
    cols["category"] = code[rows]
    names = list(cols)
    return np.stack([cols[c].astype(np.float32) for c in names], axis=1), names


def _booster_params(p: RerankParams, num_threads: int) -> dict:
    return {"objective": "lambdarank", "metric": "ndcg", "eval_at": [50], "num_leaves": p.num_leaves,
            "learning_rate": p.learning_rate, "min_data_in_leaf": p.min_data_in_leaf, "seed": p.seed,
            "deterministic": True, "force_row_wise": True, "num_threads": num_threads, "verbosity": -1,
            "lambdarank_truncation_level": 500}


def fit(x: np.ndarray, y: np.ndarray, group: np.ndarray, names: list[str], params: RerankParams,
        num_threads: int = 0):
    """Rounds chosen by ``params.folds`` folds over the queries (NDCG@50 on the held-back fold),
    then one booster on every query. Returns the booster and what the folds found."""
    import lightgbm as lgb

    bp = _booster_params(params, num_threads)
    starts = np.concatenate([[0], np.cumsum(group)])
    fold_of = np.random.default_rng(params.seed).permutation(len(group)) % params.folds
    best = []
    for f in range(params.folds):
        parts = {}
        for side, pick in (("train", fold_of != f), ("valid", fold_of == f)):
            q = np.flatnonzero(pick)
            idx = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in q]) if len(q) else np.zeros(0, np.int64)
            parts[side] = lgb.Dataset(x[idx], y[idx], group=group[q], feature_name=names, free_raw_data=True)
        booster = lgb.train(bp, parts["train"], params.max_rounds, valid_sets=[parts["valid"]],
                            callbacks=[lgb.early_stopping(params.early_stopping, verbose=False)])
        best.append((booster.best_iteration, booster.best_score["valid_0"]["ndcg@50"]))
        log.info("rerank fold %d/%d: best round %d, NDCG@50 %.4f", f + 1, params.folds, *best[-1])
    rounds = max(1, int(round(np.mean([b for b, _ in best]))))
    booster = lgb.train(bp, lgb.Dataset(x, y, group=group, feature_name=names), rounds)
    return booster, {"rounds": rounds, "folds": [{"best_round": b, "ndcg@50": s} for b, s in best]}


FUSION_STEP = 0.1
NOT_PROPOSED_Z = -3.0  # a retriever that did not propose a candidate: far below its own list's mean


def fused(x: np.ndarray, names: list[str], retrievers: list[str], weights: np.ndarray) -> np.ndarray:
    """Σ_m weights[m] · z_m per candidate (z of the retriever's score within its own top-K);
    ``weights`` [retrievers], or [candidates, retrievers] for one set per candidate."""
    z = np.stack([x[:, names.index(f"{m}_z")] for m in retrievers], axis=1)
    return (np.nan_to_num(z, nan=NOT_PROPOSED_Z) * weights).sum(axis=1)


def _r_precision_track(score: np.ndarray, y: np.ndarray, group: np.ndarray, truth_sizes: np.ndarray) -> np.ndarray:
    """Per query: hidden tracks among the top |G| candidates by ``score``, over |G|."""
    rows = np.repeat(np.arange(len(group)), group)
    order = np.lexsort((-score, rows))
    position = np.arange(len(score)) - np.repeat(np.concatenate([[0], np.cumsum(group)[:-1]]), group)
    hit = y[order] * (position < truth_sizes[rows])
    return np.bincount(rows, hit, minlength=len(group)) / np.maximum(truth_sizes, 1)


def fit_fusion(x: np.ndarray, y: np.ndarray, group: np.ndarray, names: list[str], retrievers: list[str],
               categories: np.ndarray, truth_sizes: np.ndarray) -> dict[str, list[float]]:
    """Per seed category, the weights (a grid of step ``FUSION_STEP`` over the simplex) whose
    fused z-scores give the best mean R-precision (track matches) on these queries."""
    steps = int(round(1 / FUSION_STEP))
    grid = [np.array(w, np.float64) / steps for w in np.ndindex(*(steps + 1,) * len(retrievers))
            if sum(w) == steps]
    per_query = np.stack([_r_precision_track(fused(x, names, retrievers, w), y, group, truth_sizes) for w in grid])
    out = {}
    for c in sorted({c for c in categories if c is not None}):
        mine = categories == c
        out[c] = [float(v) for v in grid[int(np.argmax(per_query[:, mine].mean(axis=1)))]]
    out["*"] = [float(v) for v in grid[int(np.argmax(per_query.mean(axis=1)))]]  # any other query
    return out


class Reranker:
    """The two stages as one scorer: the candidates re-ordered by the booster; every other track
    after them, by popularity (as the baselines fill their lists)."""

    def __init__(self, booster, retrievers: dict[str, Scorer], title: Scorer, tracks: TrackFeatures,
                 popularity: np.ndarray, num_tracks: int, params: RerankParams, names: list[str],
                 chunk_size: int = 1 << 17, device: torch.device | str = "cpu",
                 categories: np.ndarray | None = None, fusion: dict[str, list[float]] | None = None):
        """``fusion``: rank by the per-category fused z-scores (:func:`fit_fusion`) instead of the booster."""
        self.booster, self.retrievers, self.title, self.tracks = booster, retrievers, title, tracks
        self.fusion = fusion
        self.num_tracks, self.params, self.names = num_tracks, params, names
        self.chunk_size, self.device = chunk_size, device
        self.categories = categories  # by graph playlist id: held-out playlists have one
        self.below = _below(popularity)

    def _categories(self, queries: Queries) -> np.ndarray:
        if self.categories is None:
            return np.full(len(queries), None, dtype=object)
        ids = queries.playlist_ids
        return np.array([self.categories[i] if i >= 0 else None for i in ids], dtype=object)

    def batch(self, queries: Queries) -> ChunkScores:
        cands = generate(self.retrievers, self.title, queries, self.num_tracks, self.params.k,
                         self.chunk_size, self.device)
        x, names = features(cands, queries, self.tracks, self._categories(queries))
        if names != self.names:
            raise ValueError(f"rerank: features {names} differ from the model's {self.names}")
        rows = cands.rows()
        if self.fusion is not None:
            category = self._categories(queries)
            weights = np.array([self.fusion.get(c, self.fusion["*"]) for c in category], np.float64)[rows]
            pred = fused(x, names, list(self.retrievers), weights).astype(np.float32)
        elif len(x):
            pred = self.booster.predict(x, num_threads=0).astype(np.float32)
        else:
            pred = np.zeros(0, np.float32)
        floor = np.zeros(len(queries), np.float32)
        if len(pred):
            floor = np.full(len(queries), np.inf, np.float32)
            np.minimum.at(floor, rows, pred)
            floor[np.isinf(floor)] = 0.0
        below = self.below

        def chunk(start: int, stop: int) -> torch.Tensor:
            # Below every candidate of the row: its lowest prediction, less 2, plus popularity in [-1, 0).
            out = (floor[:, None] - 2.0) + below[None, start:stop]
            here = (cands.tracks >= start) & (cands.tracks < stop)
            out[rows[here], cands.tracks[here] - start] = pred[here]
            return torch.from_numpy(out)

        return chunk
