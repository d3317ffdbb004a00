"""Benchmark: the Spark ETL's core vs the same core in DuckDB (duckdb_core below).

Core = parse -> explode -> dedup -> id map -> Parquet (no splits, no features), on synthetic MPD
(``python -m etl.synth``) at several sizes. Each measurement runs in a fresh process so that
the Python driver's peak RSS belongs to one input size. Spark's start-up is timed apart; the
core is timed on a warm JVM (one warm-up pass over the real sample, or a tiny synthetic input).

    python bench/bench_etl.py --sizes 10000 20000 40000 --data /tmp/bench_etl [--repeats 3]
    python bench/bench_etl.py --full --sizes 100000 --hop2 hll     # the whole job, one run

Prints one JSON line per measurement and a summary table (medians).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "..", "shared", "data", "mpd_sample")


# The same core in DuckDB, the yardstick: parse (explicit column types) -> explode playlists and
# tracks -> dedup (pid: first record by file and index; entries: first pos per (pid, track_uri);
# entities: smallest attribute per URI) -> dense ids in key order -> the contract's tables.
TRACK = (
    "STRUCT(pos BIGINT, artist_name VARCHAR, track_uri VARCHAR, artist_uri VARCHAR, "
    "track_name VARCHAR, album_uri VARCHAR, duration_ms BIGINT, album_name VARCHAR)"
)
PLAYLIST = (
    "STRUCT(name VARCHAR, collaborative VARCHAR, pid BIGINT, modified_at BIGINT, "
    "num_tracks BIGINT, num_albums BIGINT, num_followers BIGINT, "
    f"tracks {TRACK}[], num_edits BIGINT, duration_ms BIGINT, num_artists BIGINT, "
    "description VARCHAR)"
)

SQL = """
CREATE TEMP TABLE raw AS
SELECT filename AS input_file, unnest(range(len(playlists))) AS idx, unnest(playlists) AS p
FROM read_json({files}, columns={{playlists: '{playlist}[]'}}, format='auto',
               maximum_object_size=1073741824, filename=true);
CREATE TEMP TABLE records AS
SELECT * EXCLUDE (rn) FROM (
  SELECT input_file, idx, p.*, row_number() OVER (PARTITION BY p.pid ORDER BY input_file, idx) AS rn
  FROM raw WHERE p.pid IS NOT NULL) WHERE rn = 1;
CREATE TEMP TABLE entries AS
SELECT pid, t.* FROM (SELECT pid, unnest(tracks) AS t FROM records)
WHERE t.track_uri IS NOT NULL AND t.album_uri IS NOT NULL AND t.artist_uri IS NOT NULL;
CREATE TEMP TABLE playlist AS
SELECT row_number() OVER (ORDER BY pid) - 1 AS playlist_id, pid, name,
       collaborative = 'true' AS collaborative, num_followers, num_edits, modified_at, num_tracks,
       num_albums, num_artists, duration_ms FROM records;
CREATE TEMP TABLE album AS
SELECT row_number() OVER (ORDER BY album_uri) - 1 AS album_id, * FROM
  (SELECT album_uri, min(album_name) AS album_name FROM entries GROUP BY album_uri);
CREATE TEMP TABLE artist AS
SELECT row_number() OVER (ORDER BY artist_uri) - 1 AS artist_id, * FROM
  (SELECT artist_uri, min(artist_name) AS artist_name FROM entries GROUP BY artist_uri);
CREATE TEMP TABLE track AS
SELECT row_number() OVER (ORDER BY track_uri) - 1 AS track_id, t.track_uri, t.track_name,
       t.duration_ms, al.album_id, ar.artist_id
FROM (SELECT track_uri, min(track_name) AS track_name, min(duration_ms) AS duration_ms,
             min(album_uri) AS album_uri, min(artist_uri) AS artist_uri
      FROM entries GROUP BY track_uri) t
JOIN album al USING (album_uri) JOIN artist ar USING (artist_uri);
CREATE TEMP TABLE playlist_track AS
SELECT p.playlist_id, t.track_id, e.pos FROM
  (SELECT pid, track_uri, min(pos) AS pos FROM entries GROUP BY pid, track_uri) e
