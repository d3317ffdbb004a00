"""The MPD checker's per-record invariants as Spark column expressions (no records collected).

A record that breaks one is kept as its track list says and reported in the manifest with its
pid; only records that cannot be keyed (no pid, no URI) are dropped, elsewhere.
"""
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SECONDS_PER_DAY = 86400
MAX_EXAMPLES = 10


def _tracks_field(field: str) -> Column:
    return F.transform(F.coalesce(F.col("tracks"), F.array()), lambda t: t[field])


def violations() -> dict[str, Column]:
    """Rule name -> Column that is true where a playlist record breaks the rule."""
    tracks = F.coalesce(F.col("tracks"), F.array())
    n = F.size(tracks)
    durations = F.aggregate(
        _tracks_field("duration_ms"), F.lit(0).cast("long"),
        lambda acc, d: acc + F.coalesce(d, F.lit(0).cast("long")),
    )
    pos_off = F.exists(
        F.transform(tracks, lambda t, i: ~F.coalesce(t["pos"] == i, F.lit(False))),
        lambda bad: bad,
    )
    rules = {
        "num_tracks": F.col("num_tracks") != n,
        "num_albums": F.col("num_albums") != F.size(F.array_distinct(_tracks_field("album_uri"))),
        "num_artists": F.col("num_artists") != F.size(F.array_distinct(_tracks_field("artist_uri"))),
        "duration_ms": F.col("duration_ms") != durations,
        "pos": pos_off,
        "modified_at": F.col("modified_at") % SECONDS_PER_DAY != 0,
        "collaborative": ~F.coalesce(F.col("collaborative").isin("true", "false"), F.lit(False)),
        "missing_field": F.lit(False),
    }
    required = ["name", "num_tracks", "num_albums", "num_artists", "num_followers", "num_edits",
                "duration_ms", "modified_at"]
    rules["missing_field"] = F.exists(
        F.array(*[F.col(c).isNull() for c in required]), lambda x: x
    )
    # A null comparison (missing count) is reported as missing_field, not as a mismatch.
    return {k: F.coalesce(v, F.lit(False)) for k, v in rules.items()}


def findings(records: DataFrame) -> DataFrame:
    """One row: for each rule, ``<rule>_count`` and ``<rule>_examples`` (smallest pids)."""
    aggs = []
    for rule, broken in violations().items():
        aggs.append(F.sum(broken.cast("long")).alias(f"{rule}_count"))
        aggs.append(
            F.slice(F.array_sort(F.collect_list(F.when(broken, F.col("pid")))), 1, MAX_EXAMPLES)
            .alias(f"{rule}_examples")
        )
    return records.agg(*aggs)


def findings_dict(row, rules=None) -> dict:
    """The manifest's ``validation`` section from the row :func:`findings` returned."""
    rules = rules or list(violations())
    return {r: {"count": int(row[f"{r}_count"] or 0), "examples": list(row[f"{r}_examples"] or [])}
            for r in rules}
