"""The baselines the GNN has to beat, as scorers for ``trainer.evaluation.scoring.top_k``.

- ``Popularity``: how many playlists hold the track among VISIBLE edges (train + seed; never a
  hidden one).
- ``ItemKNN``: item co-occurrence over training playlists, IDF-weighted:
  score(t) = Σ_p w(p)^gamma · [t ∈ p] / df(t)^beta with w(p) = Σ_{s ∈ seeds ∩ p} idf(s)
  (over the ``neighbours`` playlists of largest w(p) when that is > 0, as user-kNN cuts them),
  df(t) the number of training playlists holding t and idf(s) = log(1 + N / df(s)). With
  gamma = 1 this is exactly Σ_{s ∈ seeds} idf(s) · co(s, t) / df(t)^beta (co = playlists holding
  both); gamma > 1 favours playlists that share several seeds. Computed as
  ``(seeds × playlists) @ (playlists × tracks)`` per batch of queries and chunk of tracks, with
  scipy.sparse: no track × track matrix is ever formed (at MPD scale it would not fit).
- ``ALS``: implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008) fitted with the
  ``implicit`` package on the training playlists' train edges, confidence c = 1 + alpha·r. A
  held-out playlist is folded in from its seeds by the least-squares solve of one ALS half-step,
  u = (YᵀY + Yᵀ(C_u − I)Y + λI)⁻¹ Yᵀ C_u p_u (what implicit's ``recalculate_user`` computes),
  batched over queries; the track factors stay fixed.

Where a method gives a track no score (no co-occurrence), the remaining tracks follow by global
popularity, so every method fills all K slots sensibly. The title model for playlists without
seeds is ``trainer.evaluation.title``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import torch

from trainer.evaluation.scoring import ChunkScores, Queries, in_threads, popularity_floor

log = logging.getLogger(__name__)


def popularity_counts(visible: sp.csr_matrix) -> np.ndarray:
    """Playlists per track over a binary playlist × track matrix of visible edges."""
    return np.asarray(visible.sum(axis=0)).ravel().astype(np.float64)


class Popularity:
    """The same most-popular tracks for everybody (seeds excepted)."""

    def __init__(self, popularity: np.ndarray):
        self.scores = torch.from_numpy(popularity.astype(np.float32))

    def batch(self, queries: Queries) -> ChunkScores:
        rows = len(queries)
        return lambda start, stop: self.scores[start:stop].expand(rows, -1)


def _keep_largest(m: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """``m`` with each row's ``n`` largest entries kept (ties at the cut: the lower column)."""
    keep = np.ones(m.nnz, bool)
    for r in range(m.shape[0]):
        lo, hi = m.indptr[r], m.indptr[r + 1]
        if hi - lo > n:
            # Stable order on (-value, column): the same cut whatever the row's storage order.
            order = np.lexsort((m.indices[lo:hi], -m.data[lo:hi]))
            keep[lo + order[n:]] = False
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))[keep]
    return sp.csr_matrix((m.data[keep], (rows, m.indices[keep])), shape=m.shape)


