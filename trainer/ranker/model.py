"""The second stage: a LightGBM ``lambdarank`` model re-orders the first stage's candidates
(``trainer.ranker.candidates``) with what no single retriever sees (``trainer.ranker.candidate_features``):
every retriever's score and rank at once, track popularity and the ETL's degree / 2-hop features,
the candidate's album and artist overlap with and similarity to the seeds, the query's seed count
and category.

It is trained on the val playlists that did not select the GNN's checkpoint: their hidden tracks
are edges no retriever was fitted on (item-kNN and ALS read training playlists' train edges, the
GNN propagates visible edges), where a training playlist's would be scored with its own answers
known. Folds of those playlists pick the number of boosting rounds; the model is then fitted on all
of them. Test stays untouched.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import torch

from trainer.evaluation.scoring import ChunkScores, Queries, Scorer, TopK, popularity_floor
from trainer.ranker.candidate_features import SeedSimilarity, TrackFeatures, features
from trainer.ranker.candidates import Candidates, generate

log = logging.getLogger(__name__)

RETRIEVERS = ("gnn", "als", "itemknn")


@dataclass(frozen=True)
class RankerParams:
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


def _booster_params(p: RankerParams, num_threads: int) -> dict:
    return {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [50],
        "num_leaves": p.num_leaves,
        "learning_rate": p.learning_rate,
        "min_data_in_leaf": p.min_data_in_leaf,
        "seed": p.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": num_threads,
        "verbosity": -1,
        "lambdarank_truncation_level": 500,
    }


def cross_validate(
    x: np.ndarray, y: np.ndarray, group: np.ndarray, names: list[str], params: RankerParams, num_threads: int = 0
) -> tuple[np.ndarray, list[dict]]:
    """``params.folds`` folds over the queries, each booster stopped early on its held-back fold
    (NDCG@50): every candidate's out-of-fold prediction, and each fold's best round and NDCG."""
    import lightgbm as lgb

    bp = _booster_params(params, num_threads)
    starts = np.concatenate([[0], np.cumsum(group)])
    fold_of = np.random.default_rng(params.seed).permutation(len(group)) % params.folds
    pred = np.zeros(len(y), np.float64)
    folds = []
    for f in range(params.folds):
        parts, idx = {}, {}
        for side, pick in (("train", fold_of != f), ("valid", fold_of == f)):
            q = np.flatnonzero(pick)
            idx[side] = (
                np.concatenate([np.arange(starts[i], starts[i + 1]) for i in q]) if len(q) else np.zeros(0, np.int64)
            )
            parts[side] = lgb.Dataset(
                x[idx[side]], y[idx[side]], group=group[q], feature_name=names, free_raw_data=True
            )
        booster = lgb.train(
            bp,
            parts["train"],
            params.max_rounds,
            valid_sets=[parts["valid"]],
            callbacks=[lgb.early_stopping(params.early_stopping, verbose=False)],
        )
        pred[idx["valid"]] = booster.predict(x[idx["valid"]], num_iteration=booster.best_iteration)
        folds.append({"best_round": booster.best_iteration, "ndcg@50": booster.best_score["valid_0"]["ndcg@50"]})
        log.info("rerank fold %d/%d: best round %d, NDCG@50 %.4f", f + 1, params.folds, *folds[-1].values())
    return pred, folds


def fit(x: np.ndarray, y: np.ndarray, group: np.ndarray, names: list[str], params: RankerParams, num_threads: int = 0):
    """Rounds chosen by :func:`cross_validate`, then one booster on every query. Returns the
    booster and what the folds found."""
    import lightgbm as lgb

    _, folds = cross_validate(x, y, group, names, params, num_threads)
    rounds = max(1, int(round(np.mean([f["best_round"] for f in folds]))))
    booster = lgb.train(
        _booster_params(params, num_threads), lgb.Dataset(x, y, group=group, feature_name=names), rounds
    )
    return booster, {"rounds": rounds, "folds": folds}


FUSION_STEP = 0.1
NOT_PROPOSED_Z = -3.0  # a retriever that did not propose a candidate: far below its own list's mean


def fused(x: np.ndarray, names: list[str], retrievers: list[str], weights: np.ndarray) -> np.ndarray:
    """Σ_m weights[m] · z_m per candidate (z of the retriever's score within its own top-K);
    ``weights`` [retrievers], or [candidates, retrievers] for one set per candidate."""
    z = np.stack([x[:, names.index(f"{m}_z")] for m in retrievers], axis=1)
    return (np.nan_to_num(z, nan=NOT_PROPOSED_Z) * weights).sum(axis=1)


def r_precision_track(score: np.ndarray, y: np.ndarray, group: np.ndarray, truth_sizes: np.ndarray) -> np.ndarray:
    """Per query: hidden tracks among the top |G| candidates by ``score``, over |G|."""
    rows = np.repeat(np.arange(len(group)), group)
    order = np.lexsort((-score, rows))
    position = np.arange(len(score)) - np.repeat(np.concatenate([[0], np.cumsum(group)[:-1]]), group)
    hit = y[order] * (position < truth_sizes[rows])
    return np.bincount(rows, hit, minlength=len(group)) / np.maximum(truth_sizes, 1)


def fit_fusion(
    x: np.ndarray,
    y: np.ndarray,
    group: np.ndarray,
    names: list[str],
    retrievers: list[str],
    categories: np.ndarray,
    truth_sizes: np.ndarray,
) -> dict[str, list[float]]:
    """Per seed category, the weights (a grid of step ``FUSION_STEP`` over the simplex) whose
    fused z-scores give the best mean R-precision (track matches) on these queries."""
    steps = int(round(1 / FUSION_STEP))
    grid = [np.array(w, np.float64) / steps for w in np.ndindex(*(steps + 1,) * len(retrievers)) if sum(w) == steps]
    per_query = np.stack([r_precision_track(fused(x, names, retrievers, w), y, group, truth_sizes) for w in grid])
    out = {}
    for c in sorted({c for c in categories if c is not None}):
        mine = categories == c
        out[c] = [float(v) for v in grid[int(np.argmax(per_query[:, mine].mean(axis=1)))]]
    out["*"] = [float(v) for v in grid[int(np.argmax(per_query.mean(axis=1)))]]  # any other query
    return out


class Ranker:
    """The two stages as one scorer: the candidates re-ordered by the booster; every other track
    after them, by popularity (as the baselines fill their lists)."""

    reads_top_k = True  # a shared pass (scoring.TopK) hands it the retrievers' top-k

    def __init__(
        self,
        booster,
        retrievers: dict[str, Scorer],
        title: Scorer,
        tracks: TrackFeatures,
        popularity: np.ndarray,
        num_tracks: int,
        params: RankerParams,
        names: list[str],
        chunk_size: int = 1 << 17,
        device: torch.device | str = "cpu",
        categories: np.ndarray | None = None,
        fusion: dict[str, list[float]] | None = None,
        allowed: np.ndarray | None = None,
    ):
        """``fusion``: rank by the per-category fused z-scores (:func:`fit_fusion`) instead of the
        booster; ``allowed``: the only tracks that may be candidates (None: all), as the ranking
        that reads this scorer allows."""
        self.booster, self.retrievers, self.title, self.tracks = booster, retrievers, title, tracks
        self.fusion, self.allowed = fusion, allowed
        self.num_tracks, self.params, self.names = num_tracks, params, names
        self.chunk_size, self.device = chunk_size, device
        self.categories = categories  # by graph playlist id: held-out playlists have one
        self.below = popularity_floor(popularity)
        self.similarity = SeedSimilarity(retrievers)

    def _categories(self, queries: Queries) -> np.ndarray:
        if self.categories is None:
            return np.full(len(queries), None, dtype=object)
        ids = queries.playlist_ids
        return np.array([self.categories[i] if i >= 0 else None for i in ids], dtype=object)

    def batch(self, queries: Queries, top: TopK | None = None) -> ChunkScores:
        """``top``: the retrievers' top-k of these queries already computed (the evaluation's pass);
        its catalogue must be the one this ranker allows."""
        if top is not None and not _same_catalogue(top.allowed, self.allowed):
            raise ValueError("rerank: the shared pass ranks another catalogue than the ranker allows")

        def candidates() -> tuple[Candidates, np.ndarray, list[str]]:
            cands = generate(
                self.retrievers,
                self.title,
                queries,
                self.num_tracks,
                self.params.k,
                self.chunk_size,
                self.device,
                self.allowed,
                top,
            )
            return (cands, *features(cands, queries, self.tracks, self._categories(queries), self.similarity))

        # rerank and fusion are copies of one Ranker (trainer.methods), sharing its SeedSimilarity:
        # in one pass they rank the same candidates, by the booster and by the fused z-scores.
        cands, x, names = candidates() if top is None else top.shared(("second stage", self.similarity), candidates)
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


def _same_catalogue(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is b or (a is not None and b is not None and np.array_equal(a, b))
