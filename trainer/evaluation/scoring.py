"""Full-catalogue top-K: score every track for a batch of queries, mask the seeds, keep the best K.

Scores are produced chunk by chunk over the track catalogue (``[B, C]`` at a time, so memory is
bounded by the batch and chunk sizes, never by the catalogue), and the top K of every chunk are
merged into a running top K, which is exact: a track in the overall top K is in its chunk's top K.
Runs on whatever device the scores are moved to (a GPU when there is one).

A scorer is anything with ``batch(queries) -> chunk_scores(start, stop) -> Tensor [B, stop-start]``;
the GNN's (dot products of embeddings) lives here, the baselines in ``trainer.evaluation.baselines``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Hashable, Protocol, Sequence, TypeVar

import numpy as np
import torch

T = TypeVar("T")

ChunkScores = Callable[[int, int], torch.Tensor]

_POOLS: dict[int, ThreadPoolExecutor] = {}


def in_threads(work: Callable[[T], None], parts: Sequence[T]) -> None:
    """``work(part)`` for every part, one thread per part up to torch's intra-op thread count: for
    numpy and scipy work that releases the GIL (torch's own operations have their threads)."""
    threads = min(torch.get_num_threads(), len(parts))
    if threads <= 1:
        for part in parts:
            work(part)
        return
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="scoring")
    for done in [_POOLS[threads].submit(work, part) for part in parts]:
        done.result()


@dataclass
class Queries:
    """A batch of playlists to continue: seed tracks (CSR over rows), titles, graph ids.

    ``playlist_ids[b]`` is the playlist's id in the graph, or -1 for one that is not in it (a
    challenge playlist, a list of track URIs).
    """

    seed_indptr: np.ndarray  # int64 [B + 1]
    seed_tracks: np.ndarray  # int64 [nnz]
    titles: list[str]  # normalised titles
    playlist_ids: np.ndarray  # int64 [B]

    def __len__(self) -> int:
        return len(self.playlist_ids)

    def seeds(self, b: int) -> np.ndarray:
        return self.seed_tracks[self.seed_indptr[b] : self.seed_indptr[b + 1]]

    def num_seeds(self) -> np.ndarray:
        return np.diff(self.seed_indptr)

    def take(self, rows: np.ndarray) -> "Queries":
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(self.seed_indptr)[rows]
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        tracks = (
            np.concatenate([self.seeds(int(b)) for b in rows]).astype(np.int64)
            if len(rows)
            else np.zeros(0, dtype=np.int64)
        )
        return Queries(indptr, tracks, [self.titles[b] for b in rows], self.playlist_ids[rows])

    @staticmethod
    def from_lists(seeds: list[np.ndarray], titles: list[str], playlist_ids=None) -> "Queries":
        indptr = np.concatenate([[0], np.cumsum([len(s) for s in seeds])]).astype(np.int64)
        tracks = np.concatenate(seeds).astype(np.int64) if seeds else np.zeros(0, np.int64)
        ids = np.full(len(seeds), -1, np.int64) if playlist_ids is None else np.asarray(playlist_ids, dtype=np.int64)
        return Queries(indptr, tracks, list(titles), ids)


class Scorer(Protocol):
    def batch(self, queries: Queries) -> ChunkScores: ...


