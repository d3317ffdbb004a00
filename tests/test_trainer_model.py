"""Model, layer-wise inference, AUC and the embeddings format, against independent computations."""

import itertools

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from graphdir_fixture import toy_graph_dir
from torch_geometric.data import HeteroData

from trainer.gnn.inference import encode_all
from trainer.gnn.model import LinkPredictor, hop_counts, score
from trainer.gnn.validation import roc_auc
from trainer.io import embeddings
from trainer.io.graph import load_graph


def _hand_built():
    data = HeteroData()
    sizes = {"playlist": 3, "track": 5, "album": 2, "artist": 2}
    dims = {"playlist": 10, "track": 4, "album": 3, "artist": 3}
    for t, n in sizes.items():
        data[t].x = torch.randn(n, dims[t])
    data["playlist", "contains", "track"].edge_index = torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 3, 4]])
    data["track", "in_album", "album"].edge_index = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 1, 1, 1]])
    data["track", "by_artist", "artist"].edge_index = torch.tensor([[0, 1, 2, 3, 4], [0, 1, 1, 0, 1]])
    import torch_geometric.transforms as T

    return T.ToUndirected()(data), sizes, dims


def test_forward_backward_reaches_every_parameter():
    torch.manual_seed(0)
    data, sizes, dims = _hand_built()
    model = LinkPredictor(data.metadata(), dims, sizes, hidden=8, layers=3, id_dim=4)
    n_id = {t: torch.arange(n) for t, n in sizes.items()}
    h = model(data.x_dict, data.edge_index_dict, n_id)
    assert h["playlist"].shape == (3, 8) and h["track"].shape == (5, 8)
    logits = score(h["playlist"], h["track"], torch.tensor([[0, 1, 2], [0, 4, 2]]))
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([1.0, 0.0, 1.0])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient (DDP would need find_unused_parameters): {missing}"
    assert "playlist" not in model.embedding and set(model.embedding) == {"track", "album", "artist"}
    assert isinstance(model.project, torch.nn.ModuleDict)


def test_playlist_representation_depends_on_its_tracks_only_through_the_graph():
    torch.manual_seed(0)
    data, sizes, dims = _hand_built()
    model = LinkPredictor(data.metadata(), dims, sizes, hidden=8, layers=3, id_dim=4)
    n_id = {t: torch.arange(n) for t, n in sizes.items()}
    before = model(data.x_dict, data.edge_index_dict, n_id)["playlist"]
    data["track", "rev_contains", "playlist"].edge_index = data["track", "rev_contains", "playlist"].edge_index[:, :-1]
    after = model(data.x_dict, data.edge_index_dict, n_id)["playlist"]
    assert torch.allclose(before[0], after[0]) and not torch.allclose(before[2], after[2])


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return load_graph(toy_graph_dir(str(tmp_path_factory.mktemp("g") / "graph"), 200, seed=2))


@pytest.mark.parametrize(
    "conv,layer_mean,temperature,bias",
    [
        ("sage", False, 0.0, False),
        ("sage", True, 0.0, False),
        ("sage", True, 0.1, True),
        ("lightgcn", True, 0.1, False),
        ("lightgcn", True, 0.1, True),
    ],
)
def test_layerwise_inference_equals_full_graph_forward(graph, conv, layer_mean, temperature, bias):
    torch.manual_seed(0)
    model = LinkPredictor(
        graph.metadata(),
        {t: x.size(1) for t, x in graph.x.items()},
        graph.num_nodes,
        hidden=16,
        layers=3,
        id_dim=8,
        layer_mean=layer_mean,
        temperature=temperature,
        conv=conv,
        track_bias=bias,
    ).eval()
    data = graph.hetero_data()
    with torch.no_grad():
        full = model(data.x_dict, data.edge_index_dict, {t: torch.arange(n) for t, n in graph.num_nodes.items()})
    batched = encode_all(model, graph, batch_size=37, layer_wise=True)
    for t in ("playlist", "track"):
        torch.testing.assert_close(batched[t], full[t], rtol=1e-5, atol=1e-5)
    if conv == "lightgcn":  # parameter-free layers: whole-graph products by default, track_seed too
        whole = encode_all(model, graph)
        for t in ("playlist", "track", "track_seed"):
            torch.testing.assert_close(whole[t], batched[t], rtol=1e-5, atol=1e-5)
    # held-out playlists are embedded from their seed tracks: drop one seed edge, its playlist moves
    p = int(graph.seed_edges[0, 0])
    graph_without = type(graph)(**{**graph.__dict__, "seed_edges": graph.seed_edges[:, 1:]})
    moved = encode_all(model, graph_without, batch_size=64)["playlist"]
    assert not torch.allclose(moved[p], batched["playlist"][p])


