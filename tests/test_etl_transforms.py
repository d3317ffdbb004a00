"""Each ETL transformation on a few inline rows (with a duplicate and a null)."""

import pytest

from etl import contract
from etl.dedup import dedup_entries, entities, split_bad_uris, split_duplicate_pids, split_missing_pid
from etl.ids import uri_bucket, with_dense_ids
from etl.splits import Holdout, choose_holdout, default_holdout, with_roles
from etl.validate import findings, findings_dict

pytestmark = pytest.mark.slow


def test_dense_ids_follow_key_order_whatever_the_partitioning(spark):
    uris = ["spotify:track:b9", "spotify:track:a1", "spotify:track:zz", "spotify:track:a0", "spotify:track:b1"]
    for n in (1, 3):
        df = spark.createDataFrame([(u,) for u in uris], "track_uri string").repartition(n)
        # A one-character bucket puts several keys in a bucket and leaves buckets empty.
        got = with_dense_ids(df, "track_uri", "track_id", uri_bucket("track_uri", "spotify:track:", 1))
        assert dict(got.select("track_uri", "track_id").collect()) == {u: i for i, u in enumerate(sorted(uris))}


def test_playlist_dedup_keeps_first_record_and_drops_missing_pid(spark):
    rows = [("f2", 0, 7, "late"), ("f1", 3, 7, "first"), ("f1", 1, None, "no pid"), ("f1", 0, 8, "only")]
    df = spark.createDataFrame(rows, "input_file string, playlist_index long, pid long, name string")
    from pyspark.sql import functions as F

    kept, no_pid = split_missing_pid(df, F.lit(3))
    kept, dup = split_duplicate_pids(kept, F.lit(3))
    assert sorted(kept.select("pid", "name").collect()) == [(7, "first"), (8, "only")]
    assert [tuple(r) for r in no_pid.collect()] == [("missing_pid", "f1#1", 1, 3)]
    assert [tuple(r) for r in dup.collect()] == [("duplicate_pid", "7", 1, 3)]


def test_entries_dedup_keeps_first_pos_and_uri_drops_name_the_first_bad_uri(spark):
    ta, tb, tc = (f"spotify:track:{c * 22}" for c in "abc")
    al, ar = "spotify:album:" + "A" * 22, "spotify:artist:" + "0" * 22
    rows = [
        (1, 0, ta, al, ar),
        (1, 5, ta, al, ar),
        (1, 2, tb, al, ar),
        (2, 0, None, None, ar),
        (2, 1, tc, None, ar),
        (2, 4, ta, al, ar),
        (3, 0, "", al, ar),
        (3, 1, "not a uri", None, ar),
        (3, 2, "https://open.spotify.com/track/abc", al, ar),
        (3, 3, tb, "spotify:album:" + "A" * 21, ar),
        (3, 4, tc, al, "spotify:track:" + "0" * 22),
    ]
    df = spark.createDataFrame(rows, "pid long, pos long, track_uri string, album_uri string, artist_uri string")
    ok, bad = split_bad_uris(df)
    assert sorted((r.reason, r.example) for r in bad.collect()) == [
        ("malformed_album_uri", f'3#3 "spotify:album:{"A" * 21}"'),
        ("malformed_artist_uri", f'3#4 "spotify:track:{"0" * 22}"'),
        ("malformed_track_uri", '3#0 ""'),
        ("malformed_track_uri", '3#1 "not a uri"'),
        ("malformed_track_uri", '3#2 "https://open.spotify.com/track/abc"'),
        ("missing_album_uri", "2#1"),
        ("missing_track_uri", "2#0"),
    ]
    assert bad.where("playlists != 0 or entries != 1").count() == 0
    unique, dup = dedup_entries(ok)
    assert sorted(tuple(r) for r in unique.collect()) == [(1, ta, 0), (1, tb, 2), (2, ta, 4)]
    assert [tuple(r) for r in dup.collect()] == [("duplicate_entry", f"1#{ta}", 0, 1)]


def test_entities_pick_smallest_value_and_flag_conflicts(spark):
    rows = [("u1", "B"), ("u1", "A"), ("u2", "C"), ("u2", "C"), ("u3", None)]
    df = spark.createDataFrame(rows, "album_uri string, album_name string")
    got = {r.album_uri: (r.album_name, r.conflict) for r in entities(df, "album_uri", ["album_name"]).collect()}
    assert got == {"u1": ("A", "album_name"), "u2": ("C", None), "u3": (None, None)}


