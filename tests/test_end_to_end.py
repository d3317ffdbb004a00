"""The product end to end, started the way users start it.

synthetic MPD -> ``launch/etl.sh`` (spark-submit, local mode) -> ``launch/train.sh`` (torchrun,
two CPU processes over gloo) -> ``launch/evaluate.sh`` (embeddings, then evaluation on two
torchrun processes) -> ``trainer.recommend``.
Each stage's outputs are checked against the previous stage's, not just for existence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow.dataset as ds
import pytest

from etl import contract

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = ("r_precision", "r_precision_track", "ndcg", "clicks", "recall@10", "recall@50", "recall@100", "recall@500")

pytestmark = pytest.mark.slow


def _run(cmd, env=None, timeout=600):
    full_env = {**os.environ, "PY": sys.executable, **(env or {})}
    done = subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{cmd} exited {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    )
    return done


def _table(graph, name):
    return ds.dataset(os.path.join(graph, name), format="parquet").to_table()


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    mpd, graph, run = root / "mpd", root / "graph", root / "run"
    _run([sys.executable, "-m", "etl.synth", "--playlists", "300", "--out", str(mpd), "--quiet"])
    _run(
        ["launch/etl.sh", "--shuffle-partitions", "4"],
        env={"INPUT": str(mpd), "OUTPUT": str(graph), "SPARK_MASTER": "local[2]", "DRIVER_MEMORY": "1g"},
    )
    train = _run(
        ["launch/train.sh", "--epochs=1", "--max_steps_per_epoch=4", "--batch_size=64", "--val_max_edges=500"],
        env={
            "GRAPH": str(graph),
            "RUN": str(run),
            "NPROC_PER_NODE": "2",
            "LOG_DIR": str(root / "logs"),
            "OMP_NUM_THREADS": "1",
        },
    )
    # Export, then evaluation with playlists sharded over two torchrun processes.
    _run(
        ["launch/evaluate.sh"],
        env={
            "GRAPH": str(graph),
            "RUN": str(run),
            "SPLIT": "val",
            "NPROC_PER_NODE": "2",
            "LOG_DIR": str(root / "logs"),
            "OMP_NUM_THREADS": "1",
        },
    )
    return {"mpd": mpd, "graph": str(graph), "run": str(run), "train_stdout": train.stdout}


def test_manifest_counts_match_parquet(pipeline):
    manifest = contract.load_manifest(open(os.path.join(pipeline["graph"], contract.MANIFEST)).read())
    for table, columns in contract.TABLES.items():
        t = _table(pipeline["graph"], table)
        assert manifest["counts"][table] == t.num_rows, table
        contract.check_columns(table, {f.name: str(f.type) for f in t.schema})
    synth_entries = sum(
        len(p["tracks"])
        for f in sorted(pipeline["mpd"].glob("mpd.slice.*.json"))
        for p in json.load(open(f))["playlists"]
    )
    edges = _table(pipeline["graph"], "edges/playlist_track").num_rows
    dropped = sum(v["count"] for v in manifest["dropped"].values())
    assert edges + dropped == synth_entries


def test_two_rank_training_logged_once(pipeline):
    lines = [json.loads(line) for line in open(os.path.join(pipeline["run"], "metrics.jsonl"))]
    assert [r["epoch"] for r in lines] == [0]  # epochs count from 0
    assert lines[0]["world_size"] == 2
    assert os.path.exists(os.path.join(pipeline["run"], "curves.png"))


def test_embeddings_cover_every_node(pipeline):
    for kind, key in (("track", "track_uri"), ("playlist", "pid")):
        emb = ds.dataset(os.path.join(pipeline["run"], "embeddings", f"{kind}.parquet")).to_table()
        nodes = _table(pipeline["graph"], f"nodes/{kind}")
        assert sorted(emb.column(key).to_pylist()) == sorted(nodes.column(key).to_pylist())


def test_eval_report_has_every_method_and_metric(pipeline):
    report = json.load(open(os.path.join(pipeline["run"], "eval_val.json")))
    playlists = _table(pipeline["graph"], "nodes/playlist").to_pandas()
    assert report["num_playlists"] == int((playlists["split"] == contract.SPLIT_VAL).sum()) > 0
    # The ranked catalogue: tracks with a visible edge (a track known only from hidden edges
    # would give the answer away).
    edges = _table(pipeline["graph"], "edges/playlist_track").to_pandas()
    visible_tracks = edges.loc[edges["role"].isin(contract.VISIBLE_ROLES), "track_id"].nunique()
    assert report["num_tracks_ranked"] == visible_tracks
    assert set(report["methods"]) == {"gnn", "popularity", "itemknn", "als"}
    for method, result in report["methods"].items():
        assert set(METRICS) <= set(result["overall"]), method
        assert 0.0 <= result["overall"]["ndcg"] <= 1.0
        assert 0.0 <= result["overall"]["clicks"] <= 51.0


def test_recommendation_excludes_seeds(pipeline):
    playlists = _table(pipeline["graph"], "nodes/playlist").to_pandas()
    edges = _table(pipeline["graph"], "edges/playlist_track").to_pandas()
    tracks = _table(pipeline["graph"], "nodes/track").to_pandas()
    held = playlists[(playlists["split"] == contract.SPLIT_VAL) & (playlists["seed_category"] == "first_5")]
    pid, playlist_id = int(held["pid"].iloc[0]), int(held["playlist_id"].iloc[0])
    seeds = edges[(edges["playlist_id"] == playlist_id) & (edges["role"] == contract.ROLE_SEED)]
    seed_uris = set(tracks.set_index("track_id").loc[seeds["track_id"], "track_uri"])
    assert len(seed_uris) == 5
    out = _run(
        [
            sys.executable,
            "-m",
            "trainer.recommend",
            "--graph",
            pipeline["graph"],
            "--run",
            pipeline["run"],
            "--pid",
            str(pid),
            "-k",
            "20",
        ]
    ).stdout
    recommended = [u for u in tracks["track_uri"] if u in out]
    assert len(recommended) == 20
    assert not seed_uris & set(recommended)


def test_generator_graph_dir_agrees_with_the_etl(pipeline, tmp_path):
    """``etl.synth --graph-dir`` (no Spark) writes what the ETL makes of the same playlists' JSON:
    the same nodes with the same attributes, the same entries after de-duplication, the same
    published lengths and hold-out sizes. Only which playlists are held out differs (the ETL
    draws by xxhash64, the generator by numpy), so split-dependent columns are not compared."""
    direct = tmp_path / "direct"
    _run([sys.executable, "-m", "etl.synth", "--playlists", "300", "--graph-dir", "--out", str(direct), "--quiet"])
    etl, ours = pipeline["graph"], str(direct)
    for kind, cols in (
        ("track", ["track_uri", "track_name", "duration_ms"]),
        ("album", ["album_uri", "album_name"]),
        ("artist", ["artist_uri", "artist_name"]),
        ("playlist", ["pid", "name", "num_followers", "collaborative", "num_edits", "modified_at", "num_tracks"]),
    ):
        a = _table(etl, f"nodes/{kind}").select([f"{kind}_id", *cols]).sort_by(f"{kind}_id")
        b = _table(ours, f"nodes/{kind}").select([f"{kind}_id", *cols]).sort_by(f"{kind}_id")
        assert a.to_pydict() == b.to_pydict(), kind  # values; the ETL's schema also says "not null"
    for name in ("edges/track_album", "edges/track_artist"):
        key = "track_id"
        assert _table(etl, name).sort_by(key).to_pydict() == _table(ours, name).sort_by(key).to_pydict(), name
    cols = ["playlist_id", "track_id", "pos"]
    sort = [(c, "ascending") for c in cols]
    assert (
        _table(etl, "edges/playlist_track").select(cols).sort_by(sort).to_pydict()
        == _table(ours, "edges/playlist_track").select(cols).sort_by(sort).to_pydict()
    )
    m_etl = json.load(open(os.path.join(etl, contract.MANIFEST)))
    m_ours = json.load(open(os.path.join(ours, contract.MANIFEST)))
    assert (m_ours["split"]["num_val"], m_ours["split"]["num_test"]) == (
        m_etl["split"]["num_val"],
        m_etl["split"]["num_test"],
    )
    assert m_ours["dropped"]["duplicate_entry"]["count"] == m_etl["dropped"]["duplicate_entry"]["count"] > 0
    roles = (
        _table(ours, "edges/playlist_track")
        .to_pandas()
        .merge(_table(ours, "nodes/playlist").to_pandas()[["playlist_id", "split", "seed_category"]], on="playlist_id")
    )
    held = roles[roles["split"] != contract.SPLIT_TRAIN]
    seeds = held[held["role"] == contract.ROLE_SEED].groupby("playlist_id").size()
    want = (
        held.groupby("playlist_id")["seed_category"].first().map(lambda c: contract.SEED_CATEGORY_BY_NAME[c].num_seeds)
    )
    assert seeds.reindex(want.index, fill_value=0).equals(want)
    assert set(roles.loc[roles["split"] == contract.SPLIT_TRAIN, "role"]) == {contract.ROLE_TRAIN}