@pytest.mark.parametrize(
    "conv,layer_mean,bias",
    [("sage", False, False), ("sage", True, False), ("lightgcn", True, False), ("lightgcn", True, True)],
)
def test_hop_trimmed_forward_equals_untrimmed_at_the_seeds(graph, conv, layer_mean, bias):
    from trainer import dist
    from trainer.config import TrainConfig
    from trainer.gnn.sampled import epoch_loader

    torch.manual_seed(0)
    config = TrainConfig(
        conv=conv, layer_mean=layer_mean, hidden=16, id_dim=8, batch_size=16, fanout=(4, 3, 2), negatives=3
    )
    model = LinkPredictor(
        graph.metadata(),
        {t: x.size(1) for t, x in graph.x.items()},
        graph.num_nodes,
        hidden=16,
        layers=3,
        id_dim=8,
        layer_mean=layer_mean,
        temperature=0.1,
        conv=conv,
        track_bias=bias,
    ).eval()
    loader = epoch_loader(
        graph, config, dist.DistEnv(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None), 0
    )
    trimmed_rows = 0
    for batch, _ in zip(loader, range(3)):
        seeds = {
            "playlist": batch["playlist"].src_index,
            "track": torch.cat([batch["track"].dst_pos_index, batch["track"].dst_neg_index.flatten()]),
        }
        within = hop_counts(seeds, batch.edge_index_dict, batch.num_nodes_dict, 3)
        assert within is not None, "the sampler should list nodes hop by hop"
        for t, counts in within.items():
            assert counts == sorted(counts) and counts[-1] == batch[t].num_nodes
        assert within["playlist"][0] == seeds["playlist"].unique().numel()
        assert within["track"][0] == seeds["track"].unique().numel()
        with torch.no_grad():
            full = model(batch.x_dict, batch.edge_index_dict, batch.n_id_dict)
            trim = model(batch.x_dict, batch.edge_index_dict, batch.n_id_dict, within)
        for t in ("playlist", "track"):
            n = within[t][0]
            torch.testing.assert_close(trim[t][:n], full[t][:n], rtol=1e-5, atol=1e-5)
            assert trim[t].size(0) == within[t][1] <= full[t].size(0)
            trimmed_rows += full[t].size(0) - trim[t].size(0)
    assert trimmed_rows > 0, "the outer hops should have been cut"


def test_hop_counts_refuses_a_batch_out_of_hop_order():
    # Seed: playlist 0. Track 1 is one hop out, playlist 1 two hops out, track 0 unreached: a
    # batch listing track 0 before track 1 is not in hop order, so nothing may be trimmed.
    edges = {
        ("track", "rev_contains", "playlist"): torch.tensor([[1], [0]]),
        ("playlist", "contains", "track"): torch.tensor([[1], [1]]),
    }
    assert hop_counts({"playlist": torch.tensor([0])}, edges, {"playlist": 2, "track": 2}, 2) is None
    in_order = {
        ("track", "rev_contains", "playlist"): torch.tensor([[0], [0]]),
        ("playlist", "contains", "track"): torch.tensor([[1], [0]]),
    }
    assert hop_counts({"playlist": torch.tensor([0])}, in_order, {"playlist": 2, "track": 2}, 2) == {
        "playlist": [1, 1, 2],
        "track": [0, 1, 1],
    }


def test_layer_mean_and_temperature_readout():
    """One layer: the layer mean is (input projection + plain output) / 2 of the same weights;
    with a temperature every row has norm temperature ** -0.5 (dot product = cosine / temperature)."""
    torch.manual_seed(0)
    data, sizes, dims = _hand_built()
    n_id = {t: torch.arange(n) for t, n in sizes.items()}
    plain = LinkPredictor(data.metadata(), dims, sizes, hidden=8, layers=1, id_dim=4)
    mean = LinkPredictor(data.metadata(), dims, sizes, hidden=8, layers=1, id_dim=4, layer_mean=True)
    cosine = LinkPredictor(
        data.metadata(), dims, sizes, hidden=8, layers=1, id_dim=4, layer_mean=True, temperature=0.25
    )
    mean.load_state_dict(plain.state_dict())
    cosine.load_state_dict(plain.state_dict())
    with torch.no_grad():
        x0 = plain.input_embeddings(data.x_dict, n_id)
        out = plain(data.x_dict, data.edge_index_dict, n_id)
        averaged = mean(data.x_dict, data.edge_index_dict, n_id)
        normalised = cosine(data.x_dict, data.edge_index_dict, n_id)
    for t in ("playlist", "track"):
        torch.testing.assert_close(averaged[t], (x0[t] + out[t]) / 2)
        torch.testing.assert_close(normalised[t].norm(dim=-1), torch.full((sizes[t],), 2.0))
        torch.testing.assert_close(normalised[t] * 0.5, averaged[t] / averaged[t].norm(dim=-1, keepdim=True))


