"""The run dir: its layout, rank 0's writer for config, graph record, metrics and TensorBoard
scalars, the refusal to train over a run without ``--resume`` or ``--overwrite``, and the one
check that a run was trained on the graph dir it is used with.

Training into a finished run's dir without ``--resume`` used to replace its checkpoint, metrics
and graph record with no word; the ETL refuses an existing output without ``--overwrite`` and the
trainer does the same. ``--overwrite`` removes the run's own outputs (``RUN_OUTPUTS``) and
nothing else, so that a dir pointed at by mistake loses no file the trainer did not write.
"""

from __future__ import annotations

import importlib.util
import json
import math
import posixpath

from trainer.config import EARLIER_RUNS, ConfigError, TrainConfig
from trainer.io import checkpoint, storage

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
GRAPH_FILE = "graph.json"
CURVES_FILE = "curves.png"
EMBEDDINGS = "embeddings"
TENSORBOARD = "tensorboard"
ALS_FACTORS = "als_factors.npz"
RANKER = "reranker"
# Everything trainer.train, trainer.embed, trainer.evaluate and trainer.rerank write into a run dir.
RUN_OUTPUTS = (
    "checkpoints",
    METRICS_FILE,
    CONFIG_FILE,
    GRAPH_FILE,
    CURVES_FILE,
    EMBEDDINGS,
    TENSORBOARD,
    ALS_FACTORS,
    RANKER,
)
# eval reports, and what an embed or rerank killed while publishing leaves beside its folder
LEFTOVER_GLOBS = ("eval_*.json", *(f"{d}.{kind}-*" for d in (EMBEDDINGS, RANKER) for kind in ("tmp", "old")))
# What identifies a graph dir: a rebuilt graph has another created_at, a changed one other counts.
GRAPH_IDENTITY = ("schema_version", "created_at", "counts", "split")
# Keys that may change between a run and its resumption; anything else would change the result.
RESUMABLE_CHANGES = {"epochs", "patience", "num_workers", "checkpoint_every", "device", "malloc_arenas"}


class RunExistsError(FileExistsError):
    """The run dir holds a run and neither --resume nor --overwrite was given."""


class RunMismatchError(ValueError):
    """A run (its checkpoint or embeddings) does not belong to the graph dir it is used with."""


class RunDir:
    """Rank 0's writer for everything under RUN_DIR."""

    def __init__(self, path: str):
        self.path = path.rstrip("/")

    def join(self, *parts) -> str:
        return storage.join(self.path, *parts)

    def write_json(self, name: str, obj) -> None:
        storage.atomic_write_json(self.join(name), obj)

    def read_json(self, name: str):
        return storage.read_json(self.join(name))

    def read_metrics(self) -> list[dict]:
        if not storage.exists(self.join(METRICS_FILE)):
            return []
        return [json.loads(line) for line in storage.read_text(self.join(METRICS_FILE)).splitlines() if line.strip()]

    def metrics_until(self, epoch: int, global_step: int) -> list[dict]:
        """The records a run resumed at ``epoch`` after ``global_step`` steps keeps: those of the
        steps it does not repeat."""
        return [
            r
            for r in self.read_metrics()
            if r["epoch"] < epoch or (r["epoch"] == epoch and r.get("global_step", math.inf) <= global_step)
        ]

    def write_metrics(self, records: list[dict]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in records)
        storage.atomic_write_bytes(self.join(METRICS_FILE), text.encode())


def graph_identity(manifest: dict) -> dict:
    """What tells one graph dir from another, wherever it lies."""
    return {k: manifest.get(k) for k in GRAPH_IDENTITY}


def graph_record(graph_path: str, manifest: dict) -> dict:
    """What a run records of the graph dir it was trained on (``graph.json``, checkpoints)."""
    return {"graph": graph_path, **graph_identity(manifest)}


