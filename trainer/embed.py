"""Export track and playlist embeddings of a trained run as Parquet:
``python -m trainer.embed --graph DIR --run RUN_DIR [--batch-size B]``.

Writes ``RUN_DIR/embeddings/track.parquet`` (``track_id`` int64, ``track_uri`` string,
``embedding`` list<float32>) and ``RUN_DIR/embeddings/playlist.parquet`` (``playlist_id`` int64,
``pid`` int64, ``embedding`` list<float32>), sorted by id, from the run's final checkpoint
(``checkpoints/best.pt``, the epoch training selected by val R-precision, else ``last.pt``). For LightGCN-style models also ``track_seed.parquet`` (same columns
as ``track.parquet``) and ``seed_query.json``: what embeds a playlist that is not in the graph
from its seed tracks exactly as the model would (:func:`seed_query`).

Inference is exact and layer-wise: layer by layer, destination nodes are processed in batches,
each aggregating ALL its in-neighbours over the full visible graph (train + seed edges; a held-out
playlist's embedding therefore comes from its seed tracks). Memory per batch is bounded by
``batch size x in-degree x hidden``; the full tables held are two of ``num_nodes x hidden``.
"""
from __future__ import annotations

import argparse
import json
import posixpath
import sys

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from tqdm import tqdm

from etl import contract as C
from trainer.config import ConfigError, TrainConfig
from trainer.gnn.model import LinkPredictor, build_model
from trainer.io import checkpoint
from trainer.io.graph import Graph, load_graph, read_keys

EMBEDDED_TYPES = ("track", "playlist")
SEED_QUERY = "seed_query.json"
_KEY_DTYPE = {"track": pa.string(), "playlist": pa.int64()}


def load_trained(run_dir: str, graph: Graph, device="cpu") -> tuple[LinkPredictor, TrainConfig]:
    """The model of ``run_dir``'s best checkpoint (by val R-precision, when training ranked the
    validation playlists), else its last, checked against the graph it was trained on."""
    path = checkpoint.checkpoint_path(run_dir, checkpoint.BEST)
    if not checkpoint.exists(path):
        path = checkpoint.checkpoint_path(run_dir)
    if not checkpoint.exists(path):
        raise FileNotFoundError(f"{path} not found: train first (python -m trainer.train --out {run_dir})")
    state = checkpoint.load(path)
    recorded = state["graph"]
    now = graph.manifest
    if (recorded["created_at"], recorded["counts"]) != (now["created_at"], now["counts"]):
        raise ConfigError(f"{run_dir} was trained on graph {recorded['graph']} (created_at "
                          f"{recorded['created_at']}), not on {graph.path} (created_at {now['created_at']})")
    # Runs from before ``track_bias`` and ``playlist_ids`` existed were trained without them.
    config = TrainConfig.from_dict({"track_bias": False, "playlist_ids": False, **state["config"]}, where=path)
    model = build_model(config, graph.metadata(), {t: x.size(1) for t, x in graph.x.items()}, graph.num_nodes)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config


