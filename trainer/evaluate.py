"""Full-catalogue evaluation of a run (and the baselines) on a held-out split, with the RecSys 2018 metrics.

For every playlist of the split (``nodes/playlist.split``), rank the whole track catalogue
(its seed tracks masked), keep the top K (500, as the challenge) and score them against its
hidden tracks; report per seed category and overall.

The catalogue ranked is, by default, every track with at least one visible (train or seed)
edge: a track that the graph holds only because of hidden edges is known only through the
ground truth (a model that learnt "never seen, yet in the catalogue" would be reading the
answers), and the challenge likewise ranked the tracks of the training data.
``--catalogue all`` ranks every track of ``nodes/track``. Every method goes through the same
``trainer.evaluation.scoring.top_k``; playlists without seeds go to the title model for every method
(``trainer.evaluation.title``).

Runs as ``python -m trainer.evaluate`` or under ``torchrun``: playlists are sharded across ranks
in contiguous blocks and the per-metric sums and counts are all-reduced. Sums are kept in fixed
point (2^-32 resolution), so the reduction is exact and N processes write the very numbers one
process writes.

    python -m trainer.evaluate --graph DIR --run RUN_DIR [--split val|test]
        [--methods gnn,popularity,itemknn,als] [--k 500]
"""

from __future__ import annotations

import trainer.hugepages  # noqa: F401  (first, before torch: it asks torch for huge pages)

# isort: split

import sys
import time
from datetime import timedelta

import numpy as np
import torch

from etl import contract
from trainer import cli, dist, process
from trainer.evaluation.baselines import ALSParams
from trainer.evaluation.metrics import K
from trainer.evaluation.protocol import (
    category_order,
    format_table,
    held_out,
    report,
    score_sums,
    shard,
    visible_catalogue,
)
from trainer.evaluation.title import TitleModel
from trainer.io import embeddings, ranker, run_dir, storage
from trainer.io.catalogue import load_catalogue
from trainer.methods import METHODS, SECOND_STAGE, build_scorers, source_of

# Under torchrun the other ranks wait for rank 0's ALS fit (18.5 min at 1M playlists on 2 cores,
# bench/RESULTS.md): longer than torch's default wait for a collective on some machines.
WAIT_FOR_RANK_0 = timedelta(hours=4)


