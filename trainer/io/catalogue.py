"""What evaluation, recommendation and submission read from a graph dir and a run dir.

The track catalogue (ids, URIs, artists), the playlists (split, seed category, title) and the
playlist-track edges, read with pyarrow and checked against ``etl.contract``; and the exported
embeddings of a run, checked against the graph they claim to come from.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from etl import contract
from trainer.io.graph import read_manifest, read_table

_PUNCTUATION = re.compile(r"[.,/#!$%^*;:{}=_`~()@'\"\-\[\]?&+<>|\\]")


def normalise_title(title: str | None) -> str:
    """Lower-case, punctuation to spaces, whitespace collapsed (the challenge's normalize_name)."""
    if not title:
        return ""
    return " ".join(_PUNCTUATION.sub(" ", title.lower()).split())


def _dense_ids(values: np.ndarray, table: str, column: str) -> None:
    if not np.array_equal(values, np.arange(len(values))):
        raise contract.ContractError(
            f"{table}: {column} is not the dense range 0..{len(values) - 1} in row order"
        )


@dataclass
class Catalogue:
    """The parts of a graph dir that ranking needs, as numpy arrays indexed by dense id."""

    path: str
    manifest: dict
    track_uri: np.ndarray        # object [T]
    track_artist: np.ndarray     # int64 [T]
    playlist_pid: np.ndarray     # int64 [P]
    playlist_split: np.ndarray   # object [P]
    playlist_category: np.ndarray  # object [P]; None for training playlists
    playlist_title: list[str]    # normalised titles [P]
    edge_playlist: np.ndarray    # int64 [E]
    edge_track: np.ndarray       # int64 [E]
    edge_role: np.ndarray        # int8 [E]: index into contract.ROLES (train / seed / hidden)

    @property
    def num_tracks(self) -> int:
        return len(self.track_uri)

    @property
    def num_playlists(self) -> int:
        return len(self.playlist_pid)

    def edges(self, roles: tuple[str, ...], splits: tuple[str, ...] | None = None) -> sp.csr_matrix:
        """Binary playlist × track matrix of the edges with these roles (repeats counted once)."""
        keep = np.isin(self.edge_role, [contract.ROLES.index(r) for r in roles])
        if splits is not None:
            keep &= np.isin(self.playlist_split[self.edge_playlist], splits)
        m = sp.csr_matrix(
            (np.ones(int(keep.sum()), dtype=np.float32),
             (self.edge_playlist[keep], self.edge_track[keep])),
            shape=(self.num_playlists, self.num_tracks),
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def track_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.track_uri)}


def load_catalogue(graph: str | Path) -> Catalogue:
    """Read and check the tables ranking needs from a graph dir."""
    graph = str(graph)
    manifest = read_manifest(graph)
    tracks = read_table(graph, "nodes/track", ["track_id", "track_uri", "artist_id"])
    tracks = tracks.sort_by("track_id")
    _dense_ids(tracks["track_id"].to_numpy(), "nodes/track", "track_id")
    playlists = read_table(
        graph, "nodes/playlist", ["playlist_id", "pid", "name", "split", "seed_category"]
    ).sort_by("playlist_id")
    _dense_ids(playlists["playlist_id"].to_numpy(), "nodes/playlist", "playlist_id")
    edges = read_table(graph, "edges/playlist_track", ["playlist_id", "track_id", "role"])
    role = edges["role"].combine_chunks().dictionary_encode()
    unknown = set(role.dictionary.to_pylist()) - set(contract.ROLES)
    if unknown:
        raise contract.ContractError(
            f"edges/playlist_track: role has values {sorted(unknown)}; contract roles are"
            f" {list(contract.ROLES)}"
        )
    if role.null_count:
        raise contract.ContractError(f"edges/playlist_track: role is null in {role.null_count} rows")
    role_codes = np.array([contract.ROLES.index(r) for r in role.dictionary.to_pylist()], np.int8)
    splits = playlists["split"].to_numpy(zero_copy_only=False).astype(object)
    bad = set(splits) - set(contract.SPLITS)
    if bad:
        raise contract.ContractError(
            f"nodes/playlist: split has values {sorted(bad)}; contract splits are"
            f" {list(contract.SPLITS)}"
        )
    return Catalogue(
        path=graph,
        manifest=manifest,
        track_uri=tracks["track_uri"].to_numpy(zero_copy_only=False).astype(object),
        track_artist=tracks["artist_id"].to_numpy().astype(np.int64),
        playlist_pid=playlists["pid"].to_numpy().astype(np.int64),
        playlist_split=splits,
        playlist_category=playlists["seed_category"].to_numpy(zero_copy_only=False).astype(object),
        playlist_title=[normalise_title(t) for t in playlists["name"].to_pylist()],
        edge_playlist=edges["playlist_id"].to_numpy().astype(np.int64),
        edge_track=edges["track_id"].to_numpy().astype(np.int64),
        edge_role=role_codes[role.indices.to_numpy()],
    )


def track_details(graph: str | Path, track_ids: np.ndarray) -> list[dict]:
    """Name, artist and URI of some tracks (for printing recommendations)."""
    graph = str(graph)
    tracks = read_table(graph, "nodes/track", ["track_id", "track_uri", "track_name", "artist_id"])
    artists = read_table(graph, "nodes/artist", ["artist_id", "artist_name"])
    want = pa.array(np.asarray(track_ids, dtype=np.int64))
    tracks = tracks.filter(pc.is_in(tracks["track_id"], want)).to_pylist()
    by_id = {t["track_id"]: t for t in tracks}
    artist_name = dict(zip(artists["artist_id"].to_pylist(), artists["artist_name"].to_pylist()))
    return [
        {**by_id[int(t)], "artist_name": artist_name.get(by_id[int(t)]["artist_id"])}
        for t in track_ids
    ]


