"""Which train edges are supervised in an epoch, and which of them each rank trains on.

Per-epoch disjoint split: a seeded hash of ``(seed, epoch, playlist_id, track_id)`` marks a
``ratio`` of the train edges (and, with ``supervise_seeds``, of the held-out playlists' seed
edges) as the epoch's supervision edges; the epoch's message-passing graph drops exactly those,
so no batch can see the edges it is asked to predict. Every rank computes the same split from
the same edges (every rank holds all visible edges for sampling). The supervision
edges are then permuted with ``(seed, epoch)`` and cut into ``world_size`` equal contiguous
shards; the remainder (< world_size edges) is left out so all ranks run the same number of
batches.
"""

from __future__ import annotations

import random

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


# Streams of randomness, each drawn from its own seed (:func:`mix`), so that adding a draw to one
# never shifts another.
SPLIT, SHARD, EPOCH, NEGATIVES, NEIGHBOURS, VAL_EDGES, VAL_NEGATIVES, VAL_PLAYLISTS, VAL_HALVES = range(9)


def mix(seed: int, *parts: int) -> int:
    """A 63-bit seed fixed by ``(seed, *parts)``: the one way the trainer derives seeds (splitmix64
    chained over the parts, so nearby tuples give unrelated streams)."""
    with np.errstate(over="ignore"):
        h = _splitmix64(np.array([int(seed) % 2**64], dtype=np.uint64))
        for part in parts:
            h = _splitmix64(h ^ np.uint64(int(part) % 2**64))
    return int(h[0] >> np.uint64(1))


def generator(seed: int, *parts: int, device=None) -> torch.Generator:
    """A torch generator seeded by :func:`mix`, independent of everything run before."""
    return torch.Generator(device=device).manual_seed(mix(seed, *parts))


def edge_hash(edges: torch.Tensor, seed: int, epoch: int) -> np.ndarray:
    """Uniform [0, 1) value per (playlist_id, track_id) column of ``edges``, fixed by seed and epoch.

    A duplicate edge (a track repeated in a playlist) hashes the same, so both copies fall on the
    same side of the split.
    """
    with np.errstate(over="ignore"):
        salt = np.uint64(mix(seed, SPLIT, epoch))
        pid = edges[0].numpy().astype(np.uint64)
        tid = edges[1].numpy().astype(np.uint64)
        h = _splitmix64(_splitmix64(pid ^ salt) ^ tid)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def selection_half(playlist_ids: np.ndarray) -> np.ndarray:
    """Bool per playlist id: in the val half whose ranking selects the checkpoint
    (``val_selection=half``); the other half trains the second-stage ranker. Fixed by the id
    alone (a hash with seed 0 for every run): every run of a graph splits its val playlists alike."""
    with np.errstate(over="ignore"):
        salt = np.uint64(mix(0, VAL_HALVES))
        h = _splitmix64(np.asarray(playlist_ids).astype(np.uint64) ^ salt)
    return (h >> np.uint64(63)) == 0


def supervision_mask(edges: torch.Tensor, ratio: float, seed: int, epoch: int) -> torch.Tensor:
    """Boolean mask over ``edges`` (2, E): the epoch's supervision edges."""
    return torch.from_numpy(edge_hash(edges, seed, epoch) < ratio)


def epoch_split(
    train_edges: torch.Tensor, seed_edges: torch.Tensor, ratio: float, seed: int, epoch: int, supervise_seeds: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(message-passing edges, supervision edges) of an epoch: the supervision edges are the
    epoch's ``ratio`` of the supervisable ones (train edges, and held-out playlists' seed edges
    when ``supervise_seeds``), and message passing sees every visible edge but those."""
    pool = torch.cat([train_edges, seed_edges], dim=1) if supervise_seeds else train_edges
    sup = supervision_mask(pool, ratio, seed, epoch)
    message_passing = pool[:, ~sup] if supervise_seeds else torch.cat([pool[:, ~sup], seed_edges], dim=1)
    return message_passing, pool[:, sup].long()


def rank_shard(num_edges: int, rank: int, world_size: int, seed: int, epoch: int) -> torch.Tensor:
    """Indices (into the epoch's supervision edges) this rank trains on: equal, disjoint shards."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")
    per_rank = num_edges // world_size
    perm = torch.randperm(num_edges, generator=generator(seed, SHARD, epoch))
    return perm[rank * per_rank : (rank + 1) * per_rank]


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's generators (derive ``seed`` with :func:`mix`)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
