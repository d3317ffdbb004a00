"""What a run records in ``metrics.jsonl``: one line per ranking validation within an epoch
(ranking and selection), and one per epoch end (loss, diagnostics, ranking, selection,
throughput, memory)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from trainer import dist, process
from trainer.config import TrainConfig


@dataclass
class EpochTally:
    """One epoch's steps and seconds on this rank (of its rest, when resumed)."""

    started: float  # time.perf_counter() at the epoch's start
    setup_s: float = 0.0  # the epoch's graph and sampler set-up
    data_s: float = 0.0  # waiting for batches
    compute_s: float = 0.0  # loss, backward, step
    loop_s: float = 0.0  # the batch loop, wall
    rank_s: float = 0.0  # the full-catalogue ranking validation at the epoch's end
    steps: int = 0  # the epoch's steps
    trained: int = 0  # those this sitting ran (a resumed epoch skips the rest)


def within_epoch(epoch: int, step: int, global_step: int, ranked: dict, selection: dict, elapsed_s: float) -> dict:
    return {
        "epoch": epoch,
        "step": step,
        "global_step": global_step,
        **ranked,
        "best_epoch": selection["best_epoch"],
        "best_step": selection.get("best_step"),
        "elapsed_s": round(elapsed_s, 1),
    }


def epoch_end(
    epoch: int,
    sums: list[float],
    clock: EpochTally,
    metrics: dict,
    ranked: dict,
    selection: dict,
    totals: dict,
    config: TrainConfig,
    strategy,
    env: dist.DistEnv,
) -> dict:
    """``sums``: loss sum, loss terms and positives of this rank's steps; ``totals``: the run's
    global_step and elapsed_s. Every sum and peak is taken over all ranks (collectives: every
    rank calls this)."""
    seconds = time.perf_counter() - clock.started
    loss_sum, terms, positives, data, compute = dist.all_reduce_sum(env, [*sums, clock.data_s, clock.compute_s])
    trained = clock.trained
    record = {
        "epoch": epoch,
        "train_loss": loss_sum / terms if terms else None,
        **metrics,
        **ranked,
        "best_epoch": selection["best_epoch"],
        "best_step": selection.get("best_step"),
        "global_step": totals["global_step"],
        "elapsed_s": totals["elapsed_s"],
        "seconds": round(seconds, 3),
        # supervision edges per second over all ranks, in the batch loop
        "edges_per_s": round(positives / clock.loop_s, 1) if clock.loop_s > 0 else None,
        # share of the step spent waiting for the batch (sampling, negatives, collation)
        "data_fraction": round(data / (data + compute), 4) if data + compute else None,
        "data_s_per_step": round(data / env.world_size / trained, 5) if trained else None,
        "compute_s_per_step": round(compute / env.world_size / trained, 5) if trained else None,
        "setup_s": round(clock.setup_s, 3),
        "rank_val_s": round(clock.rank_s, 3),
        "propagation": config.propagation,
        "loader_workers": strategy.loader_workers,
        "sampler": config.sampler if config.propagation == "sampled" else None,
        "steps": clock.steps,
        "world_size": env.world_size,
        "peak_rss_mb": round(dist.all_reduce_max(env, process.peak_rss_mb()), 1),  # max over ranks
    }
    if env.device.type == "cuda":
        record["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(env.device) / 2**20, 1)
    return record


def closing_line(records: list[dict], selection: dict, global_step: int, run_path: str) -> str:
    """What a run says as it ends (records: one per epoch end and one per validation within an
    epoch)."""
    best = f"{selection['best']:.4f}" if selection["best"] is not None else None
    return (
        f"done: {global_step} steps, {sum('train_loss' in r for r in records)} whole epochs, "
        f"{sum(r.get('val_r_precision') is not None for r in records)} ranking validations; best val "
        f"R-precision {best} (epoch {selection['best_epoch']}, step {selection.get('best_step')}); "
        f"run dir {run_path}"
    )
