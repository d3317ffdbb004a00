"""Graph dir -> tensors: contract checks, features indexed by id, edges by role."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from graphdir_fixture import MPD_SAMPLE, toy_graph_dir

from etl import contract
from trainer.io.graph import PLAYLIST_TRACK, load_graph


@pytest.fixture(scope="module")
def gdir(tmp_path_factory):
    return toy_graph_dir(str(tmp_path_factory.mktemp("g") / "graph"), 120, seed=3)


def _table(root, name):
    return pq.read_table(f"{root}/{name}").to_pandas()


def test_features_follow_ids_not_file_order(gdir):
    g = load_graph(gdir)
    stats = json.load(open(f"{gdir}/manifest.json"))["feature_stats"]
    tracks = _table(gdir, "nodes/track")
    assert list(tracks.track_id) != sorted(tracks.track_id)  # the fixture shuffles rows
    col = contract.FEATURE_COLUMNS["track"].index("deg_playlist")
    s = stats["track"]["deg_playlist"]
    for row in tracks.sample(20, random_state=0).itertuples():
        expected = (np.log1p(row.deg_playlist) - s["mean"]) / s["std"]
        assert g.x["track"][row.track_id, col].item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # hop2 columns are null in this graph dir: 0 after standardising
    assert torch.all(g.x["track"][:, contract.FEATURE_COLUMNS["track"].index("hop2_walks")] == 0)


def test_edges_by_role(gdir):
    g = load_graph(gdir)
    e = _table(gdir, "edges/playlist_track")
    p = _table(gdir, "nodes/playlist").set_index("playlist_id")
    pairs = lambda t: sorted(map(tuple, t.t().tolist()))  # noqa: E731
    expect = lambda m: sorted(zip(e.playlist_id[m], e.track_id[m]))  # noqa: E731
    assert pairs(g.train_edges) == expect(e.role == "train")
    assert pairs(g.seed_edges) == expect(e.role == "seed")
    val = (e.role == "hidden") & (p.split.reindex(e.playlist_id).values == "val")
    assert pairs(g.val_edges) == expect(val) and len(g.val_edges[0]) > 0
    data = g.hetero_data()
    assert data[PLAYLIST_TRACK].edge_index.size(1) == int((e.role != "hidden").sum())
    assert data["track", "rev_contains", "playlist"].edge_index.size(1) == int((e.role != "hidden").sum())
    # held narrow, handed to PyG as int64 with the same pairs
    assert g.train_edges.dtype == torch.int32
    assert all(ei.dtype == torch.int64 for ei in data.edge_index_dict.values())
    assert pairs(data[PLAYLIST_TRACK].edge_index) == pairs(g.visible_edges)


def test_file_url(gdir):
    g = load_graph("file://" + gdir)
    assert g.num_nodes["playlist"] == 120


def test_wrong_schema_version_is_named(gdir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(gdir, bad)
    m = json.load(open(bad / "manifest.json"))
    m["schema_version"] = 999
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(contract.ContractError, match=r"schema_version is 999, this code reads 1"):
        load_graph(str(bad))


def test_wrong_dtype_is_named(gdir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(gdir, bad)
    for f in (bad / "edges/playlist_track").glob("*.parquet"):
        t = pq.read_table(f)
        t = t.set_column(t.schema.get_field_index("track_id"), "track_id", t.column("track_id").cast(pa.int32()))
        pq.write_table(t, f)
    with pytest.raises(
        contract.ContractError, match=r"edges/playlist_track: column track_id is int32, contract says int64"
    ):
        load_graph(str(bad))


def test_missing_manifest_and_sparse_ids(gdir, tmp_path):
    with pytest.raises(contract.ContractError, match=r"manifest.json not found: .* is not a graph dir"):
        load_graph(str(tmp_path))
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(gdir, bad)
    for f in (bad / "nodes/album").glob("*.parquet"):
        t = pq.read_table(f)
        t = t.set_column(0, "album_id", pa.compute.add(t.column("album_id"), 1000))
        pq.write_table(t, f)
    with pytest.raises(contract.ContractError, match=r"nodes/album: album_id is not dense"):
        load_graph(str(bad))


@pytest.mark.skipif(not __import__("os").path.exists(MPD_SAMPLE), reason="../shared/data (real MPD sample) absent")
def test_real_sample_loads(tmp_path):
    from graphdir_fixture import sample_graph_dir

    g = load_graph(sample_graph_dir(str(tmp_path / "s")))
    assert g.num_nodes["playlist"] == 37
    assert g.train_edges.size(1) + g.seed_edges.size(1) + (g.val_edges.size(1)) <= 2023
