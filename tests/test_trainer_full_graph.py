"""Full-graph training (propagation=full): the prebuilt adjacency propagates exactly as the
edge-list model does, gradients match, ranking validation equals trainer.evaluate, early
stopping keeps the best checkpoint."""

import json

import pytest
import torch
from graphdir_fixture import toy_graph_dir

from trainer import dist
from trainer.config import ConfigError, TrainConfig
from trainer.gnn.full_graph import FullGraphTraining, MeanAdjacency, adjacency
from trainer.gnn.inference import encode_all, load_trained
from trainer.gnn.model import LinkPredictor
from trainer.gnn.shards import selection_half
from trainer.gnn.validation import Validation, rank_validation, ranking_set
from trainer.io import checkpoint, storage
from trainer.io.graph import load_graph
from trainer.train import train_from_args

SMALL = ["--hidden=16", "--id_dim=8", "--batch_size=256", "--loss_chunk=64", "--device=cpu"]
CPU = dist.DistEnv(0, 0, 1, torch.device("cpu"), None)


@pytest.fixture(scope="module")
def gdir(tmp_path_factory):
    return toy_graph_dir(str(tmp_path_factory.mktemp("g") / "graph"), 200, seed=11)


@pytest.fixture(scope="module")
def graph(gdir):
    return load_graph(gdir)


def _model(graph, **kw):
    torch.manual_seed(0)
    return LinkPredictor(
        graph.metadata(),
        {t: x.size(1) for t, x in graph.x.items()},
        graph.num_nodes,
        hidden=16,
        layers=3,
        id_dim=8,
        layer_mean=True,
        temperature=0.2,
        conv="lightgcn",
        track_bias=True,
        **kw,
    )


def test_mean_adjacency_product_and_its_gradient_are_the_neighbour_mean():
    edge_index = torch.tensor([[0, 1, 2, 2, 3], [0, 0, 0, 1, 2]])  # source -> destination; 3 has a self-free row
    a = MeanAdjacency(edge_index, num_src=4, num_dst=4, device=torch.device("cpu"))
    x = torch.randn(4, 3, requires_grad=True)
    y = a @ x
    expected = torch.stack([x[[0, 1, 2]].mean(0), x[2], x[3], torch.zeros(3)])
    torch.testing.assert_close(y, expected)
    weights = torch.randn(4, 3)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    (grad_expected,) = torch.autograd.grad((expected * weights).sum(), x)
    torch.testing.assert_close(grad, grad_expected)


def test_full_graph_forward_and_gradients_equal_the_edge_list_model(graph):
    data = graph.hetero_data()
    n_id = {t: torch.arange(n) for t, n in graph.num_nodes.items()}
    outputs, grads = [], []
    for edges in (data.edge_index_dict, adjacency(graph, None, torch.device("cpu"))):
        model = _model(graph)
        h = model(data.x_dict, edges, n_id)
        (h["playlist"][:30].sum() + (h["track"] ** 2).sum()).backward()
        outputs.append(h)
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for t in ("playlist", "track"):
        torch.testing.assert_close(outputs[1][t], outputs[0][t], rtol=1e-5, atol=1e-6)
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("loss", ["softmax", "bpr"])
def test_chunked_loss_value_and_gradients_equal_one_backward_of_all_chunks(graph, loss):
    # Each chunk's backward runs into detached readouts (one chunk's logits held at a time):
    # the same loss and parameter gradients as summing every chunk's loss and one backward.
    from trainer.gnn.losses import batch_loss, candidate_log_frequency

    config = TrainConfig(batch_size=300, loss_chunk=64, negatives=5, loss=loss)
    log_freq = candidate_log_frequency(graph.train_edges, graph.num_nodes["track"], 300, 5, 0.0)
    training = FullGraphTraining(graph, config, CPU, log_freq)
    training.start_epoch(0)
    batch = next(iter(training.batches(1)))
    values, grads = [], []
    for chunked in (True, False):
        model = _model(graph)
        if chunked:
            value, terms, _ = training.loss(model, batch, amp=False)
        else:
            h = training.forward(model)
            parts = [
                batch_loss(
                    loss,
                    h["playlist"][batch.playlist[lo : lo + 64]],
                    h["track"],
                    batch.playlist[lo : lo + 64],
                    batch.positive[lo : lo + 64],
                    batch.negative[lo : lo + 64],
                    log_freq,
                )
                for lo in range(0, 300, 64)
            ]
            value = sum(v * n for v, n, _ in parts) / sum(n for _, n, _ in parts)
        value.backward()
        values.append(float(value))
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert values[0] == pytest.approx(values[1], rel=1e-5)
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_embeddings_for_validation_equal_the_export(graph):
    model = _model(graph).eval()
    training = FullGraphTraining(graph, TrainConfig(), CPU, None)
    full = training.embed(model)
    exported = encode_all(model, graph, batch_size=50)
    for t in ("playlist", "track"):
        torch.testing.assert_close(full[t], exported[t], rtol=1e-5, atol=1e-5)


