"""Full-catalogue top-500 at MPD catalogue size: time per batch and peak memory.

    .venv/bin/python bench/eval_scale.py [--tracks 2262292] [--dim 64] [--batch 256] [--chunk 131072]

GNN path: random track embeddings for the whole MPD catalogue, a batch of query embeddings,
``trainer.ranking.scoring.top_k`` with 100 seeds masked per query. Reports the median of a few batches
and the process's peak RSS over the embedding matrix itself.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import psutil
import torch

from trainer.ranking.scoring import EmbeddingScorer, Queries, top_k


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tracks", type=int, default=2_262_292)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--chunk", type=int, default=1 << 17)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    proc = psutil.Process()
    tracks = rng.standard_normal((args.tracks, args.dim), dtype=np.float32)
    scorer = EmbeddingScorer(tracks, None)
    del tracks
    base = proc.memory_info().rss
    seeds = [rng.choice(args.tracks, 100, replace=False) for _ in range(args.batch)]
    queries = Queries.from_lists(seeds, [""] * args.batch)
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        top_k(scorer.batch(queries), queries, args.tracks, 500, args.chunk)
        times.append(time.perf_counter() - t0)
    peak = proc.memory_info().rss
    med = statistics.median(times)
    print(f"tracks={args.tracks} dim={args.dim} batch={args.batch} chunk={args.chunk} "
          f"threads={torch.get_num_threads()}: median {med:.2f} s/batch "
          f"({args.batch / med:.0f} playlists/s), times {[round(t, 2) for t in times]}, "
          f"RSS over embeddings {(peak - base) / 2**20:.0f} MiB "
          f"(embeddings {args.tracks * args.dim * 4 / 2**20:.0f} MiB)")


if __name__ == "__main__":
    main()
