"""Graph dirs written straight through the contract (``etl/contract.py``), without Spark.

The trainer must not wait an hour for the ETL to be worked on at scale: this module writes the
layout ``etl.job`` writes (node and edge tables as Parquet with the contract's dtypes, and a
``manifest.json``) from columnar playlists, either the generator's (the same playlists as its
JSON slices) or parsed MPD JSON. It applies the ETL's rules: one entry per (playlist, track) at
its first position, ids in key order, playlist aggregates from visible entries only, hold-out
chosen by :func:`etl.splits.choose_holdout`. It computes no 2-hop features (``hop2: off``).
Tables are written in a shuffled row order and in several parts, so that readers which index by
file order instead of by id fail.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from etl import contract
from etl.splits import choose_holdout, default_holdout
from etl.synth.columnar import ColumnarMPD, generated_columnar

_ARROW = {
    contract.INT64: pa.int64(),
    contract.STRING: pa.string(),
    contract.BOOL: pa.bool_(),
    contract.DOUBLE: pa.float64(),
}
ROWS_PER_PART = 4_000_000
_ROLES = np.array([contract.ROLE_TRAIN, contract.ROLE_SEED, contract.ROLE_HIDDEN])


def holdout(
    cat: ColumnarMPD, num_val: int, num_test: int, seed: int = 0, categories=contract.SEED_CATEGORIES
) -> tuple[np.ndarray, np.ndarray]:
    """(split, seed category) per playlist row, by the ETL's greedy rule over a seeded order."""
    length = np.bincount(cat.entry_playlist, minlength=len(cat.pid))
    order = np.random.default_rng([seed, 1]).permutation(len(cat.pid))
    limit = num_val + num_test
    candidates = {c.min_tracks: order[length[order] >= c.min_tracks][:limit].tolist() for c in categories}
    split = np.full(len(cat.pid), contract.SPLIT_TRAIN, dtype=object)
    category = np.full(len(cat.pid), None, dtype=object)
    for h in choose_holdout(candidates, list(categories), num_val, num_test):
        split[h.pid], category[h.pid] = h.split, h.seed_category  # pids here are rows
    return split, category


def _dense_ids(keys) -> tuple[np.ndarray, np.ndarray]:
    """(order, id per row): ids 0..N-1 in key order, as the ETL assigns them."""
    order = np.argsort(np.asarray(keys), kind="stable")
    ids = np.empty(order.size, dtype=np.int64)
    ids[order] = np.arange(order.size)
    return order, ids


