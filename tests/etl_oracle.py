"""An independent, pure-Python/networkx reading of MPD slices and graph dirs, for ETL tests."""

from __future__ import annotations

import glob
import json
import os

import networkx as nx
import pyarrow.parquet as pq

from etl.contract import SEED_CATEGORY_BY_NAME, TABLES


def read_table(graph_dir, table: str) -> list[dict]:
    return pq.read_table(os.path.join(graph_dir, table)).to_pylist()


def read_graph(graph_dir) -> dict[str, list[dict]]:
    return {t: read_table(graph_dir, t) for t in TABLES}


def load_playlists(input_dir) -> list[dict]:
    """Playlist records of all slices, in file-name then record order."""
    out = []
    for path in sorted(glob.glob(os.path.join(input_dir, "mpd.slice.*.json"))):
        with open(path) as f:
            out += json.load(f)["playlists"]
    return out


def dedup(playlists: list[dict]):
    """(first record per pid, {(pid, track_uri): first pos}, {track_uri: track entry})."""
    records: dict[int, dict] = {}
    for p in playlists:
        records.setdefault(p["pid"], p)
    entries: dict[tuple[int, str], int] = {}
    tracks: dict[str, dict] = {}
    for p in records.values():
        for t in p["tracks"]:
            key = (p["pid"], t["track_uri"])
            entries[key] = min(entries.get(key, t["pos"]), t["pos"])
            tracks.setdefault(t["track_uri"], t)
    return records, entries, tracks


def visible_graph(entries_visible: set[tuple[int, str]], tracks: dict[str, dict]) -> nx.Graph:
    """The message-passing graph: visible playlist-track edges, and album/artist edges of the
    tracks that have one, undirected; every node of the catalogue present."""
    g = nx.Graph()
    g.add_nodes_from(("track", u) for u in tracks)
    g.add_nodes_from(("album", t["album_uri"]) for t in tracks.values())
    g.add_nodes_from(("artist", t["artist_uri"]) for t in tracks.values())
    for pid, uri in entries_visible:
        g.add_edge(("playlist", pid), ("track", uri))
    for pid, uri in entries_visible:
        t = tracks[uri]
        g.add_edge(("track", uri), ("album", t["album_uri"]))
        g.add_edge(("track", uri), ("artist", t["artist_uri"]))
    return g


def hop2(g: nx.Graph, v) -> tuple[int, int]:
    """(hop2_walks, hop2_reach) of node v, straight from the definitions."""
    walks = sum(g.degree(u) for u in g[v])
    reach = len(nx.single_source_shortest_path_length(g, v, cutoff=2))
    return walks, reach


def expected_seeds(category: str, entries: list[tuple[int, str]]) -> int:
    """Number of seed edges a held-out playlist with these (pos, uri) entries must have."""
    return min(SEED_CATEGORY_BY_NAME[category].num_seeds, len(entries))
