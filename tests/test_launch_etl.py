"""launch/etl.sh against a master whose executors are processes of their own (local-cluster).

``local-cluster[1,1,1024]`` runs a standalone master and worker inside the driver's JVM and the
executor as a separate JVM in the worker's work dir, as a real cluster does: a relative
PYSPARK_PYTHON fails there (``Cannot run program ".venv/bin/python": error=2``), as it did on a
standalone master on 127.0.0.1.
"""

import json
import os
import shutil
import subprocess

import pytest
from etl_oracle import read_table
from etl_run import run_etl
from graphdir_fixture import REPO_ROOT
from test_etl_bad_input import _playlist, _write

from etl import contract

pytestmark = pytest.mark.slow


def spark_home(tmp_path) -> str:
    """A SPARK_HOME made of pyspark's bin and jars: the worker writes its work dir under it,
    which would otherwise be inside the installed package."""
    import pyspark

    installed = os.path.dirname(pyspark.__file__)
    home = tmp_path / "spark_home"
    home.mkdir()
    for name in ("bin", "jars", "python", "sbin"):
        if os.path.exists(os.path.join(installed, name)):
            os.symlink(os.path.join(installed, name), home / name)
    return str(home)


@pytest.mark.skipif(
    not os.access(os.path.join(REPO_ROOT, ".venv", "bin", "python"), os.X_OK),
    reason="launch/etl.sh's default python is .venv/bin/python; no .venv here",
)
@pytest.mark.skipif(shutil.which("java") is None and not os.environ.get("JAVA_HOME"), reason="no Java")
def test_etl_sh_runs_on_a_cluster_master_and_removes_its_temp_dir(spark, tmp_path):
    _write(tmp_path / "in", "mpd.slice.0-9.json", [_playlist(p) for p in range(4)])
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYSPARK_PYTHON", "PY", "SPARK_SUBMIT")}
    env.update(
        SPARK_HOME=spark_home(tmp_path),
        TMPDIR=str(tmp_path / "tmp"),
        SPARK_MASTER="local-cluster[1,1,1024]",
        DRIVER_MEMORY="1g",
        EXECUTOR_MEMORY="1g",
        EXECUTOR_CORES="1",
        INPUT=str(tmp_path / "in"),
        OUTPUT=str(tmp_path / "cluster"),
        # what the session fixture does for tiny inputs: less compiling, no web UI
        SPARK_CONF="--conf spark.sql.codegen.wholeStage=false --conf spark.ui.enabled=false",
    )
    proc = subprocess.run(
        ["bash", os.path.join(REPO_ROOT, "launch", "etl.sh"), "--hop2", "off"],
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert "Cannot run program" not in proc.stderr
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert os.listdir(tmp_path / "tmp") == [], "etl.zip's temporary dir left behind"
    manifest = json.loads((tmp_path / "cluster" / contract.MANIFEST).read_text())
    assert manifest["spark"]["master"] == "local-cluster[1,1,1024]"

    run_etl(spark, "--input", tmp_path / "in", "--output", tmp_path / "local", "--hop2", "off")
    for table in contract.TABLES:
        key = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
        assert sorted(read_table(tmp_path / "cluster", table), key=key) == sorted(
            read_table(tmp_path / "local", table), key=key
        ), table
