"""Grid search of the ALS baseline's hyper-parameters on the VAL split (never test: test is for
reporting the chosen defaults once).

    python bench/als_grid.py --graph G [--factors 32,64,128,256] [--regularization 0.01,0.1,1,10]
        [--alpha 1,5,20,40] [--iterations 15,30] [--seeds 0] [--out grid.jsonl]

Loads the graph once and scores every configuration with ``trainer.evaluate``'s own held-out
playlists, fallback, catalogue and metrics; one JSON line per configuration (and seed), sorted
by R-precision (NDCG as tie-break) at the end.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etl import contract  # noqa: E402
from trainer.io.graph import load_catalogue
from trainer.ranking import methods, protocol
from trainer.ranking.baselines import ALS, ALSParams, popularity_counts  # noqa: E402
from trainer.ranking.metrics import K  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--graph", required=True)
    p.add_argument("--factors", type=ints, default=[32, 64, 128, 256])
    p.add_argument("--regularization", type=floats, default=[0.01, 0.1, 1.0, 10.0])
    p.add_argument("--alpha", type=floats, default=[1.0, 5.0, 20.0, 40.0])
    p.add_argument("--iterations", type=ints, default=[15, 30])
    p.add_argument("--seeds", type=ints, default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="JSON lines (default: stdout only)")
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
        sums, counts = protocol.score_sums(held, scorers, fallback, groups, graph.track_artist,
                                           K, 256, 1 << 17, device, allowed=allowed)
        rep = protocol.report(sums, counts, list(scorers), groups)
        return {m: {k: rep[m]["overall"][k] for k in ("r_precision", "ndcg", "clicks")}
                for m in rep}

    rows = []
    out = open(args.out, "w") if args.out else None
    for name, values in score(reference).items():
        print(json.dumps({"method": name, **values}), flush=True)
    for f, reg, a, it, seed in itertools.product(args.factors, args.regularization, args.alpha,
                                                 args.iterations, args.seeds):
        params = ALSParams(f, reg, a, it, seed, args.threads)
        t = time.perf_counter()
        values = score({"als": ALS(train, popularity, params)})["als"]
        row = {**params.as_dict(), **values, "seconds": round(time.perf_counter() - t, 2)}
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
