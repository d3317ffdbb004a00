"""Structural node features on the message-passing graph, as DataFrame joins.

The graph: visible playlist-track edges (roles train and seed, never hidden), plus the
track-album and track-artist edges of the tracks that have at least one visible edge, all
undirected. A track seen only in hidden edges is isolated here, so that removing every hidden
edge from the input changes no feature of any node (see tests/test_etl_leakage.py).

- ``deg_<type>``: neighbours of that type;
- ``hop2_walks``: sum over neighbours of their degree (walks of length 2, exact);
- ``hop2_reach``: distinct nodes within two hops, the node itself included, i.e.
  ``len(nx.single_source_shortest_path_length(G, v, cutoff=2))`` on the undirected graph.
  With ``hll`` the two large terms (co-playlists of a playlist, co-tracks of a track) are
  HyperLogLog estimates (``lgConfigK`` 12: relative standard error 1.04 / 2**6 = 1.6%); every
  other term is exact, so the relative error of the sum is at most that of those terms.
"""

import math
from contextlib import contextmanager
from decimal import Decimal

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from etl.contract import SPLIT_TRAIN, VISIBLE_ROLES

HOP2_MODES = ("exact", "hll", "off")
HLL_LG_CONFIG_K = 12
HLL_RELATIVE_ERROR = 1.04 / math.sqrt(2**HLL_LG_CONFIG_K)


def visible_playlist_tracks(edges: DataFrame) -> DataFrame:
    """(playlist_id, track_id) of the edges message passing may see."""
    return edges.where(F.col("role").isin(*VISIBLE_ROLES)).select("playlist_id", "track_id")


def _count(df: DataFrame, key: str, name: str) -> DataFrame:
    return df.groupBy(key).agg(F.count(F.lit(1)).alias(name))


def _two_step(paths, key: str, mode: str) -> DataFrame:
    """Per key: ``walks``, the number of paths ``key - via - end``, and ``ends``, their distinct ends.

    ``paths`` is a list of (left, right) DataFrames with columns (k, v) and (v, o). A path's count
    is the degree of its middle node towards ``o``, so walks come from the same pass as the ends.
    ``exact`` materialises the distinct (k, o) pairs; ``hll`` unions per-``v`` sketches of ``o``.
    """
    if mode == "exact":
        pairs = None
        for left, right in paths:
            p = left.join(right, "v").select("k", "o")
            pairs = p if pairs is None else pairs.unionByName(p)
        return (
            pairs.groupBy("k", "o")
            .agg(F.count(F.lit(1)).alias("n"))
            .groupBy("k")
            .agg(F.sum("n").alias("walks"), F.count(F.lit(1)).alias("ends"))
            .withColumnRenamed("k", key)
        )
    # A sketch is up to 4 KiB (dense, lgConfigK 12) and a popular ``v`` sits on tens of
    # thousands of paths, so the sketches must not travel once per path: they are broadcast
    # (one row per ``v``, a few hundred MB at full MPD scale), the narrow (k, v) rows are
    # clustered by ``k`` into a fixed number of partitions (kept apart from adaptive
    # coalescing, which bounds the keys per task), and the union runs where the rows already
    # are: the join keeps the streamed side's partitioning, so no exchange follows it.
    # ``v`` of different paths (playlists, albums, artists) share id ranges: tag them.
    n = len(paths)
    left = right = None
    for i, (lf, rt) in enumerate(paths):
        lf = lf.select("k", (F.col("v") * n + i).alias("v"))
        rt = rt.select((F.col("v") * n + i).alias("v"), "o")
        left = lf if left is None else left.unionByName(lf)
        right = rt if right is None else right.unionByName(rt)
    sketches = right.groupBy("v").agg(
        F.hll_sketch_agg("o", HLL_LG_CONFIG_K).alias("sk"), F.count(F.lit(1)).alias("deg")
    )
    return (
        left.repartition(int(left.sparkSession.conf.get("spark.sql.shuffle.partitions")), "k")
        .join(F.broadcast(sketches), "v")
        .groupBy("k")
        .agg(F.sum("deg").alias("walks"), F.hll_sketch_estimate(F.hll_union_agg("sk")).alias("ends"))
        .withColumnRenamed("k", key)
    )


@contextmanager
def sketch_unions_in_memory(spark):
    """Let the hash aggregate keep a union per key for every key of a task.

    Past ``sortBased.fallbackThreshold`` (128 keys) Spark's object-hash aggregate falls back to
    sorting all remaining rows, 4 KiB sketches included, through an external sorter; the hll
    rows are spread over ``spark.sql.shuffle.partitions`` tasks (a few thousand keys each at
    full scale), so their unions fit in memory: 65,536 dense unions are 256 MiB.
    """
    key = "spark.sql.objectHashAggregate.sortBased.fallbackThreshold"
    previous = spark.conf.get(key)
    spark.conf.set(key, str(2**16))
    try:
        yield
    finally:
        spark.conf.set(key, previous)