def test_epoch_batches_cover_the_shard_and_replay_after_a_skip(graph):
    config = TrainConfig(batch_size=100, negatives=3)
    training = FullGraphTraining(graph, config, CPU, None)
    steps = training.start_epoch(2)
    batches = list(training.batches(steps))
    assert sum(b.playlist.numel() for b in batches) == training.edges.size(1)
    assert all(b.negative.shape == (b.playlist.numel(), 3) for b in batches)
    # the supervision edges are not in the epoch's message passing
    sup = set(zip(training.edges[0].tolist(), training.edges[1].tolist()))
    contains = training.adjacency[("playlist", "contains", "track")].transpose.to_sparse_coo().indices()
    assert sup.isdisjoint(set(zip(contains[0].tolist(), contains[1].tolist())))
    resumed = list(training.batches(steps, skip=2))
    assert resumed[:2] == [None, None]
    for a, b in zip(batches[2:], resumed[2:]):
        assert torch.equal(a.negative, b.negative) and torch.equal(a.positive, b.positive)


def test_rank_validation_equals_trainer_evaluate(gdir, graph, tmp_path):
    """The in-training R-precision / NDCG / clicks are those trainer.evaluate reports for the
    seeded validation playlists (title-only ones rank by title for every method)."""
    from trainer.embed import main as embed_main
    from trainer.evaluate import evaluate

    run = tmp_path / "run"
    train_from_args(["--graph", gdir, "--out", str(run), "--epochs=1", "--val_rank_playlists=0", *SMALL])
    embed_main(["--graph", gdir, "--run", str(run)])
    result = evaluate(gdir, run, "val", ["gnn"])["methods"]["gnn"]
    model, _, _ = load_trained(str(run), graph)
    ranking = ranking_set(graph, 0, seed=0)
    ours = rank_validation(FullGraphTraining(graph, TrainConfig(), CPU, None).embed(model), ranking, "cpu")
    seeded = {c: v for c, v in result["by_category"].items() if c != "title_only"}
    assert len(ranking) == sum(v["num_playlists"] for v in seeded.values()) > 0
    for m in ("r_precision", "ndcg", "clicks"):
        expected = sum(v[m] * v["num_playlists"] for v in seeded.values()) / len(ranking)
        assert ours[f"val_{m}"] == pytest.approx(expected, abs=1e-6), m
    sampled = ranking_set(graph, 7, seed=0)
    assert len(sampled) == 7 and set(sampled.held.playlist_ids) <= set(ranking.held.playlist_ids)
    # By default a run selects on one half of them; the other half is the second stage's.
    every = ranking.held.playlist_ids
    halved = Validation(graph, TrainConfig(device="cpu"), CPU).ranking.held.playlist_ids
    assert 0 < len(halved) < len(every) and set(halved) == set(every[selection_half(every)])


