"""The baselines the GNN has to beat, as scorers for ``trainer.scoring.top_k``.

- ``Popularity``: how many playlists hold the track among VISIBLE edges (train + seed; never a
  hidden one).
- ``ItemKNN``: item co-occurrence over training playlists, IDF-weighted:
  score(t) = Σ_p w(p)^gamma · [t ∈ p] / df(t)^beta with w(p) = Σ_{s ∈ seeds ∩ p} idf(s),
  df(t) the number of training playlists holding t and idf(s) = log(1 + N / df(s)). With
  gamma = 1 this is exactly Σ_{s ∈ seeds} idf(s) · co(s, t) / df(t)^beta (co = playlists holding
  both); gamma > 1 favours playlists that share several seeds. Computed as
  ``(seeds × playlists) @ (playlists × tracks)`` per batch of queries and chunk of tracks, with
  scipy.sparse: no track × track matrix is ever formed (at MPD scale it would not fit).
- ``TitlePopularity``: the fallback for a playlist without seeds: the tracks most frequent in
  training playlists with the same normalised title, then global popularity.

Where a method gives a track no score (no co-occurrence, no title match), the remaining tracks
follow by global popularity, so every method fills all K slots sensibly.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from trainer.scoring import ChunkScores, Queries


def popularity_counts(visible: sp.csr_matrix) -> np.ndarray:
    """Playlists per track over a binary playlist × track matrix of visible edges."""
    return np.asarray(visible.sum(axis=0)).ravel().astype(np.float64)


def _below(popularity: np.ndarray) -> np.ndarray:
    # Popularity squeezed into [-1, 0): ranks unscored tracks after every scored one.
    return (popularity / (popularity.max(initial=0.0) + 1.0) - 1.0).astype(np.float32)


def _with_fallback(scores: np.ndarray, below: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.where(scores > 0, scores, below[None, :]).astype(np.float32))


class Popularity:
    """The same most-popular tracks for everybody (seeds excepted)."""

    def __init__(self, popularity: np.ndarray):
        self.scores = torch.from_numpy(popularity.astype(np.float32))

    def batch(self, queries: Queries) -> ChunkScores:
        rows = len(queries)
        return lambda start, stop: self.scores[start:stop].expand(rows, -1)


class TitlePopularity:
    """Popularity among training playlists with the query's normalised title, then global."""

    def __init__(self, train: sp.csr_matrix, titles: list[str], popularity: np.ndarray):
        names = sorted({t for t, n in zip(titles, np.diff(train.indptr)) if t and n})
        self.index = {t: i for i, t in enumerate(names)}
        rows = np.array([self.index.get(t, -1) for t in titles])
        keep = np.flatnonzero(rows >= 0)
        by_name = sp.csr_matrix(
            (np.ones(len(keep), dtype=np.float32), (rows[keep], keep)),
            shape=(len(names), train.shape[0]),
        )
        self.counts = (by_name @ train).tocsr()  # title × track
        self.below = _below(popularity)

    def batch(self, queries: Queries) -> ChunkScores:
        rows = np.array([self.index.get(t, -1) for t in queries.titles], dtype=np.int64)
        if len(self.index):
            known = sp.diags((rows >= 0).astype(np.float32))
            picked = (known @ self.counts[np.maximum(rows, 0)]).tocsc()
        else:
            picked = sp.csc_matrix((len(rows), self.counts.shape[1]), dtype=np.float32)
        below = self.below

        def chunk(start: int, stop: int) -> torch.Tensor:
            counts = picked[:, start:stop].toarray()
            # Among title matches, ties go to the globally popular track.
            return _with_fallback(counts + (counts > 0) * (below[start:stop] + 1.0), below[start:stop])

        return chunk


class ItemKNN:
    """IDF-weighted item co-occurrence with the seed tracks over training playlists."""

    def __init__(self, train: sp.csr_matrix, popularity: np.ndarray, chunk_size: int,
                 beta: float = 0.0, gamma: float = 1.0):
        if beta < 0 or gamma <= 0:
            raise ValueError(f"ItemKNN: need beta >= 0 and gamma > 0, got beta={beta}, gamma={gamma}")
        self.gamma = gamma
        train = train.tocsr().astype(np.float32)
        num_playlists = int((np.diff(train.indptr) > 0).sum())
        df = np.asarray(train.sum(axis=0)).ravel()
        self.idf = np.log1p(num_playlists / np.maximum(df, 1.0)).astype(np.float32)
        self.target = np.where(df > 0, np.maximum(df, 1.0) ** -beta, 0.0).astype(np.float32)
        self.by_track = train.T.tocsr()  # track × playlist
        self.chunk_size = chunk_size
        csc = train.tocsc()
        self.num_tracks = train.shape[1]
        self.columns = [csc[:, a:min(a + chunk_size, self.num_tracks)].tocsr()
                        for a in range(0, self.num_tracks, chunk_size)]
        self.below = _below(popularity)

    def batch(self, queries: Queries) -> ChunkScores:
        seeds = sp.csr_matrix(
            (self.idf[queries.seed_tracks], queries.seed_tracks, queries.seed_indptr),
            shape=(len(queries), self.num_tracks),
        )
        neighbours = (seeds @ self.by_track).tocsr()  # query × training playlist
        if self.gamma != 1.0:
            neighbours.data **= self.gamma

        def chunk(start: int, stop: int) -> torch.Tensor:
            if start % self.chunk_size or stop != min(start + self.chunk_size, self.num_tracks):
                raise ValueError(
                    f"ItemKNN was built for chunks of {self.chunk_size} tracks; asked for"
                    f" [{start}, {stop})"
                )
            co = (neighbours @ self.columns[start // self.chunk_size]).toarray()
            return _with_fallback(co * self.target[start:stop], self.below[start:stop])

        return chunk
