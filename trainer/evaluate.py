"""Full-catalogue evaluation of a run (and the baselines) on a held-out split, with the RecSys 2018 metrics.

For every playlist of the split (``nodes/playlist.split``), rank the whole track catalogue
(its seed tracks masked), keep the top K (500, as the challenge) and score them against its
hidden tracks; report per seed category and overall.

The catalogue ranked is, by default, every track with at least one visible (train or seed)
edge: a track that the graph holds only because of hidden edges is known only through the
ground truth (a model that learnt "never seen, yet in the catalogue" would be reading the
answers), and the challenge likewise ranked the tracks of the training data.
``--catalogue all`` ranks every track of ``nodes/track``. Every method goes through the same
``trainer.ranking.scoring.top_k``; playlists without seeds go to the title fallback for every method.

Runs as ``python -m trainer.evaluate`` or under ``torchrun``: playlists are sharded across ranks
in contiguous blocks and the per-metric sums and counts are all-reduced. Sums are kept in fixed
point (2^-32 resolution), so the reduction is exact and N processes write the very numbers one
process writes.

    python -m trainer.evaluate --graph DIR --run RUN_DIR [--split val|test]
        [--methods gnn,popularity,itemknn,als] [--k 500]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from etl import contract
from trainer import dist
from trainer.io import catalogue
from trainer.ranking.baselines import ALS, ALSParams, ItemKNN, Popularity, TitlePopularity, popularity_counts
from trainer.ranking.metrics import METRICS, K, batch_metrics, summarise
from trainer.ranking.scoring import EmbeddingScorer, Queries, Scorer, rank

METHODS = ("gnn", "popularity", "itemknn", "als")
FIXED_POINT = float(2**32)


@dataclass
class HeldOut:
    """The held-out playlists of one split: queries (seeds, titles), ground truth, categories."""

    playlist_ids: np.ndarray
    categories: np.ndarray  # object [N]
    queries: Queries
    truth_indptr: np.ndarray
    truth_tracks: np.ndarray
    without_hidden: int  # playlists of the split with no hidden edge (not scored)

    def __len__(self) -> int:
        return len(self.playlist_ids)

    def slice(self, lo: int, hi: int) -> "HeldOut":
        rows = np.arange(lo, hi)
        indptr = self.truth_indptr[lo:hi + 1]
        return HeldOut(
            self.playlist_ids[lo:hi], self.categories[lo:hi], self.queries.take(rows),
            indptr - indptr[0], self.truth_tracks[indptr[0]:indptr[-1]], 0,
        )


def held_out(graph: catalogue.Catalogue, split: str) -> HeldOut:
    """Seeds (role=seed) and ground truth (role=hidden, seeds excepted) of every playlist of
    ``split``; playlists left without ground truth are counted, not scored."""
    if split not in (contract.SPLIT_VAL, contract.SPLIT_TEST):
        raise ValueError(f"--split must be val or test, got {split!r}")
    in_split = np.flatnonzero(graph.playlist_split == split)
    seeds = graph.edges((contract.ROLE_SEED,))[in_split]
    # A track both seed and hidden (a playlist repeating it) cannot be recommended, since seeds
    # are excluded: it is not ground truth.
    truth = graph.edges((contract.ROLE_HIDDEN,))[in_split]
    truth = (truth - truth.multiply(seeds)).tocsr()
    truth.eliminate_zeros()
    has_truth = np.diff(truth.indptr) > 0
    keep = np.flatnonzero(has_truth)
    ids = in_split[keep]
    seeds, truth = seeds[keep], truth[keep]
    queries = Queries(
        seeds.indptr.astype(np.int64), seeds.indices.astype(np.int64),
        [graph.playlist_title[i] for i in ids], ids.astype(np.int64),
    )
    return HeldOut(
        ids, graph.playlist_category[ids], queries, truth.indptr.astype(np.int64),
        truth.indices.astype(np.int64), int((~has_truth).sum()),
    )


def build_scorers(
    graph: catalogue.Catalogue, run: Path, methods: list[str], chunk_size: int,
    device: torch.device, beta: float = 0.0, gamma: float = 1.0, gnn_query: str = "playlist",
    als: ALSParams = ALSParams(), fold_in_steps: int = 0,
) -> tuple[dict[str, Scorer], Scorer]:
    """The requested methods' scorers and the title fallback they share."""
    if gnn_query not in ("playlist", "seeds"):
        raise ValueError(f"--gnn-query must be playlist or seeds, got {gnn_query!r}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    visible = graph.edges(contract.VISIBLE_ROLES)
    popularity = popularity_counts(visible)
    train = graph.edges((contract.ROLE_TRAIN,), splits=(contract.SPLIT_TRAIN,))
    scorers: dict[str, Scorer] = {}
    for m in methods:
        if m == "gnn":
            if not catalogue.has_embeddings(run):
                raise FileNotFoundError(
                    f"--methods gnn: no embeddings in {run}/{catalogue.EMBEDDINGS}/ (track.parquet);"
                    f" export them with python -m trainer.embed, or leave gnn out of --methods"
                )
            catalogue.check_run_matches_graph(run, graph)
            scorers[m] = EmbeddingScorer(
                catalogue.load_track_embeddings(run, graph),
                catalogue.load_playlist_embeddings(run, graph) if gnn_query == "playlist" else None,
                device, catalogue.load_seed_query(run, graph), fold_in_steps=fold_in_steps,
            )
        elif m == "popularity":
            scorers[m] = Popularity(popularity)
        elif m == "als":
            scorers[m] = ALS(train, popularity, als)
        else:
            scorers[m] = ItemKNN(train, popularity, chunk_size, beta=beta, gamma=gamma)
    return scorers, TitlePopularity(train, graph.playlist_title, popularity)


def category_order(categories: np.ndarray) -> list[str]:
    present = {c for c in categories if c is not None}
    known = [c.name for c in contract.SEED_CATEGORIES if c.name in present]
    return known + sorted(present - set(known))


def shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous block [lo, hi) of n items for ``rank`` of ``world`` (sizes differ by ≤ 1)."""
    return n * rank // world, n * (rank + 1) // world


def playlist_metrics(
    held: HeldOut, scorer: Scorer, fallback: Scorer, track_artist: np.ndarray, k: int,
    batch_size: int, chunk_size: int, device: torch.device, allowed: np.ndarray | None = None,
):
    """``(lo, hi, values)`` per batch of playlists: their per-playlist metrics (``METRICS`` ->
    array [hi - lo]) for one scorer, with the title fallback for playlists without seeds."""
    for lo in range(0, len(held), batch_size):
        hi = min(lo + batch_size, len(held))
        part = held.slice(lo, hi)
        ranked = rank(scorer, fallback, part.queries, len(track_artist), k, chunk_size, device, allowed)
        yield lo, hi, batch_metrics(ranked, part.truth_indptr, part.truth_tracks, track_artist)


def score_sums(
    held: HeldOut, scorers: dict[str, Scorer], fallback: Scorer, groups: list[str],
    track_artist: np.ndarray, k: int, batch_size: int, chunk_size: int,
    device: torch.device, progress: bool = False, allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point metric sums int64 [methods, 1 + groups, metrics] and counts [1 + groups].

    Group 0 is overall. Sums of shards add up exactly to the sums of the whole.
    """
    group_of = {g: i + 1 for i, g in enumerate(groups)}
    group = np.array([group_of.get(c, 0) for c in held.categories], dtype=np.int64)
    sums = np.zeros((len(scorers), 1 + len(groups), len(METRICS)), dtype=np.int64)
    counts = np.bincount(group, minlength=1 + len(groups)).astype(np.int64)
    counts[0] = len(held)
    bar = tqdm(total=len(scorers) * -(-len(held) // batch_size), desc="evaluate", disable=not progress)
    for mi, scorer in enumerate(scorers.values()):
        for lo, hi, values in playlist_metrics(held, scorer, fallback, track_artist, k, batch_size,
                                               chunk_size, device, allowed):
            fixed = np.stack([np.rint(values[m] * FIXED_POINT).astype(np.int64) for m in METRICS], 1)
            sums[mi, 0] += fixed.sum(axis=0)
            np.add.at(sums[mi], group[lo:hi], fixed)
            bar.update(1)
    bar.close()
    return sums, counts


def report(sums: np.ndarray, counts: np.ndarray, methods: list[str], groups: list[str]) -> dict:
    """The ``methods`` block of eval_<split>.json from reduced sums and counts."""
    out = {}
    for mi, m in enumerate(methods):
        means = [summarise(dict(zip(METRICS, sums[mi, g] / FIXED_POINT)), int(counts[g]))
                 for g in range(1 + len(groups))]
        out[m] = {"overall": means[0], "by_category": dict(zip(groups, means[1:]))}
    return out


def format_table(results: dict) -> str:
    """Methods × metrics, overall and per category, as aligned text."""
    head = f"{'method':<11}{'group':<12}{'n':>6}" + "".join(f"{m:>18}" for m in METRICS)
    lines = [head, "-" * len(head)]
    for method, block in results["methods"].items():
        for group, values in [("overall", block["overall"]), *block["by_category"].items()]:
            lines.append(
                f"{method:<11}{group:<12}{values['num_playlists']:>6}"
                + "".join(f"{values[m]:>18.4f}" for m in METRICS)
            )
    return "\n".join(lines)


def evaluate(
    graph_dir: str | Path, run_dir: str | Path, split: str = contract.SPLIT_VAL,
    methods: list[str] | None = None, k: int = K, batch_size: int = 256,
    chunk_size: int = 1 << 17, beta: float = 0.0, gamma: float = 1.0, gnn_query: str = "playlist",
    catalogue_scope: str = "visible", als: ALSParams = ALSParams(), fold_in_steps: int = 0,
) -> dict | None:
    """Evaluate and write ``RUN_DIR/eval_<split>.json`` (rank 0); returns the results on rank 0."""
    if not 1 <= k <= K:
        raise ValueError(f"--k must be in 1..{K}, got {k}")
    env = dist.setup()
    rank_, world, device = env.rank, env.world_size, env.device
    run = Path(run_dir)
    graph = catalogue.load_catalogue(graph_dir)
    left_out = {}
    if methods is None:
        methods = [m for m in METHODS if m != "gnn" or catalogue.has_embeddings(run)]
        if "gnn" not in methods:  # said on the console and in the JSON: a missing row is no answer
            left_out["gnn"] = (f"no embeddings in {run}/{catalogue.EMBEDDINGS}/ (track.parquet); export them "
                               f"with python -m trainer.embed --graph {graph_dir} --run {run}")
    held = held_out(graph, split)
    if len(held) == 0:
        raise ValueError(
            f"{graph_dir}: no {split} playlist with hidden tracks; nothing to evaluate"
            f" (manifest split: {graph.manifest.get('split')})"
        )
    scorers, fallback = build_scorers(graph, run, methods, chunk_size, device, beta, gamma,
                                      gnn_query, als, fold_in_steps)
    if catalogue_scope not in ("visible", "all"):
        raise ValueError(f"--catalogue must be visible or all, got {catalogue_scope!r}")
    allowed = None
    if catalogue_scope == "visible":
        allowed = graph.edges(contract.VISIBLE_ROLES).getnnz(axis=0) > 0
    groups = category_order(held.categories)
    lo, hi = shard(len(held), rank_, world)
    sums, counts = score_sums(
        held.slice(lo, hi), scorers, fallback, groups, graph.track_artist, k, batch_size,
        chunk_size, device, progress=rank_ == 0, allowed=allowed,
    )
    if world > 1:
        packed = torch.from_numpy(np.concatenate([sums.ravel(), counts])).to(device)
        torch.distributed.all_reduce(packed)
        packed = packed.cpu().numpy()
        sums, counts = packed[:sums.size].reshape(sums.shape), packed[sums.size:]
    counts[0] = len(held)
    if rank_ != 0:
        return None
    results = {
        "split": split,
        "num_playlists": len(held),
        "num_tracks_ranked": graph.num_tracks if allowed is None else int(allowed.sum()),
        "catalogue": catalogue_scope,
        "k": k,
        "graph": str(graph_dir),
        "world_size": world,
        "without_hidden_tracks": held.without_hidden,
        "itemknn": {"beta": beta, "gamma": gamma},
        "als": als.as_dict(),
        "gnn_query": gnn_query,
        "fold_in_steps": fold_in_steps,
        "title_only": "every method: popularity among training playlists with the same"
                      " normalised title, then global popularity",
        "methods": report(sums, counts, list(scorers), groups),
        "methods_left_out": left_out,
    }
    run.mkdir(parents=True, exist_ok=True)
    out = run / f"eval_{split}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, out)
    print(format_table(results))
    for method, why in left_out.items():
        print(f"note: {method} left out: {why}")
    print(f"wrote {out}")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--graph", required=True, help="graph dir written by etl.job")
    p.add_argument("--run", required=True, help="run dir (embeddings in RUN/embeddings/)")
    p.add_argument("--split", default=contract.SPLIT_VAL, choices=[contract.SPLIT_VAL, contract.SPLIT_TEST])
    p.add_argument("--methods", help=f"comma-separated subset of {','.join(METHODS)}"
                   " (default: all; gnn only when the run has embeddings)")
    p.add_argument("--k", type=int, default=K, help="list length scored (default 500)")
    p.add_argument("--batch-size", type=int, default=256, help="playlists scored at once")
    p.add_argument("--chunk-size", type=int, default=1 << 17, help="tracks scored at once")
    p.add_argument("--itemknn-beta", type=float, default=0.0,
                   help="item-kNN: divide a candidate's score by its training frequency^beta"
                   " (default 0: best on the 10k synthetic val split, see bench/RESULTS.md)")
    p.add_argument("--itemknn-gamma", type=float, default=1.0,
                   help="item-kNN: raise each training playlist's seed overlap to this power"
                   " (1 = plain co-occurrence)")
    d = ALSParams()
    p.add_argument("--als-factors", type=int, default=d.factors, help="ALS: latent dimension")
    p.add_argument("--als-regularization", type=float, default=d.regularization,
                   help="ALS: L2 weight lambda")
    p.add_argument("--als-alpha", type=float, default=d.alpha,
                   help="ALS: confidence of a training edge is 1 + alpha")
    p.add_argument("--als-iterations", type=int, default=d.iterations, help="ALS: sweeps")
    p.add_argument("--als-seed", type=int, default=d.random_state, help="ALS: random_state")
    p.add_argument("--als-threads", type=int, default=d.num_threads,
                   help="ALS: fitting threads (0 = every core)")
    p.add_argument("--gnn-query", default="playlist", choices=["playlist", "seeds"],
                   help="gnn: score with the held-out playlist's own embedding, or with a query"
                   " built from its seed tracks only, as for playlists outside the graph (recommend"
                   " --tracks, submit)")
    p.add_argument("--fold-in-steps", type=int, default=0,
                   help="gnn, queries built from seeds: fit the playlist's input projection to its"
                   " seeds for this many steps, as a graph playlist's ID row was (0: the average"
                   " playlist's); costs steps x catalogue x width per playlist")
    p.add_argument("--catalogue", default="visible", choices=["visible", "all"],
                   help="rank tracks with a visible edge (default), or every track of the graph"
                   " (including those known only from hidden edges)")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    try:
        als = ALSParams(args.als_factors, args.als_regularization, args.als_alpha,
                        args.als_iterations, args.als_seed, args.als_threads)
        evaluate(args.graph, args.run, args.split, methods, args.k, args.batch_size,
                 args.chunk_size, args.itemknn_beta, args.itemknn_gamma, args.gnn_query,
                 args.catalogue, als, args.fold_in_steps)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # what dist.cleanup does, without an env
    return 0


if __name__ == "__main__":
    sys.exit(main())
