"""Bad input: clear errors naming what and where, drops counted, invariants reported."""

import copy
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from etl_oracle import read_table
from etl_run import run_etl
from graphdir_fixture import REPO_ROOT

from etl import checker, contract, validate
from etl.pipeline import BadInputError
from etl.storage import InputError, Locked, OutputError, OutputExistsError

pytestmark = pytest.mark.slow


def _playlist(pid, n=12, followers=1):
    tracks = [
        {
            "pos": i,
            "artist_name": f"artist {i % 4}",
            "track_uri": f"spotify:track:{pid:04d}{i:018d}",
            "artist_uri": f"spotify:artist:{i % 4:022d}",
            "track_name": f"track {pid}-{i}",
            "album_uri": f"spotify:album:{i % 3:022d}",
            "duration_ms": 1000 + i,
            "album_name": f"album {i % 3}",
        }
        for i in range(n)
    ]
    return {
        "name": f"list {pid}",
        "collaborative": "false",
        "pid": pid,
        "modified_at": 1493424000,
        "num_tracks": n,
        "num_albums": 3,
        "num_followers": followers,
        "tracks": tracks,
        "num_edits": 2,
        "duration_ms": sum(t["duration_ms"] for t in tracks),
        "num_artists": 4,
    }


def _write(dir_, name, playlists):
    dir_.mkdir(exist_ok=True)
    (dir_ / name).write_text(
        json.dumps({"info": {"generated_on": "x", "slice": "0-9", "version": "v1"}, "playlists": playlists}, indent=4)
    )


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    """Two slices: a duplicate pid, a record without pid, entries without or with malformed URIs,
    mistyped fields, a broken count."""
    d = tmp_path_factory.mktemp("messy") / "in"
    ps = [_playlist(pid) for pid in range(6)]
    no_pid = _playlist(99)
    del no_pid["pid"]
    ps[1]["num_tracks"] = 40  # invariant broken: kept as its track list says, reported
    ps[2]["tracks"][3]["track_uri"] = None
    del ps[2]["tracks"][4]["album_uri"]
    ps[3]["tracks"].append(copy.deepcopy(ps[3]["tracks"][0]) | {"pos": 12})  # duplicate entry
    ps[4]["tracks"][2]["track_uri"] = ""  # malformed URIs
    ps[4]["tracks"][5]["album_uri"] = "https://open.spotify.com/album/abc"
    ps[5]["tracks"][1]["artist_uri"] = "not a uri"
    _write(d, "mpd.slice.0-5.json", ps[:4] + [no_pid])
    mistyped = [_playlist(7) | {"pid": "1000"}, _playlist(8) | {"num_followers": 1.5}]
    mistyped[1]["tracks"][2]["pos"] = "2"
    _write(d, "mpd.slice.6-9.json", ps[4:] + [copy.deepcopy(ps[0]) | {"name": "again"}] + mistyped)
    (d / "mpd.slice.10-19.json").write_text('{"info": {}, "playlists": [{"pid": 10, ')  # cut short
    return d