def test_lightgcn_propagation_is_the_plain_mean_of_neighbours():
    """Two linear layers by hand: playlist <- mean of its tracks; track <- sum over its relations
    of the mean of that relation's sources; the readout averages the three layers."""
    torch.manual_seed(0)
    data, sizes, dims = _hand_built()
    n_id = {t: torch.arange(n) for t, n in sizes.items()}
    model = LinkPredictor(data.metadata(), dims, sizes, hidden=8, layers=2, id_dim=4, conv="lightgcn", layer_mean=True)
    with torch.no_grad():
        x0 = model.input_embeddings(data.x_dict, n_id)
        h = model(data.x_dict, data.edge_index_dict, n_id)

    def mean_in(src, edge_index, dst, n_dst):
        return torch.stack(
            [
                src[edge_index[0][edge_index[1] == d]].mean(0)
                if (edge_index[1] == d).any()
                else torch.zeros(src.size(1))
                for d in range(n_dst)
            ]
        )

    def layer(x):
        out = {t: torch.zeros(sizes[t], 8) for t in sizes}
        for (s, _, d), ei in data.edge_index_dict.items():
            out[d] = out[d] + mean_in(x[s], ei, d, sizes[d])
        return out

    x1 = layer(x0)
    x2 = layer(x1)
    for t in ("playlist", "track"):
        torch.testing.assert_close(h[t], (x0[t] + x1[t] + x2[t]) / 3)
    assert not any("layers" in n for n, _ in model.named_parameters())


def test_roc_auc_matches_pairwise_count():
    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.integers(0, 6, 60).astype(np.float32))  # many ties
    labels = torch.tensor(rng.random(60) < 0.4)
    pos, neg = scores[labels].tolist(), scores[~labels].tolist()
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    assert roc_auc(scores, labels) == pytest.approx(expected / (len(pos) * len(neg)))
    assert roc_auc(scores, torch.zeros(60, dtype=torch.bool)) is None


def test_embeddings_format_round_trip(tmp_path):
    ids = np.array([2, 0, 1])
    emb = np.arange(6, dtype=np.float32).reshape(3, 2)
    embeddings.publish(str(tmp_path), {"track": (ids, ["c", "a", "b"], emb)}, None, {"checkpoint_id": None})
    schema = pq.read_schema(tmp_path / "embeddings" / "track.parquet")
    assert [(f.name, str(f.type)) for f in schema] == [
        ("track_id", "int64"),
        ("track_uri", "string"),
        ("embedding", "list<element: float>"),
    ]
    table = embeddings.read(str(tmp_path), "track")
    assert table["track_id"].to_pylist() == [0, 1, 2] and table["track_uri"].to_pylist() == ["a", "b", "c"]
    np.testing.assert_array_equal(embeddings.matrix(table["embedding"]), emb[[1, 2, 0]])
    embeddings.publish(str(tmp_path), {"playlist": (ids, [20, 0, 10], emb)}, None, {"checkpoint_id": None})
    assert str(pq.read_schema(tmp_path / "embeddings" / "playlist.parquet").field("pid").type) == "int64"


def test_track_bias_adds_a_per_track_prior_to_the_cosine_score():
    """score = cosine / temperature + bias(track's input projection): the playlist side carries
    a 1 for it, the track side its bias."""
    torch.manual_seed(0)
    data, sizes, dims = _hand_built()
    n_id = {t: torch.arange(n) for t, n in sizes.items()}
    plain = LinkPredictor(
        data.metadata(), dims, sizes, hidden=8, layers=2, id_dim=4, conv="lightgcn", layer_mean=True, temperature=0.5
    )
    biased = LinkPredictor(
        data.metadata(),
        dims,
        sizes,
        hidden=8,
        layers=2,
        id_dim=4,
        conv="lightgcn",
        layer_mean=True,
        temperature=0.5,
        track_bias=True,
    )
    biased.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        h = plain(data.x_dict, data.edge_index_dict, n_id)
        hb = biased(data.x_dict, data.edge_index_dict, n_id)
        prior = biased.track_bias(biased.input_embeddings(data.x_dict, n_id)["track"]).squeeze(-1)
    assert prior.abs().min() > 0
    torch.testing.assert_close(hb["playlist"][:, -1], torch.ones(sizes["playlist"]))
    torch.testing.assert_close(hb["playlist"] @ hb["track"].T, h["playlist"] @ h["track"].T + prior)
