"""Full-graph against sampled training on one graph, side by side: each mode a real, limited
``trainer.train`` run (one process, CPU), the modes alternating run by run; medians.

    python bench/bench_propagation.py --graph G [--repeats 3] [--out results.jsonl]

Modes: ``sampled_torch_sparse`` (LinkNeighborLoader through torch-sparse, batch 256), ``sampled_device`` (the device-resident sampler, batch 256), ``full`` (whole-graph
propagation, batch 4,096) and ``full_3_layers`` (the same at the earlier depth of 3).
Reported per mode: supervision edges/s in the batch loop, the share of the step spent waiting
for data, the per-epoch set-up, and peak RSS.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_train import train_run  # noqa: E402

MODES = {
    "sampled_torch_sparse": ({"propagation": "sampled", "sampler": "torch_sparse", "batch_size": 256}, 40),
    "sampled_device": ({"propagation": "sampled", "sampler": "device", "batch_size": 256}, 40),
    "full": ({"propagation": "full", "batch_size": 4096}, 6),  # the default depth (6 layers)
    "full_3_layers": ({"propagation": "full", "batch_size": 4096, "layers": 3}, 6),  # the earlier depth
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    ap.add_argument("--out")
    args = ap.parse_args()
    modes = args.modes.split(",")
    runs = {m: [] for m in modes}
    for repeat in range(args.repeats):
        for mode in modes:  # alternating: load drifts hit every mode alike
            extra, steps = MODES[mode]
            r = train_run(args.graph, 1, steps, {**extra, "val_rank_playlists": 0}, args.workdir)
            r.update(mode=mode, repeat=repeat)
            runs[mode].append(r)
            print(json.dumps(r), flush=True)
    summary = []
    for mode, rs in runs.items():
        s = {"mode": mode, "repeats": len(rs)}
        for k in ("edges_per_s", "data_fraction", "setup_s", "peak_rss_mb"):
            values = [r[k] for r in rs]
            s[k] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
        summary.append(s)
        print(json.dumps(s), flush=True)
    base = next((s for s in summary if s["mode"] == "sampled_torch_sparse"), None)
    if base:
        for s in summary:
            print(f"{s['mode']}: {s['edges_per_s']['median'] / base['edges_per_s']['median']:.2f}x "
                  "sampled_torch_sparse's median edges/s")
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(x) + "\n" for x in [*[r for rs in runs.values() for r in rs], *summary])


if __name__ == "__main__":
    main()
