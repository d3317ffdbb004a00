"""Shared fixtures: one local Spark session for every Spark test in the run."""

import os

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")
MPD_SAMPLE_DIR = os.path.join(SHARED_DATA, "mpd_sample")


@pytest.fixture(scope="session")
def spark():
    """A ``local[2]`` SparkSession with few shuffle partitions, shared by the whole session.

    Tiny test inputs spend most of their time compiling code and scheduling tasks, hence two
    shuffle partitions and no whole-stage code generation.
    """
    pyspark = pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("mpd-graph-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    assert pyspark  # imported for its side effect of a clear skip when missing
    yield session
    session.stop()


@pytest.fixture(scope="session")
def mpd_sample_dir():
    """The real 37-playlist MPD sample; tests that need it skip when ../shared/data is absent."""
    if not os.path.isdir(MPD_SAMPLE_DIR):
        pytest.skip(f"real MPD sample not found at {MPD_SAMPLE_DIR} (../shared/data is absent)")
    return MPD_SAMPLE_DIR


@pytest.fixture(scope="session")
def sample_graph(spark, mpd_sample_dir, tmp_path_factory):
    """The ETL's graph dir for the real sample (exact 2-hop features), built once per session."""
    from etl_run import run_etl

    out = tmp_path_factory.mktemp("etl") / "sample_graph"
    manifest = run_etl(spark, "--input", mpd_sample_dir, "--output", out, "--hop2", "exact")
    return out, manifest


def pytest_collection_modifyitems(config, items):
    """Tests marked ``pyg_sparse`` need torch-sparse (the ``pyg-sparse`` extra, which `make
    install` takes from prebuilt wheels when they are at hand): skipped, with the reason, without it."""
    import torch_geometric.typing as pyg_typing

    if pyg_typing.WITH_TORCH_SPARSE:
        return
    skip = pytest.mark.skip(
        reason="torch-sparse is not installed (pip install -e '.[pyg-sparse]', or `make install-pyg-sparse`)"
    )
    for item in items:
        if "pyg_sparse" in item.keywords:
            item.add_marker(skip)
