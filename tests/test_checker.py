"""The MPD record checker: the real sample passes; each rule catches its own violation."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from etl import checker as C

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "mpd_sample" / "mpd.slice.0-999.json"
needs_sample = pytest.mark.skipif(
    not SAMPLE.exists(), reason=f"real MPD sample not found at {SAMPLE} (../shared/data is absent on this machine)"
)

_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _uri(kind: str, i: int) -> str:
    return f"spotify:{kind}:" + (_B62[i % 62] * 22)


def _track(pos: int, track: int, album: int, artist: int, duration: int = 200_000) -> dict:
    return {
        "pos": pos,
        "artist_name": f"Artist {artist}",
        "track_uri": _uri("track", track),
        "artist_uri": _uri("artist", artist),
        "track_name": f"Track {track}",
        "album_uri": _uri("album", album),
        "duration_ms": duration,
        "album_name": f"Album {album}",
    }


def _playlist(pid: int = 7, spec=((1, 1, 1), (2, 1, 1), (3, 2, 2), (4, 3, 3), (1, 1, 1))) -> dict:
    """A valid playlist; ``spec`` lists (track, album, artist) per entry (a repeat included)."""
    tracks = [_track(i, *s, duration=200_000 + s[0]) for i, s in enumerate(spec)]
    return {
        "name": "chill",
        "collaborative": "false",
        "pid": pid,
        "modified_at": 1_493_424_000,
        "num_tracks": len(tracks),
        "num_albums": len({t["album_uri"] for t in tracks}),
        "num_followers": 1,
        "tracks": tracks,
        "num_edits": 3,
        "duration_ms": sum(t["duration_ms"] for t in tracks),
        "num_artists": len({t["artist_uri"] for t in tracks}),
    }


def _recount(p: dict) -> dict:
    p["num_tracks"] = len(p["tracks"])
    p["num_albums"] = len({t["album_uri"] for t in p["tracks"]})
    p["num_artists"] = len({t["artist_uri"] for t in p["tracks"]})
    p["duration_ms"] = sum(t["duration_ms"] for t in p["tracks"])
    return p


def _set(p, **kw):
    p.update(kw)
    return p


def _del(d, key):
    del d[key]
    return d


# One mutation per playlist-level rule: (rule, mutate(valid playlist) -> invalid playlist).
PLAYLIST_CASES = [
    (C.RULE_REQUIRED_FIELD, lambda p: _del(p, "num_edits")),
    (C.RULE_REQUIRED_FIELD, lambda p: (_del(p["tracks"][2], "album_name"), p)[1]),
    (C.RULE_UNKNOWN_FIELD, lambda p: _set(p, owner="someone")),
    (C.RULE_FIELD_TYPE, lambda p: _set(p, num_followers="1")),
    (C.RULE_FIELD_TYPE, lambda p: _set(p, pid=True)),
    (C.RULE_FIELD_TYPE, lambda p: (p["tracks"][0].update(duration_ms=2.5e5), p)[1]),
    (C.RULE_COLLABORATIVE, lambda p: _set(p, collaborative="False")),
    (C.RULE_NUM_TRACKS, lambda p: _set(p, num_tracks=p["num_tracks"] + 1)),
    (C.RULE_NUM_ALBUMS, lambda p: _set(p, num_albums=p["num_albums"] - 1)),
    (C.RULE_NUM_ARTISTS, lambda p: _set(p, num_artists=p["num_artists"] + 1)),
    (C.RULE_DURATION, lambda p: _set(p, duration_ms=p["duration_ms"] - 1)),
    (C.RULE_TRACK_COUNT, lambda p: _recount(_set(p, tracks=p["tracks"][:4]))),
    (C.RULE_TRACK_COUNT, lambda p: _recount(_set(p, tracks=[_track(i, i, i % 7, i % 5) for i in range(251)]))),
    (C.RULE_MIN_ARTISTS, lambda p: _recount(_set(p, tracks=[_track(i, i, i % 3, i % 2) for i in range(6)]))),
    (C.RULE_MIN_ALBUMS, lambda p: _recount(_set(p, tracks=[_track(i, i, 0, i % 3) for i in range(6)]))),
    (C.RULE_MIN_FOLLOWERS, lambda p: _set(p, num_followers=0)),
    (C.RULE_POS, lambda p: (p["tracks"][3].update(pos=4), p)[1]),
    (C.RULE_MODIFIED_MIDNIGHT, lambda p: _set(p, modified_at=p["modified_at"] + 3600)),
    (C.RULE_MODIFIED_RANGE, lambda p: _set(p, modified_at=C.MIN_MODIFIED_AT - C.SECONDS_PER_DAY)),
    (C.RULE_MODIFIED_RANGE, lambda p: _set(p, modified_at=C.MAX_MODIFIED_AT + C.SECONDS_PER_DAY)),
    (C.RULE_URI_FORMAT, lambda p: (p["tracks"][1].update(track_uri="spotify:track:abc"), p)[1]),
    (C.RULE_URI_FORMAT, lambda p: _recount((p["tracks"][1].update(album_uri=_uri("artist", 9)), p)[1])),
]


def test_valid_playlist_has_no_findings():
    assert C.check_playlist(_playlist()) == []


@pytest.mark.parametrize("rule,mutate", PLAYLIST_CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(PLAYLIST_CASES)])
def test_playlist_rule_is_caught(rule, mutate):
    bad = mutate(copy.deepcopy(_playlist(pid=7)))
    findings = C.check_playlist(bad, "mpd.slice.0-999.json")
    assert {f.rule for f in findings} == {rule}, findings
    text = str(findings[0])
    # Findings name the file and the pid (pid=True is not a pid, so it has none).
    assert text.startswith("mpd.slice.0-999.json: ")
    if bad.get("pid") == 7:
        assert "pid 7" in text


def _slice(playlists, first=0, last=999) -> dict:
    return {
        "info": {"generated_on": "2017-12-03 08:41:42.057563", "slice": f"{first}-{last}", "version": "v1"},
        "playlists": playlists,
    }


SLICE_CASES = [
    (C.RULE_JSON, lambda: ([_playlist()], "mpd.slice.0-999.json")),
    (C.RULE_SLICE_INFO, lambda: (_del(_slice([_playlist(0)]), "info"), "mpd.slice.0-999.json")),
    (
        C.RULE_SLICE_INFO,
        lambda: ((lambda s: (s["info"].update(slice="first"), s)[1])(_slice([_playlist(0)])), "mpd.slice.0-999.json"),
    ),
    (C.RULE_SLICE_NAME, lambda: (_slice([_playlist(0)]), "mpd.slice.1000-1999.json")),
    (C.RULE_PID_SEQUENCE, lambda: (_slice([_playlist(0), _playlist(2)]), "mpd.slice.0-999.json")),
    (C.RULE_PID_SEQUENCE, lambda: (_slice([_playlist(0), _playlist(1)], 0, 0), "mpd.slice.0-0.json")),
]


@pytest.mark.parametrize("rule,make", SLICE_CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(SLICE_CASES)])
def test_slice_rule_is_caught(rule, make):
    obj, path = make()
    findings = C.check_slice(obj, path)
    assert {f.rule for f in findings} == {rule}, findings
    assert str(findings[0]).startswith(path)


def test_valid_slice_has_no_findings():
    assert C.check_slice(_slice([_playlist(0), _playlist(1)], 0, 1), "dir/mpd.slice.0-1.json") == []


def _renamed(p: dict, i: int, **changes) -> dict:
    p["tracks"][i].update(changes)
    return _recount(p)


CROSS_CASES = [
    # the same track URI named differently in another playlist (another file)
    (C.RULE_URI_NAME, lambda: _renamed(_playlist(8), 0, track_name="Other name")),
    (C.RULE_URI_NAME, lambda: _renamed(_playlist(8), 0, album_name="Other album")),
    (C.RULE_URI_NAME, lambda: _renamed(_playlist(8), 3, artist_name="Other artist")),
    # the same track URI on another album / with another duration
    (C.RULE_TRACK_METADATA, lambda: _renamed(_playlist(8), 0, duration_ms=1)),
    (C.RULE_TRACK_METADATA, lambda: _renamed(_playlist(8), 0, album_uri=_uri("album", 2), album_name="Album 2")),
    (C.RULE_DUPLICATE_PID, lambda: _playlist(7)),
]


@pytest.mark.parametrize("rule,make", CROSS_CASES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(CROSS_CASES)])
def test_cross_slice_rule_is_caught(rule, make):
    cc = C.CatalogueConsistency()
    cc.add_playlist(_playlist(7), "mpd.slice.0-999.json")
    assert cc.findings == []
    cc.add_playlist(make(), "mpd.slice.1000-1999.json")
    assert {f.rule for f in cc.findings} == {rule}, cc.findings
    text = str(cc.findings[0])
    assert text.startswith("mpd.slice.1000-1999.json: pid ") and "mpd.slice.0-999.json" in text


def test_every_rule_has_a_test():
    tested = {r for r, _ in PLAYLIST_CASES + SLICE_CASES + CROSS_CASES}
    assert tested == set(C.RULES)


def test_check_files_reports_unreadable_json_and_bad_paths(tmp_path):
    (tmp_path / "mpd.slice.0-999.json").write_text("{not json")
    findings = list(C.check_files([str(tmp_path)]))
    assert [f.rule for f in findings] == [C.RULE_JSON]
    with pytest.raises(ValueError, match="no such file or directory"):
        list(C.check_files([str(tmp_path / "missing")]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no mpd.slice.A-B.json or .json.gz files"):
        list(C.check_files([str(empty)]))


def test_cli_exit_codes(tmp_path, capsys):
    good = tmp_path / "mpd.slice.0-1.json"
    good.write_text(json.dumps(_slice([_playlist(0), _playlist(1)], 0, 1)))
    assert C.main([str(tmp_path)]) == 0
    bad = _slice([_playlist(0), _set(_playlist(1), num_followers=0)], 0, 1)
    good.write_text(json.dumps(bad))
    assert C.main([str(tmp_path)]) == 1
    assert f"{good}: pid 1: {C.RULE_MIN_FOLLOWERS}" in capsys.readouterr().out
    assert C.main([str(tmp_path / "nope")]) == 2


@needs_sample
def test_real_sample_passes():
    obj = json.loads(SAMPLE.read_bytes())
    assert len(obj["playlists"]) == 37
    assert C.check_slice(obj, str(SAMPLE)) == []
    assert list(C.check_files([str(SAMPLE)])) == []
    # The sample really exercises the rules: duplicates, and counts that are not just len(tracks).
    p = obj["playlists"][0]
    assert p["num_albums"] < p["num_tracks"] and p["num_artists"] < p["num_albums"]


@needs_sample
def test_real_sample_mutations_are_caught():
    obj = json.loads(SAMPLE.read_bytes())
    p = obj["playlists"][5]
    p["tracks"][0]["track_name"] += " (edited)"
    findings = list(C.check_slice(obj, os.path.basename(SAMPLE)))
    assert findings == []  # one URI, two names is a cross-record rule
    cc = C.CatalogueConsistency()
    real = json.loads(SAMPLE.read_bytes())
    cc.add_slice(real, "real")
    cc.add_slice({"playlists": [dict(p, pid=10_000)]}, "edited")
    assert [f.rule for f in cc.findings] == [C.RULE_URI_NAME]
    assert "pid 10000" in str(cc.findings[0]) and "pid 5" in str(cc.findings[0])
