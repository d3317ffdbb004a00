"""Deduplication: playlists by pid, track entries by (pid, track_uri), entities by URI.

Each step returns what it keeps and, where rows leave, a *drops* DataFrame with the common
schema ``reason, example, playlists, entries`` so the job can account for every input row.
"""

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from etl.checker import RULE_DUPLICATE_PID, RULE_FIELD_TYPE, URI_KINDS, URI_REGEX

DROP_COLUMNS = ("reason", "example", "playlists", "entries")


def drops(df: DataFrame, reason: str, example, playlists: int, entries) -> DataFrame:
    """Rows of ``df`` described as drops of ``reason``."""
    return df.select(
        F.lit(reason).alias("reason"),
        example.cast("string").alias("example"),
        F.lit(playlists).cast("long").alias("playlists"),
        entries.cast("long").alias("entries"),
    )


MAX_FIELDS_SHOWN = 3


def split_mistyped(records: DataFrame, entries) -> tuple[DataFrame, DataFrame]:
    """Records with a field of the wrong JSON type (``mistyped``, from etl/flatten.py): drop each
    with its entries as ``field_type``, named ``<file>#<index in file> (pid <pid>): <fields>``.

    The rest of its file is kept; the record's other values cannot be trusted to mean what the
    MPD says they mean, so none of it enters the graph.
    """
    bad = F.size("mistyped") > 0
    n = F.size("mistyped")
    fields = F.concat(
        F.array_join(F.slice("mistyped", 1, MAX_FIELDS_SHOWN), ", "),
        F.when(n > MAX_FIELDS_SHOWN, F.format_string(" and %d more", n - MAX_FIELDS_SHOWN)).otherwise(""),
    )
    example = F.concat(
        F.col("input_file"),
        F.lit("#"),
        F.col("playlist_index").cast("string"),
        F.when(F.col("pid").isNotNull(), F.format_string(" (pid %d)", F.col("pid"))).otherwise(""),
        F.lit(": "),
        fields,
    )
    return (records.where(~bad).drop("mistyped"), drops(records.where(bad), RULE_FIELD_TYPE, example, 1, entries))


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
        records.select("pid", *where).withColumn("_rank", F.row_number().over(first)).where("_rank > 1").select(*where)
    )
    kept = records.join(F.broadcast(losers), where, "left_anti")
    dup = records.join(F.broadcast(losers), where, "left_semi")
    return kept, drops(dup, RULE_DUPLICATE_PID, F.col("pid"), 1, entries)


def split_bad_uris(entries: DataFrame) -> tuple[DataFrame, DataFrame]:
    """Entries whose track, album or artist URI is missing, or is not ``spotify:<kind>:<22
    base62>``, cannot become edges: drop them (an entity keyed by ``""`` or a web link would
    enter the graph as a node of its own).

    The first bad URI, in the order track, album, artist, names the reason, so that each entry is
    counted once: ``missing_<kind>_uri`` (example ``pid#pos``) or ``malformed_<kind>_uri``
    (example ``pid#pos "uri"``).
    """
    reason = example = None
    where = F.concat_ws("#", F.col("pid").cast("string"), F.col("pos").cast("string"))
    for kind in URI_KINDS:
        uri = F.col(f"{kind}_uri")
        for broken, name, shown in (
            (uri.isNull(), f"missing_{kind}_uri", where),
            (~uri.rlike(URI_REGEX[kind]), f"malformed_{kind}_uri", F.format_string('%s "%s"', where, uri)),
        ):
            reason = F.when(broken, name) if reason is None else reason.when(broken, name)
            example = F.when(broken, shown) if example is None else example.when(broken, shown)
    marked = entries.withColumn("_reason", reason).withColumn("_example", example)
    dropped = marked.where(F.col("_reason").isNotNull()).select(
        F.col("_reason").alias("reason"),
        F.col("_example").alias("example"),
        F.lit(0).cast("long").alias("playlists"),
        F.lit(1).cast("long").alias("entries"),
    )
    return marked.where(F.col("_reason").isNull()).drop("_reason", "_example"), dropped


def dedup_entries(entries: DataFrame, keep=lambda df: df) -> tuple[DataFrame, DataFrame]:
    """One entry per (pid, track_uri), at its first pos; the rest are ``duplicate_entry`` drops.

    The kept entries come out hash-partitioned by pid alone (which is all the grouping needs),
    so the joins on pid that follow (roles, playlist ids) leave them where they are. ``keep``
    (e.g. a persist) is applied to the grouped entries, which both results read.
    """
    grouped = keep(
        entries.repartition("pid")
        .groupBy("pid", "track_uri")
        .agg(F.min("pos").alias("pos"), F.count(F.lit(1)).alias("_n"))
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
