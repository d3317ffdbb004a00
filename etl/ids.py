"""Dense, deterministic int64 ids ``0..N-1`` in key order, without a single-partition window.

The rank of a key is (number of keys in earlier *buckets*) + (rank inside its bucket). A bucket
is an order-preserving function of the key (a short prefix of a URI, ``pid`` divided by a
constant), so ranking needs only a window partitioned by bucket plus a small table of bucket
offsets: it scales with the data and does not depend on partitioning, on the number of
executors or on any sampling, unlike ``monotonically_increasing_id`` or range partitioning.
"""

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

PID_BUCKET_WIDTH = 1024


def uri_bucket(key: str, prefix: str, chars: int = 2) -> Column:
    """Order-preserving bucket of a URI: the URI's first ``len(prefix) + chars`` characters."""
    return F.substring(F.col(key), 1, len(prefix) + chars)


def pid_bucket(key: str = "pid") -> Column:
    """Order-preserving bucket of an integer key."""
    return F.floor(F.col(key) / PID_BUCKET_WIDTH)


def with_dense_ids(df: DataFrame, key: str, id_column: str, bucket: Column) -> DataFrame:
    """Add ``id_column`` = rank of ``key`` (unique, non-null) among all rows, from 0.

    ``bucket`` must be non-decreasing in ``key``; a skewed bucket costs time, never correctness.
    """
    with_bucket = df.withColumn("_bucket", bucket)
    offsets = (
        with_bucket.groupBy("_bucket")
        .agg(F.count(F.lit(1)).alias("_size"))
        # One row per bucket: a small table, so a global window over it is cheap.
        .withColumn(
            "_offset",
            F.coalesce(
                F.sum("_size").over(Window.orderBy("_bucket").rowsBetween(Window.unboundedPreceding, -1)),
                F.lit(0),
            ),
        )
        .drop("_size")
    )
    in_bucket = F.row_number().over(Window.partitionBy("_bucket").orderBy(key))
    return (
        with_bucket.join(F.broadcast(offsets), "_bucket")
        .withColumn(id_column, (F.col("_offset") + in_bucket - 1).cast("long"))
        .drop("_bucket", "_offset")
    )
