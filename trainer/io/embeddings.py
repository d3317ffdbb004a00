"""The run's embeddings (``RUN_DIR/embeddings/``): one writer, one reader.

The set is published as a whole: written into a temporary folder beside it, ``identity.json``
last (the checkpoint it came from, its id, the graph, each file's SHA-256), then swapped in. A
reader refuses, by name, a set without ``identity.json`` (incomplete, or older than identities),
a set whose checkpoint is no longer the run's final one (a ``--resume`` wrote a better
``best.pt``) and a file whose bytes are not the ones recorded.

``track.parquet`` (``track_id`` int64, ``track_uri`` string, ``embedding`` list<float32>),
``playlist.parquet`` (``playlist_id``, ``pid``, ``embedding``), and for models whose playlist
embedding is linear in its tracks ``track_seed.parquet`` and ``seed_query.json``: what embeds a
playlist outside the graph from its seeds (``trainer.gnn.inference.seed_query``). Every table
is sorted by id; readers check ids and keys against the graph they are used with.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from etl import contract
from trainer.io import checkpoint, checksum, storage
from trainer.io.catalogue import Catalogue
from trainer.io.run_dir import EMBEDDINGS, RunMismatchError

SEED_QUERY = "seed_query.json"
IDENTITY = "identity.json"
# table name -> node type whose id and key columns it carries
TABLES = {"track": "track", "playlist": "playlist", "track_seed": "track"}
_KEY_DTYPE = {"track": pa.string(), "playlist": pa.int64()}


def path(run: str, name: str) -> str:
    return storage.join(run, EMBEDDINGS, name if name.endswith(".json") else f"{name}.parquet")


def exists(run: str) -> bool:
    return storage.exists(path(run, "track"))


def _write_table(folder: str, name: str, ids: np.ndarray, keys, embedding: np.ndarray) -> None:
    """One embeddings table (``<type>_id``, key column, ``embedding`` list<float32>), sorted by id."""
    node_type = TABLES[name]
    order = np.argsort(ids, kind="stable")
    emb = np.ascontiguousarray(np.asarray(embedding, dtype=np.float32)[order])
    offsets = pa.array(np.arange(0, emb.size + 1, emb.shape[1], dtype=np.int32))
    table = pa.table(
        {
            contract.ID_COLUMN[node_type]: pa.array(np.asarray(ids, dtype=np.int64)[order]),
            contract.KEY_COLUMN[node_type]: pa.array(keys, type=_KEY_DTYPE[node_type]).take(pa.array(order)),
            "embedding": pa.ListArray.from_arrays(offsets, pa.array(emb.reshape(-1))),
        }
    )
    with storage.atomic_open(storage.join(folder, f"{name}.parquet")) as f:
        pq.write_table(table, f)


def publish(run: str, tables: dict[str, tuple], seed_query: dict | None, identity: dict) -> dict[str, str]:
    """Write the whole set (``tables``: name -> ``(ids, keys, embedding)``), then swap it in for
    the old one; returns the published paths. ``identity``: the checkpoint and id it came from."""

    def write(staging: str) -> None:
        for name, (ids, keys, embedding) in tables.items():
            _write_table(staging, name, ids, keys, embedding)
        files = [f"{name}.parquet" for name in tables]
        if seed_query is not None:
            storage.atomic_write_json(storage.join(staging, SEED_QUERY), seed_query, indent=None)
            files.append(SEED_QUERY)
        sums = {f: checksum.sha256(storage.join(staging, f)) for f in files}
        storage.atomic_write_json(
            storage.join(staging, IDENTITY), {**identity, "tables": sorted(tables), "sha256": sums}
        )

    storage.publish_dir(run, EMBEDDINGS, write, marker=IDENTITY)
    names = [*tables, *([SEED_QUERY] if seed_query is not None else []), IDENTITY]
    return {n.removesuffix(".json"): path(run, n) for n in names}


def identity(run: str) -> dict:
    """What the run's embeddings came from, checked: the set is complete and its checkpoint is
    still the run's final one. :class:`RunMismatchError` otherwise."""
    recorded = storage.read_json(path(run, IDENTITY))
    if recorded is None:
        raise RunMismatchError(
            f"{path(run, IDENTITY)} not found: {run}/{EMBEDDINGS} is incomplete or was written before embeddings "
            f"named their checkpoint; export again (python -m trainer.embed --graph GRAPH --run {run})"
        )
    final = checkpoint.final(run)
    if final is not None and recorded.get("checkpoint_id") is not None:
        now = checkpoint.identity(final)
        if now != recorded["checkpoint_id"]:
            raise RunMismatchError(
                f"{run}/{EMBEDDINGS} came from checkpoint {recorded['checkpoint_id']} ({recorded.get('checkpoint')}), "
                f"but the run's final checkpoint {final} is now {now} (trained further?); export again "
                f"(python -m trainer.embed --graph GRAPH --run {run})"
            )
    return recorded


