"""The ranking methods behind one interface (a :class:`~trainer.evaluation.scoring.Scorer`): the
GNN, read from the embeddings ``trainer.embed`` exported, and the baselines fitted on the graph
dir's training playlists; plus the title model every method shares for playlists without
seeds (``trainer.evaluation.title``)."""

from __future__ import annotations

import copy
import functools
import logging

import numpy as np
import torch

from etl import contract
from trainer import dist
from trainer.config import EARLIER_RUNS
from trainer.evaluation.baselines import (
    ALS,
    ALSParams,
    ItemKNN,
    Popularity,
    item_factors_of,
    popularity_counts,
)
from trainer.evaluation.protocol import HeldOut
from trainer.evaluation.scoring import EmbeddingScorer, Scorer
from trainer.evaluation.title import TitleModel
from trainer.gnn.shards import selection_half
from trainer.io import als_factors, embeddings, ranker, run_dir
from trainer.io.catalogue import Catalogue, track_names
from trainer.ranker.candidate_features import VERSION as FEATURES_VERSION
from trainer.ranker.candidate_features import TrackFeatures
from trainer.ranker.model import Ranker, RankerParams

log = logging.getLogger(__name__)

METHODS = ("gnn", "popularity", "itemknn", "als", "rerank", "fusion")
SECOND_STAGE = ("rerank", "fusion")  # built by python -m trainer.rerank


def default_method(run: str) -> str:
    """What recommend and submit use when not told, as evaluate ranks by default: the second stage
    once the run has one (``python -m trainer.rerank``), else the GNN once its embeddings exist."""
    if not embeddings.exists(run):
        return "itemknn"
    return "rerank" if ranker.exists(run) else "gnn"


def gnn_scorer(
    graph: Catalogue, run: str, device: torch.device, gnn_query: str = "playlist", fold_in_steps: int = 0
) -> EmbeddingScorer:
    """The GNN's scorer from ``run``'s embeddings, refused when they are incomplete, older than the
    run's final checkpoint, or of another graph; ``scorer.source`` names the checkpoint."""
    if not embeddings.exists(run):
        raise FileNotFoundError(
            f"--methods gnn: no embeddings in {run}/{run_dir.EMBEDDINGS}/ (track.parquet); export them with "
            "python -m trainer.embed, or leave gnn out of --methods"
        )
    source = embeddings.identity(run)
    run_dir.check_trained_on(source, graph.path, graph.manifest, f"the embeddings in {run}")
    query = embeddings.seed_query(run, graph)
    tracks = embeddings.track_embeddings(run, graph)  # names embeddings of another graph first
    playlists = embeddings.playlist_embeddings(run, graph) if gnn_query == "playlist" else None
    bias = source.get("track_bias")
    if bias is None:  # an export from before the identity said so: the run's config says it
        config = run_dir.RunDir(run).read_json(run_dir.CONFIG_FILE)
        if config is None or "track_bias" not in config:
            raise run_dir.RunMismatchError(
                f"{run}/{run_dir.EMBEDDINGS} do not say whether their track vectors end in a bias, and {run} "
                f"has no {run_dir.CONFIG_FILE} that does; export them again "
                f"(python -m trainer.embed --graph GRAPH --run {run})"
            )
        bias = bool(config["track_bias"])
    scorer = EmbeddingScorer(tracks, playlists, device, query, fold_in_steps=fold_in_steps, bias_column=bias)
    scorer.source = source  # what every result ranked by it names
    return scorer


