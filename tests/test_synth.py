"""The synthetic MPD generator: format, determinism, calibration, bad input, challenge set.

Every statistic here is computed from the written JSON with plain Python (the oracle), never
from the generator's own arrays.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etl import checker, slice_files
from etl.synth import challenge, command, playlists, slices, write

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "mpd_sample" / "mpd.slice.0-999.json"
needs_sample = pytest.mark.skipif(
    not SAMPLE.exists(), reason=f"real MPD sample not found at {SAMPLE} (../shared/data is absent on this machine)"
)

SMALL = 2_500  # three slices, the last one short
SEED = 7


def _slices(d: Path) -> list[Path]:
    return sorted(d.glob("mpd.slice.*.json"), key=lambda p: slice_files.slice_range(p.name))


def _dumps(obj) -> str:
    return json.dumps(obj, indent=4, separators=(", ", ": ")) + "\n"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "mpd"
    write.generate(SMALL, str(out), seed=SEED, workers=1, challenge=60)
    return out


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> list[dict]:
    """10,000 generated playlists, parsed back from the files."""
    out = tmp_path_factory.mktemp("calib") / "mpd"
    write.generate(10_000, str(out), seed=0, workers=2)
    playlists = []
    for f in _slices(out):
        playlists.extend(json.loads(f.read_bytes())["playlists"])
    return playlists


def test_files_pids_and_checker(small):
    files = _slices(small)
    assert [f.name for f in files] == ["mpd.slice.0-999.json", "mpd.slice.1000-1999.json", "mpd.slice.2000-2499.json"]
    pids = [p["pid"] for f in files for p in json.loads(f.read_bytes())["playlists"]]
    assert pids == list(range(SMALL))
    assert list(checker.check_files([str(small)])) == []
    assert not [p for p in small.parent.iterdir() if ".synth-" in p.name]  # temp dir gone


def test_byte_layout_is_the_mpd_layout(small):
    for f in _slices(small):
        raw = f.read_bytes()
        obj = json.loads(raw)
        assert raw == _dumps(obj).encode("ascii")  # indent 4, ", " / ": ", \uXXXX escapes, final newline
        assert list(obj) == ["info", "playlists"] and tuple(obj["info"]) == checker.INFO_FIELDS
        assert obj["info"]["slice"] == f.name[len("mpd.slice.") : -len(".json")]
        for p in obj["playlists"]:
            keys = tuple(p)
            assert keys in (checker.PLAYLIST_FIELDS, checker.PLAYLIST_FIELDS + ("description",))
            assert all(tuple(t) == checker.TRACK_FIELDS for t in p["tracks"])
    text = _slices(small)[0].read_text("ascii")
    assert "\\u" in text  # non-ASCII names exist and are escaped


@needs_sample
def test_layout_matches_the_real_sample(small):
    real_raw = SAMPLE.read_bytes()
    real = json.loads(real_raw)
    assert real_raw == _dumps(real).encode("ascii")  # the same writer reproduces the real file
    ours = json.loads(_slices(small)[0].read_bytes())
    assert list(real) == list(ours) and list(real["info"]) == list(ours["info"])
    assert list(real["playlists"][0]) == list(ours["playlists"][0])
    assert list(real["playlists"][0]["tracks"][0]) == list(ours["playlists"][0]["tracks"][0])
    ours_raw = _slices(small)[0].read_bytes()

    # Same line shapes: every line of both files matches one of the MPD's line patterns.
    def shapes(raw):
        return {line.split(b":")[0].rstrip() if b":" in line else line for line in raw.split(b"\n")}

    assert shapes(ours_raw) <= shapes(real_raw) | {b'            "description"'}


def test_same_seed_same_bytes_any_workers(small, tmp_path):
    again1 = tmp_path / "w1"
    again2 = tmp_path / "w2"
    write.generate(SMALL, str(again1), seed=SEED, workers=1, challenge=60)
    write.generate(SMALL, str(again2), seed=SEED, workers=2, challenge=60)
    for d in (again1, again2):
        assert sorted(os.listdir(d)) == sorted(os.listdir(small))
        for name in os.listdir(small):
            assert (d / name).read_bytes() == (small / name).read_bytes(), (d, name)
    other = tmp_path / "seed8"
    write.generate(1_000, str(other), seed=SEED + 1)
    assert (other / "mpd.slice.0-999.json").read_bytes() != (small / "mpd.slice.0-999.json").read_bytes()


def test_a_slice_depends_only_on_seed_and_index(small, tmp_path):
    # A 1,200-playlist dataset shares its first (full) slice with the 2,500-playlist one, and
    # tracks keep their URIs and names across both (the catalogue is a function of the seed).
    out = tmp_path / "mpd"
    write.generate(1_200, str(out), seed=SEED)
    assert (out / "mpd.slice.0-999.json").read_bytes() == (small / "mpd.slice.0-999.json").read_bytes()
    cc = checker.CatalogueConsistency()
    for d in (small, out):
        for f in _slices(d):
            obj = json.loads(f.read_bytes())
            for p in obj["playlists"]:
                p = dict(p, pid=p["pid"] + (10_000 if d == out else 0))
                cc.add_playlist(p, f.name)
    assert cc.findings == []


def test_challenge_set(small):
    cs = json.loads((small / challenge.CHALLENGE_FILE).read_bytes())
    truth = {
        p["pid"]: p["holdouts"]
        for p in json.loads((small / challenge.CHALLENGE_HOLDOUTS_FILE).read_bytes())["playlists"]
    }
    assert set(cs) == {"date", "version", "playlists"}
    assert [p["pid"] for p in cs["playlists"]] == list(range(SMALL, SMALL + 60))
    seen_categories = set()
    cc = checker.CatalogueConsistency()
    for f in _slices(small):
        cc.add_slice(json.loads(f.read_bytes()), f.name)
    for p in cs["playlists"]:
        assert p["num_samples"] == len(p["tracks"]) and p["num_samples"] + p["num_holdouts"] == p["num_tracks"]
        assert len(truth[p["pid"]]) == p["num_holdouts"] > 0
        positions = [t["pos"] for t in p["tracks"]]
        assert positions == sorted(set(positions)) and all(0 <= x < p["num_tracks"] for x in positions)
        assert all(tuple(t) == checker.TRACK_FIELDS for t in p["tracks"])
        is_first = positions == list(range(len(positions)))
        seen_categories.add((p["num_samples"], "name" in p, is_first))
        cc.add_playlist({"pid": p["pid"], "tracks": p["tracks"]}, challenge.CHALLENGE_FILE)
    assert cc.findings == []  # seed tracks use the slices' catalogue
    assert len(seen_categories) >= 8  # the 10 RecSys categories, less those a random draw hits first


def test_calibration_at_10k(calib):
    """Against mpd_stats.txt; tolerances cover sampling noise at 10k plus model error."""
    n = len(calib)
    assert n == 10_000
    lengths = [p["num_tracks"] for p in calib]
    entries = sum(lengths)
    mean_len = entries / n
    assert abs(mean_len - 66.346) < 2.5, mean_len  # SE at 10k ~0.55
    assert 5 <= min(lengths) and max(lengths) <= 250
    mode = collections.Counter(lengths).most_common(1)[0][0]
    assert 12 <= mode <= 31, mode  # real mode 20, the real top-20 lengths are 12..31
    one_follower = sum(p["num_followers"] == 1 for p in calib) / n
    assert abs(one_follower - 0.754) < 0.02, one_follower  # SE ~0.004
    edits2 = sum(p["num_edits"] == 2 for p in calib) / n
    assert abs(edits2 - 0.0923) < 0.015, edits2
    late = sum(1_507_680_000 <= p["modified_at"] <= 1_509_321_600 for p in calib) / n  # 2017-10-11..30
    assert abs(late - 0.1636) < 0.02, late
    described = sum("description" in p for p in calib) / n
    assert 0.01 < described < 0.03, described  # real 1.88%
    country = sum(p["name"].strip().lower() == "country" for p in calib) / n
    assert 0.005 < country < 0.016, country  # real 1.0%

    repeats = sum(p["num_tracks"] - len({t["track_uri"] for t in p["tracks"]}) for p in calib)
    assert 0.009 < repeats / entries < 0.017, repeats / entries  # real ~1.3% (sample: 1.6%)
    in_playlists = collections.Counter(u for p in calib for u in {t["track_uri"] for t in p["tracks"]})
    top_share = in_playlists.most_common(1)[0][1] / n
    assert 0.03 < top_share < 0.07, top_share  # real 4.66% (HUMBLE.)
    # The real Heaps curve (681,805 at 100k, 2,262,292 at 1M: exponent 0.521) implies ~205,000
    # distinct tracks at 10k if extrapolated down; allow +-25% for the extrapolation.
    distinct = len({t["track_uri"] for p in calib for t in p["tracks"]})
    assert 154_000 < distinct < 257_000, distinct
    # Heavy tail: most tracks are rare at this scale (about half appear once at 1M).
    once = sum(c == 1 for c in collections.Counter(t["track_uri"] for p in calib for t in p["tracks"]).values())
    assert 0.5 < once / distinct < 0.8


def test_planted_structure(calib):
    """Runs on an artist/album, and titles that tell the genre (the signal link prediction needs)."""
    same_artist = same_album = pairs = 0
    for p in calib:
        for a, b in zip(p["tracks"], p["tracks"][1:]):
            pairs += 1
            same_artist += a["artist_uri"] == b["artist_uri"]
            same_album += a["album_uri"] == b["album_uri"]
    # The real sample has 21% (37 playlists); random pairs within a genre would share far less.
    assert 0.15 < same_artist / pairs < 0.3 and same_album / pairs > 0.08, (same_artist / pairs, same_album / pairs)
    by_title = collections.defaultdict(list)
    for p in calib:
        by_title[p["name"].strip().lower()].append(p)
    artists = lambda ps: collections.Counter(t["artist_uri"] for p in ps for t in p["tracks"])  # noqa: E731
    country, rap = by_title["country"], by_title["rap"]
    assert len(country) > 60 and len(rap) > 40
    # The top artists of half the "country" playlists recur in the other half far more than in
    # the "rap" playlists (playlists mix genres, so some overlap is expected).
    top = {a for a, _ in artists(country[::2]).most_common(20)}
    in_other_half = len(top & set(artists(country[1::2])))
    in_rap = len(top & set(artists(rap)))
    assert in_other_half >= 15 and in_rap <= in_other_half - 8, (in_other_half, in_rap)


def _main(args: list[str], capsys) -> tuple[int, str]:
    rc = command.main(args + ["--quiet"])
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("n", ["0", "-5"])
def test_bad_playlist_count(n, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:  # argparse, with the flag types every command shares
        command.main(["--playlists", n, "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2 and err[-1].endswith(f"error: argument --playlists: must be >= 1, got {n}")
    assert not (tmp_path / "o").exists()


def test_refuses_a_dir_with_other_files_unless_overwrite(small, tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "mpd.slice.5000-5999.json").write_text("stale")
    rc, err = _main(["--playlists", "1000", "--out", str(out)], capsys)
    assert rc == 2 and "is not empty (2 entries, e.g. 'mpd.slice.5000-5999.json')" in err
    assert "--overwrite" in err and sorted(os.listdir(out)) == ["mpd.slice.5000-5999.json", "notes.txt"]
    rc, err = _main(["--playlists", "1000", "--out", str(out), "--overwrite", "--seed", str(SEED)], capsys)
    assert rc == 0, err
    # The stale slice is gone, the user's file is kept, the new slice is the usual one.
    assert sorted(os.listdir(out)) == ["mpd.slice.0-999.json", "notes.txt"]
    assert (out / "mpd.slice.0-999.json").read_bytes() == (small / "mpd.slice.0-999.json").read_bytes()
    assert not [p for p in tmp_path.iterdir() if ".synth-" in p.name]


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    rc, err = _main(["--playlists", "10", "--out", str(blocker / "sub" / "mpd")], capsys)
    assert rc == 2 and "cannot write next to --out" in err and str(blocker / "sub" / "mpd") in err
    rc, err = _main(["--playlists", "10", "--out", str(blocker)], capsys)
    assert rc == 2 and "exists and is not a directory" in err
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_cli_one_line_errors():
    r = subprocess.run(
        [sys.executable, "-m", "etl.synth", "--playlists", "ten", "--out", "x"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert "argument --playlists: expected an integer, got 'ten'" in r.stderr


def test_selection_rules_hold_for_a_degenerate_catalogue(monkeypatch):
    # Nearly every draw hits the top artist: the redraws cannot fix that, the last resort must.
    monkeypatch.setattr(playlists, "ARTIST_OFFSET", 0.001)
    monkeypatch.setattr(playlists, "ALBUM_OFFSET", 0.001)
    batch = playlists.generate_batch(SEED, 0, 0, 0, 200)
    obj = json.loads(slices.render_slice(batch, SEED, "0-199"))
    assert checker.check_slice(obj, "mpd.slice.0-199.json") == []
    artists = [len({t["artist_uri"] for t in p["tracks"]}) for p in obj["playlists"]]
    assert min(artists) == 3  # exactly the forced minimum somewhere: the last resort ran
