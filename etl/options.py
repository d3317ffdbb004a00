"""The ETL's options: ``python -m etl.job``'s flags, each checked once, with the defaults the
pipeline resolves from its input (``--hop2 auto``, ``--shuffle-partitions``)."""

from __future__ import annotations

import argparse

from etl import contract
from etl.flags import count, memory

AUTO_EXACT_MAX_BYTES = 256 * 2**20  # ~8 slices; the exact 2-hop join grows with sum(deg^2)
BYTES_PER_SHUFFLE_PARTITION = 64 * 2**20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="etl.job", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--input", required=True, help="dir of mpd.slice.*.json (or .json.gz), a glob or a file; any Hadoop URL"
    )
    p.add_argument("--output", required=True, help="graph dir to create (local path or Hadoop URL)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--seed", type=int, default=2018, help="seed of the split hashes (default 2018)")
    p.add_argument(
        "--num-val",
        type=count(0),
        default=None,
        help="val playlists (default min(10000, max(#categories, playlists // 20)))",
    )
    p.add_argument("--num-test", type=count(0), default=None, help="test playlists (default as --num-val)")
    p.add_argument(
        "--categories",
        default=",".join(c.name for c in contract.SEED_CATEGORIES),
        help="comma-separated seed categories (default all 8)",
    )
    p.add_argument(
        "--hop2",
        choices=("exact", "hll", "off", "auto"),
        default="auto",
        help=f"2-hop features: exact joins, HyperLogLog, none; auto = exact up to "
        f"{AUTO_EXACT_MAX_BYTES // 2**20} MiB of input, else hll",
    )
    p.add_argument(
        "--top-playlists-by-followers",
        type=count(1),
        default=None,
        metavar="N",
        help="keep only the N most-followed playlists and what they reach",
    )
    p.add_argument(
        "--skip-bad-files",
        action="store_true",
        help="skip (and list in the manifest) files that do not parse, instead of failing",
    )
    p.add_argument("--master", default=None, help="Spark master (default: spark-submit's, else local[*])")
    p.add_argument(
        "--shuffle-partitions",
        type=count(1),
        default=None,
        help=f"default: one per {BYTES_PER_SHUFFLE_PARTITION // 2**20} MiB of input, at least one per core",
    )
    # Not a size per input byte: the one thing in the job that does not shrink with partitions is
    # the broadcast of --hop2 hll's sketches (one per playlist and per track), built in the driver;
    # at 1M playlists a 4g driver died building it after 93 minutes, 6g completed (bench/RESULTS.md).
    p.add_argument("--driver-memory", type=memory, default="6g", help="local mode driver memory (default 6g)")
    args = p.parse_args(argv)
    unknown = set(args.categories.split(",")) - set(contract.SEED_CATEGORY_BY_NAME)
    if unknown or not args.categories:
        p.error(f"--categories: unknown {sorted(unknown)}; known: {list(contract.SEED_CATEGORY_BY_NAME)}")
    return args
