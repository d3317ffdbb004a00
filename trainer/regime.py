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
import logging
import math

from trainer.config import BATCH_FULL, EARLIER_RUNS, TrainConfig

log = logging.getLogger(__name__)

MAX_STANDARD_STEPS = 2000  # per rank and epoch at BATCH_FULL: ~250k playlists on one rank
STEPS_PER_EPOCH = 250      # large-graph: propagations per epoch
LAYERS = 3                 # large-graph: depth
VALIDATIONS_PER_EPOCH = 8  # large-graph: ranking validations (selection, patience) per epoch


def for_graph(config: TrainConfig, given: frozenset[str], supervisable_per_rank: int) -> TrainConfig:
    """``config`` with ``regime`` resolved for a graph whose rank can supervise
    ``supervisable_per_rank`` edges (an epoch supervises ``supervision_ratio`` of them), and the
    keys of that regime the user left unset."""
    per_epoch = supervisable_per_rank * config.supervision_ratio
    name = config.regime
    if name == "auto":
        large = config.propagation == "full" and per_epoch > MAX_STANDARD_STEPS * BATCH_FULL
        name = "large-graph" if large else "standard"
    chosen: dict = {"regime": name}
    if name == "large-graph":
        batch = max(BATCH_FULL, math.ceil(per_epoch / STEPS_PER_EPOCH))
        wanted = {"batch_size": batch, "layers": LAYERS, "val_every": max(1, STEPS_PER_EPOCH // VALIDATIONS_PER_EPOCH)}
        chosen |= {k: v for k, v in wanted.items() if k not in given}
        if "layers" in chosen and "fanout" not in given:
            chosen["fanout"] = ()  # follows the depth
    return dataclasses.replace(config, **chosen)


def supervisable_per_rank(config: TrainConfig, graph, world_size: int) -> int:
    """Supervision edges one rank trains on per epoch (train edges, and seeds when supervised)."""
    supervisable = graph.train_edges.size(1) + (graph.seed_edges.size(1) if config.supervise_seeds else 0)
    return -(-supervisable // world_size)


def resolve(config: TrainConfig, given: frozenset[str], graph, world_size: int, saved: dict | None) -> TrainConfig:
    """:func:`for_graph` for a loaded ``graph``, said once; a run whose checkpoint config (``saved``)
    is from before regimes resumes as it was trained."""
    if saved is not None and "regime" not in saved and "regime" not in given:
        config = dataclasses.replace(config, regime=EARLIER_RUNS["regime"])
    resolved = for_graph(config, given, supervisable_per_rank(config, graph, world_size))
    chosen = {k: v for k, v in resolved.to_dict().items() if v != config.to_dict()[k]}
    log.info("regime %s%s", resolved.regime, f": {chosen}" if set(chosen) - {"regime"} else "")
    return resolved


def batch_within_epoch(config: TrainConfig, graph, world_size: int) -> TrainConfig:
    """The config the training strategy runs with: ``batch_size`` cut to the edges a rank could
    supervise in an epoch, said once (a batch beyond them buys nothing but memory: conv=sage peaked
    at 10.9 GB on an 800-playlist graph). config.json keeps what the user asked for."""
    per_rank = supervisable_per_rank(config, graph, world_size)
    if 0 < per_rank < config.batch_size:
        log.warning("batch_size=%d is above the %d edges a rank can supervise per epoch: training with batches "
                    "of at most %d", config.batch_size, per_rank, per_rank)
        return dataclasses.replace(config, batch_size=per_rank)
    return config
