"""trainer.recommend and trainer.submit end to end on the real MPD sample's graph."""

from __future__ import annotations

import gzip
import json
import os
from collections import Counter

import numpy as np
import pytest
from graphdir_fixture import MPD_SAMPLE, load_mpd_sample, sample_graph_dir
from test_evaluate import write_embeddings

from etl import contract
from trainer import recommend, submit
from trainer.io import embeddings
from trainer.io.catalogue import load_catalogue, normalise_title

pytestmark = pytest.mark.skipif(not os.path.exists(MPD_SAMPLE), reason=f"real MPD sample not found at {MPD_SAMPLE}")


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return sample_graph_dir(str(tmp_path_factory.mktemp("sample")), num_val=4, num_test=4)


@pytest.fixture(scope="module")
def run(graph, tmp_path_factory):
    cat = load_catalogue(graph)
    rng = np.random.default_rng(7)
    return write_embeddings(
        str(tmp_path_factory.mktemp("run")),
        graph,
        rng.standard_normal((cat.num_tracks, 16)),
        rng.standard_normal((cat.num_playlists, 16)),
    )


@pytest.fixture(scope="module")
def uri_names():
    return {t["track_uri"]: (t["track_name"], t["artist_name"]) for p in load_mpd_sample() for t in p["tracks"]}


@pytest.mark.parametrize("method", ["itemknn", "popularity", "gnn", "als"])
def test_recommend_for_a_pid_excludes_its_tracks(graph, run, uri_names, method):
    cat = load_catalogue(graph)
    pid = int(cat.playlist_pid[np.flatnonzero(cat.playlist_split == contract.SPLIT_TRAIN)[0]])
    playlist = next(p for p in load_mpd_sample() if p["pid"] == pid)
    rows = recommend.recommend(graph, run, pid=pid, k=25, method=method)
    assert [r["rank"] for r in rows] == list(range(1, 26))
    uris = [r["track_uri"] for r in rows]
    assert len(set(uris)) == 25
    assert not set(uris) & {t["track_uri"] for t in playlist["tracks"]}
    for r in rows:  # names and artists as the raw JSON has them
        assert (r["track_name"], r["artist_name"]) == uri_names[r["track_uri"]]


def test_a_gnn_query_with_seeds_builds_no_playlist_track_matrix(graph, run, monkeypatch):
    # At 1M playlists each such matrix takes seconds and gigabytes; the gnn needs none of them.
    from trainer.io.catalogue import Catalogue

    cat = load_catalogue(graph)
    pid = int(cat.playlist_pid[np.flatnonzero(cat.playlist_split == contract.SPLIT_TRAIN)[0]])
    built = []
    edges = Catalogue.edges
    monkeypatch.setattr(Catalogue, "edges", lambda self, *a, **kw: built.append(a) or edges(self, *a, **kw))
    assert len(recommend.recommend(graph, run, pid=pid, k=5, method="gnn")) == 5
    assert built == []
    recommend.recommend(graph, run, title=cat.playlist_title[0] or "rock", k=5, method="gnn")  # no seeds: the fallback
    assert built


def test_recommend_from_tracks_with_gnn_ranks_by_mean_seed_embedding(graph, run):
    cat = load_catalogue(graph)
    emb = embeddings.track_embeddings(run, cat)
    seeds = [cat.track_uri[i] for i in (3, 50, 400)]
    rows = recommend.recommend(graph, run, tracks=seeds, k=10, method="gnn")
    scores = emb @ emb[[3, 50, 400]].mean(axis=0)
    scores[[3, 50, 400]] = -np.inf
    want = [cat.track_uri[i] for i in np.argsort(-scores, kind="stable")[:10]]
    assert [r["track_uri"] for r in rows] == want


def test_recommend_from_a_title_alone(graph, run):
    cat = load_catalogue(graph)
    title = next(t for t, s in zip(cat.playlist_title, cat.playlist_split) if s == contract.SPLIT_TRAIN and t)
    rows = recommend.recommend(graph, run, title=title, k=5, method="gnn")
    train_ids = np.flatnonzero(
        [t == title and s == contract.SPLIT_TRAIN for t, s in zip(cat.playlist_title, cat.playlist_split)]
    )
    titled = set(cat.edges((contract.ROLE_TRAIN,))[train_ids].indices.tolist())
    assert len(titled) >= 5  # every sample playlist has at least 5 tracks
    assert len(rows) == 5 and {r["track_id"] for r in rows} <= titled