def test_patience_stops_and_the_best_epoch_is_exported(gdir, tmp_path, monkeypatch):
    import trainer.gnn.validation as validation_module

    # A scripted validation curve: best at epoch 1, then worse twice -> stop after epoch 3.
    curve = iter([0.10, 0.30, 0.20, 0.25, 0.40, 0.50])
    monkeypatch.setattr(
        validation_module,
        "rank_metrics",
        lambda *a: (lambda v: {"val_r_precision": v, "val_ndcg": v, "val_clicks": 1.0})(next(curve)),
    )
    run = tmp_path / "run"
    result = train_from_args(["--graph", gdir, "--out", str(run), "--epochs=6", "--patience=2", *SMALL])
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert [r["best_epoch"] for r in records] == [0, 1, 1, 1]
    best = checkpoint.load(checkpoint.checkpoint_path(str(run), checkpoint.BEST))
    last = checkpoint.load(checkpoint.checkpoint_path(str(run)))
    assert best["epoch"] == 2 and last["epoch"] == 4 and result.record["epoch"] == 3
    graph = load_graph(gdir)
    exported, _, _ = load_trained(str(run), graph)
    for k, v in best["model"].items():
        assert torch.equal(exported.state_dict()[k], v)
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
    # resuming a stopped run trains no further
    again = train_from_args(["--graph", gdir, "--out", str(run), "--epochs=6", "--patience=2", "--resume", *SMALL])
    assert again.global_step == result.global_step


def test_overwrite_removes_an_earlier_best_checkpoint(gdir, tmp_path):
    run = tmp_path / "run"
    train_from_args(["--graph", gdir, "--out", str(run), "--epochs=1", "--val_rank_playlists=20", *SMALL])
    assert storage.exists(checkpoint.checkpoint_path(str(run), checkpoint.BEST))
    train_from_args(["--graph", gdir, "--out", str(run), "--epochs=1", "--val_rank_playlists=0", "--overwrite", *SMALL])
    assert not storage.exists(checkpoint.checkpoint_path(str(run), checkpoint.BEST))


def test_config_resolves_propagation_and_batch_size_and_refuses_full_sage():
    with pytest.raises(ConfigError, match="propagation=full needs conv=lightgcn"):
        TrainConfig(conv="sage", propagation="full")
    assert TrainConfig().propagation == "full" and TrainConfig(conv="sage").propagation == "sampled"
    assert TrainConfig().batch_size == 4096 and TrainConfig(propagation="sampled").batch_size == 256
    assert TrainConfig(batch_size=64).batch_size == 64
    # what config.json records resolves to itself
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_validation_within_epochs_selects_stops_and_resumes(gdir, tmp_path, monkeypatch):
    import trainer.gnn.validation as validation_module

    # val_every=2 with 3 steps an epoch validates at global steps 2 (mid), 3 (end), 4 (mid)...;
    # best at the end of epoch 0, worse at the next validation -> patience 1 stops inside epoch 1.
    curve = iter([0.10, 0.30, 0.20, 0.50, 0.60])
    monkeypatch.setattr(
        validation_module,
        "rank_metrics",
        lambda *a: (lambda v: {"val_r_precision": v, "val_ndcg": v, "val_clicks": 1.0})(next(curve)),
    )
    run = tmp_path / "run"
    args = [
        "--graph",
        gdir,
        "--out",
        str(run),
        "--epochs=3",
        "--patience=1",
        "--val_every=2",
        "--max_steps_per_epoch=3",
        *SMALL,
    ]
    result = train_from_args(args)
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r.get("step"), r["global_step"]) for r in records] == [(0, 2, 2), (0, None, 3), (1, 1, 4)]
    assert [r["val_r_precision"] for r in records] == [0.10, 0.30, 0.20]
    assert [r["best_step"] for r in records] == [2, 3, 3] and all(r["elapsed_s"] >= 0 for r in records)
    best = checkpoint.load(checkpoint.checkpoint_path(str(run), checkpoint.BEST))
    last = checkpoint.load(checkpoint.checkpoint_path(str(run)))
    assert (best["epoch"], best["step"], best["global_step"]) == (1, 0, 3)
    assert (last["epoch"], last["step"], last["global_step"]) == (1, 1, 4) and result.global_step == 4
    # resuming a stopped run trains no further and keeps the records
    again = train_from_args([*args, "--resume"])
    assert again.global_step == result.global_step
    assert (run / "metrics.jsonl").read_text().count("\n") == 3
