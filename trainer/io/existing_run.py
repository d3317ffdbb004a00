"""A run dir that already holds a run: refused unless the user says resume or overwrite.

Training into a finished run's dir without ``--resume`` used to replace its checkpoint, metrics
and graph record with no word; the ETL refuses an existing output without ``--overwrite`` and the
trainer does the same. ``--overwrite`` removes the run's own outputs (the names below) and
nothing else, so that a dir pointed at by mistake loses no file the trainer did not write.
"""
from __future__ import annotations

import posixpath

import fsspec

from trainer.io import checkpoint

METRICS = "metrics.jsonl"
# Everything trainer.train, trainer.embed and trainer.evaluate write into a run dir.
RUN_OUTPUTS = ("checkpoints", METRICS, "config.json", "graph.json", "curves.png", "embeddings")
EVAL_GLOB = "eval_*.json"


class RunExistsError(FileExistsError):
    """The run dir holds a run and neither --resume nor --overwrite was given."""


def _has_metrics(fs, root: str) -> bool:
    path = posixpath.join(root, METRICS)
    # An empty file is what a run killed before its first epoch leaves: nothing to lose.
    return fs.exists(path) and fs.size(path) > 0


def held_run(run_dir: str) -> list[str]:
    """What in ``run_dir`` shows a run was trained there: its checkpoint and/or its metrics."""
    fs, root = fsspec.core.url_to_fs(run_dir.rstrip("/"))
    found = []
    if fs.exists(posixpath.join(root, "checkpoints", checkpoint.LAST)):
        found.append(f"checkpoints/{checkpoint.LAST}")
    if _has_metrics(fs, root):
        found.append(METRICS)
    return found


def refuse_or_clear(run_dir: str, resume: bool, overwrite: bool, is_main: bool = True) -> None:
    """Raise :class:`RunExistsError` if ``run_dir`` holds a run and the user chose neither
    ``resume`` nor ``overwrite``; with ``overwrite``, rank 0 (``is_main``) removes the old run."""
    if resume and overwrite:
        raise RunExistsError("--resume and --overwrite exclude each other: resume continues the run "
                             f"in {run_dir}, overwrite discards it")
    found = held_run(run_dir)
    if not found or resume:
        return
    if not overwrite:
        raise RunExistsError(
            f"run dir {run_dir} already holds a run ({', '.join(found)}); pass --resume to continue "
            "it, --overwrite to discard it and start afresh, or choose another --out")
    if is_main:
        clear(run_dir)


def clear(run_dir: str) -> list[str]:
    """Remove a run's outputs from ``run_dir`` (only the names a run writes); what was removed."""
    fs, root = fsspec.core.url_to_fs(run_dir.rstrip("/"))
    paths = [posixpath.join(root, name) for name in RUN_OUTPUTS]
    paths += fs.glob(posixpath.join(root, EVAL_GLOB))
    removed = []
    for path in paths:
        if fs.exists(path):
            fs.rm(path, recursive=True)
            removed.append(posixpath.relpath(path, root))
    return removed
