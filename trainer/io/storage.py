"""Every path the trainer reads or writes, local or an fsspec URL (``s3://``, ``gs://``,
``file://``), and the one way it publishes a file: write a temporary file beside it, then rename,
so that a reader never sees half a file and a failed write leaves the previous one."""
from __future__ import annotations

import json
import os
import posixpath
from contextlib import contextmanager

import fsspec
from fsspec.implementations.local import LocalFileSystem


def filesystem(path: str):
    """``(fs, path within fs)`` of a local path or URL."""
    fs, target = fsspec.core.url_to_fs(path)
    return fs, target.rstrip("/") or target


def is_local(fs) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(path: str, *parts: str) -> str:
    """``path/part/...`` for a local path or a URL (never ``os.path``: ``s3://b`` must stay a URL)."""
    return posixpath.join(path.rstrip("/"), *parts)


def exists(path: str) -> bool:
    fs, target = filesystem(path)
    return fs.exists(target)


def size(path: str) -> int | None:
    """Bytes in the file at ``path``; None when there is none."""
    fs, target = filesystem(path)
    return fs.size(target) if fs.exists(target) else None


def remove(path: str) -> bool:
    """Remove a file or a folder; whether there was one."""
    fs, target = filesystem(path)
    if not fs.exists(target):
        return False
    fs.rm(target, recursive=True)
    return True


def open_file(path: str, mode: str = "rb"):
    """``path`` opened for reading (a context manager), local or URL."""
    return fsspec.open(path, mode)


def read_text(path: str) -> str:
    with fsspec.open(path, "r", encoding="utf-8") as f:
        return f.read()


def read_json(path: str):
    """The JSON document at ``path``; None when there is none."""
    return json.loads(read_text(path)) if exists(path) else None


@contextmanager
def atomic_open(path: str):
    """A binary file to write ``path`` through: a temporary file renamed into place on success."""
    fs, target = filesystem(path)
    fs.makedirs(posixpath.dirname(target), exist_ok=True)
    tmp = f"{target}.tmp.{os.getpid()}"
    try:
        with fs.open(tmp, "wb") as f:
            yield f
    except BaseException:
        if fs.exists(tmp):
            fs.rm(tmp)
        raise
    if is_local(fs):
        os.replace(tmp, target)
    else:  # object stores: copy-then-delete, the best the store offers
        fs.mv(tmp, target)


def atomic_write_bytes(path: str, data: bytes) -> None:
    with atomic_open(path) as f:
        f.write(data)


def atomic_write_json(path: str, obj, indent: int | None = 2) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=indent) + "\n").encode())