JOIN playlist p USING (pid) JOIN track t USING (track_uri);
"""

OUTPUTS = {
    "nodes/playlist": "SELECT * FROM playlist",
    "nodes/track": "SELECT * FROM track",
    "nodes/album": "SELECT * FROM album",
    "nodes/artist": "SELECT * FROM artist",
    "edges/playlist_track": "SELECT * FROM playlist_track",
    "edges/track_album": "SELECT track_id, album_id FROM track",
    "edges/track_artist": "SELECT track_id, artist_id FROM track",
}


def duckdb_core(input_dir: str, output: str, threads: int | None = None) -> dict[str, int]:
    """Write the core tables under ``output``; return their row counts."""
    files = sorted(glob.glob(os.path.join(input_dir, "mpd.slice.*.json")))
    if not files:
        raise FileNotFoundError(f"no mpd.slice.*.json in {input_dir}")
    import duckdb  # the dev extra: only this engine needs it

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    con.execute("SET preserve_insertion_order = false")
    con.execute(SQL.format(files=[f for f in files], playlist=PLAYLIST))
    counts = {}
    for table, query in OUTPUTS.items():
        os.makedirs(os.path.join(output, table), exist_ok=True)
        con.execute(f"COPY ({query}) TO '{os.path.join(output, table, 'part-0.parquet')}' (FORMAT PARQUET)")
        counts[table] = con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
    con.close()
    return counts


def spark_core(spark, input_dir: str, output: str) -> dict[str, int]:
    """The job's own transformations, minus splits and features, written as the contract says."""
    from pyspark.sql import functions as F

    from etl.dedup import dedup_entries, split_bad_uris, split_duplicate_pids, split_missing_pid
    from etl.flatten import entry_count, playlist_records, track_entries
    from etl.schema import CORRUPT_RECORD, SLICE
    from etl.storage import list_slices
    from etl.tables import album_nodes, artist_nodes, catalogue_rows, playlist_nodes, playlist_track_edges, track_nodes

    files = [f for f, _ in list_slices(spark, input_dir)]
    slices = (
        spark.read.schema(SLICE)
        .option("multiLine", True)
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .json(files)
    )
    records = slices.transform(playlist_records).where(~F.col("bad_file"))
    records, _ = split_missing_pid(records, entry_count(records))
    records, _ = split_duplicate_pids(records, entry_count(records))
    records = records.persist()
    entries, _ = split_bad_uris(records.transform(track_entries))
    entries = entries.persist()
    unique, _ = dedup_entries(entries)
    playlists = playlist_nodes(records).persist()
    catalogue = catalogue_rows(entries).persist()
    albums = album_nodes(catalogue).persist()
    artists = artist_nodes(catalogue).persist()
    tracks = track_nodes(catalogue, albums, artists).persist()
    tables = {
        "nodes/playlist": playlists,
        "nodes/track": tracks.drop("conflict"),
        "nodes/album": albums.drop("conflict"),
        "nodes/artist": artists.drop("conflict"),
        "edges/playlist_track": playlist_track_edges(
            unique.join(playlists.select("pid", "playlist_id"), "pid"), tracks
        ).drop("pid"),
        "edges/track_album": tracks.select("track_id", "album_id"),
        "edges/track_artist": tracks.select("track_id", "artist_id"),
    }
    counts = {}
    for name, df in tables.items():
        df.write.mode("overwrite").parquet(f"{output}/{name}")
        counts[name] = spark.read.parquet(f"{output}/{name}").count()
    for df in (records, entries, playlists, albums, artists, tracks):
        df.unpersist()
    return counts


