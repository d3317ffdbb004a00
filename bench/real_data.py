"""The real-data comparison: GNN runs (several training seeds), and their second-stage rankers
when every run has one (``python -m trainer.rerank``), against popularity, item-kNN and ALS on
one split, overall and per seed category, with paired 95% bootstrap intervals.

    python bench/real_data.py --graph G --runs RUN_S0,RUN_S1,RUN_S2 [--split test] [--json OUT]
        [--itemknn-neighbours 100]

Every method is ranked by ``trainer.evaluate``'s own scorers, title fallback, catalogue and
per-playlist metrics. A per-run method's per-playlist metric is averaged over the runs (seeds)
before it is paired with another's on the same playlist; intervals resample playlists (2,000 times).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from etl import contract
from trainer import methods
from trainer.evaluation import protocol
from trainer.evaluation.metrics import CHALLENGE_METRICS
from trainer.evaluation.paired import interval, per_playlist
from trainer.io import ranker
from trainer.io.catalogue import load_catalogue

BASELINES = ("popularity", "itemknn", "als")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graph", required=True)
    p.add_argument("--runs", required=True, help="comma-separated GNN run dirs (one per training seed)")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--json", help="write the numbers here too")
    p.add_argument("--itemknn-neighbours", type=int, default=0, help="as trainer.evaluate's (100: tuned on val)")
    args = p.parse_args(argv)
    graph = load_catalogue(args.graph)
    allowed = graph.edges(contract.VISIBLE_ROLES).getnnz(axis=0) > 0
    held = protocol.held_out(graph, args.split)
    runs = args.runs.split(",")
    scorers, fallback = methods.build_scorers(
        graph, Path(runs[0]), list(BASELINES), torch.device("cpu"), neighbours=args.itemknn_neighbours
    )
    values = per_playlist(graph.track_artist, held, scorers, fallback, allowed)
    per_run = ["gnn", *(["rerank", "fusion"] if all(ranker.exists(r) for r in runs) else [])]
    seeds = {m: [] for m in per_run}
    for run in runs:
        mine, _ = methods.build_scorers(graph, Path(run), per_run, torch.device("cpu"), allowed=allowed)
        for m, v in per_playlist(graph.track_artist, held, mine, fallback, allowed).items():
            seeds[m].append(v)
    for m in per_run:
        values[m] = {k: np.mean([s[k] for s in seeds[m]], axis=0) for k in CHALLENGE_METRICS}

    groups = ["overall", *protocol.category_order(held.categories)]
    masks = {g: np.ones(len(held), bool) if g == "overall" else held.categories == g for g in groups}
    out = {
        "split": args.split,
        "graph": args.graph,
        "runs": runs,
        "num_playlists": len(held),
        "table": {},
        "seeds": {},
        "paired": {},
        "itemknn_neighbours": args.itemknn_neighbours,
    }
    seeds_note = f"{', '.join(per_run)} = mean of {len(runs)} training seeds (spread: min..max)"
    print(f"{args.split}: {len(held)} playlists; {seeds_note}")
    print(f"{'method':<11}{'group':<12}{'n':>5}" + "".join(f"{m:>26}" for m in CHALLENGE_METRICS))
    for method in (*per_run, *BASELINES):
        for g in groups:
            mask = masks[g]
            cells = []
            for m in CHALLENGE_METRICS:
                mean = values[method][m][mask].mean()
                cell = f"{mean:.4f}"
                if method in per_run:
                    per_seed = [s[m][mask].mean() for s in seeds[method]]
                    cell += f" ({min(per_seed):.4f}..{max(per_seed):.4f})"
                    out["seeds"].setdefault(method, {}).setdefault(g, {})[m] = per_seed
                cells.append(cell)
                out["table"].setdefault(method, {}).setdefault(g, {})[m] = float(mean)
            print(f"{method:<11}{g:<12}{int(mask.sum()):>5}" + "".join(f"{c:>26}" for c in cells))
    rng = np.random.default_rng(0)
    pairs = [(a, b) for a in per_run for b in ("itemknn", "als")]
    pairs += [("rerank", "gnn"), ("fusion", "gnn"), ("rerank", "fusion")] if "rerank" in per_run else []
    for a, b in pairs:
        for m in CHALLENGE_METRICS:
            d = values[a][m] - values[b][m]
            lo, hi = interval(d, rng)
            base = values[b][m].mean()
            ratio = values[a][m].mean() / base if base else float("nan")
            out["paired"].setdefault(f"{a}-{b}", {})[m] = {
                "diff": float(d.mean()),
                "lo": lo,
                "hi": hi,
                "ratio": float(ratio),
            }
            print(f"{a} - {b:<8} {m:<12} {d.mean():+.4f} (95% interval {lo:+.4f} .. {hi:+.4f}); ratio {ratio:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
