"""End to end on the real MPD sample, against an independent pure-Python/networkx oracle."""

import math

import pyarrow.parquet as pq
import pytest
from etl_oracle import dedup, expected_seeds, hop2, load_playlists, read_graph, visible_graph
from etl_run import run_etl

from etl import contract

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def graph(sample_graph):
    out, manifest = sample_graph
    return out, manifest, read_graph(out)


@pytest.fixture(scope="module")
def oracle(mpd_sample_dir):
    return dedup(load_playlists(mpd_sample_dir))


def test_tables_match_contract_dtypes_and_manifest_keys(graph):
    out, manifest, _ = graph
    for table in contract.TABLES:
        schema = pq.read_schema(next((out / table).glob("*.parquet")))
        contract.check_columns(table, {f.name: str(f.type) for f in schema})
    contract.load_manifest((out / contract.MANIFEST).read_text())
    assert not list(out.parent.glob("sample_graph.tmp-*")), "temporary output left behind"


def test_counts_dedup_and_accounting(graph, oracle, mpd_sample_dir):
    _, manifest, g = graph
    records, entries, tracks = oracle
    raw_entries = sum(len(p["tracks"]) for p in load_playlists(mpd_sample_dir))
    assert manifest["counts"]["input_playlists"] == 37 == len(g["nodes/playlist"]) == len(records)
    assert manifest["counts"]["input_entries"] == raw_entries == 2023
    assert len(g["edges/playlist_track"]) == len(entries) == raw_entries - 32
    assert manifest["dropped"]["duplicate_entry"]["count"] == 32
    assert len(g["nodes/track"]) == len(tracks)
    assert len(g["nodes/album"]) == len({t["album_uri"] for t in tracks.values()})
    assert len(g["nodes/artist"]) == len({t["artist_uri"] for t in tracks.values()})
    assert {t: manifest["counts"][t] for t in contract.TABLES} == {t: len(r) for t, r in g.items()}
    # The real sample passes every checker rule.
    assert all(v["count"] == 0 for v in manifest["validation"].values()), manifest["validation"]


def test_ids_are_a_dense_bijection_in_key_order(graph, oracle):
    _, _, g = graph
    records, _, tracks = oracle
    for kind, keys in (
        ("playlist", records),
        ("track", tracks),
        ("album", {t["album_uri"] for t in tracks.values()}),
        ("artist", {t["artist_uri"] for t in tracks.values()}),
    ):
        rows = g[f"nodes/{kind}"]
        ids = {r[contract.KEY_COLUMN[kind]]: r[contract.ID_COLUMN[kind]] for r in rows}
        assert ids == {k: i for i, k in enumerate(sorted(keys))}, kind
    album_id = {r["album_uri"]: r["album_id"] for r in g["nodes/album"]}
    artist_id = {r["artist_uri"]: r["artist_id"] for r in g["nodes/artist"]}
    for r in g["nodes/track"]:
        t = tracks[r["track_uri"]]
        assert (r["track_name"], r["duration_ms"], r["album_id"], r["artist_id"]) == (
            t["track_name"],
            t["duration_ms"],
            album_id[t["album_uri"]],
            artist_id[t["artist_uri"]],
        )
    assert sorted((r["track_id"], r["album_id"]) for r in g["edges/track_album"]) == sorted(
        (r["track_id"], r["album_id"]) for r in g["nodes/track"]
    )


def _edges_by_key(g):
    pid = {r["playlist_id"]: r["pid"] for r in g["nodes/playlist"]}
    uri = {r["track_id"]: r["track_uri"] for r in g["nodes/track"]}
    return {(pid[e["playlist_id"]], uri[e["track_id"]]): e for e in g["edges/playlist_track"]}


