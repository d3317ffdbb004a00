"""Playlist-level hold-out in the RecSys Challenge 2018 style, decided by a seeded hash of pid.

A playlist's draw is ``xxhash64(seed, pid)``: it depends on nothing but the seed and the pid, so
the split is the same whatever the partitioning or the master. Categories are filled strictest
first (highest ``min_tracks``), each taking the eligible playlists with the smallest draws;
a category that cannot fill its equal share leaves the rest to the categories after it.
"""

import logging
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from etl.contract import (
    ROLE_HIDDEN,
    ROLE_SEED,
    ROLE_TRAIN,
    SEED_CATEGORY_BY_NAME,
    SPLIT_TEST,
    SPLIT_TRAIN,
    SPLIT_VAL,
    SeedCategory,
)

FULL_SCALE_HOLDOUT = 10_000

log = logging.getLogger(__name__)


def default_holdout(n_playlists: int, n_categories: int) -> int:
    """Playlists per held-out split: 10,000 at full scale, ~5% (at least one per category) below."""
    return min(FULL_SCALE_HOLDOUT, max(n_categories, n_playlists // 20))


def playlist_draw(seed: int, pid: str = "pid") -> Column:
    """The seeded hash that orders playlists for the hold-out."""
    return F.xxhash64(F.lit(seed).cast("long"), F.col(pid).cast("long"))


def entry_draw(seed: int) -> Column:
    """The seeded hash that picks random seed tracks of a playlist."""
    return F.xxhash64(F.lit(seed).cast("long"), F.col("pid").cast("long"), F.col("pos").cast("long"))


@dataclass(frozen=True)
class Holdout:
    pid: int
    split: str
    seed_category: str


def choose_holdout(
    candidates: dict[int, list[int]], categories: list[SeedCategory], num_val: int, num_test: int
) -> list[Holdout]:
    """Greedy assignment on the small candidate lists (pure Python, the decision's whole logic).

    ``candidates[min_tracks]`` lists, in draw order, the first ``num_val + num_test`` pids with
    at least ``min_tracks`` tracks: enough, since no more than that many are ever chosen.
    """
    order = sorted(categories, key=lambda c: -c.min_tracks)  # stable: contract order on ties
    chosen: set[int] = set()
    out: list[Holdout] = []
    left_val, left_test = num_val, num_test
    for i, cat in enumerate(order):
        remaining = len(order) - i
        want_val, want_test = left_val // remaining, left_test // remaining
        want = want_val + want_test
        picks = [p for p in candidates[cat.min_tracks] if p not in chosen][:want]
        # Short of candidates: share what there is between val and test in proportion.
        n_val = want_val if len(picks) == want else -(-len(picks) * want_val // max(1, want))
        for j, pid in enumerate(picks):
            out.append(Holdout(pid, SPLIT_VAL if j < n_val else SPLIT_TEST, cat.name))
            chosen.add(pid)
        left_val -= n_val
        left_test -= len(picks) - n_val
    return out


def holdout_table(
    spark: SparkSession,
    playlists: DataFrame,
    seed: int,
    categories: list[SeedCategory],
    num_val: int,
    num_test: int,
) -> DataFrame:
    """(pid, split, seed_category) for the held-out playlists.

    Only ``num_val + num_test`` candidates per eligibility level reach the driver (top-k by draw),
    never the playlist table.
    """
    limit = num_val + num_test
    drawn = playlists.select("pid", "num_tracks", playlist_draw(seed).alias("_draw"))
    tiers = sorted({c.min_tracks for c in categories})
    top = None
    for min_tracks in tiers:
        t = (
            drawn.where(F.col("num_tracks") >= min_tracks)
            .orderBy("_draw", "pid")
            .limit(limit)
            .select(F.lit(min_tracks).alias("tier"), "pid", "_draw")
        )
        top = t if top is None else top.unionByName(t)
    candidates: dict[int, list[int]] = {t: [] for t in tiers}
    for r in sorted(top.collect(), key=lambda r: (r.tier, r._draw, r.pid)):  # one job, any order
        candidates[r.tier].append(r.pid)
    chosen = choose_holdout(candidates, categories, num_val, num_test)
    return spark.createDataFrame(
        [(h.pid, h.split, h.seed_category) for h in chosen],
        "pid long, split string, seed_category string",
    )


def with_split(playlists: DataFrame, holdout: DataFrame) -> DataFrame:
    """Playlists + ``split`` and ``seed_category`` (null for train)."""
    return playlists.join(F.broadcast(holdout), "pid", "left").withColumn(
        "split", F.coalesce(F.col("split"), F.lit(SPLIT_TRAIN))
    )


def with_roles(entries: DataFrame, playlists: DataFrame, seed: int) -> DataFrame:
    """Entries (pid, pos, ...) + ``role``: train, or seed/hidden in held-out playlists.

    ``playlists`` has pid, split and seed_category; its other columns (e.g. playlist_id) join
    the entries in the same pass. ``first_k`` seeds are the first k entries by pos; ``random_k``
    seeds the k smallest ``xxhash64(seed, pid, pos)``. Only held-out entries go through the
    ranking window.
    """
    tagged = entries.join(playlists, "pid")
    train = tagged.where(F.col("split") == SPLIT_TRAIN).withColumn("role", F.lit(ROLE_TRAIN))
    held = tagged.where(F.col("split") != SPLIT_TRAIN)
    num_seeds = F.create_map(*[x for c in SEED_CATEGORY_BY_NAME.values() for x in (F.lit(c.name), F.lit(c.num_seeds))])
    randomised = F.create_map(*[x for c in SEED_CATEGORY_BY_NAME.values() for x in (F.lit(c.name), F.lit(c.random))])
    order_key = F.when(randomised[F.col("seed_category")], entry_draw(seed)).otherwise(F.lit(0))
    rank = F.row_number().over(Window.partitionBy("pid").orderBy(order_key, F.col("pos")))
    held = held.withColumn(
        "role",
        F.when(rank <= num_seeds[F.col("seed_category")], F.lit(ROLE_SEED)).otherwise(ROLE_HIDDEN),
    )
    return train.unionByName(held).drop("split", "seed_category")


def split_record(held: list, categories: list, n_playlists: int, num_val: int, num_test: int, seed: int) -> dict:
    """The manifest's ``split``: num_val/num_test are what was held out, fewer than asked when too
    few playlists qualify."""
    by_category = {c.name: {"val": 0, "test": 0} for c in categories}
    for r in held:
        by_category[r.seed_category][r.split] = int(r["count"])
    n_val = sum(v["val"] for v in by_category.values())
    n_test = sum(v["test"] for v in by_category.values())
    if n_val + n_test > n_playlists // 4:
        log.warning(
            "%d of %d playlists are held out (val %d, test %d): few are left to train on; "
            "--num-val and --num-test set the sizes",
            n_val + n_test,
            n_playlists,
            n_val,
            n_test,
        )
    return {
        "seed": seed,
        "num_val": n_val,
        "num_test": n_test,
        "requested": {"num_val": num_val, "num_test": num_test},
        "categories": {k: v["val"] + v["test"] for k, v in by_category.items()},
        "categories_by_split": by_category,
        "sizes": {SPLIT_TRAIN: n_playlists - n_val - n_test, SPLIT_VAL: n_val, SPLIT_TEST: n_test},
        "hash": "xxhash64(seed, pid); random seeds: xxhash64(seed, pid, pos)",
    }
