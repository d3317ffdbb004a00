"""Train the link predictor: ``python -m trainer.train --graph DIR --out RUN_DIR [--config F.json]
[--key=value ...] [--resume]``, or the same under ``torchrun`` (DDP: gloo on CPU, nccl on GPU).

Per epoch: pick the epoch's supervision edges (``trainer/shards.py``), drop them from the
message-passing graph, give each rank an equal shard, train, validate on the hidden edges of
validation playlists, and (rank 0) append to ``metrics.jsonl``, redraw ``curves.png`` and write
``checkpoints/last.pt``. Randomness is re-derived from ``(seed, epoch, rank)`` at every epoch
start, so a resumed run replays exactly what an uninterrupted one would have done.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import os
import posixpath
import random
import resource
import sys
import time
from dataclasses import dataclass

import fsspec
import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch_geometric.loader import LinkNeighborLoader
from torch_geometric.sampler import NegativeSampling
from tqdm import tqdm

from etl import contract as C
from trainer import checkpoint, dist
from trainer.config import ConfigError, TrainConfig, parse_overrides, resolve
from trainer.graph import PLAYLIST_TRACK, Graph, load_graph
from trainer.model import build_model, hop_counts, score
from trainer.plots import learning_curves
from trainer.shards import rank_shard, supervision_mask
from trainer.validation import val_edges_for_rank, validate

# Keys that may change between a run and its resumption; anything else would change the result.
RESUMABLE_CHANGES = {"epochs", "num_workers", "checkpoint_every", "device", "malloc_arenas"}
M_ARENA_MAX = -8  # glibc's <malloc.h>


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m trainer.train", description=__doc__.split("\n\n")[0],
        epilog=f"config keys (--key=value): {', '.join(f'{k}={v}' for k, v in TrainConfig().to_dict().items())}")
    parser.add_argument("--graph", required=True, help="graph dir written by etl.job (path or fsspec URL)")
    parser.add_argument("--out", required=True, help="run dir for checkpoints, metrics, curves (path or fsspec URL)")
    parser.add_argument("--config", help="JSON file of config keys")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    args, rest = parser.parse_known_args(argv)
    return args, parse_overrides(rest)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def cap_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's heap arenas (``mallopt(M_ARENA_MAX)``); whether the cap was set.

    glibc gives each allocating thread an arena of its own, up to 8 per core. The step's large
    transient buffers (sampled batches, gloo's gathered sparse gradients) are then freed into
    several heaps that each keep their high-water mark. At 100k playlists (bench/RESULTS.md)
    this cap lowers the peak from 1,943-1,972 to 1,878-1,886 MiB for one process and from
    2,220-2,260 to 2,063-2,083 MiB per rank for two. Set here, it is late for the heap that
    imports already made; ``MALLOC_ARENA_MAX=1`` in the environment (launch/torchrun.sh sets
    it) applies from the first malloc: 1,934-1,999 MiB per rank. An environment setting wins;
    without glibc this does nothing.
    """
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


def epoch_seed(config: TrainConfig, epoch: int, rank: int) -> int:
    # Distinct per rank so ranks draw different negatives and neighbours.
    return (config.seed * 1_000_003 + epoch * 7919 + rank) % 2**63


def loader_workers(config: TrainConfig, device: torch.device) -> int:
    """``num_workers``, with -1 resolved from the cores this rank has (its share of the node's).

    On CPU: one worker (sampling overlaps the step) when the rank has a core of its own beside
    it, else none (a worker would only steal the step's core). On CUDA: every spare core, at
    most 16, since sampling is then the step: torch-sparse takes a core ~0.6 s per default batch
    at 100k playlists while an H200 computes the step in ~0.04 s (8 workers: loader still 80%
    of the step, bench/RESULTS.md)."""
    if config.num_workers >= 0:
        return config.num_workers
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cores = len(os.sched_getaffinity(0)) // max(1, ranks_here)
    if device.type == "cuda":
        return max(1, min(cores - 1, 16))
    return 1 if cores >= 2 else 0