def test_recommend_from_an_artists_name_no_playlist_carries(graph, run):
    cat = load_catalogue(graph)
    names = {
        t["track_uri"]: [normalise_title(t[k]) for k in ("artist_name", "album_name", "track_name")]
        for p in load_mpd_sample()
        for t in p["tracks"]
    }
    visible = [u for u, n in zip(cat.track_uri, cat.edges(contract.VISIBLE_ROLES).getnnz(axis=0)) if n]
    artists = Counter(names[u][0] for u in visible)
    artist = next(a for a, n in artists.most_common() if a not in set(cat.playlist_title) and n >= 3)
    named = sum(any(set(artist.split()) <= set(n.split()) for n in names[u]) for u in visible)
    notes = []
    rows = recommend.recommend(graph, run, title=artist.upper(), k=3, method="itemknn", notes=notes)
    assert [normalise_title(r["artist_name"]) for r in rows] == [artist] * 3
    assert notes == [
        f"no playlist of the graph is titled {artist!r} and there are no seed tracks: first the "
        f"{named} track(s) whose artist, album or track name holds every word of it, then the most "
        "popular tracks"
    ]


def test_a_short_catalogue_and_an_unusable_title_are_said(graph, run, capsys):
    cat = load_catalogue(graph)
    assert (
        recommend.main(
            [
                "--graph",
                graph,
                "--run",
                run,
                "--pid",
                str(cat.playlist_pid[0]),
                "-k",
                "100000",
                "--method",
                "popularity",
            ]
        )
        == 0
    )
    out, err = capsys.readouterr()
    shown = len(out.strip().splitlines())
    seeds = cat.edges(contract.VISIBLE_ROLES)[0].nnz
    assert shown == cat.num_tracks - seeds
    assert (
        f"note: only {shown} tracks to recommend, not the 100000 asked for (-k): the graph holds "
        f"{cat.num_tracks} tracks, {seeds} of them seeds"
    ) in err
    notes = []
    rows = recommend.recommend(graph, run, title="!!! ...", k=3, method="itemknn", notes=notes)
    assert len(rows) == 3 and notes == [
        "the title '!!! ...' has no usable words (letters or digits) and there are no seed tracks:"
        " these are the most popular tracks overall"
    ]
    notes = []
    recommend.recommend(graph, run, title="Zzyzx Qwerty", k=3, method="itemknn", notes=notes)
    assert notes == [
        "no playlist of the graph is titled 'zzyzx qwerty', no artist, album or track name holds every"
        " word of it and there are no seed tracks: these are the most popular tracks overall"
    ]
    notes = []
    title = next(t for t, s in zip(cat.playlist_title, cat.playlist_split) if s == contract.SPLIT_TRAIN and t)
    recommend.recommend(graph, run, title=title, k=3, method="itemknn", notes=notes)
    assert notes == []


def test_unknown_pid_and_uri_are_named(graph, run, capsys):
    assert recommend.main(["--graph", graph, "--run", run, "--pid", "987654"]) == 2
    assert "pid 987654 is not in graph" in capsys.readouterr().err
    assert recommend.main(["--graph", graph, "--run", run, "--tracks", "spotify:track:nope,spotify:track:nada"]) == 2
    err = capsys.readouterr().err
    assert "2 track URI(s) not in graph" in err and "spotify:track:nope" in err
    assert recommend.main(["--graph", graph, "--run", run]) == 2
    assert "give one of --pid, --tracks or --title" in capsys.readouterr().err


