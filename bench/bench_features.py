"""Benchmark: the ETL's feature stage alone (``write nodes``), on an existing graph dir.

Reads a graph dir (the ETL's or the generator's ``--graph-dir``), drops its structural feature
columns, recomputes them with ``etl.features`` as the job does and writes each node table to a
scratch dir, timing each table. The rest of the job is not run, so a change to the features can
be timed in minutes at 100k playlists instead of the whole job's ten.

    python bench/bench_features.py --graph G --scratch S [--hop2 hll] [--repeats 2]

Prints one JSON line per table and repeat, then the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time

from etl import contract, features
from etl.options import parse_args as job_args
from etl.session import spark_session

STRUCTURAL = {"deg_track", "deg_playlist", "hop2_walks", "hop2_reach"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graph", required=True)
    p.add_argument("--scratch", required=True, help="dir for the written tables (emptied first)")
    p.add_argument("--hop2", choices=features.HOP2_MODES, default="hll")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--shuffle-partitions",
        type=int,
        default=None,
        help="default: what the job picks for this graph's input, at least one per core",
    )
    args = p.parse_args()

    spark = spark_session(job_args(["--input", "-", "--output", "-"]))
    if args.shuffle_partitions:
        spark.conf.set("spark.sql.shuffle.partitions", str(args.shuffle_partitions))
    read = {t: spark.read.parquet(os.path.join(args.graph, t)) for t in contract.TABLES}
    base = {t: read[f"nodes/{t}"].drop(*(STRUCTURAL & set(read[f"nodes/{t}"].columns))) for t in contract.NODE_TYPES}
    edges = read["edges/playlist_track"]
    times: dict[str, list[float]] = {}
    for r in range(args.repeats):
        shutil.rmtree(args.scratch, ignore_errors=True)
        playlists, *others = features.with_structural_features(
            base["playlist"], base["track"], base["album"], base["artist"], edges, args.hop2
        )
        featured = [features.with_visible_playlist_attributes(playlists), *others]
        with features.sketch_unions_in_memory(spark):
            for kind, df in zip(contract.NODE_TYPES, featured):
                start = time.perf_counter()
                df.write.parquet(os.path.join(args.scratch, kind))
                took = time.perf_counter() - start
                times.setdefault(kind, []).append(took)
                print(json.dumps({"repeat": r, "table": kind, "seconds": round(took, 1)}), flush=True)
    total = sum(statistics.median(v) for v in times.values())
    print(
        "medians (s): "
        + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in times.items())
        + f"; total {total:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
