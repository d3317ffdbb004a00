"""Full-graph training for the parameter-free layers (``propagation=full``, ``conv=lightgcn``).

The epoch's message-passing graph (visible train + seed edges minus the epoch's supervision
edges, with reverse relations) lives on the device as one row-normalised sparse adjacency per
relation. Every step propagates the whole graph once (a few sparse-dense products per layer)
and scores the rank's batch of supervision edges from the resulting tables. Exact where
neighbour sampling is an estimate, and without a sampler on the hot path: at full-MPD size a
3-layer propagation is tens of milliseconds on a GPU, while the CPU sampler took ~0.5 s of a core
per 256 edges (bench/RESULTS.md).

Negatives are drawn per step from a generator fixed by ``(seed, epoch, rank, step)``, so a run
resumed mid-epoch replays exactly what an uninterrupted one would have drawn.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from trainer import dist
from trainer.config import TrainConfig
from trainer.gnn.losses import batch_loss
from trainer.gnn.model import score
from trainer.gnn.shards import NEGATIVES, epoch_split, generator, rank_shard
from trainer.io.graph import Graph


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    order = torch.argsort(rows * shape[1] + cols)
    crow = torch.zeros(shape[0] + 1, dtype=torch.long, device=rows.device)
    crow[1:] = torch.cumsum(torch.bincount(rows, minlength=shape[0]), 0)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": said once per relation, epoch and rank
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, cols[order], values[order], shape, check_invariants=False)


class MeanAdjacency:
    """A relation's row-normalised adjacency (destination x source) and its transpose, both CSR:
    the product with source rows is the mean over each destination's in-neighbours (what
    ``MeanConv`` computes from an edge list). The transpose is kept because autograd's backward
    of a CSR product would otherwise transpose and re-sort the matrix on every step (7 of 8 s
    of a step at 2k playlists on CPU)."""

    def __init__(self, edge_index: torch.Tensor, num_src: int, num_dst: int, device: torch.device):
        src, dst = edge_index[0].to(device), edge_index[1].to(device)
        weight = torch.bincount(dst, minlength=num_dst).clamp_(min=1).float().reciprocal()[dst]
        self.matrix = _csr(dst, src, weight, (num_dst, num_src))
        self.transpose = _csr(src, dst, weight, (num_src, num_dst))

    def __matmul__(self, x: torch.Tensor) -> torch.Tensor:
        return _MeanProduct.apply(x, self)


class _MeanProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, adjacency: MeanAdjacency):
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency.matrix, x)

    @staticmethod
    def backward(ctx, grad):
        return torch.sparse.mm(ctx.adjacency.transpose, grad.contiguous()), None


def adjacency(graph: Graph, playlist_track: torch.Tensor | None, device: torch.device) -> dict:
    """Per relation (reverse relations included), the mean adjacency of the message-passing
    graph with ``playlist_track`` edges (default: every visible one)."""
    data = graph.hetero_data(playlist_track)
    return {
        et: MeanAdjacency(ei, graph.num_nodes[et[0]], graph.num_nodes[et[2]], device)
        for et, ei in data.edge_index_dict.items()
    }


@dataclass
class Batch:
    playlist: torch.Tensor  # (B,) playlist ids
    positive: torch.Tensor  # (B,) track ids
    negative: torch.Tensor  # (B, K) track ids


class FullGraphTraining:
    """The per-epoch graph and batches of full-graph training on one rank."""

    def __init__(self, graph: Graph, config: TrainConfig, env: dist.DistEnv, log_frequency: torch.Tensor | None):
        self.graph, self.config, self.env = graph, config, env
        self.device = env.device
        self.x = {t: x.to(self.device) for t, x in graph.x.items()}
        self.n_id = {t: torch.arange(n, device=self.device) for t, n in graph.num_nodes.items()}
        self.log_frequency = log_frequency
        self.adjacency: dict | None = None
        self.negative_weight = None
        self.loader_workers = 0

    def start_epoch(self, epoch: int) -> int:
        """Build the epoch's graph and this rank's shard; returns the number of steps."""
        config, graph = self.config, self.graph
        message_passing, supervision = epoch_split(
            graph.train_edges, graph.seed_edges, config.supervision_ratio, config.seed, epoch, config.supervise_seeds
        )
        self.adjacency = None  # the previous epoch's graph goes before the next one is built
        self.adjacency = adjacency(graph, message_passing, self.device)
        shard = rank_shard(supervision.size(1), self.env.rank, self.env.world_size, config.seed, epoch)
        self.edges = supervision[:, shard].to(self.device)
        self.epoch = epoch
        if config.negative_power:
            degree = torch.bincount(message_passing[1].long(), minlength=graph.num_nodes["track"]).double()
            self.negative_weight = ((degree + 1) ** config.negative_power).to(self.device)
        return -(-self.edges.size(1) // config.batch_size)

    def batches(self, steps: int, skip: int = 0) -> Iterator[Batch | None]:
        """``steps`` batches of the shard in order; None for the first ``skip`` (already trained)."""
        config = self.config
        num_tracks = self.graph.num_nodes["track"]
        for step in range(steps):
            if step < skip:
                yield None
                continue
            edges = self.edges[:, step * config.batch_size : (step + 1) * config.batch_size]
            gen = generator(config.seed, NEGATIVES, self.epoch, self.env.rank, step, device=self.device)
            shape = (edges.size(1), config.negatives)
            if self.negative_weight is None:
                negative = torch.randint(num_tracks, shape, generator=gen, device=self.device)
            else:
                negative = torch.multinomial(
                    self.negative_weight, shape[0] * shape[1], replacement=True, generator=gen
                ).view(shape)
            yield Batch(edges[0], edges[1], negative)

    def forward(self, model, adjacency: dict | None = None) -> dict[str, torch.Tensor]:
        """Every playlist's and track's readout, propagated over ``adjacency`` (default: the epoch's)."""
        return model(self.x, self.adjacency if adjacency is None else adjacency, self.n_id)

    def loss(self, model, batch: Batch, amp: bool):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            h = self.forward(model)
        hp, ht = h["playlist"].float(), h["track"].float()
        # A softmax's cost grows with its positives times its candidates (their positives and
        # negatives): a step's batch is scored in chunks, each against its own candidates, as
        # sampled training scores each of its batches. Each chunk's backward runs at once into
        # detached readouts, so one chunk's logits are held at a time whatever the batch (a
        # batch of 128k positives would otherwise keep ~19 GB of them for one backward); the
        # propagation's backward then runs once, from the summed readout gradients.
        chunk = self.config.loss_chunk
        leaf_p, leaf_t = hp.detach().requires_grad_(), ht.detach().requires_grad_()
        total, terms, positives = 0.0, 0, 0
        for lo in range(0, batch.playlist.numel(), chunk):
            part = slice(lo, lo + chunk)
            loss, n_terms, n_pos = batch_loss(
                self.config.loss,
                leaf_p[batch.playlist[part]],
                leaf_t,
                batch.playlist[part],
                batch.positive[part],
                batch.negative[part],
                self.log_frequency,
            )
            (loss * n_terms).backward()
            total, terms, positives = total + loss.item() * n_terms, terms + n_terms, positives + n_pos
        # A tensor whose value is the batch's mean loss and whose gradient reaches the model
        # through the propagation: the chunks' readout gradients pulled back in one backward.
        surrogate = ((hp * leaf_p.grad).sum() + (ht * leaf_t.grad).sum()) / terms
        return surrogate - surrogate.detach() + total / terms, terms, positives

    @torch.no_grad()
    def pair_scores(self, model, edges: torch.Tensor) -> torch.Tensor:
        """Scores of (playlist, track) columns of ``edges`` on the epoch's graph (diagnostics)."""
        h = self.forward(model)
        return score(h["playlist"].float(), h["track"].float(), edges.to(self.device)).cpu()

    @torch.no_grad()
    def embed(self, model) -> dict[str, torch.Tensor]:
        """Every playlist's and track's readout on the whole visible graph (what
        ``trainer.embed`` exports), for ranking validation."""
        visible = adjacency(self.graph, None, self.device)
        h = self.forward(model, visible)
        return {t: h[t].float() for t in ("playlist", "track")}
