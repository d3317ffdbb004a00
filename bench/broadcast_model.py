"""The hll 2-hop sketches' broadcast of a graph dir, counted exactly, beside the model the ETL
checks ``--driver-memory`` with (``etl.broadcast.check_driver_memory``).

    python bench/broadcast_model.py --graph G [--json-bytes N]

Exact: one sketch per middle node of the graph the features see (visible playlist-track edges;
tracks with a visible edge and their albums and artists), ``etl.broadcast.sketch_table_bytes`` of
each node's distinct ends: co-playlists' (a sketch of its playlists per track) and co-tracks'
(a sketch of its tracks per playlist, album and artist). Model: ``hll_broadcast_bytes`` of the
same counts (uncapped sketches: a bound), and ``estimated_broadcast_bytes`` of the input's JSON
size (``--json-bytes``; default: the visible entries at ``JSON_BYTES_PER_ENTRY``). One JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from etl import broadcast, contract
from trainer.io.graph import read_table


def exact(graph: str) -> dict:
    edges = read_table(graph, "edges/playlist_track", ["playlist_id", "track_id", "role"])
    visible = pc.is_in(edges["role"], value_set=pa.array(list(contract.VISIBLE_ROLES))).to_numpy(zero_copy_only=False)
    playlist = edges["playlist_id"].to_numpy()[visible]
    track = edges["track_id"].to_numpy()[visible]
    pairs = np.unique(playlist.astype(np.int64) * (int(track.max()) + 1) + track)  # distinct (playlist, track)
    n_tracks = int(track.max()) + 1
    playlist, track = pairs // n_tracks, pairs % n_tracks
    tracks_seen = np.unique(track)
    albums = read_table(graph, "edges/track_album", ["track_id", "album_id"])
    artists = read_table(graph, "edges/track_artist", ["track_id", "artist_id"])

    def per(table, column):  # tracks with a visible edge, per album or artist
        keep = np.isin(table["track_id"].to_numpy(), tracks_seen)
        return np.bincount(table[column].to_numpy()[keep])

    per_playlist, per_track = np.bincount(playlist), np.bincount(track)
    per_album, per_artist = per(albums, "album_id"), per(artists, "artist_id")
    nonzero = [d[d > 0] for d in (per_playlist, per_track, per_album, per_artist)]
    counts = {
        "entries": int(pairs.size),
        "playlists": int(nonzero[0].size),
        "tracks": int(nonzero[1].size),
        "albums": int(nonzero[2].size),
        "artists": int(nonzero[3].size),
    }
    return {
        "counts": counts,
        "co_playlists_bytes": broadcast.sketch_table_bytes(nonzero[1]),
        "co_tracks_bytes": sum(broadcast.sketch_table_bytes(d) for d in (nonzero[0], nonzero[2], nonzero[3])),
        "model_bytes_from_counts": broadcast.hll_broadcast_bytes(**counts),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--graph", required=True)
    ap.add_argument("--json-bytes", type=int, help="the input's JSON size (default: entries x JSON_BYTES_PER_ENTRY)")
    a = ap.parse_args(argv)
    out = {"graph": a.graph, **exact(a.graph)}
    json_bytes = a.json_bytes or out["counts"]["entries"] * broadcast.JSON_BYTES_PER_ENTRY
    out["json_bytes"] = json_bytes
    out["model_bytes_from_input"] = broadcast.estimated_broadcast_bytes(json_bytes)
    largest = max(out["co_playlists_bytes"], out["co_tracks_bytes"])
    out["model_over_exact"] = {
        k: round(out[k] / largest, 3) for k in ("model_bytes_from_counts", "model_bytes_from_input")
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
