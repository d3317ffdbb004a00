"""Benchmark of the synthetic MPD generator: throughput and calibration against the real MPD.

    .venv/bin/python bench/bench_synth.py [--scales 10000 100000] [--repeats 3] [--out bench/out/results_synth.md]

Throughput: wall time of ``etl.synth.write.generate`` for 10k playlists (files written to a temporary
dir), workers 1 and 2, median of ``--repeats``. Calibration: statistics of the generated
playlists at each scale (computed from the generator's arrays, which the tests check against the
written JSON) next to the real MPD's (``shared/data/mpd_stats.txt``; per-playlist statistics are
scale-free, distinct counts are given at 100k and 1M and extrapolated elsewhere with the real
Heaps exponent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from etl.synth import calibration, playlists, slices, write
from etl.synth import tracks as track_keys

# Real MPD (mpd_stats.txt; 1M playlists, 66,346,428 entries).
REAL_TRACKS_100K, REAL_TRACKS_1M = 681_805, 2_262_292
REAL_ALBUMS_1M, REAL_ARTISTS_1M = 734_684, 295_860
HEAPS = float(np.log(REAL_TRACKS_1M / REAL_TRACKS_100K) / np.log(10))  # ~0.521
REAL = {
    "mean playlist length": 66.346428,
    "share with 1 follower": 754_219 / 1e6,
    "share with 2 followers": 149_600 / 1e6,
    "share with num_edits = 2": 92_252 / 1e6,
    "share modified in the top-20 days (2017-10-11..30)": sum(calibration.MODIFIED_TOP20) / 1e6,
    "share of length 20 (the mode)": 15_057 / 1e6,
    "share with description": 18_760 / 1e6,
    "share titled 'country'": 10_000 / 1e6,
    "top track: share of playlists": 46_574 / 1e6,
    "top artist: share of entries": 847_160 / 66_346_428,
}


SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mpd_sample" / "mpd.slice.0-999.json"


def sample_stats() -> dict:
    """Per-playlist structure of the real sample (37 playlists), when ../shared/data is present."""
    if not SAMPLE.exists():
        return {}
    ps = json.loads(SAMPLE.read_bytes())["playlists"]
    same = pairs = linked = hidden = 0
    for p in ps:
        t = p["tracks"]
        pairs += len(t) - 1
        same += sum(a["artist_uri"] == b["artist_uri"] for a, b in zip(t, t[1:]))
        if len(t) >= 20:
            seeds = {x["artist_uri"] for x in t[:10]}
            seen = {x["track_uri"] for x in t[:10]}
            for x in t[10:]:
                if x["track_uri"] not in seen:
                    seen.add(x["track_uri"])
                    hidden += 1
                    linked += x["artist_uri"] in seeds
    return {
        "mean num_artists / num_tracks": float(np.mean([p["num_artists"] / p["num_tracks"] for p in ps])),
        "mean num_albums / num_tracks": float(np.mean([p["num_albums"] / p["num_tracks"] for p in ps])),
        "consecutive entries on the same artist": same / pairs,
        "first-10 hold-out: hidden tracks by a seed artist": linked / hidden,
    }


def real_distinct(kind: str, n: int) -> tuple[float, str]:
    """Real distinct count at ``n`` playlists: given at 100k (tracks) and 1M, else extrapolated."""
    at_1m = {"tracks": REAL_TRACKS_1M, "albums": REAL_ALBUMS_1M, "artists": REAL_ARTISTS_1M}[kind]
    if n == 1_000_000:
        return at_1m, "given"
    if kind == "tracks" and n == 100_000:
        return REAL_TRACKS_100K, "given"
    return at_1m * (n / 1e6) ** HEAPS, f"1M value x (N/1M)^{HEAPS:.3f}"


def generated_stats(n: int, seed: int = 0) -> dict:
    """Statistics of the first ``n`` generated playlists (the same batches the slices hold)."""
    lengths, followers, edits, modified, titled_country, described = [], [], [], [], 0, 0
    repeats = 0
    per_playlist_tracks, entries = [], []
    hidden_tracks, hidden_artist_in_seeds = [], []
    artists_ratio, albums_ratio = [], []
    same_artist = same_album = pairs = 0
    for i in range(-(-n // slices.PLAYLISTS_PER_SLICE)):
        first, last = slices.slice_bounds(n, i)
        b = playlists.generate_batch(seed, playlists.STREAM_SLICE, i, first, last - first + 1)
        ln = np.diff(b.offsets)
        playlist = np.repeat(np.arange(ln.size), ln)
        lengths.append(ln)
        followers.append(b.num_followers)
        edits.append(b.num_edits)
        modified.append(b.modified_at)
        titled_country += sum(t.strip().lower() == "country" for t in b.names)
        described += sum(d is not None for d in b.descriptions)
        rep = playlists.repeats(playlist, b.tracks)
        artists_ratio.append(playlists.distinct_per_playlist(playlist, track_keys.artist_of(b.tracks), ln.size) / ln)
        albums_ratio.append(playlists.distinct_per_playlist(playlist, track_keys.album_of(b.tracks), ln.size) / ln)
        repeats += int(rep.sum())
        per_playlist_tracks.append(b.tracks[~rep])
        entries.append(b.tracks)
        nxt = np.ones(b.tracks.size, dtype=bool)
        nxt[b.offsets[1:] - 1] = False  # last entry of each playlist has no successor
        a, c = b.tracks[:-1][nxt[:-1]], b.tracks[1:][nxt[:-1]]
        same_artist += int((track_keys.artist_of(a) == track_keys.artist_of(c)).sum())
        same_album += int((track_keys.album_of(a) == track_keys.album_of(c)).sum())
        pairs += a.size
        # A first-10 hold-out on playlists of >= 20 tracks: which hidden tracks could a method
        # find? Those seen in other playlists (co-occurrence can score them), and those whose
        # artist is among the seeds (the track-artist/album structure can).
        pos = np.arange(b.tracks.size) - b.offsets[playlist]
        held = (ln >= 20)[playlist]
        seed_artist = (
            playlist[held & (pos < 10)].astype(np.uint64) << np.uint64(calibration.KEY_BITS)
        ) | track_keys.artist_of(b.tracks[held & (pos < 10)])
        hidden = held & (pos >= 10) & ~rep
        hidden_artist = (playlist[hidden].astype(np.uint64) << np.uint64(calibration.KEY_BITS)) | track_keys.artist_of(
            b.tracks[hidden]
        )
        hidden_tracks.append(b.tracks[hidden])
        hidden_artist_in_seeds.append(np.isin(hidden_artist, seed_artist))
    lengths, followers, edits = map(np.concatenate, (lengths, followers, edits))
    artists_ratio, albums_ratio = np.concatenate(artists_ratio), np.concatenate(albums_ratio)
    modified = np.concatenate(modified)
    all_entries = np.concatenate(entries)
    tracks, entry_counts = np.unique(all_entries, return_counts=True)
    in_playlists, playlist_counts = np.unique(np.concatenate(per_playlist_tracks), return_counts=True)
    hidden = np.concatenate(hidden_tracks)
    warm = playlist_counts[np.searchsorted(in_playlists, hidden)] >= 2  # in some other playlist
    linked = np.concatenate(hidden_artist_in_seeds)
    _, artist_counts = np.unique(track_keys.artist_of(all_entries), return_counts=True)
    top20_days = (modified >= calibration.LAST_DAY - 19 * 86_400) & (modified <= calibration.LAST_DAY)
    return {
        "mean playlist length": lengths.mean(),
        "share with 1 follower": (followers == 1).mean(),
        "share with 2 followers": (followers == 2).mean(),
        "share with num_edits = 2": (edits == 2).mean(),
        "share modified in the top-20 days (2017-10-11..30)": top20_days.mean(),
        "share of length 20 (the mode)": (lengths == 20).mean(),
        "share with description": described / n,
        "share titled 'country'": titled_country / n,
        "top track: share of playlists": playlist_counts.max() / n,
        "top artist: share of entries": artist_counts.max() / all_entries.size,
        "entries repeating a track of the same playlist": repeats / all_entries.size,
        "distinct tracks": tracks.size,
        "distinct albums": np.unique(track_keys.album_of(tracks)).size,
        "distinct artists": np.unique(track_keys.artist_of(tracks)).size,
        "share of tracks that appear once": (entry_counts == 1).mean(),
        "mean num_artists / num_tracks": float(np.mean(artists_ratio)),
        "mean num_albums / num_tracks": float(np.mean(albums_ratio)),
        "consecutive entries on the same artist": same_artist / pairs,
        "consecutive entries on the same album": same_album / pairs,
        "first-10 hold-out: hidden tracks found in other playlists": warm.mean(),
        "first-10 hold-out: hidden tracks by a seed artist": linked.mean(),
        "first-10 hold-out: hidden tracks in no other playlist, by a seed artist": (linked & ~warm).mean(),
    }


def _law(exponent: float, offset: float, k: np.ndarray) -> np.ndarray:
    """P(k) of synth's offset power law (the exact probabilities of its floor'd inverse CDF)."""
    s = lambda x: (1 + x / offset) ** (-(exponent - 1))  # noqa: E731
    return s(k) - s(k + 1)


def expected_distinct(n: int) -> dict:
    """Expected distinct artists/albums/tracks in ``n`` playlists under synth's model (Poisson
    approximation), the calculation its constants were fitted with. Runs copy the anchor's
    artist (and album), so only fresh draws can reach a new artist or album."""
    entries = n * float((calibration.LENGTH_PMF * np.arange(calibration.LENGTH_PMF.size)).sum())
    k_artist = 1 - calibration.CONTINUE_RUN
    k_album = 1 - calibration.CONTINUE_RUN * calibration.SAME_ALBUM_SHARE
    # Artist ranks: exact for the head, log-binned (probability per artist, artists per bin) beyond.
    head = 20_000
    edges = np.unique(np.logspace(np.log10(head), 9, 400).astype(np.int64)).astype(np.float64)
    s = (1 + edges / calibration.ARTIST_OFFSET) ** (-(calibration.ARTIST_EXPONENT - 1))
    p_artist = np.concatenate(
        [
            _law(calibration.ARTIST_EXPONENT, calibration.ARTIST_OFFSET, np.arange(head, dtype=np.float64)),
            (s[:-1] - s[1:]) / np.diff(edges),
        ]
    )
    n_artist = np.concatenate([np.ones(head), np.diff(edges)])
    # Per artist drawn lambda times: expected distinct albums f_album(lambda), tracks f_track(lambda).
    lam = np.logspace(-10, 9, 300)
    f_album, f_track = np.zeros_like(lam), np.zeros_like(lam)
    p_album = _law(calibration.ALBUM_EXPONENT, calibration.ALBUM_OFFSET, np.arange(1500, dtype=np.float64))
    e = 1 - calibration.TRACK_EXPONENT

    def p_track(length: int) -> np.ndarray:
        t = np.arange(length, dtype=np.float64)
        return ((2 + t) ** e - (1 + t) ** e) / ((length + 1.0) ** e - 1)

    full = [(length, 1 / 11) for length in range(10, 21)]
    for b, pb in enumerate(p_album):
        f_album += 1 - np.exp(-k_album / k_artist * lam * pb)
        lengths = (
            full
            if b < 3
            else [(ln, w * (1 - calibration.SINGLE_SHARE)) for ln, w in full]
            + [(ln, calibration.SINGLE_SHARE / 3) for ln in (1, 2, 3)]
        )
        for length, w in lengths:
            f_track += w * (1 - np.exp(-np.outer(lam * pb / k_artist, p_track(length)))).sum(1)
    out = {"artists": 0.0, "albums": 0.0, "tracks": 0.0}
    for pg in calibration.GENRE_P:
        lam_artist = k_artist * entries * pg * p_artist  # fresh draws reaching each artist
        out["artists"] += float((n_artist * (1 - np.exp(-lam_artist))).sum())
        out["albums"] += float((n_artist * np.interp(np.log(lam_artist), np.log(lam), f_album)).sum())
        out["tracks"] += float((n_artist * np.interp(np.log(lam_artist), np.log(lam), f_track)).sum())
    return out


def throughput(n: int, workers: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            write.generate(n, os.path.join(d, "mpd"), seed=0, workers=workers)
            times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def _fmt(v) -> str:
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v >= 1000):
        return f"{v:,.0f}"
    if isinstance(v, float) and v < 1:
        return f"{100 * v:.2f}%"
    return f"{v:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--throughput-playlists", type=int, default=10_000)
    ap.add_argument(
        "--out",
        default=str(Path(__file__).parent / "out" / "results_synth.md"),
        help="report written here (Markdown; its sections go into bench/RESULTS.md)",
    )
    a = ap.parse_args()

    lines = [
        "# Synthetic MPD generator: throughput and calibration",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"numpy {np.__version__}, 24 GB RAM; shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at start), so medians. "
        f"Command: `python bench/bench_synth.py --scales {' '.join(map(str, a.scales))}`.",
        "",
    ]
    lines += [
        "## Throughput (slices written to local disk)",
        "",
        f"| workers | playlists/s (median of {a.repeats}, {a.throughput_playlists:,} playlists) |",
        "|---|---|",
    ]
    rates = {}
    for w in (1, 2):
        rates[w] = throughput(a.throughput_playlists, w, a.repeats)
        lines.append(f"| {w} | {rates[w]:,.0f} |")
        print(f"workers={w}: {rates[w]:,.0f} playlists/s", flush=True)
    lines += ["", f"Speed-up with 2 workers: {rates[2] / rates[1]:.2f}x.", ""]

    sample = sample_stats()
    for n in a.scales:
        t0 = time.perf_counter()
        g = generated_stats(n)
        expected = expected_distinct(n)
        print(f"stats at {n}: {time.perf_counter() - t0:.0f}s", flush=True)
        lines += [
            f"## Calibration at {n:,} playlists (seed 0)",
            "",
            "| statistic | generated | real MPD | note |",
            "|---|---|---|---|",
        ]
        for k, v in g.items():
            if k in REAL:
                lines.append(f"| {k} | {_fmt(v)} | {_fmt(REAL[k])} | scale-free |")
            elif k.startswith("distinct "):
                real, how = real_distinct(k.split()[1], n)
                lines.append(
                    f"| {k} | {_fmt(v)} | {_fmt(real)} | {how}; ratio {v / real:.2f}; "
                    f"model expectation {_fmt(expected[k.split()[1]])} |"
                )
            elif k == "entries repeating a track of the same playlist":
                lines.append(f"| {k} | {_fmt(v)} | ~1.3% (sample: 32/2,023 = 1.58%) | |")
            elif k == "share of tracks that appear once":
                lines.append(f"| {k} | {_fmt(v)} | ~50% at 1M | falls with scale |")
            elif k in sample:
                lines.append(f"| {k} | {_fmt(v)} | {_fmt(sample[k])} | real sample (37 playlists) |")
            else:
                lines.append(f"| {k} | {_fmt(v)} | n/a | planted structure |")
        lines.append("")
    lines += [
        "## How to read this",
        "",
        "- Per-playlist statistics come from the real top-20 histograms and are matched by "
        "construction; they are scale-free, so the real column holds at every scale.",
        "- Distinct counts: the catalogue laws (etl/synth.py constants) were fitted so the model "
        "expectation (`expected_distinct`, a Poisson calculation over the same laws) meets the "
        "real tracks at 100k and 1M and albums/artists at 1M; the generated column checks the "
        "calculation. Real values other than 100k tracks and 1M counts are extrapolations.",
        "- Known gaps (seed 0): the generated track curve is a little steeper than the real "
        "one (Heaps exponent ~0.55 vs 0.52: -2% at 100k, +6% at 1M), albums run ~6% short at 1M, "
        "the head is flatter (top track ~3.9% of playlists vs 4.66%, top artist ~0.9% of entries "
        "vs Drake's 1.28%), and playlists repeat artists a little more than the real sample "
        "(num_artists/num_tracks 0.63 vs 0.69): one offset power law per level cannot meet all "
        "of these at once.",
        "- Throughput: one slice is ~0.05 s of sampling and ~0.3 s of text rendering on one core; "
        "with the machine shared (load average well above 2), a second worker mostly adds "
        "process start-up and contention, so 2 workers can measure slower than 1. Files are "
        "independent, so free cores should scale it; not measured here (no idle machine).",
        "",
    ]
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