def test_drops_and_findings_are_counted_and_every_entry_accounted(spark, messy, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="etl"):
        m = run_etl(spark, "--input", messy, "--output", tmp_path / "g", "--hop2", "off", "--skip-bad-files")
    # every class dropped is one warning at the end, on the console a user reads
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("dropped ")]
    assert sorted(line.split(":")[0] for line in said) == sorted(
        f"dropped {k}" for k, v in m["dropped"].items() if v["count"]
    )
    assert (
        "dropped duplicate_pid: 1 playlist(s), 12 track entries; e.g. 0 (manifest.json: dropped.duplicate_pid)" in said
    )
    assert [f["path"].rsplit("/", 1)[1] for f in m["input"]["skipped_files"]] == ["mpd.slice.10-19.json"]
    assert m["validation"]["json"]["count"] == 1 and m["counts"]["input_files"] == 2
    dropped = m["dropped"]
    assert {k: dropped["missing_pid"][k] for k in ("count", "playlists", "entries")} == {
        "count": 1,
        "playlists": 1,
        "entries": 12,
    }
    assert [e.rsplit("/", 1)[1] for e in dropped["missing_pid"]["examples"]] == ["mpd.slice.0-5.json#4"]
    assert dropped["duplicate_pid"]["count"] == 1 and dropped["duplicate_pid"]["examples"] == ["0"]
    assert dropped["missing_track_uri"]["count"] == 1 and dropped["missing_album_uri"]["count"] == 1
    assert dropped["duplicate_entry"]["examples"] == [f"3#spotify:track:0003{0:018d}"]
    assert {k: (v["count"], v["examples"]) for k, v in dropped.items() if k.startswith("malformed")} == {
        "malformed_track_uri": (1, ['4#2 ""']),
        "malformed_album_uri": (1, ['4#5 "https://open.spotify.com/album/abc"']),
        "malformed_artist_uri": (1, ['5#1 "not a uri"']),
    }
    assert m["validation"]["uri_format"] == {"count": 2, "examples": [4, 5]}
    # One wrongly typed value drops its record alone, named with the field; the file stays.
    assert {k: dropped["field_type"][k] for k in ("count", "playlists", "entries")} == {
        "count": 2,
        "playlists": 2,
        "entries": 24,
    }
    assert [e.rsplit("/", 1)[1] for e in dropped["field_type"]["examples"]] == [
        "mpd.slice.6-9.json#3: pid",
        "mpd.slice.6-9.json#4 (pid 8): num_followers, tracks[2].pos",
    ]
    assert m["validation"]["field_type"] == {k: dropped["field_type"][k] for k in ("count", "examples")}
    for kind, bad in (("track", ""), ("album", "https://open.spotify.com/album/abc"), ("artist", "not a uri")):
        assert bad not in {r[f"{kind}_uri"] for r in read_table(tmp_path / "g", f"nodes/{kind}")}
    c = m["counts"]
    assert c["input_playlists"] == 10 and c["nodes/playlist"] == 6
    assert c["input_entries"] == 10 * 12 + 1
    assert c["edges/playlist_track"] == c["input_entries"] - 12 - 12 - 1 - 1 - 1 - 3 - 24
    # pid 1 says 40 tracks, pid 3 has a 13th (duplicate) entry it does not count.
    assert m["validation"]["num_tracks"] == {"count": 2, "examples": [1, 3]}
    assert m["validation"]["duplicate_pid"]["count"] == 1
    assert m["validation"]["required_field"]["count"] == 2  # no pid; a null URI / missing album_uri
    # The first record of pid 0 (file order) is the one kept.
    names = {r["pid"]: r["name"] for r in read_table(tmp_path / "g", "nodes/playlist")}
    assert names[0] == "list 0"
    assert all(r["hop2_reach"] is None for r in read_table(tmp_path / "g", "nodes/track"))
    assert m["hop2"] == {"mode": "off", "relative_error": None, "hll_lg_config_k": None}


