"""The lines a trained GNN must beat, on the very val playlists that select its checkpoint: the
trainer's ranking set (``val_rank_playlists`` seeded val playlists of its ``val_selection`` drawn
with its seed), ranked
by the baselines exactly as ``trainer.gnn.validation.rank_validation`` ranks the GNN.

    python bench/selection_lines.py --graph G --run RUN [--methods als,itemknn,popularity]

``--run``: where ALS keeps its fit (the evaluation's store: a later ``trainer.evaluate`` on the same
graph and settings reuses it). Prints one JSON line per method: val R-precision, NDCG, clicks.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import torch

from trainer import methods as ranking_methods
from trainer.config import TrainConfig
from trainer.evaluation.metrics import K
from trainer.evaluation.protocol import metrics_per_batch
from trainer.gnn.validation import RANK_METRICS, ranking_set
from trainer.io.catalogue import load_catalogue
from trainer.io.graph import load_graph


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", required=True)
    ap.add_argument("--run", required=True, help="run dir where ALS's fit is kept")
    ap.add_argument("--methods", default="als,itemknn,popularity")
    ap.add_argument(
        "--playlists",
        type=int,
        default=TrainConfig.val_rank_playlists,
        help="the trainer's val_rank_playlists (default: its default)",
    )
    ap.add_argument("--seed", type=int, default=0, help="the trainer's seed")
    ap.add_argument(
        "--val-selection",
        choices=["half", "all"],
        default=TrainConfig.val_selection,
        help="the trainer's val_selection (default: its default; a run from before the key: all)",
    )
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    graph = load_graph(a.graph)
    ranking = ranking_set(graph, a.playlists, a.seed, half=a.val_selection == "half")
    del graph
    gc.collect()
    catalogue = load_catalogue(a.graph)
    device = torch.device("cpu")
    for method in a.methods.split(","):
        t1 = time.perf_counter()
        scorers, _ = ranking_methods.build_scorers(catalogue, a.run, [method], device)
        sums = dict.fromkeys(RANK_METRICS, 0.0)
        for _, _, values in metrics_per_batch(
            ranking.held, scorers, None, ranking.track_artist, K, 256, 1 << 17, device, ranking.allowed
        ):
            for m in RANK_METRICS:
                sums[m] += float(values[method][m].sum())
        print(
            json.dumps(
                {
                    "method": method,
                    "playlists": len(ranking),
                    **{f"val_{m}": round(sums[m] / len(ranking), 4) for m in RANK_METRICS},
                    "seconds": round(time.perf_counter() - t1, 1),
                    "total_seconds": round(time.perf_counter() - t0, 1),
                }
            ),
            flush=True,
        )
        del scorers
        gc.collect()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
