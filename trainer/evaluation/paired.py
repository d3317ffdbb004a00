"""Paired per-playlist comparison: each method's metrics per playlist, ranked exactly as
``trainer.evaluate`` ranks them, and the 95% bootstrap interval of a mean difference (resampling
playlists), to tell a win from noise."""

from __future__ import annotations

import numpy as np
import torch

from trainer.evaluation.metrics import CHALLENGE_METRICS, K
from trainer.evaluation.protocol import HeldOut, metrics_per_batch
from trainer.evaluation.scoring import Scorer


def interval(d: np.ndarray, rng: np.random.Generator, resamples: int = 2000) -> tuple[float, float]:
    """95% bootstrap interval of the mean of paired per-playlist differences ``d``."""
    boots = d[rng.integers(0, len(d), (resamples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(lo), float(hi)


def per_playlist(
    track_artist: np.ndarray,
    held: HeldOut,
    scorers: dict[str, Scorer],
    fallback: Scorer | None,
    allowed: np.ndarray | None,
) -> dict[str, dict[str, np.ndarray]]:
    """Per method of ``scorers``, each challenge metric per playlist of ``held`` (in its order),
    ranked as ``trainer.evaluate`` ranks them: in one pass, each retriever's top-k computed once."""
    batches = list(
        metrics_per_batch(held, scorers, fallback, track_artist, K, 256, 1 << 17, torch.device("cpu"), allowed)
    )
    return {
        name: {m: np.concatenate([np.asarray(by[name][m]) for _, _, by in batches]) for m in CHALLENGE_METRICS}
        for name in scorers
    }