def top_k(
    chunk_scores: ChunkScores,
    queries: Queries,
    num_tracks: int,
    k: int,
    chunk_size: int,
    device: torch.device | str = "cpu",
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` track ids [B, k] (and scores) with every query's seed tracks excluded,
    and, when ``allowed`` (bool [num_tracks]) is given, every track it marks False.

    Slots that cannot be filled (catalogue smaller than k plus seeds) hold -1. Ties are broken
    by ``torch.topk``, deterministically for the same inputs and chunking.
    """
    if chunk_size < 1 or k < 1:
        raise ValueError(f"top_k: chunk_size ({chunk_size}) and k ({k}) must be >= 1")
    device = torch.device(device)
    num_rows = len(queries)
    seed_row = torch.from_numpy(np.repeat(np.arange(num_rows, dtype=np.int64), queries.num_seeds())).to(device)
    seed_col = torch.from_numpy(queries.seed_tracks.astype(np.int64)).to(device)
    # The tracks ``allowed`` excludes, as ids: few against the catalogue, so indexing them costs
    # far less than a masking pass over every score.
    blocked = torch.from_numpy(
        np.zeros(0, np.int64) if allowed is None else np.flatnonzero(~np.asarray(allowed, bool))
    ).to(device)
    best_v = torch.full((num_rows, 0), -torch.inf, device=device)
    best_i = torch.zeros((num_rows, 0), dtype=torch.int64, device=device)
    for start in range(0, num_tracks, chunk_size):
        stop = min(start + chunk_size, num_tracks)
        scores = chunk_scores(start, stop).to(device=device, dtype=torch.float32)
        if scores.shape != (num_rows, stop - start):
            raise ValueError(
                f"top_k: scorer returned {tuple(scores.shape)} for tracks [{start}, {stop}),"
                f" expected {(num_rows, stop - start)}"
            )
        here = (seed_col >= start) & (seed_col < stop)
        cut = blocked[(blocked >= start) & (blocked < stop)] - start
        if bool(here.any()) or len(cut):
            # One copy, then masked in place: a scorer may hand out a view of its own state.
            scores = scores.clone()
            scores[:, cut] = -torch.inf
            scores.index_put_((seed_row[here], seed_col[here] - start), torch.tensor(-torch.inf, device=device))
        # Unsorted: the final sort orders the survivors once.
        v, i = scores.topk(min(k, stop - start), dim=1, sorted=False)
        best_v = torch.cat([best_v, v], dim=1)
        best_i = torch.cat([best_i, i + start], dim=1)
        if best_v.shape[1] > k:
            best_v, pick = best_v.topk(k, dim=1, sorted=False)
            best_i = best_i.gather(1, pick)
    # Ties keep a deterministic order: topk is deterministic for the same inputs and chunking.
    best_v, order = best_v.sort(dim=1, descending=True, stable=True)
    best_i = best_i.gather(1, order)
    best_i = torch.where(torch.isneginf(best_v), torch.full_like(best_i, -1), best_i)
    ids = best_i.cpu().numpy()
    values = best_v.cpu().numpy()
    if ids.shape[1] < k:  # catalogue smaller than k
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        values = np.pad(values, ((0, 0), (0, pad)), constant_values=-np.inf)
    return ids, values


class TopK:
    """Every scorer's top-k over one batch of queries, each computed once: the evaluation's columns
    and the second stage's candidates read the same pass (at 1M playlists the retrievers' top 500
    are most of an evaluation's time). ``take(rows)`` is a view of some of the batch's queries that
    shares what was computed; a scorer that reads other scorers' top-k (``reads_top_k``, the
    second stage) gets a view of its own rows. A query's top-k does not depend on the others in
    its batch, so a view's answer is the one a batch of its rows alone would get."""

    def __init__(
        self,
        queries: Queries,
        num_tracks: int,
        chunk_size: int,
        device: torch.device | str = "cpu",
        allowed: np.ndarray | None = None,
    ):
        self.queries, self.num_tracks, self.chunk_size = queries, num_tracks, chunk_size
        self.device, self.allowed = device, allowed
        self._size = len(queries)  # the batch the memo is of
        self._rows = np.arange(self._size, dtype=np.int64)  # this view's rows in it
        self._memo: dict = {}  # (id(scorer), k) -> (scorer, ids [B, k], values [B, k], done [B])

    def take(self, rows: np.ndarray) -> "TopK":
        rows = np.asarray(rows, dtype=np.int64)
        view = TopK.__new__(TopK)
        view.__dict__.update(self.__dict__)
        view.queries, view._rows = self.queries.take(rows), self._rows[rows]
        return view

    def shared(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per batch, ``key`` and set of rows: what several scorers derive from the
        same pass (the second stage's candidates and features, ranked by rerank and by fusion)."""
        at = (key, self._rows.tobytes())
        if at not in self._memo:
            self._memo[at] = compute()
        return self._memo[at]

    def __call__(self, scorer: Scorer, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``scorer``'s top-``k`` ids and scores [len(view), k] of this view's queries (see :func:`top_k`)."""
        key = (id(scorer), k)
        if key not in self._memo:  # the scorer is kept with its entry: its id stays its own
            n = self._size
            self._memo[key] = (scorer, np.full((n, k), -1, np.int64), np.zeros((n, k), np.float32), np.zeros(n, bool))
        _, ids, values, done = self._memo[key]
        missing = np.flatnonzero(~done[self._rows])
        if len(missing):
            part = self.take(missing)
            reads = getattr(scorer, "reads_top_k", False)
            chunks = scorer.batch(part.queries, part) if reads else scorer.batch(part.queries)
            at = self._rows[missing]
            ids[at], values[at] = top_k(
                chunks, part.queries, self.num_tracks, k, self.chunk_size, self.device, self.allowed
            )
            done[at] = True
        return ids[self._rows], values[self._rows]


def rank(
    scorer: Scorer,
    fallback: Scorer,
    queries: Queries,
    num_tracks: int,
    k: int,
    chunk_size: int,
    device: torch.device | str = "cpu",
    allowed: np.ndarray | None = None,
    top: TopK | None = None,
) -> np.ndarray:
    """Top-``k`` ids [B, k] for every query: ``scorer`` for those with seeds, ``fallback`` (the
    title) for those without; only ``allowed`` tracks when given. ``top``: the batch's shared
    pass (a :class:`TopK` of these ``queries``, ``num_tracks`` and ``allowed``), else one of its own."""
    top = TopK(queries, num_tracks, chunk_size, device, allowed) if top is None else top
    out = np.full((len(queries), k), -1, dtype=np.int64)
    has_seeds = queries.num_seeds() > 0
    for rows, method in ((np.flatnonzero(has_seeds), scorer), (np.flatnonzero(~has_seeds), fallback)):
        if len(rows):
            out[rows] = top.take(rows)(method, k)[0]
    return out


class EmbeddingScorer:
    """The GNN's scores: dot product of a query embedding with every track embedding.

    The query is the playlist's own embedding when it is a graph playlist. Otherwise (challenge
    playlists, URI lists: not nodes of the graph) it is built from the seed tracks: with
    ``seed_query`` (``trainer.gnn.inference.seed_query``, LightGCN-style models) exactly as the model
    would embed a new playlist node with those tracks; else the mean of their embeddings.

    ``fold_in_steps`` > 0 (LightGCN-style models) then fits the new playlist's input projection
    to its seeds, as ALS folds a user in: a graph playlist's ID row was trained to complete it
    from its seeds (``supervise_seeds``), a new playlist's row would be zero. Adam on the seeds'
    mean log-softmax over the whole catalogue, starting from the average playlist's projection.
    Costs ``steps`` x catalogue x width per playlist (real dev set, test, 3 training seeds,
    seed-built queries at 100 steps: the 3-layer model 0.1048 -> 0.1109 R-precision, the 6-layer
    default 0.1173 -> 0.1168; bench/RESULTS.md).
    """

    def __init__(
        self,
        track_embeddings: np.ndarray,
        playlist_embeddings: np.ndarray | None,
        device: torch.device | str = "cpu",
        seed_query: dict | None = None,
        fold_in_steps: int = 0,
        fold_in_lr: float = 0.2,
        bias_column: bool = False,
    ):
        if fold_in_steps < 0:
            raise ValueError(f"fold-in steps must be >= 0, got {fold_in_steps}")
        self.fold_in_steps, self.fold_in_lr = fold_in_steps, fold_in_lr
        self.device = torch.device(device)
        self.tracks = torch.tensor(np.asarray(track_embeddings, dtype=np.float32), device=self.device)
        self.playlists = (
            None if playlist_embeddings is None else torch.tensor(np.asarray(playlist_embeddings, dtype=np.float32))
        )
        self.seed_query = seed_query
        self.bias_column = bias_column  # the track vectors end in a per-track bias, not a direction
        if seed_query is not None:
            self.track_seed = torch.tensor(np.asarray(seed_query["track_seed"], dtype=np.float32))
            self.playlist_h0 = torch.tensor(seed_query["playlist_h0"], dtype=torch.float32)

    def from_seeds(self, seeds: np.ndarray, h0: torch.Tensor | None = None) -> torch.Tensor:
        """The query vector of a playlist made of ``seeds`` (track ids); ``h0``: its input
        projection (default: an average playlist's, or one fitted to the seeds: ``fold_in_steps``)."""
        idx = torch.from_numpy(np.asarray(seeds, dtype=np.int64))
        if self.seed_query is None:
            return self.tracks[idx.to(self.device)].mean(0).cpu()
        propagated = self.track_seed[idx].mean(0)
        if h0 is None:
            h0 = self.playlist_h0
            if self.fold_in_steps and self.seed_query["layer_mean"]:
                h0 = self._fold_in(idx, propagated)
        return self._readout(h0, propagated)

    def _readout(self, h0: torch.Tensor, propagated: torch.Tensor) -> torch.Tensor:
        """``LinkPredictor.readout`` of a playlist from its input projection and the mean of its
        seeds' ``track_seed`` rows."""
        q = self.seed_query
        v = propagated
        if q["layer_mean"]:
            v = (h0 + v) / (q["layers"] + 1)
        if q["temperature"]:
            v = torch.nn.functional.normalize(v, dim=-1) / q["temperature"] ** 0.5
        if q.get("track_bias"):  # the track vectors end in their bias (LinkPredictor.readout)
            v = torch.nn.functional.pad(v, (0, 1), value=1.0)
        return v

    def _fold_in(self, idx: torch.Tensor, propagated: torch.Tensor) -> torch.Tensor:
        """The input projection fitted to the seeds ``idx``, on the scorer's device."""
        h0 = self.playlist_h0.to(self.device).clone().requires_grad_(True)
        propagated, idx = propagated.to(self.device), idx.to(self.device)
        opt = torch.optim.Adam([h0], lr=self.fold_in_lr)
        with torch.enable_grad():
            for _ in range(self.fold_in_steps):
                loss = -torch.log_softmax(self.tracks @ self._readout(h0, propagated), 0)[idx].mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        return h0.detach().cpu()

    def query_vectors(self, queries: Queries) -> torch.Tensor:
        dim = self.tracks.shape[1]
        out = torch.zeros((len(queries), dim), dtype=torch.float32)
        for b in range(len(queries)):
            pid = int(queries.playlist_ids[b])
            if pid >= 0 and self.playlists is not None:
                out[b] = self.playlists[pid]
            else:
                seeds = queries.seeds(b)
                if len(seeds):
                    out[b] = self.from_seeds(seeds)
        return out.to(self.device)

    def batch(self, queries: Queries) -> ChunkScores:
        q = self.query_vectors(queries)
        return lambda start, stop: q @ self.tracks[start:stop].T


def popularity_floor(popularity: np.ndarray) -> np.ndarray:
    """Popularity squeezed into [-1, 0): what ranks a method's unscored tracks after every scored one."""
    return (popularity / (popularity.max(initial=0.0) + 1.0) - 1.0).astype(np.float32)
