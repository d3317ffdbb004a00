"""Synthetic Million Playlist Dataset: slices in the exact MPD format, calibrated, with structure.

    python -m etl.synth --playlists N --out DIR [--seed S] [--workers W] [--overwrite]
                        [--challenge-set K]

writes ``mpd.slice.A-B.json`` files of 1,000 playlists (pids ``0..N-1``; the last file may be
shorter) that pass every rule of :mod:`etl.checker`, byte for byte in the MPD's layout (the
layout ``json.dumps(obj, indent=4, separators=(", ", ": "))`` gives, ASCII-escaped, key order of
the real files, one trailing newline). ``description`` (on ~1.9% of playlists) is written as the
last playlist key: the MPD's key order is a Python 2 dict's, and simulating CPython 2.7's string
hash and dict probing for the 12 keys puts ``description`` last whenever ``name`` is first, as
it is in every real record.

The catalogue is implicit and unbounded, so no file needs another's: a track is
``(genre, artist rank, album index, track index)``; its URIs, names and duration are hashes of
that key and the seed, so a track keeps them in every file. Each file's content is a pure
function of ``(seed, file index, N)``; ``--workers`` only changes the speed.

Generative model (constants below, calibrated to ``shared/data/mpd_stats.txt``; see
``bench/RESULTS.md`` for generated-vs-real numbers):

- length, followers, edits, last-modified day: the real top-20 histograms, extended by fitted
  tails (length: mean 66.35, mode 20; followers: 75.4% have 1);
- each playlist mixes 1-3 latent genres; its title comes from its main genre's pool built from
  the real top titles (country, chill, rap, workout, ...), or a generic/personal title;
- an entry starts a run with a fresh draw: genre from the mix, artist rank within the genre and
  album within the artist from offset power laws (heavy tails make the distinct tracks, albums
  and artists grow like the real Heaps curves), track within the album; following entries of a
  run stay on the same album or the same artist. These draws keep the marginals, and put
  structure (genre -> artist -> album -> track) into the playlists that item co-occurrence alone
  cannot exploit for rarely seen tracks;
- repeats of the same track inside a playlist are redrawn, then ~1.3% of entries are planted
  duplicates, as real playlists have.

``--challenge-set K`` also writes ``challenge_set.json`` in the RecSys Challenge 2018 format from
K further playlists (pids N..N+K-1, in no slice), cycling through the challenge's 10 categories
(title only; title + first 1, 5, 10, 25, 100; first 5 or 10 without title; title + random 25 or
100) among the ones a playlist is long enough for; the held-out track URIs go to
``challenge_set_holdouts.json`` (``{"playlists": [{"pid", "holdouts": [uri, ...]}]}``) so a
submission can be scored.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_str  # json.dumps(ensure_ascii=True)'s escaper
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

import numpy as np

from etl import checker

PLAYLISTS_PER_SLICE = 1000
SLICE_VERSION = "v1"
CHALLENGE_FILE = "challenge_set.json"
CHALLENGE_HOLDOUTS_FILE = "challenge_set_holdouts.json"
_OUTPUT_PREFIXES = ("mpd.slice.", "challenge_set")

# --- catalogue keys -----------------------------------------------------------------------------
# artist = genre | rank, album = artist | index, track = album | index: 5+30+14+5 = 54 bits, so a
# (playlist-in-batch, track) pair still fits one uint64, with 10 bits for the playlist.
_G_BITS, _R_BITS, _B_BITS, _T_BITS = 5, 30, 14, 5
_KEY_BITS = _G_BITS + _R_BITS + _B_BITS + _T_BITS
_MAX_BATCH = 1 << (64 - _KEY_BITS)  # playlists per batch: (playlist, track) pairs fit a uint64
_U64 = np.uint64

# --- calibration constants ----------------------------------------------------------------------
# Artist rank within a genre and album index within an artist: offset power laws
# P(k) ~ (k + offset)^-exponent (heavy tails: distinct artists/albums/tracks grow like Heaps' law).
# The five catalogue numbers were fitted (Nelder-Mead) so that bench/bench_synth.py's
# expected_distinct meets the real distinct tracks at 100k and 1M playlists, albums and artists
# at 1M and the top track's share; generated counts agree with that expectation within ~2%.
ARTIST_EXPONENT, ARTIST_OFFSET = 1.897, 16.85
ALBUM_EXPONENT, ALBUM_OFFSET = 4.88, 3.24
# Track within an album: P(t) ~ (t + 1)^-TRACK_EXPONENT (flat-ish: an album is not one hit).
TRACK_EXPONENT = 0.115
# An artist's first albums are full albums; later ones are singles/EPs this often.
SINGLE_SHARE = 0.3
# Runs: an entry continues the previous entry's run with this probability, on the same album
# with SAME_ALBUM_SHARE of those, else on the same artist (gives the real sample's 21% of
# consecutive entries by the same artist).
CONTINUE_RUN = 0.2
SAME_ALBUM_SHARE = 0.5
# Planted repeats of an earlier track of the same playlist (real MPD: ~1.3% of entries).
DUPLICATE_SHARE = 0.0133
# Genre mix: number of genres per playlist (1, 2, 3).
GENRES_PER_PLAYLIST = (0.45, 0.40, 0.15)
DESCRIPTION_SHARE = 18_760 / 1_000_000
COLLABORATIVE_SHARE = 0.023  # not in stats.txt; the published MPD has ~2.3% collaborative

# Real top-20 histograms (mpd_stats.txt): {value: playlists per million}.
_LENGTH_TOP20 = {20: 15057, 15: 14177, 21: 13876, 16: 13856, 17: 13685, 18: 13629, 22: 13602,
                 19: 13531, 24: 13250, 23: 13149, 30: 13077, 14: 13043, 25: 13031, 26: 12834,
                 28: 12513, 27: 12502, 29: 12332, 13: 12318, 12: 12016, 31: 11882}
_FOLLOWERS_TOP20 = {1: 754219, 2: 149600, 3: 46939, 4: 19591, 5: 9813, 6: 5360, 7: 3305, 8: 2143,
                    9: 1512, 10: 1006, 11: 825, 12: 632, 13: 479, 14: 359, 15: 328, 16: 290,
                    17: 235, 18: 207, 19: 162, 20: 138}
_EDITS_TOP20 = {2: 92252, 3: 81820, 4: 71973, 5: 61978, 6: 53085, 7: 46860, 8: 41210, 9: 36629,
                10: 32810, 11: 29907, 12: 26947, 13: 24941, 14: 22800, 15: 20834, 16: 19000,
                17: 17817, 18: 16551, 19: 15305, 20: 14217, 21: 13486}
# Last-modified days, counted back from 2017-10-30 (the top day).
_MODIFIED_TOP20 = (19018, 15495, 11083, 9994, 11640, 9727, 9142, 8588, 7953, 6407, 5979, 6980,
                   5986, 5792, 5653, 5375, 4483, 4431, 4840, 4460)
_LAST_DAY = 1_509_321_600  # 2017-10-30T00:00:00Z
MEAN_LENGTH = 66.346428


def _length_pmf() -> np.ndarray:
    """P(num_tracks = n) for n = 0..250: real counts for 12..31, a ramp below, a fitted
    exponential tail above; tail scale and ramp height solve for total 1 and mean 66.35."""
    n = np.arange(checker.MAX_TRACKS + 1, dtype=np.float64)
    head = np.zeros_like(n)
    for k, c in _LENGTH_TOP20.items():
        head[k] = c / 1e6
    ramp = np.zeros_like(n)
    ramp[5:12] = np.linspace(0.45, 0.95, 7) * head[12]

    def build(scale: float) -> np.ndarray:
        tail = np.where(n >= 32, head[31] * np.exp(-(n - 31) / scale), 0.0)
        # The ramp's height takes whatever mass the head and tail leave.
        rest = 1.0 - head.sum() - tail.sum()
        return head + tail + ramp * (rest / ramp.sum())

    lo, hi = 10.0, 200.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (build(mid) * n).sum() < MEAN_LENGTH:
            lo = mid
        else:
            hi = mid
    return build(lo)


def _followers_pmf() -> np.ndarray:
    """P(num_followers = n), n = 0..20 (real) and P(> 20) in the last slot."""
    p = np.zeros(22)
    for k, c in _FOLLOWERS_TOP20.items():
        p[k] = c / 1e6
    p[21] = 1.0 - p.sum()
    return p


# Followers above 20: a Pareto tail; its exponent continues the histogram's decay from 20.
_FOLLOWER_TAIL_ALPHA = 1.0


def _edits_pmf() -> np.ndarray:
    """P(num_edits = n), n = 0..2000: real counts 2..21, then a geometric tail with the remaining mass."""
    p = np.zeros(2001)
    for k, c in _EDITS_TOP20.items():
        p[k] = c / 1e6
    rest = 1.0 - p.sum()
    ratio = rest / (rest + p[21])  # geometric tail starting at p[21] * ratio with total `rest`
    p[22:] = p[21] * ratio ** np.arange(1, p.size - 21)
    return p / p.sum()


def _modified_pmf() -> np.ndarray:
    """P(modified day = _LAST_DAY - d days), d = -2..: a partial last two days, the real top-20
    days, then a fast (60-day) and a slow (2-year) decay back to 2010-01-01."""
    days = (_LAST_DAY - checker.MIN_MODIFIED_AT) // checker.SECONDS_PER_DAY
    d = np.arange(days + 1, dtype=np.float64)
    p = np.zeros(days + 3)  # slot 0,1: 2017-11-01, 2017-10-31
    p[0], p[1] = 1000 / 1e6, 3000 / 1e6
    p[2:22] = np.array(_MODIFIED_TOP20) / 1e6
    rest = 1.0 - p[:22].sum()
    fast, slow = 60.0, 730.0
    # Both components continue the last real day's level; their split fixes the total.
    level = p[21]
    a = (level * slow - rest) / (slow - fast)
    tail = a * np.exp(-(d[20:] - 19) / fast) + (level - a) * np.exp(-(d[20:] - 19) / slow)
    p[22:] = tail
    return p / p.sum()


LENGTH_PMF = _length_pmf()
FOLLOWERS_PMF = _followers_pmf()
EDITS_PMF = _edits_pmf()
MODIFIED_PMF = _modified_pmf()


# --- genres and titles --------------------------------------------------------------------------
@dataclass(frozen=True)
class Genre:
    """A latent genre: its share of playlists' main genres and its title pool (title: weight)."""

    name: str
    weight: float
    titles: dict[str, float]


