"""A run dir given as an fsspec URL (``file://``) serves every command: train, embed, evaluate
(gnn included), recommend and submit read and write it through fsspec, and nothing lands in a
local folder named after the URL's scheme."""

import gzip
import json
import os

from graphdir_fixture import toy_graph_dir

from etl import contract
from trainer import embed, evaluate, recommend, submit, train
from trainer.io.catalogue import load_catalogue

SMALL = [
    "--hidden=16",
    "--id_dim=8",
    "--batch_size=64",
    "--device=cpu",
    "--val_rank_playlists=20",
    "--epochs=1",
    "--max_steps_per_epoch=2",
]


def test_every_command_reads_and_writes_a_run_dir_given_as_a_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URL taken for a local path would land here, in ./file:
    graph = toy_graph_dir(str(tmp_path / "graph"), 150, seed=5)
    local = tmp_path / "run"
    run = "file://" + str(local)

    train.train_from_args(["--graph", "file://" + graph, "--out", run, *SMALL])
    assert (local / "checkpoints" / "last.pt").is_file() and (local / "metrics.jsonl").is_file()
    assert embed.main(["--graph", graph, "--run", run]) == 0
    assert (local / "embeddings" / "track.parquet").is_file()

    assert evaluate.main(["--graph", graph, "--run", run, "--split", "val", "--methods", "gnn,popularity"]) == 0
    report = json.loads((local / "eval_val.json").read_text())
    assert set(report["methods"]) == {"gnn", "popularity"} and report["methods_left_out"] == {}
    # Without --methods, gnn is found through the URL too (it used to be left out).
    assert evaluate.main(["--graph", graph, "--run", run, "--split", "test"]) == 0
    report = json.loads((local / "eval_test.json").read_text())
    assert "gnn" in report["methods"] and report["methods_left_out"] == {}

    cat = load_catalogue(graph)
    pid = int(cat.playlist_pid[cat.playlist_split == contract.SPLIT_TRAIN][0])
    rows = recommend.recommend(graph, run, pid=pid, k=5, method="gnn")
    assert len(rows) == 5

    challenge = tmp_path / "challenge.json"
    seeds = [{"track_uri": u} for u in cat.track_uri[:3]]
    challenge.write_text(
        json.dumps({"playlists": [{"pid": 1, "name": "a", "tracks": seeds}, {"pid": 2, "name": "b", "tracks": []}]})
    )
    out = "file://" + str(tmp_path / "sub" / "submission.csv.gz")
    assert (
        submit.main(
            [
                "--graph",
                graph,
                "--run",
                run,
                "--challenge",
                "file://" + str(challenge),
                "--out",
                out,
                "--team",
                "t",
                "--email",
                "e@x",
                "--method",
                "gnn",
            ]
        )
        == 0
    )
    with gzip.open(tmp_path / "sub" / "submission.csv.gz", "rt") as f:
        lines = f.read().splitlines()
    assert lines[0] == "team_info,t,e@x" and [line.split(", ")[0] for line in lines[1:]] == ["1", "2"]
    assert all(len(line.split(", ")) == 501 for line in lines[1:])
    assert not os.path.exists(tmp_path / "file:")
