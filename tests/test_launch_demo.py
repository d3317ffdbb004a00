"""launch/demo.sh keys the work it reuses on the input itself, and says what it removes. The
product's commands are replaced by a stub that records its calls: this is about the script."""

import json
import os
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUB = """#!/usr/bin/env bash
echo "$*" >> "$CALLS"
case "$*" in
  "-m etl.job "*) out=${@: -1}; mkdir -p "$out"; echo '{}' > "$out/manifest.json" ;;
  "-m trainer.train "*) out=$(echo "$*" | sed 's/.*--out \\([^ ]*\\).*/\\1/'); mkdir -p "$out" ;;
  "- "*) cat > /dev/null; echo 0 ;;
esac
"""


def _input(root, name: str, content: str):
    folder = root / name / "data"
    folder.mkdir(parents=True)
    (folder / "mpd.slice.0-999.json").write_text(json.dumps({"content": content}))
    return folder


def _demo(tmp_path, mpd_dir, calls):
    env = {
        **os.environ,
        "MPD_DIR": str(mpd_dir),
        "PY": str(tmp_path / "py"),
        "DEMO_DIR": str(tmp_path / "demo"),
        "CALLS": str(calls),
    }
    done = subprocess.run(["bash", "launch/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_inputs_named_data_get_two_graphs_and_a_removed_run_is_said(tmp_path):
    (tmp_path / "py").write_text(STUB)
    (tmp_path / "py").chmod(0o755)
    a, b = _input(tmp_path, "a", "one"), _input(tmp_path, "b", "another input")
    calls = tmp_path / "calls"

    first = _demo(tmp_path, a, calls)
    second = _demo(tmp_path, b, calls)
    etl = [line.split(" --output ")[1] for line in calls.read_text().splitlines() if line.startswith("-m etl.job")]
    assert len(etl) == 2 and etl[0] != etl[1]  # b's graph is built, not a's reused
    assert "removing the previous demo run" not in first + second  # each input's first run
    # The second-stage ranker is built from the trained run before the evaluation that ranks it.
    steps = [line.split()[1] for line in calls.read_text().splitlines() if line.startswith("-m ")]
    assert steps[:6] == [
        "etl.job",
        "trainer.train",
        "trainer.embed",
        "trainer.rerank",
        "trainer.evaluate",
        "trainer.recommend",
    ], steps

    again = _demo(tmp_path, a, calls)
    assert "== 2/7 ETL: reusing" in again  # the same input reuses its graph
    assert f"removing the previous demo run {etl[0].rsplit('/', 1)[0]}/run" in again