def epoch_loader(graph: Graph, config: TrainConfig, env: dist.DistEnv, epoch: int):
    """This rank's loader for ``epoch``: its shard of the epoch's supervision edges, sampled on
    the visible graph minus all of the epoch's supervision edges."""
    sup = supervision_mask(graph.train_edges, config.supervision_ratio, config.seed, epoch)
    message_passing = torch.cat([graph.train_edges[:, ~sup], graph.seed_edges], dim=1)
    data = graph.hetero_data(message_passing, sort_by_destination=True)
    supervision = graph.train_edges[:, sup].long()
    edge_label_index = supervision[:, rank_shard(supervision.size(1), env.rank, env.world_size,
                                                 config.seed, epoch)]
    workers = loader_workers(config, env.device)
    weight = None
    if config.negative_power:  # popularity-biased negatives, on this epoch's visible degrees
        degree = torch.bincount(message_passing[1], minlength=graph.num_nodes["track"]).double()
        weight = (degree + 1) ** config.negative_power
    loader = LinkNeighborLoader(
        data, num_neighbors=list(config.fanout), edge_label_index=(PLAYLIST_TRACK, edge_label_index),
        neg_sampling=NegativeSampling("triplet", amount=config.negatives, dst_weight=weight),
        batch_size=config.batch_size, is_sorted=True,
        shuffle=False,  # the shard is already a fresh (seed, epoch) permutation
        num_workers=workers, persistent_workers=False, prefetch_factor=4 if workers else None)
    return loader


def candidate_log_frequency(graph: Graph, config: TrainConfig) -> torch.Tensor:
    """Per track, log of how often it is expected among a batch's softmax candidates: as a
    positive (drawn like the train edges, by degree) or as a sampled negative."""
    degree = torch.bincount(graph.train_edges[1], minlength=graph.num_nodes["track"]).double()
    weight = (degree + 1) ** config.negative_power
    expected = (config.batch_size * degree / degree.sum().clamp(min=1)
                + config.batch_size * config.negatives * weight / weight.sum())
    return expected.log().float()


def batch_loss(model, batch, config: TrainConfig, amp: bool, log_frequency: torch.Tensor | None = None):
    """(mean loss, number of loss terms, number of positive edges) of one batch.

    Negatives are triplets (the positive's playlist with ``negatives`` random tracks), for BCE
    too: PyG's binary mode also draws a random playlist, which lets a model score playlists by
    degree instead of ranking tracks for a playlist, the task evaluation measures.
    """
    seeds = {"playlist": batch["playlist"].src_index,
             "track": torch.cat([batch["track"].dst_pos_index, batch["track"].dst_neg_index.flatten()])}
    within = hop_counts(seeds, batch.edge_index_dict, batch.num_nodes_dict, config.layers)
    with torch.autocast(batch["playlist"].x.device.type, dtype=torch.bfloat16, enabled=amp):
        h = model(batch.x_dict, batch.edge_index_dict, batch.n_id_dict, within)
    hp, ht = h["playlist"].float(), h["track"].float()
    src = hp[batch["playlist"].src_index]
    if config.loss == "softmax":  # scores its own candidates: no per-triplet scores needed
        loss = sampled_softmax(src, ht, batch["playlist"].src_index, batch["track"].dst_pos_index,
                               batch["track"].dst_neg_index, log_frequency[batch["track"].n_id])
        return loss, src.size(0), src.size(0)
    pos = (src * ht[batch["track"].dst_pos_index]).sum(-1)
    neg = (src.unsqueeze(1) * ht[batch["track"].dst_neg_index]).sum(-1)
    if config.loss == "bce":
        logits = torch.cat([pos, neg.flatten()])
        labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg.flatten())])
        return F.binary_cross_entropy_with_logits(logits, labels), logits.numel(), pos.numel()
    return -F.logsigmoid(pos.unsqueeze(1) - neg).mean(), neg.numel(), pos.numel()


