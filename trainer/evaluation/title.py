"""The title model every method shares for a playlist without seeds, in three tiers:

1. the tracks most frequent among the visible edges (training playlists' tracks, held-out
   playlists' seeds) of the playlists with the query's normalised title;
2. the tracks whose artist, album or track name holds every word of the title ("coldplay",
   "christmas", "broadway": a title no playlist carries still names what it wants), most popular
   first;
3. every other track by global popularity.

Tier 1 generalises across playlists, tier 2 across titles. Spreading a title over its words or
character n-grams through other playlists' titles (IDF-weighted neighbours, with or without
co-occurrence smoothing) ranked worse than popularity on the real dev set, where a word holds a
handful of playlists (bench/log/2026-12-06-title-models.md).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from trainer.evaluation.scoring import ChunkScores, Queries, popularity_floor

# Tier 2 keeps the most popular tracks of a title's name matches: a common word ("love") is in
# tens of thousands of track names at full MPD size, and no list is asked for more than this.
MAX_NAME_MATCHES = 10_000


class NameIndex:
    """Which tracks have a name (one field: artist, album or track) holding every word of a title.

    ``names``: per field, a code per track into a list of distinct normalised names
    (``trainer.io.catalogue.track_names``)."""

    def __init__(self, names: dict[str, tuple[np.ndarray, list[str]]]):
        self.fields = []
        for codes, distinct in names.values():
            vocab: dict[str, int] = {}
            rows, cols = [], []
            for i, name in enumerate(distinct):
                for w in set(name.split()):
                    rows.append(vocab.setdefault(w, len(vocab)))
                    cols.append(i)
            word_names = sp.csr_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(len(vocab), len(distinct)))
            word_names.sort_indices()
            order = np.argsort(codes, kind="stable")  # the tracks of each name, contiguous
            starts = np.searchsorted(codes[order], np.arange(len(distinct) + 1))
            self.fields.append((vocab, word_names, order, starts))

    def matches(self, title: str) -> np.ndarray:
        """Track ids (sorted) with a name holding every word of ``title``."""
        words = set(title.split())
        found = []
        for vocab, word_names, order, starts in self.fields:
            ids = [vocab.get(w) for w in words]
            if not ids or None in ids:
                continue
            postings = sorted(
                (word_names.indices[word_names.indptr[j] : word_names.indptr[j + 1]] for j in ids), key=len
            )
            held = postings[0]
            for p in postings[1:]:
                held = np.intersect1d(held, p, assume_unique=True)
            if len(held):
                found.append(np.concatenate([order[starts[n] : starts[n + 1]] for n in held]))
        return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


class TitleModel:
    """The three tiers above as a scorer: tier 1 scores ≥ 1 (the title count, plus popularity
    within a count), tier 2 in [0, 1) by popularity, tier 3 below 0 (the track's ``popularity_floor``).

    Counted over ``visible`` edges: a held-out playlist's seeds are as much a known answer to its
    title as a training playlist's tracks (a challenge set's seeds are given too). Hidden tracks
    are never visible. ``names=None`` leaves tier 2 out.
    """

    SOURCE = "visible+names"  # what it reads; a second-stage ranker records it

    def __init__(
        self,
        visible: sp.csr_matrix,
        titles: list[str],
        popularity: np.ndarray,
        names: dict[str, tuple[np.ndarray, list[str]]] | None = None,
    ):
        distinct = sorted({t for t, n in zip(titles, np.diff(visible.indptr)) if t and n})
        self.index = {t: i for i, t in enumerate(distinct)}
        rows = np.array([self.index.get(t, -1) for t in titles])
        keep = np.flatnonzero(rows >= 0)
        by_title = sp.csr_matrix(
            (np.ones(len(keep), dtype=np.float32), (rows[keep], keep)), shape=(len(distinct), visible.shape[0])
        )
        self.counts = (by_title @ visible).tocsr()  # title × track
        self.names = NameIndex(names) if names is not None else None
        self.popularity = popularity
        self.below = popularity_floor(popularity)

    def name_matches(self, title: str) -> np.ndarray:
        """Tier 2 of ``title``: its name matches among visible tracks, the most popular first."""
        if self.names is None or not title:
            return np.zeros(0, np.int64)
        hits = self.names.matches(title)
        hits = hits[self.popularity[hits] > 0]
        return hits[np.argsort(-self.popularity[hits], kind="stable")[:MAX_NAME_MATCHES]]

    def batch(self, queries: Queries) -> ChunkScores:
        rows = np.array([self.index.get(t, -1) for t in queries.titles], dtype=np.int64)
        if len(self.index):
            known = sp.diags((rows >= 0).astype(np.float32))
            picked = (known @ self.counts[np.maximum(rows, 0)]).tocsc()
        else:
            picked = sp.csc_matrix((len(rows), self.counts.shape[1]), dtype=np.float32)
        found = {t: self.name_matches(t) for t in set(queries.titles)}
        hits = [found[t] for t in queries.titles]
        named = sp.csr_matrix(
            (
                np.ones(sum(map(len, hits)), np.float32),
                np.concatenate([np.zeros(0, np.int64), *hits]),
                np.concatenate([[0], np.cumsum([len(h) for h in hits])]),
            ),
            shape=picked.shape,
        ).tocsc()
        below = self.below

        def chunk(start: int, stop: int) -> torch.Tensor:
            # Every track starts at its popularity floor (tier 3); the few the title reaches are then
            # set in place: one pass over [B, tracks] where dense tiers took several.
            floor = below[start:stop]
            within = floor + 1.0  # popularity in [0, 1)
            out = np.broadcast_to(floor, (len(rows), stop - start)).copy()
            named_part = named[:, start:stop].tocoo()
            keep = within[named_part.col] > 0  # a name match of a track no playlist holds stays at its floor
            col = named_part.col[keep]
            out[named_part.row[keep], col] = within[col]
            counted = picked[:, start:stop].tocoo()
            keep = counted.data > 0  # unknown titles' rows hold explicit zeros
            col = counted.col[keep]
            out[counted.row[keep], col] = counted.data[keep] + within[col]
            return torch.from_numpy(out)

        return chunk
