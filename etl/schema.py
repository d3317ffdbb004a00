"""The explicit Spark schema of an MPD slice file (never inferred).

A slice is one multi-line JSON object ``{"info": {...}, "playlists": [...]}``. Field types follow
the published files: ``collaborative`` is the *string* "true"/"false", every count an integer.
``_corrupt_record`` catches a file that does not parse, so that the job can name it.
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

SLICE = StructType(
    [
        StructField("info", INFO),
        StructField("playlists", ArrayType(PLAYLIST)),
        StructField(CORRUPT_RECORD, StringType()),
    ]
)
