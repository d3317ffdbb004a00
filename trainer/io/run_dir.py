"""The run dir: rank 0's writer for config, graph record and metrics, and the check that a
``--resume`` continues the same run on the same graph."""
from __future__ import annotations

import json
import posixpath

import fsspec

from trainer.config import ConfigError, TrainConfig
from trainer.io import checkpoint
from trainer.io.graph import Graph

# Keys that may change between a run and its resumption; anything else would change the result.
RESUMABLE_CHANGES = {"epochs", "patience", "num_workers", "checkpoint_every", "device", "malloc_arenas"}


class RunDir:
    """Rank 0's writer for everything under RUN_DIR."""

    def __init__(self, path: str):
        self.path = path.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.path)

    def join(self, *parts) -> str:
        return posixpath.join(self.path, *parts)

    def write_json(self, name: str, obj) -> None:
        checkpoint.atomic_write_bytes(self.join(name), (json.dumps(obj, indent=2) + "\n").encode())

    def read_json(self, name: str):
        p = posixpath.join(self.root, name)
        if not self.fs.exists(p):
            return None
        with self.fs.open(p, "r") as f:
            return json.load(f)

    def read_metrics(self) -> list[dict]:
        p = posixpath.join(self.root, "metrics.jsonl")
        if not self.fs.exists(p):
            return []
        with self.fs.open(p, "r") as f:
            return [json.loads(line) for line in f if line.strip()]

    def write_metrics(self, records: list[dict]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in records)
        checkpoint.atomic_write_bytes(self.join("metrics.jsonl"), text.encode())


def graph_record(graph: Graph) -> dict:
    m = graph.manifest
    return {"graph": graph.path, "schema_version": m["schema_version"], "created_at": m["created_at"],
            "counts": m["counts"]}


def check_resumable(saved: dict, config: TrainConfig, run: RunDir, graph: Graph) -> None:
    current = config.to_dict()
    differ = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if differ:
        raise ConfigError(
            f"--resume: config differs from the checkpoint in {differ} "
            f"({', '.join(f'{k}: {saved.get(k)!r} -> {current[k]!r}' for k in differ)}); "
            f"only {sorted(RESUMABLE_CHANGES)} may change")
    recorded = run.read_json("graph.json")
    now = graph_record(graph)
    if recorded and (recorded["created_at"], recorded["counts"]) != (now["created_at"], now["counts"]):
        raise ConfigError(f"--resume: {run.path} was trained on graph {recorded['graph']} "
                          f"(created_at {recorded['created_at']}), not {graph.path} (created_at {now['created_at']})")