def _kv(df: DataFrame, k: str, v: str) -> DataFrame:
    return df.select(F.col(k).alias("k"), F.col(v).alias("v"))


def _vo(df: DataFrame, v: str, o: str) -> DataFrame:
    return df.select(F.col(v).alias("v"), F.col(o).alias("o"))


def _zero(c: str):
    return F.coalesce(F.col(c), F.lit(0)).cast("long")


def _renamed(df: DataFrame, **names: str) -> DataFrame:
    return df.select(*(F.col(c).alias(names.get(c, c)) for c in df.columns))


def with_structural_features(
    playlists: DataFrame,
    tracks: DataFrame,
    albums: DataFrame,
    artists: DataFrame,
    edges: DataFrame,
    hop2: str,
) -> tuple[DataFrame, DataFrame, DataFrame, DataFrame]:
    """Add ``deg_*``, ``hop2_walks`` and ``hop2_reach`` to the four node tables.

    Playlists also get ``visible_albums``, ``visible_artists`` and ``visible_duration_ms`` (of
    their visible tracks), which ``with_visible_playlist_attributes`` uses: they come from the
    same join as the playlist's degree, and the first two are its 2-hop album and artist terms.
    """
    if hop2 not in HOP2_MODES:
        raise ValueError(f"hop2 mode {hop2!r} is not one of {HOP2_MODES}")
    pt = visible_playlist_tracks(edges)
    # Tracks with at least one visible edge: a track seen only in hidden edges is isolated.
    links = tracks.select("track_id", "album_id", "artist_id").join(pt.select("track_id"), "track_id", "left_semi")

    # Every visible track has one album and one artist, so one join gives all of a playlist's
    # one-hop terms; its two count-distincts are exact in every mode.
    per_playlist = (
        pt.join(tracks.select("track_id", "album_id", "artist_id", "duration_ms"), "track_id")
        .groupBy("playlist_id")
        .agg(
            F.count(F.lit(1)).alias("deg_track"),
            F.count_distinct("album_id").alias("visible_albums"),
            F.count_distinct("artist_id").alias("visible_artists"),
            F.sum("duration_ms").alias("visible_duration_ms"),
        )
    )
    deg_t = _count(pt, "track_id", "deg_playlist")
    deg_al = _count(links, "album_id", "deg_track")
    deg_ar = _count(links, "artist_id", "deg_track")

    playlists = playlists.join(per_playlist, "playlist_id", "left")
    for c in ("deg_track", "visible_albums", "visible_artists", "visible_duration_ms"):
        playlists = playlists.withColumn(c, _zero(c))
    tracks = tracks.join(deg_t, "track_id", "left").withColumn("deg_playlist", _zero("deg_playlist"))
    albums = albums.join(deg_al, "album_id", "left").withColumn("deg_track", _zero("deg_track"))
    artists = artists.join(deg_ar, "artist_id", "left").withColumn("deg_track", _zero("deg_track"))

    if hop2 == "off":
        nulls = [F.lit(None).cast("long").alias("hop2_walks"), F.lit(None).cast("long").alias("hop2_reach")]
        return tuple(df.select("*", *nulls) for df in (playlists, tracks, albums, artists))

    # Walks: a path k - v - o per neighbour v and each of v's neighbours o (v's degree), so each
    # term below is a path count from _two_step, or a degree where every v has one such o (a
    # visible track has one album and one artist; an album's or artist's tracks lead back to it).
    # Reach: two-hop sets split by node type; types never collide, so reach is a sum of counts.
    co_playlists = _renamed(
        _two_step(
            [(_kv(pt, "playlist_id", "track_id"), _vo(pt, "track_id", "playlist_id"))],
            "playlist_id",
            hop2,
        ),
        walks="w_p",
        ends="n_p2",
    )
    co_tracks = _renamed(
        _two_step(
            [
                (_kv(pt, "track_id", "playlist_id"), _vo(pt, "playlist_id", "track_id")),
                (_kv(links, "track_id", "album_id"), _vo(links, "album_id", "track_id")),
                (_kv(links, "track_id", "artist_id"), _vo(links, "artist_id", "track_id")),
            ],
            "track_id",
            hop2,
        ),
        walks="hop2_walks",
        ends="n_t2",
    )
    al_playlists = _renamed(
        _two_step(
            [(_kv(links, "album_id", "track_id"), _vo(pt, "track_id", "playlist_id"))],
            "album_id",
            "exact",
        ),
        walks="w_p",
        ends="n_p",
    )
    al_artists = _renamed(
        _two_step(
            [(_kv(links, "album_id", "track_id"), _vo(links, "track_id", "artist_id"))],
            "album_id",
            "exact",
        ).drop("walks"),
        ends="n_ar",
    )
    ar_playlists = _renamed(
        _two_step(
            [(_kv(links, "artist_id", "track_id"), _vo(pt, "track_id", "playlist_id"))],
            "artist_id",
            "exact",
        ),
        walks="w_p",
        ends="n_p",
    )
    ar_albums = _renamed(
        _two_step(
            [(_kv(links, "artist_id", "track_id"), _vo(links, "track_id", "album_id"))],
            "artist_id",
            "exact",
        ).drop("walks"),
        ends="n_al",
    )

    playlists = (
        playlists.join(co_playlists, "playlist_id", "left")
        .withColumn("hop2_walks", _zero("w_p") + 2 * F.col("deg_track"))
        # The playlist itself is among its co-playlists as soon as it has a visible track.
        .withColumn(
            "hop2_reach",
            F.col("deg_track")
            + F.col("visible_albums")
            + F.col("visible_artists")
            + F.greatest(_zero("n_p2"), F.lit(1)),
        )
        .drop("w_p", "n_p2")
    )
    tracks = (
        tracks.join(co_tracks, "track_id", "left")
        .withColumn("hop2_walks", _zero("hop2_walks"))
        # A visible track reaches its album and artist, and itself among its co-tracks.
        .withColumn(
            "hop2_reach",
            F.when(F.col("deg_playlist") > 0, F.col("deg_playlist") + 2 + _zero("n_t2")).otherwise(1).cast("long"),
        )
        .drop("n_t2")
    )
    albums = (
        albums.join(al_playlists, "album_id", "left")
        .join(al_artists, "album_id", "left")
        .withColumn("hop2_walks", _zero("w_p") + 2 * F.col("deg_track"))
        .withColumn("hop2_reach", 1 + F.col("deg_track") + _zero("n_p") + _zero("n_ar"))
        .drop("w_p", "n_p", "n_ar")
    )
    artists = (
        artists.join(ar_playlists, "artist_id", "left")
        .join(ar_albums, "artist_id", "left")
        .withColumn("hop2_walks", _zero("w_p") + 2 * F.col("deg_track"))
        .withColumn("hop2_reach", 1 + F.col("deg_track") + _zero("n_p") + _zero("n_al"))
        .drop("w_p", "n_p", "n_al")
    )
    return playlists, tracks, albums, artists


