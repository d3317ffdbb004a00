"""Train the link predictor: ``python -m trainer.train --graph DIR --out RUN_DIR [--config F.json]
[--key=value ...] [--resume]``, or the same under ``torchrun`` (DDP: gloo on CPU, nccl on GPU).

Per epoch: pick the epoch's supervision edges (``trainer/gnn/shards.py``), drop them from the
message-passing graph, give each rank an equal shard, train on it (``propagation=full``: the whole
graph propagated on the device every step, ``trainer/gnn/full_graph.py``; ``sampled``:
``LinkNeighborLoader``, ``trainer/gnn/sampled.py``), validate on the hidden edges of validation
playlists (``trainer/gnn/validation.py``: sampled diagnostics, and full-catalogue R-precision / NDCG
that selects ``checkpoints/best.pt`` and stops the run after ``patience`` epochs without a
better one), and (rank 0) append to ``metrics.jsonl``, redraw ``curves.png`` and write
``checkpoints/last.pt``. Randomness is re-derived from ``(seed, epoch, rank)`` at every epoch
start, so a resumed run replays exactly what an uninterrupted one would have done.
"""
from __future__ import annotations

import trainer.hugepages  # noqa: F401  (first, before torch: it asks torch for huge pages)

# isort: split

import argparse
import contextlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from trainer import cli, dist, process, regime
from trainer.config import TrainConfig, given_values, help_text, parse_overrides
from trainer.gnn.divergence import TrainingDiverged, check_metrics, check_parameters
from trainer.gnn.full_graph import FullGraphTraining
from trainer.gnn.losses import candidate_log_frequency
from trainer.gnn.model import build_model
from trainer.gnn.optim import Optimizer
from trainer.gnn.plots import learning_curves
from trainer.gnn.sampled import SampledTraining, require_sampler
from trainer.gnn.shards import EPOCH, mix
from trainer.gnn.validation import (
    diagnostics,
    rank_metrics,
    ranking_set,
    should_stop,
    update_selection,
    val_edges_for_rank,
)
from trainer.io import checkpoint, run_dir, storage
from trainer.io.graph import load_graph
from trainer.io.run_dir import RunDir, check_resumable, graph_record

log = logging.getLogger(__name__)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m trainer.train", description=__doc__.split("\n\n")[0], epilog=help_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--graph", required=True, help="graph dir written by etl.job (path or fsspec URL)")
    parser.add_argument("--out", required=True, help="run dir for checkpoints, metrics, curves (path or fsspec URL)")
    parser.add_argument("--config", help="JSON file of config keys")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    parser.add_argument("--overwrite", action="store_true", help="discard the run RUN_DIR holds and start afresh")
    args, rest = parser.parse_known_args(argv)
    return args, parse_overrides(rest)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def train_from_args(argv: list[str] | None = None) -> TrainResult:
    """What ``python -m trainer.train ARGV`` does, its errors raised (the command's body)."""
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    values = given_values(args.config, overrides)
    config = TrainConfig.from_dict(values, where="config" if not overrides else "command line")
    if config.propagation == "sampled":
        require_sampler(config)
    process.cap_malloc_arenas(config.malloc_arenas)  # before gloo and the loader start threads
    process.fix_mmap_threshold()
    env = dist.setup(config.device)
    resume, overwrite = args.resume, args.overwrite
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if restart:  # torchrun restarted the workers: continue the run, never discard it
        log.warning("torchrun restart %d: resuming from the run's last checkpoint", restart)
        resume, overwrite = True, False
    try:
        return train(args.graph, args.out, config, env, resume=resume, overwrite=overwrite, given=frozenset(values))
    finally:
        dist.cleanup(env)


@dist.record  # under torchrun, the failing rank's error reaches the launcher's summary
def main(argv: list[str] | None = None) -> int:
    """``python -m trainer.train`` and ``mpd-train``."""
    return cli.run(lambda: train_from_args(argv))


@dataclass
class TrainResult:
    record: dict            # the last epoch's metrics
    model: torch.nn.Module  # the trained model (unwrapped)
    global_step: int


