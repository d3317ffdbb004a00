"""A broken environment fails early with a message that says how to fix it."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from etl import contract

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_missing_sampler_backend_is_named(monkeypatch):
    import torch_geometric.typing as pyg_typing

    from trainer import train
    from trainer.gnn.sampled import SamplerMissing

    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", False)
    monkeypatch.setattr(pyg_typing, "WITH_PYG_LIB", False)
    sampled = ["--graph", "/nonexistent", "--out", "/nonexistent-run", "--propagation=sampled"]
    with pytest.raises(SamplerMissing, match="needs torch-sparse.*make install.*--sampler=device"):
        train.main([*sampled, "--sampler=torch_sparse"])
    # the device sampler needs neither: the run gets as far as the (missing) graph
    with pytest.raises(contract.ContractError, match="/nonexistent is not a graph dir"):
        train.main([*sampled, "--sampler=device"])


def _without_java_env(tmp_path):
    # An empty PATH and no JAVA_HOME: the job must stop before pyspark tries to start a JVM.
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path / "empty-bin")
    return env


def test_etl_without_java_says_what_to_install(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "etl.job", "--input", str(tmp_path), "--output", str(tmp_path / "g")],
        cwd=REPO, env=_without_java_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "Java" in done.stderr and "openjdk-17" in done.stderr
    assert not (tmp_path / "g").exists()


def test_etl_checks_java_home_and_spark_home_as_spark_uses_them(tmp_path):
    """java on PATH does not help when JAVA_HOME names a folder without it: Spark runs JAVA_HOME's."""
    (tmp_path / "jdk").mkdir()
    cmd = [sys.executable, "-m", "etl.job", "--input", str(tmp_path), "--output", str(tmp_path / "g")]
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "JAVA_HOME": str(tmp_path / "jdk")},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"JAVA_HOME={tmp_path}/jdk has no bin/java" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run(cmd, cwd=REPO, env={**os.environ, "SPARK_HOME": str(tmp_path / "spark")},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert f"SPARK_HOME={tmp_path}/spark has no bin/spark-submit" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "g").exists()


def test_demo_with_missing_mpd_dir(tmp_path):
    done = subprocess.run(["bash", "launch/demo.sh"], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "MPD_DIR": str(tmp_path / "nope"), "PY": sys.executable,
                               "DEMO_DIR": str(tmp_path / "demo")}, timeout=60)
    assert done.returncode == 2
    assert f"MPD_DIR={tmp_path / 'nope'} is not a directory" in done.stderr