def _by_destination(edge_index: torch.Tensor, num_dst: int):
    """CSC of a relation already sorted by destination: sources, destinations, pointer."""
    ptr = torch.zeros(num_dst + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(torch.bincount(edge_index[1], minlength=num_dst), 0)
    return edge_index[0], edge_index[1], ptr


def seed_query(model: LinkPredictor) -> dict | None:
    """How to embed a playlist that is not in the graph from its seed tracks, exactly as the model
    would embed it as a node; None where that is not linear in the seeds (``conv=sage``).

    With ``conv=lightgcn`` a playlist's layer ``i+1`` is the mean of its tracks' layer ``i`` (its
    only in-relation), so its readout is ``(h0 + mean over seeds of track_seed) / (L + 1)`` with
    layer mean (``track_seed``: the sum of a track's layers 0..L-1), ``mean of track_seed``
    (its layer L-1) without; then cosine/temperature, then a 1 appended with ``track_bias``.
    ``h0`` is the playlist's own input projection: here that of an average playlist
    (standardised features all 0).
    """
    if model.nonlinear:
        return None
    return {"layers": len(model.layers), "layer_mean": model.layer_mean, "temperature": model.temperature,
            "track_bias": model.track_bias is not None,
            "playlist_h0": model.project["playlist"].bias.detach().cpu().tolist()}


@torch.no_grad()
def encode_all(model: LinkPredictor, graph: Graph, batch_size: int = 4096, device="cpu",
               progress: bool = False) -> dict[str, torch.Tensor]:
    """Final playlist and track representations of every node, on the full visible graph, and
    ``track_seed``, each track's term of a seed query (:func:`seed_query`)."""
    data = graph.hetero_data(sort_by_destination=True)
    num = graph.num_nodes
    csc = {et: _by_destination(ei, num[et[2]]) for et, ei in data.edge_index_dict.items()}
    h = {}
    for t in model.node_types:
        h[t] = torch.cat([
            model.input_embeddings({t: graph.x[t][s:s + batch_size].to(device)},
                                   {t: torch.arange(s, min(s + batch_size, num[t]), device=device)})[t].cpu()
            for s in range(0, num[t], batch_size)])
    last = len(model.layers) - 1
    track_h0 = h["track"]
    total = {t: h[t].clone() for t in EMBEDDED_TYPES}
    for layer, edge_types in enumerate(model.layer_edge_types):
        out = {}
        for t in sorted({et[2] for et in edge_types}):
            rows = []
            for start in tqdm(range(0, num[t], batch_size), disable=not progress, leave=False,
                              desc=f"layer {layer} {t}"):
                end = min(start + batch_size, num[t])
                x_dst = h[t][start:end].to(device)
                acc = None
                for et in (et for et in edge_types if et[2] == t):
                    src_sorted, dst_sorted, ptr = csc[et]
                    lo, hi = int(ptr[start]), int(ptr[end])
                    # Only the source rows this batch needs travel to the device.
                    sources, local_src = torch.unique(src_sorted[lo:hi], return_inverse=True)
                    edge_index = torch.stack([local_src, dst_sorted[lo:hi] - start]).to(device)
                    y = model.relation_conv(layer, et)((h[et[0]][sources].to(device), x_dst), edge_index,
                                                       size=(sources.numel(), end - start))
                    acc = y if acc is None else acc + y  # to_hetero's aggr="sum" over relations
                rows.append((F.relu(acc) if layer < last and model.nonlinear else acc).cpu())
            out[t] = torch.cat(rows)
        if layer == last:
            # What a playlist's last layer averages over its tracks (see seed_query).
            before_last = h["track"]
        h = out
        if layer < last:
            for t in EMBEDDED_TYPES:
                total[t] += h[t]
    # The readout runs on the model's device, in batches of rows (both types at once: a slice
    # past one type's end is empty).
    parts = [{t: v.cpu() for t, v in model.readout(
        {t: h[t][s:s + batch_size].to(device) for t in EMBEDDED_TYPES},
        {t: total[t][s:s + batch_size].to(device) for t in EMBEDDED_TYPES},
        track_h0[s:s + batch_size].to(device)).items()}
        for s in range(0, max(num[t] for t in EMBEDDED_TYPES), batch_size)]
    out = {t: torch.cat([p[t] for p in parts]) for t in EMBEDDED_TYPES}
    out["track_seed"] = total["track"] if model.layer_mean else before_last
    return out


def write_embeddings(path: str, node_type: str, ids: np.ndarray, keys, embedding: np.ndarray) -> None:
    """Write one embeddings table (``<type>_id``, key column, ``embedding`` list<float32>), sorted by id."""
    order = np.argsort(ids, kind="stable")
    emb = np.ascontiguousarray(np.asarray(embedding, dtype=np.float32)[order])
    offsets = pa.array(np.arange(0, emb.size + 1, emb.shape[1], dtype=np.int32))
    table = pa.table({
        C.ID_COLUMN[node_type]: pa.array(np.asarray(ids, dtype=np.int64)[order]),
        C.KEY_COLUMN[node_type]: pa.array(keys, type=_KEY_DTYPE[node_type]).take(pa.array(order)),
        "embedding": pa.ListArray.from_arrays(offsets, pa.array(emb.reshape(-1))),
    })
    fs, target = fsspec.core.url_to_fs(path)
    fs.makedirs(posixpath.dirname(target), exist_ok=True)
    tmp = f"{target}.tmp"
    pq.write_table(table, tmp, filesystem=fs)
    fs.mv(tmp, target)


def read_embeddings(run_dir: str, node_type: str):
    """``(ids int64, keys list, embedding float32 [N, D])`` of ``RUN_DIR/embeddings/<type>.parquet``."""
    path = posixpath.join(run_dir, "embeddings", f"{node_type}.parquet")
    fs, target = fsspec.core.url_to_fs(path)
    if not fs.exists(target):
        raise FileNotFoundError(f"{path} not found: run python -m trainer.embed --run {run_dir}")
    table = pq.read_table(target, filesystem=fs)
    expected = {C.ID_COLUMN[node_type]: "int64", C.KEY_COLUMN[node_type]: str(_KEY_DTYPE[node_type]),
                "embedding": "list<element: float>"}
    actual = {f.name: str(f.type) for f in table.schema}
    wrong = {k: actual.get(k) for k, v in expected.items() if actual.get(k) not in (v, v.replace("element", "item"))}
    if wrong:
        raise ValueError(f"{path}: columns {wrong} differ from {expected}")
    emb = table.column("embedding").combine_chunks()
    dim = len(emb[0]) if len(emb) else 0
    matrix = emb.flatten().to_numpy().reshape(len(emb), dim).astype(np.float32, copy=False)
    return (table.column(C.ID_COLUMN[node_type]).to_numpy(),
            table.column(C.KEY_COLUMN[node_type]).to_pylist(), matrix)


def export(graph_path: str, run_dir: str, batch_size: int = 4096, device: str = "cpu") -> dict[str, str]:
    """Embed every track and playlist of ``graph_path`` with ``run_dir``'s model; returns the paths."""
    graph = load_graph(graph_path)
    model, _ = load_trained(run_dir, graph, device)
    h = encode_all(model, graph, batch_size, device, progress=True)
    written = {}
    query = seed_query(model)
    outputs = [(t, t) for t in EMBEDDED_TYPES] + ([("track", "track_seed")] if query else [])
    for t, name in outputs:
        keys = read_keys(graph_path, t)
        path = posixpath.join(run_dir.rstrip("/"), "embeddings", f"{name}.parquet")
        write_embeddings(path, t, keys.column(C.ID_COLUMN[t]).to_numpy(),
                         keys.column(C.KEY_COLUMN[t]), h[name].numpy())
        written[name] = path
    path = posixpath.join(run_dir.rstrip("/"), "embeddings", SEED_QUERY)
    if query:
        checkpoint.atomic_write_bytes(path, (json.dumps(query) + "\n").encode())
        written["seed_query"] = path
    else:  # a stale one from an earlier export of another model must not be used
        fs, target = fsspec.core.url_to_fs(path)
        if fs.exists(target):
            fs.rm(target)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m trainer.embed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--graph", required=True, help="the graph dir the run was trained on")
    parser.add_argument("--run", required=True, help="run dir written by trainer.train")
    parser.add_argument("--batch-size", type=int, default=4096, help="destination nodes per inference batch")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.batch_size <= 0:
        parser.error(f"--batch-size must be > 0, got {args.batch_size}")
    written = export(args.graph, args.run, args.batch_size, args.device)
    print(json.dumps(written))


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, C.ContractError, FileNotFoundError, checkpoint.DamagedCheckpoint) as e:  # a user's mistake: no traceback
        sys.exit(f"error: {e}")
