"""Trainer throughput and memory on CPU: sampler alone, then training with 1 and N processes.

    python bench/bench_train.py --graph G [--steps 40] [--procs 1,2] [--repeats 3] [--out results.json]
    python bench/bench_train.py --synthetic 10000 --workdir /tmp/bench_train ...
    python bench/bench_train.py --synthetic 10000 --samplers torch_sparse,device --workers 0 --procs ""
    python bench/bench_train.py --graph G --propagation [--modes full,full_3_layers] [--repeats 3]

``--graph`` takes a graph dir written by ``etl.job``; ``--synthetic N`` writes one of the calibrated
generator's first N playlists (``etl.synth.graphdir``, no 2-hop features) when the ETL is not at hand. Every training
measurement is a real ``trainer.train`` run (``python -m`` for 1 process, ``torchrun`` for N)
limited to ``--steps`` steps, read back from its ``metrics.jsonl``: supervision edges/s over all
ranks, the step time split into data loading and compute, and peak RSS (max over ranks).
Medians over ``--repeats`` runs are printed as JSON lines. ``--samplers`` compares the config's
``sampler`` kinds on the loader alone, alternating them run by run (the machine's noise then
falls on both), and prints each one's median and their ratio. ``--propagation`` compares full-graph
against sampled training instead (``MODES``; each mode a real limited run, alternating; reported:
supervision edges/s, data share of the step, set-up, peak RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sampler_throughput(graph_path: str, steps: int, num_workers: int, extra: dict) -> dict:
    """Batches/s and supervision edges/s of the epoch loader alone (no model)."""
    import torch

    from trainer.config import TrainConfig
    from trainer.dist import DistEnv
    from trainer.gnn.sampled import epoch_loader
    from trainer.io.graph import load_graph

    graph = load_graph(graph_path)
    config = TrainConfig.from_dict({"num_workers": num_workers, **extra})
    env = DistEnv(0, 0, 1, torch.device("cpu"), None)
    t0 = time.perf_counter()
    loader = epoch_loader(graph, config, env, 0)
    setup = time.perf_counter() - t0
    it = iter(loader)
    next(it)  # worker start-up is not throughput
    t0 = time.perf_counter()
    n = 0
    for _ in range(min(steps, len(loader) - 1)):
        next(it)
        n += 1
    dt = time.perf_counter() - t0
    return {
        "what": "sampler",
        "sampler": config.sampler,
        "num_workers": num_workers,
        "batches_per_s": round(n / dt, 2),
        "edges_per_s": round(n * config.batch_size / dt, 1),
        "setup_s": round(setup, 2),
    }


def train_run(graph_path: str, procs: int, steps: int, extra: dict, workdir: str) -> dict:
    """One limited ``trainer.train`` run; its metrics record."""
    out = tempfile.mkdtemp(dir=workdir, prefix=f"run{procs}_")
    keys = [
        f"--{k}={v}"
        for k, v in {"epochs": 1, "max_steps_per_epoch": steps, "device": "cpu", "val_max_edges": 2000, **extra}.items()
    ]
    if procs == 1:
        cmd = [sys.executable, "-m", "trainer.train"]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={procs}",
            "-m",
            "trainer.train",
        ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(
        [*cmd, "--graph", graph_path, "--out", out, *keys], cwd=REPO, env=env, capture_output=True, text=True
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    with open(os.path.join(out, "metrics.jsonl")) as f:
        record = [json.loads(line) for line in f][-1]
    return {
        "what": "train",
        "procs": procs,
        **{
            k: record[k]
            for k in (
                "edges_per_s",
                "data_fraction",
                "data_s_per_step",
                "compute_s_per_step",
                "setup_s",
                "peak_rss_mb",
                "steps",
            )
        },
    }


def median_of(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, float):
            out[k] = round(statistics.median(r[k] for r in runs), 5)
    out["repeats"] = len(runs)
    return out


# --propagation: the modes compared, with the steps each runs.
MODES = {
    "sampled_torch_sparse": ({"propagation": "sampled", "sampler": "torch_sparse", "batch_size": 256}, 40),
    "sampled_device": ({"propagation": "sampled", "sampler": "device", "batch_size": 256}, 40),
    "full": ({"propagation": "full", "batch_size": 4096}, 6),  # the default depth (6 layers)
    "full_3_layers": ({"propagation": "full", "batch_size": 4096, "layers": 3}, 6),  # the earlier depth
}


def compare_propagation(args) -> None:
    """Full-graph against sampled training on one graph, side by side: each mode a real, limited
    ``trainer.train`` run (one process, CPU), the modes alternating run by run; medians."""
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
            print(
                f"{s['mode']}: {s['edges_per_s']['median'] / base['edges_per_s']['median']:.2f}x "
                "sampled_torch_sparse's median edges/s"
            )
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(x) + "\n" for x in [*[r for rs in runs.values() for r in rs], *summary])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--graph", help="graph dir")
    src.add_argument("--synthetic", type=int, metavar="N", help="build an N-playlist graph with the test fixture")
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--workers", default="0,1", help="loader workers to try for the sampler")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    ap.add_argument(
        "--samplers", default="", help="sampler kinds to compare, e.g. torch_sparse,device (default: the config's)"
    )
    ap.add_argument("--skip-sampler", action="store_true")
    ap.add_argument("--out", help="append JSON lines here too")
    ap.add_argument(
        "--propagation",
        action="store_true",
        help="compare the training modes instead (--modes), one limited trainer.train run each",
    )
    ap.add_argument("--modes", default=",".join(MODES), help=f"with --propagation: of {list(MODES)}")
    args = ap.parse_args()
    if args.propagation:
        return compare_propagation(args)
    extra = dict(kv.split("=", 1) for kv in args.set)
    os.makedirs(args.workdir, exist_ok=True)
    graph = args.graph
    if args.synthetic:
        from etl.synth.graphdir import synthetic_graph_dir

        graph = os.path.join(args.workdir, f"synthetic{args.synthetic}")
        if not os.path.exists(os.path.join(graph, "manifest.json")):
            t0 = time.perf_counter()
            synthetic_graph_dir(graph, args.synthetic)
            print(
                json.dumps(
                    {"what": "build", "playlists": args.synthetic, "seconds": round(time.perf_counter() - t0, 1)}
                )
            )
    with open(os.path.join(graph, "manifest.json")) as f:
        counts = json.load(f)["counts"]
    results = [{"what": "graph", "path": graph, **counts}]
    print(json.dumps(results[0]), flush=True)
    if not args.skip_sampler:
        kinds = [k for k in args.samplers.split(",") if k]
        for w in map(int, args.workers.split(",")):
            if not kinds:
                results.append(
                    median_of([sampler_throughput(graph, args.steps, w, extra) for _ in range(args.repeats)])
                )
                print(json.dumps(results[-1]), flush=True)
                continue
            runs = {k: [] for k in kinds}
            for _ in range(args.repeats):
                for k in kinds:  # alternating
                    runs[k].append(sampler_throughput(graph, args.steps, w, {**extra, "sampler": k}))
                    print(json.dumps(runs[k][-1]), flush=True)
            medians = [median_of(runs[k]) for k in kinds]
            results.extend(medians)
            for m in medians:
                print(json.dumps(m), flush=True)
            ratio = {
                "what": "sampler_ratio",
                "num_workers": w,
                "over": kinds[0],
                **{k: round(m["batches_per_s"] / medians[0]["batches_per_s"], 2) for k, m in zip(kinds, medians)},
            }
            results.append(ratio)
            print(json.dumps(ratio), flush=True)
    for p in [int(p) for p in args.procs.split(",") if p]:
        results.append(median_of([train_run(graph, p, args.steps, extra, args.workdir) for _ in range(args.repeats)]))
        print(json.dumps(results[-1]), flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in results)


if __name__ == "__main__":
    main()