# --- run dirs -----------------------------------------------------------------------------------
EMBEDDINGS = "embeddings"


class RunMismatchError(ValueError):
    """A run dir's embeddings do not belong to the graph dir they are used with."""


def check_run_matches_graph(run: str | Path, graph: Catalogue) -> None:
    """Raise RunMismatchError when the run was trained on another graph dir.

    Compares the manifest facts that ``RUN_DIR/graph.json`` records (creation time, row counts,
    split) with the graph's manifest.
    """
    path = Path(run) / "graph.json"
    if not path.is_file():
        return
    recorded = json.loads(path.read_text())
    manifest = recorded.get("manifest", recorded)
    differ = [
        key for key in ("created_at", "counts", "split", "schema_version")
        if key in manifest and manifest[key] != graph.manifest.get(key)
    ]
    if differ:
        raise RunMismatchError(
            f"run {run} was trained on another graph dir ({recorded.get('graph', recorded.get('path', '?'))}):"
            f" its graph.json differs from {graph.path}/{contract.MANIFEST} in {differ}"
        )


def load_track_embeddings(run: str | Path, graph: Catalogue) -> np.ndarray:
    """Track embeddings [T, d] float32 in track_id order, checked against the graph's tracks."""
    table = _read_embeddings(run, "track", ["track_id", "track_uri", "embedding"])
    ids = table["track_id"].to_numpy()
    if len(ids) != graph.num_tracks or not np.array_equal(ids, np.arange(graph.num_tracks)):
        raise RunMismatchError(
            f"{run}/{EMBEDDINGS}/track.parquet has {len(ids)} tracks, graph {graph.path} has"
            f" {graph.num_tracks} (ids 0..{graph.num_tracks - 1}): embeddings of another graph?"
        )
    uris = table["track_uri"].to_numpy(zero_copy_only=False)
    if not np.array_equal(uris, graph.track_uri):
        first = int(np.flatnonzero(uris != graph.track_uri)[0])
        raise RunMismatchError(
            f"{run}/{EMBEDDINGS}/track.parquet: track_id {first} is {uris[first]}, graph"
            f" {graph.path} has {graph.track_uri[first]}: embeddings of another graph"
        )
    return _matrix(table["embedding"])


def load_playlist_embeddings(run: str | Path, graph: Catalogue) -> np.ndarray:
    """Playlist embeddings [P, d] float32 in playlist_id order, checked against the graph."""
    table = _read_embeddings(run, "playlist", ["playlist_id", "pid", "embedding"])
    ids = table["playlist_id"].to_numpy()
    pids = table["pid"].to_numpy()
    if not np.array_equal(ids, np.arange(graph.num_playlists)) or not np.array_equal(
        pids, graph.playlist_pid
    ):
        raise RunMismatchError(
            f"{run}/{EMBEDDINGS}/playlist.parquet: {len(ids)} playlists whose ids/pids differ"
            f" from graph {graph.path} ({graph.num_playlists} playlists): embeddings of another graph"
        )
    return _matrix(table["embedding"])


def load_seed_query(run: str | Path, graph: Catalogue) -> dict | None:
    """The run's exact seed-query terms (``trainer.embed.seed_query``) with ``track_seed`` [T, d]
    in track_id order, or None when the model has none (``conv=sage``) or they were not exported."""
    path = Path(run) / EMBEDDINGS / "seed_query.json"
    if not path.exists() or not (Path(run) / EMBEDDINGS / "track_seed.parquet").exists():
        return None
    query = json.loads(path.read_text())
    table = _read_embeddings(run, "track_seed", ["track_id", "embedding"])
    if not np.array_equal(table["track_id"].to_numpy(), np.arange(graph.num_tracks)):
        raise RunMismatchError(f"{run}/{EMBEDDINGS}/track_seed.parquet does not cover the graph's "
                               f"{graph.num_tracks} tracks: embeddings of another graph?")
    query["track_seed"] = _matrix(table["embedding"])
    return query


def has_embeddings(run: str | Path) -> bool:
    return (Path(run) / EMBEDDINGS / "track.parquet").exists()


def default_method(run: str | Path) -> str:
    """What recommend and submit use when not told: the GNN once its embeddings exist."""
    return "gnn" if has_embeddings(run) else "itemknn"


def _read_embeddings(run: str | Path, kind: str, columns: list[str]) -> pa.Table:
    path = Path(run) / EMBEDDINGS / f"{kind}.parquet"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: export the run's embeddings first"
            f" (python -m trainer.embed --run {run} ...)"
        )
    table = pq.read_table(path, columns=columns)
    return table.sort_by(columns[0])


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    rows = len(column)
    if rows == 0:
        return np.zeros((0, 0), dtype=np.float32)
    lengths = pc.list_value_length(column)
    extremes = pc.min_max(lengths)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    if low != high:
        raise ValueError(f"embedding column: rows have lengths from {low} to {high}; need one")
    flat = pc.list_flatten(column).to_numpy().astype(np.float32, copy=False)
    return flat.reshape(rows, high)
