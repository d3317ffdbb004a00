"""Flatten parsed MPD slices: one row per playlist record, then one row per track entry."""
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from etl.schema import CORRUPT_RECORD, PLAYLIST, TRACK

PLAYLIST_FIELDS = [f.name for f in PLAYLIST.fields if f.name != "tracks"]
TRACK_FIELDS = [f.name for f in TRACK.fields]


def playlist_records(slices: DataFrame) -> DataFrame:
    """Slices (as read, with the ``_metadata`` column) -> one row per playlist record.

    Keeps the record's file and index in that file, which make "first occurrence" deterministic
    whatever the partitioning, and marks the rows of files that did not parse (``bad_file``):
    such a file yields a single row with a null playlist.
    """
    return slices.select(
        F.col("_metadata.file_path").alias("input_file"),
        F.col(CORRUPT_RECORD).isNotNull().alias("bad_file"),
        F.col("info"),
        F.posexplode_outer("playlists").alias("playlist_index", "p"),
    ).select(
        "input_file",
        "bad_file",
        "info",
        "playlist_index",
        *[F.col(f"p.{f}").alias(f) for f in PLAYLIST_FIELDS],
        F.col("p.tracks").alias("tracks"),
    )


def track_entries(playlists: DataFrame) -> DataFrame:
    """Playlist records -> one row per track entry (pid, its position, the track's fields).

    ``track_index`` is the entry's index in the record's list; ``pos`` falls back to it when the
    record has none (the checker reports pos != index separately).
    """
    return playlists.select(
        "pid", F.posexplode("tracks").alias("track_index", "t")
    ).select(
        "pid",
        "track_index",
        F.coalesce(F.col("t.pos"), F.col("track_index")).alias("pos"),
        *[F.col(f"t.{f}").alias(f) for f in TRACK_FIELDS if f != "pos"],
    )


def entry_count(playlists: DataFrame) -> "F.Column":
    """Number of track entries in a playlist record (0 for a missing list)."""
    return F.coalesce(F.size("tracks"), F.lit(0))
