"""Playlists as arrays: lengths, genre mixes, runs on one album or artist, repeats, titles."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl import checker
from etl.synth.calibration import (
    ALBUM_EXPONENT,
    ALBUM_OFFSET,
    ARTIST_EXPONENT,
    ARTIST_OFFSET,
    B_BITS,
    COLLABORATIVE_SHARE,
    CONTINUE_RUN,
    DESCRIPTION_SHARE,
    DESCRIPTIONS,
    DUPLICATE_SHARE,
    EDITS_PMF,
    FOLLOWER_TAIL_ALPHA,
    FOLLOWERS_PMF,
    GENERIC_TITLES,
    GENRE_P,
    GENRE_TITLE_CDF,
    GENRE_TITLES,
    GENRES,
    GENRES_PER_PLAYLIST,
    KEY_BITS,
    LAST_DAY,
    LENGTH_PMF,
    MAX_BATCH,
    MODIFIED_PMF,
    NAME_FIRST,
    R_BITS,
    SAME_ALBUM_SHARE,
    T_BITS,
    TITLE_FLAVOURED,
    TITLE_GENERIC,
    TITLE_WORDS,
    TRACK_EXPONENT,
)
from etl.synth.tracks import album_length, album_of, artist_of

_U64 = np.uint64


def _power_law(rng: np.random.Generator, n: int, exponent: float, offset: float, bits: int) -> np.ndarray:
    """Integers k >= 0 with P(k) ~ (k + offset)^-exponent (inverse CDF of the continuous law)."""
    u = rng.random(n)
    k = np.floor(offset * ((1.0 - u) ** (-1.0 / (exponent - 1.0)) - 1.0))
    return np.minimum(k, (1 << bits) - 1).astype(_U64)


def _track_in_album(rng: np.random.Generator, lengths: np.ndarray) -> np.ndarray:
    """Track index t < length with P(t) ~ (t + 1)^-TRACK_EXPONENT."""
    e = 1.0 - TRACK_EXPONENT
    x = (1.0 + rng.random(lengths.size) * ((lengths + 1.0) ** e - 1.0)) ** (1.0 / e)
    return np.minimum(np.floor(x) - 1, lengths - 1).astype(_U64)


def _draw_album_track(rng, artist_keys: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fresh album of each artist and a track on it; returns (album keys, track keys)."""
    albums = (artist_keys << _U64(B_BITS)) | _power_law(rng, artist_keys.size, ALBUM_EXPONENT, ALBUM_OFFSET, B_BITS)
    return albums, _track_on(rng, albums, seed)


def _track_on(rng, album_keys: np.ndarray, seed: int) -> np.ndarray:
    t = _track_in_album(rng, album_length(album_keys, seed))
    return (album_keys << _U64(T_BITS)) | t


def _draw_artist(rng, genres: np.ndarray) -> np.ndarray:
    ranks = _power_law(rng, genres.size, ARTIST_EXPONENT, ARTIST_OFFSET, R_BITS)
    return (genres.astype(_U64) << _U64(R_BITS)) | ranks


def sample_pmf(rng, pmf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(np.cumsum(pmf), rng.random(n), side="right"), pmf.size - 1)


