"""MPD slice files: their names (``mpd.slice.A-B.json``, or ``.json.gz``), their bytes (gunzipped
when compressed) and their JSON, with errors that say where a file stops being readable. The
record rules a parsed slice must meet are etl/checker.py's."""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
import zlib
from typing import Iterable

SLICE_FILE_RE = re.compile(r"^mpd\.slice\.(\d+)-(\d+)\.json(?:\.gz)?$")  # gzip-compressed or not


def slice_range(path: str) -> tuple[int, int] | None:
    """The (first, last) pid a slice file name announces, or None for another name."""
    m = SLICE_FILE_RE.match(os.path.basename(path))
    return (int(m.group(1)), int(m.group(2))) if m else None


def slice_files(paths: Iterable[str]) -> list[str]:
    """Expand directories to their ``mpd.slice.*.json`` (or ``.json.gz``) files, sorted by first pid."""
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            found = [os.path.join(path, f) for f in os.listdir(path) if SLICE_FILE_RE.match(f)]
            if not found:
                raise ValueError(f"{path}: no mpd.slice.A-B.json or .json.gz files in this directory")
            files.extend(found)
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise ValueError(f"{path}: no such file or directory")
    return sorted(files, key=lambda f: (slice_range(f) or (sys.maxsize, 0), f))


def slice_bytes(data: bytes, path: str) -> bytes:
    """A slice file's JSON bytes: ``data`` itself, or gunzipped when ``path`` ends in ``.gz``
    (ValueError saying what is wrong with the compressed stream)."""
    if not path.endswith(".gz"):
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:  # not gzip, a bad block, or cut short
        raise ValueError(f"not a readable gzip file ({e})") from None


def parse_slice(data: bytes):
    """A slice file's JSON, or ValueError saying where it stops being UTF-8 JSON."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ValueError(
            f"byte 0x{data[e.start]:02x} at offset {e.start} (line {line}) is not UTF-8, which JSON requires"
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def why_not_a_slice(data: bytes, path: str = "") -> str:
    """What makes ``data`` (the bytes of the file ``path``) unreadable as an MPD slice, in a few words."""
    try:
        obj = parse_slice(slice_bytes(data, path))
    except ValueError as e:
        return str(e)
    if not isinstance(obj, dict) or not isinstance(obj.get("info"), dict) or not isinstance(obj.get("playlists"), list):
        return "JSON, but not an object with an info object and a playlists array"
    return "a record that cannot be parsed"
