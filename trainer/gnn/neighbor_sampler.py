"""A neighbour sampler whose graph and kernels live on the graph's device (``sampler=device``).

``LinkNeighborLoader(..., neighbor_sampler=DeviceNeighborSampler(...))`` takes it in place of
PyG's ``NeighborSampler``, whose heterogeneous sampling runs through torch-sparse (or pyg-lib) on
the CPU only, one core per batch: on a GPU that bounds the step. Here each relation is held as
CSC (``colptr``, ``row``) tensors on the device of the ``HeteroData`` given, and a hop is a few
vectorised tensor operations over the whole frontier, the same on CPU and CUDA.

Conventions are those of PyG's sampler with torch-sparse, ``subgraph_type="directional"``,
``replace=False``, ``disjoint=False``:

- a frontier node with degree <= fan-out (or fan-out -1) keeps all its in-neighbours; one with a
  larger degree gets ``fanout`` distinct ones, uniformly without replacement (Floyd's algorithm,
  vectorised over the frontier): the distribution torch-sparse samples by default, so switching
  samplers changes speed, not what the model is trained on;
- every hop expands only the nodes first reached in the previous hop, across all relations into
  their type; a sampled edge points from the neighbour (``row``, local index of the source
  type) to the node expanded (``col``, local index of the destination type), ``edge`` its id;
- nodes are listed hop by hop per type (seeds, then the new nodes of hop 1, ...), which
  ``trainer.gnn.model.hop_counts`` needs; within a hop, new nodes come in increasing global id
  (``torch.unique``'s order; torch-sparse's is first appearance);
- the seeds of a batch of supervision edges are its distinct source nodes and its distinct
  destination nodes (positives, then triplet negatives) in increasing id, as PyG's
  ``edge_sample`` orders them, and ``src_index``, ``dst_pos_index``, ``dst_neg_index`` (triplet)
  or ``edge_label_index`` (no negatives) index those seeds the same way.

Randomness (negatives, neighbour choice) comes from ``generator``, by default the global
generator of the graph's device: ``torch.manual_seed`` makes a loader's batches repeat.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.sampler import BaseSampler, EdgeSamplerInput, HeteroSamplerOutput, NegativeSampling
from torch_geometric.typing import EdgeType, NodeType


def csc(edge_index: Tensor, num_dst: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """(colptr, row, perm) of a relation's ``edge_index``: ``row[colptr[v]:colptr[v+1]]`` are
    the sources of node ``v``'s in-edges. ``perm`` maps CSC positions to edge ids; None when the
    edges are already sorted by destination (``Graph.hetero_data(sort_by_destination=True)``),
    and ``row`` is then a view of ``edge_index``, not a copy."""
    src, dst = edge_index[0], edge_index[1]
    perm = None
    if dst.numel() > 1 and bool((dst[1:] < dst[:-1]).any()):
        perm = torch.argsort(dst, stable=True)
        src, dst = src[perm], dst[perm]
    colptr = torch.zeros(num_dst + 1, dtype=torch.long, device=dst.device)
    torch.cumsum(torch.bincount(dst, minlength=num_dst), 0, out=colptr[1:])
    return colptr, src, perm


def choose_without_replacement(degree: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """(n, k) distinct offsets in ``[0, degree[i])`` per row, uniformly (every ``degree >= k``).

    Floyd's algorithm, one column per step for all rows at once: for j = d-k .. d-1 draw t in
    [0, j]; keep t unless an earlier column took it, else take j (not yet reachable before this
    step). Every k-subset is equally likely; the cost is k steps of an (n, k) comparison,
    whatever the degrees, where random keys over all neighbours would cost the degree sum."""
    n = degree.numel()
    picks = torch.empty(n, k, dtype=torch.long, device=degree.device)
    # float64: a float32 draw times a degree above 2**24 would skip offsets.
    u = torch.rand(n, k, dtype=torch.float64, device=degree.device, generator=generator)
    for s in range(k):
        j = degree - k + s
        t = torch.minimum((u[:, s] * (j + 1)).long(), j)
        if s:
            t = torch.where((picks[:, :s] == t.unsqueeze(1)).any(1), j, t)
        picks[:, s] = t
    return picks


def sample_in_neighbours(
    colptr: Tensor, row: Tensor, nodes: Tensor, fanout: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(position in ``nodes``, CSC position) of the in-edges sampled for each of ``nodes``: all
    of them where the degree is <= ``fanout`` (or ``fanout`` is -1), else ``fanout`` distinct."""
    start = colptr[nodes]
    degree = colptr[nodes + 1] - start
    everything = degree if fanout < 0 else torch.where(degree <= fanout, degree, 0)
    owner = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), everything)
    first = torch.cumsum(everything, 0) - everything
    offset = torch.arange(owner.numel(), device=nodes.device) - first[owner]
    if fanout >= 0:
        many = (degree > fanout).nonzero().flatten()
        if many.numel():
            picks = choose_without_replacement(degree[many], fanout, generator)
            owner = torch.cat([owner, many.repeat_interleave(fanout)])
            offset = torch.cat([offset, picks.flatten()])
    return owner, start[owner] + offset