def train(graph_path: str, out: str, config: TrainConfig, env: dist.DistEnv, resume: bool = False,
          overwrite: bool = False, given: frozenset[str] | None = None) -> TrainResult:
    """Run (or resume) training in ``out``, holding its lock (rank 0): one trainer per run dir.
    ``given``: the keys the user set, which the regime leaves alone (default: those away from
    their defaults)."""
    if given is None:
        default = TrainConfig().to_dict()
        given = frozenset(k for k, v in config.to_dict().items() if v != default[k])
    with _sigterm_after_the_step() as stop:
        if not env.is_main:
            return _train(graph_path, out, config, env, resume, overwrite, given, stop)
        storage.check_writable(out, "--out", folder=True)
        with storage.exclusive(out, "run dir", f"trainer.train --out {out}"):
            return _train(graph_path, out, config, env, resume, overwrite, given, stop)


@contextlib.contextmanager
def _sigterm_after_the_step():
    """SIGTERM (preemption, a scheduler's time limit) while training: the step in progress
    finishes, a checkpoint is written, then the run stops (``--resume`` continues it). The
    yielded list holds the signal once it came."""
    came: list[int] = []
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield came
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: came.append(signum))
    try:
        yield came
    finally:
        signal.signal(signal.SIGTERM, previous)


