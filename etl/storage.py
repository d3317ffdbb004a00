"""File-system operations through Hadoop's FileSystem API, so that every URL Spark can read
(file://, hdfs://, s3a://, gs://, abfs://...) works the same, with the cluster's credentials."""

from __future__ import annotations

import errno
import glob as _glob
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import uuid

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

SLICE_PATTERN = "mpd.slice.*.{json,json.gz}"  # a Hadoop glob: plain or gzip-compressed slices
# JSON bytes per byte of a gzip-compressed slice (MPD slices, real and synthetic: 5.9-6.5), for
# sizing the job by the JSON it will parse.
GZIP_EXPANSION = 6
TEMP_SUFFIX = r"\.tmp-[0-9a-f]{32}"  # what temp_path appends to the output

log = logging.getLogger(__name__)


class InputError(ValueError):
    """The input does not name any readable MPD slice."""


class OutputError(ValueError):
    """The output cannot be created where it was asked for."""


class Locked(RuntimeError):
    """Another live job writes the same output."""


def _fs(spark: SparkSession, path: str):
    jpath = spark._jvm.org.apache.hadoop.fs.Path(path)
    return jpath.getFileSystem(spark._jsc.hadoopConfiguration()), jpath


def list_slices(spark: SparkSession, path: str) -> list[tuple[str, int]]:
    """Sorted (file URL, size in bytes) of the slices a directory or glob names.

    A directory means its ``mpd.slice.*.json`` and ``mpd.slice.*.json.gz`` files (Spark reads
    gzip natively, so the MPD need not be unpacked).
    """
    fs, jpath = _fs(spark, path)
    if not _glob.has_magic(path) and fs.exists(jpath) and fs.getFileStatus(jpath).isDirectory():
        jpath = spark._jvm.org.apache.hadoop.fs.Path(jpath, SLICE_PATTERN)
    statuses = fs.globStatus(jpath) or []
    files = sorted((str(s.getPath()), int(s.getLen())) for s in statuses if s.isFile())
    if not files:
        raise InputError(
            f"no MPD slice files at {path!r} (looked for {jpath.toString()}); pass a directory "
            f"holding {SLICE_PATTERN} files, a glob, or a single slice file"
        )
    return files


# Disk the job takes per byte of JSON it parses, at 1M playlists (bench/log/2026-12-06-1m-etl.md):
# Spark's scratch at its peak (23.4 GB for 33.7 GB: shuffle files; the edges are no longer
# persisted before their write, which took 36.5 GB) with a fifth to spare, and the graph dir it
# writes (0.59 GB at 1M) with more: it is small either way.
SCRATCH_PER_JSON_BYTE = 0.85
OUTPUT_PER_JSON_BYTE = 0.05


class NotEnoughDisk(OutputError):
    """Less free disk than the job is estimated to need."""


def _local(path: str) -> str | None:
    """The local file-system path of ``path``, or None for another file system."""
    scheme, sep, rest = path.partition("://")
    if not sep:
        return path
    return rest if scheme == "file" else None


def scratch_dirs(spark: SparkSession) -> list[str]:
    """Where a local-mode job keeps its shuffle files and on-disk caches (what Spark itself uses)."""
    dirs = os.environ.get("SPARK_LOCAL_DIRS") or spark.conf.get("spark.local.dir", None) or tempfile.gettempdir()
    return [d for d in dirs.split(",") if d]


def check_free_disk(spark: SparkSession, output: str, json_size: int) -> None:
    """Refuse, naming places and sizes, a local-mode job whose scratch and output will not fit.

    Only local disks in local mode are checked: a cluster's executors keep their scratch where
    the driver cannot see it. Needs on the same disk add up.
    """
    if not spark.sparkContext.master.startswith("local"):
        return
    dirs = scratch_dirs(spark)
    wants = [(d, json_size * SCRATCH_PER_JSON_BYTE / len(dirs), f"{d} (Spark's scratch)") for d in dirs]
    if _local(output) is not None:
        wants.append((_local(output), json_size * OUTPUT_PER_JSON_BYTE, f"{_local(output)} (the output)"))
    by_disk: dict[int, list] = {}
    for path, need, what in wants:
        path = os.path.abspath(path)
        while not os.path.exists(path):
            path = os.path.dirname(path)
        disk = by_disk.setdefault(os.stat(path).st_dev, [path, 0.0, []])
        disk[1] += need
        disk[2].append(f"{_size(need)} in {what}")
    for path, need, whats in by_disk.values():
        free = shutil.disk_usage(path).free
        if free < need:
            raise NotEnoughDisk(
                f"not enough free disk: {_size(json_size)} of JSON needs about {' and '.join(whats)}, "
                f"{_size(free)} free on that disk; free space there, or point SPARK_LOCAL_DIRS "
                "(spark.local.dir) or --output at a larger disk (gzip-compressed input takes a sixth of the room)"
            )


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def json_bytes(files: list[tuple[str, int]]) -> int:
    """The JSON the slices hold, in bytes: a compressed slice's size times ``GZIP_EXPANSION``."""
    return sum(size * (GZIP_EXPANSION if f.endswith(".gz") else 1) for f, size in files)


def exists(spark: SparkSession, path: str) -> bool:
    fs, jpath = _fs(spark, path)
    return bool(fs.exists(jpath))


