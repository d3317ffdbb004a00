"""The RecSys 2018 protocol, one implementation for evaluation and for model selection during
training: which playlists are held out and what they are asked, which tracks may be ranked, how
per-playlist metrics are reduced across batches and ranks, and the report.

A held-out playlist's seeds (role=seed) are its query; its hidden tracks (role=hidden, seeds
excepted) are the ground truth. A track both seed and hidden (a playlist repeating it) cannot be
recommended, since seeds are masked: it is not ground truth. Sums are kept in fixed point (2^-32
resolution), so shards of the playlists add up exactly to the whole, whatever the world size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from tqdm import tqdm

from etl import contract
from trainer.evaluation.metrics import METRICS, batch_metrics, summarise
from trainer.evaluation.scoring import Queries, Scorer, TopK, rank
from trainer.io.catalogue import Catalogue

FIXED_POINT = float(2**32)


@dataclass
class HeldOut:
    """The held-out playlists of one split: queries (seeds, titles), ground truth, categories."""

    playlist_ids: np.ndarray
    categories: np.ndarray  # object [N]
    queries: Queries
    truth_indptr: np.ndarray
    truth_tracks: np.ndarray
    without_hidden: int  # playlists of the split with no hidden edge (not scored)

    def __len__(self) -> int:
        return len(self.playlist_ids)

    def take(self, rows: np.ndarray) -> "HeldOut":
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(self.truth_indptr)[rows]
        tracks = [self.truth_tracks[self.truth_indptr[r] : self.truth_indptr[r + 1]] for r in rows]
        return HeldOut(
            self.playlist_ids[rows],
            self.categories[rows],
            self.queries.take(rows),
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            np.concatenate(tracks).astype(np.int64) if len(rows) else np.zeros(0, np.int64),
            0,
        )

    def evenly(self, n: int) -> "HeldOut":
        """``n`` of these playlists, evenly spaced over them so every category keeps its share (all of
        them when ``n`` is 0 or not below their count)."""
        if not 0 < n < len(self):
            return self
        return self.take(np.unique(np.linspace(0, len(self) - 1, n).round().astype(np.int64)))

    def slice(self, lo: int, hi: int) -> "HeldOut":
        indptr = self.truth_indptr[lo : hi + 1]
        return HeldOut(
            self.playlist_ids[lo:hi],
            self.categories[lo:hi],
            self.queries.take(np.arange(lo, hi)),
            indptr - indptr[0],
            self.truth_tracks[indptr[0] : indptr[-1]],
            0,
        )


def build_held_out(
    in_split: np.ndarray,
    seeds: sp.csr_matrix,
    hidden: sp.csr_matrix,
    titles: list[str] | None = None,
    categories: np.ndarray | None = None,
) -> HeldOut:
    """Held-out playlists ``in_split`` (sorted playlist ids) from binary playlist × track matrices
    of seed and hidden edges; playlists left without ground truth are counted, not scored."""
    seeds, truth = seeds[in_split], hidden[in_split]
    truth = (truth - truth.multiply(seeds)).tocsr()
    truth.eliminate_zeros()
    has_truth = np.diff(truth.indptr) > 0
    keep = np.flatnonzero(has_truth)
    ids = in_split[keep].astype(np.int64)
    seeds, truth = seeds[keep], truth[keep]
    queries = Queries(
        seeds.indptr.astype(np.int64),
        seeds.indices.astype(np.int64),
        [titles[i] for i in ids] if titles is not None else [""] * len(ids),
        ids,
    )
    return HeldOut(
        ids,
        categories[ids] if categories is not None else np.full(len(ids), None, dtype=object),
        queries,
        truth.indptr.astype(np.int64),
        truth.indices.astype(np.int64),
        int((~has_truth).sum()),
    )


def held_out(graph: Catalogue, split: str) -> HeldOut:
    """Seeds and ground truth of every playlist of ``split`` (val or test) of a graph dir."""
    if split not in (contract.SPLIT_VAL, contract.SPLIT_TEST):
        raise ValueError(f"--split must be val or test, got {split!r}")
    return build_held_out(
        np.flatnonzero(graph.playlist_split == split),
        graph.edges((contract.ROLE_SEED,)),
        graph.edges((contract.ROLE_HIDDEN,)),
        graph.playlist_title,
        graph.playlist_category,
    )


def visible_tracks(visible_edge_tracks: np.ndarray, num_tracks: int) -> np.ndarray:
    """The tracks that may be ranked: those with a visible (train or seed) edge. A track the graph
    holds only because of hidden edges is known only through the ground truth."""
    return np.bincount(np.asarray(visible_edge_tracks, dtype=np.int64), minlength=num_tracks) > 0


def visible_catalogue(graph: Catalogue) -> np.ndarray:
    """:func:`visible_tracks` of a graph dir."""
    visible = np.isin(graph.edge_role, [contract.ROLES.index(r) for r in contract.VISIBLE_ROLES])
    return visible_tracks(graph.edge_track[visible], graph.num_tracks)


def category_order(categories: np.ndarray) -> list[str]:
    present = {c for c in categories if c is not None}
    known = [c.name for c in contract.SEED_CATEGORIES if c.name in present]
    return known + sorted(present - set(known))


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous block [lo, hi) of n items for ``rank`` of ``world`` (sizes differ by ≤ 1)."""
    return n * rank // world, n * (rank + 1) // world


