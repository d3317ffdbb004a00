"""Validation diagnostics during training: the training loss (BCE; BPR, which is also the
softmax's term with one negative) and ROC AUC of held-out edges against sampled negatives.
(Sampled metrics are diagnostics only; the real evaluation ranks the full catalogue, see
``trainer/evaluate.py``.)

Validation edges are the hidden edges of ``split=val`` playlists; message passing uses the
epoch's graph (the visible train + seed edges minus the epoch's supervision edges, which belong
to training playlists: a validation playlist keeps all its seeds). Each rank scores its shard;
the loss is reduced as a sum and a count, and the AUC is exact: every rank's scores and labels
are gathered before ranking.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_geometric.loader import LinkNeighborLoader

from trainer import dist
from trainer.graph import PLAYLIST_TRACK
from trainer.model import hop_counts, score
from trainer.shards import epoch_generator, rank_shard

_VAL_STREAM = 7


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
        keep = torch.randperm(edges.size(1), generator=epoch_generator(config.seed, 0, _VAL_STREAM))
        edges = edges[:, keep[: config.val_max_edges]]
    shard = rank_shard(edges.size(1), env.rank, env.world_size, config.seed, epoch=0)
    return edges[:, shard]


@torch.no_grad()
def validate(model, data, edges: torch.Tensor, config, env) -> dict:
    """``val_loss`` (the configured loss, one negative per positive) and ``val_auc`` over all
    ranks (None when there are no validation edges). ``data``: a message-passing graph sorted
    by destination (``Graph.hetero_data(sort_by_destination=True)``): the training loop passes
    its epoch's graph, which holds every validation playlist's seeds."""
    total = dist.all_reduce_sum(env, [float(edges.size(1))])[0]
    if total == 0:
        return {"val_loss": None, "val_auc": None}
    model.eval()
    graph_tracks = data["track"].num_nodes
    # One negative per positive: the same playlist with a random track, the same draw every
    # epoch so that the curve measures the model and not the draw.
    gen = epoch_generator(config.seed, env.rank, _VAL_STREAM + 1)
    negatives = torch.stack([edges[0], torch.randint(graph_tracks, (edges.size(1),), generator=gen)])
    torch.manual_seed(config.seed * 1_000_003 + 999_983 + env.rank)  # neighbour sampling
    loader = LinkNeighborLoader(
        data, num_neighbors=list(config.fanout), batch_size=config.batch_size, shuffle=False, is_sorted=True,
        edge_label_index=(PLAYLIST_TRACK, torch.cat([edges, negatives], dim=1)), num_workers=0)
    all_scores = []
    for batch in loader:
        batch = batch.to(env.device)
        with torch.autocast(env.device.type, dtype=torch.bfloat16,
                            enabled=config.amp and env.device.type == "cuda"):
            label_index = batch[PLAYLIST_TRACK].edge_label_index
            within = hop_counts({"playlist": label_index[0], "track": label_index[1]},
                                batch.edge_index_dict, batch.num_nodes_dict, config.layers)
            h = model(batch.x_dict, batch.edge_index_dict, batch.n_id_dict, within)
        logits = score(h["playlist"].float(), h["track"].float(), label_index)
        all_scores.append(logits.cpu())
    model.train()
    # The loader kept order: positives, then their negatives (same playlist) in the same order.
    scores = torch.cat(all_scores) if all_scores else torch.empty(0)
    n = edges.size(1)
    pos, neg = scores[:n], scores[n:]
    labels = torch.cat([torch.ones(n), torch.zeros(n)])
    if config.loss in ("bpr", "softmax"):  # a softmax over {positive, negative} is BPR's term
        loss_sum = -F.logsigmoid(pos - neg).sum().item()
        count = n
    else:
        loss_sum = F.binary_cross_entropy_with_logits(scores, labels, reduction="sum").item()
        count = 2 * n
    loss_sum, count = dist.all_reduce_sum(env, [loss_sum, float(count)])
    scores, labels = dist.all_gather_cat(env, scores), dist.all_gather_cat(env, labels)
    return {"val_loss": loss_sum / count, "val_auc": roc_auc(scores, labels)}
