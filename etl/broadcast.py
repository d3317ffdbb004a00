"""The broadcast of the hll 2-hop sketches (``etl/features.py``, ``--hop2 hll``): its size from the
input's, and the driver heap it needs, checked before the job runs."""

import math

from etl.flags import memory_bytes

# Sized from the input before any Spark stage runs (bench/log/2026-12-07-hll-broadcast.md checks
# it against graph dirs of 2k real and 10k and 1M generated playlists). A sketch of n distinct
# ends is min(8 + 4n, 2,088) bytes (uncapped here: a bound), in a row of 24 more, one per middle
# node, in either of two broadcasts (co-playlists', co-tracks'). Counts follow the real MPD:
# 490-505 JSON bytes and 1/66.35 playlists per entry; distinct tracks by Heaps' law through its
# 100k and 1M counts; albums and artists as its shares of tracks. The driver builds the broadcast
# relation on its heap: the default 6g held the 1M-playlist job's, 4g did not
# (bench/log/2026-12-05-1m-etl-6g.md).
JSON_BYTES_PER_ENTRY = 490
ENTRIES_PER_PLAYLIST = 66.35
TRACKS_1M, ENTRIES_1M, HEAPS_EXPONENT = 2_262_292, 66_346_428, 0.521
ALBUMS_PER_TRACK, ARTISTS_PER_TRACK = 0.325, 0.131
SKETCH_ROW_BYTES, SKETCH_MAX_BYTES = 24, 2_088
# Heap = 0.5 GiB + 12 x the broadcast puts the 1M job's (0.34 GB) at 4.3-4.5 GiB, between the two.
DRIVER_BASE_BYTES, DRIVER_BYTES_PER_BROADCAST_BYTE = 2**29, 12


class DriverMemoryError(ValueError):
    """The driver's heap cannot hold the 2-hop sketches' broadcast."""


def hll_broadcast_bytes(entries: float, playlists: float, tracks: float, albums: float, artists: float) -> int:
    """Bytes of the larger of the two broadcasts (``entries``: visible playlist-track edges):
    co-playlists' (a sketch of its playlists per track) or co-tracks' (of its tracks per playlist,
    album and artist)."""
    row = SKETCH_ROW_BYTES + 8
    co_playlists = row * tracks + 4 * entries
    co_tracks = row * (playlists + albums + artists) + 4 * (entries + 2 * tracks)
    return int(max(co_playlists, co_tracks))


def sketch_table_bytes(ends) -> int:
    """Bytes of a broadcast of one sketch per middle node, ``ends`` the distinct ends of each."""
    return sum(SKETCH_ROW_BYTES + min(8 + 4 * int(n), SKETCH_MAX_BYTES) for n in ends)


def estimated_broadcast_bytes(json_bytes: int) -> int:
    """:func:`hll_broadcast_bytes` of an input of ``json_bytes`` of MPD slices."""
    entries = json_bytes / JSON_BYTES_PER_ENTRY
    tracks = min(entries, TRACKS_1M * (entries / ENTRIES_1M) ** HEAPS_EXPONENT)
    return hll_broadcast_bytes(
        entries, entries / ENTRIES_PER_PLAYLIST, tracks, tracks * ALBUMS_PER_TRACK, tracks * ARTISTS_PER_TRACK
    )


def check_driver_memory(json_bytes: int, driver_memory: str) -> None:
    """Refuse, before the job runs, a driver heap (``spark.driver.memory``) too small for the hll
    sketches' broadcast of this input."""
    broadcast = estimated_broadcast_bytes(json_bytes)
    needed = DRIVER_BASE_BYTES + DRIVER_BYTES_PER_BROADCAST_BYTE * broadcast
    if memory_bytes(driver_memory) < needed:
        raise DriverMemoryError(
            f"the 2-hop sketches of {json_bytes / 2**30:.1f} GiB of input need ~{math.ceil(needed / 2**30)}g of "
            f"driver heap (a ~{broadcast / 2**20:,.0f} MiB broadcast): raise --driver-memory (now {driver_memory}; "
            "spark.driver.memory under spark-submit), or pass --hop2 off"
        )
