"""The seed notebook's subgraph option: the N most-followed playlists and all they reach."""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from etl.dedup import drops


def split_top_followed(records: DataFrame, n: int, entries) -> tuple[DataFrame, DataFrame]:
    """Keep the ``n`` playlists with most followers (ties broken by smaller pid).

    Their tracks, albums and artists follow from the kept records; the other records are
    ``outside_top_followed`` drops.
    """
    top = records.orderBy(F.col("num_followers").desc_nulls_last(), F.col("pid").asc()).limit(n).select("pid")
    kept = records.join(top, "pid", "left_semi")
    rest = records.join(top, "pid", "left_anti")
    return kept, drops(rest, "outside_top_followed", F.col("pid"), 1, entries)