def test_slice_rules_match_the_checker(spark, tmp_path):
    """slice_info, slice_name and pid_sequence: the job's counts against the plain-Python checker."""
    d = tmp_path / "in"
    ps = [_playlist(pid) for pid in range(8)]
    _write(d, "mpd.slice.0-9.json", ps[:3])  # info says 0-9: clean
    no_pid = copy.deepcopy(ps[5])
    del no_pid["pid"]
    (d / "mpd.slice.10-19.json").write_text(
        json.dumps(  # name 10-19, info 0-9; pids 3, 4
            {"info": {"generated_on": "x", "slice": "0-9", "version": "v1"}, "playlists": ps[3:5] + [no_pid]}
        )
    )
    (d / "mpd.slice.20-29.json").write_text(
        json.dumps(  # no info: nothing to sequence against
            {"playlists": [ps[6] | {"pid": 20}]}
        )
    )
    (d / "mpd.slice.30-39.json").write_text(
        json.dumps(  # 30, 31, 33 (gap), 40 (out of range)
            {
                "info": {"generated_on": "x", "slice": "30-39", "version": "v1"},
                "playlists": [ps[7] | {"pid": p} for p in (30, 31, 33, 40)],
            }
        )
    )
    m = run_etl(spark, "--input", d, "--output", tmp_path / "g", "--hop2", "off")

    expected = {r: [] for r in validate.FILE_RULES}
    for f in sorted(d.iterdir()):
        for finding in checker.check_slice(json.loads(f.read_text()), str(f)):
            if finding.rule in expected:
                expected[finding.rule].append(f.name if finding.rule != checker.RULE_PID_SEQUENCE else finding.pid)
    v = m["validation"]
    assert v[checker.RULE_SLICE_INFO] == {
        "count": len(set(expected[checker.RULE_SLICE_INFO])),
        "examples": sorted(set(expected[checker.RULE_SLICE_INFO])),
    }
    assert v[checker.RULE_SLICE_NAME] == {
        "count": len(expected[checker.RULE_SLICE_NAME]),
        "examples": sorted(expected[checker.RULE_SLICE_NAME]),
    }
    assert v[checker.RULE_PID_SEQUENCE] == {
        "count": len(expected[checker.RULE_PID_SEQUENCE]),
        "examples": sorted(expected[checker.RULE_PID_SEQUENCE]),
    }
    # and what the checker says, spelled out: the case is not vacuous
    assert v[checker.RULE_SLICE_INFO]["examples"] == ["mpd.slice.20-29.json"]
    assert v[checker.RULE_SLICE_NAME]["examples"] == ["mpd.slice.10-19.json"]
    assert v[checker.RULE_PID_SEQUENCE]["examples"] == [3, 33, 40]


def test_unparseable_file_fails_the_job_naming_it(spark, messy, tmp_path):
    with pytest.raises(BadInputError, match=r"mpd\.slice\.10-19\.json: not a valid MPD slice"):
        run_etl(spark, "--input", messy, "--output", tmp_path / "g")
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob("g.tmp-*"))


