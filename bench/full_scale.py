"""The whole chain at one size, stage by stage, each timed and its memory sampled.

    python bench/full_scale.py --playlists 20000 --work /data/fs20k [--out bench/out/fs20k]
    python bench/full_scale.py --playlists 1000000 --work W --stages synth,etl
    python bench/full_scale.py --playlists 1000000 --work W --stages graph,train,embed,rerank,evaluate,submit,recommend

Stages (default: all but ``graph``): ``synth`` (the MPD's JSON slices and a challenge set),
``etl`` (``etl.job`` with its defaults), ``graph`` (the same playlists' graph dir straight from
the generator, no Spark: the chain's input when the ETL is measured on its own), ``train`` (the
defaults, to their own stop: ``regime=auto`` validates, selects and stops within the epoch at 1M;
a run cut short is resumed, not redone; ``--steps N`` caps it at N steps of one epoch, a smoke run),
``embed``, ``rerank`` (the second stage, as ``make demo`` builds it), ``evaluate`` (the test split,
every method the run has: gnn, popularity, item-kNN, ALS, rerank and fusion in one pass), ``submit``
(the challenge set) and ``recommend`` (one test playlist): the last two rank by rerank, their default
when the run has a ranker. Each runs as its own process; a sampler
adds up the resident memory of its process tree every half second. A finished stage leaves a
marker in WORK, so a rerun resumes after the last finished one. Logs go to OUT/logs/, one JSON
line per stage to OUT/stages.jsonl, and the summary table to OUT/summary.md and stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import psutil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ("synth", "etl", "graph", "train", "embed", "rerank", "evaluate", "submit", "recommend")
DEFAULT_STAGES = ("synth", "etl", "train", "embed", "rerank", "evaluate", "submit", "recommend")


class TreeMemory:
    """Peak of the summed RSS of a process and its descendants (a JVM, torchrun's ranks), and
    the largest single process seen."""

    def __init__(self, pid: int, every: float = 0.5):
        self.root, self.every = psutil.Process(pid), every
        self.peak_sum = self.peak_one = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                rss = []
                for p in procs:
                    try:
                        rss.append(p.memory_info().rss)
                    except psutil.Error:
                        pass
                self.peak_sum = max(self.peak_sum, sum(rss))
                self.peak_one = max(self.peak_one, max(rss, default=0))
            except psutil.Error:
                pass
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def size_of(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def test_pid(graph: str) -> int:
    import pyarrow.dataset as ds

    t = ds.dataset(os.path.join(graph, "nodes/playlist"), format="parquet").to_table(
        columns=["pid", "split", "num_tracks"], filter=(ds.field("split") == "test") & (ds.field("num_tracks") >= 10)
    )
    return min(t.column("pid").to_pylist())


def train_start(run: str, a: argparse.Namespace, new_graph: bool) -> list[str]:
    """The train stage's flags: a run cut short (its last checkpoint there, the graph not rebuilt
    since) is resumed, anything else started afresh; ``--steps`` caps it at that many steps of one epoch."""
    cap = ["--epochs=1", f"--max_steps_per_epoch={a.steps}"] if a.steps else []
    cut = not (a.redo or new_graph) and os.path.exists(os.path.join(run, "checkpoints", "last.pt"))
    return (["--resume"] if cut else ["--overwrite"]) + cap


def commands(a: argparse.Namespace, new_graph: bool) -> dict[str, tuple[list[str], str]]:
    """Each stage's command and the output whose size the summary reports; ``new_graph``: a stage
    of this invocation wrote the graph dir."""
    py = sys.executable
    mpd, graph, run = (os.path.join(a.work, d) for d in ("mpd", "graph", "run"))
    challenge = os.path.join(mpd if "synth" in a.stages else graph, "challenge_set.json")
    return {
        "synth": (
            [
                py,
                "-m",
                "etl.synth",
                "--playlists",
                str(a.playlists),
                "--out",
                mpd,
                "--overwrite",
                "--workers",
                str(a.workers),
                "--challenge-set",
                str(a.challenge),
            ],
            mpd,
        ),
        "etl": ([py, "-m", "etl.job", "--input", mpd, "--output", graph, "--overwrite"], graph),
        "graph": (
            [
                py,
                "-m",
                "etl.synth",
                "--playlists",
                str(a.playlists),
                "--graph-dir",
                "--out",
                graph,
                "--overwrite",
                "--challenge-set",
                str(a.challenge),
            ],
            graph,
        ),
        "train": (
            [py, "-m", "trainer.train", "--graph", graph, "--out", run, *train_start(run, a, new_graph), *a.train_args],
            os.path.join(run, "checkpoints"),
        ),
        "embed": ([py, "-m", "trainer.embed", "--graph", graph, "--run", run], os.path.join(run, "embeddings")),
        "rerank": (
            [py, "-m", "trainer.rerank", "--graph", graph, "--run", run, "--max-playlists", str(a.rerank_playlists)],
            os.path.join(run, "reranker"),
        ),
        "evaluate": (
            [
                py,
                "-m",
                "trainer.evaluate",
                "--graph",
                graph,
                "--run",
                run,
                "--split",
                "test",
                *(["--methods", a.methods] if a.methods else []),
                "--max-playlists",
                str(a.eval_playlists),
            ],
            os.path.join(run, "eval_test.json"),
        ),
        "submit": (
            [
                py,
                "-m",
                "trainer.submit",
                "--graph",
                graph,
                "--run",
                run,
                "--challenge",
                challenge,
                "--out",
                os.path.join(a.work, "submission.csv.gz"),
                "--team",
                "full-scale",
                "--email",
                "bench@example.com",
            ],
            os.path.join(a.work, "submission.csv.gz"),
        ),
        "recommend": ([py, "-m", "trainer.recommend", "--graph", graph, "--run", run, "--pid", "{pid}"], graph),
    }


def run_stage(name: str, cmd: list[str], output: str, a: argparse.Namespace) -> dict:
    log_path = os.path.join(a.out, "logs", f"{name}.log")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if name == "recommend":
        cmd = [c.replace("{pid}", str(test_pid(os.path.join(a.work, "graph")))) for c in cmd]
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        memory = TreeMemory(proc.pid)
        rc = proc.wait()
        memory.stop()
    seconds = time.perf_counter() - t0
    result = {
        "stage": name,
        "rc": rc,
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(memory.peak_sum / 2**30, 2),
        "largest_process_gb": round(memory.peak_one / 2**30, 2),
        "output_gb": round(size_of(output) / 2**30, 3) if os.path.exists(output) else None,
        "playlists": a.playlists,
        "log": log_path,
    }
    with open(os.path.join(a.out, "stages.jsonl"), "a") as f:
        f.write(json.dumps(result) + "\n")
    print(
        f"[{time.strftime('%H:%M:%S')}] {name}: rc {rc}, {seconds / 60:.1f} min, peak RSS "
        f"{result['peak_rss_gb']} GB (largest process {result['largest_process_gb']} GB)",
        flush=True,
    )
    if rc != 0:
        with open(log_path) as f:
            tail = f.readlines()[-15:]
        print("".join(tail), file=sys.stderr)
    return result


def summary(out: str) -> str:
    rows = {}
    path = os.path.join(out, "stages.jsonl")
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            rows[r["stage"]] = r  # the latest run of each stage
    lines = [
        "| stage | rc | minutes | peak RSS, process tree (GB) | largest process (GB) | output (GB) |",
        "|---|---|---|---|---|---|",
    ]
    for s in STAGES:
        if s in rows:
            r = rows[s]
            lines.append(
                f"| {s} | {r['rc']} | {r['seconds'] / 60:.1f} | {r['peak_rss_gb']} | "
                f"{r['largest_process_gb']} | {r['output_gb']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--playlists", type=int, required=True)
    ap.add_argument("--work", required=True, help="data, graph dir, run dir (and the stages' markers)")
    ap.add_argument("--out", help="logs and summary (default WORK/report)")
    ap.add_argument("--stages", default=",".join(DEFAULT_STAGES), help=f"comma-separated, of {','.join(STAGES)}")
    ap.add_argument(
        "--steps",
        type=int,
        default=0,
        help="cap training at this many steps of one epoch, a smoke run (0: the defaults, to their own stop)",
    )
    ap.add_argument("--challenge", type=int, default=10_000, help="challenge-set playlists")
    ap.add_argument("--methods", default="", help="evaluate's --methods (default: its own, every method the run has)")
    ap.add_argument(
        "--rerank-playlists",
        type=int,
        default=0,
        help="val playlists the ranker learns from, evenly spaced over its half (0: all of them)",
    )
    ap.add_argument(
        "--eval-playlists",
        type=int,
        default=0,
        help="test playlists evaluated, evenly spaced (0: all); a subset is for extrapolating",
    )
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="synth processes")
    ap.add_argument(
        "--train-arg",
        dest="train_args",
        action="append",
        default=[],
        help="extra trainer.train argument, e.g. --train-arg=--val_rank_playlists=1000",
    )
    ap.add_argument("--redo", action="store_true", help="run every stage again, finished or not")
    a = ap.parse_args(argv)
    a.stages = [s for s in a.stages.split(",") if s]
    unknown = set(a.stages) - set(STAGES)
    if unknown:
        ap.error(f"unknown stages {sorted(unknown)}; known: {', '.join(STAGES)}")
    if {"etl", "graph"} <= set(a.stages):
        ap.error("etl and graph both write the graph dir: pick one")
    a.out = a.out or os.path.join(a.work, "report")
    os.makedirs(os.path.join(a.out, "logs"), exist_ok=True)
    ran: set[str] = set()
    for name in a.stages:
        marker = os.path.join(a.work, f".done-{name}")
        if os.path.exists(marker) and not a.redo:
            print(f"{name}: finished earlier ({marker}); skipped", flush=True)
            continue
        if os.path.exists(marker):
            os.remove(marker)
        cmd, output = commands(a, new_graph=bool(ran & {"synth", "etl", "graph"}))[name]
        if run_stage(name, cmd, output, a)["rc"] != 0:
            print(summary(a.out))
            return 1
        ran.add(name)
        open(marker, "w").close()
    table = summary(a.out)
    with open(os.path.join(a.out, "summary.md"), "w") as f:
        f.write(f"{a.playlists:,} playlists\n\n{table}")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
