"""The ranking catalogue: the parts of a graph dir that scoring, evaluation and the second stage
need (URIs, artists, titles, splits, the playlist-track edges), as numpy arrays indexed by dense
id, read through ``trainer/io/graph.py``'s checked readers."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from etl import contract
from trainer.io.graph import checked_ids, playlist_splits, playlist_track_edges, read_manifest, read_nodes, read_table

_PUNCTUATION = re.compile(r"[.,/#!$%^*;:{}=_`~()@'\"\-\[\]?&+<>|\\]")


def normalise_title(title: str | None) -> str:
    """Lower-case, punctuation to spaces, whitespace collapsed (the challenge's normalize_name)."""
    if not title:
        return ""
    return " ".join(_PUNCTUATION.sub(" ", title.lower()).split())


@dataclass
class Catalogue:
    """The parts of a graph dir that ranking needs, as numpy arrays indexed by dense id."""

    path: str
    manifest: dict
    track_uri: np.ndarray  # object [T]
    track_artist: np.ndarray  # int64 [T]
    playlist_pid: np.ndarray  # int64 [P]
    playlist_split: np.ndarray  # object [P]
    playlist_category: np.ndarray  # object [P]; None for training playlists
    playlist_title: list[str]  # normalised titles [P]
    edge_playlist: np.ndarray  # int64 [E]
    edge_track: np.ndarray  # int64 [E]
    edge_role: np.ndarray  # int8 [E]: index into contract.ROLES (train / seed / hidden)

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
            (np.ones(int(keep.sum()), dtype=np.float32), (self.edge_playlist[keep], self.edge_track[keep])),
            shape=(self.num_playlists, self.num_tracks),
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        return m

    def track_index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.track_uri)}


def load_catalogue(path: str) -> Catalogue:
    """Read and check the tables ranking needs from a graph dir."""
    path = str(path)
    manifest = read_manifest(path)
    tracks = read_nodes(path, "track", ["track_uri", "artist_id"])
    playlists = read_nodes(path, "playlist", ["pid", "name", "split", "seed_category"])
    src, dst, roles = playlist_track_edges(path, {"playlist": playlists.num_rows, "track": tracks.num_rows})
    return Catalogue(
        path=path,
        manifest=manifest,
        track_uri=tracks["track_uri"].to_numpy(zero_copy_only=False).astype(object),
        track_artist=tracks["artist_id"].to_numpy().astype(np.int64),
        playlist_pid=playlists["pid"].to_numpy().astype(np.int64),
        playlist_split=playlist_splits(playlists),
        playlist_category=playlists["seed_category"].to_numpy(zero_copy_only=False).astype(object),
        playlist_title=[normalise_title(t) for t in playlists["name"].to_pylist()],
        edge_playlist=src.astype(np.int64),
        edge_track=dst.astype(np.int64),
        edge_role=roles,
    )


def track_names(path: str) -> dict[str, tuple[np.ndarray, list[str]]]:
    """Each track's artist, album and track name, normalised as titles are: per field, an int64
    code per track (dense id) into a list of the distinct names (a name is normalised once,
    whichever of the 2.3M tracks of the full MPD carry it)."""
    tracks = read_nodes(path, "track", ["track_name", "album_id", "artist_id"])
    out = {}
    for field in ("artist", "album"):
        names = read_nodes(path, field, [f"{field}_name"])[f"{field}_name"].to_pylist()
        out[field] = (
            checked_ids(tracks, "nodes/track", f"{field}_id", len(names)).astype(np.int64),
            [normalise_title(n) for n in names],
        )
    coded = pc.dictionary_encode(pc.fill_null(tracks["track_name"], "")).combine_chunks()
    out["track"] = (
        coded.indices.to_numpy(zero_copy_only=False).astype(np.int64),
        [normalise_title(n) for n in coded.dictionary.to_pylist()],
    )
    return out


def track_details(path: str, track_ids: np.ndarray) -> list[dict]:
    """Name, artist and URI of some tracks (for printing recommendations)."""
    tracks = read_table(path, "nodes/track", ["track_id", "track_uri", "track_name", "artist_id"])
    artists = read_table(path, "nodes/artist", ["artist_id", "artist_name"])
    want = pa.array(np.asarray(track_ids, dtype=np.int64))
    by_id = {t["track_id"]: t for t in tracks.filter(pc.is_in(tracks["track_id"], want)).to_pylist()}
    artist_name = dict(zip(artists["artist_id"].to_pylist(), artists["artist_name"].to_pylist()))
    return [{**by_id[int(t)], "artist_name": artist_name.get(by_id[int(t)]["artist_id"])} for t in track_ids]
