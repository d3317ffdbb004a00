"""The training strategy a config asks for: whole-graph propagation or ``LinkNeighborLoader``
sampling, with the epoch's batching and the softmax's candidate frequencies."""

from __future__ import annotations

import torch

from trainer import dist, regime
from trainer.config import TrainConfig
from trainer.gnn.full_graph import FullGraphTraining
from trainer.gnn.losses import candidate_log_frequency
from trainer.gnn.sampled import SampledTraining
from trainer.io.graph import Graph


def build_strategy(config: TrainConfig, graph: Graph, env: dist.DistEnv) -> FullGraphTraining | SampledTraining:
    batching = regime.batch_within_epoch(config, graph, env.world_size)
    log_frequency = None
    if config.loss == "softmax":
        supervisable = graph.train_edges
        if config.supervise_seeds:
            supervisable = torch.cat([graph.train_edges, graph.seed_edges], dim=1)
        log_frequency = candidate_log_frequency(
            supervisable, graph.num_nodes["track"], batching.batch_size, config.negatives, config.negative_power
        ).to(env.device)
    training = FullGraphTraining if config.propagation == "full" else SampledTraining
    return training(graph, batching, env, log_frequency)
