"""Sampled training (``propagation=sampled``): ``LinkNeighborLoader`` over the epoch's
message-passing graph, each batch the sampled neighbourhoods of its supervision edges and their
negatives. Any ``conv``; the one mode for graphs larger than a device's memory.

Neighbours are drawn by PyG's ``NeighborSampler`` through torch-sparse on the CPU
(``sampler=torch_sparse``) or by ``trainer.gnn.neighbor_sampler`` on the graph's device
(``sampler=device``: on CUDA the epoch's graph then lives on the GPU and batches are sampled and
gathered there, in the training process)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch_geometric.loader import LinkNeighborLoader
from torch_geometric.sampler import NegativeSampling

from trainer import dist
from trainer.config import ConfigError, TrainConfig
from trainer.gnn.inference import encode_all
from trainer.gnn.losses import batch_loss
from trainer.gnn.model import hop_counts, score
from trainer.gnn.neighbor_sampler import DeviceNeighborSampler
from trainer.gnn.shards import NEIGHBOURS, epoch_split, mix, rank_shard
from trainer.io.graph import PLAYLIST_TRACK, Graph


class SamplerMissing(RuntimeError):
    """Neither neighbour-sampling backend of PyG is installed."""


def require_sampler(config: TrainConfig) -> None:
    """Fail before loading a graph when LinkNeighborLoader could not sample: PyG's own sampler
    (``sampler=torch_sparse``) needs torch-sparse or pyg-lib; ``sampler=device`` needs neither."""
    import torch_geometric.typing as pyg_typing

    if config.sampler != "torch_sparse":
        return
    if not (pyg_typing.WITH_TORCH_SPARSE or pyg_typing.WITH_PYG_LIB):
        raise SamplerMissing(
            "LinkNeighborLoader needs torch-sparse (or pyg-lib), and neither imports with torch "
            f"{torch.__version__}; run `make install-pyg-sparse`, or take torch-sparse from PyG's wheel index "
            "for your torch+CUDA (https://data.pyg.org/whl/), or train with --sampler=device"
        )


def loader_workers(config: TrainConfig, device: torch.device) -> int:
    """``num_workers``, with -1 resolved from the cores this rank has (its share of the node's).

    On CPU: one worker (sampling overlaps the step) when the rank has a core of its own beside
    it, else none (a worker would only steal the step's core). On CUDA: every spare core, at
    most 16, since sampling is then the step: torch-sparse takes a core ~0.6 s per default batch
    at 100k playlists while an H200 computes the step in ~0.04 s (8 workers: loader still 80%
    of the step, bench/RESULTS.md). None with the device sampler on CUDA: it samples in this
    process, on the GPU, which worker processes cannot share."""
    if device.type == "cuda" and config.sampler == "device":
        if config.num_workers > 0:
            raise ConfigError(
                f"num_workers={config.num_workers} with sampler=device on CUDA: the sampler runs "
                "on the GPU in the training process; use num_workers=0 (or -1), or sampler=torch_sparse"
            )
        return 0
    if config.num_workers >= 0:
        return config.num_workers
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = len(os.sched_getaffinity(0)) // max(1, ranks_here)
    if device.type == "cuda":
        return max(1, min(cores - 1, 16))
    return 1 if cores >= 2 else 0


def epoch_loader(
    graph: Graph, config: TrainConfig, env: dist.DistEnv, epoch: int, workers: int = 0
) -> LinkNeighborLoader:
    """This rank's loader for ``epoch``: its shard of the epoch's supervision edges, sampled on
    the visible graph minus all of the epoch's supervision edges."""
    message_passing, supervision = epoch_split(
        graph.train_edges, graph.seed_edges, config.supervision_ratio, config.seed, epoch, config.supervise_seeds
    )
    data = graph.hetero_data(message_passing, sort_by_destination=True)
    sampler = None  # PyG's NeighborSampler (torch-sparse)
    if config.sampler == "device":
        data = data.to(env.device)
        sampler = DeviceNeighborSampler(data, list(config.fanout))
    edge_label_index = supervision[:, rank_shard(supervision.size(1), env.rank, env.world_size, config.seed, epoch)]
    weight = None
    if config.negative_power:  # popularity-biased negatives, on this epoch's visible degrees
        degree = torch.bincount(message_passing[1], minlength=graph.num_nodes["track"]).double()
        weight = (degree + 1) ** config.negative_power
    return LinkNeighborLoader(
        data,
        num_neighbors=list(config.fanout),
        edge_label_index=(PLAYLIST_TRACK, edge_label_index),
        neg_sampling=NegativeSampling("triplet", amount=config.negatives, dst_weight=weight),
        batch_size=config.batch_size,
        is_sorted=True,
        neighbor_sampler=sampler,
        shuffle=False,  # the shard is already a fresh (seed, epoch) permutation
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )


class SampledTraining:
    """The per-epoch loader and batch loss of sampled training on one rank."""

    def __init__(self, graph: Graph, config: TrainConfig, env: dist.DistEnv, log_frequency: torch.Tensor | None):
        self.graph, self.config, self.env = graph, config, env
        self.log_frequency = log_frequency
        self.loader_workers = loader_workers(config, env.device)
        self.loader = None

    def start_epoch(self, epoch: int) -> int:
        """Build this rank's loader for ``epoch``; returns its length."""
        self.loader = None  # the previous epoch's graph goes before the next one is built
        self.loader = epoch_loader(self.graph, self.config, self.env, epoch, self.loader_workers)
        return len(self.loader)

    def batches(self, steps: int, skip: int = 0) -> Iterator:
        """``steps`` batches on the device; None for the first ``skip``, which are still drawn:
        that replays the sampler's randomness exactly, without training."""
        batches = iter(self.loader)
        try:
            for step in range(steps):
                batch = next(batches)
                yield None if step < skip else batch.to(self.env.device, non_blocking=True)
        finally:
            del batches  # stops the loader's workers

    def loss(self, model, batch, amp: bool):
        """(mean loss, number of loss terms, number of positive edges) of one batch.

        Negatives are triplets (the positive's playlist with ``negatives`` random tracks), for
        BCE too: PyG's binary mode also draws a random playlist, which lets a model score
        playlists by degree instead of ranking tracks for a playlist, the task evaluation measures.
        """
        config = self.config
        seeds = {
            "playlist": batch["playlist"].src_index,
            "track": torch.cat([batch["track"].dst_pos_index, batch["track"].dst_neg_index.flatten()]),
        }
        within = hop_counts(seeds, batch.edge_index_dict, batch.num_nodes_dict, config.layers)
        with torch.autocast(batch["playlist"].x.device.type, dtype=torch.bfloat16, enabled=amp):
            h = model(batch.x_dict, batch.edge_index_dict, batch.n_id_dict, within)
        hp, ht = h["playlist"].float(), h["track"].float()
        log_frequency = None if self.log_frequency is None else self.log_frequency[batch["track"].n_id]
        return batch_loss(
            config.loss,
            hp[batch["playlist"].src_index],
            ht,
            batch["playlist"].src_index,
            batch["track"].dst_pos_index,
            batch["track"].dst_neg_index,
            log_frequency,
        )

    @torch.no_grad()
    def pair_scores(self, model, edges: torch.Tensor) -> torch.Tensor:
        """Scores of (playlist, track) columns of ``edges``, each from its sampled neighbourhood
        on the epoch's graph (which holds every validation playlist's seeds); diagnostics."""
        config, env = self.config, self.env
        torch.manual_seed(mix(config.seed, NEIGHBOURS, env.rank))  # neighbour sampling
        loader = LinkNeighborLoader(
            self.loader.data,
            num_neighbors=list(config.fanout),
            batch_size=config.batch_size,
            shuffle=False,
            is_sorted=True,
            edge_label_index=(PLAYLIST_TRACK, edges),
            num_workers=0,
            neighbor_sampler=self.loader.link_sampler,
        )  # the epoch loader's: same graph, fan-out, kind
        scores = []
        for batch in loader:
            batch = batch.to(env.device)
            with torch.autocast(
                env.device.type, dtype=torch.bfloat16, enabled=config.amp and env.device.type == "cuda"
            ):
                label_index = batch[PLAYLIST_TRACK].edge_label_index
                within = hop_counts(
                    {"playlist": label_index[0], "track": label_index[1]},
                    batch.edge_index_dict,
                    batch.num_nodes_dict,
                    config.layers,
                )
                h = model(batch.x_dict, batch.edge_index_dict, batch.n_id_dict, within)
            scores.append(score(h["playlist"].float(), h["track"].float(), label_index).cpu())
        return torch.cat(scores) if scores else torch.empty(0)

    @torch.no_grad()
    def embed(self, model) -> dict[str, torch.Tensor]:
        """Every playlist's and track's readout on the whole visible graph, by exact layer-wise
        inference (what ``trainer.embed`` exports), for ranking validation."""
        h = encode_all(model, self.graph, device=self.env.device)
        return {t: h[t] for t in ("playlist", "track")}