def sampled_softmax(src: torch.Tensor, h_track: torch.Tensor, playlist: torch.Tensor,
                    positive: torch.Tensor, negative: torch.Tensor,
                    log_frequency: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each positive against every track of the batch (its positives and
    sampled negatives: mixed negative sampling), rather than against its own few negatives.

    The evaluation ranks the whole catalogue; BPR on uniform negatives mostly compares with rare
    tracks a playlist was never close to (its loss falls to ~0.04 and stops teaching), while the
    other positives of a batch are the popular, plausible tracks its top ranks compete with.
    Popular tracks are candidates more often, so each logit is corrected by the log of its
    candidate frequency (sampling-bias correction, Yi et al. 2019); without it the scores learn
    to demote popular tracks. A batch's other positives of the same playlist are true links,
    so they are masked out of its row.

    ``src``: (B, d) playlist readouts of the B positives; ``playlist``, ``positive``: (B,) local
    playlist and track indices; ``negative``: (B, K) local track indices; ``log_frequency``:
    per local track, :func:`candidate_log_frequency`.
    """
    candidates = torch.unique(torch.cat([positive, negative.flatten()]))
    target = torch.searchsorted(candidates, positive)
    logits = src @ h_track[candidates].T - log_frequency[candidates]
    rows, others = (playlist.unsqueeze(1) == playlist.unsqueeze(0)).nonzero(as_tuple=True)
    other_positive = torch.zeros_like(logits, dtype=torch.bool)
    other_positive[rows, target[others]] = True
    other_positive[torch.arange(len(target), device=target.device), target] = False
    return F.cross_entropy(logits.masked_fill(other_positive, float("-inf")), target)


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per embedding row, the mean of the row's squared gradients
    (FBGEMM's row-wise Adagrad for recommender embedding tables): 4 bytes of state per row where
    Adam keeps two rows of floats (at 100k playlists, 232 MB of SparseAdam state become 3.6 MB).
    Sparse or dense gradients; a row without gradient is left as it is."""

    def __init__(self, params, lr: float, eps: float = 1e-10):
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros(p.size(0), dtype=torch.float32, device=p.device)
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                else:
                    rows = grad.abs().sum(1).nonzero().squeeze(1)
                    values = grad[rows]
                state["sum"].index_add_(0, rows, values.float().pow(2).mean(1))
                scale = state["sum"][rows].sqrt_().add_(group["eps"]).reciprocal_()
                p.index_add_(0, rows, (values * scale.unsqueeze(1)).to(p.dtype), alpha=-group["lr"])


class Optimizer:
    """AdamW for the dense weights; the ID embeddings, without weight decay, by
    :class:`RowWiseAdagrad` (the default: at 100k playlists it took 2 CPU ranks from 1.94-1.97
    to 1.71-1.74 GiB each, at the same g10k quality as Adam, bench/RESULTS.md), or with
    ``embedding_optimizer=adam`` by SparseAdam when their gradients are sparse (on CPU: state
    and update touch only a batch's rows; dense gradients for 900k rows cost ~300 MB of peak
    memory per step at 100k playlists) and by AdamW when dense (CUDA)."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, sparse: bool):
        embeddings = [p for n, p in model.named_parameters() if n.startswith("embedding.")]
        dense = [p for n, p in model.named_parameters() if not n.startswith("embedding.")]
        groups = [{"params": dense, "weight_decay": config.weight_decay}]
        embedding_lr = config.embedding_lr or config.lr
        self.parts = {}
        if embeddings and config.embedding_optimizer == "rowwise_adagrad":
            self.parts["rowwise"] = RowWiseAdagrad(embeddings, lr=embedding_lr)
        elif sparse and embeddings:
            self.parts["sparse"] = torch.optim.SparseAdam(embeddings, lr=embedding_lr)
        elif embeddings:
            groups.append({"params": embeddings, "weight_decay": 0.0, "lr": embedding_lr})
        self.parts["dense"] = torch.optim.AdamW(groups, lr=config.lr)

    def zero_grad(self) -> None:
        for opt in self.parts.values():
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self.parts.values():
            opt.step()

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.parts.items()}

    def load_state_dict(self, state: dict, where: str) -> None:
        if set(state) != set(self.parts):
            raise ConfigError(f"--resume: {where} holds optimizer state for {sorted(state)}, this run "
                              f"needs {sorted(self.parts)}: it was written on another device type "
                              "(with embedding_optimizer=adam, ID embeddings are sparse on CPU, dense on "
                              "CUDA) or by an older trainer; "
                              "resume on the device type the run started on, or start a new run")
        for name, opt in self.parts.items():
            opt.load_state_dict(state[name])


class RunDir:
    """Rank 0's writer for everything under RUN_DIR."""

    def __init__(self, path: str):
        self.path = path.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(self.path)

    def join(self, *parts) -> str:
        return posixpath.join(self.path, *parts)

    def write_json(self, name: str, obj) -> None:
        checkpoint.atomic_write_bytes(self.join(name), (json.dumps(obj, indent=2) + "\n").encode())

    def read_json(self, name: str):
        p = posixpath.join(self.root, name)
        if not self.fs.exists(p):
            return None
        with self.fs.open(p, "r") as f:
            return json.load(f)

    def read_metrics(self) -> list[dict]:
        p = posixpath.join(self.root, "metrics.jsonl")
        if not self.fs.exists(p):
            return []
        with self.fs.open(p, "r") as f:
            return [json.loads(line) for line in f if line.strip()]

    def write_metrics(self, records: list[dict]) -> None:
        text = "".join(json.dumps(r) + "\n" for r in records)
        checkpoint.atomic_write_bytes(self.join("metrics.jsonl"), text.encode())


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def graph_record(graph: Graph) -> dict:
    m = graph.manifest
    return {"graph": graph.path, "schema_version": m["schema_version"], "created_at": m["created_at"],
            "counts": m["counts"]}


def check_resumable(saved: dict, config: TrainConfig, run: RunDir, graph: Graph) -> None:
    current = config.to_dict()
    differ = sorted(k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k])
    if differ:
        raise ConfigError(
            f"--resume: config differs from the checkpoint in {differ} "
            f"({', '.join(f'{k}: {saved.get(k)!r} -> {current[k]!r}' for k in differ)}); "
            f"only {sorted(RESUMABLE_CHANGES)} may change")
    recorded = run.read_json("graph.json")
    now = graph_record(graph)
    if recorded and (recorded["created_at"], recorded["counts"]) != (now["created_at"], now["counts"]):
        raise ConfigError(f"--resume: {run.path} was trained on graph {recorded['graph']} "
                          f"(created_at {recorded['created_at']}), not {graph.path} (created_at {now['created_at']})")


