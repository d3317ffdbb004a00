"""The MPD record rules: what the official ``check.py`` of the Million Playlist Dataset enforces.

Pure Python, no dependencies, so the Spark ETL, the synthetic generator and the tests all apply
the same rules and report the same rule names (the ``RULE_*`` constants).

Per playlist (:func:`check_playlist`): required fields and their types, ``collaborative`` is the
string ``"true"``/``"false"``, ``num_tracks``/``num_albums``/``num_artists``/``duration_ms`` match
the track list, 5-250 tracks, >= 3 artists, >= 2 albums, >= 1 follower, ``pos`` equals the index,
``modified_at`` at midnight GMT between 2010-01-01 and 2017-11-01, well-formed Spotify URIs.
Per slice (:func:`check_slice`): the ``info`` block, a file name that matches ``info.slice``, pids
consecutive from the slice's first pid. Across slices (:class:`CatalogueConsistency`): every
track/album/artist URI keeps one name, every track URI keeps one album, artist and duration, and
no pid appears twice.

Usage::

    python -m etl.checker DIR_OR_FILES...     # exit 0 if clean, 1 with findings, 2 on bad input
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Iterable, Iterator

from etl.slice_files import parse_slice, slice_bytes, slice_files, slice_range

# --- rule names (stable: the ETL reports dropped records under these names) -------------------
RULE_JSON = "json"  # file is not valid JSON / not the slice shape
RULE_SLICE_INFO = "slice_info"  # info block missing or malformed
RULE_SLICE_NAME = "slice_name"  # file name does not match info.slice
RULE_PID_SEQUENCE = "pid_sequence"  # pids not consecutive from the slice start
RULE_REQUIRED_FIELD = "required_field"  # a playlist or track field is missing
RULE_UNKNOWN_FIELD = "unknown_field"  # a field the MPD does not define
RULE_FIELD_TYPE = "field_type"  # a field has the wrong JSON type
RULE_COLLABORATIVE = "collaborative"  # not the string "true" or "false"
RULE_NUM_TRACKS = "num_tracks"  # num_tracks != len(tracks)
RULE_NUM_ALBUMS = "num_albums"  # num_albums != distinct album URIs
RULE_NUM_ARTISTS = "num_artists"  # num_artists != distinct artist URIs
RULE_DURATION = "duration_ms"  # duration_ms != sum of track durations
RULE_TRACK_COUNT = "track_count"  # outside 5..250 tracks
RULE_MIN_ARTISTS = "min_artists"  # fewer than 3 distinct artists
RULE_MIN_ALBUMS = "min_albums"  # fewer than 2 distinct albums
RULE_MIN_FOLLOWERS = "min_followers"  # fewer than 1 follower
RULE_POS = "pos"  # track pos != its index
RULE_MODIFIED_MIDNIGHT = "modified_at_midnight"  # not a midnight-GMT timestamp
RULE_MODIFIED_RANGE = "modified_at_range"  # before 2010-01-01 or after 2017-11-01
RULE_URI_FORMAT = "uri_format"  # not spotify:<kind>:<22 base62 chars>
RULE_URI_NAME = "uri_name"  # one URI, two names (across all slices checked together)
RULE_TRACK_METADATA = "track_metadata"  # one track URI, two albums/artists/durations
RULE_DUPLICATE_PID = "duplicate_pid"  # the same pid in two places

# fmt: off
RULES = (
    RULE_JSON, RULE_SLICE_INFO, RULE_SLICE_NAME, RULE_PID_SEQUENCE, RULE_REQUIRED_FIELD,
    RULE_UNKNOWN_FIELD, RULE_FIELD_TYPE, RULE_COLLABORATIVE, RULE_NUM_TRACKS, RULE_NUM_ALBUMS,
    RULE_NUM_ARTISTS, RULE_DURATION, RULE_TRACK_COUNT, RULE_MIN_ARTISTS, RULE_MIN_ALBUMS,
    RULE_MIN_FOLLOWERS, RULE_POS, RULE_MODIFIED_MIDNIGHT, RULE_MODIFIED_RANGE, RULE_URI_FORMAT,
    RULE_URI_NAME, RULE_TRACK_METADATA, RULE_DUPLICATE_PID,
)

# --- the format -------------------------------------------------------------------------------
# Key order as the MPD files write them (a Python 2 dict's order; "description", when present,
# comes last: see etl/synth.py).
PLAYLIST_FIELDS = (
    "name", "collaborative", "pid", "modified_at", "num_tracks", "num_albums", "num_followers",
    "tracks", "num_edits", "duration_ms", "num_artists",
)
OPTIONAL_PLAYLIST_FIELDS = ("description",)
TRACK_FIELDS = (
    "pos", "artist_name", "track_uri", "artist_uri", "track_name", "album_uri", "duration_ms",
    "album_name",
)
INFO_FIELDS = ("generated_on", "slice", "version")

_PLAYLIST_TYPES = {
    "name": str, "collaborative": str, "pid": int, "modified_at": int, "num_tracks": int,
    "num_albums": int, "num_followers": int, "tracks": list, "num_edits": int,
    "duration_ms": int, "num_artists": int, "description": str,
}
_TRACK_TYPES = {
    "pos": int, "artist_name": str, "track_uri": str, "artist_uri": str, "track_name": str,
    "album_uri": str, "duration_ms": int, "album_name": str,
}
_JSON_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object",
               type(None): "null"}
# fmt: on

MIN_TRACKS, MAX_TRACKS = 5, 250
MIN_ARTISTS, MIN_ALBUMS, MIN_FOLLOWERS = 3, 2, 1
SECONDS_PER_DAY = 86_400
MIN_MODIFIED_AT = 1_262_304_000  # 2010-01-01T00:00:00Z
MAX_MODIFIED_AT = 1_509_494_400  # 2017-11-01T00:00:00Z, the last day in the MPD

URI_KINDS = ("track", "album", "artist")
# Also Spark's (Java) rlike pattern in etl/validate.py and etl/dedup.py.
URI_REGEX = {kind: rf"^spotify:{kind}:[0-9A-Za-z]{{22}}$" for kind in URI_KINDS}
_URI_RE = {kind: re.compile(pattern) for kind, pattern in URI_REGEX.items()}


@dataclass(frozen=True)
class Finding:
    """One violated rule: which rule, where (file, pid), and what was found."""

    rule: str
    message: str
    pid: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = [w for w in (self.file, None if self.pid is None else f"pid {self.pid}") if w]
        return f"{': '.join(where)}: {self.rule}: {self.message}" if where else f"{self.rule}: {self.message}"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _type_ok(v, t) -> bool:
    return _is_int(v) if t is int else isinstance(v, t)


def _json_type(v) -> str:
    return _JSON_NAMES.get(type(v), type(v).__name__)


def _type_message(where: str, value, expected: type) -> str:
    return f"{where} is a JSON {_json_type(value)}, expected {_json_type(expected())}"


def check_playlist(p: dict, file: str | None = None) -> list[Finding]:
    """All per-record rule violations of one playlist (an empty list when it is valid)."""
    pid = p.get("pid") if isinstance(p, dict) and _is_int(p.get("pid")) else None
    out: list[Finding] = []

    def bad(rule: str, msg: str) -> None:
        out.append(Finding(rule, msg, pid, file))

    if not isinstance(p, dict):
        bad(RULE_FIELD_TYPE, f"playlist is a JSON {_json_type(p)}, expected an object")
        return out
    for k in PLAYLIST_FIELDS:
        if k not in p:
            bad(RULE_REQUIRED_FIELD, f"playlist field {k!r} is missing")
    for k in p:
        if k not in _PLAYLIST_TYPES:
            bad(RULE_UNKNOWN_FIELD, f"playlist field {k!r} is not an MPD field")
        elif not _type_ok(p[k], _PLAYLIST_TYPES[k]):
            bad(RULE_FIELD_TYPE, _type_message(f"playlist field {k!r}", p[k], _PLAYLIST_TYPES[k]))
    if out:  # counting over a malformed record would only add noise
        return out

    if p["collaborative"] not in ("true", "false"):
        bad(RULE_COLLABORATIVE, f"collaborative is {p['collaborative']!r}, expected 'true' or 'false'")
    tracks = p["tracks"]
    albums: set[str] = set()
    artists: set[str] = set()
    duration = 0
    tracks_ok = True
    for i, t in enumerate(tracks):
        if not isinstance(t, dict):
            bad(RULE_FIELD_TYPE, f"tracks[{i}] is a JSON {_json_type(t)}, expected an object")
            tracks_ok = False
            continue
        for k in TRACK_FIELDS:
            if k not in t:
                bad(RULE_REQUIRED_FIELD, f"tracks[{i}] field {k!r} is missing")
                tracks_ok = False
        for k, v in t.items():
            if k not in _TRACK_TYPES:
                bad(RULE_UNKNOWN_FIELD, f"tracks[{i}] field {k!r} is not an MPD track field")
            elif not _type_ok(v, _TRACK_TYPES[k]):
                bad(RULE_FIELD_TYPE, _type_message(f"tracks[{i}] field {k!r}", v, _TRACK_TYPES[k]))
                tracks_ok = False
        if not tracks_ok:
            continue
        if t["pos"] != i:
            bad(RULE_POS, f"tracks[{i}] has pos {t['pos']}, expected {i}")
        for kind in ("track", "album", "artist"):
            uri = t[f"{kind}_uri"]
            if not _URI_RE[kind].match(uri):
                bad(RULE_URI_FORMAT, f"tracks[{i}] {kind}_uri {uri!r} is not spotify:{kind}:<22 base62 chars>")
        albums.add(t["album_uri"])
        artists.add(t["artist_uri"])
        duration += t["duration_ms"]

    n = len(tracks)
    if p["num_tracks"] != n:
        bad(RULE_NUM_TRACKS, f"num_tracks is {p['num_tracks']}, the playlist has {n} tracks")
    if not MIN_TRACKS <= n <= MAX_TRACKS:
        bad(RULE_TRACK_COUNT, f"{n} tracks, the MPD keeps {MIN_TRACKS}..{MAX_TRACKS}")
    if tracks_ok:
        if p["num_albums"] != len(albums):
            bad(RULE_NUM_ALBUMS, f"num_albums is {p['num_albums']}, the tracks have {len(albums)} distinct album URIs")
        if p["num_artists"] != len(artists):
            bad(
                RULE_NUM_ARTISTS,
                f"num_artists is {p['num_artists']}, the tracks have {len(artists)} distinct artist URIs",
            )
        if p["duration_ms"] != duration:
            bad(RULE_DURATION, f"duration_ms is {p['duration_ms']}, the tracks sum to {duration}")
        if len(artists) < MIN_ARTISTS:
            bad(RULE_MIN_ARTISTS, f"{len(artists)} distinct artists, the MPD requires >= {MIN_ARTISTS}")
        if len(albums) < MIN_ALBUMS:
            bad(RULE_MIN_ALBUMS, f"{len(albums)} distinct albums, the MPD requires >= {MIN_ALBUMS}")
    if p["num_followers"] < MIN_FOLLOWERS:
        bad(RULE_MIN_FOLLOWERS, f"num_followers is {p['num_followers']}, the MPD requires >= {MIN_FOLLOWERS}")
    ts = p["modified_at"]
    if ts % SECONDS_PER_DAY:
        bad(RULE_MODIFIED_MIDNIGHT, f"modified_at {ts} is not at midnight GMT")
    if not MIN_MODIFIED_AT <= ts <= MAX_MODIFIED_AT:
        span = f"{MIN_MODIFIED_AT} (2010-01-01)..{MAX_MODIFIED_AT} (2017-11-01)"
        bad(RULE_MODIFIED_RANGE, f"modified_at {ts} is outside {span}")
    return out


def check_slice(obj, path: str | None = None) -> list[Finding]:
    """Rule violations of one parsed slice file: its info block, pid sequence and every playlist.

    ``path`` names the file in findings and is checked against ``info.slice``. Pids must run
    consecutively from the slice's first pid and stay inside its range; a slice may hold fewer
    playlists than its range (the real sample in ``shared/data`` is a cut-down slice).
    """
    file = path
    out: list[Finding] = []
    if not isinstance(obj, dict) or not isinstance(obj.get("playlists"), list):
        return [Finding(RULE_JSON, "expected an object with a 'playlists' array", None, file)]
    info = obj.get("info")
    first = last = None
    if not isinstance(info, dict):
        out.append(Finding(RULE_SLICE_INFO, "the 'info' object is missing", None, file))
    else:
        for k in INFO_FIELDS:
            if not isinstance(info.get(k), str):
                out.append(Finding(RULE_SLICE_INFO, f"info.{k} is missing or not a string", None, file))
        m = re.fullmatch(r"(\d+)-(\d+)", info.get("slice", "") if isinstance(info.get("slice"), str) else "")
        if m:
            first, last = int(m.group(1)), int(m.group(2))
        elif isinstance(info.get("slice"), str):
            out.append(Finding(RULE_SLICE_INFO, f"info.slice {info['slice']!r} is not 'FIRST-LAST'", None, file))
    if path is not None and first is not None:
        named = slice_range(path)
        if named is not None and named != (first, last):
            msg = f"file name says {named[0]}-{named[1]}, info.slice says {first}-{last}"
            out.append(Finding(RULE_SLICE_NAME, msg, None, file))
    expected = first
    for i, p in enumerate(obj["playlists"]):
        out.extend(check_playlist(p, file))
        pid = p.get("pid") if isinstance(p, dict) else None
        if expected is not None and _is_int(pid):
            if pid != expected or pid > last:
                msg = f"playlists[{i}] has pid {pid}, expected {expected} (slice {first}-{last})"
                out.append(Finding(RULE_PID_SEQUENCE, msg, pid, file))
            expected = pid + 1
    return out


class CatalogueConsistency:
    """Cross-slice rules: one name per URI, one album/artist/duration per track, unique pids.

    Feed it playlists (from as many slices as needed) with :meth:`add_playlist`, then read
    :attr:`findings`. Each conflict is reported once per (URI, conflicting value), naming the pid
    and file where the conflicting value appeared and where the first value was seen.
    """

    def __init__(self) -> None:
        self._name: dict[str, tuple[str, int, str | None]] = {}
        self._track: dict[str, tuple[tuple[str, str, int], int, str | None]] = {}
        self._pids: dict[int, str | None] = {}
        self._reported: set[tuple] = set()
        self.findings: list[Finding] = []

    def _conflict(self, rule: str, key: tuple, msg: str, pid, file) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.findings.append(Finding(rule, msg, pid, file))

    def add_playlist(self, p: dict, file: str | None = None) -> None:
        """Record one playlist's pid and URI -> name/metadata pairs (malformed tracks are skipped)."""
        pid = p.get("pid")
        if _is_int(pid):
            if pid in self._pids:
                self._conflict(
                    RULE_DUPLICATE_PID, ("pid", pid), f"pid {pid} already appeared in {self._pids[pid]}", pid, file
                )
            else:
                self._pids[pid] = file
        for t in p.get("tracks", ()) if isinstance(p.get("tracks"), list) else ():
            if not isinstance(t, dict) or any(not _type_ok(t.get(k), _TRACK_TYPES[k]) for k in TRACK_FIELDS):
                continue
            for kind in ("track", "album", "artist"):
                uri, name = t[f"{kind}_uri"], t[f"{kind}_name"]
                seen = self._name.setdefault(uri, (name, pid, file))
                if seen[0] != name:
                    msg = f"{uri} is named {name!r} here but {seen[0]!r} in pid {seen[1]} ({seen[2]})"
                    self._conflict(RULE_URI_NAME, (uri, name), msg, pid, file)
            meta = (t["album_uri"], t["artist_uri"], t["duration_ms"])
            seen_t = self._track.setdefault(t["track_uri"], (meta, pid, file))
            if seen_t[0] != meta:
                msg = (
                    f"{t['track_uri']} has album/artist/duration {meta} here but {seen_t[0]} "
                    f"in pid {seen_t[1]} ({seen_t[2]})"
                )
                self._conflict(RULE_TRACK_METADATA, (t["track_uri"], meta), msg, pid, file)

    def add_slice(self, obj, path: str | None = None) -> None:
        """Record every playlist of a parsed slice."""
        for p in obj.get("playlists", ()) if isinstance(obj, dict) else ():
            if isinstance(p, dict):
                self.add_playlist(p, path)


def check_files(paths: Iterable[str]) -> Iterator[Finding]:
    """Every finding of the slices under ``paths`` (files or directories), cross-slice rules last."""
    consistency = CatalogueConsistency()
    for f in slice_files(paths):
        try:
            with open(f, "rb") as fh:
                obj = parse_slice(slice_bytes(fh.read(), f))
        except (OSError, ValueError) as e:
            yield Finding(RULE_JSON, f"cannot read as JSON: {e}", None, f)
            continue
        yield from check_slice(obj, f)
        consistency.add_slice(obj, f)
    yield from consistency.findings


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m etl.checker DIR_OR_SLICE_FILE...", file=sys.stderr)
        return 2
    try:
        n = 0
        for finding in check_files(args):
            n += 1
            print(finding)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{n} findings", file=sys.stderr)
    return 1 if n else 0


if __name__ == "__main__":
    sys.exit(main())
