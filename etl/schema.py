"""The explicit Spark schema of an MPD slice file (never inferred).

A slice is one multi-line JSON object ``{"info": {...}, "playlists": [...]}``. Field types follow
the published files: ``collaborative`` is the *string* "true"/"false", every count an integer.
``_corrupt_record`` catches a file that does not parse, so that the job can name it.

The file is read with each playlist kept as its JSON text (:data:`SLICE`), which is then parsed
on its own (:data:`PLAYLIST_SHALLOW`, then :data:`TRACK` per track): read with the full schema, one
wrongly typed value (``"pid": "1000"``) made the whole file unparseable. Parsed alone, the
record's mistyped fields come out null, and etl/flatten.py names them.
"""

from pyspark.sql.types import (
    ArrayType,
    LongType,
    StringType,
    StructField,
    StructType,
)

CORRUPT_RECORD = "_corrupt_record"

TRACK = StructType(
    [
        StructField("pos", LongType()),
        StructField("artist_name", StringType()),
        StructField("track_uri", StringType()),
        StructField("artist_uri", StringType()),
        StructField("track_name", StringType()),
        StructField("album_uri", StringType()),
        StructField("duration_ms", LongType()),
        StructField("album_name", StringType()),
    ]
)

PLAYLIST = StructType(
    [
        StructField("name", StringType()),
        StructField("collaborative", StringType()),
        StructField("pid", LongType()),
        StructField("modified_at", LongType()),
        StructField("num_tracks", LongType()),
        StructField("num_albums", LongType()),
        StructField("num_followers", LongType()),
        StructField("tracks", ArrayType(TRACK)),
        StructField("num_edits", LongType()),
        StructField("duration_ms", LongType()),
        StructField("num_artists", LongType()),
        StructField("description", StringType()),
    ]
)

INFO = StructType(
    [
        StructField("generated_on", StringType()),
        StructField("slice", StringType()),
        StructField("version", StringType()),
    ]
)

# A playlist with its tracks still as JSON text each, parsed with TRACK one by one.
PLAYLIST_SHALLOW = StructType(
    [f if f.name != "tracks" else StructField("tracks", ArrayType(StringType())) for f in PLAYLIST.fields]
)

SLICE = StructType(
    [
        StructField("info", INFO),
        StructField("playlists", ArrayType(StringType())),  # each playlist's JSON text
        StructField(CORRUPT_RECORD, StringType()),
    ]
)


def typed_fields(schema: StructType) -> list[str]:
    """Fields whose JSON type a parse can reject: a string field takes any value's text."""
    return [f.name for f in schema.fields if not isinstance(f.dataType, StringType)]
