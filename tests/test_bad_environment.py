"""A broken environment fails early with a message that says how to fix it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from etl import contract
from etl.job import main as etl_job_main
from etl.synth.command import main as synth_main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_missing_sampler_backend_is_named(monkeypatch):
    import torch_geometric.typing as pyg_typing

    from trainer import train
    from trainer.gnn.sampled import SamplerMissing

    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", False)
    monkeypatch.setattr(pyg_typing, "WITH_PYG_LIB", False)
    sampled = ["--graph", "/nonexistent", "--out", "/nonexistent-run", "--propagation=sampled"]
    with pytest.raises(SamplerMissing, match="needs torch-sparse.*make install.*--sampler=device"):
        train.train_from_args([*sampled, "--sampler=torch_sparse"])
    # the device sampler needs neither: the run gets as far as the (missing) graph
    with pytest.raises(contract.ContractError, match="/nonexistent is not a graph dir"):
        train.train_from_args([*sampled, "--sampler=device"])


def _without_java_env(tmp_path):
    # An empty PATH and no JAVA_HOME: the job must stop before pyspark tries to start a JVM.
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(tmp_path / "empty-bin")
    return env


def test_etl_without_java_says_what_to_install(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "etl.job", "--input", str(tmp_path), "--output", str(tmp_path / "g")],
        cwd=REPO,
        env=_without_java_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Java" in done.stderr and "openjdk-17" in done.stderr
    assert not (tmp_path / "g").exists()


def test_etl_checks_java_home_and_spark_home_as_spark_uses_them(tmp_path):
    """java on PATH does not help when JAVA_HOME names a folder without it: Spark runs JAVA_HOME's."""
    (tmp_path / "jdk").mkdir()
    cmd = [sys.executable, "-m", "etl.job", "--input", str(tmp_path), "--output", str(tmp_path / "g")]
    done = subprocess.run(
        cmd,
        cwd=REPO,
        env={**os.environ, "JAVA_HOME": str(tmp_path / "jdk")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert f"JAVA_HOME={tmp_path}/jdk has no bin/java" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run(
        cmd,
        cwd=REPO,
        env={**os.environ, "SPARK_HOME": str(tmp_path / "spark")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert f"SPARK_HOME={tmp_path}/spark has no bin/spark-submit" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "g").exists()


@pytest.mark.parametrize(
    "said, where",
    [
        ('openjdk version "11.0.22" 2024-01-16', "PATH"),
        ('java version "1.8.0_392"', "JAVA_HOME"),
    ],
)
def test_etl_names_a_java_older_than_spark_needs(tmp_path, said, where):
    # A java that reports an old version (as `java -version` does, on stderr), first on PATH or
    # as JAVA_HOME's: named with its version before Spark tries to start a JVM with it.
    jdk = tmp_path / "jdk" / "bin"
    jdk.mkdir(parents=True)
    (jdk / "java").write_text(f"#!/bin/sh\necho '{said}' >&2\n")
    (jdk / "java").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    if where == "PATH":
        env["PATH"] = f"{jdk}:{env['PATH']}"
    else:
        env["JAVA_HOME"] = str(jdk.parent)
    done = subprocess.run(
        [sys.executable, "-m", "etl.job", "--input", str(tmp_path), "--output", str(tmp_path / "g")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    version = 11 if where == "PATH" else 8
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"is Java {version}; Spark 4 needs Java 17 or newer" in done.stderr
    assert not (tmp_path / "g").exists()


def test_demo_with_missing_mpd_dir(tmp_path):
    done = subprocess.run(
        ["bash", "launch/demo.sh"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "MPD_DIR": str(tmp_path / "nope"), "PY": sys.executable, "DEMO_DIR": str(tmp_path / "demo")},
        timeout=60,
    )
    assert done.returncode == 2
    assert f"MPD_DIR={tmp_path / 'nope'} is not a directory" in done.stderr


@pytest.mark.parametrize(
    "command, flags, named",
    [
        ("trainer.evaluate", ["--batch-size", "0"], "--batch-size: must be >= 1, got 0"),
        ("trainer.evaluate", ["--max-playlists", "-3"], "--max-playlists: must be >= 0, got -3"),
        ("trainer.evaluate", ["--itemknn-beta", "nan"], "--itemknn-beta: must be >= 0, got nan"),
        ("trainer.embed", ["--batch-size", "-1"], "--batch-size: must be >= 1, got -1"),
        ("trainer.recommend", ["-k", "0", "--pid", "1"], "-k: must be >= 1, got 0"),
        ("trainer.rerank", ["--folds", "1"], "--folds: must be >= 2, got 1"),
        (
            "trainer.submit",
            ["--fold-in-steps", "-2", "--challenge", "c", "--out", "o", "--team", "t", "--email", "e"],
            "--fold-in-steps: must be >= 0, got -2",
        ),
    ],
)
def test_a_numeric_flag_out_of_range_is_one_line_before_any_work(command, flags, named, capsys):
    import importlib

    main = importlib.import_module(command).main
    with pytest.raises(SystemExit) as stopped:
        main(["--graph", "/nonexistent", "--run", "/nonexistent-run", *flags])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"error: argument {named}") and "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    "command, flags, named",
    [
        ("etl.job", ["--num-val", "-1"], "--num-val: must be >= 0, got -1"),
        ("etl.job", ["--shuffle-partitions", "0"], "--shuffle-partitions: must be >= 1, got 0"),
        ("etl.job", ["--driver-memory", "6 GB"], "--driver-memory: expected a size such as 512m or 6g, got '6 GB'"),
        ("etl.synth", ["--challenge-set", "-2"], "--challenge-set: must be >= 0, got -2"),
        ("etl.synth", ["--workers", "two"], "--workers: expected an integer, got 'two'"),
    ],
)
def test_an_etl_flag_out_of_range_is_refused_as_the_trainers_are(command, flags, named, tmp_path, capsys):
    main = {"etl.job": etl_job_main, "etl.synth": synth_main}[command]
    base = (
        ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "g")]
        if command == "etl.job"
        else ["--playlists", "10", "--out", str(tmp_path / "g")]
    )
    with pytest.raises(SystemExit) as stopped:
        main([*base, *flags])
    assert stopped.value.code == 2 and not (tmp_path / "g").exists()
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"error: argument {named}")


@pytest.mark.parametrize("command", ["trainer.train", "trainer.evaluate"])
def test_an_object_store_path_without_its_extra_names_the_extra(command, capsys, monkeypatch):
    import importlib

    # s3fs is a dev dependency (tests/test_object_store.py): made unimportable here, and fsspec's
    # loaded implementation forgotten, as on a machine without the s3 extra.
    monkeypatch.setitem(sys.modules, "s3fs", None)
    for scheme in ("s3", "s3a"):
        monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, scheme, raising=False)
    main = importlib.import_module(command).main
    where = ["--out", "s3://bucket/run"] if command == "trainer.train" else ["--run", "s3://bucket/run"]
    assert main(["--graph", "/nonexistent", *where]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.fullmatch(
        r"error: s3://bucket/run(/eval_val\.json)?: s3:// paths need s3fs, which is "
        r"not installed: pip install 'mpd-graph\[s3\]' \(or pip install s3fs\)",
        err[0],
    )