def _verify(run: str, target: str) -> None:
    """``target`` (a file of the set) against the SHA-256 identity.json recorded for it."""
    sums = (storage.read_json(path(run, IDENTITY)) or {}).get("sha256", {})
    checksum.verify(
        target, sums.get(target.rsplit("/", 1)[-1]), f"export again (python -m trainer.embed --graph GRAPH --run {run})"
    )


def read(run: str, name: str) -> pa.Table:
    """One embeddings table, its columns checked, sorted by id."""
    node_type = TABLES[name]
    target = path(run, name)
    if not storage.exists(target):
        raise FileNotFoundError(
            f"{target} not found: export the run's embeddings first (python -m trainer.embed --graph GRAPH --run {run})"
        )
    _verify(run, target)
    with storage.open_file(target) as f:
        table = pq.read_table(f)
    expected = {
        contract.ID_COLUMN[node_type]: "int64",
        contract.KEY_COLUMN[node_type]: str(_KEY_DTYPE[node_type]),
        "embedding": "list<element: float>",
    }
    actual = {f.name: str(f.type) for f in table.schema}
    wrong = {k: actual.get(k) for k, v in expected.items() if actual.get(k) not in (v, v.replace("element", "item"))}
    if wrong:
        raise ValueError(f"{target}: columns {wrong} differ from {expected}")
    return table.sort_by(contract.ID_COLUMN[node_type])


def matrix(column: pa.ChunkedArray) -> np.ndarray:
    """A list<float32> column as a float32 matrix [rows, dim]."""
    rows = len(column)
    if rows == 0:
        return np.zeros((0, 0), dtype=np.float32)
    lengths = pc.list_value_length(column)
    extremes = pc.min_max(lengths)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    if low != high:
        raise ValueError(f"embedding column: rows have lengths from {low} to {high}; need one")
    return pc.list_flatten(column).to_numpy().astype(np.float32, copy=False).reshape(rows, high)


def track_embeddings(run: str, graph: Catalogue, name: str = "track") -> np.ndarray:
    """Track embeddings [T, d] in track_id order, checked against the graph's tracks."""
    table = read(run, name)
    where = path(run, name)
    ids = table["track_id"].to_numpy()
    if len(ids) != graph.num_tracks or not np.array_equal(ids, np.arange(graph.num_tracks)):
        raise RunMismatchError(
            f"{where} has {len(ids)} tracks, graph {graph.path} has {graph.num_tracks} "
            f"(ids 0..{graph.num_tracks - 1}): embeddings of another graph?"
        )
    uris = table["track_uri"].to_numpy(zero_copy_only=False)
    if not np.array_equal(uris, graph.track_uri):
        first = int(np.flatnonzero(uris != graph.track_uri)[0])
        raise RunMismatchError(
            f"{where}: track_id {first} is {uris[first]}, graph {graph.path} has "
            f"{graph.track_uri[first]}: embeddings of another graph"
        )
    return matrix(table["embedding"])


def playlist_embeddings(run: str, graph: Catalogue) -> np.ndarray:
    """Playlist embeddings [P, d] in playlist_id order, checked against the graph."""
    table = read(run, "playlist")
    ids, pids = table["playlist_id"].to_numpy(), table["pid"].to_numpy()
    if not np.array_equal(ids, np.arange(graph.num_playlists)) or not np.array_equal(pids, graph.playlist_pid):
        raise RunMismatchError(
            f"{path(run, 'playlist')}: {len(ids)} playlists whose ids/pids differ from graph "
            f"{graph.path} ({graph.num_playlists} playlists): embeddings of another graph"
        )
    return matrix(table["embedding"])


def seed_query(run: str, graph: Catalogue) -> dict | None:
    """The run's seed-query terms with ``track_seed`` [T, d] in track_id order, or None when the
    model has none (``conv=sage``) or they were not exported."""
    if not storage.exists(path(run, SEED_QUERY)) or not storage.exists(path(run, "track_seed")):
        return None
    _verify(run, path(run, SEED_QUERY))
    query = json.loads(storage.read_text(path(run, SEED_QUERY)))
    query["track_seed"] = track_embeddings(run, graph, "track_seed")
    return query
