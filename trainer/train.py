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

import contextlib
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from trainer import cli, dist, process, regime
from trainer.config import TrainConfig, given_values, help_text, parse_overrides
from trainer.gnn import records
from trainer.gnn.divergence import TrainingDiverged, check_parameters
from trainer.gnn.model import build_model
from trainer.gnn.optim import Optimizer
from trainer.gnn.plots import learning_curves
from trainer.gnn.sampled import require_sampler
from trainer.gnn.shards import EPOCH, mix, seed_everything
from trainer.gnn.strategy import build_strategy
from trainer.gnn.validation import Validation, diagnostics
from trainer.io import checkpoint, run_dir, storage
from trainer.io.graph import load_graph
from trainer.io.run_dir import RunDir, check_resumable, graph_record

log = logging.getLogger(__name__)


def parse_args(argv):
    parser = cli.parser("trainer.train", __doc__)
    parser.epilog = help_text()
    cli.add_graph(parser)
    parser.add_argument("--out", required=True, help="run dir for checkpoints, metrics, curves (path or fsspec URL)")
    parser.add_argument("--config", help="JSON file of config keys")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    parser.add_argument("--overwrite", action="store_true", help="discard the run RUN_DIR holds and start afresh")
    args, rest = parser.parse_known_args(argv)
    return args, parse_overrides(rest)


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
    record: dict  # the last epoch's metrics
    model: torch.nn.Module  # the trained model (unwrapped)
    global_step: int


def train(
    graph_path: str,
    out: str,
    config: TrainConfig,
    env: dist.DistEnv,
    resume: bool = False,
    overwrite: bool = False,
    given: frozenset[str] | None = None,
) -> TrainResult:
    """Run (or resume) training in ``out``, holding its lock (rank 0): one trainer per run dir;
    a run already there needs ``resume`` or ``overwrite``. ``given``: the keys the user set,
    which the regime leaves alone (default: those away from their defaults)."""
    if given is None:
        default = TrainConfig().to_dict()
        given = frozenset(k for k, v in config.to_dict().items() if v != default[k])
    lock = contextlib.nullcontext()
    if env.is_main:
        storage.check_writable(out, "--out", folder=True)
        lock = storage.exclusive(out, "run dir", f"trainer.train --out {out}")
    with cli.sigterm_after_the_step() as stop, lock:
        run_dir.refuse_or_clear(out, resume, overwrite, env.is_main)
        return Trainer(graph_path, out, config, env, resume, given).fit(stop)


