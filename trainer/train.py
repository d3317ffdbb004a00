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

import argparse
import dataclasses
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from etl import contract
from trainer import dist
from trainer.config import ConfigError, TrainConfig, help_text, parse_overrides, resolve
from trainer.gnn.full_graph import FullGraphTraining
from trainer.gnn.losses import candidate_log_frequency
from trainer.gnn.model import build_model
from trainer.gnn.optim import Optimizer
from trainer.gnn.plots import learning_curves
from trainer.gnn.sampled import SampledTraining
from trainer.gnn.shards import EPOCH, mix
from trainer.gnn.validation import (
    RANK_METRICS, diagnostics, rank_validation, ranking_set, should_stop, update_selection,
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


class TrainingDiverged(RuntimeError):
    """The loss, the parameters or the validation scores stopped being finite numbers."""

    @classmethod
    def at(cls, what: str, config: TrainConfig, run: RunDir) -> TrainingDiverged:
        return cls(f"{what} (lr={config.lr}, embedding_lr={config.embedding_lr}): training diverged; lower the "
                   f"learning rates. {run.path} keeps the last finite checkpoint, if any; start afresh "
                   "(--overwrite, or another --out)")


class SamplerMissing(RuntimeError):
    """Neither neighbour-sampling backend of PyG is installed."""


def require_sampler(config: TrainConfig) -> None:
    """Fail before loading a graph when LinkNeighborLoader could not sample: PyG's own sampler
    (``sampler=torch_sparse``) needs torch-sparse or pyg-lib; ``sampler=device`` needs neither."""
    import torch_geometric.typing as pyg_typing

    if config.sampler != "torch_sparse":
        return
    if not (pyg_typing.WITH_TORCH_SPARSE or pyg_typing.WITH_PYG_LIB):
        raise SamplerMissing(
            "LinkNeighborLoader needs torch-sparse (or pyg-lib), and neither imports with torch "
            f"{torch.__version__}; run `make install-pyg-sparse`, or take torch-sparse from PyG's wheel index "
            "for your torch+CUDA (https://data.pyg.org/whl/), or train with --sampler=device")


def main(argv=None) -> TrainResult:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    config = resolve(args.config, overrides)
    if config.propagation == "sampled":
        require_sampler(config)
    dist.cap_malloc_arenas(config.malloc_arenas)  # before gloo and the loader start threads
    dist.fix_mmap_threshold()
    env = dist.setup(config.device)
    dist.configure_logging(env.is_main)
    resume, overwrite = args.resume, args.overwrite
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    if restart:  # torchrun restarted the workers: continue the run, never discard it
        log.warning("torchrun restart %d: resuming from the run's last checkpoint", restart)
        resume, overwrite = True, False
    try:
        with logging_redirect_tqdm():
            return train(args.graph, args.out, config, env, resume=resume, overwrite=overwrite)
    finally:
        dist.cleanup(env)


# A user's mistake: one line naming it, no traceback.
USER_ERRORS = (storage.OutputError, storage.Locked, TrainingDiverged, ConfigError, contract.ContractError, FileNotFoundError, SamplerMissing, run_dir.RunExistsError,
               run_dir.RunMismatchError, dist.DeviceError, checkpoint.DamagedCheckpoint)


@dist.record  # under torchrun, the failing rank's error reaches the launcher's summary
def cli(argv=None) -> int:
    """``python -m trainer.train`` and ``mpd-train``: exit code 0, or 2 with the error named."""
    try:
        main(argv)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


@dataclass
class TrainResult:
    record: dict            # the last epoch's metrics
    model: torch.nn.Module  # the trained model (unwrapped)
    global_step: int


def train(graph_path: str, out: str, config: TrainConfig, env: dist.DistEnv, resume: bool = False,
          overwrite: bool = False) -> TrainResult:
    """Run (or resume) training in ``out``, holding its lock (rank 0): one trainer per run dir."""
    if not env.is_main:
        return _train(graph_path, out, config, env, resume, overwrite)
    storage.check_writable(out, "--out", folder=True)
    with storage.exclusive(out, "run dir", f"trainer.train --out {out}"):
        return _train(graph_path, out, config, env, resume, overwrite)


def _train(graph_path: str, out: str, config: TrainConfig, env: dist.DistEnv, resume: bool,
           overwrite: bool) -> TrainResult:
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
        check_resumable(ckpt["config"], config, run, graph_path, graph.manifest)
    elif resume:
        log.info(f"--resume: no checkpoint at {ckpt_path}, starting fresh")

    # 1. Model and optimiser: identical initial parameters on every rank.
    seed_everything(config.seed)
    feature_dims = {t: x.size(1) for t, x in graph.x.items()}
    # Sparse ID-embedding gradients need a sparse all-reduce, which gloo has and NCCL lacks; a
    # full-graph step touches every row, so its gradients are dense anyway.
    sparse = env.device.type == "cpu" and config.propagation == "sampled"
    model = build_model(config, graph.metadata(), feature_dims, graph.num_nodes, sparse).to(env.device)
    optimizer = Optimizer(model, config, sparse)

    # 2. Resume state: model, optimiser, RNG, where in which epoch, model selection so far.
    start_epoch, skip_steps, global_step, carried = 0, 0, 0, [0.0, 0.0, 0.0]
    selection = {"best": None, "best_epoch": None, "bad_epochs": 0}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"], ckpt_path)
        checkpoint.set_rng_state(ckpt["rng"])
        start_epoch, skip_steps, global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        carried = list(ckpt["epoch_sums"])
        selection = ckpt.get("selection", selection)
        log.info(f"resuming from {ckpt_path}: epoch {start_epoch}, step {skip_steps}")
    records = [r for r in run.read_metrics() if r["epoch"] < start_epoch] if ckpt is not None else []
    if env.is_main:
        run.write_json("config.json", config.to_dict())
        run.write_json(run_dir.GRAPH_FILE, record_of_graph)
        run.write_metrics(records)

    # 3. Parallelism applied to the unchanged model; the training strategy; validation sets.
    ddp = (DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None)
           if env.distributed else model)
    amp = config.amp and env.device.type == "cuda"
    batching = _batch_within_epoch(config, graph, env)
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
                "selection": selection})

    log.info(f"training on {env.world_size} process(es), device {env.device}, propagation {config.propagation}, "
        f"{graph.num_nodes} nodes, {graph.train_edges.size(1)} train edges, {graph.val_edges.size(1)} val edges")
    record = records[-1] if records else {}
    stopped = start_epoch > 0 and should_stop(selection, config)
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
                                          config, run)
            optimizer.step()
            t2 = time.perf_counter()
            data_s += t1 - t0
            compute_s += t2 - t1
            sums[0] += loss_value * terms
            sums[1] += terms
            sums[2] += positives
            global_step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
            if config.checkpoint_every and global_step % config.checkpoint_every == 0 and step + 1 < steps:
                _check_finite(model, epoch, step, config, run)
                save(ckpt_path, epoch, step + 1, sums)
            t0 = time.perf_counter()
        bar.close()
        loop_s = time.perf_counter() - t_epoch - setup_s
        loss_sum, terms, positives, data_total, compute_total = dist.all_reduce_sum(
            env, [*sums, data_s, compute_s])
        trained = steps - skip

        _check_finite(model, epoch, steps - 1, config, run)  # a huge step can overflow with a finite loss

        # 6. Validate: sampled diagnostics on the epoch's graph; full-catalogue ranking (rank 0,
        # its numbers shared so every rank takes the same stopping decision).
        metrics = diagnostics(model, strategy, val_edges, config, env)
        t_rank = time.perf_counter()
        ranked = _rank_metrics(model, strategy, ranking, env)
        rank_s = time.perf_counter() - t_rank
        diverged = [k for k in ("val_loss", *ranked) if {**metrics, **ranked}.get(k) is not None
                    and not math.isfinite({**metrics, **ranked}[k])]
        if diverged:  # finite parameters can still overflow in the forward pass
            raise TrainingDiverged.at(f"epoch {epoch}: the model's validation {diverged} are not finite", config, run)
        improved = update_selection(selection, ranked, epoch)
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / terms if terms else None,
            **metrics,
            **ranked,
            "best_epoch": selection["best_epoch"],
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
            "peak_rss_mb": round(dist.all_reduce_max(env, dist.peak_rss_mb()), 1),  # max over ranks
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
                f"{selection['bad_epochs']} epochs (best {selection['best']:.4f} at epoch {selection['best_epoch']})")
    if tensorboard:
        tensorboard.close()
    dist.barrier(env)
    log.info(f"done: {len(records)} epochs, train_loss {record.get('train_loss')}, "
        f"val_r_precision {record.get('val_r_precision')}, best epoch {selection['best_epoch']}; run dir {run.path}")
    return TrainResult(record, model, global_step)