def test_recommend_cli_prints_names(graph, run, capsys):
    cat = load_catalogue(graph)
    assert (
        recommend.main(
            ["--graph", graph, "--run", run, "--pid", str(cat.playlist_pid[0]), "-k", "3", "--method", "itemknn"]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all("spotify:track:" in line for line in lines)


# --- submission ----------------------------------------------------------------------------------
def build_challenge(path) -> tuple[str, list[dict]]:
    """A challenge_set.json: sample playlists cut to a few seeds, new pids, one unknown URI,
    one title-only playlist."""
    raw = load_mpd_sample()
    playlists = []
    for i, (p, n) in enumerate(zip(raw[:6], (0, 1, 5, 10, 25, 100))):
        tracks = [{k: t[k] for k in ("pos", "track_uri", "artist_name", "track_name")} for t in p["tracks"][:n]]
        if i == 2:
            tracks.append({"pos": n, "track_uri": "spotify:track:notinthegraph", "artist_name": "x", "track_name": "x"})
        playlists.append(
            {
                "pid": 1_000_000 + i,
                "name": p["name"],
                "num_holdouts": 5,
                "num_samples": len(tracks),
                "num_tracks": len(tracks) + 5,
                "tracks": tracks,
            }
        )
    with open(path, "w") as f:
        json.dump({"date": "2018-01-16", "version": "v1", "playlists": playlists}, f)
    return str(path), playlists


def read_submission(path):
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    return lines[0], [[x.strip() for x in line.split(",")] for line in lines[1:]]


@pytest.mark.parametrize("method", ["gnn", "itemknn"])
def test_submission_end_to_end(graph, run, tmp_path, method):
    challenge, playlists = build_challenge(tmp_path / "challenge_set.json")
    out = tmp_path / "sub" / "submission.csv.gz"
    summary = submit.submit(graph, run, challenge, str(out), "graph team", "a@b.org", method)
    assert summary["unknown_seed_uris"] == 1 and summary["title_fallback"] == 1
    head, rows = read_submission(out)
    assert head == "team_info,graph team,a@b.org"
    assert [int(r[0]) for r in rows] == [p["pid"] for p in playlists]
    known = set(load_catalogue(graph).track_uri)
    for row, p in zip(rows, playlists):
        uris = row[1:]
        assert len(uris) == 500 and len(set(uris)) == 500
        assert not set(uris) & {t["track_uri"] for t in p["tracks"]}
        assert set(uris) <= known
    # no temporary left behind; beside the CSV, what made it
    assert sorted(os.listdir(out.parent)) == ["submission.csv.gz", "submission.csv.gz.json"]
    made_by = json.loads((out.parent / "submission.csv.gz.json").read_text())
    assert made_by["method"] == method and made_by["playlists"] == len(playlists)
    assert (made_by["gnn_checkpoint"] is not None) == (method == "gnn")


def test_submit_cli_and_errors(graph, run, tmp_path, capsys):
    challenge, _ = build_challenge(tmp_path / "c.json")
    out = str(tmp_path / "s.csv.gz")
    assert (
        submit.main(
            [
                "--graph",
                graph,
                "--run",
                run,
                "--challenge",
                challenge,
                "--out",
                out,
                "--team",
                "t",
                "--email",
                "e@x",
                "--method",
                "popularity",
            ]
        )
        == 0
    )
    assert "6 playlists by popularity" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text(json.dumps({"playlists": [{"pid": 1}, {"pid": 1}]}))
    assert (
        submit.main(
            [
                "--graph",
                graph,
                "--run",
                run,
                "--challenge",
                str(tmp_path / "bad.json"),
                "--out",
                out,
                "--team",
                "t",
                "--email",
                "e@x",
            ]
        )
        == 2
    )
    assert "duplicate pids [1]" in capsys.readouterr().err
    (tmp_path / "empty.json").write_text(json.dumps({"playlists": []}))
    assert (
        submit.main(
            [
                "--graph",
                graph,
                "--run",
                run,
                "--challenge",
                str(tmp_path / "empty.json"),
                "--out",
                out,
                "--team",
                "t",
                "--email",
                "e@x",
            ]
        )
        == 2
    )
    assert "its 'playlists' list is empty: nothing to submit" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("x")
    assert (
        submit.main(
            [
                "--graph",
                graph,
                "--run",
                run,
                "--challenge",
                challenge,
                "--out",
                str(tmp_path / "a_file" / "s.csv"),
                "--team",
                "t",
                "--email",
                "e@x",
            ]
        )
        == 2
    )
    assert f"--out {tmp_path / 'a_file' / 's.csv'} cannot be written" in capsys.readouterr().err
    (tmp_path / "blank.json").write_text(json.dumps({"playlists": [{"pid": 7, "name": "!!!", "tracks": []}]}))
    assert (
        submit.main(
            [
                "--graph",
                graph,
                "--run",
                run,
                "--challenge",
                str(tmp_path / "blank.json"),
                "--out",
                out,
                "--team",
                "t",
                "--email",
                "e@x",
                "--method",
                "popularity",
            ]
        )
        == 0
    )
    assert "1 of them (no known seed, no usable title) by global popularity" in capsys.readouterr().out


def test_validate_rejects_bad_rows():
    good = [f"u{i}" for i in range(500)]
    submit.check_submission([(1, good)], [1], [set()])
    with pytest.raises(ValueError, match="pid 1: 499 tracks"):
        submit.check_submission([(1, good[:499])], [1], [set()])
    with pytest.raises(ValueError, match="pid 1: duplicate tracks"):
        submit.check_submission([(1, good[:499] + ["u0"])], [1], [set()])
    with pytest.raises(ValueError, match="pid 1: recommends its own seed tracks"):
        submit.check_submission([(1, good)], [1], [{"u7"}])
    with pytest.raises(ValueError, match="do not follow the challenge pids"):
        submit.check_submission([(2, good)], [1], [set()])
