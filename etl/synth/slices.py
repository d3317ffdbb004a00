"""MPD slice files: a batch of playlists rendered byte for byte as the published files are."""

from __future__ import annotations

import os
from dataclasses import dataclass
from json.encoder import (
    encode_basestring_ascii as _json_str,  # json.dumps(ensure_ascii=True)'s escaper
)

import numpy as np

from etl.synth.playlists import STREAM_SLICE, Batch, distinct_per_playlist, generate_batch
from etl.synth.tracks import Tracks, album_of, artist_of, describe_tracks

PLAYLISTS_PER_SLICE = 1000
SLICE_VERSION = "v1"


_I2, _I3, _I4, _I5 = " " * 8, " " * 12, " " * 16, " " * 20


def _track_bodies(t: Tracks) -> list[str]:
    """Each track's JSON text after its ``pos`` line (fields in the MPD's order)."""
    j = _json_str
    return [
        f'{_I5}"artist_name": {j(an)}, \n{_I5}"track_uri": "{tu}", \n{_I5}"artist_uri": "{au}", \n'
        f'{_I5}"track_name": {j(tn)}, \n{_I5}"album_uri": "{bu}", \n{_I5}"duration_ms": {d}, \n'
        f'{_I5}"album_name": {j(bn)}\n{_I4}}}'
        for an, tu, au, tn, bu, d, bn in zip(
            t.artist_name, t.uri, t.artist_uri, t.name, t.album_uri, t.duration_ms.tolist(), t.album_name
        )
    ]


@dataclass
class PlaylistCounts:
    """Per-playlist values the MPD derives from the track list."""

    num_tracks: np.ndarray
    num_albums: np.ndarray
    num_artists: np.ndarray
    duration_ms: np.ndarray


def playlist_counts(batch: Batch, durations_per_entry: np.ndarray) -> PlaylistCounts:
    P = batch.pids.size
    lengths = np.diff(batch.offsets)
    playlist = np.repeat(np.arange(P), lengths)
    return PlaylistCounts(
        num_tracks=lengths,
        num_albums=distinct_per_playlist(playlist, album_of(batch.tracks), P),
        num_artists=distinct_per_playlist(playlist, artist_of(batch.tracks), P),
        duration_ms=np.add.reduceat(durations_per_entry, batch.offsets[:-1]),
    )


def render_slice(batch: Batch, seed: int, slice_name: str) -> str:
    """The slice file's full text (ends with a newline, as the published files do)."""
    keys, inv = np.unique(batch.tracks, return_inverse=True)
    tracks = describe_tracks(keys, seed)
    bodies = _track_bodies(tracks)
    counts = playlist_counts(batch, tracks.duration_ms[inv])
    inv_l = inv.tolist()
    lengths = counts.num_tracks.tolist()
    entry_head = f'{_I4}{{\n{_I5}"pos": '
    parts = []
    start = 0
    for i, pid in enumerate(batch.pids.tolist()):
        n = lengths[i]
        entries = ", \n".join([f"{entry_head}{p}, \n{bodies[k]}" for p, k in enumerate(inv_l[start : start + n])])
        start += n
        desc = batch.descriptions[i]
        parts.append(
            f'{_I2}{{\n{_I3}"name": {_json_str(batch.names[i])}, \n'
            f'{_I3}"collaborative": "{"true" if batch.collaborative[i] else "false"}", \n'
            f'{_I3}"pid": {pid}, \n{_I3}"modified_at": {batch.modified_at[i]}, \n'
            f'{_I3}"num_tracks": {n}, \n{_I3}"num_albums": {counts.num_albums[i]}, \n'
            f'{_I3}"num_followers": {batch.num_followers[i]}, \n{_I3}"tracks": [\n{entries}\n{_I3}], \n'
            f'{_I3}"num_edits": {batch.num_edits[i]}, \n{_I3}"duration_ms": {counts.duration_ms[i]}, \n'
            f'{_I3}"num_artists": {counts.num_artists[i]}'
            + (f', \n{_I3}"description": {_json_str(desc)}' if desc is not None else "")
            + f"\n{_I2}}}"
        )
    return (
        f'{{\n    "info": {{\n{_I2}"generated_on": {_json_str(generated_on(seed))}, \n'
        f'{_I2}"slice": "{slice_name}", \n{_I2}"version": "{SLICE_VERSION}"\n    }}, \n'
        f'    "playlists": [\n' + ", \n".join(parts) + "\n    ]\n}\n"
    )


def generated_on(seed: int) -> str:
    """The info block's timestamp: fixed per seed (not the clock), so reruns are byte-identical."""
    return f"2017-12-03 08:41:42.{seed % 1_000_000:06d}"


def slice_bounds(n_playlists: int, index: int) -> tuple[int, int]:
    """(first pid, last pid) of slice ``index`` of an ``n_playlists`` dataset."""
    first = index * PLAYLISTS_PER_SLICE
    return first, min(first + PLAYLISTS_PER_SLICE, n_playlists) - 1


def slice_file_name(first: int, last: int) -> str:
    return f"mpd.slice.{first}-{last}.json"


def write_slice(out_dir: str, seed: int, n_playlists: int, index: int) -> tuple[str, int, int]:
    """Generate and write slice ``index``; returns (file name, playlists, track entries)."""
    first, last = slice_bounds(n_playlists, index)
    batch = generate_batch(seed, STREAM_SLICE, index, first, last - first + 1)
    name = slice_file_name(first, last)
    text = render_slice(batch, seed, f"{first}-{last}")
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(text.encode("ascii"))
    return name, batch.pids.size, int(batch.offsets[-1])
