"""Heterogeneous link predictor for (playlist, track): nothing distributed in here.

Input projection per node type (``ModuleDict``): a Linear over the standardised features,
concatenated with a learnable ID embedding for tracks, albums and artists, and for playlists with
``playlist_ids``: zero-initialised, so a playlist's row holds only what its own edges taught it
(a held-out playlist's: its seeds, through ``supervise_seeds`` and message passing), and a
playlist from outside the graph, embedded from its seeds (``trainer.gnn.inference.seed_query``), is
what a row never trained looks like. Then ``layers`` layers, each
made heterogeneous with ``to_hetero`` (per-relation convolutions summed per destination type):
``conv="lightgcn"`` (the config default) is a parameter-free mean with no nonlinearity, so a
playlist is literally the mean of its tracks' learned embeddings and a track is pulled towards
its playlists (LightGCN); ``conv="sage"`` is SAGEConv + ReLU. The decoder is a dot product of
the readout (optionally the mean over layers, optionally cosine / temperature), plus an optional
learned per-track prior (``track_bias``). On held-out playlists the LightGCN variant ranks ~3x
better than SAGE (bench/RESULTS.md, "GNN quality").
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import MessagePassing, SAGEConv, to_hetero

ID_EMBEDDED_TYPES = ("track", "album", "artist")
DECODED_TYPES = ("playlist", "track")


class _SAGELayer(nn.Module):
    def __init__(self, hidden: int, aggr: str):
        super().__init__()
        self.conv = SAGEConv((hidden, hidden), hidden, aggr=aggr)

    def forward(self, x, edge_index):
        return self.conv(x, edge_index)


class MeanConv(MessagePassing):
    """Parameter-free mean of the source representations (LightGCN's propagation, mean-normalised):
    co-occurrence structure reaches the decoder without passing through learned weights.

    Computed as one sparse-dense product with a row-normalised adjacency rather than
    ``propagate``'s gather-then-scatter: that materialises an (edges x width) message tensor per
    relation, forward and backward, whose churn of 20-80 MB blocks left the CPU allocator's heap
    fragmented (peak RSS 2.6 GB instead of 1.9 GB on a 100k-playlist graph). Full-graph training
    passes that adjacency prebuilt (``trainer.gnn.full_graph.MeanAdjacency``) in place of the edge
    list: the graph is fixed for an epoch, so it is built once, not per step.
    """

    def __init__(self):
        super().__init__(aggr="mean")

    def forward(self, x, edge_index, size=None):
        x_src, x_dst = x if isinstance(x, tuple) else (x, x)
        if not isinstance(edge_index, torch.Tensor):  # a prebuilt MeanAdjacency (full-graph training)
            with torch.autocast(x_src.device.type, enabled=False):
                return (edge_index @ x_src.float()).to(x_src.dtype)
        n_src = x_src.size(0) if size is None else size[0]
        n_dst = x_dst.size(0) if size is None else size[1]
        src, dst = edge_index[0], edge_index[1]
        degree = torch.bincount(dst, minlength=n_dst).clamp_(min=1).float()
        adjacency = torch.sparse_coo_tensor(
            torch.stack([dst, src]), degree.reciprocal()[dst], (n_dst, n_src), check_invariants=False
        )
        # Sparse kernels are float32 only (CUDA has no bf16 sparse addmm), so autocast is off
        # here; under bf16 autocast the result goes back to bf16.
        with torch.autocast(x_src.device.type, enabled=False):
            return torch.sparse.mm(adjacency, x_src.float()).to(x_src.dtype)

    def reset_parameters(self):
        pass


class _MeanLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = MeanConv()

    def forward(self, x, edge_index):
        return self.conv(x, edge_index)


class LinkPredictor(nn.Module):
    def __init__(
        self,
        metadata,
        feature_dims: dict[str, int],
        num_nodes: dict[str, int],
        hidden: int = 64,
        layers: int = 3,
        aggr: str = "mean",
        id_embeddings: bool = True,
        id_dim: int = 32,
        id_init_std: float = 0.1,
        layer_mean: bool = False,
        temperature: float = 0.0,
        conv: str = "sage",
        sparse_embeddings: bool = False,
        track_bias: bool = False,
        playlist_ids: bool = False,
    ):
        super().__init__()
        self.nonlinear = conv == "sage"  # LightGCN propagation is linear
        self.layer_mean = layer_mean
        self.temperature = temperature
        self.node_types = list(metadata[0])
        self.edge_types = list(metadata[1])
        self.embedding = nn.ModuleDict()
        self.project = nn.ModuleDict()
        for t in self.node_types:
            width = feature_dims[t]
            if id_embeddings and (t in ID_EMBEDDED_TYPES or (t == "playlist" and playlist_ids)):
                # Sparse gradients: a batch touches a few thousand of the table's rows.
                self.embedding[t] = nn.Embedding(num_nodes[t], id_dim, sparse=sparse_embeddings)
                if t == "playlist":
                    # Zero: a playlist's row learns only from its own edges (the seeds of a
                    # held-out one), and a playlist from outside the graph has none (seed_query).
                    nn.init.zeros_(self.embedding[t].weight)
                else:
                    # Random directions from the start (a near-zero init lingers in the "every
                    # playlist alike" popularity solution); not so large that rare tracks stay noise.
                    nn.init.normal_(self.embedding[t].weight, std=id_init_std)
                width += id_dim
            self.project[t] = nn.Linear(width, hidden)
        # A track's prior (popularity) as a score term of its own: the cosine readout bounds
        # every score, so without it a popular track cannot outrank a rare one pointing the
        # same way. Read from the track's input projection (features, ID), so a rarely seen
        # track gets the prior of tracks like it.
        self.track_bias = nn.Linear(hidden, 1) if track_bias else None
        # Input widths are known (every layer sees `hidden`), so there are no lazy parameters.
        # The last layer only updates what the decoder reads: album/artist convolutions there
        # would be parameters without gradients (and DDP would need find_unused_parameters).
        last = [et for et in self.edge_types if et[2] in DECODED_TYPES]
        self.layer_edge_types = [self.edge_types] * (layers - 1) + [last]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*do not get updated during message passing.*")
            self.layers = nn.ModuleList(
                to_hetero(
                    _SAGELayer(hidden, aggr) if conv == "sage" else _MeanLayer(), (self.node_types, ets), aggr="sum"
                )
                for ets in self.layer_edge_types
            )

    def input_embeddings(self, x_dict, n_id_dict) -> dict[str, torch.Tensor]:
        """Layer-0 representation of the given nodes (``n_id_dict``: their global ids)."""
        h = {}
        for t, x in x_dict.items():
            if t in self.embedding:
                x = torch.cat([x, self.embedding[t](n_id_dict[t])], dim=-1)
            h[t] = self.project[t](x)
        return h

    def forward(self, x_dict, edge_index_dict, n_id_dict, within=None) -> dict[str, torch.Tensor]:
        """Final playlist and track representations of the nodes in ``x_dict``.

        ``within`` (from :func:`hop_counts`) trims a sampled batch layer by layer: layer ``i`` of
        ``L`` only updates nodes within ``L - 1 - i`` hops of the seeds, the only ones a later
        layer reads. The rows returned are then only the first few (seeds first), and equal the
        untrimmed forward's there; most of a batch's nodes are its outer hops.
        """
        h = self.input_embeddings(x_dict, n_id_dict)
        track_h0 = h["track"]
        total = {t: h[t] for t in DECODED_TYPES}
        depth = len(self.layers)
        for i, layer in enumerate(self.layers):
            if within is not None:
                h = {t: v[: within[t][depth - i]] for t, v in h.items()}
                edge_index_dict = {
                    et: ei[:, ei[1] < within[et[2]][depth - 1 - i]] for et, ei in edge_index_dict.items()
                }
            h = layer(h, edge_index_dict)
            if i < depth - 1:
                if self.nonlinear:
                    h = {t: F.relu(v) for t, v in h.items()}
                total = {t: total[t][: h[t].size(0)] + h[t] for t in DECODED_TYPES}
        return self.readout(h, {t: total[t][: h[t].size(0)] for t in DECODED_TYPES}, track_h0[: h["track"].size(0)])

    def readout(
        self, last: dict[str, torch.Tensor], total: dict[str, torch.Tensor], track_h0: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Decoder inputs from the last layer's output (``last``) and the sum of the layer-0 to
        next-to-last representations of the decoded types (``total``); ``track_h0``: the
        tracks' input projections, for ``track_bias``.

        ``layer_mean`` averages every layer (LightGCN's layer combination): the layer-0 ID
        embedding of a track then reaches the decoder directly, so a held-out playlist, whose
        representation is an aggregate of its seed tracks, is compared with tracks by what they
        co-occur with rather than only through three hops of sampled averages. ``temperature``
        > 0 L2-normalises both sides and scales each by ``temperature ** -0.5``: the dot product
        is then cosine / temperature, so a track cannot win every playlist by a large norm
        (popularity), and exported embeddings rank exactly as the training scores.
        ``track_bias`` appends the track's bias to its vector and a 1 to the playlist's, so the
        dot product is that plus the bias and exported embeddings still rank by a dot product.
        """
        out = {}
        for t in DECODED_TYPES:
            v = (total[t] + last[t]) / (len(self.layers) + 1) if self.layer_mean else last[t]
            if self.temperature:
                v = F.normalize(v, dim=-1) / self.temperature**0.5
            out[t] = v
        if self.track_bias is not None:
            out["track"] = torch.cat([out["track"], self.track_bias(track_h0)], dim=-1)
            out["playlist"] = F.pad(out["playlist"], (0, 1), value=1.0)
        return out

    def relation_conv(self, layer: int, edge_type: tuple[str, str, str]) -> SAGEConv | MeanConv:
        """The SAGEConv ``to_hetero`` made for one relation of one layer (layer-wise inference)."""
        convs = self.layers[layer].conv
        key = "__".join(edge_type)
        if key not in convs:
            raise KeyError(f"layer {layer} has no convolution for {edge_type}; has {list(convs)}")
        return convs[key]


def hop_counts(
    seeds: dict[str, torch.Tensor], edge_index_dict, num_nodes: dict[str, int], depth: int
) -> dict[str, list[int]] | None:
    """Per node type, how many of a sampled batch's nodes lie within 0, 1, ..., ``depth`` hops
    of its ``seeds`` (local indices per type), for :meth:`LinkPredictor.forward`'s ``within``.

    The sampler lists nodes hop by hop, so each count is a prefix of the type's rows; None when
    a batch is not in that order (the forward then runs untrimmed).
    """
    device = next(iter(seeds.values())).device  # computed where the batch is: no copies
    dist = {t: torch.full((n,), depth + 1, dtype=torch.long, device=device) for t, n in num_nodes.items()}
    for t, idx in seeds.items():
        dist[t][idx] = 0
    for _ in range(depth):  # a sampled edge points from a neighbour (row 0) to the node expanded
        for (src, _, dst), ei in edge_index_dict.items():
            dist[src].scatter_reduce_(0, ei[0], dist[dst][ei[1]] + 1, reduce="amin")
    within = {}
    hops = torch.arange(depth + 1, device=device)
    for t, d in dist.items():
        if d.numel() > 1 and bool((d[1:] < d[:-1]).any()):
            return None
        within[t] = torch.searchsorted(d, hops, right=True).tolist()
    return within


def score(h_playlist: torch.Tensor, h_track: torch.Tensor, edge_label_index: torch.Tensor) -> torch.Tensor:
    """Dot-product logits of (playlist, track) pairs given as rows into the two tables."""
    return (h_playlist[edge_label_index[0]] * h_track[edge_label_index[1]]).sum(dim=-1)


def build_model(config, metadata, feature_dims, num_nodes, sparse_embeddings: bool = False) -> LinkPredictor:
    return LinkPredictor(
        metadata,
        feature_dims,
        num_nodes,
        hidden=config.hidden,
        layers=config.layers,
        aggr=config.aggr,
        id_embeddings=config.id_embeddings,
        id_dim=config.id_dim,
        id_init_std=config.id_init_std,
        layer_mean=config.layer_mean,
        temperature=config.temperature,
        conv=config.conv,
        sparse_embeddings=sparse_embeddings,
        track_bias=config.track_bias,
        playlist_ids=config.playlist_ids,
    )
