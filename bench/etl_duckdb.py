"""The ETL's core in DuckDB, as a yardstick for the Spark job on one machine.

parse (explicit column types) -> explode playlists and tracks -> dedup (pid: first record by
file and index; entries: first pos per (pid, track_uri); entities: smallest attribute per URI)
-> dense ids in key order -> the contract's node and edge tables as Parquet. No splits, no
features: bench/bench_etl.py times the same core in Spark.

    python bench/etl_duckdb.py --input DIR --output DIR [--threads N]
"""
from __future__ import annotations

import argparse
import glob
import os
import time

import duckdb

TRACK = ("STRUCT(pos BIGINT, artist_name VARCHAR, track_uri VARCHAR, artist_uri VARCHAR, "
         "track_name VARCHAR, album_uri VARCHAR, duration_ms BIGINT, album_name VARCHAR)")
PLAYLIST = ("STRUCT(name VARCHAR, collaborative VARCHAR, pid BIGINT, modified_at BIGINT, "
            "num_tracks BIGINT, num_albums BIGINT, num_followers BIGINT, "
            f"tracks {TRACK}[], num_edits BIGINT, duration_ms BIGINT, num_artists BIGINT, "
            "description VARCHAR)")

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


def run(input_dir: str, output: str, threads: int | None = None) -> dict[str, int]:
    """Write the core tables under ``output``; return their row counts."""
    files = sorted(glob.glob(os.path.join(input_dir, "mpd.slice.*.json")))
    if not files:
        raise FileNotFoundError(f"no mpd.slice.*.json in {input_dir}")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    t = time.perf_counter()
    counts = run(args.input, args.output, args.threads)
    print(f"{time.perf_counter() - t:.2f} s", counts)


if __name__ == "__main__":
    main()