def build_scorers(
    graph: Catalogue,
    run: str,
    methods: list[str],
    device: torch.device,
    beta: float = 0.0,
    gamma: float = 1.0,
    gnn_query: str = "playlist",
    als: ALSParams = ALSParams(),
    fold_in_steps: int = 0,
    neighbours: int = 0,
    allowed: np.ndarray | None = None,
) -> tuple[dict[str, Scorer], Scorer]:
    """The requested methods' scorers and the title fallback they share; ``allowed``: the tracks the
    caller's ranking may return (None: all), which the second stage's candidates honour too."""
    run = str(run)  # a pathlib.Path too
    if gnn_query not in ("playlist", "seeds"):
        raise ValueError(f"--gnn-query must be playlist or seeds, got {gnn_query!r}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    # Each read of the playlist-track matrices takes seconds at 1M playlists: made when first
    # needed, so a GNN query with seeds (recommend) makes none.
    popularity = functools.cache(lambda: popularity_counts(graph.edges(contract.VISIBLE_ROLES)))
    train = functools.cache(lambda: graph.edges((contract.ROLE_TRAIN,), splits=(contract.SPLIT_TRAIN,)))
    scorers: dict[str, Scorer] = {}
    for m in methods:
        if m == "gnn":
            scorers[m] = gnn_scorer(graph, run, device, gnn_query, fold_in_steps)
        elif m == "popularity":
            scorers[m] = Popularity(popularity())
        elif m == "als":
            # Under torchrun rank 0 fits (with every core) and the others receive the factors:
            # a fit per rank would only multiply the work, the longest part of an evaluation.
            # The fit is kept in the run dir for the next call on the same graph and settings.
            factors = dist.from_rank_0(
                lambda: torch.from_numpy(
                    als_factors.fitted(
                        run, graph.manifest, als.as_dict(), lambda: item_factors_of(train(), als).numpy()
                    )
                ),
                (graph.num_tracks, als.factors),
                device,
            )
            scorers[m] = ALS(train(), popularity(), als, item_factors=factors)
        elif m == "itemknn":
            scorers[m] = ItemKNN(train(), popularity(), beta=beta, gamma=gamma, neighbours=neighbours)
    fallback = OnFirstUse(
        lambda: TitleModel(
            graph.edges(contract.VISIBLE_ROLES), graph.playlist_title, popularity(), track_names(graph.path)
        )
    )
    second = [m for m in SECOND_STAGE if m in methods]
    if second:
        # The columns' own scorers serve as the second stage's retrievers where the ranker was
        # built with the same settings: the evaluation's pass then computes their top-k once.
        settings = {
            "gnn_query": gnn_query,
            "itemknn": {"beta": beta, "gamma": gamma, "neighbours": neighbours},
            "als": als.as_dict(),
        }
        scorers.update(
            rerank_scorers(
                graph, run, device, train(), popularity(), fallback, second, fold_in_steps, allowed, (scorers, settings)
            )
        )
    scorers = {m: scorers[m] for m in methods}
    return scorers, fallback


def rerank_scorers(
    graph: Catalogue,
    run: str,
    device: torch.device,
    train,
    popularity,
    title: Scorer,
    which: list[str],
    fold_in_steps: int = 0,
    allowed: np.ndarray | None = None,
    columns: tuple[dict[str, Scorer], dict] = ({}, {}),
) -> dict[str, Ranker]:
    """The run's second-stage ranker over retrievers rebuilt with the settings it was built with
    (ALS from its own stored factors); refused when the run's embeddings or the graph changed.
    ``which``: rerank (the booster) and/or fusion (its per-category fusion of the retrievers'
    z-scores), sharing one set of retrievers and features. ``columns``: scorers already built and
    the settings they were built with; one that is the very retriever the ranker was built with
    is used as it is."""
    import lightgbm as lgb

    source = embeddings.identity(run) if embeddings.exists(run) else {}
    booster, factors, built = ranker.read(
        run, source.get("checkpoint_id"), graph.manifest, TitleModel.SOURCE, FEATURES_VERSION
    )
    have, settings = columns
    knn = built["itemknn"]
    retrievers = {
        "gnn": have["gnn"]
        if "gnn" in have and settings["gnn_query"] == built["gnn_query"]
        else gnn_scorer(graph, run, device, built["gnn_query"], fold_in_steps),
        "als": have["als"]
        if "als" in have and _same_als(have["als"], ALSParams(**built["als"]), factors)
        else ALS(train, popularity, ALSParams(**built["als"]), item_factors=torch.from_numpy(factors)),
        "itemknn": have["itemknn"]
        if "itemknn" in have and settings["itemknn"] == {k: knn[k] for k in ("beta", "gamma", "neighbours")}
        else ItemKNN(train, popularity, knn["beta"], knn["gamma"], knn["neighbours"]),
    }
    second = Ranker(
        lgb.Booster(model_str=booster),
        {m: retrievers[m] for m in built["retrievers"]},
        title,
        TrackFeatures(graph, popularity),
        popularity,
        graph.num_tracks,
        RankerParams(**built["params"]),
        built["features"],
        device=device,
        categories=graph.playlist_category,
        allowed=allowed,
    )
    out = {}
    for m in which:
        out[m] = copy.copy(second)
        out[m].fusion = built["fusion"] if m == "fusion" else None
    return out


def _same_als(als: ALS, params: ALSParams, factors: np.ndarray) -> bool:
    """``als`` is the fit of ``params`` with these track factors, however many threads each was told
    to use: compared before a second copy of the factors is built (600 MB at 1M playlists)."""
    settings = [{**p.as_dict(), "num_threads": 0} for p in (als.params, params)]
    return settings[0] == settings[1] and torch.equal(als.tracks, torch.from_numpy(factors))


def ranker_playlists(held: HeldOut, run: str) -> tuple[HeldOut, str]:
    """The val playlists the ranker may learn from, and which: the half whose ranking did not select
    the run's checkpoint ("ranker", under ``val_selection=half``), so the GNN's score is not trusted
    for having been chosen on the very labels the ranker fits; every one ("all", said) for a run
    that selected on all."""
    config = run_dir.RunDir(run).read_json(run_dir.CONFIG_FILE) or {}
    if config.get("val_selection", EARLIER_RUNS["val_selection"]) == "half":
        return held.take(np.flatnonzero(~selection_half(held.playlist_ids))), "ranker"
    log.warning(
        "%s selected its checkpoint on every val playlist (val_selection=all): the ranker learns from the "
        "labels that chose the GNN; train with val_selection=half for a ranker apart from them",
        run,
    )
    return held, "all"


class OnFirstUse:
    """A scorer built when it is first used (the title fallback, which reads every visible edge,
    for the queries without seeds that may never come)."""

    def __init__(self, build):
        self._build, self._scorer = build, None

    def __getattr__(self, name):  # batch(), index: whatever the built scorer has
        if self._scorer is None:
            self._scorer = self._build()
        return getattr(self._scorer, name)


def source_of(scorers: dict[str, Scorer]) -> dict | None:
    """The checkpoint behind the GNN among ``scorers`` (what its results must name), else None."""
    gnn = scorers.get("gnn")
    return None if gnn is None else {k: gnn.source.get(k) for k in ("checkpoint", "checkpoint_id")}
