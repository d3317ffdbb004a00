"""trainer/gnn/neighbor_sampler.py: sampled edges exist and run from a neighbour to the previous hop,
fan-outs hold, seeds come first; at full fan-out the subgraph is exactly the k-hop
in-neighbourhood (a plain-Python BFS is the oracle) and the model's loss equals torch-sparse's;
training with it learns. CUDA-only checks skip without a GPU."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

import pytest
import torch
import torch_geometric.transforms as T
from graphdir_fixture import toy_graph_dir
from torch_geometric.data import HeteroData
from torch_geometric.loader import LinkNeighborLoader
from torch_geometric.sampler import NegativeSampling

import trainer.gnn.sampled as sampled_module
from trainer import dist
from trainer.config import ConfigError, TrainConfig
from trainer.gnn.losses import candidate_log_frequency
from trainer.gnn.model import build_model, hop_counts
from trainer.gnn.neighbor_sampler import DeviceNeighborSampler, choose_without_replacement
from trainer.gnn.sampled import SampledTraining, epoch_loader, loader_workers
from trainer.io.graph import PLAYLIST_TRACK, load_graph
from trainer.train import train_from_args

CPU = dist.DistEnv(0, 0, 1, torch.device("cpu"), None)
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")),
]


def tiny_graph(seed: int = 0, playlists: int = 12, tracks: int = 20, albums: int = 5) -> HeteroData:
    """Random playlists of 1-8 tracks (some tracks in many, some in none), each track in one
    album, with reverse relations; edges left in random order (the sampler sorts a copy)."""
    g = torch.Generator().manual_seed(seed)
    pairs = set()
    for p in range(playlists):
        size = int(torch.randint(1, 9, (1,), generator=g))
        # a skewed pick: low track ids are popular
        for t in (torch.rand(size, generator=g) ** 2 * tracks).long().tolist():
            pairs.add((p, t))
    data = HeteroData()
    data["playlist"].x = torch.randn(playlists, 3, generator=g)
    data["track"].x = torch.randn(tracks, 3, generator=g)
    data["album"].x = torch.randn(albums, 3, generator=g)
    pt = torch.tensor(sorted(pairs)).T
    data[PLAYLIST_TRACK].edge_index = pt[:, torch.randperm(pt.size(1), generator=g)]
    data["track", "in_album", "album"].edge_index = torch.stack(
        [torch.arange(tracks), torch.randint(albums, (tracks,), generator=g)]
    )
    return T.ToUndirected()(data)


def loader(data, fanout, label_index, negatives=2, **kw):
    return LinkNeighborLoader(
        data,
        num_neighbors=fanout,
        edge_label_index=(PLAYLIST_TRACK, label_index),
        neg_sampling=NegativeSampling("triplet", amount=negatives) if negatives else None,
        batch_size=label_index.size(1),
        neighbor_sampler=DeviceNeighborSampler(data, fanout),
        **kw,
    )


def global_edges(batch, et) -> list[tuple[int, int]]:
    src, dst = batch[et].edge_index
    return list(zip(batch[et[0]].n_id[src].tolist(), batch[et[2]].n_id[dst].tolist()))


def hop_of(batch, t) -> torch.Tensor:
    """Per node of type ``t`` in the batch, the hop that first reached it (0: seed)."""
    return torch.repeat_interleave(
        torch.arange(len(batch[t].num_sampled_nodes)), torch.tensor(batch[t].num_sampled_nodes)
    )


def bfs_oracle(data: HeteroData, seeds: dict[str, set[int]], depth: int):
    """The full ``depth``-hop in-neighbourhood in plain Python: per hop, every in-edge of every
    node first reached in the previous hop; (nodes per type per hop, edge multiset per relation)."""
    edges = {et: list(zip(*data[et].edge_index.tolist())) for et in data.edge_types}
    seen = {t: set(seeds.get(t, ())) for t in data.node_types}
    frontier = {t: set(seeds.get(t, ())) for t in data.node_types}
    hops = [frontier]
    sampled = {et: Counter() for et in data.edge_types}
    for _ in range(depth):
        reached = {t: set() for t in data.node_types}
        for (s, r, d), pairs in edges.items():
            for u, v in pairs:
                if v in frontier[d]:
                    sampled[s, r, d][u, v] += 1
                    reached[s].add(u)
        frontier = {t: reached[t] - seen[t] for t in data.node_types}
        for t in data.node_types:
            seen[t] |= frontier[t]
        hops.append(frontier)
    return hops, sampled


@pytest.mark.parametrize("seed", range(4))
def test_sampled_edges_exist_point_to_the_previous_hop_and_respect_fanouts(seed):
    data = tiny_graph(seed)
    fanout = [2, 3]
    label_index = data[PLAYLIST_TRACK].edge_index[:, :6]
    torch.manual_seed(seed)
    batch = next(iter(loader(data, fanout, label_index)))
    # seeds first, as PyG orders them: distinct sources, distinct destinations (positives and
    # negatives) in increasing id; the triplet indices point at them
    playlists, tracks = batch["playlist"].n_id, batch["track"].n_id
    src_seeds = torch.unique(label_index[0])
    dst_seeds = torch.unique(torch.cat([label_index[1], tracks[batch["track"].dst_neg_index.flatten()]]))
    assert torch.equal(playlists[: src_seeds.numel()], src_seeds)
    assert torch.equal(tracks[: dst_seeds.numel()], dst_seeds)
    assert batch["playlist"].num_sampled_nodes[0] == src_seeds.numel()
    assert torch.equal(playlists[batch["playlist"].src_index], label_index[0])
    assert torch.equal(tracks[batch["track"].dst_pos_index], label_index[1])
    assert batch["track"].dst_neg_index.shape == (6, 2)
    for t in batch.node_types:  # every node once
        assert batch[t].n_id.unique().numel() == batch[t].n_id.numel()
    hop = {t: hop_of(batch, t) for t in batch.node_types}
    for et in batch.edge_types:
        src, dst = batch[et].edge_index
        graph_edges = list(zip(*data[et].edge_index.tolist()))
        pairs = global_edges(batch, et)
        assert set(pairs) <= set(graph_edges), et
        # e_id names that very edge of the graph (through the sampler's sort permutation)
        assert [graph_edges[e] for e in batch[et].e_id.tolist()] == pairs, et
        # an edge of hop h runs from a node reached by hop h to one first reached in hop h-1
        edge_hop = torch.repeat_interleave(torch.arange(1, len(fanout) + 1), torch.tensor(batch[et].num_sampled_edges))
        assert torch.equal(hop[et[2]][dst], edge_hop - 1), et
        assert bool((hop[et[0]][src] <= edge_hop).all()), et
        # fan-out: min(degree, fan-out) distinct in-edges of every node expanded
        degree = Counter(v for _, v in graph_edges)
        per_node = Counter(pairs)
        assert max(per_node.values(), default=1) <= max(Counter(graph_edges).values()), "an edge drawn twice"
        expanded = Counter(batch[et[2]].n_id[dst].tolist())
        for h, f in enumerate(fanout):
            for v in batch[et[2]].n_id[hop[et[2]] == h].tolist():
                assert expanded[v] == min(degree[v], f), (et, v)
    assert (
        hop_counts(
            {
                "playlist": batch["playlist"].src_index,
                "track": torch.cat([batch["track"].dst_pos_index, batch["track"].dst_neg_index.flatten()]),
            },
            batch.edge_index_dict,
            batch.num_nodes_dict,
            len(fanout),
        )
        is not None
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fanout", [[-1, -1, -1], [100, 100, 100]], ids=["all", "above_max_degree"])
def test_full_fanout_gives_exactly_the_k_hop_in_neighbourhood(fanout, device):
    data = tiny_graph(7, playlists=30, tracks=40, albums=6)
    label_index = data[PLAYLIST_TRACK].edge_index[:, 3:8]
    batch = next(iter(loader(data.to(device), fanout, label_index, negatives=0)))
    hops, sampled = bfs_oracle(
        data, {"playlist": set(label_index[0].tolist()), "track": set(label_index[1].tolist())}, len(fanout)
    )
    for t in data.node_types:
        n_id, hop = batch[t].n_id.cpu(), hop_of(batch, t)
        assert [set(n_id[hop == h].tolist()) for h in range(len(hops))] == [hops_h[t] for hops_h in hops], t
    for et in data.edge_types:
        assert Counter(global_edges(batch, et)) == sampled[et], et
    assert torch.equal(batch["playlist"].n_id[batch[PLAYLIST_TRACK].edge_label_index[0]].cpu(), label_index[0])


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_batches(device):
    data = tiny_graph(3).to(device)
    label_index = data[PLAYLIST_TRACK].edge_index[:, :10]
    runs = []
    for _ in range(2):
        torch.manual_seed(11)
        batches = list(
            LinkNeighborLoader(
                data,
                num_neighbors=[2, 2],
                edge_label_index=(PLAYLIST_TRACK, label_index),
                batch_size=4,
                neg_sampling=NegativeSampling("triplet", amount=3),
                neighbor_sampler=DeviceNeighborSampler(data, [2, 2]),
            )
        )
        runs.append(
            [
                (b["track"].n_id, b["track"].dst_neg_index, b["playlist"].n_id, tuple(b.edge_index_dict.values()))
                for b in batches
            ]
        )
    for a, b in zip(*runs):
        for x, y in zip(a[:3], b[:3]):
            assert torch.equal(x, y)
        assert all(torch.equal(x, y) for x, y in zip(a[3], b[3]))


def test_choice_without_replacement_is_uniform_over_subsets():
    torch.manual_seed(0)
    picks = choose_without_replacement(torch.full((30000,), 5), 2)
    assert bool((picks[:, 0] != picks[:, 1]).all()) and 0 <= int(picks.min()) and int(picks.max()) < 5
    subsets = Counter(tuple(sorted(p)) for p in picks.tolist())
    assert len(subsets) == 10  # C(5, 2), each expected 3000 times (sd ~52)
    assert all(abs(n - 3000) < 300 for n in subsets.values()), subsets
    big = choose_without_replacement(torch.tensor([3, 1000, 10**7]), 3)
    assert sorted(big[0].tolist()) == [0, 1, 2]
    assert all(len(set(row)) == 3 for row in big.tolist()) and int(big[2].max()) < 10**7


@pytest.fixture(scope="module")
def gdir(tmp_path_factory):
    return toy_graph_dir(str(tmp_path_factory.mktemp("g") / "graph"), 150, seed=5)


@pytest.mark.pyg_sparse
def test_loss_at_full_fanout_equals_torch_sparse(gdir):
    """Same seeds, same negatives (drawn first, from the same generator), the same subgraph up
    to node order: the same model gives the same loss and the same outputs at the seeds."""
    graph = load_graph(gdir)
    frequency = candidate_log_frequency(graph.train_edges, graph.num_nodes["track"], 64, 10, 0.0)
    torch.manual_seed(1)
    base = TrainConfig(
        hidden=16, id_dim=8, fanout=(-1, -1, -1), batch_size=64, conv="sage", layer_mean=True, num_workers=0
    )
    model = build_model(base, graph.metadata(), {t: x.size(1) for t, x in graph.x.items()}, graph.num_nodes)
    results = {}
    for kind in ("device", "torch_sparse"):
        config = dataclasses.replace(base, sampler=kind)
        torch.manual_seed(2)
        batch = next(iter(epoch_loader(graph, config, CPU, epoch=0)))
        loss, terms, positives = SampledTraining(graph, config, CPU, frequency).loss(model, batch, amp=False)
        results[kind] = (loss.item(), terms, positives, batch)
    (l_dev, t_dev, p_dev, b_dev), (l_ts, t_ts, p_ts, b_ts) = results["device"], results["torch_sparse"]
    assert (t_dev, p_dev) == (t_ts, p_ts)
    for t in ("playlist", "track"):
        assert b_dev[t].num_nodes == b_ts[t].num_nodes
    assert torch.equal(
        b_dev["playlist"].n_id[b_dev["playlist"].src_index], b_ts["playlist"].n_id[b_ts["playlist"].src_index]
    )
    assert torch.equal(
        b_dev["track"].n_id[b_dev["track"].dst_neg_index], b_ts["track"].n_id[b_ts["track"].dst_neg_index]
    )
    assert l_dev == pytest.approx(l_ts, rel=1e-5, abs=1e-6)
    outputs = []
    for batch in (b_dev, b_ts):
        seeds = {
            "playlist": batch["playlist"].src_index,
            "track": torch.cat([batch["track"].dst_pos_index, batch["track"].dst_neg_index.flatten()]),
        }
        within = hop_counts(seeds, batch.edge_index_dict, batch.num_nodes_dict, 3)
        assert within is not None
        with torch.no_grad():
            h = model(batch.x_dict, batch.edge_index_dict, batch.n_id_dict, within)
        outputs.append((h["playlist"][seeds["playlist"]], h["track"][seeds["track"]]))
    for a, b in zip(*outputs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_training_with_the_device_sampler_learns_in_hop_order(gdir, tmp_path, monkeypatch):
    within = []

    def recording(*args, **kwargs):
        within.append(hop_counts(*args, **kwargs))
        return within[-1]

    monkeypatch.setattr(sampled_module, "hop_counts", recording)
    run = tmp_path / "run"
    train_from_args(
        [
            "--graph",
            gdir,
            "--out",
            str(run),
            "--hidden=16",
            "--id_dim=8",
            "--fanout=5,5,3",
            "--batch_size=64",
            "--device=cpu",
            "--val_rank_playlists=20",
            "--epochs=2",
            "--propagation=sampled",
            "--sampler=device",
        ]
    )
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] < records[0]["train_loss"], records
    assert records[0]["sampler"] == "device"
    assert within and all(w is not None for w in within)


def test_config_resolves_auto_and_device_sampler_needs_no_workers_on_cuda():
    assert TrainConfig().sampler == "device" and TrainConfig(sampler="torch_sparse").sampler == "torch_sparse"
    with pytest.raises(ConfigError, match="sampler must be auto, torch_sparse or device, got 'pyg'"):
        TrainConfig(sampler="pyg")
    cuda = torch.device("cuda")
    assert loader_workers(TrainConfig(sampler="device"), cuda) == 0
    assert loader_workers(TrainConfig(sampler="torch_sparse", num_workers=3), cuda) == 3
    with pytest.raises(ConfigError, match="num_workers=2 with sampler=device on CUDA"):
        loader_workers(TrainConfig(sampler="device", num_workers=2), cuda)
