"""Two processes on CPU over gloo (torchrun): equal batch counts, identical parameters."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from graphdir_fixture import REPO_ROOT, toy_graph_dir

from trainer.io import checkpoint

DRIVER = textwrap.dedent("""
    import json, os, sys
    import torch
    from trainer.train import train_from_args
    result = train_from_args(sys.argv[1:])
    rank = int(os.environ["RANK"])
    out = sys.argv[sys.argv.index("--out") + 1]
    torch.save(result.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump({"global_step": result.global_step, "record": result.record}, f)
""")


@pytest.mark.slow
@pytest.mark.parametrize("propagation", ["full", "sampled"])
def test_two_gloo_processes_stay_in_lockstep(tmp_path, propagation):
    gdir = toy_graph_dir(str(tmp_path / "graph"), 150, seed=6)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run = tmp_path / "run"
    run.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO_ROOT}
    # batch_size 64 over ~1,300 supervision edges: ~10 batches per rank, capped at 2 steps
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(driver),
        "--graph",
        gdir,
        "--out",
        str(run),
        "--epochs=1",
        "--max_steps_per_epoch=2",
        "--hidden=16",
        "--id_dim=8",
        "--fanout=5,5,3",
        "--batch_size=64",
        "--device=cpu",
        "--val_max_edges=200",
        "--val_rank_playlists=10",
        f"--propagation={propagation}",
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["global_step"] == ranks[1]["global_step"] == 2
    assert ranks[0]["record"] == {
        **ranks[1]["record"],
        "seconds": ranks[0]["record"]["seconds"],
        "edges_per_s": ranks[0]["record"]["edges_per_s"],
        "setup_s": ranks[0]["record"]["setup_s"],
        "rank_val_s": ranks[0]["record"]["rank_val_s"],
    }  # reduced metrics agree
    assert ranks[0]["record"]["propagation"] == propagation
    assert ranks[0]["record"]["world_size"] == 2
    p0, p1 = (torch.load(run / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for k in p0:
        assert torch.equal(p0[k], p1[k]), f"{k} differs across ranks"
    saved = checkpoint.load(checkpoint.checkpoint_path(str(run)))  # rank 0 alone wrote it
    assert saved["global_step"] == 2 and all(torch.equal(saved["model"][k], p0[k]) for k in p0)
    # only rank 0 wrote outputs
    tensorboard = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []
    assert sorted(os.listdir(run)) == sorted(
        [
            "checkpoints",
            "config.json",
            "curves.png",
            "graph.json",
            "metrics.jsonl",
            "rank0.json",
            "rank0.pt",
            "rank1.json",
            "rank1.pt",
            *tensorboard,
        ]
    )
    if tensorboard:  # the epoch's scalars, from rank 0 alone
        assert len(os.listdir(run / "tensorboard")) == 1
    assert sorted(os.listdir(run / "checkpoints")) == [
        "best.pt",
        "best.pt.sha256.json",
        "last.pt",
        "last.pt.sha256.json",
    ]  # rank 0 alone writes


KILLER = textwrap.dedent("""
    import os, signal, sys
    import trainer.gnn.full_graph as full_graph
    from trainer.train import main
    if os.environ["TORCHELASTIC_RESTART_COUNT"] == "0" and os.environ["RANK"] == "1":
        real, calls = full_graph.batch_loss, []
        def dying(*a, **k):  # rank 1 is killed at epoch 1's first step, the first time round
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*a, **k)
        full_graph.batch_loss = dying
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_a_killed_rank_is_restarted_by_torchrun_and_the_run_resumes_to_the_end(tmp_path):
    gdir = toy_graph_dir(str(tmp_path / "graph"), 150, seed=6)
    driver = tmp_path / "driver.py"
    driver.write_text(KILLER)
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": REPO_ROOT}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "--max-restarts",
        "1",
        str(driver),
        "--graph",
        gdir,
        "--out",
        str(run),
        "--epochs=2",
        "--max_steps_per_epoch=2",
        "--patience=0",
        "--hidden=16",
        "--id_dim=8",
        "--batch_size=64",
        "--device=cpu",
        "--val_max_edges=200",
        "--val_rank_playlists=10",
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torchrun restart 1: resuming from the run's last checkpoint" in proc.stderr
    epochs = [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]
    assert checkpoint.load(checkpoint.checkpoint_path(str(run)))["epoch"] == 2
    assert not (run / ".lock").exists()  # the killed attempt's lock was taken over, then released
