"""The one reader of a graph dir (``etl/contract.py``), with two views of it: the training
graph (:func:`load_graph`: features, edge tensors, PyG ``HeteroData``) and the ranking catalogue
(``trainer/io/catalogue.py``: URIs, artists, titles, splits and the playlist-track edges as numpy).

Everything read is checked against the contract first: the manifest's schema version and keys,
each table's Parquet dtypes, that ids are dense ``0..N-1``, and that roles and splits are the
contract's. Rows are indexed by the id column, never by file order. Paths may be local or any
fsspec URL.
"""

from __future__ import annotations

import logging
import posixpath
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch
import torch_geometric.transforms as T
from torch_geometric.data import HeteroData

from etl import contract
from trainer.io import storage

log = logging.getLogger(__name__)

# The forward relation of each edge table; ``ToUndirected`` adds ``rev_<relation>``.
RELATION = {
    "edges/playlist_track": ("playlist", "contains", "track"),
    "edges/track_album": ("track", "in_album", "album"),
    "edges/track_artist": ("track", "by_artist", "artist"),
}
PLAYLIST_TRACK = RELATION["edges/playlist_track"]


@dataclass
class Graph:
    """A graph dir in memory: features, visible edges and the edges the trainer supervises on."""

    path: str
    manifest: dict
    num_nodes: dict[str, int]
    x: dict[str, torch.Tensor]  # standardised features, row = node id
    # Edge lists are held as int32 (half the memory of the run's largest tables) and widened to
    # int64, what PyG's samplers and indexing take, only in the copies built from them.
    train_edges: torch.Tensor  # (2, E) playlist->track, role=train
    seed_edges: torch.Tensor  # (2, E) playlist->track, role=seed
    val_edges: torch.Tensor  # (2, E) role=hidden edges of split=val playlists
    other_edges: dict[tuple, torch.Tensor]  # track->album, track->artist of tracks with a visible edge
    track_artist: np.ndarray  # (T,) every track's artist id, hidden-only tracks' too (what metrics credit)
    playlist_split: np.ndarray  # (P,) split name per playlist id

    @property
    def visible_edges(self) -> torch.Tensor:
        return torch.cat([self.train_edges, self.seed_edges], dim=1)

    def hetero_data(self, playlist_track: torch.Tensor | None = None, sort_by_destination: bool = False) -> HeteroData:
        """Message-passing graph with reverse relations; ``playlist_track`` defaults to all
        visible (train + seed) playlist->track edges.

        ``sort_by_destination`` orders every relation by (destination, source): the CSC layout
        a neighbour sampler needs, so a loader given ``is_sorted=True`` samples from these
        tensors in place instead of keeping a sorted copy and a permutation of every edge.
        """
        data = HeteroData()
        for t, n in self.num_nodes.items():
            data[t].x = self.x[t]
            data[t].num_nodes = n
        data[PLAYLIST_TRACK].edge_index = (self.visible_edges if playlist_track is None else playlist_track).long()
        for rel, ei in self.other_edges.items():
            data[rel].edge_index = ei.long()
        data = T.ToUndirected()(data)
        if sort_by_destination:
            for (src, _, _), store in data.edge_items():
                ei = store.edge_index
                store.edge_index = ei[:, torch.argsort(ei[1] * self.num_nodes[src] + ei[0])]
        return data

    def metadata(self):
        return self.hetero_data(torch.empty(2, 0, dtype=torch.long)).metadata()


def read_manifest(path: str) -> dict:
    """The graph dir's manifest, checked against this code's schema version."""
    fs, root = storage.filesystem(path)
    where = posixpath.join(path, contract.MANIFEST)
    if not fs.exists(posixpath.join(root, contract.MANIFEST)):
        raise contract.ContractError(
            f"{where} not found: {path} is not a graph dir (or an ETL run did not finish writing it)"
        )
    with fs.open(posixpath.join(root, contract.MANIFEST), "r") as f:
        return contract.load_manifest(f.read(), where)


