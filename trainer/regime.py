"""Training regimes: how many whole-graph propagations a model gets and what each carries.

``standard`` is what small graphs train with: batches of ``BATCH_FULL`` supervision edges,
validation at epoch ends, many epochs (on the 2,000 real playlists an epoch is ~11 steps). At
the full MPD that is ~7,800 propagations per epoch, 55 h on a 2-core CPU. ``large-graph`` makes
an epoch ``STEPS_PER_EPOCH`` propagations whatever the graph: one propagation serves a batch of
any size (the loss is computed chunk by chunk; only it grows with the batch), with fewer layers
and validation within the epoch, where selection and patience then act.

``regime=auto`` picks ``large-graph`` when a rank's epoch at the default batch is over
``MAX_STANDARD_STEPS`` full-graph steps, else ``standard``; resolved once the graph is loaded
(:func:`for_graph`), recorded in config.json with the keys it chose. Keys the user set are
never changed.
"""
from __future__ import annotations

import dataclasses
import math

from trainer.config import BATCH_FULL, TrainConfig

MAX_STANDARD_STEPS = 2000  # per rank and epoch at BATCH_FULL: ~250k playlists on one rank
STEPS_PER_EPOCH = 250      # large-graph: propagations per epoch
LAYERS = 3                 # large-graph: depth
VALIDATIONS_PER_EPOCH = 8  # large-graph: ranking validations (selection, patience) per epoch


def for_graph(config: TrainConfig, given: frozenset[str], supervisable_per_rank: int) -> TrainConfig:
    """``config`` with ``regime`` resolved for a graph whose rank supervises
    ``supervisable_per_rank`` edges per epoch, and the keys of that regime the user left unset."""
    name = config.regime
    if name == "auto":
        large = config.propagation == "full" and supervisable_per_rank > MAX_STANDARD_STEPS * BATCH_FULL
        name = "large-graph" if large else "standard"
    chosen: dict = {"regime": name}
    if name == "large-graph":
        batch = max(BATCH_FULL, math.ceil(supervisable_per_rank / STEPS_PER_EPOCH))
        wanted = {"batch_size": batch, "layers": LAYERS, "val_every": max(1, STEPS_PER_EPOCH // VALIDATIONS_PER_EPOCH)}
        chosen |= {k: v for k, v in wanted.items() if k not in given}
        if "layers" in chosen and "fanout" not in given:
            chosen["fanout"] = ()  # follows the depth
    return dataclasses.replace(config, **chosen)
