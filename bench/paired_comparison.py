"""Paired per-playlist comparison of two methods on a split: the mean difference of each metric
and its 95% bootstrap interval (resampling playlists), to tell a win from noise.

    python bench/paired_comparison.py --graph G --run RUN [--splits val,test] [--methods gnn,itemknn]
    python bench/paired_comparison.py --graph G --run RUN --against OLD_RUN --methods gnn,gnn

Ranks with ``trainer.evaluate``'s own scorers, fallback, catalogue and per-playlist metrics.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from etl import contract
from trainer import methods
from trainer.evaluation import protocol
from trainer.evaluation.metrics import CHALLENGE_METRICS
from trainer.evaluation.paired import interval, per_playlist
from trainer.io.graph import load_catalogue


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graph", required=True)
    p.add_argument("--run", required=True)
    p.add_argument("--splits", default="val,test")
    p.add_argument("--methods", default="gnn,itemknn", help="two methods: first minus second")
    p.add_argument("--against", help="take the second method from this run (two runs' GNNs: --methods gnn,gnn)")
    p.add_argument("--resamples", type=int, default=2000)
    args = p.parse_args(argv)
    a, b = args.methods.split(",")
    graph = load_catalogue(args.graph)
    allowed = graph.edges(contract.VISIBLE_ROLES).getnnz(axis=0) > 0
    scorers, fallback = methods.build_scorers(graph, Path(args.run), [a], torch.device("cpu"))
    first = scorers[a]
    second = methods.build_scorers(graph, Path(args.against or args.run), [b], torch.device("cpu"))[0][b]
    if args.against:
        b = f"{b}@{Path(args.against).name}"
    rng = np.random.default_rng(0)
    for split in args.splits.split(","):
        held = protocol.held_out(graph, split)
        va, vb = (per_playlist(graph.track_artist, held, scorer, fallback, allowed) for scorer in (first, second))
        for m in CHALLENGE_METRICS:
            d = va[m] - vb[m]
            lo, hi = interval(d, rng, args.resamples)
            print(f"{split} {m}: {a} {va[m].mean():.4f} {b} {vb[m].mean():.4f} "
                  f"diff {d.mean():+.4f} (95% interval {lo:+.4f} .. {hi:+.4f}), n={len(d)}")


if __name__ == "__main__":
    main()