class Trainer:
    """One run: set up (or restored from ``last.pt``) once, then :meth:`fit`: epochs of steps,
    validations that select ``best.pt`` and stop the run, records and checkpoints."""

    def __init__(
        self, graph_path: str, out: str, config: TrainConfig, env: dist.DistEnv, resume: bool, given: frozenset[str]
    ):
        self.env = env
        self.tensorboard = run_dir.TensorBoard(out) if env.is_main else None
        self.run = RunDir(out)
        self.graph = graph = load_graph(graph_path)
        self.record_of_graph = graph_record(graph_path, graph.manifest)
        self.ckpt_path = checkpoint.checkpoint_path(self.run.path)
        self.best_path = checkpoint.checkpoint_path(self.run.path, checkpoint.BEST)
        ckpt = checkpoint.load(self.ckpt_path) if resume and storage.exists(self.ckpt_path) else None
        if resume and ckpt is None:
            log.info(f"--resume: no checkpoint at {self.ckpt_path}, starting fresh")
        self.config = config = regime.resolve(config, given, graph, env.world_size, ckpt and ckpt["config"])
        if ckpt is not None:
            check_resumable(ckpt["config"], config, self.run, graph_path, graph.manifest)

        # 1. Model and optimiser: identical initial parameters on every rank.
        seed_everything(config.seed)
        feature_dims = {t: x.size(1) for t, x in graph.x.items()}
        # Sparse ID-embedding gradients need a sparse all-reduce, which gloo has and NCCL lacks; a
        # full-graph step touches every row, so its gradients are dense anyway.
        sparse = env.device.type == "cpu" and config.propagation == "sampled"
        self.model = build_model(config, graph.metadata(), feature_dims, graph.num_nodes, sparse).to(env.device)
        self.optimizer = Optimizer(self.model, config, sparse)

        # 2. Resume state: model, optimiser, RNG, where in which epoch, model selection so far.
        self.start_epoch, self.skip_steps, self.global_step, self.carried = 0, 0, 0, [0.0, 0.0, 0.0]
        self.elapsed, self.resumed = 0.0, ckpt is not None
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"], self.ckpt_path)
            checkpoint.set_rng_state(ckpt["rng"])
            self.start_epoch, self.skip_steps, self.global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
            self.carried = list(ckpt["epoch_sums"])
            self.elapsed = ckpt.get("elapsed_s", 0.0)
            log.info(f"resuming from {self.ckpt_path}: epoch {self.start_epoch}, step {self.skip_steps}")
        self.records = self.run.metrics_until(self.start_epoch, self.global_step) if ckpt else []
        if env.is_main:
            self.run.write_json("config.json", config.to_dict())
            self.run.write_json(run_dir.GRAPH_FILE, self.record_of_graph)
            self.run.write_metrics(self.records)

        # 3. Parallelism applied to the unchanged model; the training strategy; validation sets.
        self.ddp = self.model
        if env.distributed:
            self.ddp = DistributedDataParallel(
                self.model, device_ids=[env.device] if env.device.type == "cuda" else None
            )
        self.amp = config.amp and env.device.type == "cuda"
        self.strategy = build_strategy(config, graph, env)
        self.validation = Validation(graph, config, env, ckpt and ckpt.get("selection"))

    def fit(self, stop: list[int]) -> TrainResult:
        """The epochs from where the run stands to ``epochs``, or until patience stops it; ``stop``
        holds SIGTERM once it came."""
        config, env, graph = self.config, self.env, self.graph
        log.info(
            f"training on {env.world_size} process(es), device {env.device}, propagation {config.propagation}, "
            f"{graph.num_nodes} nodes, {graph.train_edges.size(1)} train edges, "
            f"{graph.val_edges.size(1)} val edges"
        )
        record = self.records[-1] if self.records else {}
        stopped = self.resumed and self.validation.should_stop()
        self.t_start = time.perf_counter()
        epochs = range(self.start_epoch, config.epochs)
        for epoch in tqdm(
            epochs, desc="epochs", disable=not env.is_main or stopped, initial=self.start_epoch, total=config.epochs
        ):
            if stopped:
                break
            stopped, ended = self.epoch(epoch, stop)
            record = ended or record
        if self.tensorboard:
            self.tensorboard.close()
        dist.barrier(env)
        log.info(records.closing_line(self.records, self.validation.selection, self.global_step, self.run.path))
        return TrainResult(record, self.model, self.global_step)

    def epoch(self, epoch: int, stop: list[int]) -> tuple[bool, dict | None]:
        """One epoch (or its rest, resumed): whether the run stops, and the epoch-end record
        (None when a validation within the epoch stopped it)."""
        config, env, strategy = self.config, self.env, self.strategy
        # 4. The epoch's graph and this rank's shard of its supervision edges.
        clock = records.EpochTally(started=time.perf_counter())
        steps = strategy.start_epoch(epoch)
        clock.setup_s = time.perf_counter() - clock.started
        steps = min(steps, config.max_steps_per_epoch or steps)
        steps = dist.all_reduce_min(env, steps)  # shards are equal; this guards the invariant
        seed_everything(mix(config.seed, EPOCH, epoch, env.rank))  # ranks draw different batches
        skip = self.skip_steps if epoch == self.start_epoch else 0
        # loss sum, loss terms, positives; carried over from a mid-epoch checkpoint
        sums = self.carried if skip else [0.0, 0.0, 0.0]

        # 5. Train: loss, backward (DDP all-reduces the gradients), step; within the epoch, on
        # SIGTERM, every checkpoint_every and every val_every steps: a checkpoint, a validation.
        bar = tqdm(total=steps, desc=f"epoch {epoch}", leave=False, disable=not env.is_main, initial=skip)
        t0 = time.perf_counter()
        for step, batch in enumerate(strategy.batches(steps, skip)):
            if batch is None:  # before the resumed step
                t0 = time.perf_counter()
                continue
            t1 = time.perf_counter()
            loss_value, terms, positives = self.step(batch, epoch, step)
            clock.data_s += t1 - t0
            clock.compute_s += time.perf_counter() - t1
            sums[0] += loss_value * terms
            sums[1] += terms
            sums[2] += positives
            self.global_step += 1
            if dist.all_reduce_max(env, float(bool(stop))):  # every rank stops after the same step
                self.save(self.ckpt_path, epoch, step + 1, sums)
                log.warning(
                    "SIGTERM: stopped after epoch %d, step %d, checkpointed; --resume continues", epoch, step + 1
                )
                raise cli.Terminated
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
            within = step + 1 < steps
            if config.checkpoint_every and self.global_step % config.checkpoint_every == 0 and within:
                check_parameters(self.model, epoch, step, config, self.run.path)
                self.save(self.ckpt_path, epoch, step + 1, sums)
            validate = self.validation.ranking is not None and config.val_every and within
            if validate and self.global_step % config.val_every == 0 and self.validate_within(epoch, step, sums):
                bar.close()  # last.pt and metrics.jsonl were just written
                log.info(
                    f"early stop at epoch {epoch}, step {step + 1}: val R-precision has not improved for "
                    f"{self.validation.selection['bad_epochs']} validations "
                    f"(best {self.validation.selection['best']:.4f})"
                )
                return True, None
            t0 = time.perf_counter()
        bar.close()
        clock.loop_s = time.perf_counter() - clock.started - clock.setup_s
        return self.end_epoch(epoch, steps, steps - skip, sums, clock)

    def step(self, batch, epoch: int, step: int) -> tuple[float, float, float]:
        """One optimiser step: (loss, loss terms, positives)."""
        loss, terms, positives = self.strategy.loss(self.ddp, batch, self.amp)
        self.optimizer.zero_grad()
        loss.backward()
        loss_value = loss.item()  # also synchronises the device, so the timing is honest
        # Checked before the step, on every rank at once (one rank's NaN reaches all through
        # the gradients): a diverged model is never stepped, selected, saved or exported.
        if dist.all_reduce_max(self.env, 0.0 if math.isfinite(loss_value) else 1.0):
            what = loss_value if not math.isfinite(loss_value) else "not finite on another rank"
            raise TrainingDiverged.at(f"epoch {epoch}, step {step}: the loss is {what}", self.config, self.run.path)
        self.optimizer.step()
        return loss_value, terms, positives

    def validate_within(self, epoch: int, step: int, sums: list[float]) -> bool:
        """A ranking validation within the epoch (at 1M playlists one is ~7,800 steps): select and
        stop by the same metric as at its end; last.pt first, so a resume never repeats this.
        Whether the run stops."""
        check_parameters(self.model, epoch, step, self.config, self.run.path)
        ranked, _, improved = self.validation.select(self.model, self.strategy, epoch, self.global_step, self.run.path)
        selection = self.validation.selection
        self.records.append(records.within_epoch(epoch, step + 1, self.global_step, ranked, selection, self.seconds()))
        if self.env.is_main:
            self.run.write_metrics(self.records)
            log.info(json.dumps(self.records[-1]))
        self.save(self.ckpt_path, epoch, step + 1, sums)
        if improved:
            self.save(self.best_path, epoch, step + 1, sums)
        return self.validation.should_stop()

    def end_epoch(
        self, epoch: int, steps: int, trained: int, sums: list[float], clock: records.EpochTally
    ) -> tuple[bool, dict]:
        """Validate, record and checkpoint at the epoch's end: (whether the run stops, the record)."""
        config, env, selection = self.config, self.env, self.validation.selection
        # A huge step can overflow the parameters with a finite loss.
        check_parameters(self.model, epoch, steps - 1, config, self.run.path)

        # 6. Validate: sampled diagnostics on the epoch's graph; full-catalogue ranking (rank 0,
        # its numbers shared so every rank takes the same stopping decision).
        metrics = diagnostics(self.model, self.strategy, self.validation.edges, config, env)
        ranked, rank_s, improved = self.validation.select(
            self.model, self.strategy, epoch, self.global_step, self.run.path, diagnosed=metrics
        )
        clock.rank_s, clock.steps, clock.trained = rank_s, steps, trained
        totals = {"global_step": self.global_step, "elapsed_s": round(self.seconds(), 1)}
        record = records.epoch_end(epoch, sums, clock, metrics, ranked, selection, totals, config, self.strategy, env)
        self.records.append(record)

        # 7. Record (rank 0): metrics, curves, checkpoints.
        if env.is_main:
            self.run.write_metrics(self.records)
            storage.atomic_write_bytes(self.run.join(run_dir.CURVES_FILE), learning_curves(self.records))
            log.info(json.dumps(record))
            if self.tensorboard:
                self.tensorboard.add(record)
        self.save(self.ckpt_path, epoch + 1, 0, [0.0, 0.0, 0.0])
        if improved:
            self.save(self.best_path, epoch + 1, 0, [0.0, 0.0, 0.0])
        stopped = self.validation.should_stop()
        if stopped:
            log.info(
                f"early stop after epoch {epoch}: val R-precision has not improved for "
                f"{selection['bad_epochs']} validations (best {selection['best']:.4f} at epoch "
                f"{selection['best_epoch']})"
            )
        return stopped, record

    def seconds(self) -> float:
        """Training time of the run so far, resumed sittings included."""
        return self.elapsed + time.perf_counter() - self.t_start

    def save(self, path: str, epoch: int, step: int, sums: list[float]) -> None:
        if self.env.is_main:
            model = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
            where = {
                "epoch": epoch,
                "step": step,
                "global_step": self.global_step,
                "epoch_sums": [float(s) for s in sums],
            }
            run = {"rng": checkpoint.rng_state(), "config": self.config.to_dict(), "graph": self.record_of_graph}
            checkpoint.save(
                path, {**model, **where, **run, "selection": self.validation.selection, "elapsed_s": self.seconds()}
            )


if __name__ == "__main__":
    sys.exit(main())
