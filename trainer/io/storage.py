"""Every path the trainer reads or writes, local or an fsspec URL (``s3://``, ``gs://``,
``file://``), and the one way it publishes a file: write a temporary file beside it, then rename,
so that a reader never sees half a file and a failed write leaves the previous one."""

from __future__ import annotations

import errno
import json
import logging
import os
import posixpath
import re
import shutil
import socket
import time
import uuid
from contextlib import contextmanager

import fsspec
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

# What a writer leaves beside its target while it works, named for the process that owns it:
# ``<file>.tmp.<host>-<pid>`` (atomic_open) and ``<folder>.tmp-<host>-<pid>-<id>`` /
# ``<folder>.old-<host>-<pid>-<id>`` (publish_dir). A process killed outright leaves them.
_LEFTOVER = re.compile(r"\.tmp\.(?P<host>.+)-(?P<pid>\d+)$|\.(?:tmp|old)-(?P<h>.+)-(?P<p>\d+)-[0-9a-f]{8}$")


def _owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class OutputError(OSError):
    """An output cannot be written: names the place and the reason in one line."""


def _disk_full(error: BaseException | None) -> bool:
    """Whether ``error`` or what caused it is "no space left on device" (torch.save reports a
    full disk as ``RuntimeError: [enforce fail ...] unexpected pos``, the OSError as its context)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


def _why(error: BaseException) -> str:
    if _disk_full(error):
        return "no space left on device"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror.lower()
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


class MissingExtra(ImportError):
    """A URL's file system needs a package of an optional extra that is not installed."""


# URL scheme -> (the package fsspec needs, the pyproject extra that installs it)
EXTRAS = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs")}


def filesystem(path: str):
    """``(fs, path within fs)`` of a local path or URL; a missing optional package is named with
    the extra that installs it."""
    try:
        fs, target = fsspec.core.url_to_fs(path)
    except ImportError as e:
        scheme = path.split("://", 1)[0] if "://" in path else ""
        if scheme not in EXTRAS:
            raise MissingExtra(f"{path}: {e}") from None
        package, extra = EXTRAS[scheme]
        raise MissingExtra(
            f"{path}: {scheme}:// paths need {package}, which is not installed: "
            f"pip install 'mpd-graph[{extra}]' (or pip install {package})"
        ) from None
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


def check_writable(path: str, what: str, folder: bool = False) -> None:
    """Fail now, before any work, when ``path`` (a folder, or a file's folder) cannot be written:
    :class:`OutputError` naming ``what`` (e.g. ``--out``), the place and the reason. Creates nothing
    on a local disk: the nearest existing folder above must be a writable folder."""
    fs, target = filesystem(path)
    try:
        if fs.exists(target) and fs.isdir(target) != folder:
            raise NotADirectoryError(errno.ENOTDIR, "a file is in the way" if folder else "it is a folder")
        where = target if folder else posixpath.dirname(target)
        if is_local(fs):
            while not os.path.exists(where):
                where = os.path.dirname(where)
            if not os.path.isdir(where):
                raise NotADirectoryError(errno.ENOTDIR, f"{where} is a file, not a folder")
            if not os.access(where, os.W_OK):  # EROFS too: access(2) reports a read-only mount
                raise PermissionError(errno.EACCES, f"{where} is read-only or not writable by this user")
        else:  # an object store: try it
            probe = posixpath.join(where, f".write-check-{uuid.uuid4().hex}")
            with fs.open(probe, "wb") as f:
                f.write(b"\0")
            fs.rm(probe)
    except OSError as e:
        raise OutputError(f"{what} {path} cannot be written ({_why(e)}); choose another place") from None


@contextmanager
def atomic_open(path: str):
    """A binary file to write ``path`` through: a temporary file renamed into place on success.
    A full disk is said as such (:class:`OutputError`), whatever the writer made of it."""
    fs, target = filesystem(path)
    fs.makedirs(posixpath.dirname(target), exist_ok=True)
    _sweep_beside(fs, target, path)
    tmp = f"{target}.tmp.{_owner()}"
    try:
        with fs.open(tmp, "wb") as f:
            yield f
    except BaseException as e:
        full = _disk_full(e) or (is_local(fs) and shutil.disk_usage(posixpath.dirname(target)).free < 1 << 20)
        if fs.exists(tmp):
            fs.rm(tmp)
        if full and isinstance(e, Exception):
            raise OutputError(
                f"writing {path}: no space left on device; free some space and run again (nothing was replaced)"
            ) from e
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