def metrics_per_batch(
    held: HeldOut,
    scorers: dict[str, Scorer],
    fallback: Scorer | None,
    track_artist: np.ndarray,
    k: int,
    batch_size: int,
    chunk_size: int,
    device: torch.device,
    allowed: np.ndarray | None = None,
):
    """``(lo, hi, {method: values})`` per batch of playlists: each scorer's per-playlist metrics
    (``METRICS`` -> array [hi - lo]), with the title fallback for playlists without seeds. Within a
    batch every scorer's top-k is computed once (:class:`~trainer.evaluation.scoring.TopK`): the
    second stage reads its retrievers' from the same pass as their own columns."""
    for lo in range(0, len(held), batch_size):
        hi = min(lo + batch_size, len(held))
        part = held.slice(lo, hi)
        top = TopK(part.queries, len(track_artist), chunk_size, device, allowed)
        values = {}
        for name, scorer in scorers.items():
            ranked = rank(scorer, fallback, part.queries, len(track_artist), k, chunk_size, device, allowed, top)
            values[name] = batch_metrics(ranked, part.truth_indptr, part.truth_tracks, track_artist)
        yield lo, hi, values


def score_sums(
    held: HeldOut,
    scorers: dict[str, Scorer],
    fallback: Scorer | None,
    groups: list[str],
    track_artist: np.ndarray,
    k: int,
    batch_size: int,
    chunk_size: int,
    device: torch.device,
    progress: bool = False,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point metric sums int64 [methods, 1 + groups, metrics] and counts [1 + groups].

    Group 0 is overall. Sums of shards add up exactly to the sums of the whole.
    """
    group_of = {g: i + 1 for i, g in enumerate(groups)}
    group = np.array([group_of.get(c, 0) for c in held.categories], dtype=np.int64)
    sums = np.zeros((len(scorers), 1 + len(groups), len(METRICS)), dtype=np.int64)
    counts = np.bincount(group, minlength=1 + len(groups)).astype(np.int64)
    counts[0] = len(held)
    bar = tqdm(total=len(held), desc="evaluate", unit="playlist", disable=not progress)
    batches = metrics_per_batch(held, scorers, fallback, track_artist, k, batch_size, chunk_size, device, allowed)
    for lo, hi, by_method in batches:
        for mi, values in enumerate(by_method.values()):
            fixed = np.stack([np.rint(values[m] * FIXED_POINT).astype(np.int64) for m in METRICS], 1)
            sums[mi, 0] += fixed.sum(axis=0)
            grouped = group[lo:hi] > 0  # a category outside ``groups`` counts in overall alone, once
            np.add.at(sums[mi], group[lo:hi][grouped], fixed[grouped])
        bar.update(hi - lo)
    bar.close()
    return sums, counts


def report(sums: np.ndarray, counts: np.ndarray, methods: list[str], groups: list[str]) -> dict:
    """The ``methods`` block of eval_<split>.json from reduced sums and counts."""
    out = {}
    for mi, m in enumerate(methods):
        means = [
            summarise(dict(zip(METRICS, sums[mi, g] / FIXED_POINT)), int(counts[g])) for g in range(1 + len(groups))
        ]
        out[m] = {"overall": means[0], "by_category": dict(zip(groups, means[1:]))}
    return out


def format_table(results: dict) -> str:
    """Methods × metrics, overall and per category, as aligned text."""
    head = f"{'method':<11}{'group':<12}{'n':>6}" + "".join(f"{m:>18}" for m in METRICS)
    lines = [head, "-" * len(head)]
    for method, block in results["methods"].items():
        for group, values in [("overall", block["overall"]), *block["by_category"].items()]:
            lines.append(
                f"{method:<11}{group:<12}{values['num_playlists']:>6}" + "".join(f"{values[m]:>18.4f}" for m in METRICS)
            )
    return "\n".join(lines)