def test_empty_input_and_existing_output_are_refused(spark, messy, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no MPD slice files at .*empty"):
        run_etl(spark, "--input", tmp_path / "empty", "--output", tmp_path / "g")
    _write(tmp_path / "none", "mpd.slice.0-0.json", [])
    with pytest.raises(InputError, match="no playlists in the input"):
        run_etl(spark, "--input", tmp_path / "none", "--output", tmp_path / "g")
    (tmp_path / "g").mkdir()
    with pytest.raises(OutputExistsError, match=r"exists; pass --overwrite"):
        run_etl(spark, "--input", messy, "--output", tmp_path / "g")


def test_top_playlists_by_followers_keeps_them_and_what_they_reach(spark, tmp_path):
    d = tmp_path / "in"
    _write(d, "mpd.slice.0-4.json", [_playlist(p, followers=f) for p, f in ((0, 5), (1, 9), (2, 5), (3, 1), (4, 9))])
    m = run_etl(
        spark,
        "--input",
        d,
        "--output",
        tmp_path / "g",
        "--top-playlists-by-followers",
        "3",
        "--hop2",
        "off",
        "--overwrite",
    )
    assert sorted(r["pid"] for r in read_table(tmp_path / "g", "nodes/playlist")) == [0, 1, 4]
    tracks = {r["track_uri"] for r in read_table(tmp_path / "g", "nodes/track")}
    assert tracks == {f"spotify:track:{p:04d}{i:018d}" for p in (0, 1, 4) for i in range(12)}
    assert m["dropped"]["outside_top_followed"]["count"] == 2
    contract.check_manifest(m)


def test_an_output_that_cannot_be_created_fails_before_any_input_is_read(spark, messy, tmp_path):
    (tmp_path / "a_file").write_text("not a dir")
    # The input does not exist: had it been read first, the error would be about the input.
    with pytest.raises(
        OutputError,
        match=rf"output {tmp_path}/a_file/graph cannot be created \(cannot create "
        rf"{tmp_path}/a_file/graph\.tmp-[0-9a-f]{{32}}: ParentNotDirectoryException",
    ):
        run_etl(spark, "--input", tmp_path / "nowhere", "--output", tmp_path / "a_file" / "graph")
    assert (tmp_path / "a_file").read_text() == "not a dir"


def test_stale_temp_dirs_of_the_output_are_removed_by_the_next_run_that_holds_its_lock(spark, tmp_path, caplog):
    d = tmp_path / "in"
    _write(d, "mpd.slice.0-9.json", [_playlist(p) for p in range(3)])
    (tmp_path / "g").mkdir()
    stale = tmp_path / f"g.tmp-{'0' * 31}f"  # what a killed run leaves
    (stale / "edges").mkdir(parents=True)
    keep = [tmp_path / "g.tmp-mine", tmp_path / f"g2.tmp-{'0' * 32}", tmp_path / f"g.tmp-{'0' * 32}.bak"]
    for k in keep:
        k.mkdir()
    # even a run refused for its existing output removes them: it holds the output's lock
    with (
        caplog.at_level("WARNING", logger="etl"),
        pytest.raises(OutputExistsError, match=rf"output {tmp_path}/g exists; pass --overwrite to replace it"),
    ):
        run_etl(spark, "--input", d, "--output", tmp_path / "g")
    assert not stale.exists() and all(k.exists() for k in keep)
    assert f"removed 1 temporary dir(s) of {tmp_path}/g left by runs that did not finish: " in caplog.text
    (stale / "edges").mkdir(parents=True)
    caplog.clear()
    with caplog.at_level("WARNING", logger="etl"):
        run_etl(spark, "--input", d, "--output", tmp_path / "g", "--hop2", "off", "--overwrite")
    assert not stale.exists() and all(k.exists() for k in keep)
    assert f"removed 1 temporary dir(s) of {tmp_path}/g left by runs that did not finish" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in", "g", *(k.name for k in keep)])


def test_one_job_per_output_a_dead_holders_lock_taken_over(spark, tmp_path):
    d = tmp_path / "in"
    _write(d, "mpd.slice.0-9.json", [_playlist(p) for p in range(3)])
    lock = tmp_path / "g.lock"
    live = {"pid": os.getppid(), "host": socket.gethostname(), "since": "now", "command": "etl.job --input x"}
    lock.write_text(json.dumps(live))
    with pytest.raises(
        Locked,
        match=rf"output {tmp_path}/g is being written by another job: etl.job --input x "
        rf"\(pid {os.getppid()} on ",
    ):
        run_etl(spark, "--input", d, "--output", tmp_path / "g", "--hop2", "off")
    assert json.loads(lock.read_text()) == live  # the holder's lock is left alone
    assert not (tmp_path / "g").exists() and not list(tmp_path.glob("g.tmp-*"))
    gone = subprocess.Popen(["true"])
    gone.wait()
    lock.write_text(json.dumps(live | {"pid": gone.pid}))  # a killed job's lock
    run_etl(spark, "--input", d, "--output", tmp_path / "g", "--hop2", "off")
    assert (tmp_path / "g" / contract.MANIFEST).exists() and not lock.exists()


def test_an_output_that_appears_while_the_job_runs_is_not_replaced(spark, tmp_path, monkeypatch):
    from etl import manifest

    d = tmp_path / "in"
    _write(d, "mpd.slice.0-9.json", [_playlist(p) for p in range(3)])
    build = manifest.build

    def meanwhile(**kwargs):  # another writer, one that ignores the lock, finishes first
        (tmp_path / "g").mkdir()
        (tmp_path / "g" / "theirs.txt").write_text("theirs")
        return build(**kwargs)

    monkeypatch.setattr(manifest, "build", meanwhile)
    with pytest.raises(OutputExistsError, match=rf"output {tmp_path}/g appeared while this job ran"):
        run_etl(spark, "--input", d, "--output", tmp_path / "g", "--hop2", "off")
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g", "in"]


def test_a_byte_that_is_not_utf8_is_named_with_its_offset(spark, tmp_path):
    d = tmp_path / "in"
    _write(d, "mpd.slice.0-2.json", [_playlist(p) for p in range(3)])
    data = (d / "mpd.slice.0-2.json").read_bytes().replace(b'"list 1"', b'"list \xff1"')
    (d / "mpd.slice.0-2.json").write_bytes(data)
    offset = data.index(b"\xff")
    line = data.count(b"\n", 0, offset) + 1
    with pytest.raises(
        BadInputError,
        match=rf"mpd\.slice\.0-2\.json: not a valid MPD slice \(byte 0xff at offset "
        rf"{offset} \(line {line}\) is not UTF-8",
    ):
        run_etl(spark, "--input", d, "--output", tmp_path / "g")
    assert [f.message for f in checker.check_files([str(d)])][0].startswith(
        f"cannot read as JSON: byte 0xff at offset {offset}"
    )


def test_few_playlists_a_long_one_and_the_hold_out_are_said(spark, tmp_path, caplog):
    d = tmp_path / "in"
    _write(d, "mpd.slice.0-11.json", [_playlist(p, n=300 if p == 5 else 12) for p in range(12)])
    with caplog.at_level("WARNING", logger="etl"):
        m = run_etl(spark, "--input", d, "--output", tmp_path / "g", "--hop2", "exact")
    assert "a playlist of 300 tracks (the MPD keeps at most 250)" in caplog.text
    playlists = read_table(tmp_path / "g", "nodes/playlist")
    n_val = sum(p["split"] == contract.SPLIT_VAL for p in playlists)
    n_test = sum(p["split"] == contract.SPLIT_TEST for p in playlists)
    assert f"{n_val + n_test} of 12 playlists are held out (val {n_val}, test {n_test})" in caplog.text
    assert (m["split"]["num_val"], m["split"]["num_test"]) == (n_val, n_test)
    assert m["split"]["requested"] == {"num_val": 8, "num_test": 8}


def test_a_full_disk_is_said_in_one_line_and_nothing_is_published(spark, mpd_sample_dir, tmp_path, caplog, monkeypatch):
    from etl import job, storage

    monkeypatch.setattr(storage, "OUTPUT_PER_JSON_BYTE", 0.0)  # past the estimate: the disk fills during the job

    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"needs a small tmpfs (mount as root): {mounted.stderr.strip()}")
    try:
        with caplog.at_level("ERROR", logger="etl"):
            rc = job.main(["--input", mpd_sample_dir, "--output", str(small / "g"), "--hop2", "off"])
        assert rc == 2
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert errors == [
            f"no space left on device while writing {small}/g or Spark's scratch files (spark.local.dir, "
            "SPARK_LOCAL_DIRS): nothing was published; free space there, or choose other places"
        ]
        assert not [p.name for p in small.iterdir() if not p.name.startswith(".")]
    finally:
        subprocess.run(["umount", "-l", str(small)], check=True)  # lazily: Spark may keep a failed file open