def publish_dir(parent: str, name: str, write, marker: str = "identity.json") -> str:
    """Write the folder ``parent/name`` whole: ``write(staging)`` fills a staging folder beside
    it, ``marker`` (the file readers check first) last, which then replaces the published one.
    Locally, readers see the old folder or the new one (or, for an instant, none); a write that
    fails leaves the published folder untouched. On object stores see :func:`_publish_by_copy`."""
    fs, root = filesystem(parent)
    _sweep_beside(fs, posixpath.join(root, name), join(parent, name))
    tag = f"{_owner()}-{uuid.uuid4().hex[:8]}"
    staging, old = (join(parent, f"{name}.{kind}-{tag}") for kind in ("tmp", "old"))
    try:
        write(staging)
    except BaseException:
        remove(staging)
        raise
    final = posixpath.join(root, name)
    if not is_local(fs):
        _publish_by_copy(fs, filesystem(staging)[1], final, marker)
        return join(parent, name)
    if fs.exists(final):
        fs.mv(final, filesystem(old)[1], recursive=True)
    fs.mv(filesystem(staging)[1], final, recursive=True)
    remove(old)
    return join(parent, name)


def _publish_by_copy(fs, staging: str, final: str, marker: str) -> None:
    """Object stores have no rename, only whole-object copies (fsspec's ``mv`` of a folder is a
    copy of every object, then deletes, through listings that may be stale). So: the published
    folder's ``marker`` is removed first (from then on readers refuse the folder by name, as
    incomplete), its other objects are overwritten one by one, the new ``marker`` is copied last.
    A publish killed half way leaves a folder without its marker: refused by name, never read as
    a mix of two sets."""
    fs.invalidate_cache()
    names = sorted(posixpath.relpath(p, staging) for p in fs.find(staging))
    if marker not in names:
        raise ValueError(f"{staging}: no {marker}; nothing published")
    if fs.exists(posixpath.join(final, marker)):
        fs.rm(posixpath.join(final, marker))
    for path in fs.find(final):
        if posixpath.relpath(path, final) not in names:
            fs.rm(path)
    for n in [*(n for n in names if n != marker), marker]:
        fs.copy(posixpath.join(staging, n), posixpath.join(final, n))
    fs.rm(staging, recursive=True)
    fs.invalidate_cache()


class Locked(RuntimeError):
    """Another live process holds the lock of an output."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def exclusive(path: str, what: str, command: str):
    """Hold ``path/.lock`` while the block runs: one writer per output. A lock whose process is
    gone (same host, pid not running: a killed run, a torchrun restart) is taken over; a live
    one raises :class:`Locked` naming its holder. On object stores, which have no exclusive
    create, the check and the write are two steps: a guard against mistakes, not a mutex."""
    fs, root = filesystem(path)
    fs.makedirs(root, exist_ok=True)
    lock = posixpath.join(root, ".lock")
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
    }
    while True:
        try:
            if is_local(fs):
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
            elif fs.exists(lock):
                raise FileExistsError(lock)
            else:
                with fs.open(lock, "w") as f:
                    json.dump(me, f)
            break
        except FileExistsError:
            try:
                with fs.open(lock, "r") as f:
                    holder = json.load(f)
            except (OSError, ValueError):  # half written by a process killed at that instant
                holder = {}
            if holder.get("host") == me["host"] and holder.get("pid") and not _alive(int(holder["pid"])):
                fs.rm(lock)  # its process is gone: nobody writes here any more
                continue
            raise Locked(
                f"{what} {path} is in use: {holder.get('command', 'a process')} (pid {holder.get('pid', '?')} "
                f"on {holder.get('host', '?')}, since {holder.get('since', '?')}) writes there; wait for it to "
                f"end, or remove {lock} if that process is gone"
            ) from None
    try:
        _sweep(fs, root, path)
        yield
    finally:
        if fs.exists(lock):
            fs.rm(lock)


def _dead_writer(name: str) -> bool:
    """Whether ``name`` is a temporary (:data:`_LEFTOVER`) of a writer on this host that is gone."""
    m = _LEFTOVER.search(name.rstrip("/"))
    return bool(m) and (m["host"] or m["h"]) == socket.gethostname() and not _alive(int(m["pid"] or m["p"]))


def _sweep(fs, root: str, path: str) -> None:
    """Remove, saying so, what writers on this host that are gone left under ``root``."""
    gone = []
    for p in sorted(fs.find(root, withdirs=True)):
        if _dead_writer(posixpath.basename(p.rstrip("/"))) and not any(p.startswith(g + "/") for g in gone):
            fs.rm(p, recursive=True)
            gone.append(p)
    _said(gone, root, path)


def _sweep_beside(fs, target: str, path: str) -> None:
    """Remove, saying so, the temporaries a gone writer of ``target`` left beside it (a killed
    evaluate or rerank holds no lock, so no locked sweep would ever reach them)."""
    parent, stem = posixpath.split(target)
    try:
        names = fs.ls(parent, detail=False)
    except FileNotFoundError:
        return
    gone = [p for p in names if (b := posixpath.basename(p.rstrip("/"))).startswith(stem + ".") and _dead_writer(b)]
    for p in gone:
        fs.rm(p, recursive=True)
    _said(gone, parent, posixpath.dirname(path))


def _said(gone: list[str], root: str, path: str) -> None:
    if gone:
        log.warning(
            "removed %d leftover(s) of writers killed in %s: %s",
            len(gone),
            path,
            ", ".join(posixpath.relpath(g.rstrip("/"), root) for g in sorted(gone)),
        )
