"""Validation during training, on the hidden edges of ``split=val`` playlists.

- :func:`diagnostics`: the configured loss (BCE; BPR, which is also the softmax's term
  with one negative) and ROC AUC of held-out edges against sampled negatives, scored on the
  epoch's graph (the visible edges minus the epoch's supervision edges, which belong to
  training playlists: a validation playlist keeps all its seeds). Sampled metrics are
  diagnostics only (Krichene & Rendle 2020). Each rank scores its shard; the loss is reduced as
  a sum and a count, and the AUC is exact: every rank's scores and labels are gathered.
- :func:`rank_validation`: what model selection uses: the RecSys 2018 metrics of a fixed sample
  of seeded validation playlists, ranking the full catalogue exactly as ``trainer.evaluate``
  does (seeds masked, tracks without a visible edge excluded, top 500), from embeddings of the
  whole visible graph. Playlists without seeds are left out: every method ranks them by title.
- :func:`update_selection`, :func:`should_stop`: the best epoch by those metrics, and patience.
- :class:`Validation`: a run's validation sets and its selection so far, as the loop uses them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from etl import contract
from trainer import dist
from trainer.config import TrainConfig
from trainer.evaluation.metrics import CHALLENGE_METRICS, K
from trainer.evaluation.protocol import HeldOut, build_held_out, metrics_per_batch, visible_tracks
from trainer.evaluation.scoring import EmbeddingScorer
from trainer.gnn.divergence import check_metrics
from trainer.gnn.shards import VAL_EDGES, VAL_NEGATIVES, VAL_PLAYLISTS, generator, rank_shard, selection_half

RANK_METRICS = CHALLENGE_METRICS

log = logging.getLogger(__name__)


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Exact ROC AUC (Mann-Whitney U, ties counted one half); None without both classes."""
    labels = labels.bool()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    values, inverse, counts = torch.unique(scores.double(), return_inverse=True, return_counts=True)
    # Average 1-based rank of each distinct value: ties share the mean of their positions.
    ends = torch.cumsum(counts, 0).double()
    avg_rank = ends - (counts.double() - 1) / 2
    rank_sum = avg_rank[inverse][labels].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def val_edges_for_rank(graph, config, env) -> torch.Tensor:
    """This rank's share of the (capped, fixed across epochs) validation edges."""
    edges = graph.val_edges.long()
    if config.val_max_edges and edges.size(1) > config.val_max_edges:
        keep = torch.randperm(edges.size(1), generator=generator(config.seed, VAL_EDGES))
        edges = edges[:, keep[: config.val_max_edges]]
    shard = rank_shard(edges.size(1), env.rank, env.world_size, config.seed, epoch=0)
    return edges[:, shard]


@torch.no_grad()
def diagnostics(model, training, edges: torch.Tensor, config, env) -> dict:
    """``val_loss`` (the configured loss, one negative per positive) and ``val_auc`` over all
    ranks (None when there are no validation edges); ``training``: the epoch's
    ``SampledTraining`` or ``FullGraphTraining``, which scores pairs on the epoch's graph."""
    total = dist.all_reduce_sum(env, [float(edges.size(1))])[0]
    if total == 0:
        return {"val_loss": None, "val_auc": None}
    model.eval()
    # One negative per positive: the same playlist with a random track, the same draw every
    # epoch so that the curve measures the model and not the draw.
    gen = generator(config.seed, VAL_NEGATIVES, env.rank)
    negatives = torch.stack(
        [edges[0], torch.randint(training.graph.num_nodes["track"], (edges.size(1),), generator=gen)]
    )
    scores = training.pair_scores(model, torch.cat([edges, negatives], dim=1))
    model.train()
    n = edges.size(1)
    pos, neg = scores[:n], scores[n:]
    labels = torch.cat([torch.ones(n), torch.zeros(n)])
    if config.loss in ("bpr", "softmax", "full_softmax"):  # a softmax over {positive, negative} is BPR's term
        loss_sum = -F.logsigmoid(pos - neg).sum().item()
        count = n
    else:
        loss_sum = F.binary_cross_entropy_with_logits(scores, labels, reduction="sum").item()
        count = 2 * n
    loss_sum, count = dist.all_reduce_sum(env, [loss_sum, float(count)])
    scores, labels = dist.all_gather_cat(env, scores), dist.all_gather_cat(env, labels)
    return {"val_loss": loss_sum / count, "val_auc": roc_auc(scores, labels)}


@dataclass
class RankingSet:
    """Seeded validation playlists (the protocol's :class:`HeldOut`), the tracks that may be
    ranked and each track's artist."""

    held: HeldOut
    allowed: np.ndarray  # bool per track: has a visible edge
    track_artist: np.ndarray  # artist id per track

    def __len__(self) -> int:
        return len(self.held)


def ranking_set(graph, max_playlists: int, seed: int, half: bool = False) -> RankingSet:
    """A fixed sample of at most ``max_playlists`` (0: all) seeded validation playlists with
    ground truth, built by the evaluation's own protocol from the training graph; ``half``: only
    those of the selection half (:func:`~trainer.gnn.shards.selection_half`)."""
    shape = (graph.num_nodes["playlist"], graph.num_nodes["track"])
    seeds, hidden = _binary(graph.seed_edges, shape), _binary(graph.val_edges, shape)
    val = np.flatnonzero(graph.playlist_split == contract.SPLIT_VAL)
    held = build_held_out(val[selection_half(val)] if half else val, seeds, hidden)
    seeded = np.flatnonzero(held.queries.num_seeds() > 0)
    if max_playlists and len(seeded) > max_playlists:
        pick = torch.randperm(len(seeded), generator=generator(seed, VAL_PLAYLISTS))
        seeded = np.sort(seeded[pick[:max_playlists].numpy()])
    return RankingSet(held.take(seeded), visible_tracks(graph.visible_edges[1].numpy(), shape[1]), graph.track_artist)