def _rank_metrics(model, strategy, ranking, env) -> dict:
    """Full-catalogue validation metrics, computed on rank 0 and shared with every rank."""
    if ranking is None:
        return {}
    keys = [f"val_{m}" for m in RANK_METRICS]
    values = [0.0] * len(keys)
    if env.is_main:
        model.eval()
        embeddings = strategy.embed(model)
        model.train()
        if all(bool(torch.isfinite(e).all()) for e in embeddings.values()):
            ranked = rank_validation(embeddings, ranking, env.device)
            values = [ranked[k] for k in keys]
        else:  # a ranking of NaN scores is an arbitrary order: say NaN, on every rank
            values = [math.nan] * len(keys)
    return dict(zip(keys, dist.all_reduce_sum(env, values)))


def _batch_within_epoch(config: TrainConfig, graph, env: dist.DistEnv) -> TrainConfig:
    """The config the training strategy runs with: ``batch_size`` cut to the edges a rank could
    supervise in an epoch, said once (a batch beyond them buys nothing but memory: conv=sage peaked
    at 10.9 GB on an 800-playlist graph). config.json keeps what the user asked for."""
    supervisable = graph.train_edges.size(1) + (graph.seed_edges.size(1) if config.supervise_seeds else 0)
    per_rank = -(-supervisable // env.world_size)
    if 0 < per_rank < config.batch_size:
        log.warning("batch_size=%d is above the %d edges a rank can supervise per epoch: training with batches "
                    "of at most %d", config.batch_size, per_rank, per_rank)
        return dataclasses.replace(config, batch_size=per_rank)
    return config


def _check_finite(model, epoch: int, step: int, config: TrainConfig, run: RunDir) -> None:
    """Raise :class:`TrainingDiverged` when a parameter is no longer a finite number."""
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise TrainingDiverged.at(f"epoch {epoch}, step {step}: parameters {bad[:3]}"
                                  f"{' ...' if len(bad) > 3 else ''} are no longer finite", config, run)


if __name__ == "__main__":
    sys.exit(cli())
