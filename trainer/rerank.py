"""Build the second-stage ranker of a trained run from the val playlists that did not choose its
checkpoint (the half ``val_selection=half`` leaves apart; every one for a run that selected on all).

    python -m trainer.rerank --graph DIR --run RUN_DIR [--k 500] [--folds 5]

Needs the run's embeddings (``trainer.embed``); fits ALS unless the run keeps a fit of this graph
and settings. Writes ``RUN_DIR/reranker/`` (the booster, the ALS factors its features came from,
and identity.json: what it was built from, its folds' rounds, the first stage's recall and the
features' importances). ``evaluate``, ``recommend`` and ``submit`` then take ``--method(s)
rerank`` (or ``fusion``: the retrievers' z-scored scores summed with weights chosen per seed
category on val, the cheap first method). The val playlists are spent on it: evaluate on test.
"""

from __future__ import annotations

import trainer.hugepages  # noqa: F401  (first, before torch: it asks torch for huge pages)

# isort: split

import json
import logging
import sys

import numpy as np

from etl import contract
from trainer import cli, dist
from trainer.evaluation import protocol
from trainer.evaluation.baselines import ALSParams, popularity_counts
from trainer.evaluation.title import TitleModel
from trainer.io import als_factors, embeddings, ranker, run_dir, storage
from trainer.io.catalogue import load_catalogue
from trainer.methods import build_scorers, ranker_playlists
from trainer.ranker.candidate_features import VERSION as FEATURES_VERSION
from trainer.ranker.candidate_features import TrackFeatures
from trainer.ranker.examples import examples
from trainer.ranker.model import RETRIEVERS, RankerParams, fit, fit_fusion

log = logging.getLogger("trainer.rerank")


def build(
    graph_dir: str,
    run: str,
    params: RankerParams = RankerParams(),
    als: ALSParams = ALSParams(),
    itemknn: dict | None = None,
    batch_size: int = 256,
    chunk_size: int = 1 << 17,
    device: str = "auto",
    max_playlists: int = 0,
) -> dict:
    """Build and publish ``run``'s ranker; returns its identity (what identity.json holds).
    ``max_playlists``: learn from this many of its val playlists, evenly spaced (0: all)."""
    itemknn = {"beta": 0.0, "gamma": 1.0, "neighbours": 0, **(itemknn or {})}
    device = dist.pick_device(device)
    graph = load_catalogue(graph_dir)
    held, half = ranker_playlists(protocol.held_out(graph, contract.SPLIT_VAL), run)
    held = held.evenly(max_playlists)
    if len(held) < params.folds:
        raise ValueError(
            f"{graph_dir}: {len(held)} val playlists with hidden tracks (val half: {half}), "
            f"fewer than --folds {params.folds}"
        )
    if not embeddings.exists(run):
        raise FileNotFoundError(
            f"{run}: no embeddings; export them first (python -m trainer.embed --graph {graph_dir} --run {run})"
        )
    source = embeddings.identity(run)
    scorers, title = build_scorers(
        graph,
        run,
        list(RETRIEVERS),
        device,
        itemknn["beta"],
        itemknn["gamma"],
        als=als,
        neighbours=itemknn["neighbours"],
    )
    popularity = popularity_counts(graph.edges(contract.VISIBLE_ROLES))
    tracks = TrackFeatures(graph, popularity)
    x, y, group, names, recall = examples(
        held,
        scorers,
        title,
        tracks,
        graph.num_tracks,
        params.k,
        batch_size,
        chunk_size,
        device,
        protocol.visible_catalogue(graph),
    )
    log.info(
        "%d val playlists, %s candidates (%.1f%% positive); recall of the top-%d: %s",
        len(held),
        f"{len(y):,}",
        100 * y.mean(),
        params.k,
        json.dumps({m: round(r, 4) for m, r in recall.items()}),
    )
    booster, cv = fit(x, y, group, names, params)
    fusion = fit_fusion(x, y, group, names, list(RETRIEVERS), held.categories, np.diff(held.truth_indptr))
    gains = booster.feature_importance("gain")
    importances = {
        n: round(float(g / max(gains.sum(), 1e-12)), 4) for n, g in sorted(zip(names, gains), key=lambda p: -p[1])
    }
    factors = scorers["als"].tracks.numpy()
    factors_identity = als_factors.identity(graph.manifest, als.as_dict())
    identity = {
        "checkpoint": source.get("checkpoint"),
        "checkpoint_id": source.get("checkpoint_id"),
        "graph": run_dir.graph_identity(graph.manifest),
        "graph_path": str(graph_dir),
        "retrievers": list(RETRIEVERS),
        "title": TitleModel.SOURCE,
        "gnn_query": "playlist",
        "itemknn": itemknn,
        "als": als.as_dict(),
        "als_factors": factors_identity,
        "params": params.as_dict(),
        "features": names,
        "features_version": FEATURES_VERSION,
        "catalogue": "visible",
        "trained_on": {
            "split": contract.SPLIT_VAL,
            "val_half": half,
            "playlists": len(held),
            "candidates": int(len(y)),
            "positives": int(y.sum()),
        },
        "recall": recall,
        "cv": cv,
        "importances": importances,
        "fusion": fusion,
    }
    where = ranker.publish(run, booster.model_to_string(), factors, factors_identity, identity)
    log.info(
        "ranker of %d rounds written to %s; top features: %s", cv["rounds"], where, ", ".join(list(importances)[:8])
    )
    return identity


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("trainer.rerank", __doc__)
    cli.add_graph(p)
    cli.add_run(p, "a trained run with embeddings")
    d = RankerParams()
    p.add_argument("--k", type=cli.count(1), default=d.k, help="candidates per retriever and playlist")
    p.add_argument(
        "--folds", type=cli.count(2), default=d.folds, help="folds of the val playlists that choose the rounds"
    )
    p.add_argument("--max-rounds", type=cli.count(1), default=d.max_rounds)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--itemknn-neighbours", type=cli.count(0), default=0, help="as trainer.evaluate's")
    p.add_argument("--batch-size", type=cli.count(1), default=256, help="playlists at once")
    p.add_argument(
        "--max-playlists",
        type=cli.count(0),
        default=0,
        help="learn from this many of the val playlists apart from selection, evenly spaced (0: all)",
    )
    cli.add_device(p)
    args = p.parse_args(argv)

    def body():
        params = RankerParams(k=args.k, folds=args.folds, max_rounds=args.max_rounds, seed=args.seed)
        storage.check_writable(ranker.path(args.run), "--run", folder=True)
        build(
            args.graph,
            args.run,
            params,
            itemknn={"neighbours": args.itemknn_neighbours},
            batch_size=args.batch_size,
            device=args.device,
            max_playlists=args.max_playlists,
        )

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