class SamplerMissing(RuntimeError):
    """Neither neighbour-sampling backend of PyG is installed."""


def require_sampler() -> None:
    """Fail before loading a graph when LinkNeighborLoader could not sample."""
    import torch_geometric.typing as pyg_typing

    if not (pyg_typing.WITH_TORCH_SPARSE or pyg_typing.WITH_PYG_LIB):
        raise SamplerMissing(
            "LinkNeighborLoader needs torch-sparse (or pyg-lib), and neither imports with torch "
            f"{torch.__version__}; run `make install`, or take torch-sparse from PyG's wheel index "
            "for your torch+CUDA (https://data.pyg.org/whl/)")


def main(argv=None) -> "TrainResult":
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    require_sampler()
    config = resolve(args.config, overrides)
    cap_malloc_arenas(config.malloc_arenas)  # before gloo and the loader start threads
    env = dist.setup(config.device)
    try:
        return train(args.graph, args.out, config, env, resume=args.resume)
    finally:
        dist.cleanup(env)


@dataclass
class TrainResult:
    record: dict            # the last epoch's metrics
    model: torch.nn.Module  # the trained model (unwrapped)
    global_step: int


def train(graph_path: str, out: str, config: TrainConfig, env: dist.DistEnv, resume: bool = False) -> TrainResult:
    """Run (or resume) training in ``out``."""
    log = tqdm.write if env.is_main else (lambda *_: None)
    run = RunDir(out)
    graph = load_graph(graph_path)
    ckpt_path = checkpoint.checkpoint_path(run.path)
    ckpt = None
    if resume and checkpoint.exists(ckpt_path):
        ckpt = checkpoint.load(ckpt_path)
        check_resumable(ckpt["config"], config, run, graph)
    elif resume:
        log(f"--resume: no checkpoint at {ckpt_path}, starting fresh")

    seed_everything(config.seed)  # identical initial parameters on every rank
    feature_dims = {t: x.size(1) for t, x in graph.x.items()}
    # Sparse ID-embedding gradients need a sparse all-reduce, which gloo has and NCCL lacks.
    sparse = env.device.type == "cpu"
    model = build_model(config, graph.metadata(), feature_dims, graph.num_nodes, sparse).to(env.device)
    optimizer = Optimizer(model, config, sparse)
    start_epoch, skip_steps, global_step, carried = 0, 0, 0, [0.0, 0.0, 0.0]
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"], ckpt_path)
        checkpoint.set_rng_state(ckpt["rng"])
        start_epoch, skip_steps, global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        carried = list(ckpt["epoch_sums"])
        log(f"resuming from {ckpt_path}: epoch {start_epoch}, step {skip_steps}")

    records = [r for r in run.read_metrics() if r["epoch"] < start_epoch] if ckpt is not None else []
    if env.is_main:
        run.write_json("config.json", config.to_dict())
        run.write_json("graph.json", graph_record(graph))
        run.write_metrics(records)
    ddp = (DistributedDataParallel(model, device_ids=[env.device] if env.device.type == "cuda" else None)
           if env.distributed else model)
    amp = config.amp and env.device.type == "cuda"
    val_edges = val_edges_for_rank(graph, config, env)
    log_frequency = candidate_log_frequency(graph, config).to(env.device) if config.loss == "softmax" else None

    def save(epoch: int, step: int, sums: list[float]) -> None:
        if env.is_main:
            checkpoint.save(ckpt_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "step": step, "global_step": global_step, "epoch_sums": [float(s) for s in sums],
                "rng": checkpoint.rng_state(), "config": config.to_dict(), "graph": graph_record(graph)})

    log(f"training on {env.world_size} process(es), device {env.device}, "
        f"{graph.num_nodes} nodes, {graph.train_edges.size(1)} train edges, {graph.val_edges.size(1)} val edges")
    record = records[-1] if records else {}
    for epoch in tqdm(range(start_epoch, config.epochs), desc="epochs", disable=not env.is_main,
                      initial=start_epoch, total=config.epochs):
        t_epoch = time.perf_counter()
        loader = epoch_loader(graph, config, env, epoch)
        setup_s = time.perf_counter() - t_epoch
        steps = len(loader) if not config.max_steps_per_epoch else min(len(loader), config.max_steps_per_epoch)
        steps = dist.all_reduce_min(env, steps)  # shards are equal; this guards the invariant
        seed_everything(epoch_seed(config, epoch, env.rank))
        skip = skip_steps if epoch == start_epoch else 0
        # loss sum, loss terms, positives; carried over from a mid-epoch checkpoint
        sums = carried if skip else [0.0, 0.0, 0.0]
        data_s = compute_s = 0.0
        batches = iter(loader)
        bar = tqdm(total=steps, desc=f"epoch {epoch}", leave=False, disable=not env.is_main, initial=skip)
        for step in range(steps):
            t0 = time.perf_counter()
            batch = next(batches)
            if step < skip:  # replays the sampler's randomness exactly, without training
                continue
            batch = batch.to(env.device, non_blocking=True)
            t1 = time.perf_counter()
            loss, terms, positives = batch_loss(ddp, batch, config, amp, log_frequency)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_value = loss.item()  # also synchronises the device, so the timing is honest
            t2 = time.perf_counter()
            data_s += t1 - t0
            compute_s += t2 - t1
            sums[0] += loss_value * terms
            sums[1] += terms
            sums[2] += positives
            global_step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
            if config.checkpoint_every and global_step % config.checkpoint_every == 0 and step + 1 < steps:
                save(epoch, step + 1, sums)
        bar.close()
        del batches  # stops the loader's workers
        loop_s = time.perf_counter() - t_epoch - setup_s
        loss_sum, terms, positives, data_total, compute_total = dist.all_reduce_sum(
            env, [*sums, data_s, compute_s])
        trained = steps - skip
        # On the epoch's graph (visible minus this epoch's supervision edges; validation
        # playlists keep all their seeds): a second, full graph built beside the training heap
        # was the run's memory peak (+0.17 GB at 100k playlists), for a diagnostic.
        metrics = validate(model, loader.data, val_edges, config, env)
        del loader
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / terms if terms else None,
            **metrics,
            "seconds": round(time.perf_counter() - t_epoch, 3),
            # supervision edges per second over all ranks, in the batch loop
            "edges_per_s": round(positives / loop_s, 1) if loop_s > 0 else None,
            # share of the step spent waiting for the loader (sampling, negatives, collation)
            "data_fraction": round(data_total / (data_total + compute_total), 4) if data_total + compute_total else None,
            "data_s_per_step": round(data_total / env.world_size / trained, 5) if trained else None,
            "compute_s_per_step": round(compute_total / env.world_size / trained, 5) if trained else None,
            "setup_s": round(setup_s, 3),  # per-epoch graph rebuild and sampler set-up
            "loader_workers": loader_workers(config, env.device),
            "steps": steps,
            "world_size": env.world_size,
            "peak_rss_mb": round(dist.all_reduce_max(env, _peak_rss_mb()), 1),  # max over ranks
        }
        records.append(record)
        if env.is_main:
            run.write_metrics(records)
            checkpoint.atomic_write_bytes(run.join("curves.png"), learning_curves(records))
            log(json.dumps(record))
        save(epoch + 1, 0, [0.0, 0.0, 0.0])
    dist.barrier(env)
    log(f"done: {config.epochs} epochs, train_loss {record.get('train_loss')}, val_loss {record.get('val_loss')}, "
        f"val_auc {record.get('val_auc')}; run dir {run.path}")
    return TrainResult(record, model, global_step)


if __name__ == "__main__":
    try:
        main()
    except (ConfigError, C.ContractError, FileNotFoundError, SamplerMissing) as e:  # a user's mistake: no traceback
        sys.exit(f"error: {e}")
