"""The generator's numbers: catalogue key widths, the MPD's histograms and fitted tails, genres
and their title pools (calibrated to ``shared/data/mpd_stats.txt``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from etl import checker

# artist = genre | rank, album = artist | index, track = album | index: 5+30+14+5 = 54 bits, so a
# (playlist-in-batch, track) pair still fits one uint64, with 10 bits for the playlist.
G_BITS, R_BITS, B_BITS, T_BITS = 5, 30, 14, 5
KEY_BITS = G_BITS + R_BITS + B_BITS + T_BITS
MAX_BATCH = 1 << (64 - KEY_BITS)  # playlists per batch: (playlist, track) pairs fit a uint64
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
# fmt: off
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
MODIFIED_TOP20 = (19018, 15495, 11083, 9994, 11640, 9727, 9142, 8588, 7953, 6407, 5979, 6980,
                   5986, 5792, 5653, 5375, 4483, 4431, 4840, 4460)
# fmt: on
LAST_DAY = 1_509_321_600  # 2017-10-30T00:00:00Z
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
FOLLOWER_TAIL_ALPHA = 1.0


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
    """P(modified day = LAST_DAY - d days), d = -2..: a partial last two days, the real top-20
    days, then a fast (60-day) and a slow (2-year) decay back to 2010-01-01."""
    days = (LAST_DAY - checker.MIN_MODIFIED_AT) // checker.SECONDS_PER_DAY
    d = np.arange(days + 1, dtype=np.float64)
    p = np.zeros(days + 3)  # slot 0,1: 2017-11-01, 2017-10-31
    p[0], p[1] = 1000 / 1e6, 3000 / 1e6
    p[2:22] = np.array(MODIFIED_TOP20) / 1e6
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
# fmt: off
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
assert len(GENRES) <= 1 << G_BITS
GENRE_P = np.array([g.weight for g in GENRES]) / sum(g.weight for g in GENRES)
GENRE_TITLES = [tuple(g.titles) for g in GENRES]
# A playlist whose main genre is g takes pool title t with P = share(t) / P(g), so the titles'
# shares match the real counts; the other playlists of g get a title flavoured by g
# (TITLE_FLAVOURED of them: "country roads", "rap 2017"), a generic or a personal one.
GENRE_TITLE_CDF = [np.cumsum([c / 1e6 / p for c in g.titles.values()]) for g, p in zip(GENRES, GENRE_P)]
assert all(cdf[-1] < 1 for cdf in GENRE_TITLE_CDF)
TITLE_FLAVOURED, TITLE_GENERIC = 0.5, 0.2
GENERIC_TITLES = ("music", "new", "my playlist", "songs", "favorites", "mix", "playlist", "good stuff",
                   "random", "car", "mood", "everything", "2017", "fall '17", "summer", "morning",
                   "Mom's playlist", "wedding", "road trip", "✔️", "🔥", "💯", "yeet", "BOP", "mixtape",
                   '"the" playlist', "rock\\pop", "AC/DC & co")
TITLE_WORDS = ("sunday", "drive", "night", "stuff", "jams", "vibes", "tunes", "feels", "songs",
                "mix", "beats", "mood", "days", "time", "hits", "love", "life", "summer", "winter",
                "spring", "fall", "late", "early", "good", "happy", "sad", "lazy", "rainy", "sunny")
NAME_FIRST = ("Sarah", "Abby", "Jake", "Emma", "Chris", "Alex", "Sam", "Taylor", "Jordan", "Maria",
               "José", "Zoë", "Noah", "Liam", "Mia", "Ava", "Lucas", "Leah", "Kyle", "Dani")
DESCRIPTIONS = ("my favorite {t} songs", "{t} for every day", "songs for {t}", "the best of {t}",
                 "{t} ✨", "updated weekly", "a little bit of everything", "for the car")
# fmt: on
