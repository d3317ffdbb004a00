"""A RecSys Challenge 2018 challenge set from further generated playlists, with its hold-outs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl import checker
from etl.synth.playlists import STREAM_CHALLENGE, generate_batch, stream_rng
from etl.synth.slices import PLAYLISTS_PER_SLICE, SLICE_VERSION, generated_on
from etl.synth.tracks import describe_tracks

CHALLENGE_FILE = "challenge_set.json"
CHALLENGE_HOLDOUTS_FILE = "challenge_set_holdouts.json"


@dataclass(frozen=True)
class ChallengeCategory:
    """One RecSys Challenge 2018 category: seeds shown, from the start or at random, title or not."""

    num_samples: int
    random: bool
    title: bool
    min_tracks: int


CHALLENGE_CATEGORIES = (
    ChallengeCategory(0, False, True, checker.MIN_TRACKS),
    ChallengeCategory(1, False, True, checker.MIN_TRACKS),
    ChallengeCategory(5, False, True, 10),
    ChallengeCategory(5, False, False, 10),
    ChallengeCategory(10, False, True, 20),
    ChallengeCategory(10, False, False, 20),
    ChallengeCategory(25, False, True, 40),
    ChallengeCategory(25, True, True, 40),
    ChallengeCategory(100, False, True, 150),
    ChallengeCategory(100, True, True, 150),
)


def challenge_set(seed: int, n_playlists: int, count: int) -> tuple[dict, dict]:
    """``count`` held-out playlists (pids after the dataset's) as (challenge set, hold-outs)."""
    playlists, holdouts = [], []
    for b in range(-(-count // PLAYLISTS_PER_SLICE)):
        first = n_playlists + b * PLAYLISTS_PER_SLICE
        size = min(PLAYLISTS_PER_SLICE, count - b * PLAYLISTS_PER_SLICE)
        batch = generate_batch(seed, STREAM_CHALLENGE, b, first, size)
        keys, inv = np.unique(batch.tracks, return_inverse=True)
        t = describe_tracks(keys, seed)
        rng = stream_rng(seed, STREAM_CHALLENGE, 1_000_000 + b)
        for i, pid in enumerate(batch.pids.tolist()):
            ent = inv[batch.offsets[i] : batch.offsets[i + 1]].tolist()
            n = len(ent)
            eligible = [c for c in CHALLENGE_CATEGORIES if n >= c.min_tracks]
            cat = eligible[pid % len(eligible)]
            if cat.random:
                shown = np.sort(rng.choice(n, cat.num_samples, replace=False)).tolist()
            else:
                shown = list(range(cat.num_samples))
            tracks = [
                {
                    "pos": p,
                    "artist_name": t.artist_name[ent[p]],
                    "track_uri": t.uri[ent[p]],
                    "artist_uri": t.artist_uri[ent[p]],
                    "track_name": t.name[ent[p]],
                    "album_uri": t.album_uri[ent[p]],
                    "duration_ms": int(t.duration_ms[ent[p]]),
                    "album_name": t.album_name[ent[p]],
                }
                for p in shown
            ]
            record = {"name": batch.names[i]} if cat.title else {}
            record.update(pid=pid, num_tracks=n, num_samples=len(shown), num_holdouts=n - len(shown), tracks=tracks)
            playlists.append(record)
            hidden = set(range(n)) - set(shown)
            holdouts.append({"pid": pid, "holdouts": [t.uri[ent[p]] for p in sorted(hidden)]})
    return ({"date": generated_on(seed), "version": SLICE_VERSION, "playlists": playlists}, {"playlists": holdouts})
