"""Deduplication: playlists by pid, track entries by (pid, track_uri), entities by URI.

Each step returns what it keeps and, where rows leave, a *drops* DataFrame with the common
schema ``reason, example, playlists, entries`` so the job can account for every input row.
"""
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from etl.checker import RULE_DUPLICATE_PID

DROP_COLUMNS = ("reason", "example", "playlists", "entries")


def drops(df: DataFrame, reason: str, example, playlists: int, entries) -> DataFrame:
    """Rows of ``df`` described as drops of ``reason``."""
    return df.select(
        F.lit(reason).alias("reason"),
        example.cast("string").alias("example"),
        F.lit(playlists).cast("long").alias("playlists"),
        entries.cast("long").alias("entries"),
    )


def split_missing_pid(records: DataFrame, entries) -> tuple[DataFrame, DataFrame]:
    """Records without a pid cannot be keyed: drop them (with their entries)."""
    missing = F.col("pid").isNull()
    example = F.concat_ws("#", "input_file", F.col("playlist_index").cast("string"))
    return records.where(~missing), drops(records.where(missing), "missing_pid", example, 1, entries)


def split_duplicate_pids(records: DataFrame, entries) -> tuple[DataFrame, DataFrame]:
    """Keep the first record of each pid, by (input file, index in file).

    Only the narrow key columns are shuffled to rank; the records themselves (with their track
    lists) never move: the few losers are broadcast and anti-joined.
    """
    where = ["input_file", "playlist_index"]
    first = Window.partitionBy("pid").orderBy(*where)
    losers = (
        records.select("pid", *where).withColumn("_rank", F.row_number().over(first))
        .where("_rank > 1").select(*where)
    )
    kept = records.join(F.broadcast(losers), where, "left_anti")
    dup = records.join(F.broadcast(losers), where, "left_semi")
    return kept, drops(dup, RULE_DUPLICATE_PID, F.col("pid"), 1, entries)


def split_missing_uris(entries: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Entries lacking a track, album or artist URI cannot become edges: drop them.

    The first missing URI names the reason, so that each entry is counted once.
    """
    reason = (
        F.when(F.col("track_uri").isNull(), "missing_track_uri")
        .when(F.col("album_uri").isNull(), "missing_album_uri")
        .when(F.col("artist_uri").isNull(), "missing_artist_uri")
    )
    marked = entries.withColumn("_reason", reason)
    bad = marked.where(F.col("_reason").isNotNull())
    dropped = bad.select(
        F.col("_reason").alias("reason"),
        F.concat_ws("#", F.col("pid").cast("string"), F.col("pos").cast("string")).alias("example"),
        F.lit(0).cast("long").alias("playlists"),
        F.lit(1).cast("long").alias("entries"),
    )
    return marked.where(F.col("_reason").isNull()).drop("_reason"), dropped


def dedup_entries(entries: DataFrame) -> tuple[DataFrame, DataFrame]:
    """One entry per (pid, track_uri), at its first pos; the rest are ``duplicate_entry`` drops."""
    grouped = entries.groupBy("pid", "track_uri").agg(
        F.min("pos").alias("pos"), F.count(F.lit(1)).alias("_n")
    )
    dup = grouped.where("_n > 1")
    dropped = dup.select(
        F.lit("duplicate_entry").alias("reason"),
        F.concat_ws("#", F.col("pid").cast("string"), "track_uri").alias("example"),
        F.lit(0).cast("long").alias("playlists"),
        (F.col("_n") - 1).alias("entries"),
    )
    return grouped.drop("_n"), dropped


def entities(entries: DataFrame, uri: str, attributes: list[str]) -> DataFrame:
    """One row per distinct ``uri`` with its ``attributes`` and a conflict flag.

    A URI seen with several values of an attribute takes the smallest (deterministic, no
    ordering of the input involved); ``conflict`` names the first attribute that disagreed.
    """
    aggs = []
    for a in attributes:
        aggs += [F.min(a).alias(a), F.max(a).alias(f"_max_{a}")]
    grouped = entries.groupBy(uri).agg(*aggs)
    conflict = None
    for a in attributes:
        differs = ~F.col(a).eqNullSafe(F.col(f"_max_{a}"))
        conflict = F.when(differs, F.lit(a)) if conflict is None else conflict.when(differs, F.lit(a))
    return grouped.withColumn("conflict", conflict).drop(*[f"_max_{a}" for a in attributes])
