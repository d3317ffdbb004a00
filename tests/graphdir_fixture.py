"""Contract-conforming graph dirs built in plain Python, for trainer tests and benchmarks.

The trainer must not wait for the Spark job to be testable, so this module writes the same
layout ``etl.job`` writes (``etl/contract.py``): node and edge tables as Parquet with the
contract's dtypes, and a ``manifest.json`` carrying every ``MANIFEST_KEYS`` key. Inputs are
either the real MPD sample (parsed JSON) or a small generator with planted genre structure.
Ids are assigned by sorting keys; files are written in a shuffled row order and split in two
parts so that readers which index by file order instead of by id fail.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from etl import contract as C

_ARROW = {C.INT64: pa.int64(), C.STRING: pa.string(), C.BOOL: pa.bool_(), C.DOUBLE: pa.float64()}

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(REPO_ROOT, "..", "shared", "data")
MPD_SAMPLE = os.path.join(SHARED_DATA, "mpd_sample", "mpd.slice.0-999.json")


@dataclass
class Catalogue:
    """Columnar MPD content: playlists, their track entries, and the track/album/artist keys."""

    pid: np.ndarray                 # (P,) int64
    name: list[str]
    num_followers: np.ndarray
    collaborative: np.ndarray       # bool
    num_edits: np.ndarray
    modified_at: np.ndarray
    entry_playlist: np.ndarray      # (E,) row into the playlist arrays
    entry_track: np.ndarray         # (E,) row into the track arrays
    entry_pos: np.ndarray
    track_uri: list[str]
    track_name: list[str]
    track_duration: np.ndarray
    track_album: np.ndarray         # row into album arrays
    track_artist: np.ndarray        # row into artist arrays
    album_uri: list[str]
    album_name: list[str]
    artist_uri: list[str]
    artist_name: list[str]


def catalogue_from_mpd(playlists: list[dict]) -> Catalogue:
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
    i64 = lambda v: np.asarray(v, dtype=np.int64)  # noqa: E731
    return Catalogue(
        pid=i64([p["pid"] for p in playlists]),
        name=[p["name"] for p in playlists],
        num_followers=i64([p["num_followers"] for p in playlists]),
        collaborative=np.array([p["collaborative"] == "true" for p in playlists]),
        num_edits=i64([p["num_edits"] for p in playlists]),
        modified_at=i64([p["modified_at"] for p in playlists]),
        entry_playlist=i64(e_pl), entry_track=i64(e_tr), entry_pos=i64(e_pos),
        track_uri=list(tracks), track_name=t_name, track_duration=i64(t_dur),
        track_album=i64(t_alb), track_artist=i64(t_art),
        album_uri=list(albums), album_name=al_name, artist_uri=list(artists), artist_name=ar_name,
    )


def load_mpd_sample() -> list[dict]:
    with open(MPD_SAMPLE) as f:
        return json.load(f)["playlists"]


def synthetic_catalogue(num_playlists: int, seed: int = 0, tracks_per_genre: int = 600) -> Catalogue:
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
    return Catalogue(
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
        track_album=track_album[used], track_artist=track_artist[used],
        album_uri=[f"spotify:album:synth{a:07d}" for a in range(num_albums)],
        album_name=[f"album {a}" for a in range(num_albums)],
        artist_uri=[f"spotify:artist:synth{a:06d}" for a in range(num_artists)],
        artist_name=[f"artist {a}" for a in range(num_artists)],
    )


def choose_holdout(cat: Catalogue, num_val: int, num_test: int, seed: int = 0,
                   categories: tuple[str, ...] = ("first_5", "first_10", "random_25", "title_only")):
    """Deterministically pick val/test playlists and their seed categories."""
    rng = np.random.default_rng(seed)
    length = np.bincount(cat.entry_playlist, minlength=len(cat.pid))
    split = np.array([C.SPLIT_TRAIN] * len(cat.pid), dtype=object)
    category = np.array([None] * len(cat.pid), dtype=object)
    order = rng.permutation(len(cat.pid))
    want = [C.SPLIT_VAL] * num_val + [C.SPLIT_TEST] * num_test
    k = 0
    for row in order:
        if k == len(want):
            break
        cat_name = categories[k % len(categories)]
        if length[row] >= C.SEED_CATEGORY_BY_NAME[cat_name].min_tracks:
            split[row], category[row] = want[k], cat_name
            k += 1
    return split, category


def write_graph_dir(root: str, cat: Catalogue, split, category, seed: int = 0,
                    manifest_overrides: dict | None = None) -> str:
    """Write ``cat`` as a contract graph dir under ``root`` and return ``root``."""
    rng = np.random.default_rng(seed + 1)
    # Ids: sort each node type by its key, as a deterministic ETL would.
    p_order = np.argsort(cat.pid, kind="stable")
    p_id = np.empty_like(p_order); p_id[p_order] = np.arange(len(p_order))
    t_order = np.argsort(np.array(cat.track_uri)); t_id = np.empty_like(t_order); t_id[t_order] = np.arange(len(t_order))
    al_order = np.argsort(np.array(cat.album_uri)); al_id = np.empty_like(al_order); al_id[al_order] = np.arange(len(al_order))
    ar_order = np.argsort(np.array(cat.artist_uri)); ar_id = np.empty_like(ar_order); ar_id[ar_order] = np.arange(len(ar_order))
    P, T, AL, AR = len(p_id), len(t_id), len(al_id), len(ar_id)

    e_pl, e_tr, pos = p_id[cat.entry_playlist], t_id[cat.entry_track], cat.entry_pos
    role = np.array([C.ROLE_TRAIN] * len(e_pl), dtype=object)
    split_by_id = np.empty(P, dtype=object); split_by_id[p_id] = split
    cat_by_id = np.empty(P, dtype=object); cat_by_id[p_id] = category
    for p in np.flatnonzero(split_by_id != C.SPLIT_TRAIN):
        rows = np.flatnonzero(e_pl == p)
        sc = C.SEED_CATEGORY_BY_NAME[cat_by_id[p]]
        rows = rows[np.argsort(pos[rows])]
        seeds = rng.choice(rows, sc.num_seeds, replace=False) if sc.random else rows[: sc.num_seeds]
        role[rows] = C.ROLE_HIDDEN
        role[seeds] = C.ROLE_SEED
    visible = role != C.ROLE_HIDDEN

    track_album = al_id[cat.track_album][t_order]   # by track id
    track_artist = ar_id[cat.track_artist][t_order]
    track_dur = cat.track_duration[t_order]
    vis_pl, vis_tr = e_pl[visible], e_tr[visible]
    deg_track_pl = np.bincount(vis_pl, minlength=P)
    deg_playlist_tr = np.bincount(vis_tr, minlength=T)
    # Playlist aggregates from visible tracks only (no leakage of hidden ones).
    pairs_al = np.unique(np.stack([vis_pl, track_album[vis_tr]]), axis=1)
    pairs_ar = np.unique(np.stack([vis_pl, track_artist[vis_tr]]), axis=1)
    num_albums = np.bincount(pairs_al[0], minlength=P)
    num_artists = np.bincount(pairs_ar[0], minlength=P)
    duration = np.bincount(vis_pl, weights=track_dur[vis_tr], minlength=P).astype(np.int64)
    num_tracks = np.bincount(e_pl, minlength=P)

    null = [None] * 1
    tables = {
        "nodes/playlist": {
            "playlist_id": np.arange(P), "pid": cat.pid[p_order], "name": [cat.name[i] for i in p_order],
            "split": list(split_by_id), "seed_category": list(cat_by_id),
            "num_followers": cat.num_followers[p_order], "collaborative": cat.collaborative[p_order],
            "num_edits": cat.num_edits[p_order], "modified_at": cat.modified_at[p_order],
            "num_tracks": num_tracks, "num_albums": num_albums, "num_artists": num_artists,
            "duration_ms": duration, "deg_track": deg_track_pl,
            "hop2_walks": null * P, "hop2_reach": null * P,
        },
        "nodes/track": {
            "track_id": np.arange(T), "track_uri": [cat.track_uri[i] for i in t_order],
            "track_name": [cat.track_name[i] for i in t_order], "duration_ms": track_dur,
            "album_id": track_album, "artist_id": track_artist, "deg_playlist": deg_playlist_tr,
            "hop2_walks": null * T, "hop2_reach": null * T,
        },
        "nodes/album": {
            "album_id": np.arange(AL), "album_uri": [cat.album_uri[i] for i in al_order],
            "album_name": [cat.album_name[i] for i in al_order],
            "deg_track": np.bincount(track_album, minlength=AL),
            "hop2_walks": null * AL, "hop2_reach": null * AL,
        },
        "nodes/artist": {
            "artist_id": np.arange(AR), "artist_uri": [cat.artist_uri[i] for i in ar_order],
            "artist_name": [cat.artist_name[i] for i in ar_order],
            "deg_track": np.bincount(track_artist, minlength=AR),
            "hop2_walks": null * AR, "hop2_reach": null * AR,
        },
        "edges/playlist_track": {"playlist_id": e_pl, "track_id": e_tr, "pos": pos, "role": list(role)},
        "edges/track_album": {"track_id": np.arange(T), "album_id": track_album},
        "edges/track_artist": {"track_id": np.arange(T), "artist_id": track_artist},
    }
    feature_stats = {}
    for t, cols in C.FEATURE_COLUMNS.items():
        feature_stats[t] = {}
        for col in cols:
            v = tables[f"nodes/{t}"][col]
            if len(v) and v[0] is None:
                feature_stats[t][col] = {"mean": None, "std": None}
                continue
            lv = np.log1p(np.asarray(v, dtype=np.float64))
            feature_stats[t][col] = {"mean": float(lv.mean()), "std": float(lv.std())}

    for name, cols in tables.items():
        schema = pa.schema([(c, _ARROW[d]) for c, d in C.TABLES[name].items()])
        table = pa.table({c: pa.array(np.asarray(cols[c]).tolist() if isinstance(cols[c], np.ndarray) else cols[c],
                                      type=schema.field(c).type) for c in C.TABLES[name]}, schema=schema)
        table = table.take(pa.array(rng.permutation(table.num_rows)))
        out = os.path.join(root, name)
        os.makedirs(out, exist_ok=True)
        half = table.num_rows // 2
        pq.write_table(table.slice(0, half), os.path.join(out, "part-00000.parquet"))
        pq.write_table(table.slice(half), os.path.join(out, "part-00001.parquet"))

    counts = {name: len(next(iter(cols.values()))) for name, cols in tables.items()}
    manifest = {
        "schema_version": C.SCHEMA_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "input": {"files": [], "skipped_files": []},
        "counts": counts,
        "dropped": {},
        "validation": {},
        "split": {"seed": seed, "num_val": int((split == C.SPLIT_VAL).sum()),
                  "num_test": int((split == C.SPLIT_TEST).sum()), "categories": {}},
        "hop2": {"mode": "off", "relative_error": None},
        "feature_stats": feature_stats,
        "timings": {},
        "spark": {"version": None, "master": None, "conf": {}},
        "writer": "tests/graphdir_fixture.py",
    }
    manifest.update(manifest_overrides or {})
    with open(os.path.join(root, C.MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return root


def sample_graph_dir(root: str, num_val: int = 4, num_test: int = 4, seed: int = 0) -> str:
    """Graph dir of the real 37-playlist MPD sample."""
    cat = catalogue_from_mpd(load_mpd_sample())
    split, category = choose_holdout(cat, num_val, num_test, seed)
    return write_graph_dir(root, cat, split, category, seed)


def synthetic_graph_dir(root: str, num_playlists: int, seed: int = 0, holdout: float = 0.05,
                        tracks_per_genre: int = 600) -> str:
    """Graph dir of ``num_playlists`` generated playlists, ``holdout`` of them val and as many test."""
    cat = synthetic_catalogue(num_playlists, seed, tracks_per_genre)
    k = max(1, int(num_playlists * holdout))
    split, category = choose_holdout(cat, k, k, seed)
    return write_graph_dir(root, cat, split, category, seed)