# Title pools: {title: playlists per million titled so (case/space-normalised)}; the real top-20
# titles carry their real counts (mpd_stats.txt), the rest are plausible smaller ones.
GENRES = (
    Genre("hiphop", 0.19, {"rap": 8493, "lit": 4124, "hip hop": 3000, "turn up": 1500, "trap": 1500, "bangers": 1200, "hype": 1000}),
    Genre("pop", 0.11, {"jams": 5063, "new": 4612, "music": 3886, "pop": 3000, "hits": 2000, "good vibes": 1500, "car": 1000}),
    Genre("country", 0.08, {"country": 10000, "old country": 1500, "country music": 2000, "truck": 800, "boots": 500}),
    Genre("chill", 0.08, {"chill": 10000, "vibes": 3500, "relax": 2000, "acoustic": 1500, "chill vibes": 1500, "lofi": 1000}),
    Genre("rock", 0.06, {"rock": 6848, "classic rock": 2500, "garage rock": 600, "rock n roll": 1000, "guitar": 500}),
    Genre("workout", 0.06, {"workout": 8481, "gym": 3000, "running": 2000, "run it": 800, "cardio": 1000, "lift": 1000}),
    Genre("party", 0.05, {"party": 6157, "pregame": 1500, "dance": 2000, "turnt": 1000, "saturday": 700}),
    Genre("throwback", 0.06, {"throwback": 5883, "throwbacks": 4030, "90s": 2000, "2000s": 1500, "90's": 800, "old school": 1000}),
    Genre("oldies", 0.04, {"oldies": 8146, "60s": 1000, "70s": 1500, "80s": 2000, "motown": 800, "classics": 1000}),
    Genre("christmas", 0.03, {"christmas": 8015, "christmas music": 1500, "holiday": 1000, "xmas": 800}),
    Genre("worship", 0.035, {"worship": 5052, "church": 1200, "gospel": 1000, "praise": 1000, "jesus": 800}),
    Genre("summer", 0.04, {"summer": 4907, "summer 2017": 1500, "beach": 1200, "latin": 1000, "road trip": 1000}),
    Genre("rnb", 0.05, {"feels": 4677, "r&b": 2000, "slow jams": 1500, "sad": 1500, "love": 1500, "sad songs": 1000}),
    Genre("disney", 0.025, {"disney": 4186, "kids": 800, "musicals": 1000, "broadway": 800}),
    Genre("sleep", 0.025, {"sleep": 3513, "study": 2000, "piano": 1000, "classical": 1000, "focus": 800}),
    Genre("indie", 0.045, {"indie": 3000, "alternative": 2000, "indie rock": 1000, "emo": 1000, "punk": 800, "melancholy": 500}),
    Genre("metal", 0.015, {"metal": 2000, "hardcore": 600, "heavy": 500}),
    Genre("jazz", 0.015, {"jazz": 2000, "blues": 1000, "coffee": 800, "smooth": 600}),
)
assert len(GENRES) <= 1 << _G_BITS
_GENRE_P = np.array([g.weight for g in GENRES]) / sum(g.weight for g in GENRES)
_GENRE_TITLES = [tuple(g.titles) for g in GENRES]
# A playlist whose main genre is g takes pool title t with P = share(t) / P(g), so the titles'
# shares match the real counts; the other playlists of g get a title flavoured by g
# (TITLE_FLAVOURED of them: "country roads", "rap 2017"), a generic or a personal one.
_GENRE_TITLE_CDF = [np.cumsum([c / 1e6 / p for c in g.titles.values()]) for g, p in zip(GENRES, _GENRE_P)]
assert all(cdf[-1] < 1 for cdf in _GENRE_TITLE_CDF)
TITLE_FLAVOURED, TITLE_GENERIC = 0.5, 0.2
_GENERIC_TITLES = ("music", "new", "my playlist", "songs", "favorites", "mix", "playlist", "good stuff",
                   "random", "car", "mood", "everything", "2017", "fall '17", "summer", "morning",
                   "Mom's playlist", "wedding", "road trip", "✔️", "🔥", "💯", "yeet", "BOP", "mixtape",
                   '"the" playlist', "rock\\pop", "AC/DC & co")