def test_gzip_compressed_slices_give_the_same_graph_dir(spark, mpd_sample_dir, sample_graph, tmp_path):
    from etl_oracle import read_graph

    d = tmp_path / "gz"
    d.mkdir()
    for f in os.listdir(mpd_sample_dir):
        if f.endswith(".json"):
            with open(os.path.join(mpd_sample_dir, f), "rb") as src:
                (d / f"{f}.gz").write_bytes(gzip.compress(src.read()))
    m = run_etl(spark, "--input", d, "--output", tmp_path / "g", "--hop2", "exact")
    plain, plain_manifest = sample_graph

    def rows(graph_dir):  # the contract orders rows by their ids, not by file position
        return {
            t: sorted(json.dumps(r, sort_keys=True, default=str) for r in v) for t, v in read_graph(graph_dir).items()
        }

    assert rows(tmp_path / "g") == rows(plain)
    assert m["counts"] == plain_manifest["counts"]
    # the checker reads them too, and finds what it finds in the plain files
    assert [(f.rule, f.message) for f in checker.check_files([str(d)])] == [
        (f.rule, f.message) for f in checker.check_files([mpd_sample_dir])
    ]


def test_a_damaged_gzip_slice_is_named(spark, tmp_path):
    d = tmp_path / "in"
    _write(d, "mpd.slice.0-2.json", [_playlist(p) for p in range(3)])
    data = gzip.compress((d / "mpd.slice.0-2.json").read_bytes())
    (d / "mpd.slice.0-2.json").unlink()
    (d / "mpd.slice.0-2.json.gz").write_bytes(data[: len(data) // 2])  # cut short, as by a failed download
    with pytest.raises(
        BadInputError, match=r"mpd\.slice\.0-2\.json\.gz: not a valid MPD slice \(not a readable gzip file"
    ):
        run_etl(spark, "--input", d, "--output", tmp_path / "g")
    assert not (tmp_path / "g").exists()
    findings = list(checker.check_files([str(d)]))
    assert [f.message.split(" (")[0] for f in findings] == ["cannot read as JSON: not a readable gzip file"]


def test_too_little_free_disk_is_refused_before_parsing(spark, tmp_path, monkeypatch):
    from etl import storage

    d = tmp_path / "in"
    _write(d, "mpd.slice.0-2.json", [_playlist(p) for p in range(3)])
    json_bytes = (d / "mpd.slice.0-2.json").stat().st_size
    free = shutil.disk_usage(tmp_path).free
    monkeypatch.setenv("SPARK_LOCAL_DIRS", str(tmp_path / "scratch"))  # on the output's disk: the needs add up
    monkeypatch.setattr(storage, "SCRATCH_PER_JSON_BYTE", free / 2 / json_bytes)
    monkeypatch.setattr(storage, "OUTPUT_PER_JSON_BYTE", free / 2 / json_bytes)
    with pytest.raises(
        storage.NotEnoughDisk,
        match=rf"not enough free disk: .* MiB of JSON needs about .* in {tmp_path}/scratch "
        rf"\(Spark's scratch\) and .* in {tmp_path}/g \(the output\), ",
    ):
        run_etl(spark, "--input", d, "--output", tmp_path / "g")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    monkeypatch.setattr(storage, "OUTPUT_PER_JSON_BYTE", 0.0)  # each fits alone: the job runs
    run_etl(spark, "--input", d, "--output", tmp_path / "g")


@pytest.mark.parametrize(
    "java_said",
    [
        "org.apache.spark.SparkException: Not enough memory to build and broadcast the table to all worker nodes.",
        "Caused by: java.lang.OutOfMemoryError: Java heap space",
    ],
)
def test_out_of_memory_is_one_line_naming_the_setting(tmp_path, monkeypatch, caplog, java_said):
    from etl import job

    def run(args, spark):
        raise RuntimeError(f"An error occurred while calling o6757.parquet.\n: {java_said}\n\tat org.apache...")

    monkeypatch.setattr(job, "spark_session", lambda args: None)
    monkeypatch.setattr(job, "build_graph_dir", run)
    with caplog.at_level("ERROR", logger="etl"):
        assert job.main(["--input", str(tmp_path), "--output", str(tmp_path / "g")]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("the Spark driver ran out of memory (")
    assert errors[0].endswith("raise --driver-memory (now 6g; spark.driver.memory under spark-submit)")


@pytest.mark.slow
def test_sigterm_stops_the_etl_in_one_line_and_leaves_no_staging_dir(mpd_sample_dir, tmp_path):
    # What `timeout`, a scheduler or a cluster manager sends: exit 143, one line, nothing left
    # beside the output (the staging dir and the lock go with the job).
    out = tmp_path / "g"
    proc = subprocess.Popen(
        [sys.executable, "-m", "etl.job", "--input", mpd_sample_dir, "--output", str(out), "--hop2", "exact"],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while not list(tmp_path.glob("g.tmp-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert list(tmp_path.glob("g.tmp-*")), "the job never staged its output"
    time.sleep(2)  # inside Spark's work
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if "ERROR" in line][-1].endswith(
        f"terminated (SIGTERM): stopped; nothing was published and the staging dir of {out} is removed"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == []
