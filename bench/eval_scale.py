"""Ranking cost per method on a graph dir: seconds per playlist, build time, peak RSS.

    .venv/bin/python bench/eval_scale.py --graph DIR [--run RUN] [--methods popularity,itemknn]
        [--playlists 512] [--batch 256] [--split test]

Each method ranks the same evenly spaced held-out playlists through
``trainer.evaluation.protocol.metrics_per_batch`` (what ``trainer.evaluate`` runs: scoring, masking,
top-500, metrics) over the visible catalogue; the median of its batches is reported (wall and CPU
time), with the time to build the method (ALS: its fit) and the process's peak RSS so far. To
compare two versions of the code, run it from both checkouts on the same graph dir, alternately.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import numpy as np
import torch

from etl import contract
from trainer import methods as registry
from trainer.evaluation.metrics import K
from trainer.evaluation.protocol import held_out, metrics_per_batch, visible_catalogue
from trainer.io.catalogue import load_catalogue


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--graph", required=True)
    p.add_argument("--run", default=".", help="run dir with embeddings (for gnn)")
    p.add_argument("--methods", default="popularity,itemknn")
    p.add_argument("--playlists", type=int, default=512)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--chunk", type=int, default=1 << 17)
    p.add_argument("--split", default=contract.SPLIT_TEST)
    args = p.parse_args()
    t0 = time.perf_counter()
    graph = load_catalogue(args.graph)
    held = held_out(graph, args.split)
    held = held.take(np.unique(np.linspace(0, len(held) - 1, args.playlists).round().astype(np.int64)))
    allowed = visible_catalogue(graph)
    load = time.perf_counter() - t0
    device = torch.device("cpu")
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        scorers, fallback = registry.build_scorers(graph, args.run, [method], device)
        build = time.perf_counter() - t0
        times, cpu, t0, c0 = [], [], time.perf_counter(), time.process_time()
        for lo, hi, _ in metrics_per_batch(
            held, scorers, fallback, graph.track_artist, K, args.batch, args.chunk, device, allowed
        ):
            times.append((time.perf_counter() - t0) / (hi - lo))
            cpu.append((time.process_time() - c0) / (hi - lo))
            t0, c0 = time.perf_counter(), time.process_time()
        print(
            json.dumps(
                {
                    "method": method,
                    "tracks": graph.num_tracks,
                    "playlists": len(held),
                    "batch": args.batch,
                    "load_s": round(load, 1),
                    "build_s": round(build, 1),
                    "median_s_per_playlist": round(statistics.median(times), 4),
                    "s_per_playlist_by_batch": [round(t, 4) for t in times],
                    # CPU seconds (all threads): less moved than wall time by other jobs on the machine.
                    "median_cpu_s_per_playlist": round(statistics.median(cpu), 4),
                    "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                    "threads": torch.get_num_threads(),
                }
            ),
            flush=True,
        )
        del scorers, fallback


if __name__ == "__main__":
    main()
