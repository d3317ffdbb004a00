"""Supervision edges: per-epoch split, equal disjoint shards, never visible to their own batch."""

import numpy as np
import pytest
import torch
from graphdir_fixture import toy_graph_dir

from trainer.config import TrainConfig
from trainer.dist import DistEnv
from trainer.gnn.sampled import epoch_loader
from trainer.gnn.shards import epoch_split, rank_shard, selection_half, supervision_mask
from trainer.io.graph import PLAYLIST_TRACK, load_graph


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return load_graph(toy_graph_dir(str(tmp_path_factory.mktemp("g") / "graph"), 150, seed=1))


def _env(rank, world):
    return DistEnv(rank, rank, world, torch.device("cpu"), None)


def test_supervision_split_is_seeded_per_epoch_and_keeps_duplicates_together():
    edges = torch.tensor([[0, 0, 1, 2, 3] * 2000, [5, 5, 6, 7, 8] * 2000]) + torch.arange(10000).repeat(2, 1) // 5
    edges[:, 1] = edges[:, 0]  # a duplicated (playlist, track) pair
    m0 = supervision_mask(edges, 0.3, seed=0, epoch=0)
    assert torch.equal(m0, supervision_mask(edges, 0.3, seed=0, epoch=0))
    assert not torch.equal(m0, supervision_mask(edges, 0.3, seed=0, epoch=1))
    assert not torch.equal(m0, supervision_mask(edges, 0.3, seed=1, epoch=0))
    assert 0.27 < m0.float().mean().item() < 0.33
    assert m0[0] == m0[1]


@pytest.mark.parametrize("supervise_seeds", [False, True])
def test_epoch_split_partitions_the_visible_edges(graph, supervise_seeds):
    """Message passing and supervision split the visible edges with nothing shared or lost;
    seed edges are supervised only when asked, at the same ratio; hidden val edges never appear
    (but as seeds)."""

    def pairs(e):
        return sorted(map(tuple, e.t().tolist()))

    mp, sup = epoch_split(graph.train_edges, graph.seed_edges, 0.4, seed=3, epoch=2, supervise_seeds=supervise_seeds)
    assert pairs(torch.cat([mp, sup], dim=1)) == pairs(graph.visible_edges)
    assert not set(pairs(mp)) & set(pairs(sup))
    # A hidden pair can equal a seed pair (a track repeated in a playlist): the query holds it anyway.
    assert not set(pairs(sup)) & (set(pairs(graph.val_edges)) - set(pairs(graph.visible_edges)))
    seeds = set(pairs(graph.seed_edges))
    supervised_seeds = set(pairs(sup)) & seeds
    if supervise_seeds:  # 121 distinct seed pairs in this graph: 0.4 +- 3 standard deviations
        assert 0.25 < len(supervised_seeds) / len(seeds) < 0.55, (len(supervised_seeds), len(seeds))
    else:
        assert not supervised_seeds
        assert pairs(sup) == pairs(graph.train_edges[:, supervision_mask(graph.train_edges, 0.4, 3, 2)])


@pytest.mark.parametrize("n, world", [(10, 3), (1001, 2), (7, 7), (5, 8)])
def test_rank_shards_equal_disjoint(n, world):
    shards = [rank_shard(n, r, world, seed=4, epoch=2) for r in range(world)]
    assert {len(s) for s in shards} == {n // world}
    flat = torch.cat(shards)
    assert len(set(flat.tolist())) == len(flat) == (n // world) * world
    assert all(0 <= i < n for i in flat.tolist())
    # a new epoch deals different edges
    if n // world > 1:
        assert not torch.equal(shards[0], rank_shard(n, 0, world, seed=4, epoch=3))


def test_loader_never_shows_a_batch_its_supervision_edges(graph):
    config = TrainConfig(batch_size=64, fanout=(-1, 10, 5), supervision_ratio=0.3)
    epoch = 1
    _, sup = epoch_split(
        graph.train_edges, graph.seed_edges, config.supervision_ratio, config.seed, epoch, config.supervise_seeds
    )
    supervised = set(map(tuple, sup.t().tolist()))
    assert supervised & set(map(tuple, graph.seed_edges.t().tolist())), "seed edges are supervised too"
    batches = {}
    for rank in (0, 1):
        loader = epoch_loader(graph, config, _env(rank, 2), epoch)
        batches[rank] = 0
        for batch in loader:
            batches[rank] += 1
            pl, tr = batch["playlist"].n_id, batch["track"].n_id
            src = batch["playlist"].src_index
            positives = set(zip(pl[src].tolist(), tr[batch["track"].dst_pos_index].tolist()))
            assert positives <= supervised
            seen = set()
            ei = batch[PLAYLIST_TRACK].edge_index
            seen |= set(zip(pl[ei[0]].tolist(), tr[ei[1]].tolist()))
            rev = batch["track", "rev_contains", "playlist"].edge_index
            seen |= set(zip(pl[rev[1]].tolist(), tr[rev[0]].tolist()))
            assert seen, "the sampled subgraph has playlist-track edges"
            assert not (seen & positives), "a batch saw its own supervision edges"
            assert not (seen & supervised), "a batch saw one of the epoch's supervision edges"
    assert batches[0] == batches[1] > 1


def test_ranks_train_on_disjoint_equal_shards(graph):
    from collections import Counter

    config = TrainConfig(batch_size=10_000)
    _, sup = epoch_split(
        graph.train_edges, graph.seed_edges, config.supervision_ratio, config.seed, 0, config.supervise_seeds
    )
    supervised = Counter(map(tuple, sup.t().tolist()))
    shards = []
    for rank in range(3):
        loader = epoch_loader(graph, config, _env(rank, 3), 0)
        assert len(loader) == 1
        shards.append(loader.edge_label_index[1])
    assert len({s.size(1) for s in shards}) == 1
    assert shards[0].size(1) == sum(supervised.values()) // 3
    # disjoint as a multiset: together they take no edge more often than it is supervised
    dealt = Counter(map(tuple, torch.cat(shards, dim=1).t().tolist()))
    assert all(dealt[e] <= supervised[e] for e in dealt)


def test_the_val_halves_are_even_fixed_by_the_id_alone_and_unrelated_to_its_order():
    ids = np.arange(20_000, dtype=np.int64)
    half = selection_half(ids)
    assert 0.48 < half.mean() < 0.52
    np.testing.assert_array_equal(selection_half(ids[::-1]), half[::-1])  # the id decides, not its place
    # No stripes: consecutive ids (an ETL numbering playlists in input order) fall apart independently.
    assert 0.48 < (half[1:] == half[:-1]).mean() < 0.52