class DeviceNeighborSampler(BaseSampler):
    """Uniform heterogeneous neighbour sampling on the graph's device, for ``LinkNeighborLoader``'s
    ``neighbor_sampler``; see the module docstring for its conventions.

    ``num_neighbors``: fan-out per hop, the same for every relation (-1: all neighbours).
    """

    def __init__(self, data: HeteroData, num_neighbors: list[int], generator: torch.Generator | None = None):
        if not isinstance(data, HeteroData):
            raise TypeError(f"DeviceNeighborSampler samples a HeteroData, got {type(data).__name__}")
        if not num_neighbors or any(f == 0 or f < -1 for f in num_neighbors):
            raise ValueError(
                f"num_neighbors must be a non-empty list of positive fan-outs (or -1 for "
                f"all neighbours), got {list(num_neighbors)}"
            )
        self.num_neighbors = [int(f) for f in num_neighbors]
        self.generator = generator
        self.node_types, self.edge_types = data.metadata()
        self.num_nodes = {t: data[t].num_nodes for t in self.node_types}
        self.colptr, self.row, self.perm = {}, {}, {}
        for et in self.edge_types:
            self.colptr[et], self.row[et], self.perm[et] = csc(data[et].edge_index, self.num_nodes[et[2]])
        self.device = self.row[self.edge_types[0]].device if self.edge_types else torch.device("cpu")
        # Per type, the batch-local index of each node of the graph (-1: not in the batch); reset
        # after every batch at the entries it set, so a batch costs its size, not the graph's.
        self._local = {t: torch.full((n,), -1, dtype=torch.long, device=self.device) for t, n in self.num_nodes.items()}
        self._dst_weight = None  # the negatives' weights, moved to the device once

    @property
    def edge_permutation(self) -> dict[EdgeType, Tensor | None]:
        return self.perm

    def sample_from_nodes(self, inputs, **kwargs):
        raise NotImplementedError(
            "DeviceNeighborSampler samples around supervision edges "
            "(LinkNeighborLoader); NeighborLoader is not supported"
        )

    def sample_from_edges(
        self, inputs: EdgeSamplerInput, neg_sampling: NegativeSampling | None = None
    ) -> HeteroSamplerOutput:
        """The sampled subgraph around ``inputs`` (and their negatives), as PyG's ``edge_sample``
        builds it without ``disjoint``; metadata ``(input_id, src_index, dst_pos_index,
        dst_neg_index, None)`` for triplets, ``(input_id, edge_label_index, edge_label, None)``
        without negatives."""
        input_type = inputs.input_type
        if input_type is None or input_type[0] == input_type[-1]:
            raise ValueError(
                f"DeviceNeighborSampler needs supervision edges between two node types, got input type {input_type}"
            )
        if neg_sampling is not None and not neg_sampling.is_triplet():
            raise ValueError(
                f"DeviceNeighborSampler supports triplet negative sampling (or none), got {neg_sampling.mode}"
            )
        if inputs.time is not None:
            raise ValueError("DeviceNeighborSampler does not sample temporally (edge_label_time)")
        src_type, dst_type = input_type[0], input_type[-1]
        src, dst = inputs.row.to(self.device), inputs.col.to(self.device)
        num_pos = src.numel()
        if neg_sampling is not None:
            dst = torch.cat(
                [dst, self._negatives(neg_sampling, math.ceil(num_pos * neg_sampling.amount), self.num_nodes[dst_type])]
            )
        src_seed, src_index = torch.unique(src, return_inverse=True)
        dst_seed, dst_index = torch.unique(dst, return_inverse=True)
        out = self.sample({src_type: src_seed, dst_type: dst_seed})
        if neg_sampling is None:
            out.metadata = (inputs.input_id, torch.stack([src_index, dst_index]), inputs.label, None)
        else:
            out.metadata = (
                inputs.input_id,
                src_index,
                dst_index[:num_pos],
                dst_index[num_pos:].view(num_pos, -1).squeeze(-1),
                None,
            )
        return out

    def _negatives(self, neg_sampling: NegativeSampling, count: int, num_nodes: int) -> Tensor:
        """``count`` destination nodes drawn as ``NegativeSampling.sample`` draws them (the same
        numbers for the same seed on CPU), on the device."""
        if neg_sampling.dst_weight is None:
            return torch.randint(num_nodes, (count,), device=self.device, generator=self.generator)
        if neg_sampling.dst_weight.numel() != num_nodes:
            raise ValueError(
                f"negative sampling dst_weight has {neg_sampling.dst_weight.numel()} entries, "
                f"the destination type has {num_nodes} nodes"
            )
        if self._dst_weight is None or self._dst_weight[0] is not neg_sampling.dst_weight:
            self._dst_weight = (neg_sampling.dst_weight, neg_sampling.dst_weight.to(self.device))
        return torch.multinomial(self._dst_weight[1], count, replacement=True, generator=self.generator)

    def sample(self, seeds: dict[NodeType, Tensor]) -> HeteroSamplerOutput:
        """Sample ``len(num_neighbors)`` hops around ``seeds`` (distinct global ids per type)."""
        device = self.device
        empty = torch.empty(0, dtype=torch.long, device=device)
        nodes = {t: [seeds.get(t, empty).to(device)] for t in self.node_types}
        counts = {t: nodes[t][0].numel() for t in self.node_types}
        for t, ids in nodes.items():
            self._local[t][ids[0]] = torch.arange(counts[t], device=device)
        # The frontier of a type is its last entry in `nodes` (seeds, then each hop's new nodes),
        # from local index `first[t]` on.
        first = {t: 0 for t in self.node_types}
        rows = {et: [] for et in self.edge_types}
        cols = {et: [] for et in self.edge_types}
        edges = {et: [] for et in self.edge_types}
        num_edges = {et: [] for et in self.edge_types}
        try:
            for fanout in self.num_neighbors:
                reached = {t: [] for t in self.node_types}  # global ids sampled this hop, per type
                hop_edges = []
                for et in self.edge_types:
                    expanded = nodes[et[2]][-1]
                    if not expanded.numel():
                        num_edges[et].append(0)
                        continue
                    owner, position = sample_in_neighbours(
                        self.colptr[et], self.row[et], expanded, fanout, self.generator
                    )
                    neighbour = self.row[et][position]
                    reached[et[0]].append(neighbour)
                    hop_edges.append((et, neighbour, first[et[2]] + owner, position))
                    num_edges[et].append(position.numel())
                for t in self.node_types:
                    new = empty
                    if reached[t]:
                        candidates = torch.unique(torch.cat(reached[t]))
                        new = candidates[self._local[t][candidates] < 0]
                        self._local[t][new] = torch.arange(counts[t], counts[t] + new.numel(), device=device)
                    nodes[t].append(new)
                    first[t] = counts[t]
                    counts[t] += new.numel()
                for et, neighbour, col, position in hop_edges:
                    rows[et].append(self._local[et[0]][neighbour])
                    cols[et].append(col)
                    edges[et].append(position)  # the loader maps it through edge_permutation
        finally:
            node = {t: torch.cat(v) for t, v in nodes.items()}
            for t, ids in node.items():
                self._local[t][ids] = -1
        cat = lambda parts: torch.cat(parts) if parts else empty  # noqa: E731
        return HeteroSamplerOutput(
            node=node,
            row={et: cat(v) for et, v in rows.items()},
            col={et: cat(v) for et, v in cols.items()},
            edge={et: cat(v) for et, v in edges.items()},
            batch=None,
            num_sampled_nodes={t: [v.numel() for v in parts] for t, parts in nodes.items()},
            num_sampled_edges=num_edges,
        )
