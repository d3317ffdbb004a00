"""Inference of a trained run: load its model, embed every node on the full visible graph.

Inference is exact, over the full visible graph (train + seed edges; a held-out playlist's
embedding therefore comes from its seed tracks). Parameter-free layers (``conv=lightgcn``) are
propagated over the whole graph at once, as full-graph training does (sparse products with the
mean adjacencies); other layers layer by layer, destination nodes in batches, each aggregating
ALL its in-neighbours: memory per batch is bounded by ``batch size x in-degree x hidden``, the
full tables held are two of ``num_nodes x hidden``. At 1M playlists the batched way took ~6 min
per layer on 2 cores where the whole-graph products take seconds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm import tqdm

from trainer.config import TrainConfig
from trainer.gnn.full_graph import adjacency
from trainer.gnn.model import LinkPredictor, MeanConv, build_model
from trainer.io import checkpoint
from trainer.io.graph import Graph
from trainer.io.run_dir import check_trained_on

EMBEDDED_TYPES = ("track", "playlist")


def load_trained(run_dir: str, graph: Graph, device="cpu") -> tuple[LinkPredictor, TrainConfig, dict]:
    """The model of ``run_dir``'s final checkpoint (``checkpoint.final``), checked against the
    graph it was trained on, its config, and its identity (file and id)."""
    path = checkpoint.final(run_dir)
    if path is None:
        raise FileNotFoundError(
            f"{checkpoint.checkpoint_path(run_dir)} not found: train first (python -m trainer.train --out {run_dir})"
        )
    state = checkpoint.load(path)
    check_trained_on(state["graph"], graph.path, graph.manifest, run_dir)
    # Runs from before ``track_bias`` and ``playlist_ids`` existed were trained without them.
    config = TrainConfig.from_dict({"track_bias": False, "playlist_ids": False, **state["config"]}, where=path)
    model = build_model(config, graph.metadata(), {t: x.size(1) for t, x in graph.x.items()}, graph.num_nodes)
    model.load_state_dict(state["model"])
    source = {"checkpoint": path, "checkpoint_id": state.get("checkpoint_id") or checkpoint.identity(path)}
    return model.to(device).eval(), config, source


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
    return {
        "layers": len(model.layers),
        "layer_mean": model.layer_mean,
        "temperature": model.temperature,
        "track_bias": model.track_bias is not None,
        "playlist_h0": model.project["playlist"].bias.detach().cpu().tolist(),
    }


def _parameter_free(model: LinkPredictor) -> bool:
    return all(isinstance(conv, MeanConv) for layer in model.layers for conv in layer.conv.values())


@torch.no_grad()
def _encode_whole_graph(model: LinkPredictor, graph: Graph, device) -> dict[str, torch.Tensor]:
    """:func:`encode_all` by whole-graph products (the model's own forward, keeping ``track_seed``)."""
    device = torch.device(device)
    edges = adjacency(graph, None, device)
    x = {t: v.to(device) for t, v in graph.x.items()}
    h = model.input_embeddings(x, {t: torch.arange(n, device=device) for t, n in graph.num_nodes.items()})
    track_h0 = h["track"]
    total = {t: h[t] for t in EMBEDDED_TYPES}
    last = len(model.layers) - 1
    for i, layer in enumerate(model.layers):
        if i == last:
            before_last = h["track"]
        h = layer(h, edges)
        if i < last:
            if model.nonlinear:
                h = {t: F.relu(v) for t, v in h.items()}
            total = {t: total[t] + h[t] for t in EMBEDDED_TYPES}
    out = {t: v.cpu() for t, v in model.readout(h, total, track_h0).items()}
    out["track_seed"] = (total["track"] if model.layer_mean else before_last).cpu()
    return out


@torch.no_grad()
def encode_all(
    model: LinkPredictor,
    graph: Graph,
    batch_size: int = 4096,
    device="cpu",
    progress: bool = False,
    layer_wise: bool | None = None,
) -> dict[str, torch.Tensor]:
    """Final playlist and track representations of every node, on the full visible graph, and
    ``track_seed``, each track's term of a seed query (:func:`seed_query`). ``layer_wise``: None
    picks whole-graph products for parameter-free layers (see the module's note)."""
    if not (layer_wise if layer_wise is not None else not _parameter_free(model)):
        return _encode_whole_graph(model, graph, device)
    data = graph.hetero_data(sort_by_destination=True)
    num = graph.num_nodes
    csc = {et: _by_destination(ei, num[et[2]]) for et, ei in data.edge_index_dict.items()}
    h = {}
    for t in model.node_types:
        h[t] = torch.cat(
            [
                model.input_embeddings(
                    {t: graph.x[t][s : s + batch_size].to(device)},
                    {t: torch.arange(s, min(s + batch_size, num[t]), device=device)},
                )[t].cpu()
                for s in range(0, num[t], batch_size)
            ]
        )
    last = len(model.layers) - 1
    track_h0 = h["track"]
    total = {t: h[t].clone() for t in EMBEDDED_TYPES}
    for layer, edge_types in enumerate(model.layer_edge_types):
        out = {}
        for t in sorted({et[2] for et in edge_types}):
            rows = []
            for start in tqdm(
                range(0, num[t], batch_size), disable=not progress, leave=False, desc=f"layer {layer} {t}"
            ):
                end = min(start + batch_size, num[t])
                x_dst = h[t][start:end].to(device)
                acc = None
                for et in (et for et in edge_types if et[2] == t):
                    src_sorted, dst_sorted, ptr = csc[et]
                    lo, hi = int(ptr[start]), int(ptr[end])
                    # Only the source rows this batch needs travel to the device.
                    sources, local_src = torch.unique(src_sorted[lo:hi], return_inverse=True)
                    edge_index = torch.stack([local_src, dst_sorted[lo:hi] - start]).to(device)
                    y = model.relation_conv(layer, et)(
                        (h[et[0]][sources].to(device), x_dst), edge_index, size=(sources.numel(), end - start)
                    )
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
    parts = [
        {
            t: v.cpu()
            for t, v in model.readout(
                {t: h[t][s : s + batch_size].to(device) for t in EMBEDDED_TYPES},
                {t: total[t][s : s + batch_size].to(device) for t in EMBEDDED_TYPES},
                track_h0[s : s + batch_size].to(device),
            ).items()
        }
        for s in range(0, max(num[t] for t in EMBEDDED_TYPES), batch_size)
    ]
    out = {t: torch.cat([p[t] for p in parts]) for t in EMBEDDED_TYPES}
    out["track_seed"] = total["track"] if model.layer_mean else before_last
    return out