def evaluate(
    graph_dir: str,
    run: str,
    split: str = contract.SPLIT_VAL,
    methods: list[str] | None = None,
    k: int = K,
    batch_size: int = 256,
    chunk_size: int = 1 << 17,
    beta: float = 0.0,
    gamma: float = 1.0,
    gnn_query: str = "playlist",
    catalogue_scope: str = "visible",
    als: ALSParams = ALSParams(),
    fold_in_steps: int = 0,
    device: str = "auto",
    max_playlists: int = 0,
    neighbours: int = 0,
) -> dict | None:
    """Evaluate and write ``RUN_DIR/eval_<split>.json`` (rank 0); returns the results on rank 0."""
    if not 1 <= k <= K:
        raise ValueError(f"--k must be in 1..{K}, got {k}")
    started = time.perf_counter()
    env = dist.setup(device, timeout=WAIT_FOR_RANK_0)
    process.configure_logging(env.is_main)
    rank_, world, device = env.rank, env.world_size, env.device
    run = str(run)
    if rank_ == 0:  # before hours of ranking, not after
        storage.check_writable(storage.join(run, f"eval_{split}.json"), "--run")
    graph = load_catalogue(graph_dir)
    left_out = {}
    if methods is None:
        # The second stage is optional (python -m trainer.rerank builds it): ranked when the run has one.
        methods = [
            m
            for m in METHODS
            if (m != "gnn" or embeddings.exists(run)) and (m not in SECOND_STAGE or ranker.exists(run))
        ]
        if "gnn" not in methods:  # said on the console and in the JSON: a missing row is no answer
            left_out["gnn"] = (
                f"no embeddings in {run}/{run_dir.EMBEDDINGS}/ (track.parquet); export them "
                f"with python -m trainer.embed --graph {graph_dir} --run {run}"
            )
    held = held_out(graph, split)
    if len(held) == 0:
        raise ValueError(
            f"{graph_dir}: no {split} playlist with hidden tracks; nothing to evaluate"
            f" (manifest split: {graph.manifest.get('split')})"
        )
    total, without_hidden = len(held), held.without_hidden
    held = held.evenly(max_playlists)
    if catalogue_scope not in ("visible", "all"):
        raise ValueError(f"--catalogue must be visible or all, got {catalogue_scope!r}")
    allowed = visible_catalogue(graph) if catalogue_scope == "visible" else None
    scorers, fallback = build_scorers(
        graph, run, methods, device, beta, gamma, gnn_query, als, fold_in_steps, neighbours, allowed
    )
    groups = category_order(held.categories)
    lo, hi = shard(len(held), rank_, world)
    ranking = time.perf_counter()
    sums, counts = score_sums(
        held.slice(lo, hi),
        scorers,
        fallback,
        groups,
        graph.track_artist,
        k,
        batch_size,
        chunk_size,
        device,
        progress=rank_ == 0,
        allowed=allowed,
    )
    if world > 1:
        packed = torch.from_numpy(np.concatenate([sums.ravel(), counts])).to(device)
        torch.distributed.all_reduce(packed)
        packed = packed.cpu().numpy()
        sums, counts = packed[: sums.size].reshape(sums.shape), packed[sums.size :]
    counts[0] = len(held)
    if rank_ != 0:
        return None
    # Load and fit, then ranking (every method, this rank's playlists): where an evaluation's time goes.
    seconds = {"load_and_fit": round(ranking - started, 3), "ranking": round(time.perf_counter() - ranking, 3)}
    results = {
        "split": split,
        "num_playlists": len(held),
        "seconds": seconds,
        **({"peak_gpu_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)} if device.type == "cuda" else {}),
        "playlists_in_split": total,  # more than num_playlists under --max-playlists
        "num_tracks_ranked": graph.num_tracks if allowed is None else int(allowed.sum()),
        "catalogue": catalogue_scope,
        "k": k,
        "graph": str(graph_dir),
        "world_size": world,
        "without_hidden_tracks": without_hidden,
        "itemknn": {"beta": beta, "gamma": gamma, "neighbours": neighbours},
        "als": als.as_dict(),
        "gnn_query": gnn_query,
        "fold_in_steps": fold_in_steps,
        "title_only": f"every method: the title model {TitleModel.SOURCE!r} (trainer.evaluation.title)",
        "methods": report(sums, counts, list(scorers), groups),
        "methods_left_out": left_out,
        "gnn_checkpoint": source_of(scorers),  # the model the gnn rows belong to
    }
    out = storage.join(run, f"eval_{split}.json")
    storage.atomic_write_json(out, results)
    print(format_table(results))
    for method, why in left_out.items():
        cli.note(f"{method} left out: {why}")
    print(f"wrote {out}")
    return results


def main(argv: list[str] | None = None) -> int:
    p = cli.parser("trainer.evaluate", __doc__)
    cli.add_graph(p)
    cli.add_run(p, "run dir (embeddings in RUN/embeddings/)")
    p.add_argument("--split", default=contract.SPLIT_VAL, choices=[contract.SPLIT_VAL, contract.SPLIT_TEST])
    p.add_argument(
        "--methods",
        help=f"comma-separated subset of {','.join(METHODS)} (default: all; gnn only when the run has embeddings)",
    )
    p.add_argument("--k", type=cli.count(1), default=K, help="list length scored (default 500)")
    p.add_argument("--batch-size", type=cli.count(1), default=256, help="playlists scored at once")
    p.add_argument("--chunk-size", type=cli.count(1), default=1 << 17, help="tracks scored at once")
    p.add_argument(
        "--itemknn-beta",
        type=cli.number(0),
        default=0.0,
        help="item-kNN: divide a candidate's score by its training frequency^beta"
        " (default 0: best on the val splits of the real dev set and 10k synthetic playlists,"
        " see bench/RESULTS.md)",
    )
    p.add_argument(
        "--itemknn-gamma",
        type=cli.number(0),
        default=1.0,
        help="item-kNN: raise each training playlist's seed overlap to this power (1 = plain co-occurrence)",
    )
    p.add_argument(
        "--itemknn-neighbours",
        type=cli.count(0),
        default=0,
        help="item-kNN: only the training playlists with the largest seed overlap, this many"
        " (0: every playlist sharing a seed)",
    )
    d = ALSParams()
    p.add_argument("--als-factors", type=cli.count(1), default=d.factors, help="ALS: latent dimension")
    p.add_argument("--als-regularization", type=cli.number(0), default=d.regularization, help="ALS: L2 weight lambda")
    p.add_argument(
        "--als-alpha", type=cli.number(0), default=d.alpha, help="ALS: confidence of a training edge is 1 + alpha"
    )
    p.add_argument("--als-iterations", type=cli.count(1), default=d.iterations, help="ALS: sweeps")
    p.add_argument("--als-seed", type=int, default=d.random_state, help="ALS: random_state")
    p.add_argument(
        "--als-threads", type=cli.count(0), default=d.num_threads, help="ALS: fitting threads (0 = every core)"
    )
    p.add_argument(
        "--gnn-query",
        default="playlist",
        choices=["playlist", "seeds"],
        help="gnn: score with the held-out playlist's own embedding, or with a query"
        " built from its seed tracks only, as for playlists outside the graph (recommend"
        " --tracks, submit)",
    )
    p.add_argument(
        "--fold-in-steps",
        type=cli.count(0),
        default=0,
        help="gnn, queries built from seeds: fit the playlist's input projection to its"
        " seeds for this many steps, as a graph playlist's ID row was (0: the average"
        " playlist's); costs steps x catalogue x width per playlist",
    )
    p.add_argument(
        "--catalogue",
        default="visible",
        choices=["visible", "all"],
        help="rank tracks with a visible edge (default), or every track of the graph"
        " (including those known only from hidden edges)",
    )
    cli.add_device(p)
    p.add_argument(
        "--max-playlists",
        type=cli.count(0),
        default=0,
        help="score this many of the split's playlists, evenly spaced (0: all); for timing runs",
    )
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None

    def body():
        try:
            als = ALSParams(
                args.als_factors,
                args.als_regularization,
                args.als_alpha,
                args.als_iterations,
                args.als_seed,
                args.als_threads,
            )
            evaluate(
                args.graph,
                args.run,
                args.split,
                methods,
                args.k,
                args.batch_size,
                args.chunk_size,
                args.itemknn_beta,
                args.itemknn_gamma,
                args.gnn_query,
                args.catalogue,
                als,
                args.fold_in_steps,
                args.device,
                args.max_playlists,
                args.itemknn_neighbours,
            )
        finally:
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()  # what dist.cleanup does, without an env

    return cli.run(body)


if __name__ == "__main__":
    sys.exit(main())
