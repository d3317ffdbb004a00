"""Training losses over scored (playlist, track) pairs; the same for sampled and full-graph
training (``trainer/gnn/sampled.py``, ``trainer/gnn/full_graph.py``).

``loss=softmax`` ranks each positive against every track of its batch
(:func:`sampled_softmax`), ``full_softmax`` against every track of the catalogue (full-graph
training only); ``bpr`` and ``bce`` score each positive against its own
``negatives`` (triplets: the positive's playlist with random tracks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def candidate_log_frequency(
    train_edges: torch.Tensor, num_tracks: int, batch_size: int, negatives: int, negative_power: float
) -> torch.Tensor:
    """Per track, log of how often it is expected among a batch's softmax candidates: as a
    positive (drawn like the train edges, by degree) or as a sampled negative."""
    degree = torch.bincount(train_edges[1], minlength=num_tracks).double()
    weight = (degree + 1) ** negative_power
    expected = batch_size * degree / degree.sum().clamp(min=1) + batch_size * negatives * weight / weight.sum()
    return expected.log().float()


def pair_loss(
    loss: str, src: torch.Tensor, h_track: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
) -> tuple[torch.Tensor, int, int]:
    """(mean loss, loss terms, positives) of BCE or BPR on triplets: ``src`` (B, d) playlist
    readouts, ``positive`` (B,) and ``negative`` (B, K) rows of ``h_track``."""
    pos = (src * h_track[positive]).sum(-1)
    neg = (src.unsqueeze(1) * h_track[negative]).sum(-1)
    if loss == "bce":
        logits = torch.cat([pos, neg.flatten()])
        labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg.flatten())])
        return F.binary_cross_entropy_with_logits(logits, labels), logits.numel(), pos.numel()
    return -F.logsigmoid(pos.unsqueeze(1) - neg).mean(), neg.numel(), pos.numel()


def sampled_softmax(
    src: torch.Tensor,
    h_track: torch.Tensor,
    playlist: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    log_frequency: torch.Tensor,
) -> torch.Tensor:
    """Cross-entropy of each positive against every track of the batch (its positives and
    sampled negatives: mixed negative sampling), rather than against its own few negatives.

    The evaluation ranks the whole catalogue; BPR on uniform negatives mostly compares with rare
    tracks a playlist was never close to (its loss falls to ~0.04 and stops teaching), while the
    other positives of a batch are the popular, plausible tracks its top ranks compete with.
    Popular tracks are candidates more often, so each logit is corrected by the log of its
    candidate frequency (sampling-bias correction, Yi et al. 2019); without it the scores learn
    to demote popular tracks. A batch's other positives of the same playlist are true links,
    so they are masked out of its row.

    ``src``: (B, d) playlist readouts of the B positives; ``playlist``, ``positive``: (B,)
    playlist and track indices; ``negative``: (B, K) track indices; ``log_frequency``: per
    track (row of ``h_track``), :func:`candidate_log_frequency`.
    """
    candidates = torch.unique(torch.cat([positive, negative.flatten()]))
    target = torch.searchsorted(candidates, positive)
    logits = src @ h_track[candidates].T - log_frequency[candidates]
    return F.cross_entropy(_mask_siblings(logits, playlist, target), target)


def _mask_siblings(logits: torch.Tensor, playlist: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``logits`` with each row's siblings (its playlist's other positives in the batch: true
    links, not negatives) at -inf; the row's own ``target`` column stays."""
    rows, others = (playlist.unsqueeze(1) == playlist.unsqueeze(0)).nonzero(as_tuple=True)
    sibling = torch.zeros_like(logits, dtype=torch.bool)
    sibling[rows, target[others]] = True
    sibling[torch.arange(len(target), device=target.device), target] = False
    return logits.masked_fill(sibling, float("-inf"))


def full_softmax(
    src: torch.Tensor, h_track: torch.Tensor, playlist: torch.Tensor, positive: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of each positive against the whole catalogue (every row of ``h_track``):
    the exact form of :func:`sampled_softmax`, so no candidate-frequency correction; the
    batch's other positives of the same playlist are masked out of its row as there. Costs
    positives x catalogue x width: for full-graph training, where every track's readout is at hand."""
    return F.cross_entropy(_mask_siblings(src @ h_track.T, playlist, positive), positive)


def batch_loss(
    loss: str,
    src: torch.Tensor,
    h_track: torch.Tensor,
    playlist: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    log_frequency: torch.Tensor | None,
) -> tuple[torch.Tensor, int, int]:
    """(mean loss, loss terms, positives) of a batch, whichever ``loss`` the config names."""
    if loss == "full_softmax":
        return full_softmax(src, h_track, playlist, positive), src.size(0), src.size(0)
    if loss == "softmax":
        return (sampled_softmax(src, h_track, playlist, positive, negative, log_frequency), src.size(0), src.size(0))
    return pair_loss(loss, src, h_track, positive, negative)