class ItemKNN:
    """IDF-weighted item co-occurrence with the seed tracks over training playlists.

    Per batch of queries, each training playlist's weight w(p)^gamma is one dense column per
    query ([playlists, B]); a chunk of tracks is then the sparse track × playlist rows times those
    columns. That costs the chunk's edges × B whatever the seeds, where a sparse × sparse product
    costs Σ len(p) over every playlist sharing a seed: at 1M playlists a popular seed is in tens
    of thousands of them, and the dense form took 1.3× less CPU there (bench/log/2026-12-05-1m-etl-and-evaluation.md).
    """

    def __init__(
        self, train: sp.csr_matrix, popularity: np.ndarray, beta: float = 0.0, gamma: float = 1.0, neighbours: int = 0
    ):
        if beta < 0 or gamma <= 0 or neighbours < 0:
            raise ValueError(
                f"ItemKNN: need beta >= 0, gamma > 0 and neighbours >= 0, got beta={beta}, "
                f"gamma={gamma}, neighbours={neighbours}"
            )
        self.gamma, self.neighbours = gamma, neighbours
        train = train.tocsr().astype(np.float32)
        num_playlists = int((np.diff(train.indptr) > 0).sum())
        df = np.asarray(train.sum(axis=0)).ravel()
        self.idf = np.log1p(num_playlists / np.maximum(df, 1.0)).astype(np.float32)
        self.target = torch.from_numpy(np.where(df > 0, np.maximum(df, 1.0) ** -beta, 0.0).astype(np.float32))
        self.by_track = train.T.tocsr()  # track × playlist
        self.num_tracks = train.shape[1]
        self.below = torch.from_numpy(popularity_floor(popularity))

    def batch(self, queries: Queries) -> ChunkScores:
        seeds = sp.csr_matrix(
            (self.idf[queries.seed_tracks], queries.seed_tracks, queries.seed_indptr),
            shape=(len(queries), self.num_tracks),
        )
        neighbours = (seeds @ self.by_track).tocsr()  # query × training playlist
        if self.neighbours:
            neighbours = _keep_largest(neighbours, self.neighbours)
        if self.gamma != 1.0:
            neighbours.data **= self.gamma
        weights = neighbours.T.toarray()  # [playlists, B], C order: what csr @ dense reads row by row

        def chunk(start: int, stop: int) -> torch.Tensor:
            co = torch.from_numpy(self._co_occurrence(start, stop, weights))
            co.mul_(self.target[start:stop])
            return torch.where(co > 0, co, self.below[start:stop])

        return chunk

    def _co_occurrence(self, start: int, stop: int, weights: np.ndarray) -> np.ndarray:
        """``(by_track[start:stop] @ weights).T`` as a C-order [B, stop - start] array (top-k along a
        strided row is several times slower), in pieces of equal edges on torch's intra-op threads:
        scipy's sparse product releases the GIL and reads the weights at random, so two threads take
        half the time of one (bench/log/2026-12-08-evaluation-speed.md). Each piece sums its rows'
        playlists in the same order as the whole product would: the same floats."""
        out = np.empty((weights.shape[1], stop - start), np.float32)
        indptr = self.by_track.indptr
        threads = max(1, min(torch.get_num_threads(), stop - start))
        cuts = np.searchsorted(indptr, np.linspace(indptr[start], indptr[stop], threads + 1)[1:-1]).clip(start, stop)
        bounds = [start, *cuts.tolist(), stop]

        def piece(bound: tuple[int, int]) -> None:
            lo, hi = bound
            out[:, lo - start : hi - start] = (self.by_track[lo:hi] @ weights).T

        in_threads(piece, list(zip(bounds[:-1], bounds[1:])))
        return out


@dataclass(frozen=True)
class ALSParams:
    """ALS hyper-parameters. The defaults were chosen on the val split of the 2,000-playlist real
    dev graph (bench/RESULTS.md, "ALS baseline"); regularization 0.01-10 made no difference there."""

    factors: int = 64
    regularization: float = 0.1
    alpha: float = 20.0
    iterations: int = 30
    random_state: int = 0
    num_threads: int = 0  # implicit's convention: 0 = every core

    def __post_init__(self):
        if self.factors < 1 or self.iterations < 1 or self.num_threads < 0:
            raise ValueError(f"ALS: need factors >= 1, iterations >= 1, num_threads >= 0; got {self}")
        if self.regularization <= 0 or self.alpha <= 0:
            # lambda > 0 keeps every fold-in system positive definite, seeds or not.
            raise ValueError(f"ALS: need regularization > 0 and alpha > 0; got {self}")

    def as_dict(self) -> dict:
        return asdict(self)


def fit_als(train: sp.csr_matrix, params: ALSParams):
    """implicit's ALS fitted on a binary playlist × track matrix, confidence 1 + alpha·r.

    implicit's own ``alpha`` scales r into c = alpha·r (so alpha = 1 would give observed edges
    no more weight than missing ones); the Hu et al. confidence is passed as the data instead,
    with implicit's alpha left at 1.
    """
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    confidence = train.tocsr().astype(np.float32, copy=True)
    confidence.data = 1.0 + params.alpha * confidence.data
    # implicit runs its own threads; a multi-threaded BLAS inside them only oversubscribes (and
    # implicit warns about it when the model is built).
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=1.0,
            iterations=params.iterations,
            random_state=params.random_state,
            # 0 would be OpenMP's default, which OMP_NUM_THREADS=1 (torchrun's, per rank) makes one core.
            num_threads=params.num_threads or len(os.sched_getaffinity(0)),
            calculate_training_loss=False,
        )
        log.info(
            "fitting ALS: %s playlists x %s tracks, %d factors, %d iterations",
            f"{train.shape[0]:,}",
            f"{train.shape[1]:,}",
            params.factors,
            params.iterations,
        )
        model.fit(confidence, show_progress=log.isEnabledFor(logging.INFO))
    return model