def read_table(path: str, table: str, columns: list[str] | None = None, filter=None) -> pa.Table:
    """One contract table, dtypes checked, its row count checked against the manifest (a lost
    or extra Parquet part would silently change the graph); ``columns`` defaults to the contract's."""
    fs, root = storage.filesystem(path)
    location = posixpath.join(root, table)
    if not fs.exists(location):
        raise contract.ContractError(f"{path}: table {table} not found (expected Parquet files under {location})")
    start = time.perf_counter()
    try:
        dataset = ds.dataset(location, filesystem=fs, format="parquet")
        contract.check_columns(table, {f.name: str(f.type) for f in dataset.schema})
        expected = read_manifest(path)["counts"].get(table)
        rows = dataset.count_rows()  # from the Parquet footers: no data read
        if expected is not None and rows != expected:
            raise contract.ContractError(
                f"{path}: {table} holds {rows:,} rows in {len(dataset.files)} Parquet file(s), the manifest counts "
                f"{expected:,}: a part is missing or was added; rebuild the graph dir (python -m etl.job --overwrite)"
            )
        read = dataset.to_table(columns=columns or list(contract.TABLES[table]), filter=filter)
    except (pa.ArrowInvalid, OSError) as e:  # a truncated or overwritten part
        raise contract.ContractError(
            f"{path}: {table} cannot be read ({str(e).splitlines()[0]}); "
            "a Parquet part is damaged: rebuild the graph dir"
        ) from None
    # At full MPD size a table takes seconds to minutes: say what is being read.
    log.info(
        "%s: read %s, %s rows, %d columns (%.1f s)",
        path,
        table,
        f"{read.num_rows:,}",
        read.num_columns,
        time.perf_counter() - start,
    )
    return read


def checked_ids(table: pa.Table, name: str, column: str, n: int | None = None) -> np.ndarray:
    ids = table.column(column).to_numpy()
    if ids.size and (ids.min() < 0 or (n is not None and ids.max() >= n)):
        raise contract.ContractError(f"{name}: {column} out of range [0, {n}): min {ids.min()}, max {ids.max()}")
    return ids


def _dense_order(table: pa.Table, name: str, column: str) -> np.ndarray:
    """Row order that sorts ``table`` by its id column, checking ids are exactly 0..N-1."""
    ids = table.column(column).to_numpy()
    order = np.argsort(ids, kind="stable")
    if not np.array_equal(ids[order], np.arange(len(ids))):
        raise contract.ContractError(
            f"{name}: {column} is not dense 0..{len(ids) - 1} "
            f"(min {ids.min() if len(ids) else None}, max {ids.max() if len(ids) else None}, "
            f"{len(np.unique(ids))} distinct of {len(ids)} rows)"
        )
    return order


def read_nodes(path: str, node_type: str, columns: list[str]) -> pa.Table:
    """``nodes/<type>``'s id column and ``columns``, sorted by id, ids checked dense."""
    name, id_col = f"nodes/{node_type}", contract.ID_COLUMN[node_type]
    table = read_table(path, name, [id_col, *columns])
    return table.take(pa.array(_dense_order(table, name, id_col)))


def node_columns(path: str, node_type: str, columns: list[str]) -> dict[str, np.ndarray]:
    """Some columns of ``nodes/<type>`` as arrays indexed by node id (nulls as NaN in floats)."""
    table = read_nodes(path, node_type, columns)
    return {c: table[c].to_numpy(zero_copy_only=False) for c in columns}


def playlist_splits(playlists: pa.Table) -> np.ndarray:
    """The playlists' split column as an object array, checked against the contract's splits."""
    split = np.asarray(playlists.column("split").to_pylist(), dtype=object)
    bad = set(split) - set(contract.SPLITS)
    if bad:
        raise contract.ContractError(
            f"nodes/playlist: split has values {sorted(map(str, bad))}, contract allows {contract.SPLITS}"
        )
    return split


