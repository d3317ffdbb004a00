"""``python -m etl.synth``: write the slices (and a challenge set) to a folder, in parallel."""

from __future__ import annotations

import argparse
import os
import sys
import time

from etl import synth
from etl.flags import count
from etl.synth.challenge import CHALLENGE_FILE
from etl.synth.write import SynthError, generate, write_graph


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2, as for every other bad input
        self.exit(2, f"synth: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="python -m etl.synth", description=synth.__doc__.split("\n\n")[0])
    ap.add_argument("--playlists", type=count(1), required=True, help="number of playlists (pids 0..N-1)")
    ap.add_argument("--out", required=True, help="output directory (created; must be empty unless --overwrite)")
    ap.add_argument("--seed", type=int, default=0, help="catalogue and playlist seed (default 0)")
    ap.add_argument(
        "--workers",
        type=count(1),
        default=max(1, min(8, os.cpu_count() or 1)),
        help="processes writing slices in parallel (output does not depend on it)",
    )
    ap.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the synthetic MPD files already in --out (other files are kept)",
    )
    ap.add_argument(
        "--challenge-set",
        type=count(0),
        default=0,
        metavar="K",
        help=f"also write {CHALLENGE_FILE} from K more playlists (pids N..N+K-1; with --graph-dir, beside the tables)",
    )
    ap.add_argument(
        "--graph-dir",
        action="store_true",
        help="write a contract graph dir (Parquet tables, no 2-hop features) instead of "
        "JSON slices: the same playlists, minutes at 1M, no Spark",
    )
    ap.add_argument(
        "--holdout",
        type=count(0),
        default=None,
        metavar="K",
        help="with --graph-dir: K validation and K test playlists (default: the ETL's)",
    )
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    a = ap.parse_args(argv)
    try:
        t0 = time.perf_counter()
        if a.graph_dir:
            write_graph(
                a.playlists, a.out, a.seed, a.overwrite, a.holdout, None if a.quiet else sys.stderr, a.challenge_set
            )
            return 0
        names = generate(
            a.playlists, a.out, a.seed, a.workers, a.overwrite, a.challenge_set, None if a.quiet else sys.stderr
        )
    except SynthError as e:
        print(f"synth: error: {e}", file=sys.stderr)
        return 2
    if not a.quiet:
        print(
            f"synth: wrote {len(names)} slices ({a.playlists} playlists) to {a.out} in {time.perf_counter() - t0:.1f}s",
            file=sys.stderr,
        )
    return 0
