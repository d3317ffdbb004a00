"""The ranker's training examples: each held-out playlist's candidates (the retrievers' top K),
their features and labels (is the candidate a hidden track), the query sizes LightGBM groups
by, and the first stage's recall."""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm import tqdm

from trainer.evaluation.protocol import HeldOut
from trainer.evaluation.scoring import Scorer
from trainer.ranker import candidates
from trainer.ranker.candidate_features import SeedSimilarity, TrackFeatures, features

log = logging.getLogger("trainer.rerank")


def examples(
    held: HeldOut,
    retrievers: dict[str, Scorer],
    title: Scorer,
    tracks: TrackFeatures,
    num_tracks: int,
    k: int,
    batch_size: int,
    chunk_size: int,
    device: torch.device,
    allowed: np.ndarray | None,
):
    """Features, labels and query sizes of ``held``'s candidates; the first stage's recall.
    Candidates come only from the ``allowed`` tracks (the catalogue evaluation ranks, visible by
    default): a track known only through held-out playlists' hidden edges would teach the ranker
    from labels no evaluation can return."""
    xs, ys, groups, recall = [], [], [], {}
    similarity = SeedSimilarity(retrievers)
    for lo in tqdm(range(0, len(held), batch_size), desc="candidates", disable=not log.isEnabledFor(logging.INFO)):
        part = held.slice(lo, min(lo + batch_size, len(held)))
        cands = candidates.generate(retrievers, title, part.queries, num_tracks, k, chunk_size, device, allowed)
        x, names = features(cands, part.queries, tracks, part.categories, similarity)
        xs.append(x)
        ys.append(candidates.labels(cands, part.truth_indptr, part.truth_tracks, num_tracks))
        groups.append(np.diff(cands.indptr))
        for name, r in candidates.recall(cands, ys[-1], np.diff(part.truth_indptr)).items():
            recall[name] = recall.get(name, 0.0) + r * len(part)
    recall = {name: r / len(held) for name, r in recall.items()}
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups), names, recall
