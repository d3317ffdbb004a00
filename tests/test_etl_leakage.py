"""No feature may see a hidden edge: deleting every hidden entry from the input changes nothing."""

import json

import pytest
from etl_oracle import read_graph
from etl_run import run_etl

from etl import contract

pytestmark = pytest.mark.slow

FEATURES = {
    "playlist": (
        "split",
        "seed_category",
        "num_tracks",
        "num_albums",
        "num_artists",
        "duration_ms",
        "deg_track",
        "hop2_walks",
        "hop2_reach",
    ),
    "track": ("duration_ms", "deg_playlist", "hop2_walks", "hop2_reach"),
    "album": ("deg_track", "hop2_walks", "hop2_reach"),
    "artist": ("deg_track", "hop2_walks", "hop2_reach"),
}


def test_removing_hidden_edges_changes_no_feature(spark, sample_graph, mpd_sample_dir, tmp_path):
    out, _ = sample_graph
    g = read_graph(out)
    pid = {r["playlist_id"]: r["pid"] for r in g["nodes/playlist"]}
    uri = {r["track_id"]: r["track_uri"] for r in g["nodes/track"]}
    hidden = {
        (pid[e["playlist_id"]], uri[e["track_id"]])
        for e in g["edges/playlist_track"]
        if e["role"] == contract.ROLE_HIDDEN
    }
    assert hidden, "the sample split should hide some edges"

    # num_tracks and every pos stay as published, so the split and the seeds cannot move.
    data = json.loads((mpd_sample_dir and open(f"{mpd_sample_dir}/mpd.slice.0-999.json").read()))
    for p in data["playlists"]:
        p["tracks"] = [t for t in p["tracks"] if (p["pid"], t["track_uri"]) not in hidden]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "mpd.slice.0-999.json").write_text(json.dumps(data))
    run_etl(spark, "--input", tmp_path / "in", "--output", tmp_path / "out", "--hop2", "exact")
    h = read_graph(tmp_path / "out")

    assert all(e["role"] != contract.ROLE_HIDDEN for e in h["edges/playlist_track"])
    for kind, columns in FEATURES.items():
        key = contract.KEY_COLUMN[kind]
        before = {r[key]: tuple(r[c] for c in columns) for r in g[f"nodes/{kind}"]}
        after = {r[key]: tuple(r[c] for c in columns) for r in h[f"nodes/{kind}"]}
        assert after, kind
        changed = {k: (before[k], v) for k, v in after.items() if before[k] != v}
        assert not changed, f"{kind} features depend on hidden edges: {list(changed.items())[:3]}"
