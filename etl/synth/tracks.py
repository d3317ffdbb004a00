"""The implicit catalogue: a track is a key ``(genre, artist rank, album index, track index)``; its
URIs, names and duration are hashes of that key and the seed, so a track keeps them everywhere."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl.synth.calibration import B_BITS, R_BITS, SINGLE_SHARE, T_BITS

_U64 = np.uint64


# fmt: off
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
# fmt: on


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
    return [prefix + raw[i : i + 22] for i in range(0, len(raw), 22)]


# Hash kinds: one per derived attribute, so attributes are independent.
_K_ARTIST_URI, _K_ALBUM_URI, _K_TRACK_URI = 1, 2, 3
_K_ARTIST_NAME, _K_ALBUM_NAME, _K_TRACK_NAME, _K_DURATION, _K_ALBUM_LEN = 4, 5, 6, 7, 8


def album_length(album_keys: np.ndarray, seed: int) -> np.ndarray:
    """Tracks on each album (1..20): an artist's first three albums are full-length; later
    releases are singles/EPs (1-3 tracks) with probability SINGLE_SHARE."""
    h = _hash(album_keys, seed, _K_ALBUM_LEN)
    u = _unit(h)
    v = (h & _U64(0xFFFF)).astype(np.int64)
    index = (album_keys & _U64((1 << B_BITS) - 1)).astype(np.int64)
    single = (index >= 3) & (u < SINGLE_SHARE)
    return np.where(single, 1 + v % 3, 10 + v % 11)


def artist_of(track_keys: np.ndarray) -> np.ndarray:
    return track_keys >> _U64(T_BITS + B_BITS)


def album_of(track_keys: np.ndarray) -> np.ndarray:
    return track_keys >> _U64(T_BITS)


def genre_of(track_keys: np.ndarray) -> np.ndarray:
    return (track_keys >> _U64(T_BITS + B_BITS + R_BITS)).astype(np.int64)


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
    style, a, b, c, d = (
        _bits(h, 0, 8),
        _bits(h, 8, 1 << 12),
        _bits(h, 24, 1 << 12),
        _bits(h, 40, len(_TRACK_SUFFIX)),
        _bits(h, 48, 1 << 12),
    )
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