def item_factors_of(train: sp.csr_matrix, params: ALSParams) -> torch.Tensor:
    """The fitted track factors [tracks, factors], float32."""
    return torch.from_numpy(np.ascontiguousarray(fit_als(train, params).item_factors, dtype=np.float32))


def fold_in(
    item_factors: torch.Tensor, queries: Queries, alpha: float, regularization: float, gram: torch.Tensor | None = None
) -> torch.Tensor:
    """Playlist factors [B, f] of ``queries`` from their seed tracks, track factors fixed: the
    exact solve u = (YᵀY + alpha·Y_sᵀY_s + λI)⁻¹ (1 + alpha)·Σ_s y_s, in float64. ``gram``: YᵀY
    in float64 when already computed (it is the same for every batch: at 1M tracks, ~10 GFLOP)."""
    f = item_factors.shape[1]
    if gram is None:
        y = item_factors.double()
        gram = y.T @ y
    counts = torch.from_numpy(queries.num_seeds())
    rows = len(queries)
    width = int(counts.max()) if rows else 0
    # Seeds padded to [B, width, f]; the padding rows are zero and add nothing.
    row = torch.repeat_interleave(torch.arange(rows), counts)
    col = torch.arange(len(row)) - torch.repeat_interleave(torch.from_numpy(queries.seed_indptr[:-1]), counts)
    seeds = torch.zeros((rows, width, f), dtype=torch.float64)
    seeds[row, col] = item_factors[torch.from_numpy(queries.seed_tracks)].double()
    a = (gram + regularization * torch.eye(f, dtype=torch.float64)).expand(rows, f, f)
    a = a + alpha * seeds.transpose(1, 2) @ seeds
    b = (1.0 + alpha) * seeds.sum(dim=1)
    return torch.linalg.solve(a, b)


class ALS:
    """Implicit-feedback ALS: dot products of the folded-in playlist with the track factors.

    Tracks without a training edge (zero factors: no data to solve them from) rank after
    every track with one, by popularity; a playlist none of whose seeds has a training edge
    folds in to zero and is ranked by popularity alone.
    """

    def __init__(
        self,
        train: sp.csr_matrix,
        popularity: np.ndarray,
        params: ALSParams = ALSParams(),
        item_factors: torch.Tensor | None = None,
    ):
        """``item_factors``: a fit already made (:func:`item_factors_of` the same data and params)."""
        self.params = params
        self.tracks = item_factors_of(train, params) if item_factors is None else item_factors.clone()
        self.trained = torch.from_numpy(train.getnnz(axis=0) > 0)
        # Exactly what the least-squares solve gives a track without data (implicit's CG gives 0
        # too, on the real dev graph); stated here so an untrained seed never moves a fold-in.
        self.tracks[~self.trained] = 0.0
        self.below = torch.from_numpy(popularity_floor(popularity))
        tracks = self.tracks.double()
        self.gram = tracks.T @ tracks

    def query_vectors(self, queries: Queries) -> torch.Tensor:
        p = self.params
        return fold_in(self.tracks, queries, p.alpha, p.regularization, self.gram).float()

    def batch(self, queries: Queries) -> ChunkScores:
        u = self.query_vectors(queries)
        norm = u.norm(dim=1, keepdim=True)
        # |u·y| <= |u| max|y|: one below that bound, the untrained tracks cannot outrank a trained one.
        floor = -norm * self.tracks.norm(dim=1).max() - 2.0
        folded = norm > 0

        def chunk(start: int, stop: int) -> torch.Tensor:
            below = self.below[start:stop]
            scores = torch.where(self.trained[start:stop], u @ self.tracks[start:stop].T, floor + 1.0 + below)
            return torch.where(folded, scores, below.expand_as(scores))

        return chunk