_TITLE_WORDS = ("sunday", "drive", "night", "stuff", "jams", "vibes", "tunes", "feels", "songs",
                "mix", "beats", "mood", "days", "time", "hits", "love", "life", "summer", "winter",
                "spring", "fall", "late", "early", "good", "happy", "sad", "lazy", "rainy", "sunny")
_NAME_FIRST = ("Sarah", "Abby", "Jake", "Emma", "Chris", "Alex", "Sam", "Taylor", "Jordan", "Maria",
               "José", "Zoë", "Noah", "Liam", "Mia", "Ava", "Lucas", "Leah", "Kyle", "Dani")
_DESCRIPTIONS = ("my favorite {t} songs", "{t} for every day", "songs for {t}", "the best of {t}",
                 "{t} ✨", "updated weekly", "a little bit of everything", "for the car")

# --- catalogue names ----------------------------------------------------------------------------
_SYLLABLES = ("ka", "ri", "mo", "lu", "ven", "dra", "ke", "zo", "ta", "mi", "nel", "so", "ra",
              "bel", "jo", "an", "el", "is", "on", "ay", "lee", "mar", "cy", "te", "ny", "vé",
              "lö", "ña", "ko", "da", "rin", "sha", "tr", "quin", "fa", "gi")
_WORDS = ("love", "night", "fire", "heart", "summer", "gold", "dream", "light", "wild", "home",
          "rain", "blue", "city", "young", "money", "road", "ocean", "midnight", "sugar", "ghost",
          "paradise", "river", "thunder", "diamond", "shadow", "electric", "forever", "broken",
          "sunset", "rebel", "honey", "lonely", "crazy", "slow", "higher", "closer", "stars",
          "youth", "velvet", "echo", "nights", "dreams", "hearts", "lights", "roses", "waves",
          "bones", "kings", "wolves", "fever", "coração", "día", "amor", "été", "größer", "noche")
