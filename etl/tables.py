"""Node and edge tables (with dense ids) from deduplicated playlist records and track entries."""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from etl import contract
from etl.dedup import entities
from etl.ids import pid_bucket, uri_bucket, with_dense_ids

PLAYLIST_ATTRIBUTES = (
    "name",
    "num_followers",
    "collaborative",
    "num_edits",
    "modified_at",
    "num_tracks",
    "num_albums",
    "num_artists",
    "duration_ms",
)


def playlist_nodes(records: DataFrame) -> DataFrame:
    """Deduplicated playlist records -> ``playlist_id`` (by pid) and the published attributes."""
    return with_dense_ids(
        records.select(
            "pid",
            *[c for c in PLAYLIST_ATTRIBUTES if c != "collaborative"],
            (F.lower(F.col("collaborative")) == "true").alias("collaborative"),
        ),
        "pid",
        "playlist_id",
        pid_bucket(),
    )


CATALOGUE_COLUMNS = ("track_uri", "track_name", "duration_ms", "album_uri", "album_name", "artist_uri", "artist_name")


def catalogue_rows(entries: DataFrame) -> DataFrame:
    """The distinct descriptions of tracks among the entries: what the three entity tables read.

    Their minima, maxima and conflicts are those of all entries, from one pass over the entries
    instead of three (~27x fewer rows at 1M playlists: a track's entries mostly repeat one row).
    """
    return entries.select(*CATALOGUE_COLUMNS).distinct()


def album_nodes(entries: DataFrame) -> DataFrame:
    """album_id, album_uri, album_name, conflict (the attribute a URI disagreed on, or null)."""
    return with_dense_ids(
        entities(entries, "album_uri", ["album_name"]),
        "album_uri",
        "album_id",
        uri_bucket("album_uri", "spotify:album:"),
    )


def artist_nodes(entries: DataFrame) -> DataFrame:
    """artist_id, artist_uri, artist_name, conflict."""
    return with_dense_ids(
        entities(entries, "artist_uri", ["artist_name"]),
        "artist_uri",
        "artist_id",
        uri_bucket("artist_uri", "spotify:artist:"),
    )


def track_nodes(entries: DataFrame, albums: DataFrame, artists: DataFrame) -> DataFrame:
    """track_id, track_uri, track_name, duration_ms, album_id, artist_id, conflict."""
    tracks = with_dense_ids(
        entities(entries, "track_uri", ["track_name", "duration_ms", "album_uri", "artist_uri"]),
        "track_uri",
        "track_id",
        uri_bucket("track_uri", "spotify:track:"),
    )
    return (
        tracks.join(albums.select("album_uri", "album_id"), "album_uri")
        .join(artists.select("artist_uri", "artist_id"), "artist_uri")
        .drop("album_uri", "artist_uri")
    )


def playlist_track_edges(entries: DataFrame, tracks: DataFrame) -> DataFrame:
    """Deduplicated entries (track_uri, ...) -> (track_id, ...): edges once they carry playlist_id."""
    return entries.join(tracks.select("track_uri", "track_id"), "track_uri").drop("track_uri")


def contract_frame(df: DataFrame, table: str) -> DataFrame:
    """The contract's columns, in its order and dtypes, rows sorted by key within each file."""
    cols = [
        F.col(c).cast({"int64": "long", "string": "string", "bool": "boolean", "double": "double"}[t]).alias(c)
        for c, t in contract.TABLES[table].items()
    ]
    key = ["playlist_id", "pos"] if table == "edges/playlist_track" else [next(iter(contract.TABLES[table]))]
    return df.select(*cols).sortWithinPartitions(*key)


_ARROW_NAMES = {
    "LongType()": "int64",
    "StringType()": "string",
    "BooleanType()": "bool",
    "DoubleType()": "double",
    "IntegerType()": "int32",
}


def arrow_dtypes(df: DataFrame) -> dict[str, str]:
    return {f.name: _ARROW_NAMES.get(repr(f.dataType), f.dataType.simpleString()) for f in df.schema}
