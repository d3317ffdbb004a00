"""Title models for playlists without seeds, on a graph dir's val or test split: the shared
title model (``trainer.evaluation.title.TitleModel``: exact normalised title over every visible
edge, then tracks whose artist, album or track name holds the title's words: ``names``) against
its first tier alone over visible edges or training playlists alone, and against models that
spread a title over its words or character n-grams (IDF-weighted playlist neighbours, optionally
smoothed through track co-occurrence) or blend the exact counts with popularity. R-precision /
NDCG / clicks, and paired 95% bootstrap intervals against the first model.

    python bench/title_models.py --graph G --split val [--as-title-only] [--titled] [--models exact_train,names]

``--as-title-only`` asks every playlist of the split by its title alone, with the split's seeds
dropped from what the models read (no playlist reads its own tracks): more queries than the
split's title-only playlists, the same question. ``--titled`` leaves out the playlists whose
title normalises to nothing (half of the real dev set's, which has no names for pids 37-999):
every model ranks those by popularity alike.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp
import torch

from etl import contract
from trainer.evaluation.baselines import popularity_counts
from trainer.evaluation.metrics import CHALLENGE_METRICS
from trainer.evaluation.paired import interval, per_playlist
from trainer.evaluation.protocol import HeldOut, held_out, visible_catalogue
from trainer.evaluation.scoring import Queries
from trainer.evaluation.title import TitleModel
from trainer.io.catalogue import load_catalogue, track_names


def grams(title: str, unit: str) -> set[str]:
    """The title's terms: the whole title always (so exact matches weigh most), plus its words
    or the character 3-5-grams of its words."""
    out = {"=" + title}
    for w in title.split() if unit != "exact" else ():
        if unit == "words":
            out.add(w)
        else:
            w = f" {w} "
            out.update(w[i : i + n] for n in (3, 4, 5) for i in range(max(1, len(w) - n + 1)))
    return out


class TitleNeighbours:
    """Score(t) = Σ_p cos(title, title_p)^alpha · [t ∈ p] over playlists with edges (TF-IDF over
    ``grams``), scaled to a maximum of 1; ``smooth`` mixes in the tracks that co-occur with those
    (one playlist-track-playlist step); plus ``lam`` × popularity (scaled to 1)."""

    def __init__(
        self,
        edges: sp.csr_matrix,
        titles: list[str],
        popularity: np.ndarray,
        unit: str,
        alpha: float = 2.0,
        lam: float = 0.2,
        smooth: float = 0.0,
    ):
        self.unit, self.alpha, self.lam, self.smooth = unit, alpha, lam, smooth
        rows = np.flatnonzero((np.diff(edges.indptr) > 0) & np.array([bool(t) for t in titles]))
        self.edges = edges[rows].astype(np.float32)
        self.vocab: dict[str, int] = {}
        x = self._vectors([titles[r] for r in rows], grow=True)
        df = np.asarray((x > 0).sum(axis=0)).ravel()
        self.idf = np.log1p(len(rows) / np.maximum(df, 1)).astype(np.float32)
        self.x = _unit_rows(x @ sp.diags(self.idf))
        self.popularity = (popularity / max(popularity.max(), 1.0)).astype(np.float32)

    def _vectors(self, titles: list[str], grow: bool = False) -> sp.csr_matrix:
        r, c = [], []
        for i, t in enumerate(titles):
            for g in grams(t, self.unit) if t else ():
                j = self.vocab.setdefault(g, len(self.vocab)) if grow else self.vocab.get(g)
                if j is not None:
                    r.append(i)
                    c.append(j)
        return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(titles), len(self.vocab)))

    def batch(self, queries: Queries):
        q = _unit_rows(self._vectors(list(queries.titles)) @ sp.diags(self.idf))
        weight = (q @ self.x.T).power(self.alpha)  # query × playlist
        scores = np.asarray((weight @ self.edges).todense())
        scores /= np.maximum(scores.max(axis=1, keepdims=True), 1e-12)
        if self.smooth:
            near = np.asarray((sp.csr_matrix(scores) @ self.edges.T).todense())  # playlists sharing those tracks
            spread = near @ self.edges
            spread /= np.maximum(spread.max(axis=1, keepdims=True), 1e-12)
            scores = (1 - self.smooth) * scores + self.smooth * spread
        scores = torch.from_numpy((scores + self.lam * self.popularity).astype(np.float32))
        return lambda start, stop: scores[:, start:stop]


def _unit_rows(x: sp.csr_matrix) -> sp.csr_matrix:
    norm = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    return sp.diags(1 / np.where(norm > 0, norm, 1)) @ x


MODELS = {  # (train edges, visible edges, titles, popularity, track names) -> scorer
    "exact_train": lambda train, visible, titles, pop, names: TitleModel(train, titles, pop),
    "exact_visible": lambda train, visible, titles, pop, names: TitleModel(visible, titles, pop),
    "names": lambda train, visible, titles, pop, names: TitleModel(visible, titles, pop, names),
    "exact_visible+popularity": lambda train, visible, titles, pop, names: TitleNeighbours(
        visible, titles, pop, "exact", 1, 1.0
    ),
    "words": lambda train, visible, titles, pop, names: TitleNeighbours(visible, titles, pop, "words"),
    "chars": lambda train, visible, titles, pop, names: TitleNeighbours(visible, titles, pop, "chars"),
    "chars+smooth": lambda train, visible, titles, pop, names: TitleNeighbours(
        visible, titles, pop, "chars", 2, 0.05, 0.6
    ),
}


def without_seeds(held: HeldOut) -> HeldOut:
    n = len(held)
    queries = Queries(np.zeros(n + 1, np.int64), np.zeros(0, np.int64), held.queries.titles, held.playlist_ids)
    return HeldOut(held.playlist_ids, held.categories, queries, held.truth_indptr, held.truth_tracks, 0)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graph", required=True)
    p.add_argument("--split", default=contract.SPLIT_VAL, choices=(contract.SPLIT_VAL, contract.SPLIT_TEST))
    p.add_argument("--as-title-only", action="store_true", help="every playlist of the split, by its title alone")
    p.add_argument("--titled", action="store_true", help="only the playlists whose title has words")
    p.add_argument(
        "--models", default=",".join(MODELS), help=f"comma-separated, the first the reference: {list(MODELS)}"
    )
    args = p.parse_args(argv)
    names = args.models.split(",")
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {list(MODELS)}")
    graph = load_catalogue(args.graph)
    held = held_out(graph, args.split)
    train = graph.edges((contract.ROLE_TRAIN,), splits=(contract.SPLIT_TRAIN,))
    visible = graph.edges(contract.VISIBLE_ROLES).tolil()
    if args.as_title_only:
        visible[held.playlist_ids] = 0  # the asked playlists' own seeds
        held = without_seeds(held)
    else:
        held = held.take(np.flatnonzero(held.queries.num_seeds() == 0))
    if args.titled:
        held = held.take(np.flatnonzero([bool(t) for t in held.queries.titles]))
    visible = visible.tocsr()
    visible.eliminate_zeros()
    pop = popularity_counts(visible)
    allowed = visible_catalogue(graph)
    print(f"{args.graph} {args.split}: {len(held)} playlists asked by title alone")
    text = track_names(args.graph) if "names" in names else None
    results = {}
    for name in names:
        model = MODELS[name](train, visible, graph.playlist_title, pop, text)
        results[name] = per_playlist(graph.track_artist, held, {name: model}, model, allowed)[name]
    rng = np.random.default_rng(0)
    ref = names[0]
    print("| model | " + " | ".join(CHALLENGE_METRICS) + f" | R-precision − {ref} | NDCG − {ref} |")
    print("|---" * (len(CHALLENGE_METRICS) + 3) + "|")
    for name, values in results.items():
        cells = [f"{values[m].mean():.4f}" for m in CHALLENGE_METRICS]
        for m in ("r_precision", "ndcg"):
            d = values[m] - results[ref][m]
            lo, hi = interval(d, rng)
            cells.append(f"{d.mean():+.4f} ({lo:+.4f} .. {hi:+.4f})" if name != ref else "")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