def playlist_track_edges(path: str, num_nodes: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(playlist_id, track_id, role)`` of every playlist-track edge; role as int8 codes into
    ``contract.ROLES``, ids checked against the node counts."""
    name = "edges/playlist_track"
    table = read_table(path, name, ["playlist_id", "track_id", "role"])
    role = table.column("role").combine_chunks().dictionary_encode()
    unknown = [r for r in role.dictionary.to_pylist() if r not in contract.ROLES]
    if unknown or role.null_count:
        raise contract.ContractError(
            f"{name}: role has values {sorted(map(str, unknown + [None] * bool(role.null_count)))}, "
            f"contract allows {contract.ROLES}"
        )
    codes = np.array([contract.ROLES.index(r) for r in role.dictionary.to_pylist()], dtype=np.int8)
    return (
        checked_ids(table, name, "playlist_id", num_nodes["playlist"]),
        checked_ids(table, name, "track_id", num_nodes["track"]),
        codes[role.indices.to_numpy()],
    )


def node_features(table: pa.Table, node_type: str, stats: dict) -> torch.Tensor:
    """log1p then standardise with the manifest's statistics; nulls become 0 afterwards."""
    columns = []
    for col in contract.FEATURE_COLUMNS[node_type]:
        s = stats.get(node_type, {}).get(col)
        if s is None:
            raise contract.ContractError(f"manifest feature_stats has no entry for {node_type}.{col}")
        arr = table.column(col)
        if pa.types.is_boolean(arr.type):
            arr = pc.cast(arr, pa.int64())
        v = arr.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> nan
        if np.nanmin(v, initial=0.0) < 0:
            raise contract.ContractError(
                f"nodes/{node_type}: {col} has negative values (min {np.nanmin(v)}); features are counts"
            )
        if s.get("mean") is None:  # e.g. hop2 columns of a graph built with --hop2 off
            columns.append(np.zeros_like(v))
            continue
        std = s["std"] or 1.0
        z = (np.log1p(v) - s["mean"]) / std
        columns.append(np.nan_to_num(z, nan=0.0))
    return torch.from_numpy(np.stack(columns, axis=1).astype(np.float32))


def _index_dtype(num_nodes: dict[str, int]):
    return np.int32 if max(num_nodes.values()) < 2**31 else np.int64


def load_graph(path: str) -> Graph:
    """Read and check a graph dir."""
    manifest = read_manifest(path)
    stats = manifest["feature_stats"]
    num_nodes, x = {}, {}
    playlist_split = None
    for t in contract.NODE_TYPES:
        table = read_nodes(path, t, [*contract.FEATURE_COLUMNS[t]] + (["split"] if t == "playlist" else []))
        num_nodes[t] = table.num_rows
        x[t] = node_features(table, t, stats)
        if t == "playlist":
            playlist_split = playlist_splits(table)
    src, dst, roles = playlist_track_edges(path, num_nodes)
    masks = {r: roles == i for i, r in enumerate(contract.ROLES)}
    index = _index_dtype(num_nodes)
    val_mask = masks[contract.ROLE_HIDDEN] & (playlist_split == contract.SPLIT_VAL)[src]
    train_edges, seed_edges, val_edges = (
        torch.from_numpy(np.stack([src[m], dst[m]]).astype(index))
        for m in (masks[contract.ROLE_TRAIN], masks[contract.ROLE_SEED], val_mask)
    )
    # A track only hidden edges hold is isolated, as in the ETL's features: its album and artist
    # edges would carry into message passing a track that exists only through what is held out.
    seen = np.zeros(num_nodes["track"], dtype=bool)
    seen[dst[masks[contract.ROLE_TRAIN] | masks[contract.ROLE_SEED]]] = True
    del src, dst, roles, masks, val_mask

    other = {}
    for name, rel in RELATION.items():
        if rel == PLAYLIST_TRACK:
            continue
        s_col, d_col = contract.ID_COLUMN[rel[0]], contract.ID_COLUMN[rel[2]]
        e = read_table(path, name, [s_col, d_col])
        track, linked = checked_ids(e, name, s_col, num_nodes[rel[0]]), checked_ids(e, name, d_col, num_nodes[rel[2]])
        keep = seen[track]
        other[rel] = torch.from_numpy(np.stack([track[keep], linked[keep]]).astype(index))
        if rel[2] == "artist":
            track_artist = np.zeros(num_nodes["track"], dtype=np.int64)
            track_artist[track] = linked
        del e, track, linked, keep
    pa.default_memory_pool().release_unused()  # the Arrow tables are gone; hand their pages back
    return Graph(
        path=path,
        manifest=manifest,
        num_nodes=num_nodes,
        x=x,
        train_edges=train_edges,
        seed_edges=seed_edges,
        val_edges=val_edges,
        other_edges=other,
        track_artist=track_artist,
        playlist_split=playlist_split,
    )


def read_keys(path: str, node_type: str) -> pa.Table:
    """``(id, key)`` of every node of a type, sorted by id (e.g. track_id, track_uri)."""
    return read_nodes(path, node_type, [contract.KEY_COLUMN[node_type]])
