"""The first stage of the two-stage ranker: each retriever's top-K per playlist, their union, and
what every retriever said of each candidate (its score and rank; NaN where the candidate is not in
its top-K, which the second stage reads as "not proposed").

A playlist without seeds has only its title: the title retriever proposes alone there, as the
title fallback does for every method in ``evaluate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trainer.evaluation.scoring import Queries, Scorer, TopK

TITLE = "title"


@dataclass
class Candidates:
    """Candidate tracks per query (CSR over rows) and, per retriever, score and rank columns."""

    indptr: np.ndarray  # int64 [B + 1]
    tracks: np.ndarray  # int64 [n], sorted within a row
    scores: dict[str, np.ndarray]  # retriever -> float32 [n], NaN: not in its top-K
    ranks: dict[str, np.ndarray]  # retriever -> float32 [n], 0 = its best, NaN: not in its top-K

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def rows(self) -> np.ndarray:
        """The query row of every candidate, int64 [n]."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.indptr))


def generate(
    retrievers: dict[str, Scorer],
    title: Scorer,
    queries: Queries,
    num_tracks: int,
    k: int,
    chunk_size: int,
    device: torch.device | str = "cpu",
    allowed: np.ndarray | None = None,
    top: TopK | None = None,
) -> Candidates:
    """The union of every retriever's top-``k`` (seeds and tracks ``allowed`` rules out never
    included); the title retriever runs for every query, the others for those with seeds.
    ``top``: the batch's shared pass (a :class:`TopK` of these ``queries``), whose ``allowed`` rules."""
    top = TopK(queries, num_tracks, chunk_size, device, allowed) if top is None else top
    has_seeds = queries.num_seeds() > 0
    found: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, scorer in {**retrievers, TITLE: title}.items():
        rows = np.arange(len(queries)) if name == TITLE else np.flatnonzero(has_seeds)
        if not len(rows):
            continue
        ids, values = top.take(rows)(scorer, k)
        position = np.broadcast_to(np.arange(ids.shape[1], dtype=np.float32), ids.shape)
        ok = ids >= 0
        found[name] = (np.repeat(rows, ok.sum(1)), ids[ok], values[ok].astype(np.float32), position[ok])
    # One key per (query, track): the union is their sorted set, each retriever's columns land by search.
    keys = {name: r * num_tracks + t for name, (r, t, _, _) in found.items()}
    union = np.unique(np.concatenate([np.zeros(0, np.int64), *keys.values()]))
    rows, tracks = np.divmod(union, num_tracks)
    scores, ranks = {}, {}
    for name in [*retrievers, TITLE]:
        scores[name] = np.full(len(union), np.nan, np.float32)
        ranks[name] = np.full(len(union), np.nan, np.float32)
        if name in found:
            at = np.searchsorted(union, keys[name])
            scores[name][at], ranks[name][at] = found[name][2], found[name][3]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(queries)))]).astype(np.int64)
    return Candidates(indptr, tracks.astype(np.int64), scores, ranks)


def labels(cands: Candidates, truth_indptr: np.ndarray, truth_tracks: np.ndarray, num_tracks: int) -> np.ndarray:
    """1 where a candidate is one of its playlist's hidden tracks, else 0 (float32 [n])."""
    truth_rows = np.repeat(np.arange(len(truth_indptr) - 1, dtype=np.int64), np.diff(truth_indptr))
    truth = np.unique(truth_rows * num_tracks + truth_tracks)
    return np.isin(cands.rows() * num_tracks + cands.tracks, truth).astype(np.float32)


def recall(cands: Candidates, hit: np.ndarray, truth_sizes: np.ndarray) -> dict[str, float]:
    """Mean over playlists of the share of hidden tracks among the candidates (``hit``: their
    :func:`labels`; ``truth_sizes``: hidden tracks per playlist): per retriever (its own top-K)
    and for the union ("all"): the ceiling of any second stage."""
    sizes = np.asarray(truth_sizes, dtype=np.float64)
    rows = cands.rows()
    out = {}
    for name in [*cands.ranks, "all"]:
        mine = hit if name == "all" else hit * ~np.isnan(cands.ranks[name])
        out[name] = float(np.mean(np.bincount(rows, mine, minlength=len(cands)) / sizes))
    return out