def repeats(playlist: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mask of entries whose key already occurred earlier in the same playlist."""
    combined = (playlist.astype(_U64) << _U64(KEY_BITS)) | keys
    _, first = np.unique(combined, return_index=True)
    mask = np.ones(keys.size, dtype=bool)
    mask[first] = False
    return mask


def distinct_per_playlist(playlist: np.ndarray, keys: np.ndarray, n_playlists: int) -> np.ndarray:
    combined = np.unique((playlist.astype(_U64) << _U64(KEY_BITS)) | keys)
    return np.bincount((combined >> _U64(KEY_BITS)).astype(np.int64), minlength=n_playlists)


@dataclass
class Batch:
    """Up to 1,000 generated playlists as arrays (entries flattened in playlist order)."""

    pids: np.ndarray  # (P,)
    offsets: np.ndarray  # (P+1,) entry offsets
    tracks: np.ndarray  # (E,) track keys
    names: list[str]
    descriptions: list[str | None]
    collaborative: np.ndarray
    modified_at: np.ndarray
    num_followers: np.ndarray
    num_edits: np.ndarray


def stream_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, index])))


STREAM_SLICE, STREAM_CHALLENGE = 0, 1


def generate_batch(seed: int, stream: int, index: int, first_pid: int, count: int) -> Batch:
    """``count`` playlists with pids from ``first_pid``: a pure function of the arguments."""
    if not 0 < count <= MAX_BATCH:
        raise ValueError(f"batch of {count} playlists, expected 1..{MAX_BATCH}")
    rng = stream_rng(seed, stream, index)
    P = count
    lengths = sample_pmf(rng, LENGTH_PMF, P)
    offsets = np.zeros(P + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    E = int(offsets[-1])
    playlist = np.repeat(np.arange(P), lengths)
    pos = np.arange(E) - offsets[playlist]

    # Genre mix: 1-3 genres, weights main > others.
    n_genres = sample_pmf(rng, np.array((0.0,) + GENRES_PER_PLAYLIST), P)
    mix = rng.choice(len(GENRES), size=(P, 3), p=GENRE_P)
    weights = np.column_stack([np.ones(P), rng.uniform(0.15, 0.6, P), rng.uniform(0.05, 0.3, P)])
    weights[np.arange(3)[None, :] >= n_genres[:, None]] = 0.0
    cum = np.cumsum(weights / weights.sum(1, keepdims=True), axis=1)

    def draw_genres(entries: np.ndarray) -> np.ndarray:
        pl = playlist[entries]
        slot = (rng.random(entries.size)[:, None] >= cum[pl]).sum(1)
        return mix[pl, np.minimum(slot, 2)]

    # Runs: fresh draws start them, continuations keep the anchor's album or artist.
    fresh = (pos == 0) | (rng.random(E) >= CONTINUE_RUN)
    anchor = np.maximum.accumulate(np.where(fresh, np.arange(E), 0))
    idx = np.flatnonzero(fresh)
    artists = np.empty(E, dtype=_U64)
    albums = np.empty(E, dtype=_U64)
    tracks = np.empty(E, dtype=_U64)
    artists[idx] = _draw_artist(rng, draw_genres(idx))
    albums[idx], tracks[idx] = _draw_album_track(rng, artists[idx], seed)
    cont = np.flatnonzero(~fresh)
    artists[cont] = artists[anchor[cont]]
    same_album = rng.random(cont.size) < SAME_ALBUM_SHARE
    sa, sr = cont[same_album], cont[~same_album]
    albums[sa] = albums[anchor[sa]]
    tracks[sa] = _track_on(rng, albums[sa], seed)
    albums[sr], tracks[sr] = _draw_album_track(rng, artists[sr], seed)

    # Accidental repeats: redraw on the same artist, then anywhere in the mix.
    for attempt in range(6):
        rep = np.flatnonzero(repeats(playlist, tracks))
        if rep.size == 0:
            break
        if attempt < 2:
            _, tracks[rep] = _draw_album_track(rng, artist_of(tracks[rep]), seed)
        else:
            _, tracks[rep] = _draw_album_track(rng, _draw_artist(rng, draw_genres(rep)), seed)

    # Planted repeats of an earlier track of the playlist.
    dup = np.flatnonzero((pos > 0) & (rng.random(E) < DUPLICATE_SHARE))
    source = offsets[playlist[dup]] + np.floor(rng.random(dup.size) * pos[dup]).astype(np.int64)
    tracks[dup] = tracks[source]

    # The MPD's selection rules: >= 3 artists, >= 2 albums. Redraw offenders from scratch; as a
    # last resort (so the rule holds for any seed) give their first three entries distinct artists.
    for attempt in range(8):
        few = (distinct_per_playlist(playlist, artist_of(tracks), P) < checker.MIN_ARTISTS) | (
            distinct_per_playlist(playlist, album_of(tracks), P) < checker.MIN_ALBUMS
        )
        if not few.any():
            break
        ent = np.flatnonzero(few[playlist])
        if attempt < 7:
            _, tracks[ent] = _draw_album_track(rng, _draw_artist(rng, draw_genres(ent)), seed)
        else:
            first3 = ent[pos[ent] < 3]
            forced = (mix[playlist[first3], 0].astype(_U64) << _U64(R_BITS)) | pos[first3].astype(_U64)
            tracks[first3] = _track_on(rng, forced << _U64(B_BITS), seed)

    names, descriptions = _titles(rng, mix[:, 0])
    days = sample_pmf(rng, MODIFIED_PMF, P)
    modified_at = LAST_DAY + (2 - days) * checker.SECONDS_PER_DAY
    followers = sample_pmf(rng, FOLLOWERS_PMF, P)
    tail = followers == FOLLOWERS_PMF.size - 1
    followers[tail] = np.minimum(
        np.floor(20.5 * (1 - rng.random(tail.sum())) ** (-1 / FOLLOWER_TAIL_ALPHA)), 100_000
    ).astype(np.int64)
    return Batch(
        pids=np.arange(first_pid, first_pid + P, dtype=np.int64),
        offsets=offsets,
        tracks=tracks,
        names=names,
        descriptions=descriptions,
        collaborative=rng.random(P) < COLLABORATIVE_SHARE,
        modified_at=modified_at.astype(np.int64),
        num_followers=followers.astype(np.int64),
        num_edits=sample_pmf(rng, EDITS_PMF, P).astype(np.int64),
    )


def _titles(rng, main_genre: np.ndarray) -> tuple[list[str], list[str | None]]:
    """Playlist titles correlated with the main genre (see GENRE_TITLE_CDF), with the casing,
    stray spaces and emoji real titles have; and a rare description."""
    P = main_genre.size
    u = rng.random(P)
    kind = rng.random(P)
    style = rng.random(P)
    extra = rng.integers(0, 1 << 30, P).tolist()
    W, F = TITLE_WORDS, NAME_FIRST
    names = []
    for i in range(P):
        g = int(main_genre[i])
        e = extra[i]
        cdf = GENRE_TITLE_CDF[g]
        if u[i] < cdf[-1]:
            t = GENRE_TITLES[g][min(int(np.searchsorted(cdf, u[i], side="right")), cdf.size - 1)]
        elif kind[i] < TITLE_FLAVOURED:
            base = GENRE_TITLES[g][e % len(GENRE_TITLES[g])]
            t = f"{base} {W[(e >> 8) % len(W)]}" if (e >> 4) % 3 else f"{base} {2010 + (e >> 8) % 8}"
        elif kind[i] < TITLE_FLAVOURED + TITLE_GENERIC:
            t = GENERIC_TITLES[e % len(GENERIC_TITLES)]
        elif e % 3 == 0:
            t = f"{F[(e >> 2) % len(F)]}'s {W[(e >> 8) % len(W)]}"
        elif e % 3 == 1:
            t = f"{W[(e >> 2) % len(W)]} {W[(e >> 8) % len(W)]}"
        else:
            t = f"{F[(e >> 2) % len(F)]} {(e >> 8) % 100}"
        s = style[i]
        if s < 0.25:
            t = t.title()
        elif s < 0.30:
            t = t.upper()
        elif s < 0.34:
            t = t + " "
        elif s < 0.36:
            t = t + " \U0001f525"
        names.append(t)
    has_desc = rng.random(P) < DESCRIPTION_SHARE
    templ = rng.integers(0, len(DESCRIPTIONS), P)
    descriptions = [
        DESCRIPTIONS[templ[i]].format(t=names[i].strip().lower()) if has_desc[i] else None for i in range(P)
    ]
    return names, descriptions