def test_edges_keep_first_pos_and_roles_follow_the_split(graph, oracle):
    _, manifest, g = graph
    records, entries, _ = oracle
    edges = _edges_by_key(g)
    assert {k: e["pos"] for k, e in edges.items()} == entries
    playlists = {r["pid"]: r for r in g["nodes/playlist"]}
    held = [p for p in playlists.values() if p["split"] != contract.SPLIT_TRAIN]
    assert sum(p["split"] == "val" for p in held) == manifest["split"]["num_val"] == 8
    assert sum(p["split"] == "test" for p in held) == manifest["split"]["num_test"] == 8
    for pid, p in playlists.items():
        mine = sorted((e["pos"], u) for (q, u), e in edges.items() if q == pid)
        roles = [edges[(pid, u)]["role"] for _, u in mine]
        if p["split"] == contract.SPLIT_TRAIN:
            assert p["seed_category"] is None and set(roles) == {contract.ROLE_TRAIN}
            continue
        cat = contract.SEED_CATEGORY_BY_NAME[p["seed_category"]]
        assert p["num_tracks"] >= cat.min_tracks, (pid, cat)
        k = expected_seeds(cat.name, mine)
        assert roles.count(contract.ROLE_SEED) == k and roles.count(contract.ROLE_HIDDEN) == len(mine) - k
        if not cat.random:
            assert roles == [contract.ROLE_SEED] * k + [contract.ROLE_HIDDEN] * (len(mine) - k)


def test_features_equal_networkx_on_the_visible_graph(graph, oracle):
    _, _, g = graph
    records, entries, tracks = oracle
    edges = _edges_by_key(g)
    visible = {k for k, e in edges.items() if e["role"] in contract.VISIBLE_ROLES}
    nxg = visible_graph(visible, tracks)
    for kind, deg_col in (
        ("playlist", "deg_track"),
        ("track", "deg_playlist"),
        ("album", "deg_track"),
        ("artist", "deg_track"),
    ):
        for r in g[f"nodes/{kind}"]:
            v = (kind, r[contract.KEY_COLUMN[kind]])
            if kind == "playlist":
                nxg.add_node(v)
            walks, reach = hop2(nxg, v)
            other = {"playlist": "track", "track": "playlist", "album": "track", "artist": "track"}[kind]
            deg = sum(1 for u in nxg[v] if u[0] == other)
            assert (r[deg_col], r["hop2_walks"], r["hop2_reach"]) == (deg, walks, reach), (v, r)


def test_held_out_playlist_attributes_come_from_visible_tracks(graph, oracle):
    _, _, g = graph
    records, _, tracks = oracle
    edges = _edges_by_key(g)
    for r in g["nodes/playlist"]:
        published = records[r["pid"]]
        assert r["num_tracks"] == published["num_tracks"]
        if r["split"] == contract.SPLIT_TRAIN:
            want = (published["num_albums"], published["num_artists"], published["duration_ms"])
        else:
            seen = [tracks[u] for (q, u), e in edges.items() if q == r["pid"] and e["role"] == contract.ROLE_SEED]
            want = (
                len({t["album_uri"] for t in seen}),
                len({t["artist_uri"] for t in seen}),
                sum(t["duration_ms"] for t in seen),
            )
        assert (r["num_albums"], r["num_artists"], r["duration_ms"]) == want, r["pid"]
        assert r["collaborative"] == (published["collaborative"] == "true")


def test_feature_stats_are_log1p_mean_and_std(graph):
    _, manifest, g = graph
    for kind, columns in contract.FEATURE_COLUMNS.items():
        for c in columns:
            xs = [math.log1p(float(r[c])) for r in g[f"nodes/{kind}"]]
            mean = sum(xs) / len(xs)
            std = math.sqrt(sum((x - mean) ** 2 for x in xs) / len(xs))
            got = manifest["feature_stats"][kind][c]
            assert got["mean"] == pytest.approx(mean) and got["std"] == pytest.approx(std, abs=1e-9)


def test_same_input_gives_identical_tables_whatever_the_partitioning(spark, graph, mpd_sample_dir, tmp_path):
    out, manifest, g = graph
    again = run_etl(
        spark, "--input", mpd_sample_dir, "--output", tmp_path / "again", "--hop2", "exact", "--shuffle-partitions", "5"
    )
    assert again["spark"]["conf"]["spark.sql.shuffle.partitions"] == "5"
    h = read_graph(tmp_path / "again")

    def rows(tables, table):
        return sorted(repr(tuple(r.values())) for r in tables[table])

    for table in contract.TABLES:
        assert rows(h, table) == rows(g, table), table
    assert again["split"] == manifest["split"] and again["feature_stats"] == manifest["feature_stats"]
