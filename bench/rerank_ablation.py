"""What each feature group of the second stage adds, on val only: the ranker's out-of-fold
R-precision (track matches, over each playlist's hidden tracks) with every group, and with each
group left out in turn, beside the GNN's own order of the same candidates.

    python bench/rerank_ablation.py --graph G --run RUN [--json OUT] [--cache FILE]

The candidates and features are those ``python -m trainer.rerank`` trains on (its defaults);
``--cache`` keeps them in an .npz so a second call only refits. Folds, rounds and booster
settings are the build's own (``trainer.ranker.model.cross_validate``); the intervals are
paired bootstraps over val playlists against the full set.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from etl import contract
from trainer import dist, process
from trainer.evaluation import protocol
from trainer.evaluation.baselines import popularity_counts
from trainer.evaluation.paired import interval
from trainer.io.catalogue import load_catalogue
from trainer.methods import build_scorers, ranker_playlists
from trainer.ranker.candidate_features import TrackFeatures, groups
from trainer.ranker.examples import examples
from trainer.ranker.model import RETRIEVERS, RankerParams, cross_validate, r_precision_track


def val_examples(graph_dir: str, run: str, params: RankerParams, cache: str | None):
    if cache and os.path.exists(cache):
        z = np.load(cache, allow_pickle=True)
        return (z["x"], z["y"], z["group"], list(z["names"]), z["truth"], z["categories"])
    graph = load_catalogue(graph_dir)
    held, _ = ranker_playlists(protocol.held_out(graph, contract.SPLIT_VAL), run)  # the playlists it trains on
    device = dist.pick_device("auto")
    scorers, title = build_scorers(graph, run, list(RETRIEVERS), device)
    tracks = TrackFeatures(graph, popularity_counts(graph.edges(contract.VISIBLE_ROLES)))
    x, y, group, names, _ = examples(
        held,
        scorers,
        title,
        tracks,
        graph.num_tracks,
        params.k,
        256,
        1 << 17,
        device,
        protocol.visible_catalogue(graph),
    )
    truth, categories = np.diff(held.truth_indptr), np.asarray(held.categories, dtype=object)
    if cache:
        np.savez(cache, x=x, y=y, group=group, names=np.array(names), truth=truth, categories=categories)
    return x, y, group, names, truth, categories


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graph", required=True)
    p.add_argument("--run", required=True, help="a trained run with embeddings")
    p.add_argument("--cache", help="an .npz for the val candidates and features")
    p.add_argument("--json", help="write the numbers here too")
    args = p.parse_args(argv)
    process.configure_logging()
    params = RankerParams()
    x, y, group, names, truth, categories = val_examples(args.graph, args.run, params, args.cache)
    gnn = x[:, names.index("gnn_score")]
    results = {"gnn order": r_precision_track(np.nan_to_num(gnn, nan=-np.inf), y, group, truth)}
    by_group = groups(names)
    for label, drop in [("all features", []), *((f"without {g}", cols) for g, cols in by_group.items())]:
        keep = [i for i, n in enumerate(names) if n not in drop]
        pred, _ = cross_validate(x[:, keep], y, group, [names[i] for i in keep], params)
        results[label] = r_precision_track(pred, y, group, truth)
    full = results["all features"]
    out = {"val_playlists": len(group), "candidates": int(len(y)), "groups": by_group, "rows": {}}
    print(f"{len(group)} val playlists, {len(y):,} candidates; out-of-fold R-precision (track matches)")
    for label, per in results.items():
        lo, hi = interval(per - full, np.random.default_rng(0))
        row = {
            "r_precision": float(per.mean()),
            "minus_all": float(per.mean() - full.mean()),
            "interval": [float(lo), float(hi)],
            "by_category": {c: float(per[categories == c].mean()) for c in sorted(set(categories) - {None})},
        }
        out["rows"][label] = row
        print(f"  {label:<28} {row['r_precision']:.4f}  vs all {row['minus_all']:+.4f} ({lo:+.4f} .. {hi:+.4f})")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