def _train(graph_path: str, out: str, config: TrainConfig, env: dist.DistEnv, resume: bool,
           overwrite: bool, given: frozenset[str], stop: list[int]) -> TrainResult:
    """Run (or resume) training in ``out``; a run already there needs ``resume`` or ``overwrite``."""
    run_dir.refuse_or_clear(out, resume, overwrite, env.is_main)
    tensorboard = run_dir.TensorBoard(out) if env.is_main else None
    run = RunDir(out)
    graph = load_graph(graph_path)
    record_of_graph = graph_record(graph_path, graph.manifest)
    ckpt_path = checkpoint.checkpoint_path(run.path)
    best_path = checkpoint.checkpoint_path(run.path, checkpoint.BEST)
    ckpt = None
    if resume and storage.exists(ckpt_path):
        ckpt = checkpoint.load(ckpt_path)
    elif resume:
        log.info(f"--resume: no checkpoint at {ckpt_path}, starting fresh")
    config = regime.resolve(config, given, graph, env.world_size, ckpt["config"] if ckpt else None)
    if ckpt is not None:
        check_resumable(ckpt["config"], config, run, graph_path, graph.manifest)

    # 1. Model and optimiser: identical initial parameters on every rank.
    seed_everything(config.seed)
    feature_dims = {t: x.size(1) for t, x in graph.x.items()}
    # Sparse ID-embedding gradients need a sparse all-reduce, which gloo has and NCCL lacks; a
    # full-graph step touches every row, so its gradients are dense anyway.
    sparse = env.device.type == "cpu" and config.propagation == "sampled"
    model = build_model(config, graph.metadata(), feature_dims, graph.num_nodes, sparse).to(env.device)
    optimizer = Optimizer(model, config, sparse)

    # 2. Resume state: model, optimiser, RNG, where in which epoch, model selection so far.
    start_epoch, skip_steps, global_step, carried, elapsed = 0, 0, 0, [0.0, 0.0, 0.0], 0.0
    selection = {"best": None, "best_epoch": None, "bad_epochs": 0}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"], ckpt_path)
        checkpoint.set_rng_state(ckpt["rng"])
        start_epoch, skip_steps, global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        carried = list(ckpt["epoch_sums"])
        selection = ckpt.get("selection", selection)
        elapsed = ckpt.get("elapsed_s", 0.0)
        log.info(f"resuming from {ckpt_path}: epoch {start_epoch}, step {skip_steps}")
    records = [r for r in run.read_metrics() if r["epoch"] < start_epoch
               or (r["epoch"] == start_epoch and r.get("global_step", math.inf) <= global_step)] if ckpt else []
    if env.is_main:
        run.write_json("config.json", config.to_dict())
        run.write_json(run_dir.GRAPH_FILE, record_of_graph)
        run.write_metrics(records)

    # 3. Parallelism applied to the unchanged model; the training strategy; validation sets.
    ddp = (DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None)
           if env.distributed else model)
    amp = config.amp and env.device.type == "cuda"
    batching = regime.batch_within_epoch(config, graph, env.world_size)
    log_frequency = None
    if config.loss == "softmax":
        supervisable = (torch.cat([graph.train_edges, graph.seed_edges], dim=1) if config.supervise_seeds
                        else graph.train_edges)
        log_frequency = candidate_log_frequency(supervisable, graph.num_nodes["track"], batching.batch_size,
                                                config.negatives, config.negative_power).to(env.device)
    strategy = (FullGraphTraining if config.propagation == "full" else SampledTraining)(
        graph, batching, env, log_frequency)
    val_edges = val_edges_for_rank(graph, config, env)
    ranking = ranking_set(graph, config.val_rank_playlists, config.seed) if config.val_rank_playlists else None
    if ranking is not None and len(ranking) == 0:
        # Zeros would pass for a metric and stop the run after `patience` epochs of them.
        log.warning("no seeded val playlist with hidden tracks: no ranking validation, no early stopping; "
            "the last epoch is exported")
        ranking = None

    def save(path: str, epoch: int, step: int, sums: list[float]) -> None:
        if env.is_main:
            checkpoint.save(path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "step": step, "global_step": global_step, "epoch_sums": [float(s) for s in sums],
                "rng": checkpoint.rng_state(), "config": config.to_dict(), "graph": record_of_graph,
                "selection": selection, "elapsed_s": elapsed + time.perf_counter() - t_start})

    log.info(f"training on {env.world_size} process(es), device {env.device}, propagation {config.propagation}, "
        f"{graph.num_nodes} nodes, {graph.train_edges.size(1)} train edges, {graph.val_edges.size(1)} val edges")
    record = records[-1] if records else {}
    stopped = ckpt is not None and should_stop(selection, config)
    t_start = time.perf_counter()
    for epoch in tqdm(range(start_epoch, config.epochs), desc="epochs", disable=not env.is_main or stopped,
                      initial=start_epoch, total=config.epochs):
        if stopped:
            break
        # 4. The epoch's graph and this rank's shard of its supervision edges.
        t_epoch = time.perf_counter()
        steps = strategy.start_epoch(epoch)
        setup_s = time.perf_counter() - t_epoch
        steps = min(steps, config.max_steps_per_epoch or steps)
        steps = dist.all_reduce_min(env, steps)  # shards are equal; this guards the invariant
        seed_everything(mix(config.seed, EPOCH, epoch, env.rank))  # ranks draw different batches
        skip = skip_steps if epoch == start_epoch else 0
        # loss sum, loss terms, positives; carried over from a mid-epoch checkpoint
        sums = carried if skip else [0.0, 0.0, 0.0]
        data_s = compute_s = 0.0

        # 5. Train: loss, backward (DDP all-reduces the gradients), step.
        bar = tqdm(total=steps, desc=f"epoch {epoch}", leave=False, disable=not env.is_main, initial=skip)
        t0 = time.perf_counter()
        for step, batch in enumerate(strategy.batches(steps, skip)):
            if batch is None:  # before the resumed step
                t0 = time.perf_counter()
                continue
            t1 = time.perf_counter()
            loss, terms, positives = strategy.loss(ddp, batch, amp)
            optimizer.zero_grad()
            loss.backward()
            loss_value = loss.item()  # also synchronises the device, so the timing is honest
            # Checked before the step, on every rank at once (one rank's NaN reaches all through
            # the gradients): a diverged model is never stepped, selected, saved or exported.
            if dist.all_reduce_max(env, 0.0 if math.isfinite(loss_value) else 1.0):
                raise TrainingDiverged.at(f"epoch {epoch}, step {step}: the loss is "
                                          f"{loss_value if not math.isfinite(loss_value) else 'not finite on another rank'}",
                                          config, run.path)
            optimizer.step()
            t2 = time.perf_counter()
            data_s += t1 - t0
            compute_s += t2 - t1
            sums[0] += loss_value * terms
            sums[1] += terms
            sums[2] += positives
            global_step += 1
            if dist.all_reduce_max(env, float(bool(stop))):  # every rank stops after the same step
                save(ckpt_path, epoch, step + 1, sums)
                log.warning("SIGTERM: stopped after epoch %d, step %d, checkpointed; --resume continues", epoch, step + 1)
                raise cli.Terminated
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
            if config.checkpoint_every and global_step % config.checkpoint_every == 0 and step + 1 < steps:
                check_parameters(model, epoch, step, config, run.path)
                save(ckpt_path, epoch, step + 1, sums)
            if ranking is not None and config.val_every and global_step % config.val_every == 0 and step + 1 < steps:
                # Within the epoch (at 1M playlists one is ~7,800 steps): select and stop by the
                # same metric as at its end; last.pt first, so a resume never repeats this.
                check_parameters(model, epoch, step, config, run.path)
                ranked = rank_metrics(model, strategy, ranking, env)
                check_metrics(ranked, epoch, config, run.path)
                improved = update_selection(selection, ranked, epoch, global_step)
                records.append({"epoch": epoch, "step": step + 1, "global_step": global_step, **ranked,
                                "best_epoch": selection["best_epoch"], "best_step": selection.get("best_step"),
                                "elapsed_s": round(elapsed + time.perf_counter() - t_start, 1)})
                if env.is_main:
                    run.write_metrics(records)
                    log.info(json.dumps(records[-1]))
                save(ckpt_path, epoch, step + 1, sums)
                if improved:
                    save(best_path, epoch, step + 1, sums)
                if should_stop(selection, config):
                    stopped = True
                    break
            t0 = time.perf_counter()
        bar.close()
        if stopped:  # mid-epoch early stop: last.pt and metrics.jsonl were just written
            log.info(f"early stop at epoch {epoch}, step {step + 1}: val R-precision has not improved for "
                     f"{selection['bad_epochs']} validations (best {selection['best']:.4f})")
            break
        loop_s = time.perf_counter() - t_epoch - setup_s
        loss_sum, terms, positives, data_total, compute_total = dist.all_reduce_sum(
            env, [*sums, data_s, compute_s])
        trained = steps - skip

        check_parameters(model, epoch, steps - 1, config, run.path)  # a huge step can overflow with a finite loss

        # 6. Validate: sampled diagnostics on the epoch's graph; full-catalogue ranking (rank 0,
        # its numbers shared so every rank takes the same stopping decision).
        metrics = diagnostics(model, strategy, val_edges, config, env)
        t_rank = time.perf_counter()
        ranked = rank_metrics(model, strategy, ranking, env)
        rank_s = time.perf_counter() - t_rank
        check_metrics({**metrics, **ranked}, epoch, config, run.path)
        improved = update_selection(selection, ranked, epoch, global_step)
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / terms if terms else None,
            **metrics,
            **ranked,
            "best_epoch": selection["best_epoch"],
            "best_step": selection.get("best_step"),
            "global_step": global_step,
            "elapsed_s": round(elapsed + time.perf_counter() - t_start, 1),
            "seconds": round(time.perf_counter() - t_epoch, 3),
            # supervision edges per second over all ranks, in the batch loop
            "edges_per_s": round(positives / loop_s, 1) if loop_s > 0 else None,
            # share of the step spent waiting for the batch (sampling, negatives, collation)
            "data_fraction": round(data_total / (data_total + compute_total), 4) if data_total + compute_total else None,
            "data_s_per_step": round(data_total / env.world_size / trained, 5) if trained else None,
            "compute_s_per_step": round(compute_total / env.world_size / trained, 5) if trained else None,
            "setup_s": round(setup_s, 3),  # the epoch's graph and sampler set-up
            "rank_val_s": round(rank_s, 3),
            "propagation": config.propagation,
            "loader_workers": strategy.loader_workers,
            "sampler": config.sampler if config.propagation == "sampled" else None,
            "steps": steps,
            "world_size": env.world_size,
            "peak_rss_mb": round(dist.all_reduce_max(env, process.peak_rss_mb()), 1),  # max over ranks
        }
        if env.device.type == "cuda":
            record["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(env.device) / 2**20, 1)
        records.append(record)

        # 7. Record (rank 0): metrics, curves, checkpoints.
        if env.is_main:
            run.write_metrics(records)
            storage.atomic_write_bytes(run.join(run_dir.CURVES_FILE), learning_curves(records))
            log.info(json.dumps(record))
            if tensorboard:
                tensorboard.add(record)
        save(ckpt_path, epoch + 1, 0, [0.0, 0.0, 0.0])
        if improved:
            save(best_path, epoch + 1, 0, [0.0, 0.0, 0.0])
        stopped = should_stop(selection, config)
        if stopped:
            log.info(f"early stop after epoch {epoch}: val R-precision has not improved for "
                f"{selection['bad_epochs']} validations (best {selection['best']:.4f} at epoch {selection['best_epoch']})")
    if tensorboard:
        tensorboard.close()
    dist.barrier(env)
    # records: one per epoch end and one per validation within an epoch (val_every)
    best = f"{selection['best']:.4f}" if selection["best"] is not None else None
    log.info(f"done: {global_step} steps, {sum('train_loss' in r for r in records)} whole epochs, "
             f"{sum(r.get('val_r_precision') is not None for r in records)} ranking validations; best val "
             f"R-precision {best} (epoch {selection['best_epoch']}, step {selection.get('best_step')}); run dir {run.path}")
    return TrainResult(record, model, global_step)




if __name__ == "__main__":
    sys.exit(main())
