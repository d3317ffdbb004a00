"""MPD content as columns: playlists, their track entries and the track/album/artist rows, from
the generator (the very playlists its JSON slices hold) or from parsed MPD JSON."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl.synth.playlists import STREAM_SLICE, generate_batch
from etl.synth.slices import PLAYLISTS_PER_SLICE, slice_bounds
from etl.synth.tracks import album_of, artist_of, describe_tracks


@dataclass
class ColumnarMPD:
    """Columnar MPD content: playlists, their track entries, and the track/album/artist keys."""

    pid: np.ndarray  # (P,) int64
    name: list[str]
    num_followers: np.ndarray
    collaborative: np.ndarray  # bool
    num_edits: np.ndarray
    modified_at: np.ndarray
    entry_playlist: np.ndarray  # (E,) row into the playlist arrays
    entry_track: np.ndarray  # (E,) row into the track arrays
    entry_pos: np.ndarray
    track_uri: list[str]
    track_name: list[str]
    track_duration: np.ndarray
    track_album: np.ndarray  # row into album arrays
    track_artist: np.ndarray  # row into artist arrays
    album_uri: list[str]
    album_name: list[str]
    artist_uri: list[str]
    artist_name: list[str]


def columnar_from_mpd(playlists: list[dict]) -> ColumnarMPD:
    """Columnar view of MPD JSON playlists (the ``playlists`` list of a slice)."""
    tracks: dict[str, int] = {}
    albums: dict[str, int] = {}
    artists: dict[str, int] = {}
    t_name, t_dur, t_alb, t_art, al_name, ar_name = [], [], [], [], [], []
    e_pl, e_tr, e_pos = [], [], []
    for row, p in enumerate(playlists):
        for t in p["tracks"]:
            if t["album_uri"] not in albums:
                albums[t["album_uri"]] = len(albums)
                al_name.append(t["album_name"])
            if t["artist_uri"] not in artists:
                artists[t["artist_uri"]] = len(artists)
                ar_name.append(t["artist_name"])
            if t["track_uri"] not in tracks:
                tracks[t["track_uri"]] = len(tracks)
                t_name.append(t["track_name"])
                t_dur.append(t["duration_ms"])
                t_alb.append(albums[t["album_uri"]])
                t_art.append(artists[t["artist_uri"]])
            e_pl.append(row)
            e_tr.append(tracks[t["track_uri"]])
            e_pos.append(t["pos"])

    def i64(v):
        return np.asarray(v, dtype=np.int64)

    return ColumnarMPD(
        pid=i64([p["pid"] for p in playlists]),
        name=[p["name"] for p in playlists],
        num_followers=i64([p["num_followers"] for p in playlists]),
        collaborative=np.array([p["collaborative"] == "true" for p in playlists], dtype=bool),
        num_edits=i64([p["num_edits"] for p in playlists]),
        modified_at=i64([p["modified_at"] for p in playlists]),
        entry_playlist=i64(e_pl),
        entry_track=i64(e_tr),
        entry_pos=i64(e_pos),
        track_uri=list(tracks),
        track_name=t_name,
        track_duration=i64(t_dur),
        track_album=i64(t_alb),
        track_artist=i64(t_art),
        album_uri=list(albums),
        album_name=al_name,
        artist_uri=list(artists),
        artist_name=ar_name,
    )


def generated_columnar(n_playlists: int, seed: int = 0, log=None) -> ColumnarMPD:
    """The generator's first ``n_playlists`` playlists: the very playlists its JSON slices hold."""
    batches = []
    for index in range(-(-n_playlists // PLAYLISTS_PER_SLICE)):
        first, last = slice_bounds(n_playlists, index)
        batches.append(generate_batch(seed, STREAM_SLICE, index, first, last - first + 1))
        if log and (index + 1) % 100 == 0:
            log(f"generated {last + 1:,} playlists")
    keys, entry_track = np.unique(np.concatenate([b.tracks for b in batches]), return_inverse=True)
    lengths = np.concatenate([np.diff(b.offsets) for b in batches])
    tracks = describe_tracks(keys, seed)
    _, track_album = np.unique(album_of(keys), return_inverse=True)
    _, track_artist = np.unique(artist_of(keys), return_inverse=True)
    first_album = np.unique(track_album, return_index=True)[1]
    first_artist = np.unique(track_artist, return_index=True)[1]

    def cat(attr):
        return np.concatenate([getattr(b, attr) for b in batches])

    return ColumnarMPD(
        pid=cat("pids"),
        name=[n for b in batches for n in b.names],
        num_followers=cat("num_followers"),
        collaborative=cat("collaborative"),
        num_edits=cat("num_edits"),
        modified_at=cat("modified_at"),
        entry_playlist=np.repeat(np.arange(lengths.size), lengths),
        entry_track=entry_track.astype(np.int64),
        entry_pos=np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths),
        track_uri=tracks.uri,
        track_name=tracks.name,
        track_duration=tracks.duration_ms,
        track_album=track_album.astype(np.int64),
        track_artist=track_artist.astype(np.int64),
        album_uri=[tracks.album_uri[i] for i in first_album],
        album_name=[tracks.album_name[i] for i in first_album],
        artist_uri=[tracks.artist_uri[i] for i in first_artist],
        artist_name=[tracks.artist_name[i] for i in first_artist],
    )
