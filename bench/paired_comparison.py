"""Paired per-playlist comparison of a method with others on a split: the mean difference of each
metric and its 95% bootstrap interval (resampling playlists), to tell a win from noise.

    python bench/paired_comparison.py --graph G --run RUN [--splits val,test] [--methods gnn,itemknn,als]
    python bench/paired_comparison.py --graph G --run RUN --against OLD_RUN --methods gnn,gnn
    python bench/paired_comparison.py --graph G1M --run RUN --splits test --max-playlists 2000 --methods gnn,als,itemknn
    python bench/paired_comparison.py --graph G --run RUN --against RUN2 --methods gnn,gnn --splits val --ranker-half

Ranks with ``trainer.evaluate``'s own scorers, fallback, catalogue and per-playlist metrics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from trainer import methods
from trainer.evaluation import protocol
from trainer.evaluation.metrics import CHALLENGE_METRICS
from trainer.evaluation.paired import interval, per_playlist
from trainer.io.catalogue import load_catalogue


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graph", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--splits", default="val,test")
    p.add_argument(
        "--methods", default="gnn,itemknn", help="the first method minus each of the others (ranked once each)"
    )
    p.add_argument("--against", help="take the other methods from this run (two runs' GNNs: --methods gnn,gnn)")
    p.add_argument(
        "--max-playlists",
        type=int,
        default=0,
        help="playlists of each split, evenly spaced as evaluate --max-playlists takes them (0: all)",
    )
    p.add_argument(
        "--ranker-half",
        action="store_true",
        help="val: only the half apart from the checkpoint's selection (val_selection=half): two checkpoints"
        " of one run compared on playlists neither was chosen on",
    )
    p.add_argument("--resamples", type=int, default=2000)
    args = p.parse_args(argv)
    first, *others = args.methods.split(",")
    if not others:
        p.error(f"--methods needs two or more methods, got {args.methods!r}")
    graph = load_catalogue(args.graph)
    allowed = protocol.visible_catalogue(graph)
    scorers, fallback = methods.build_scorers(graph, Path(args.run), [first], torch.device("cpu"), allowed=allowed)
    theirs = methods.build_scorers(graph, Path(args.against or args.run), others, torch.device("cpu"), allowed=allowed)[
        0
    ]
    suffix = f"@{Path(args.against).name}" if args.against else ""
    rng = np.random.default_rng(0)
    for split in args.splits.split(","):
        held = protocol.held_out(graph, split)
        if args.ranker_half and split == "val":
            held = methods.ranker_playlists(held, args.run)[0]
        held = held.evenly(args.max_playlists)
        va = per_playlist(graph.track_artist, held, scorers, fallback, allowed)[first]
        values = per_playlist(graph.track_artist, held, theirs, fallback, allowed)
        for b in others:
            vb = values[b]
            for m in CHALLENGE_METRICS:
                d = va[m] - vb[m]
                lo, hi = interval(d, rng, args.resamples)
                print(
                    f"{split} {m}: {first} {va[m].mean():.4f} {b}{suffix} {vb[m].mean():.4f} "
                    f"diff {d.mean():+.4f} (95% interval {lo:+.4f} .. {hi:+.4f}), n={len(d)}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