def _distinct_per(group: np.ndarray, value: np.ndarray, n_groups: int, n_values: int) -> np.ndarray:
    pairs = np.unique(group.astype(np.int64) * n_values + value)
    return np.bincount(pairs // n_values, minlength=n_groups)


def _column(values, dtype: pa.DataType) -> pa.Array:
    if isinstance(values, np.ndarray) and values.dtype != object:
        return pa.array(values, type=dtype)
    return pa.array(list(values), type=dtype)


def write_graph_dir(
    root: str, cat: ColumnarMPD, split, category, seed: int = 0, manifest_overrides: dict | None = None, log=None
) -> str:
    """Write ``cat`` as a contract graph dir under ``root`` and return ``root``."""
    say = log or (lambda _msg: None)
    rng = np.random.default_rng([seed, 2])
    split, category = np.asarray(split, dtype=object), np.asarray(category, dtype=object)
    p_order, p_id = _dense_ids(cat.pid)
    t_order, t_id = _dense_ids(cat.track_uri)
    al_order, al_id = _dense_ids(cat.album_uri)
    ar_order, ar_id = _dense_ids(cat.artist_uri)
    P, T, AL, AR = len(p_id), len(t_id), len(al_id), len(ar_id)

    # One entry per (playlist, track), at its first pos (etl/dedup.py); then by (playlist, pos).
    e_pl, e_tr, pos = p_id[cat.entry_playlist], t_id[cat.entry_track], np.asarray(cat.entry_pos, np.int64)
    pair = e_pl * T + e_tr
    by_pair = np.lexsort((pos, pair))
    keep = by_pair[np.r_[True, pair[by_pair][1:] != pair[by_pair][:-1]]]
    keep = keep[np.lexsort((pos[keep], e_pl[keep]))]
    e_pl, e_tr, pos = e_pl[keep], e_tr[keep], pos[keep]
    repeats = int(pair.size - e_pl.size)
    say(f"{e_pl.size:,} entries ({repeats:,} repeats dropped), {P:,} playlists, {T:,} tracks")

    # Roles: first-k or seeded random-k seeds of held-out playlists, the rest of them hidden.
    split_by_id = np.empty(P, dtype=object)
    split_by_id[p_id] = split
    cat_by_id = np.empty(P, dtype=object)
    cat_by_id[p_id] = category
    role = np.zeros(e_pl.size, dtype=np.int8)
    held = np.flatnonzero(split_by_id[e_pl] != contract.SPLIT_TRAIN)
    if held.size:
        names = cat_by_id[e_pl[held]]
        num_seeds = np.array([contract.SEED_CATEGORY_BY_NAME[n].num_seeds for n in names])
        random = np.array([contract.SEED_CATEGORY_BY_NAME[n].random for n in names])
        rank_key = np.where(random, rng.random(held.size), pos[held].astype(np.float64))
        order = np.lexsort((rank_key, e_pl[held]))
        starts = np.r_[True, e_pl[held][order][1:] != e_pl[held][order][:-1]]
        group_start = np.maximum.accumulate(np.where(starts, np.arange(order.size), 0))
        rank = np.empty(held.size, dtype=np.int64)
        rank[order] = np.arange(order.size) - group_start
        role[held] = np.where(rank < num_seeds, 1, 2)
    visible = role != 2

    track_album = al_id[cat.track_album][t_order]  # by track id
    track_artist = ar_id[cat.track_artist][t_order]
    track_dur = np.asarray(cat.track_duration, np.int64)[t_order]
    vis_pl, vis_tr = e_pl[visible], e_tr[visible]
    deg_playlist = np.bincount(vis_tr, minlength=T)
    linked = deg_playlist > 0  # etl/features.py: album and artist links of visible tracks only
    null = [None]
    tables = {
        "nodes/playlist": {
            "playlist_id": np.arange(P),
            "pid": np.asarray(cat.pid)[p_order],
            "name": [cat.name[i] for i in p_order],
            "split": split_by_id,
            "seed_category": cat_by_id,
            "num_followers": np.asarray(cat.num_followers)[p_order],
            "collaborative": np.asarray(cat.collaborative, bool)[p_order],
            "num_edits": np.asarray(cat.num_edits)[p_order],
            "modified_at": np.asarray(cat.modified_at)[p_order],
            # num_tracks as published: repeats included, hidden ones too (the challenge gives it).
            "num_tracks": np.bincount(p_id[cat.entry_playlist], minlength=P),
            "num_albums": _distinct_per(vis_pl, track_album[vis_tr], P, AL),
            "num_artists": _distinct_per(vis_pl, track_artist[vis_tr], P, AR),
            "duration_ms": np.bincount(vis_pl, weights=track_dur[vis_tr], minlength=P).astype(np.int64),
            "deg_track": np.bincount(vis_pl, minlength=P),
            "hop2_walks": null * P,
            "hop2_reach": null * P,
        },
        "nodes/track": {
            "track_id": np.arange(T),
            "track_uri": [cat.track_uri[i] for i in t_order],
            "track_name": [cat.track_name[i] for i in t_order],
            "duration_ms": track_dur,
            "album_id": track_album,
            "artist_id": track_artist,
            "deg_playlist": deg_playlist,
            "hop2_walks": null * T,
            "hop2_reach": null * T,
        },
        "nodes/album": {
            "album_id": np.arange(AL),
            "album_uri": [cat.album_uri[i] for i in al_order],
            "album_name": [cat.album_name[i] for i in al_order],
            "deg_track": np.bincount(track_album[linked], minlength=AL),
            "hop2_walks": null * AL,
            "hop2_reach": null * AL,
        },
        "nodes/artist": {
            "artist_id": np.arange(AR),
            "artist_uri": [cat.artist_uri[i] for i in ar_order],
            "artist_name": [cat.artist_name[i] for i in ar_order],
            "deg_track": np.bincount(track_artist[linked], minlength=AR),
            "hop2_walks": null * AR,
            "hop2_reach": null * AR,
        },
        "edges/playlist_track": {
            "playlist_id": e_pl,
            "track_id": e_tr,
            "pos": pos,
            "role": pa.DictionaryArray.from_arrays(role, _ROLES).cast(pa.string()),
        },
        "edges/track_album": {"track_id": np.arange(T), "album_id": track_album},
        "edges/track_artist": {"track_id": np.arange(T), "artist_id": track_artist},
    }
    feature_stats = {}
    for t, cols in contract.FEATURE_COLUMNS.items():
        feature_stats[t] = {}
        for col in cols:
            v = tables[f"nodes/{t}"][col]
            if len(v) and v[0] is None:
                feature_stats[t][col] = {"mean": None, "std": None}
                continue
            lv = np.log1p(np.asarray(v, dtype=np.float64))
            feature_stats[t][col] = {"mean": float(lv.mean()), "std": float(lv.std())}

    counts = {}
    for name, cols in tables.items():
        schema = pa.schema([(c, _ARROW[d]) for c, d in contract.TABLES[name].items()])
        table = pa.table(
            [
                cols[c] if isinstance(cols[c], pa.Array) else _column(cols[c], schema.field(c).type)
                for c in schema.names
            ],
            schema=schema,
        )
        table = table.take(pa.array(rng.permutation(table.num_rows)))
        out = os.path.join(root, name)
        os.makedirs(out, exist_ok=True)
        parts = max(2, -(-table.num_rows // ROWS_PER_PART))
        bounds = np.linspace(0, table.num_rows, parts + 1).astype(np.int64)
        for i in range(parts):
            pq.write_table(
                table.slice(bounds[i], bounds[i + 1] - bounds[i]), os.path.join(out, f"part-{i:05d}.parquet")
            )
        counts[name] = table.num_rows
        say(f"wrote {name}: {table.num_rows:,} rows")

    manifest = {
        "schema_version": contract.SCHEMA_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "input": {"files": [], "skipped_files": []},
        "counts": counts,
        "dropped": {"duplicate_entry": {"count": repeats, "playlists": 0, "entries": repeats, "examples": []}}
        if repeats
        else {},
        "validation": {},
        "split": {
            "seed": seed,
            "num_val": int((split == contract.SPLIT_VAL).sum()),
            "num_test": int((split == contract.SPLIT_TEST).sum()),
            "categories": {},
        },
        "hop2": {"mode": "off", "relative_error": None},
        "feature_stats": feature_stats,
        "timings": {},
        "spark": {"version": None, "master": None, "conf": {}},
        "writer": "etl.synth.graphdir",
    }
    manifest.update(manifest_overrides or {})
    with open(os.path.join(root, contract.MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1)
    return root


def synthetic_graph_dir(root: str, n_playlists: int, seed: int = 0, num_holdout: int | None = None, log=None) -> str:
    """Graph dir of the generator's first ``n_playlists`` playlists, ``num_holdout`` of them val and
    as many test (the ETL's default when None)."""
    t0 = time.perf_counter()
    cat = generated_columnar(n_playlists, seed, log)
    k = default_holdout(n_playlists, len(contract.SEED_CATEGORIES)) if num_holdout is None else num_holdout
    split, category = holdout(cat, k, k, seed)
    write_graph_dir(root, cat, split, category, seed, {"generator": {"playlists": n_playlists, "seed": seed}}, log)
    if log:
        log(f"graph dir of {n_playlists:,} playlists in {time.perf_counter() - t0:.0f}s")
    return root
