"""The driver-memory check of the hll 2-hop sketches' broadcast: its size model bounds the exact
sketch bytes of a generated graph dir, and a driver too small for it is refused, by name, before
any Spark stage runs."""

import os
from collections import defaultdict

import pyarrow.parquet as pq
import pytest
from etl_run import run_etl

from etl import broadcast, contract, storage
from etl.synth.graphdir import synthetic_graph_dir

MPD_JSON_BYTES = int(33.5 * 2**30)  # the whole MPD's slices


def _table(graph: str, name: str) -> list[dict]:
    return pq.read_table(os.path.join(graph, name)).to_pylist()


def test_the_broadcast_model_bounds_the_exact_sketch_bytes(tmp_path):
    graph = synthetic_graph_dir(str(tmp_path / "g"), 3000)
    # The graph the features see, in plain Python: visible edges, and the tracks they reach with
    # their albums and artists.
    playlists_of, tracks_of = defaultdict(set), defaultdict(set)
    for e in _table(graph, "edges/playlist_track"):
        if e["role"] in contract.VISIBLE_ROLES:
            playlists_of[e["track_id"]].add(e["playlist_id"])
            tracks_of["p", e["playlist_id"]].add(e["track_id"])
    for kind in ("album", "artist"):
        for e in _table(graph, f"edges/track_{kind}"):
            if e["track_id"] in playlists_of:
                tracks_of[kind, e[f"{kind}_id"]].add(e["track_id"])

    def sketches(sets) -> int:  # one row of 24 bytes and a sketch of min(8 + 4n, 2,088) per node
        return sum(24 + min(8 + 4 * len(s), 2088) for s in sets)

    exact = max(sketches(playlists_of.values()), sketches(tracks_of.values()))
    counts = {
        "entries": sum(len(s) for s in playlists_of.values()),
        "playlists": sum(k[0] == "p" for k in tracks_of),
        "tracks": len(playlists_of),
        "albums": sum(k[0] == "album" for k in tracks_of),
        "artists": sum(k[0] == "artist" for k in tracks_of),
    }
    model = broadcast.hll_broadcast_bytes(**counts)
    assert exact <= model <= 1.1 * exact  # a bound, close where few sketches reach their cap
    # From the input's size alone (its visible entries' JSON): within a factor of two, never short.
    estimate = broadcast.estimated_broadcast_bytes(counts["entries"] * broadcast.JSON_BYTES_PER_ENTRY)
    assert exact <= estimate <= 2 * exact


def test_a_driver_too_small_for_the_full_mpd_is_refused_by_name():
    with pytest.raises(broadcast.DriverMemoryError) as e:
        broadcast.check_driver_memory(MPD_JSON_BYTES, "4g")
    assert "raise --driver-memory (now 4g; spark.driver.memory under spark-submit), or pass --hop2 off" in str(e.value)
    broadcast.check_driver_memory(MPD_JSON_BYTES, "6g")  # the default, which held the 1M job's broadcast
    broadcast.check_driver_memory(MPD_JSON_BYTES, "6144")  # spark.driver.memory without a unit: MiB
    broadcast.check_driver_memory(300 * 2**20, "1g")  # 10k playlists' worth


def test_the_job_refuses_it_before_parsing(spark, tmp_path, monkeypatch, mpd_sample_dir):
    """The test session's 2g driver, told its input is the whole MPD: the job stops after listing
    the input, with no output and no staging dir left."""
    monkeypatch.setattr(storage, "json_bytes", lambda files: MPD_JSON_BYTES)
    monkeypatch.setattr(storage, "check_free_disk", lambda spark, output, size: None)
    with pytest.raises(broadcast.DriverMemoryError, match=r"now 2g"):
        run_etl(spark, "--input", mpd_sample_dir, "--output", tmp_path / "g")
    assert os.listdir(tmp_path) == []
    # Two shuffle partitions: the input's pretended size would otherwise ask for hundreds.
    m = run_etl(
        spark, "--input", mpd_sample_dir, "--output", tmp_path / "g", "--hop2", "off", "--shuffle-partitions", "2"
    )
    assert m["counts"]["nodes/playlist"] == 37  # with --hop2 off there is no broadcast to check