def with_visible_playlist_attributes(playlists: DataFrame) -> DataFrame:
    """Held-out playlists: num_albums, num_artists, duration_ms from their visible tracks.

    Takes ``with_structural_features``' playlists and drops its ``visible_*`` columns. Train
    playlists keep the published values; ``num_tracks`` stays as published for all (the
    challenge set gives it too).
    """
    held = F.col("split") != SPLIT_TRAIN
    visible = {"num_albums": "visible_albums", "num_artists": "visible_artists", "duration_ms": "visible_duration_ms"}
    out = playlists
    for column, new in visible.items():
        out = out.withColumn(column, F.when(held, F.col(new)).otherwise(F.col(column)))
    return out.drop(*visible.values())


def feature_stats(df: DataFrame, columns) -> dict:
    """{column: {"mean", "std"}} of log1p(value) (booleans as 0/1; population std).

    Sums run over values rounded to 18 decimals as DECIMAL, where addition is exact, so the
    result does not depend on partitioning (a floating-point sum does, in its last digits).
    """
    exact = "decimal(38,18)"
    aggs = [F.count(F.lit(1)).alias("__n")]
    for c in columns:
        x = F.log1p(F.col(c).cast("double"))
        aggs += [
            F.sum(x.cast(exact)).alias(f"{c}__s"),
            F.sum((x * x).cast(exact)).alias(f"{c}__q"),
            F.count(x).alias(f"{c}__n"),
        ]
    row = df.agg(*aggs).first()
    out = {}
    for c in columns:
        n = row[f"{c}__n"]
        if not n:
            out[c] = {"mean": None, "std": None}
            continue
        mean = row[f"{c}__s"] / n
        var = max(row[f"{c}__q"] / n - mean * mean, Decimal(0))
        out[c] = {"mean": float(mean), "std": float(var.sqrt())}
    return out
