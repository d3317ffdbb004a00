"""MPD JSON slices -> Parquet graph dir (see etl/contract.py), with splits and 2-hop features:
:func:`build_graph_dir`, what ``python -m etl.job`` runs.

Only this module reads or writes; every step between is a DataFrame -> DataFrame function.
The graph dir appears atomically: it is written to ``<output>.tmp-<uuid>`` and renamed.
"""

from __future__ import annotations

import argparse
import logging
import math
import re

from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from etl import broadcast, checker, contract, features, manifest, options, slice_files, storage, validate
from etl.dedup import dedup_entries, split_bad_uris, split_duplicate_pids, split_missing_pid, split_mistyped
from etl.flatten import entry_count, playlist_records, track_entries
from etl.schema import CORRUPT_RECORD, SLICE
from etl.session import spark_session
from etl.splits import default_holdout, holdout_table, split_record, with_roles, with_split
from etl.stages import Stages
from etl.subgraph import split_top_followed
from etl.tables import (
    album_nodes,
    arrow_dtypes,
    artist_nodes,
    catalogue_rows,
    contract_frame,
    playlist_nodes,
    playlist_track_edges,
    track_nodes,
)

log = logging.getLogger("etl")

SHUFFLE_PARTITIONS = "spark.sql.shuffle.partitions"
CACHE_BATCH_ROWS = "spark.sql.inMemoryColumnarStorage.batchSize"
CACHE_BATCH_PLAYLISTS = 1000  # ~66k track entries, ~17 MB of column buffers per batch
CACHE_LEVEL = StorageLevel.DISK_ONLY  # see run.keep
MAX_DIAGNOSED = 20  # bad files read back on the driver to say what is wrong with them
# What Spark says of a file it cannot read at all (a damaged gzip stream), naming it.
FAILED_READ = re.compile(r"Encountered error while reading file (\S+?)\.?\s+SQLSTATE")
BASE = "_base"  # scratch dir inside the temporary output, removed before the rename


class BadInputError(ValueError):
    """An input file is not a readable MPD slice."""


def _parse(
    spark: SparkSession, files: list[tuple[str, int]], keep, input_path: str, skip_bad_files: bool, hop2: str
) -> tuple[DataFrame, dict, list[str], dict[str, str]]:
    """The slices' playlist records (the good ones), the input counts, the bad files and why each
    of the first few is bad; one pass over the records decides all of it."""
    slices = (
        spark.read.schema(SLICE)
        .option("multiLine", True)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .json([f for f, _ in files])
    )
    records = keep(slices.transform(playlist_records))
    # One pass over the records: bad files, input counts and the checker's rules.
    good = ~F.col("bad_file") & F.col("playlist_index").isNotNull()
    try:
        summary = records.agg(
            F.array_sort(F.collect_set(F.when(F.col("bad_file"), F.col("input_file")))).alias("bad"),
            F.count(F.when(good, F.lit(1))).alias("playlists"),
            F.sum(F.when(good, entry_count(records))).alias("entries"),
            F.max(F.when(good, entry_count(records))).alias("longest"),
        ).first()
    except Py4JJavaError as e:
        unreadable = FAILED_READ.search(str(e.java_exception))
        if unreadable is None:
            raise
        # A damaged compressed file fails its task instead of becoming a corrupt record,
        # so --skip-bad-files cannot pass over it.
        f = unreadable.group(1)
        why = slice_files.why_not_a_slice(storage.read_bytes(spark, f), f)
        raise BadInputError(
            f"{f}: not a valid MPD slice ({why}); "
            "Spark cannot read past it, even with --skip-bad-files: replace or remove it"
        ) from None
    bad_files = list(summary.bad)
    # Spark only says a file is corrupt; the driver reads the first few to say where.
    why = {f: slice_files.why_not_a_slice(storage.read_bytes(spark, f), f) for f in bad_files[:MAX_DIAGNOSED]}
    if bad_files and not skip_bad_files:
        raise BadInputError(
            f"{bad_files[0]}: not a valid MPD slice ({why[bad_files[0]]})"
            f"{f'; also {len(bad_files) - 1} more bad files' if len(bad_files) > 1 else ''}; "
            "fix or remove it, or pass --skip-bad-files"
        )
    if hop2 == "exact" and (summary.longest or 0) > checker.MAX_TRACKS:
        log.warning(
            "a playlist of %d tracks (the MPD keeps at most %d): the exact 2-hop join grows with the "
            "square of a playlist's length; --hop2 hll bounds it",
            summary.longest,
            checker.MAX_TRACKS,
        )
    counts = {
        "input_files": len(files) - len(bad_files),
        "input_playlists": int(summary.playlists),
        "input_entries": int(summary.entries or 0),
    }
    if counts["input_playlists"] == 0:
        raise storage.InputError(f"no playlists in the input {input_path!r} ({len(files)} files)")
    return records.where(good), counts, bad_files, why