_FIRST_NAMES = ("Drew", "Kendra", "Marcus", "Lena", "Tyler", "Aubrey", "Nico", "Jade", "Calvin",
                "Rosa", "Dex", "Imani", "Owen", "Selena", "Malik", "Ivy", "Beau", "Nadia",
                "Andrés", "Chloé", "Björn", "Renée", "Luis", "Kofi")
_LAST_NAMES = ("Carter", "Rivers", "Monroe", "Hayes", "Brooks", "Vega", "Stone", "Lane", "Wolfe",
               "Knight", "Reyes", "Blake", "Frost", "Banks", "Núñez", "Müller", "Kingsley", "Cole")
_ALBUM_SUFFIX = ("", "", "", "", " (Deluxe)", " (Deluxe Edition)", " - EP", " (Remastered)",
                 " (Original Motion Picture Soundtrack)", " - Single")
_TRACK_SUFFIX = ("", "", "", "", "", "", "", "", "", "", "", "", " - Remix", " - Live",
                 " - Radio Edit", " - Acoustic")


# --- hashing ------------------------------------------------------------------------------------
def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wraps modulo 2^64, as intended)."""
    z = x.astype(_U64) + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def _salt(seed: int, kind: int) -> np.uint64:
    return _mix(np.array([(seed * 1_000_003 + kind) & 0xFFFFFFFFFFFFFFFF], dtype=_U64))[0]


def _hash(keys: np.ndarray, seed: int, kind: int) -> np.ndarray:
    return _mix(keys ^ _salt(seed, kind))


def _unit(h: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) doubles from the top 53 bits of a hash."""
    return (h >> _U64(11)).astype(np.float64) * (1.0 / (1 << 53))


_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def _uris(keys: np.ndarray, seed: int, kind: int, prefix: str) -> list[str]:
    """``prefix`` + 22 base62 characters from 128 hash bits of each key."""
    h1 = _hash(keys, seed, kind)
    h2 = _mix(h1 ^ _salt(seed, kind + 100))
    digits = np.empty((keys.size, 22), dtype=np.uint8)
    for half, h in enumerate((h1, h2)):
        h = h.copy()
        for i in range(11):
            digits[:, half * 11 + 10 - i] = _BASE62[(h % _U64(62)).astype(np.intp)]
            h //= _U64(62)
    raw = digits.tobytes().decode("ascii")
    return [prefix + raw[i:i + 22] for i in range(0, len(raw), 22)]


# Hash kinds: one per derived attribute, so attributes are independent.
_K_ARTIST_URI, _K_ALBUM_URI, _K_TRACK_URI = 1, 2, 3
_K_ARTIST_NAME, _K_ALBUM_NAME, _K_TRACK_NAME, _K_DURATION, _K_ALBUM_LEN = 4, 5, 6, 7, 8


def album_length(album_keys: np.ndarray, seed: int) -> np.ndarray:
    """Tracks on each album (1..20): an artist's first three albums are full-length; later
    releases are singles/EPs (1-3 tracks) with probability SINGLE_SHARE."""
    h = _hash(album_keys, seed, _K_ALBUM_LEN)
    u = _unit(h)
    v = (h & _U64(0xFFFF)).astype(np.int64)
    index = (album_keys & _U64((1 << _B_BITS) - 1)).astype(np.int64)
    single = (index >= 3) & (u < SINGLE_SHARE)
    return np.where(single, 1 + v % 3, 10 + v % 11)


# --- sampling -----------------------------------------------------------------------------------
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
    albums = (artist_keys << _U64(_B_BITS)) | _power_law(rng, artist_keys.size, ALBUM_EXPONENT, ALBUM_OFFSET, _B_BITS)
    return albums, _track_on(rng, albums, seed)


def _track_on(rng, album_keys: np.ndarray, seed: int) -> np.ndarray:
    t = _track_in_album(rng, album_length(album_keys, seed))
    return (album_keys << _U64(_T_BITS)) | t


def _draw_artist(rng, genres: np.ndarray) -> np.ndarray:
    ranks = _power_law(rng, genres.size, ARTIST_EXPONENT, ARTIST_OFFSET, _R_BITS)
    return (genres.astype(_U64) << _U64(_R_BITS)) | ranks


def artist_of(track_keys: np.ndarray) -> np.ndarray:
    return track_keys >> _U64(_T_BITS + _B_BITS)


def album_of(track_keys: np.ndarray) -> np.ndarray:
    return track_keys >> _U64(_T_BITS)


def genre_of(track_keys: np.ndarray) -> np.ndarray:
    return (track_keys >> _U64(_T_BITS + _B_BITS + _R_BITS)).astype(np.int64)


def _sample_pmf(rng, pmf: np.ndarray, n: int) -> np.ndarray:
    return np.minimum(np.searchsorted(np.cumsum(pmf), rng.random(n), side="right"), pmf.size - 1)


