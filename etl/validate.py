"""The MPD checker's rules (etl/checker.py) as Spark column expressions.

Same rule names as the checker; nothing is collected to the driver but the counts and a few
examples. A record that breaks a rule is kept as its track list says and reported; only
records that cannot be keyed (no pid, no well-formed URI) are dropped, in etl/dedup.py. Per record:
:func:`findings`; per slice file (its info block, its name, its pid sequence):
:func:`file_findings`; from what other stages found: :func:`drop_summary`, :func:`conflicts`,
:func:`catalogue_findings`. Reported by the job from other stages: ``json`` (a file that does not
parse fails the job or is skipped), ``field_type`` (records with a value of the wrong JSON type,
dropped one by one; a string field takes any value's text), duplicate pids (dropped by dedup) and
catalogue consistency (``uri_name``, ``track_metadata``: from the entity tables). Not evaluated:
``unknown_field`` (the explicit schema reads only the MPD's fields).
"""

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from etl import checker, slice_files
from etl.flatten import PLAYLIST_FIELDS, TRACK_FIELDS

MAX_EXAMPLES = 10
MAX_DROP_EXAMPLES = 5  # per drop reason and per catalogue conflict, in the manifest
REQUIRED_PLAYLIST_FIELDS = [f for f in checker.PLAYLIST_FIELDS if f != "tracks"]


def _tracks() -> Column:
    return F.coalesce(F.col("tracks"), F.array())


def _field(name: str) -> Column:
    return F.transform(_tracks(), lambda t: t[name])


def _distinct(name: str) -> Column:
    return F.size(F.array_distinct(_field(name)))


def violations() -> dict[str, Column]:
    """Checker rule name -> Column, true where a playlist record breaks that rule."""
    n = F.size(_tracks())
    duration = F.aggregate(
        _field("duration_ms"), F.lit(0).cast("long"), lambda acc, d: acc + F.coalesce(d, F.lit(0).cast("long"))
    )
    missing = [F.col(c).isNull() for c in REQUIRED_PLAYLIST_FIELDS if c in PLAYLIST_FIELDS]
    missing.append(F.col("tracks").isNull())
    missing.append(
        F.exists(_tracks(), lambda t: F.exists(F.array(*[t[f].isNull() for f in TRACK_FIELDS]), lambda x: x))
    )
    uri_bad = F.exists(
        _tracks(),
        lambda t: F.exists(
            F.array(*[~t[f"{k}_uri"].rlike(checker.URI_REGEX[k]) for k in checker.URI_KINDS]), lambda x: x
        ),
    )
    rules = {
        checker.RULE_REQUIRED_FIELD: F.exists(F.array(*missing), lambda x: x),
        checker.RULE_COLLABORATIVE: ~F.col("collaborative").isin("true", "false"),
        checker.RULE_NUM_TRACKS: F.col("num_tracks") != n,
        checker.RULE_NUM_ALBUMS: F.col("num_albums") != _distinct("album_uri"),
        checker.RULE_NUM_ARTISTS: F.col("num_artists") != _distinct("artist_uri"),
        checker.RULE_DURATION: F.col("duration_ms") != duration,
        checker.RULE_TRACK_COUNT: ~n.between(checker.MIN_TRACKS, checker.MAX_TRACKS),
        checker.RULE_MIN_ARTISTS: _distinct("artist_uri") < checker.MIN_ARTISTS,
        checker.RULE_MIN_ALBUMS: _distinct("album_uri") < checker.MIN_ALBUMS,
        checker.RULE_MIN_FOLLOWERS: F.col("num_followers") < checker.MIN_FOLLOWERS,
        checker.RULE_POS: F.exists(F.transform(_tracks(), lambda t, i: t["pos"] != i), lambda x: x),
        checker.RULE_MODIFIED_MIDNIGHT: F.col("modified_at") % checker.SECONDS_PER_DAY != 0,
        checker.RULE_MODIFIED_RANGE: ~F.col("modified_at").between(checker.MIN_MODIFIED_AT, checker.MAX_MODIFIED_AT),
        checker.RULE_URI_FORMAT: uri_bad,
    }
    # A comparison with a missing value is null: that record counts under required_field only.
    return {k: F.coalesce(v, F.lit(False)) for k, v in rules.items()}


def findings(records: DataFrame) -> DataFrame:
    """One row: per rule, ``<rule>__count`` and ``<rule>__examples`` (the smallest pids)."""
    aggs = []
    for rule, broken in violations().items():
        aggs.append(F.sum(broken.cast("long")).alias(f"{rule}__count"))
        aggs.append(
            F.slice(F.array_sort(F.collect_set(F.when(broken, F.col("pid")))), 1, MAX_EXAMPLES).alias(
                f"{rule}__examples"
            )
        )
    return records.agg(*aggs)


FILE_RULES = (checker.RULE_SLICE_INFO, checker.RULE_SLICE_NAME, checker.RULE_PID_SEQUENCE)
_RANGE = r"^(\d+)-(\d+)$"


def _range_part(text: Column, pattern: str, group: int) -> Column:
    return F.when(text.rlike(pattern), F.regexp_extract(text, pattern, group).cast("long"))


