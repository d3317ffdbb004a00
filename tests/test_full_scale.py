"""bench/full_scale.py at a small size: every stage of the chain runs, the summary names each,
and a rerun resumes (finished stages are skipped)."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ["graph", "train", "embed", "rerank", "evaluate", "submit", "recommend"]

pytestmark = pytest.mark.slow


def _run(work, *extra):
    return subprocess.run(
        [
            sys.executable,
            "bench/full_scale.py",
            "--playlists",
            "600",
            "--work",
            str(work),
            "--stages",
            ",".join(STAGES),
            "--challenge",
            "40",
            "--steps",
            "2",
            "--rerank-playlists",
            "7",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_the_chain_runs_stage_by_stage_and_resumes(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "report" / "stages.jsonl")]
    assert [r["stage"] for r in rows] == STAGES and all(r["rc"] == 0 for r in rows)
    assert all(r["peak_rss_gb"] > 0 for r in rows)
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert all(f"| {s} | 0 |" in summary for s in STAGES)
    report = json.load(open(tmp_path / "run" / "eval_test.json"))
    assert set(report["methods"]) == {"gnn", "popularity", "itemknn", "als", "rerank", "fusion"}
    ranker = json.load(open(tmp_path / "run" / "reranker" / "identity.json"))
    assert ranker["trained_on"]["val_half"] == "ranker" and ranker["trained_on"]["playlists"] <= 7
    assert os.path.getsize(tmp_path / "submission.csv.gz") > 0
    again = _run(tmp_path)
    assert again.returncode == 0
    assert all(f"{s}: finished earlier" in again.stdout for s in STAGES)
    assert len(open(tmp_path / "report" / "stages.jsonl").readlines()) == len(STAGES)


def test_a_cut_training_stage_is_resumed_not_redone(tmp_path):
    first = _run(tmp_path, "--stages", "graph,train")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "--overwrite" in next(line for line in first.stdout.splitlines() if "] train: " in line)
    os.remove(tmp_path / ".done-train")  # as if the stage had been killed after its last checkpoint
    again = _run(tmp_path, "--stages", "graph,train")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "graph: finished earlier" in again.stdout
    command = next(line for line in again.stdout.splitlines() if "] train: " in line)
    assert "--resume" in command and "--overwrite" not in command
