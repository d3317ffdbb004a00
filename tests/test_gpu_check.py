"""bench/gpu_check.sh's chain phase runs to completion on the CPU at a small size (the GPU run of
the 1M chain is this same script with DEVICE=cuda), and stops at its deadline."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


def gpu_check(tmp_path, **knobs) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PY": sys.executable,
        "DEVICE": "cpu",
        "PLAYLISTS": "1500",
        "STEPS": "2",
        "EVAL_PLAYLISTS": "30",
        "OUT": str(tmp_path / "out"),
        "WORK": str(tmp_path / "work"),
        **knobs,
    }
    return subprocess.run(
        ["bash", "bench/gpu_check.sh", "chain"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )


def test_the_chain_phase_runs_on_the_cpu_and_reports(tmp_path):
    done = gpu_check(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {r["run"]: r for r in map(json.loads, (tmp_path / "out" / "gpu_check.jsonl").read_text().splitlines())}
    train, evaluate = rows["chain_train"], rows["chain_evaluate"]
    assert train["steps"] == 2 and train["edges_per_s"] > 0 and train["compute_s_per_step"] > 0
    assert evaluate["playlists"] == 30 and evaluate["methods"] == ["gnn", "popularity"]
    assert evaluate["playlists_per_s"] > 0 and evaluate["seconds"]["ranking"] > 0
    assert (tmp_path / "out" / "logs.tgz").exists()


def test_nothing_starts_past_the_deadline(tmp_path):
    done = gpu_check(tmp_path, DEADLINE="1")  # writing the graph dir alone takes longer
    assert done.returncode == 0, done.stdout[-3000:]
    assert "skipped chain_train: past DEADLINE" in done.stdout
    assert not (tmp_path / "out" / "gpu_check.jsonl").exists()


def test_the_regime_phase_trains_the_defaults_to_their_own_stop_and_reports_each_validation(tmp_path):
    done = subprocess.run(
        ["bash", "bench/gpu_check.sh", "regime"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env={
            **os.environ,
            "PY": sys.executable,
            "DEVICE": "cpu",
            "PLAYLISTS": "300",
            "OUT": str(tmp_path / "out"),
            "WORK": str(tmp_path / "work"),
        },
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "out" / "gpu_check.jsonl").read_text().splitlines()]
    assert rows and all(r["run"] == "regime" and r["regime"] == "standard" for r in rows)  # 300 playlists
    assert all(r["stopped_by"] == "itself" and 0 <= r["val_r_precision"] <= 1 for r in rows)
    assert [r["epoch"] for r in rows] == sorted(r["epoch"] for r in rows) and rows[-1]["elapsed_s"] > 0