def file_findings(records: DataFrame) -> DataFrame:
    """One row: ``slice_info`` and ``slice_name`` (counted in files, file names as examples) and
    ``pid_sequence`` (counted in records, pids as examples), as ``checker.check_slice`` decides them.

    Pids must run on from ``info.slice``'s first pid, each one after the previous pid present in
    the file, and stay inside the range; a record without a pid is skipped, as the checker does.
    """
    info = F.col("info")
    name = F.regexp_extract(F.col("input_file"), r"([^/]*)$", 1)
    first, last = (_range_part(info["slice"], _RANGE, g) for g in (1, 2))
    file_re = slice_files.SLICE_FILE_RE.pattern
    named_first, named_last = (_range_part(name, file_re, g) for g in (1, 2))
    info_bad = info.isNull() | F.exists(F.array(*[info[k].isNull() for k in checker.INFO_FIELDS]), lambda x: x)
    info_bad = info_bad | ~F.coalesce(info["slice"].rlike(_RANGE), F.lit(True))
    name_bad = first.isNotNull() & named_first.isNotNull() & ((named_first != first) | (named_last != last))
    before = Window.partitionBy("input_file").orderBy("playlist_index").rowsBetween(Window.unboundedPreceding, -1)
    expected = F.coalesce(F.last("pid", ignorenulls=True).over(before) + 1, first)
    pid_bad = first.isNotNull() & F.col("pid").isNotNull() & ((F.col("pid") != expected) | (F.col("pid") > last))
    flagged = records.select(
        name.alias("file"),
        "pid",
        F.coalesce(info_bad, F.lit(False)).alias(checker.RULE_SLICE_INFO),
        F.coalesce(name_bad, F.lit(False)).alias(checker.RULE_SLICE_NAME),
        F.coalesce(pid_bad, F.lit(False)).alias(checker.RULE_PID_SEQUENCE),
    )
    aggs = []
    for rule, unit in (
        (checker.RULE_SLICE_INFO, "file"),
        (checker.RULE_SLICE_NAME, "file"),
        (checker.RULE_PID_SEQUENCE, "pid"),
    ):
        hit = F.when(F.col(rule), F.col(unit))
        aggs.append((F.count_distinct(hit) if unit == "file" else F.count(hit)).alias(f"{rule}__count"))
        aggs.append(F.slice(F.array_sort(F.collect_set(hit)), 1, MAX_EXAMPLES).alias(f"{rule}__examples"))
    return flagged.agg(*aggs)


def findings_dict(row) -> dict:
    """The manifest's ``validation`` entries from the row :func:`findings` or
    :func:`file_findings` returned."""
    row = row.asDict()
    return {
        r: {"count": int(row[f"{r}__count"] or 0), "examples": list(row[f"{r}__examples"] or [])}
        for r in (*violations(), *FILE_RULES)
        if f"{r}__count" in row
    }


# --- what other stages found, as findings -------------------------------------------------------
def drop_summary(drops: DataFrame) -> dict:
    """{reason: {"count", "playlists", "entries", "examples"}} from the union of drop rows."""
    totals = (
        drops.groupBy("reason")
        .agg(
            F.sum("playlists").alias("playlists"),
            F.sum("entries").alias("entries"),
            F.count(F.lit(1)).alias("rows"),
        )
        .collect()
    )
    first = (
        drops.select(
            "reason",
            "example",
            F.row_number().over(Window.partitionBy("reason").orderBy("example")).alias("_n"),
        )
        .where(F.col("_n") <= MAX_DROP_EXAMPLES)
        .collect()
    )
    out = {}
    for r in sorted(totals, key=lambda r: r.reason):
        # A dropped record counts as one; a dropped entry as one; count = input rows lost.
        out[r.reason] = {
            "count": int(r.playlists if r.playlists else r.entries),
            "playlists": int(r.playlists),
            "entries": int(r.entries),
            "examples": sorted(x.example for x in first if x.reason == r.reason),
        }
    return out


def conflicts(nodes: dict[str, DataFrame]) -> dict:
    """{node type: {attribute: {"count", "examples"}}} of URIs seen with several values."""
    union = None
    for kind, df in nodes.items():
        part = df.where(F.col("conflict").isNotNull()).select(
            F.lit(kind).alias("kind"), "conflict", F.col(f"{kind}_uri").alias("uri")
        )
        union = part if union is None else union.unionByName(part)
    rows = (
        union.groupBy("kind", "conflict")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.slice(F.array_sort(F.collect_list("uri")), 1, MAX_DROP_EXAMPLES).alias("examples"),
        )
        .collect()
    )
    out: dict = {kind: {} for kind in nodes}
    for r in rows:
        out[r.kind][r.conflict] = {"count": int(r.n), "examples": list(r.examples)}
    return out


def catalogue_findings(conflicts: dict, dropped: dict, bad_files: list[str]) -> dict:
    """The checker's file, pid and catalogue rules, from what the other stages found."""

    def merged(pick):
        found = [(k, v) for kind in conflicts.values() for k, v in kind.items() if pick(k)]
        return {
            "count": sum(v["count"] for _, v in found),
            "examples": sorted(x for _, v in found for x in v["examples"])[:MAX_DROP_EXAMPLES],
        }

    names = ("track_name", "album_name", "artist_name")
    dup = dropped.get(checker.RULE_DUPLICATE_PID, {"count": 0, "examples": []})
    mistyped = dropped.get(checker.RULE_FIELD_TYPE, {"count": 0, "examples": []})
    return {
        checker.RULE_FIELD_TYPE: {"count": mistyped["count"], "examples": mistyped["examples"]},
        checker.RULE_JSON: {"count": len(bad_files), "examples": bad_files[:MAX_DROP_EXAMPLES]},
        checker.RULE_DUPLICATE_PID: {"count": dup["count"], "examples": [int(x) for x in dup["examples"]]},
        checker.RULE_URI_NAME: merged(lambda attr: attr in names),
        checker.RULE_TRACK_METADATA: merged(lambda attr: attr not in names),
    }
