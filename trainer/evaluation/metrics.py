"""The RecSys Challenge 2018 metrics, as the challenge defined them (numpy only).

For one playlist with ground truth G (its hidden tracks, a set) and a ranked list R (at most
``K = 500`` track ids, best first; ``-1`` marks an empty slot):

- ``r_precision_track`` = |G ∩ R[1:|G|]| / |G|.
- ``r_precision``: the challenge's version with artist credit. Our reading of
  "(|G ∩ R[1:|G|]| + 0.25 · artist matches) / |G|": a track match takes precedence and scores 1;
  every other recommendation in R[1:|G|] scores 0.25 when its artist is the artist of a ground
  truth track that no recommendation in R[1:|G|] matched, and each such ground truth track can
  give its artist credit once. Per artist a the credit is therefore
  min(#non-matching recommendations of a in R[1:|G|], #unmatched ground truth tracks of a), so
  every ground truth track is claimed at most once and the score stays in [0, 1].
- ``ndcg``: DCG = rel_1 + Σ_{i≥2} rel_i / log2(i); IDCG = 1 + Σ_{i=2}^{|G ∩ R|} 1 / log2(i)
  (the challenge normalises by the hits found, not by |G|); 0 when |G ∩ R| = 0. Ranks 1 and 2
  both weigh 1.
- ``clicks`` (Recommended Songs clicks) = ⌊(rank of the first hit − 1) / 10⌋ with 1-based rank;
  51 when no track of G is in R.
- ``recall@k`` = |G ∩ R[1:k]| / |G|.

A track repeated in R counts once: its first occurrence may be a hit, later copies never are
(they still take their rank), as the challenge scored a list through sets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

K = 500
NO_CLICK = 51
RECALL_AT = (10, 50, 100, 500)
ARTIST_CREDIT = 0.25
METRICS = ("r_precision", "r_precision_track", "ndcg", "clicks") + tuple(f"recall@{k}" for k in RECALL_AT)
CHALLENGE_METRICS = ("r_precision", "ndcg", "clicks")  # what the RecSys Challenge 2018 ranked teams by


def playlist_metrics(
    recommended: Sequence[int], truth: Sequence[int], artist_of: Mapping[int, int] | Sequence[int]
) -> dict[str, float]:
    """Metrics of one ranked list against one playlist's ground truth (the reference form).

    ``artist_of[track]`` gives a track's artist. Only the first ``K`` recommendations count.
    """
    truth_set = set(int(t) for t in truth)
    if not truth_set:
        raise ValueError("playlist_metrics: the ground truth is empty; R-precision is undefined")
    ranked = [int(t) for t in list(recommended)[:K]]
    seen: set[int] = set()
    first = []  # True where a valid track appears for the first time
    for t in ranked:
        first.append(t >= 0 and t not in seen)
        seen.add(t)
    rel = [f and t in truth_set for t, f in zip(ranked, first)]
    n = len(truth_set)

    window = [(t, f, r) for t, f, r in zip(ranked[:n], first[:n], rel[:n])]
    matched = {t for t, _, r in window if r}
    pool = Counter(artist_of[t] for t in truth_set - matched)
    artist_hits = 0
    for t, f, r in window:
        if f and not r and pool[artist_of[t]] > 0:
            pool[artist_of[t]] -= 1
            artist_hits += 1

    hits = sum(rel)
    dcg = sum(1.0 if i == 1 else 1.0 / np.log2(i) for i, r in enumerate(rel, start=1) if r)
    idcg = sum(1.0 if i == 1 else 1.0 / np.log2(i) for i in range(1, hits + 1))
    first_hit = next((i for i, r in enumerate(rel, start=1) if r), None)
    out = {
        "r_precision": (len(matched) + ARTIST_CREDIT * artist_hits) / n,
        "r_precision_track": len(matched) / n,
        "ndcg": dcg / idcg if hits else 0.0,
        "clicks": float(NO_CLICK if first_hit is None else (first_hit - 1) // 10),
    }
    for k in RECALL_AT:
        out[f"recall@{k}"] = sum(rel[:k]) / n
    return out


def batch_metrics(
    ranked: np.ndarray,
    truth_indptr: np.ndarray,
    truth_tracks: np.ndarray,
    track_artist: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per-playlist metrics of a batch, vectorised (same definitions as ``playlist_metrics``).

    ``ranked``: int64 [B, ≤K] track ids, ``-1`` for empty slots. Ground truth of row b:
    ``truth_tracks[truth_indptr[b]:truth_indptr[b+1]]`` (duplicates allowed, counted once; every
    row needs at least one track). ``track_artist``: artist id per track id.
    """
    ranked = np.asarray(ranked, dtype=np.int64)[:, :K]
    num_rows, width = ranked.shape
    truth_indptr = np.asarray(truth_indptr, dtype=np.int64)
    if len(truth_indptr) != num_rows + 1:
        raise ValueError(
            f"batch_metrics: truth_indptr has {len(truth_indptr)} entries for {num_rows} rows; it needs {num_rows + 1}"
        )
    truth_tracks = np.asarray(truth_tracks, dtype=np.int64)
    track_artist = np.asarray(track_artist, dtype=np.int64)
    span = np.int64(max(len(track_artist), int(truth_tracks.max(initial=-1)) + 1, 1))
    truth_row = np.repeat(np.arange(num_rows, dtype=np.int64), np.diff(truth_indptr))
    truth_keys = np.unique(truth_row * span + truth_tracks)
    truth_size = np.bincount(truth_keys // span, minlength=num_rows)
    if (truth_size == 0).any():
        empty = np.flatnonzero(truth_size == 0)[:5].tolist()
        raise ValueError(f"batch_metrics: rows {empty} have an empty ground truth")

    rows = np.broadcast_to(np.arange(num_rows, dtype=np.int64)[:, None], ranked.shape)
    valid = ranked >= 0
    # Empty slots get distinct negative keys, so they never collide with a track or each other.
    empty_keys = -1 - np.arange(ranked.size, dtype=np.int64).reshape(ranked.shape)
    keys = np.where(valid, rows * span + ranked, empty_keys)
    first = np.zeros(ranked.size, dtype=bool)
    _, first_at = np.unique(keys.ravel(), return_index=True)
    first[first_at] = True
    first = first.reshape(ranked.shape) & valid
    rel = first & np.isin(keys, truth_keys)

    pos = np.arange(width, dtype=np.int64)[None, :]
    window = pos < truth_size[:, None]
    matched = rel & window
    track_hits = matched.sum(axis=1)

    # Artist credit: per (row, artist), min(non-matching recs in the window, unmatched truth).
    num_artists = np.int64(max(int(track_artist.max(initial=-1)) + 1, 1))
    rec_mask = first & ~rel & window
    rec_keys = rows[rec_mask] * num_artists + track_artist[ranked[rec_mask]]
    unmatched = ~np.isin(truth_keys, keys[matched])
    g_keys = (truth_keys[unmatched] // span) * num_artists + track_artist[truth_keys[unmatched] % span]
    rec_u, rec_c = np.unique(rec_keys, return_counts=True)
    g_u, g_c = np.unique(g_keys, return_counts=True)
    common, ri, gi = np.intersect1d(rec_u, g_u, assume_unique=True, return_indices=True)
    artist_hits = np.bincount(common // num_artists, weights=np.minimum(rec_c[ri], g_c[gi]), minlength=num_rows)

    discount = np.ones(width)
    discount[1:] = 1.0 / np.log2(np.arange(2, width + 1))
    dcg = rel @ discount
    hits = rel.sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])
    ndcg = np.divide(dcg, ideal[hits], out=np.zeros(num_rows), where=hits > 0)
    first_hit = np.where(rel.any(axis=1), rel.argmax(axis=1), -1)

    out = {
        "r_precision": (track_hits + ARTIST_CREDIT * artist_hits) / truth_size,
        "r_precision_track": track_hits / truth_size,
        "ndcg": ndcg,
        "clicks": np.where(first_hit >= 0, first_hit // 10, NO_CLICK).astype(np.float64),
    }
    cum = np.cumsum(rel, axis=1)
    for k in RECALL_AT:
        at = cum[:, min(k, width) - 1] if width else np.zeros(num_rows)
        out[f"recall@{k}"] = at / truth_size
    return out


def summarise(sums: Mapping[str, float], count: int) -> dict[str, float]:
    """Means from sums and a count (how every rank's partial results are combined)."""
    means = {m: (sums[m] / count if count else float("nan")) for m in METRICS}
    means["num_playlists"] = int(count)
    return means
