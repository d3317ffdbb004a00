"""Memory per playlist of the seed notebook's approach: the whole MPD in one networkx graph.

Loads playlists from slices into an undirected networkx graph the way the seed did (a node per
playlist, track, album and artist, carrying its attributes; an edge per playlist-track,
track-album and track-artist link) and reports the RSS growth per playlist, to compare with the
Spark job, whose driver memory does not grow with the input.

    python bench/networkx_memory.py --input /tmp/bench_etl/mpd10k --playlists 1000 2000 4000
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import os

import networkx as nx
import psutil


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def build(playlists: list[dict]) -> nx.Graph:
    g = nx.Graph()
    for p in playlists:
        pn = ("playlist", p["pid"])
        g.add_node(pn, **{k: v for k, v in p.items() if k != "tracks"})
        for t in p["tracks"]:
            tn, an, rn = ("track", t["track_uri"]), ("album", t["album_uri"]), ("artist", t["artist_uri"])
            g.add_node(tn, name=t["track_name"], duration_ms=t["duration_ms"])
            g.add_node(an, name=t["album_name"])
            g.add_node(rn, name=t["artist_name"])
            g.add_edge(pn, tn)
            g.add_edge(tn, an)
            g.add_edge(tn, rn)
    return g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", required=True)
    ap.add_argument("--playlists", type=int, nargs="+", default=[1000, 2000, 4000])
    args = ap.parse_args()
    need = max(args.playlists)
    playlists: list[dict] = []
    for path in sorted(glob.glob(os.path.join(args.input, "mpd.slice.*.json"))):
        with open(path) as f:
            playlists += json.load(f)["playlists"]
        if len(playlists) >= need:
            break
    entries = sum(len(p["tracks"]) for p in playlists[:need])
    print(f"parsed {len(playlists)} playlists ({entries} entries in the first {need})")
    for n in args.playlists:
        before = rss_mb()
        g = build(playlists[:n])
        after = rss_mb()
        print(
            json.dumps(
                {
                    "playlists": n,
                    "nodes": g.number_of_nodes(),
                    "edges": g.number_of_edges(),
                    "rss_delta_mb": round(after - before, 1),
                    "kb_per_playlist": round((after - before) * 1024 / n, 1),
                    "extrapolated_1m_playlists_gb": round((after - before) / n * 1e6 / 1024, 1),
                }
            )
        )
        del g


if __name__ == "__main__":
    main()