def test_validation_rules_as_column_expressions(spark):
    good = {
        "pid": 1,
        "name": "x",
        "collaborative": "false",
        "modified_at": 1493424000,
        "num_tracks": 5,
        "num_albums": 2,
        "num_artists": 3,
        "num_followers": 1,
        "num_edits": 1,
        "duration_ms": 50,
        "description": None,
    }
    tracks = [
        {
            "pos": i,
            "artist_name": "a",
            "track_uri": f"spotify:track:{i:022d}",
            "artist_uri": f"spotify:artist:{i % 3:022d}",
            "track_name": "t",
            "album_uri": f"spotify:album:{i % 2:022d}",
            "duration_ms": 10,
            "album_name": "b",
        }
        for i in range(5)
    ]
    bad = dict(good, pid=2, num_tracks=6, collaborative="yes", modified_at=1493424001)
    badpos = dict(good, pid=3)
    from etl.schema import PLAYLIST

    rows = [
        dict(good, tracks=tracks),
        dict(bad, tracks=tracks),
        dict(badpos, tracks=[dict(t, pos=t["pos"] + 1) for t in tracks]),
    ]
    df = spark.createDataFrame(rows, PLAYLIST)
    f = findings_dict(df.transform(findings).first())
    assert f["num_tracks"] == {"count": 1, "examples": [2]}
    assert f["collaborative"] == {"count": 1, "examples": [2]}
    assert f["modified_at_midnight"] == {"count": 1, "examples": [2]}
    assert f["pos"] == {"count": 1, "examples": [3]}
    assert all(
        v["count"] == 0 for k, v in f.items() if k not in ("num_tracks", "collaborative", "modified_at_midnight", "pos")
    ), f


def test_holdout_fills_strict_categories_first_with_equal_shares():
    cats = [contract.SEED_CATEGORY_BY_NAME[n] for n in ("title_only", "first_100", "random_25")]
    # Draw order: pid 0 first. Only pids 0, 5 have >= 150 tracks; 0, 2, 5, 7 have >= 40.
    candidates = {10: list(range(10)), 150: [0, 5], 40: [0, 2, 5, 7]}
    got = choose_holdout(candidates, cats, num_val=3, num_test=3)
    assert got == [
        Holdout(0, "val", "first_100"),
        Holdout(5, "test", "first_100"),
        Holdout(2, "val", "random_25"),
        Holdout(7, "test", "random_25"),
        Holdout(1, "val", "title_only"),
        Holdout(3, "test", "title_only"),
    ]
    # Not enough eligible playlists for first_100: the others make up the difference.
    short = choose_holdout({10: list(range(10)), 150: [], 40: [2, 5, 7]}, cats, 3, 3)
    assert sum(h.split == "val" for h in short) == 3 and sum(h.split == "test" for h in short) == 3
    assert not any(h.seed_category == "first_100" for h in short)
    assert default_holdout(37, 8) == 8 and default_holdout(1_000_000, 8) == 10_000


def test_roles_first_k_by_pos_random_k_by_hash(spark):
    pls = spark.createDataFrame(
        [(1, "train", None), (2, "val", "first_1"), (3, "test", "random_25")],
        "pid long, split string, seed_category string",
    )
    entries = [(1, p) for p in range(3)] + [(2, p) for p in (4, 2, 9)] + [(3, p) for p in range(30)]
    df = spark.createDataFrame(entries, "pid long, pos long")
    got = {(r.pid, r.pos): r.role for r in with_roles(df, pls, seed=5).collect()}
    assert {got[(1, p)] for p in range(3)} == {"train"}
    assert [got[(2, p)] for p in (2, 4, 9)] == ["seed", "hidden", "hidden"]
    seeds = sorted(p for p in range(30) if got[(3, p)] == "seed")
    assert len(seeds) == 25 and seeds != list(range(25))  # hashed choice, not the first 25
    again = {(r.pid, r.pos): r.role for r in with_roles(df.repartition(3), pls, seed=5).collect()}
    assert again == got