def build_graph_dir(args: argparse.Namespace, spark: SparkSession | None = None) -> dict:
    """Run the job; return the manifest written with the graph dir."""
    spark = spark or spark_session(args)
    stages = Stages()
    output = args.output.rstrip("/")
    categories = [contract.SEED_CATEGORY_BY_NAME[c] for c in args.categories.split(",")]
    previous = {k: spark.conf.get(k) for k in (SHUFFLE_PARTITIONS, CACHE_BATCH_ROWS)}
    # The cache of parsed playlists builds each column batch on the heap, outside Spark's memory
    # accounting: at the default 10,000 rows a batch of nested track lists outgrew a 4g driver at
    # 1M playlists (and a 1g one at 100k). Smaller batches bound a task's memory by the batch,
    # not the partition.
    spark.conf.set(CACHE_BATCH_ROWS, str(CACHE_BATCH_PLAYLISTS))
    persisted: list[DataFrame] = []

    def keep(df: DataFrame) -> DataFrame:
        # On disk only: a cache held in memory crowds out what Spark does not account for (a
        # slice's whole text as one row, tens of MB, copied while it is read), and filled the
        # heap at 1M playlists; the OS keeps the cache files in its page cache while RAM allows.
        persisted.append(df.persist(CACHE_LEVEL))
        return df

    tmp = storage.temp_path(output)
    output_lock = None
    try:
        # Before any input is read: a path that cannot be created failed only at the first
        # write, after every Spark stage had run.
        try:
            storage.make_dirs(spark, tmp)
        except storage.OutputError as e:
            raise storage.OutputError(f"output {output} cannot be created ({e}); choose another --output") from None
        output_lock = storage.lock(spark, output, f"etl.job --input {args.input}")  # one writer per output
        storage.clear_stale_temps(spark, output, tmp)
        storage.refuse_existing(spark, output, args.overwrite)
        with stages("list input"):
            files = storage.list_slices(spark, args.input)
            total_bytes = storage.json_bytes(files)
            log.info(
                "%d slice files, %.1f MiB of JSON%s",
                len(files),
                total_bytes / 2**20,
                " (compressed files counted at their estimated JSON size)"
                if any(f.endswith(".gz") for f, _ in files)
                else "",
            )
            storage.check_free_disk(spark, output, total_bytes)
        partitions = args.shuffle_partitions or max(
            spark.sparkContext.defaultParallelism, math.ceil(total_bytes / options.BYTES_PER_SHUFFLE_PARTITION)
        )
        spark.conf.set(SHUFFLE_PARTITIONS, str(partitions))
        hop2 = args.hop2 if args.hop2 != "auto" else ("exact" if total_bytes <= options.AUTO_EXACT_MAX_BYTES else "hll")
        if hop2 == "hll":  # what the driver is given: this job's --driver-memory, or spark-submit's
            broadcast.check_driver_memory(total_bytes, spark.sparkContext.getConf().get("spark.driver.memory", "1g"))

        with stages("parse"):
            records, counts, bad_files, why = _parse(spark, files, keep, args.input, args.skip_bad_files, hop2)

        with stages("validate"):
            # A mistyped record leaves alone; its pid, when it has one, still counts in its file's sequence.
            well_typed, drops_type = split_mistyped(records, entry_count(records))
            validation = validate.findings_dict(well_typed.transform(validate.findings).first())
            validation.update(validate.findings_dict(records.transform(validate.file_findings).first()))

        with stages("dedup"):
            n_entries = entry_count(well_typed)
            kept, drops_pid = split_missing_pid(well_typed, n_entries)
            kept, drops_dup = split_duplicate_pids(kept, n_entries)
            all_drops = [drops_type, drops_pid, drops_dup]
            if args.top_playlists_by_followers:
                kept, drops_top = split_top_followed(kept, args.top_playlists_by_followers, n_entries)
                all_drops.append(drops_top)
            entries, drops_uri = split_bad_uris(kept.transform(track_entries))
            entries = keep(entries)
            # Read twice: its duplicates' summary now, the edges later.
            unique_entries, drops_entry = dedup_entries(entries, keep)
            all_drops += [drops_uri, drops_entry]
            union = all_drops[0]
            for d in all_drops[1:]:
                union = union.unionByName(d)
            dropped = validate.drop_summary(union)

        with stages("ids"):
            playlists = keep(playlist_nodes(kept))
            catalogue = keep(catalogue_rows(entries))
            albums = keep(album_nodes(catalogue))
            artists = keep(artist_nodes(catalogue))
            tracks = keep(track_nodes(catalogue, albums, artists))
            conflicts = validate.conflicts({"track": tracks, "album": albums, "artist": artists})

        with stages("split"):
            n_playlists = counts["input_playlists"] - sum(d["playlists"] for d in dropped.values())
            num_val = args.num_val if args.num_val is not None else default_holdout(n_playlists, len(categories))
            num_test = args.num_test if args.num_test is not None else default_holdout(n_playlists, len(categories))
            holdout = holdout_table(spark, playlists, args.seed, categories, num_val, num_test)
            playlists = keep(playlists.transform(lambda df: with_split(df, holdout)))
            # Not persisted: the write below is the edges' only reader.
            edges = playlist_track_edges(
                with_roles(
                    unique_entries,
                    playlists.select("pid", "playlist_id", "split", "seed_category"),
                    args.seed,
                ),
                tracks,
            )
            held = holdout.groupBy("seed_category", "split").count().collect()

        # Edge tables are final now; node tables go to a scratch dir first. Reading them back
        # gives the feature joins short query plans (Catalyst's time grows with plan size) and
        # spares recomputing ids and splits.
        written = {}

        def write(table: str, df: DataFrame) -> None:
            df.transform(lambda d: contract_frame(d, table)).write.parquet(f"{tmp}/{table}")
            written[table] = spark.read.parquet(f"{tmp}/{table}")
            contract.check_columns(table, arrow_dtypes(written[table]))
            counts[table] = written[table].count()

        with stages("write edges"):
            write("edges/playlist_track", edges)
            write("edges/track_album", tracks)
            write("edges/track_artist", tracks)
            base = {"playlist": playlists, "track": tracks, "album": albums, "artist": artists}
            for kind, df in base.items():
                df.write.parquet(f"{tmp}/{BASE}/{kind}")
            for df in persisted:
                df.unpersist()
            base = {kind: spark.read.parquet(f"{tmp}/{BASE}/{kind}") for kind in base}

        with stages("features"):
            edges = written["edges/playlist_track"]
            playlists, *others = features.with_structural_features(
                base["playlist"],
                base["track"],
                base["album"],
                base["artist"],
                edges,
                hop2,
            )
            featured = [features.with_visible_playlist_attributes(playlists), *others]

        with stages("write nodes"), features.sketch_unions_in_memory(spark):
            for kind, df in zip(contract.NODE_TYPES, featured):
                write(f"nodes/{kind}", df)
            storage.delete(spark, f"{tmp}/{BASE}")

        with stages("stats"):
            stats = {
                t: features.feature_stats(written[f"nodes/{t}"], cols) for t, cols in contract.FEATURE_COLUMNS.items()
            }
            manifest.check_accounting(counts, dropped)

        validation.update(validate.catalogue_findings(conflicts, dropped, bad_files))
        sc = spark.sparkContext
        result = manifest.build(
            input={
                "path": args.input,
                "files": [{"path": f, "size": s} for f, s in files if f not in bad_files],
                "skipped_files": [
                    {"path": f, "reason": why.get(f, "does not parse as an MPD slice")} for f in bad_files
                ],
            },
            counts=counts,
            dropped=dropped,
            validation=validation,
            split=split_record(held, categories, counts["nodes/playlist"], num_val, num_test, args.seed),
            hop2={
                "mode": hop2,
                "relative_error": {"exact": 0.0, "hll": features.HLL_RELATIVE_ERROR, "off": None}[hop2],
                "hll_lg_config_k": features.HLL_LG_CONFIG_K if hop2 == "hll" else None,
            },
            feature_stats=stats,
            timings=stages.seconds,
            spark={
                "version": spark.version,
                "master": sc.master,
                "conf": manifest.spark_conf_subset(
                    dict(sc.getConf().getAll()) | {"spark.sql.shuffle.partitions": str(partitions)}
                ),
            },
            conflicts=conflicts,
            options={k: v for k, v in vars(args).items() if k not in ("input", "output")},
        )
        storage.write_text(spark, f"{tmp}/{contract.MANIFEST}", manifest.dumps(result))
        storage.publish(spark, tmp, output, args.overwrite)
        log.info("wrote %s: %s", output, {t: counts[t] for t in contract.TABLES})
        for reason, d in dropped.items():  # the console is what a user reads, not the manifest
            if d["count"]:
                log.warning(
                    "dropped %s: %d playlist(s), %d track entries; e.g. %s (manifest.json: dropped.%s)",
                    reason,
                    d["playlists"],
                    d["entries"],
                    ", ".join(map(str, d["examples"][:3])),
                    reason,
                )
        return result
    finally:
        # Stopped mid-job (Ctrl-C, SIGTERM, an error): no task may write into tmp after it goes.
        spark.sparkContext.cancelAllJobs()
        if storage.exists(spark, tmp):
            storage.delete(spark, tmp)
        for df in persisted:
            df.unpersist()
        for key, value in previous.items():
            spark.conf.set(key, value)
        if output_lock:
            storage.delete(spark, output_lock)