def _binary(edges: torch.Tensor, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(edges.size(1), dtype=np.float32), (edges[0].numpy(), edges[1].numpy())), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


@torch.no_grad()
def rank_validation(
    embeddings: dict[str, torch.Tensor], ranking: RankingSet, device, batch_size: int = 256, chunk_size: int = 1 << 17
) -> dict:
    """Mean ``val_r_precision``, ``val_ndcg`` and ``val_clicks`` of the ranking set, ranked by
    ``embeddings`` (every playlist's and track's readout) as ``trainer.evaluate`` ranks."""
    if len(ranking) == 0:
        return {f"val_{m}": None for m in RANK_METRICS}
    scorer = EmbeddingScorer(embeddings["track"].cpu().numpy(), embeddings["playlist"].cpu().numpy(), device)
    sums = dict.fromkeys(RANK_METRICS, 0.0)
    # Every playlist here has seeds: no title fallback is needed.
    for _, _, values in metrics_per_batch(
        ranking.held, {"gnn": scorer}, None, ranking.track_artist, K, batch_size, chunk_size, device, ranking.allowed
    ):
        for m in RANK_METRICS:
            sums[m] += float(values["gnn"][m].sum())
    return {f"val_{m}": sums[m] / len(ranking) for m in RANK_METRICS}


def rank_metrics(model, strategy, ranking, env) -> dict:
    """Full-catalogue validation metrics of ``model`` (its readout by ``strategy.embed``), computed
    on rank 0 and shared with every rank; {} without a ranking set."""
    if ranking is None:
        return {}
    keys = [f"val_{m}" for m in RANK_METRICS]
    values = [0.0] * len(keys)
    if env.is_main:
        model.eval()
        embeddings = strategy.embed(model)
        model.train()
        if all(bool(torch.isfinite(e).all()) for e in embeddings.values()):
            ranked = rank_validation(embeddings, ranking, env.device)
            values = [ranked[k] for k in keys]
        else:  # a ranking of NaN scores is an arbitrary order: say NaN, on every rank
            values = [math.nan] * len(keys)
    return dict(zip(keys, dist.all_reduce_sum(env, values)))


def update_selection(selection: dict, ranked: dict, epoch: int, global_step: int | None = None) -> bool:
    """Whether the model of ``epoch`` (at ``global_step``) is the best so far by val R-precision
    (then NDCG); updates ``selection``, whose ``bad_epochs`` counts validations without one."""
    if not ranked:
        return False
    value = (ranked["val_r_precision"], ranked["val_ndcg"])
    if not all(v is not None and math.isfinite(v) for v in value):  # never select what cannot be ranked
        selection["bad_epochs"] += 1
        return False
    if selection["best"] is None or value > tuple(selection["best_value"]):
        selection.update(best=value[0], best_value=list(value), best_epoch=epoch, best_step=global_step, bad_epochs=0)
        return True
    selection["bad_epochs"] += 1
    return False


def should_stop(selection: dict, config: TrainConfig) -> bool:
    """Whether ``patience`` validations in a row brought no better model."""
    return bool(config.patience) and selection["bad_epochs"] >= config.patience


class Validation:
    """A run's validation: its fixed sets (this rank's share of the val edges for the sampled
    diagnostics, the seeded playlists ranking selects by) and the selection so far (which
    checkpoints keep)."""

    def __init__(self, graph, config: TrainConfig, env, selection: dict | None = None):
        self.config, self.env = config, env
        self.selection = selection or {"best": None, "best_epoch": None, "bad_epochs": 0}
        self.edges = val_edges_for_rank(graph, config, env)
        ranking = None
        if config.val_rank_playlists:
            half = config.val_selection == "half"
            ranking = ranking_set(graph, config.val_rank_playlists, config.seed, half)
        if ranking is not None and len(ranking) == 0:
            # Zeros would pass for a metric and stop the run after `patience` epochs of them.
            log.warning(
                "no seeded val playlist with hidden tracks: no ranking validation, no early stopping; "
                "the last epoch is exported"
            )
            ranking = None
        self.ranking = ranking

    def should_stop(self) -> bool:
        return should_stop(self.selection, self.config)

    def select(
        self, model, strategy, epoch: int, global_step: int, run_path: str, diagnosed: dict | None = None
    ) -> tuple[dict, float, bool]:
        """Rank the validation playlists with ``model``, check the numbers (beside ``diagnosed``,
        the sampled diagnostics of an epoch's end) and update the selection: (the ranking
        metrics, seconds spent ranking, whether this model is the best so far)."""
        start = time.perf_counter()
        ranked = rank_metrics(model, strategy, self.ranking, self.env)
        seconds = time.perf_counter() - start
        check_metrics({**(diagnosed or {}), **ranked}, epoch, self.config, run_path)
        return ranked, seconds, update_selection(self.selection, ranked, epoch, global_step)
