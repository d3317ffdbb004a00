"""Training regimes: when a run validates, selects and stops.

``standard`` is what small graphs train with: ranking validation, checkpoint selection and
patience at epoch ends (on the 2,000 real playlists an epoch is ~11 steps). At the full MPD an
epoch of today's batches is ~7,800 propagations (days on a 2-core CPU), so a run would never
validate, select or stop: ``large-graph`` keeps the model and its batches and validates every
``VAL_EVERY`` steps within the epoch, where selection and patience then act. (Epochs of 250
larger batches with three layers were tried at 1M and ranked worse per wall minute than this:
bench/log/2026-12-07-1m-training.md.)

``regime=auto`` picks ``large-graph`` when a rank's epoch is over ``MAX_STANDARD_STEPS`` steps,
else ``standard``; resolved once the graph is loaded (:func:`for_graph`), recorded in config.json
with the keys it chose. Keys the user set are never changed.
"""

from __future__ import annotations

import dataclasses
import logging

from trainer.config import EARLIER_RUNS, TrainConfig

log = logging.getLogger(__name__)

MAX_STANDARD_STEPS = 2000  # per rank and epoch: ~250k playlists on one rank at the default batch
VAL_EVERY = 20  # large-graph: steps between ranking validations (at 1M: ~21 min of steps on 2 cores)


def for_graph(config: TrainConfig, given: frozenset[str], supervisable_per_rank: int) -> TrainConfig:
    """``config`` with ``regime`` resolved for a graph whose rank can supervise
    ``supervisable_per_rank`` edges (an epoch supervises ``supervision_ratio`` of them), and the
    keys of that regime the user left unset."""
    steps = supervisable_per_rank * config.supervision_ratio / config.batch_size
    name = config.regime
    if name == "auto":
        name = "large-graph" if steps > MAX_STANDARD_STEPS else "standard"
    chosen: dict = {"regime": name}
    if name == "large-graph" and "val_every" not in given:
        chosen["val_every"] = VAL_EVERY
    return dataclasses.replace(config, **chosen)


def supervisable_per_rank(config: TrainConfig, graph, world_size: int) -> int:
    """Supervision edges one rank trains on per epoch (train edges, and seeds when supervised)."""
    supervisable = graph.train_edges.size(1) + (graph.seed_edges.size(1) if config.supervise_seeds else 0)
    return -(-supervisable // world_size)


def resolve(config: TrainConfig, given: frozenset[str], graph, world_size: int, saved: dict | None) -> TrainConfig:
    """:func:`for_graph` for a loaded ``graph``, said once; a run whose checkpoint config (``saved``)
    is from before a key (regimes, the val halves) resumes as it was trained."""
    if saved is not None:
        earlier = {k: v for k, v in EARLIER_RUNS.items() if k not in saved and k not in given}
        config = dataclasses.replace(config, **earlier)
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
        log.warning(
            "batch_size=%d is above the %d edges a rank can supervise per epoch: training with batches of at most %d",
            config.batch_size,
            per_rank,
            per_rank,
        )
        return dataclasses.replace(config, batch_size=per_rank)
    return config
