"""Small graph dirs for trainer tests, written by ``etl.synth.graphdir`` (no Spark).

Two inputs: the real 37-playlist MPD sample, and a toy catalogue with planted, dense genre
structure. The toy is what a unit test needs and the calibrated generator is not at a few
hundred playlists: there, most of the MPD's long tail is tracks seen once, so no model learns
anything a test could check. Benchmarks use the calibrated generator (``python -m etl.synth
--graph-dir``), whose popularity head is the MPD's.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from etl import contract
from etl.synth.columnar import ColumnarMPD, columnar_from_mpd
from etl.synth.graphdir import write_graph_dir

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")
MPD_SAMPLE = os.path.join(SHARED_DATA, "mpd_sample", "mpd.slice.0-999.json")


def load_mpd_sample() -> list[dict]:
    with open(MPD_SAMPLE) as f:
        return json.load(f)["playlists"]


def toy_mpd(num_playlists: int, seed: int = 0, tracks_per_genre: int = 600) -> ColumnarMPD:
    """Playlists mixing 1-3 genres, tracks drawn by Zipf popularity within each genre.

    Genres own artists, artists own albums, albums own tracks, so co-occurrence, album and
    artist structure all carry signal. The number of genres grows with the playlist count.
    """
    rng = np.random.default_rng(seed)
    num_genres = max(8, num_playlists // 250)
    albums_per_artist, tracks_per_album = 3, 8
    artists_per_genre = max(1, tracks_per_genre // (albums_per_artist * tracks_per_album))
    num_artists = num_genres * artists_per_genre
    num_albums = num_artists * albums_per_artist
    num_tracks = num_albums * tracks_per_album
    track_album = np.repeat(np.arange(num_albums), tracks_per_album)
    track_artist = track_album // albums_per_artist
    track_genre = track_artist // artists_per_genre
    per_genre = artists_per_genre * albums_per_artist * tracks_per_album
    # Zipf-like popularity inside a genre, over a random order of its tracks.
    weights = 1.0 / np.arange(1, per_genre + 1) ** 0.9
    weights /= weights.sum()

    lengths = np.clip(rng.geometric(1 / 45, num_playlists) + 4, 5, 250)
    n_genres = rng.integers(1, 4, num_playlists)
    e_pl, e_tr, e_pos = [], [], []
    genre_order = [rng.permutation(per_genre) for _ in range(num_genres)]
    for p in range(num_playlists):
        genres = rng.choice(num_genres, n_genres[p], replace=False)
        mix = rng.dirichlet(np.ones(len(genres)))
        g_of_entry = rng.choice(genres, lengths[p], p=mix)
        local = rng.choice(per_genre, lengths[p], p=weights)
        track = g_of_entry * per_genre + np.array([genre_order[g][i] for g, i in zip(g_of_entry, local)])
        e_pl.append(np.full(lengths[p], p))
        e_tr.append(track)
        e_pos.append(np.arange(lengths[p]))
    used = np.unique(np.concatenate(e_tr))
    # Keep only tracks that occur, re-indexed, as in real data.
    remap = np.full(num_tracks, -1)
    remap[used] = np.arange(len(used))
    entry_track = remap[np.concatenate(e_tr)]
    first_genre = [int(track_genre[e_tr[p][0]]) for p in range(num_playlists)]
    return ColumnarMPD(
        pid=np.arange(num_playlists, dtype=np.int64),
        name=[f"genre {g}" for g in first_genre],
        num_followers=rng.geometric(0.5, num_playlists).astype(np.int64),
        collaborative=rng.random(num_playlists) < 0.02,
        num_edits=rng.integers(1, 30, num_playlists),
        modified_at=1_400_000_000 + rng.integers(0, 10**8, num_playlists),
        entry_playlist=np.concatenate(e_pl).astype(np.int64),
        entry_track=entry_track.astype(np.int64),
        entry_pos=np.concatenate(e_pos).astype(np.int64),
        track_uri=[f"spotify:track:synth{t:08d}" for t in used],
        track_name=[f"track {t}" for t in used],
        track_duration=rng.integers(90_000, 400_000, len(used)),
        track_album=track_album[used],
        track_artist=track_artist[used],
        album_uri=[f"spotify:album:synth{a:07d}" for a in range(num_albums)],
        album_name=[f"album {a}" for a in range(num_albums)],
        artist_uri=[f"spotify:artist:synth{a:06d}" for a in range(num_artists)],
        artist_name=[f"artist {a}" for a in range(num_artists)],
    )


def toy_holdout(
    cat: ColumnarMPD,
    num_val: int,
    num_test: int,
    seed: int = 0,
    categories: tuple[str, ...] = ("first_5", "first_10", "random_25", "title_only"),
):
    """Deterministically pick val/test playlists and their seed categories."""
    rng = np.random.default_rng(seed)
    length = np.bincount(cat.entry_playlist, minlength=len(cat.pid))
    split = np.array([contract.SPLIT_TRAIN] * len(cat.pid), dtype=object)
    category = np.array([None] * len(cat.pid), dtype=object)
    order = rng.permutation(len(cat.pid))
    want = [contract.SPLIT_VAL] * num_val + [contract.SPLIT_TEST] * num_test
    k = 0
    for row in order:
        if k == len(want):
            break
        cat_name = categories[k % len(categories)]
        if length[row] >= contract.SEED_CATEGORY_BY_NAME[cat_name].min_tracks:
            split[row], category[row] = want[k], cat_name
            k += 1
    return split, category


def sample_graph_dir(root: str, num_val: int = 4, num_test: int = 4, seed: int = 0) -> str:
    """Graph dir of the real 37-playlist MPD sample."""
    cat = columnar_from_mpd(load_mpd_sample())
    split, category = toy_holdout(cat, num_val, num_test, seed)
    return write_graph_dir(root, cat, split, category, seed)


def toy_graph_dir(
    root: str,
    num_playlists: int,
    seed: int = 0,
    holdout: float = 0.05,
    tracks_per_genre: int = 600,
    hidden_only: int = 0,
) -> str:
    """Graph dir of ``num_playlists`` generated playlists, ``holdout`` of them val and as many test;
    ``hidden_only``: that many extra tracks that occur only after the seeds of held-out playlists."""
    cat = toy_mpd(num_playlists, seed, tracks_per_genre)
    k = max(1, int(num_playlists * holdout))
    split, category = toy_holdout(cat, k, k, seed)
    if hidden_only:
        cat = with_hidden_only_tracks(cat, split, category, hidden_only)
    return write_graph_dir(root, cat, split, category, seed)


def with_hidden_only_tracks(cat: ColumnarMPD, split: np.ndarray, category: np.ndarray, n: int) -> ColumnarMPD:
    """``cat`` with ``n`` new tracks (on the first tracks' albums and artists) appended to every
    held-out playlist whose seeds are its first tracks: tracks the graph holds only through hidden
    edges, as ~28% of the real dev set's are."""
    rows = np.flatnonzero((split != contract.SPLIT_TRAIN) & np.isin(category.astype(str), ["first_5", "first_10"]))
    length = np.bincount(cat.entry_playlist, minlength=len(cat.pid))
    new = len(cat.track_uri) + np.arange(n)
    return dataclasses.replace(
        cat,
        entry_playlist=np.concatenate([cat.entry_playlist, np.repeat(rows, n)]),
        entry_track=np.concatenate([cat.entry_track, np.tile(new, len(rows))]),
        entry_pos=np.concatenate([cat.entry_pos, (length[rows][:, None] + np.arange(n)).ravel()]),
        track_uri=[*cat.track_uri, *(f"spotify:track:hiddenonly{i:04d}" for i in range(n))],
        track_name=[*cat.track_name, *(f"hidden only {i}" for i in range(n))],
        track_duration=np.concatenate([cat.track_duration, np.full(n, 200_000)]),
        track_album=np.concatenate([cat.track_album, cat.track_album[:n]]),
        track_artist=np.concatenate([cat.track_artist, cat.track_artist[:n]]),
    )
