"""Flatten parsed MPD slices: one row per playlist record, then one row per track entry."""

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from etl.schema import CORRUPT_RECORD, PLAYLIST, PLAYLIST_SHALLOW, TRACK, typed_fields

PLAYLIST_FIELDS = [f.name for f in PLAYLIST.fields if f.name != "tracks"]
TRACK_FIELDS = [f.name for f in TRACK.fields]
RAW_TRACKS = "_raw_tracks"


def playlist_records(slices: DataFrame) -> DataFrame:
    """Slices (as read with ``SLICE``, with the ``_metadata`` column) -> one row per playlist record.

    Keeps the record's file and index in that file, which make "first occurrence" deterministic
    whatever the partitioning, and marks the rows of files that did not parse (``bad_file``):
    such a file yields a single row with a null playlist. ``mistyped`` lists the record's fields
    of the wrong JSON type (``pid``, ``tracks[3].pos``; ``playlist`` or ``tracks[3]`` for one
    that is not an object), empty for a well-typed record.
    """
    parsed = (
        slices.select(
            F.col("_metadata.file_path").alias("input_file"),
            F.col(CORRUPT_RECORD).isNotNull().alias("bad_file"),
            F.col("info"),
            F.posexplode_outer("playlists").alias("playlist_index", "raw"),
        )
        .select(
            "input_file",
            "bad_file",
            "info",
            "playlist_index",
            "raw",
            F.from_json("raw", PLAYLIST_SHALLOW).alias("p"),
        )
        .select(
            "input_file",
            "bad_file",
            "info",
            "playlist_index",
            "raw",
            *[F.col(f"p.{f}").alias(f) for f in PLAYLIST_FIELDS],
            F.col("p.tracks").alias(RAW_TRACKS),
            F.transform("p.tracks", lambda t: F.from_json(t, TRACK)).alias("tracks"),
        )
    )
    return parsed.select(
        "input_file",
        "bad_file",
        "info",
        "playlist_index",
        *PLAYLIST_FIELDS,
        "tracks",
        _mistyped(F.col("raw"), F.col(RAW_TRACKS)).alias("mistyped"),
    )


def _not_object(raw: Column) -> Column:
    return raw.isNull() | ~F.ltrim(raw).startswith("{")


def _mistyped_in(raw: Column, parsed, fields: list[str], prefix: Column) -> list[Column]:
    # Null after the parse, yet present and not null in the text: the value had another type.
    return [
        F.when(parsed(f).isNull() & F.get_json_object(raw, f"$.{f}").isNotNull(), F.concat(prefix, F.lit(f)))
        for f in fields
    ]


def _mistyped(raw: Column, raw_tracks: Column) -> Column:
    """The mistyped fields of a record, from its JSON text and its tracks' (see playlist_records)."""
    playlist = [
        F.when(_not_object(raw), F.lit("playlist")),
        *_mistyped_in(
            raw, lambda f: F.col(f if f != "tracks" else RAW_TRACKS), typed_fields(PLAYLIST_SHALLOW), F.lit("")
        ),
    ]

    def track(t: Column, i: Column) -> Column:
        where = F.concat(F.lit("tracks["), i.cast("string"), F.lit("]"))
        raw_t = F.element_at(raw_tracks, i + 1)
        return F.array(
            F.when(_not_object(raw_t), where),
            *_mistyped_in(raw_t, lambda f: t[f], typed_fields(TRACK), F.concat(where, F.lit("."))),
        )

    tracks = F.flatten(F.transform(F.col("tracks"), track))
    both = F.concat(F.array(*playlist), F.coalesce(tracks, F.array().cast("array<string>")))
    return F.filter(both, lambda x: x.isNotNull())


def track_entries(playlists: DataFrame) -> DataFrame:
    """Playlist records -> one row per track entry (pid, its position, the track's fields).

    ``track_index`` is the entry's index in the record's list; ``pos`` falls back to it when the
    record has none (the checker reports pos != index separately).
    """
    return playlists.select("pid", F.posexplode("tracks").alias("track_index", "t")).select(
        "pid",
        "track_index",
        F.coalesce(F.col("t.pos"), F.col("track_index")).alias("pos"),
        *[F.col(f"t.{f}").alias(f) for f in TRACK_FIELDS if f != "pos"],
    )


def entry_count(playlists: DataFrame) -> "F.Column":
    """Number of track entries in a playlist record (0 for a missing list)."""
    return F.coalesce(F.size("tracks"), F.lit(0))
