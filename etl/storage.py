"""File-system operations through Hadoop's FileSystem API, so that every URL Spark can read
(file://, hdfs://, s3a://, gs://, abfs://...) works the same, with the cluster's credentials."""
from __future__ import annotations

import errno
import glob as _glob
import json
import os
import re
import socket
import time

from py4j.protocol import Py4JJavaError
from pyspark.sql import SparkSession

SLICE_PATTERN = "mpd.slice.*.json"


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

    A directory means its ``mpd.slice.*.json`` files.
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
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": command}
    while True:
        try:
            out = fs.create(jpath, False)  # overwrite=False: FileAlreadyExistsException if held
        except Py4JJavaError as e:
            java = e.java_exception
            if not fs.exists(jpath):  # not a held lock: the place itself is unusable
                raise OutputError(f"cannot create {path}: {java.getClass().getSimpleName()}: "
                                  f"{java.getMessage()}") from None
            try:
                holder = json.loads(read_text(spark, path))
            except (Py4JJavaError, ValueError):  # being written this instant, or half written
                holder = {}
            if holder.get("host") == me["host"] and holder.get("pid") and not _alive(int(holder["pid"])):
                fs.delete(jpath, False)  # its job is gone
                continue
            raise Locked(f"output {output} is being written by another job: {holder.get('command', '?')} "
                         f"(pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since "
                         f"{holder.get('since', '?')}); wait for it to end, or remove {path} if that job "
                         "is gone") from None
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