def _repeats(playlist: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Mask of entries whose key already occurred earlier in the same playlist."""
    combined = (playlist.astype(_U64) << _U64(_KEY_BITS)) | keys
    _, first = np.unique(combined, return_index=True)
    mask = np.ones(keys.size, dtype=bool)
    mask[first] = False
    return mask


def _distinct_per_playlist(playlist: np.ndarray, keys: np.ndarray, n_playlists: int) -> np.ndarray:
    combined = np.unique((playlist.astype(_U64) << _U64(_KEY_BITS)) | keys)
    return np.bincount((combined >> _U64(_KEY_BITS)).astype(np.int64), minlength=n_playlists)


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


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream, index])))


_STREAM_SLICE, _STREAM_CHALLENGE = 0, 1


def generate_batch(seed: int, stream: int, index: int, first_pid: int, count: int) -> Batch:
    """``count`` playlists with pids from ``first_pid``: a pure function of the arguments."""
    if not 0 < count <= _MAX_BATCH:
        raise ValueError(f"batch of {count} playlists, expected 1..{_MAX_BATCH}")
    rng = _rng(seed, stream, index)
    P = count
    lengths = _sample_pmf(rng, LENGTH_PMF, P)
    offsets = np.zeros(P + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    E = int(offsets[-1])
    playlist = np.repeat(np.arange(P), lengths)
    pos = np.arange(E) - offsets[playlist]

    # Genre mix: 1-3 genres, weights main > others.
    n_genres = _sample_pmf(rng, np.array((0.0,) + GENRES_PER_PLAYLIST), P)
    mix = rng.choice(len(GENRES), size=(P, 3), p=_GENRE_P)
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
        rep = np.flatnonzero(_repeats(playlist, tracks))
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
        few = (_distinct_per_playlist(playlist, artist_of(tracks), P) < checker.MIN_ARTISTS) | \
              (_distinct_per_playlist(playlist, album_of(tracks), P) < checker.MIN_ALBUMS)
        if not few.any():
            break
        ent = np.flatnonzero(few[playlist])
        if attempt < 7:
            _, tracks[ent] = _draw_album_track(rng, _draw_artist(rng, draw_genres(ent)), seed)
        else:
            first3 = ent[pos[ent] < 3]
            forced = (mix[playlist[first3], 0].astype(_U64) << _U64(_R_BITS)) | pos[first3].astype(_U64)
            tracks[first3] = _track_on(rng, forced << _U64(_B_BITS), seed)

    names, descriptions = _titles(rng, mix[:, 0])
    days = _sample_pmf(rng, MODIFIED_PMF, P)
    modified_at = _LAST_DAY + (2 - days) * checker.SECONDS_PER_DAY
    followers = _sample_pmf(rng, FOLLOWERS_PMF, P)
    tail = followers == FOLLOWERS_PMF.size - 1
    followers[tail] = np.minimum(np.floor(20.5 * (1 - rng.random(tail.sum())) ** (-1 / _FOLLOWER_TAIL_ALPHA)),
                                 100_000).astype(np.int64)
    return Batch(
        pids=np.arange(first_pid, first_pid + P, dtype=np.int64),
        offsets=offsets,
        tracks=tracks,
        names=names,
        descriptions=descriptions,
        collaborative=rng.random(P) < COLLABORATIVE_SHARE,
        modified_at=modified_at.astype(np.int64),
        num_followers=followers.astype(np.int64),
        num_edits=_sample_pmf(rng, EDITS_PMF, P).astype(np.int64),
    )


def _titles(rng, main_genre: np.ndarray) -> tuple[list[str], list[str | None]]:
    """Playlist titles correlated with the main genre (see _GENRE_TITLE_CDF), with the casing,
    stray spaces and emoji real titles have; and a rare description."""
    P = main_genre.size
    u = rng.random(P)
    kind = rng.random(P)
    style = rng.random(P)
    extra = rng.integers(0, 1 << 30, P).tolist()
    W, F = _TITLE_WORDS, _NAME_FIRST
    names = []
    for i in range(P):
        g = int(main_genre[i])
        e = extra[i]
        cdf = _GENRE_TITLE_CDF[g]
        if u[i] < cdf[-1]:
            t = _GENRE_TITLES[g][min(int(np.searchsorted(cdf, u[i], side="right")), cdf.size - 1)]
        elif kind[i] < TITLE_FLAVOURED:
            base = _GENRE_TITLES[g][e % len(_GENRE_TITLES[g])]
            t = f"{base} {W[(e >> 8) % len(W)]}" if (e >> 4) % 3 else f"{base} {2010 + (e >> 8) % 8}"
        elif kind[i] < TITLE_FLAVOURED + TITLE_GENERIC:
            t = _GENERIC_TITLES[e % len(_GENERIC_TITLES)]
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
            t = t + " \U0001F525"
        names.append(t)
    has_desc = rng.random(P) < DESCRIPTION_SHARE
    templ = rng.integers(0, len(_DESCRIPTIONS), P)
    descriptions = [_DESCRIPTIONS[templ[i]].format(t=names[i].strip().lower()) if has_desc[i] else None
                    for i in range(P)]
    return names, descriptions


# --- the catalogue's names, URIs and durations --------------------------------------------------
def _bits(h: np.ndarray, shift: int, n: int) -> list[int]:
    return ((h >> _U64(shift)) % _U64(n)).astype(np.int64).tolist()


def _title_case(word: str) -> str:
    return word[:1].upper() + word[1:]


def artist_names(artist_keys: np.ndarray, seed: int) -> list[str]:
    """A name for each artist key (a pure function of key and seed)."""
    h = _hash(artist_keys, seed, _K_ARTIST_NAME)
    style, a, b, c = _bits(h, 0, 7), _bits(h, 8, 1 << 12), _bits(h, 24, 1 << 12), _bits(h, 40, 1 << 12)
    S, W, F, L = _SYLLABLES, _WORDS, _FIRST_NAMES, _LAST_NAMES
    out = []
    for s, x, y, z in zip(style, a, b, c):
        if s <= 1:
            out.append(f"{F[x % len(F)]} {L[y % len(L)]}")
        elif s == 2:
            out.append(f"The {_title_case(W[x % len(W)])} {_title_case(W[y % len(W)])}")
        elif s == 3:
            out.append(f"{('DJ', 'Lil', 'MC', 'Young')[z % 4]} {_title_case(S[x % len(S)] + S[y % len(S)])}")
        elif s == 4:
            out.append(_title_case(S[x % len(S)] + S[y % len(S)] + S[z % len(S)]))
        elif s == 5:
            out.append(f"{_title_case(S[x % len(S)] + S[z % len(S)])} {L[y % len(L)]}")
        else:
            out.append(f"{_title_case(W[x % len(W)])} {('& The', 'and the', 'x')[z % 3]} {_title_case(W[y % len(W)])}")
    return out


def album_names(album_keys: np.ndarray, seed: int) -> list[str]:
    """A name for each album key."""
    h = _hash(album_keys, seed, _K_ALBUM_NAME)
    style, a, b, c = _bits(h, 0, 5), _bits(h, 8, 1 << 12), _bits(h, 24, 1 << 12), _bits(h, 40, len(_ALBUM_SUFFIX))
    W = _WORDS
    out = []
    for s, x, y, z in zip(style, a, b, c):
        if s <= 2:
            name = f"{_title_case(W[x % len(W)])} {_title_case(W[y % len(W)])}"
        elif s == 3:
            name = _title_case(W[x % len(W)])
        else:
            name = f"{('Greatest Hits', 'Live', 'Vol.', 'Chapter', 'Part')[x % 5]} {1 + y % 4}"
        out.append(name + _ALBUM_SUFFIX[z])
    return out


def track_names(track_keys: np.ndarray, seed: int) -> list[str]:
    """A name for each track key; some feature another (made-up) artist."""
    h = _hash(track_keys, seed, _K_TRACK_NAME)
    style, a, b, c, d = (_bits(h, 0, 8), _bits(h, 8, 1 << 12), _bits(h, 24, 1 << 12),
                         _bits(h, 40, len(_TRACK_SUFFIX)), _bits(h, 48, 1 << 12))
    W, F, L = _WORDS, _FIRST_NAMES, _LAST_NAMES
    out = []
    for s, x, y, z, f in zip(style, a, b, c, d):
        if s <= 2:
            name = f"{_title_case(W[x % len(W)])} {_title_case(W[y % len(W)])}"
        elif s <= 4:
            name = _title_case(W[x % len(W)])
        elif s == 5:
            name = f"{_title_case(W[x % len(W)])} {('of', 'in the', 'for', 'on')[f % 4]} {_title_case(W[y % len(W)])}"
        elif s == 6:
            name = f"{_title_case(W[x % len(W)])} (feat. {F[y % len(F)]} {L[f % len(L)]})"
        else:
            name = f"{W[x % len(W)]} {W[y % len(W)]}".lower()
        out.append(name + _TRACK_SUFFIX[z])
    return out


def track_durations(track_keys: np.ndarray, seed: int) -> np.ndarray:
    """Duration in ms: log-normal around 3:35, clipped to 0:30..15:00."""
    h = _hash(track_keys, seed, _K_DURATION)
    u1 = np.maximum(_unit(h), 1e-12)
    u2 = (h & _U64(0xFFFFF)).astype(np.float64) / (1 << 20)
    z = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)
    return np.clip(np.round(215_000 * np.exp(0.3 * z)), 30_000, 900_000).astype(np.int64)


@dataclass
class Tracks:
    """The distinct tracks of a batch with their metadata (index-aligned with ``keys``)."""

    keys: np.ndarray
    uri: list[str]
    name: list[str]
    album_uri: list[str]
    album_name: list[str]
    artist_uri: list[str]
    artist_name: list[str]
    duration_ms: np.ndarray


def describe_tracks(keys: np.ndarray, seed: int) -> Tracks:
    """Names, URIs and durations of distinct track keys, via their distinct albums and artists."""
    albums, album_inv = np.unique(album_of(keys), return_inverse=True)
    artists, artist_inv = np.unique(artist_of(keys), return_inverse=True)
    al_uri = _uris(albums, seed, _K_ALBUM_URI, "spotify:album:")
    al_name = album_names(albums, seed)
    ar_uri = _uris(artists, seed, _K_ARTIST_URI, "spotify:artist:")
    ar_name = artist_names(artists, seed)
    ai, ri = album_inv.tolist(), artist_inv.tolist()
    return Tracks(
        keys=keys,
        uri=_uris(keys, seed, _K_TRACK_URI, "spotify:track:"),
        name=track_names(keys, seed),
        album_uri=[al_uri[i] for i in ai],
        album_name=[al_name[i] for i in ai],
        artist_uri=[ar_uri[i] for i in ri],
        artist_name=[ar_name[i] for i in ri],
        duration_ms=track_durations(keys, seed),
    )


# --- rendering: the exact bytes json.dumps(indent=4, separators=(", ", ": ")) writes ------------
_I2, _I3, _I4, _I5 = " " * 8, " " * 12, " " * 16, " " * 20


def _track_bodies(t: Tracks) -> list[str]:
    """Each track's JSON text after its ``pos`` line (fields in the MPD's order)."""
    j = _json_str
    return [
        f'{_I5}"artist_name": {j(an)}, \n{_I5}"track_uri": "{tu}", \n{_I5}"artist_uri": "{au}", \n'
        f'{_I5}"track_name": {j(tn)}, \n{_I5}"album_uri": "{bu}", \n{_I5}"duration_ms": {d}, \n'
        f'{_I5}"album_name": {j(bn)}\n{_I4}}}'
        for an, tu, au, tn, bu, d, bn in zip(t.artist_name, t.uri, t.artist_uri, t.name, t.album_uri,
                                             t.duration_ms.tolist(), t.album_name)
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
        num_albums=_distinct_per_playlist(playlist, album_of(batch.tracks), P),
        num_artists=_distinct_per_playlist(playlist, artist_of(batch.tracks), P),
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
    entry_head = f"{_I4}{{\n{_I5}\"pos\": "
    parts = []
    start = 0
    for i, pid in enumerate(batch.pids.tolist()):
        n = lengths[i]
        entries = ", \n".join([f"{entry_head}{p}, \n{bodies[k]}" for p, k in enumerate(inv_l[start:start + n])])
        start += n
        desc = batch.descriptions[i]
        parts.append(
            f"{_I2}{{\n{_I3}\"name\": {_json_str(batch.names[i])}, \n"
            f"{_I3}\"collaborative\": \"{'true' if batch.collaborative[i] else 'false'}\", \n"
            f"{_I3}\"pid\": {pid}, \n{_I3}\"modified_at\": {batch.modified_at[i]}, \n"
            f"{_I3}\"num_tracks\": {n}, \n{_I3}\"num_albums\": {counts.num_albums[i]}, \n"
            f"{_I3}\"num_followers\": {batch.num_followers[i]}, \n{_I3}\"tracks\": [\n{entries}\n{_I3}], \n"
            f"{_I3}\"num_edits\": {batch.num_edits[i]}, \n{_I3}\"duration_ms\": {counts.duration_ms[i]}, \n"
            f"{_I3}\"num_artists\": {counts.num_artists[i]}"
            + (f", \n{_I3}\"description\": {_json_str(desc)}" if desc is not None else "")
            + f"\n{_I2}}}"
        )
    return (
        f"{{\n    \"info\": {{\n{_I2}\"generated_on\": {_json_str(generated_on(seed))}, \n"
        f"{_I2}\"slice\": \"{slice_name}\", \n{_I2}\"version\": \"{SLICE_VERSION}\"\n    }}, \n"
        f"    \"playlists\": [\n" + ", \n".join(parts) + "\n    ]\n}\n"
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
    batch = generate_batch(seed, _STREAM_SLICE, index, first, last - first + 1)
    name = slice_file_name(first, last)
    text = render_slice(batch, seed, f"{first}-{last}")
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(text.encode("ascii"))
    return name, batch.pids.size, int(batch.offsets[-1])


def _write_slice_task(args: tuple) -> tuple[str, int, int]:
    return write_slice(*args)


# --- the challenge set --------------------------------------------------------------------------
@dataclass(frozen=True)
class ChallengeCategory:
    """One RecSys Challenge 2018 category: seeds shown, from the start or at random, title or not."""

    num_samples: int
    random: bool
    title: bool
    min_tracks: int


CHALLENGE_CATEGORIES = (
    ChallengeCategory(0, False, True, checker.MIN_TRACKS),
    ChallengeCategory(1, False, True, checker.MIN_TRACKS),
    ChallengeCategory(5, False, True, 10),
    ChallengeCategory(5, False, False, 10),
    ChallengeCategory(10, False, True, 20),
    ChallengeCategory(10, False, False, 20),
    ChallengeCategory(25, False, True, 40),
    ChallengeCategory(25, True, True, 40),
    ChallengeCategory(100, False, True, 150),
    ChallengeCategory(100, True, True, 150),
)


def challenge_set(seed: int, n_playlists: int, count: int) -> tuple[dict, dict]:
    """``count`` held-out playlists (pids after the dataset's) as (challenge set, hold-outs)."""
    playlists, holdouts = [], []
    for b in range(-(-count // PLAYLISTS_PER_SLICE)):
        first = n_playlists + b * PLAYLISTS_PER_SLICE
        size = min(PLAYLISTS_PER_SLICE, count - b * PLAYLISTS_PER_SLICE)
        batch = generate_batch(seed, _STREAM_CHALLENGE, b, first, size)
        keys, inv = np.unique(batch.tracks, return_inverse=True)
        t = describe_tracks(keys, seed)
        rng = _rng(seed, _STREAM_CHALLENGE, 1_000_000 + b)
        for i, pid in enumerate(batch.pids.tolist()):
            ent = inv[batch.offsets[i]:batch.offsets[i + 1]].tolist()
            n = len(ent)
            eligible = [c for c in CHALLENGE_CATEGORIES if n >= c.min_tracks]
            cat = eligible[pid % len(eligible)]
            if cat.random:
                shown = np.sort(rng.choice(n, cat.num_samples, replace=False)).tolist()
            else:
                shown = list(range(cat.num_samples))
            tracks = [{"pos": p, "artist_name": t.artist_name[ent[p]], "track_uri": t.uri[ent[p]],
                       "artist_uri": t.artist_uri[ent[p]], "track_name": t.name[ent[p]],
                       "album_uri": t.album_uri[ent[p]], "duration_ms": int(t.duration_ms[ent[p]]),
                       "album_name": t.album_name[ent[p]]} for p in shown]
            record = {"name": batch.names[i]} if cat.title else {}
            record.update(pid=pid, num_tracks=n, num_samples=len(shown), num_holdouts=n - len(shown),
                          tracks=tracks)
            playlists.append(record)
            hidden = set(range(n)) - set(shown)
            holdouts.append({"pid": pid, "holdouts": [t.uri[ent[p]] for p in sorted(hidden)]})
    return ({"date": generated_on(seed), "version": SLICE_VERSION, "playlists": playlists},
            {"playlists": holdouts})


# --- the command --------------------------------------------------------------------------------
class SynthError(Exception):
    """Bad input or an unusable output path; the message names what is wrong."""


def _is_output(name: str) -> bool:
    return name.startswith(_OUTPUT_PREFIXES)


def _prepare(out: str, overwrite: bool) -> str:
    """Check the output dir and make a temporary dir next to it; returns the temporary dir."""
    out = os.path.abspath(out)
    if os.path.exists(out):
        if not os.path.isdir(out):
            raise SynthError(f"--out {out} exists and is not a directory")
        others = sorted(os.listdir(out))
        if others and not overwrite:
            raise SynthError(f"--out {out} is not empty ({len(others)} entries, e.g. {others[0]!r}); "
                             f"pass --overwrite to replace the synthetic MPD files in it")
    parent = os.path.dirname(out)
    try:
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".{os.path.basename(out)}.synth-{os.getpid()}")
        os.makedirs(tmp)
    except OSError as e:
        raise SynthError(f"cannot write next to --out {out}: {e.strerror or e}") from None
    return tmp


def _publish(tmp: str, out: str) -> None:
    """Move the finished files into place: a rename of the whole dir when ``out`` is new; else
    replace the generator's files in ``out`` (stale slices removed, other files kept)."""
    out = os.path.abspath(out)
    if os.path.isdir(out) and not os.listdir(out):
        os.rmdir(out)
    if not os.path.exists(out):
        os.rename(tmp, out)
        return
    new = set(os.listdir(tmp))
    for name in os.listdir(out):
        if _is_output(name) and name not in new:
            os.remove(os.path.join(out, name))
    for name in sorted(new):
        os.replace(os.path.join(tmp, name), os.path.join(out, name))
    os.rmdir(tmp)


def _dump(obj, path: str) -> None:
    with open(path, "w", encoding="ascii") as f:
        f.write(json.dumps(obj, indent=4, separators=(", ", ": ")) + "\n")


def generate(n_playlists: int, out: str, seed: int = 0, workers: int = 1, overwrite: bool = False,
             challenge: int = 0, progress=None) -> list[str]:
    """Write a synthetic MPD of ``n_playlists`` playlists to ``out``; returns the slice file names.

    ``progress`` (a file, e.g. ``sys.stderr``) receives a line every ~5% of the slices.
    """
    if not isinstance(n_playlists, int) or n_playlists <= 0:
        raise SynthError(f"--playlists must be a positive integer, got {n_playlists!r}")
    if workers < 1:
        raise SynthError(f"--workers must be >= 1, got {workers}")
    if challenge < 0:
        raise SynthError(f"--challenge-set must be >= 0, got {challenge}")
    if not 0 <= seed < 1 << 63:
        raise SynthError(f"--seed must be in 0..2^63-1, got {seed}")
    n_files = -(-n_playlists // PLAYLISTS_PER_SLICE)
    tmp = _prepare(out, overwrite)
    try:
        tasks = [(tmp, seed, n_playlists, i) for i in range(n_files)]
        names = []
        t0 = time.perf_counter()
        done_playlists = 0
        every = max(1, n_files // 20)

        def report(name: str, count: int) -> None:
            nonlocal done_playlists
            names.append(name)
            done_playlists += count
            if progress is not None and (len(names) % every == 0 or len(names) == n_files):
                rate = done_playlists / max(time.perf_counter() - t0, 1e-9)
                print(f"synth: {len(names)}/{n_files} slices, {done_playlists} playlists, "
                      f"{rate:,.0f} playlists/s", file=progress, flush=True)

        if workers == 1 or n_files == 1:
            for task in tasks:
                name, count, _ = write_slice(*task)
                report(name, count)
        else:
            # forkserver, not fork: the caller may hold threads (a Spark driver, a trainer).
            # ProcessPoolExecutor, not Pool: a worker that dies raises instead of hanging.
            ctx = get_context("forkserver" if os.name == "posix" else "spawn")
            try:
                with ProcessPoolExecutor(min(workers, n_files), mp_context=ctx) as pool:
                    for name, count, _ in pool.map(_write_slice_task, tasks):
                        report(name, count)
            except BrokenProcessPool as e:
                raise SynthError(f"a worker process died ({e}); run with --workers 1 to see why") from None
        if challenge:
            cs, truth = challenge_set(seed, n_playlists, challenge)
            _dump(cs, os.path.join(tmp, CHALLENGE_FILE))
            _dump(truth, os.path.join(tmp, CHALLENGE_HOLDOUTS_FILE))
        _publish(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SynthError(f"writing {out} failed: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return names


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2, as for every other bad input
        self.exit(2, f"synth: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    ap = _Parser(prog="python -m etl.synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--playlists", type=int, required=True, help="number of playlists (pids 0..N-1)")
    ap.add_argument("--out", required=True, help="output directory (created; must be empty unless --overwrite)")
    ap.add_argument("--seed", type=int, default=0, help="catalogue and playlist seed (default 0)")
    ap.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                    help="processes writing slices in parallel (output does not depend on it)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace the synthetic MPD files already in --out (other files are kept)")
    ap.add_argument("--challenge-set", type=int, default=0, metavar="K",
                    help=f"also write {CHALLENGE_FILE} from K more playlists (pids N..N+K-1)")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    a = ap.parse_args(argv)
    try:
        t0 = time.perf_counter()
        names = generate(a.playlists, a.out, a.seed, a.workers, a.overwrite, a.challenge_set,
                         None if a.quiet else sys.stderr)
    except SynthError as e:
        print(f"synth: error: {e}", file=sys.stderr)
        return 2
    if not a.quiet:
        print(f"synth: wrote {len(names)} slices ({a.playlists} playlists) to {a.out} "
              f"in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
