"""Grid search of a baseline's hyper-parameters on the VAL split (never test: test is for
reporting the chosen defaults once).

    python bench/baseline_grid.py --graph G als [--factors 32,64,128,256]
        [--regularization 0.01,0.1,1,10] [--alpha 1,5,20,40] [--iterations 15,30] [--seeds 0]
    python bench/baseline_grid.py --graph G itemknn [--beta 0,0.25,0.5,0.75,1] [--gamma 0.5,1,1.5,2,3]
        [--neighbours 0]

Loads the graph once and scores every configuration with ``trainer.evaluate``'s own held-out
playlists, fallback, catalogue and metrics; one JSON line per configuration (and seed), sorted
by R-precision (NDCG as tie-break) at the end (``--out`` keeps the lines).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from etl import contract
from trainer import methods
from trainer.evaluation import protocol
from trainer.evaluation.baselines import ALS, ALSParams, ItemKNN, popularity_counts
from trainer.evaluation.metrics import K
from trainer.io.catalogue import load_catalogue


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graph", required=True)
    p.add_argument("--out", help="JSON lines (default: stdout only)")
    sub = p.add_subparsers(dest="method", required=True)
    als = sub.add_parser("als")
    als.add_argument("--factors", type=ints, default=[32, 64, 128, 256])
    als.add_argument("--regularization", type=floats, default=[0.01, 0.1, 1.0, 10.0])
    als.add_argument("--alpha", type=floats, default=[1.0, 5.0, 20.0, 40.0])
    als.add_argument("--iterations", type=ints, default=[15, 30])
    als.add_argument("--seeds", type=ints, default=[0])
    als.add_argument("--threads", type=int, default=1)
    knn = sub.add_parser("itemknn")
    knn.add_argument("--beta", type=floats, default=[0.0, 0.25, 0.5, 0.75, 1.0])
    knn.add_argument("--gamma", type=floats, default=[0.5, 1.0, 1.5, 2.0, 3.0])
    knn.add_argument("--neighbours", type=ints, default=[0], help="0: every playlist sharing a seed")
    args = p.parse_args(argv)

    device = torch.device("cpu")
    graph = load_catalogue(args.graph)
    held = protocol.held_out(graph, contract.SPLIT_VAL)
    groups = protocol.category_order(held.categories)
    allowed = graph.edges(contract.VISIBLE_ROLES).getnnz(axis=0) > 0
    reference, fallback = methods.build_scorers(graph, Path("."), ["popularity", "itemknn"], device)
    train = graph.edges((contract.ROLE_TRAIN,), splits=(contract.SPLIT_TRAIN,))
    popularity = popularity_counts(graph.edges(contract.VISIBLE_ROLES))

    def score(scorers: dict) -> dict:
        sums, counts = protocol.score_sums(
            held, scorers, fallback, groups, graph.track_artist, K, 256, 1 << 17, device, allowed=allowed
        )
        rep = protocol.report(sums, counts, list(scorers), groups)
        return {m: {k: rep[m]["overall"][k] for k in ("r_precision", "ndcg", "clicks")} for m in rep}

    if args.method == "als":
        grid = [
            ALSParams(f, reg, a, it, seed, args.threads).as_dict()
            for f, reg, a, it, seed in itertools.product(
                args.factors, args.regularization, args.alpha, args.iterations, args.seeds
            )
        ]

        def scorer(settings):
            return ALS(train, popularity, ALSParams(**settings))
    else:
        grid = [
            {"beta": b, "gamma": g, "neighbours": n}
            for b, g, n in itertools.product(args.beta, args.gamma, args.neighbours)
        ]

        def scorer(settings):
            return ItemKNN(train, popularity, **settings)

    rows = []
    out = open(args.out, "w") if args.out else None
    for name, values in score(reference).items():
        print(json.dumps({"method": name, **values}), flush=True)
    for settings in grid:
        t = time.perf_counter()
        values = score({args.method: scorer(settings)})[args.method]
        row = {**settings, **values, "seconds": round(time.perf_counter() - t, 2)}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if out:
            out.write(json.dumps(row) + "\n")
            out.flush()
    print("best (val R-precision, then NDCG):")
    for row in sorted(rows, key=lambda r: (-r["r_precision"], -r["ndcg"]))[:10]:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