def check_trained_on(recorded: dict | None, graph_path: str, manifest: dict, what: str) -> None:
    """Raise :class:`RunMismatchError` unless ``recorded`` (a :func:`graph_record`) names the graph
    dir whose manifest is ``manifest``. Keys an older run did not record are not compared."""
    if not recorded:
        return
    recorded = recorded.get("manifest", recorded)  # graph.json of runs that nested the manifest
    differ = [k for k in GRAPH_IDENTITY if k in recorded and recorded[k] != manifest.get(k)]
    if differ:
        raise RunMismatchError(
            f"{what} was trained on graph {recorded.get('graph', '?')} (created_at {recorded.get('created_at')}), "
            f"not on {graph_path} (created_at {manifest.get('created_at')}): they differ in {differ}"
        )


def check_resumable(saved: dict, config: TrainConfig, run: RunDir, graph_path: str, manifest: dict) -> None:
    current = config.to_dict()
    saved = {**EARLIER_RUNS, **saved}
    differ = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if differ:
        raise ConfigError(
            f"--resume: config differs from the checkpoint in {differ} "
            f"({', '.join(f'{k}: {saved.get(k)!r} -> {current[k]!r}' for k in differ)}); "
            f"only {sorted(RESUMABLE_CHANGES)} may change"
        )
    check_trained_on(run.read_json(GRAPH_FILE), graph_path, manifest, f"--resume: {run.path}")


def held_run(run_dir: str) -> list[str]:
    """What in ``run_dir`` shows a run was trained there: its checkpoint and/or its metrics."""
    run = RunDir(run_dir)
    found = []
    if storage.exists(checkpoint.checkpoint_path(run.path)):
        found.append(f"checkpoints/{checkpoint.LAST}")
    # An empty file is what a run killed before its first epoch leaves: nothing to lose.
    if storage.size(run.join(METRICS_FILE)):
        found.append(METRICS_FILE)
    return found


def refuse_or_clear(run_dir: str, resume: bool, overwrite: bool, is_main: bool = True) -> None:
    """Raise :class:`RunExistsError` if ``run_dir`` holds a run and the user chose neither
    ``resume`` nor ``overwrite``; with ``overwrite``, rank 0 (``is_main``) removes the old run."""
    if resume and overwrite:
        raise RunExistsError(
            f"--resume and --overwrite exclude each other: resume continues the run in {run_dir}, overwrite discards it"
        )
    found = held_run(run_dir)
    if not found or resume:
        return
    if not overwrite:
        raise RunExistsError(
            f"run dir {run_dir} already holds a run ({', '.join(found)}); pass --resume to continue "
            "it, --overwrite to discard it and start afresh, or choose another --out"
        )
    if is_main:
        clear(run_dir)


def clear(run_dir: str) -> list[str]:
    """Remove a run's outputs from ``run_dir`` (only the names a run writes); what was removed."""
    fs, root = storage.filesystem(run_dir)
    paths = [posixpath.join(root, name) for name in RUN_OUTPUTS]
    paths += [p for pattern in LEFTOVER_GLOBS for p in fs.glob(posixpath.join(root, pattern))]
    removed = []
    for path in paths:
        if fs.exists(path):
            fs.rm(path, recursive=True)
            removed.append(posixpath.relpath(path, root))
    return removed


class TensorBoard:
    """Each epoch's numeric metrics as TensorBoard scalars under RUN_DIR/tensorboard, when the
    ``tensorboard`` package is installed and the run dir is local; otherwise nothing."""

    def __init__(self, out: str):
        self.log_dir = None
        self.writer = None
        fs, root = storage.filesystem(out)
        if storage.is_local(fs) and importlib.util.find_spec("tensorboard") is not None:
            self.log_dir = storage.join(root, TENSORBOARD)

    def add(self, record: dict) -> None:
        if self.log_dir is None:
            return
        if self.writer is None:  # opened at the first epoch's end: --overwrite has cleared the dir by then
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=self.log_dir)
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