def make_dirs(spark: SparkSession, path: str) -> None:
    """Create ``path`` and its parents, or raise :class:`OutputError` saying why not."""
    fs, jpath = _fs(spark, path)
    try:
        made = fs.mkdirs(jpath)
    except Py4JJavaError as e:  # e.g. ParentNotDirectoryException, AccessControlException
        java = e.java_exception
        raise OutputError(f"cannot create {path}: {java.getClass().getSimpleName()}: {java.getMessage()}") from None
    if not made:
        raise OutputError(f"cannot create {path} (the file system refused; is a parent a file, or read-only?)")


def temp_dirs(spark: SparkSession, output: str, pattern: str) -> list[str]:
    """Siblings of ``output`` whose name is ``output``'s followed by the regex ``pattern``."""
    fs, jpath = _fs(spark, output)
    parent = jpath.getParent()
    if parent is None or not fs.exists(parent):
        return []
    name = re.compile(re.escape(jpath.getName()) + pattern + "$")
    return sorted(str(s.getPath()) for s in fs.listStatus(parent) if name.match(s.getPath().getName()))


class OutputExistsError(FileExistsError):
    """The output exists and --overwrite was not given."""


def temp_path(output: str) -> str:
    """Where a job stages ``output`` until :func:`publish` moves it into place whole."""
    return f"{output}.tmp-{uuid.uuid4().hex}"


def clear_stale_temps(spark: SparkSession, output: str, own_temp: str) -> None:
    """Remove, saying so, the temporary dirs that killed runs of the same output left behind
    (called under the output's lock: no live job but this one, ``own_temp``, has one)."""
    stale = [d for d in temp_dirs(spark, output, TEMP_SUFFIX) if not d.endswith(own_temp.rsplit("/", 1)[-1])]
    for path in stale:
        delete(spark, path)
    if stale:
        log.warning(
            "removed %d temporary dir(s) of %s left by runs that did not finish: %s",
            len(stale),
            output,
            ", ".join(stale),
        )


def refuse_existing(spark: SparkSession, output: str, overwrite: bool) -> None:
    if exists(spark, output) and not overwrite:
        raise OutputExistsError(f"output {output} exists; pass --overwrite to replace it")


def publish(spark: SparkSession, tmp: str, output: str, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``output``; an output that appeared while the job ran (written
    by something that ignores the lock) is replaced only with ``overwrite``."""
    if exists(spark, output):
        if not overwrite:
            raise OutputExistsError(
                f"output {output} appeared while this job ran; it is not replaced without --overwrite"
            )
        old = f"{output}.old-{uuid.uuid4().hex}"
        rename(spark, output, old)
        rename(spark, tmp, output)
        delete(spark, old)
    else:
        rename(spark, tmp, output)


def delete(spark: SparkSession, path: str) -> None:
    fs, jpath = _fs(spark, path)
    fs.delete(jpath, True)


def rename(spark: SparkSession, source: str, target: str) -> None:
    """Rename ``source`` to ``target`` (atomic on HDFS and local disks, a copy on object stores)."""
    fs, src = _fs(spark, source)
    _, dst = _fs(spark, target)
    if not fs.rename(src, dst):
        raise OSError(f"could not rename {source} to {target}")


def write_text(spark: SparkSession, path: str, text: str) -> None:
    fs, jpath = _fs(spark, path)
    out = fs.create(jpath, True)
    try:
        out.write(bytearray(text.encode("utf-8")))
    finally:
        out.close()


def no_space_left(e: BaseException) -> bool:
    """Whether ``e`` (a Py4J error carrying a Java trace, or an OSError) comes from a full disk."""
    return getattr(e, "errno", None) == errno.ENOSPC or "No space left on device" in str(e)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock(spark: SparkSession, output: str, command: str) -> str:
    """Create ``<output>.lock`` naming this job, or raise :class:`Locked` naming the live job that
    holds it; returns the lock's path. A lock whose process is gone (same host, pid not running:
    a killed job) is taken over. The create is exclusive on HDFS and local disks; object stores
    have no exclusive create, so there it guards against mistakes rather than races."""
    path = f"{output}.lock"
    fs, jpath = _fs(spark, path)
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": command,
    }
    while True:
        try:
            out = fs.create(jpath, False)  # overwrite=False: FileAlreadyExistsException if held
        except Py4JJavaError as e:
            java = e.java_exception
            if not fs.exists(jpath):  # not a held lock: the place itself is unusable
                raise OutputError(
                    f"cannot create {path}: {java.getClass().getSimpleName()}: {java.getMessage()}"
                ) from None
            try:
                holder = json.loads(read_text(spark, path))
            except (Py4JJavaError, ValueError):  # being written this instant, or half written
                holder = {}
            if holder.get("host") == me["host"] and holder.get("pid") and not _alive(int(holder["pid"])):
                fs.delete(jpath, False)  # its job is gone
                continue
            raise Locked(
                f"output {output} is being written by another job: {holder.get('command', '?')} "
                f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since "
                f"{holder.get('since', '?')}); wait for it to end, or remove {path} if that job "
                "is gone"
            ) from None
        try:
            out.write(bytearray(json.dumps(me).encode()))
        finally:
            out.close()
        return path


def read_bytes(spark: SparkSession, path: str) -> bytes:
    fs, jpath = _fs(spark, path)
    stream = fs.open(jpath)
    try:
        return bytes(stream.readAllBytes())
    finally:
        stream.close()


def read_text(spark: SparkSession, path: str) -> str:
    fs, jpath = _fs(spark, path)
    stream = fs.open(jpath)
    try:
        reader = spark._jvm.java.io.BufferedReader(spark._jvm.java.io.InputStreamReader(stream, "UTF-8"))
        return "\n".join(iter(reader.readLine, None))
    finally:
        stream.close()