class PeakRss:
    """Peak RSS of this process's children (the JVM) by polling, next to our own ru_maxrss."""

    def __init__(self) -> None:
        import psutil

        self.peak = 0
        self._stop = threading.Event()
        self._me = psutil.Process()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            try:
                rss = sum(c.memory_info().rss for c in self._me.children(recursive=True))
            except Exception:  # a child exited between listing and reading
                continue
            self.peak = max(self.peak, rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def worker(engine: str, input_dir: str, output: str, full: bool, hop2: str) -> dict:
    result: dict = {"engine": engine, "input": input_dir}
    jvm = PeakRss()
    if engine == "duckdb":
        t = time.perf_counter()
        result["counts"] = duckdb_core(input_dir, output)
        result["core_s"] = time.perf_counter() - t
    else:
        from etl import options, pipeline, session

        t = time.perf_counter()
        # The job's own session settings (broadcast limits for hll, adaptive execution).
        spark = session.spark_session(
            options.parse_args(
                [
                    "--input",
                    input_dir,
                    "--output",
                    output,
                    "--master",
                    "local[*]",
                    "--driver-memory",
                    os.environ.get("BENCH_DRIVER_MEMORY", "6g"),
                ]
            )
        )
        spark.sparkContext.setLogLevel("ERROR")
        result["startup_s"] = time.perf_counter() - t
        size = sum(os.path.getsize(os.path.join(input_dir, f)) for f in os.listdir(input_dir))
        spark.conf.set("spark.sql.shuffle.partitions", str(max(4, size // (64 * 2**20))))
        warm = SAMPLE if os.path.isdir(SAMPLE) else input_dir
        t = time.perf_counter()
        if full:
            args = ["--input", input_dir, "--output", output, "--hop2", hop2, "--overwrite"]
            pipeline.build_graph_dir(
                options.parse_args(["--input", warm, "--output", output + "-warm", "--hop2", "off", "--overwrite"]),
                spark,
            )
            result["warmup_s"] = time.perf_counter() - t
            t = time.perf_counter()
            m = pipeline.build_graph_dir(options.parse_args(args), spark)
            result["core_s"] = time.perf_counter() - t
            result["counts"] = {k: v for k, v in m["counts"].items()}
            result["timings"] = m["timings"]
        else:
            spark_core(spark, warm, output + "-warm")
            result["warmup_s"] = time.perf_counter() - t
            t = time.perf_counter()
            result["counts"] = spark_core(spark, input_dir, output)
            result["core_s"] = time.perf_counter() - t
        spark.stop()
    result["children_peak_rss_mb"] = jvm.stop() / 2**20
    result["python_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["output_mb"] = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(output) for f in fs) / 2**20
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000, 20000, 40000])
    ap.add_argument("--data", default="/tmp/bench_etl")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--engines", nargs="+", default=["spark", "duckdb"])
    ap.add_argument("--full", action="store_true", help="time the whole Spark job instead of the core")
    ap.add_argument("--hop2", default="hll")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--input", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--output", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.input, args.output, args.full, args.hop2)))
        return

    rows = []
    for n in args.sizes:
        data = os.path.join(args.data, f"mpd{n // 1000}k")
        if not os.path.isdir(data):
            subprocess.run(
                [sys.executable, "-m", "etl.synth", "--playlists", str(n), "--out", data, "--seed", "1", "--quiet"],
                check=True,
                cwd=REPO,
            )
        for engine in ["spark"] if args.full else args.engines:
            for r in range(args.repeats):
                out = os.path.join(args.data, f"out-{engine}-{n}")
                shutil.rmtree(out, ignore_errors=True)
                cmd = [
                    sys.executable,
                    __file__,
                    "--worker",
                    engine,
                    "--input",
                    data,
                    "--output",
                    out,
                    "--hop2",
                    args.hop2,
                ] + (["--full"] if args.full else [])
                start = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                if proc.returncode:
                    sys.exit(f"{engine} at {n} failed:\n{proc.stderr[-3000:]}")
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                res.update(
                    playlists=n,
                    repeat=r,
                    process_s=time.perf_counter() - start,
                    input_mb=sum(os.path.getsize(os.path.join(data, f)) for f in os.listdir(data)) / 2**20,
                )
                du = subprocess.run(["du", "-sm", out], capture_output=True, text=True)
                res["disk_mb"] = int(du.stdout.split()[0]) if du.returncode == 0 else None
                print(json.dumps(res), flush=True)
                rows.append(res)
                shutil.rmtree(out, ignore_errors=True)

    print("\n| playlists | engine | core s (median) | start-up s | python peak MB | JVM/children peak MB |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        for engine in ["spark"] if args.full else args.engines:
            rs = [r for r in rows if r["playlists"] == n and r["engine"] == engine]

            def med(k):
                return statistics.median(r[k] for r in rs) if rs and k in rs[0] else float("nan")

            print(
                f"| {n} | {engine} | {med('core_s'):.1f} | {med('startup_s'):.1f} | "
                f"{med('python_peak_rss_mb'):.0f} | {med('children_peak_rss_mb'):.0f} |"
            )


if __name__ == "__main__":
    main()
