"""Atomic checkpoints that load with ``torch.load(weights_only=True)`` (no pickled code).

A checkpoint holds model and optimiser state, the position in training (epoch, step within the
epoch, global step, the epoch's running loss sums), the RNG states of torch, numpy and Python's
``random`` as tensors and plain lists, and the resolved config. Beside it, ``<name>.sha256.json``
records its id and SHA-256: torch.load reads flipped bytes in a tensor without complaint.
"""

from __future__ import annotations

import logging
import random
import uuid

import fsspec
import numpy as np
import torch

from trainer.io import checksum, storage

log = logging.getLogger(__name__)

ZIP_MAGIC = b"PK\x03\x04"
LAST = "last.pt"
BEST = "best.pt"  # the epoch with the best val R-precision (trainer.embed exports it)


def rng_state() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def final(run_dir: str) -> str | None:
    """The checkpoint a run exports: ``best.pt`` (the best val R-precision) when training ranked
    validation playlists, else ``last.pt``; None before the first epoch ends."""
    for name in (BEST, LAST):
        if storage.exists(checkpoint_path(run_dir, name)):
            return checkpoint_path(run_dir, name)
    return None


def identity(path: str) -> str:
    """The id a checkpoint was saved with (what embeddings and results derived from it carry),
    read without loading the tensors where the file is local; a digest for checkpoints that
    predate ids."""
    fs, target = storage.filesystem(path)
    if storage.is_local(fs):
        state = torch.load(target, mmap=True, weights_only=True, map_location="cpu")
    else:
        state = load(path)
    if "checkpoint_id" in state:
        return state["checkpoint_id"]
    return f"sha256:{checksum.sha256(path)}"


def _sum_path(path: str) -> str:
    return f"{path}.sha256.json"


def save(path: str, payload: dict) -> str:
    """Write a checkpoint atomically under a new id (returned)."""
    payload = {**payload, "checkpoint_id": uuid.uuid4().hex}
    # Streamed to the file: serialising into memory first held the checkpoint (model, Adam
    # state: ~350 MB at 100k playlists) up to three times over, the run's peak memory.
    with storage.atomic_open(path) as f:
        torch.save(payload, f)
    # Written after the checkpoint: one cut between the two leaves a record of another id, which
    # load() reads as no record.
    storage.atomic_write_json(
        _sum_path(path), {"checkpoint_id": payload["checkpoint_id"], "sha256": checksum.sha256(path)}
    )
    return payload["checkpoint_id"]


class DamagedCheckpoint(checksum.Damaged):
    """A checkpoint file exists but does not load as one."""


def load(path: str, map_location="cpu") -> dict:
    """The checkpoint at ``path``; :class:`DamagedCheckpoint` when it is truncated, not a checkpoint,
    or holds more than tensors and plain values."""
    with fsspec.open(path, "rb") as f:
        if f.read(4) != ZIP_MAGIC:  # torch.save writes a zip archive
            raise DamagedCheckpoint(_damaged(path, "not a zip archive, the format torch.save writes"))
        f.seek(0)
        try:
            state = torch.load(f, map_location=map_location, weights_only=True)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged file fails in whichever way its bytes lead to
            raise DamagedCheckpoint(_damaged(path, _reason(e))) from None
    if not isinstance(state, dict):
        raise DamagedCheckpoint(_damaged(path, f"it holds a {type(state).__name__}, not a dict"))
    record = storage.read_json(_sum_path(path)) or {}
    if record and record.get("checkpoint_id") != state.get("checkpoint_id"):
        log.warning(
            "%s records checkpoint %s, not %s (cut between the two writes?): %s read unchecked",
            _sum_path(path),
            record.get("checkpoint_id"),
            state.get("checkpoint_id"),
            path,
        )
    else:
        checksum.verify(path, record.get("sha256"), REMEDY, DamagedCheckpoint)
    return state


def _reason(e: Exception) -> str:
    text = str(e)
    # torch's own advice here is weights_only=False, which would run whatever code the file
    # pickled: never pass it on.
    if "Unsupported global" in text:
        return "it holds pickled objects beyond tensors and plain values, refused since loading them could run code"
    if "weights_only" in text:
        return "its contents do not unpickle as tensors and plain values: damaged, or not a checkpoint"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(e).__name__}{': ' + first[:120] if first else ''}"


REMEDY = (
    "restore it from a copy, or start afresh: into another run dir (--out), or here with --overwrite, "
    "which discards this run"
)


def _damaged(path: str, reason: str) -> str:
    return f"checkpoint {path} is damaged or not a checkpoint of this trainer ({reason}); {REMEDY}"


def checkpoint_path(run_dir: str, name: str = LAST) -> str:
    return storage.join(run_dir, "checkpoints", name)
