"""The trainer on a CUDA device: the same loss and gradients as on CPU, training end to end in
fp32 and bf16, and a checkpoint written on the GPU that embeds the same on CPU.

Skipped where torch sees no CUDA device (CI has none); ``bench/gpu_check.sh`` runs this file on
a GPU machine.
"""

import copy
import json

import pytest
import torch
from graphdir_fixture import toy_graph_dir

from trainer import dist
from trainer.config import TrainConfig
from trainer.gnn.full_graph import FullGraphTraining
from trainer.gnn.inference import encode_all, load_trained
from trainer.gnn.losses import candidate_log_frequency
from trainer.gnn.model import build_model
from trainer.gnn.sampled import SampledTraining, epoch_loader
from trainer.io.graph import load_graph
from trainer.train import train_from_args

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMALL = ["--hidden=16", "--id_dim=8", "--fanout=5,5,3", "--batch_size=64"]


@pytest.fixture(scope="module")
def gdir(tmp_path_factory):
    return toy_graph_dir(str(tmp_path_factory.mktemp("g") / "graph"), 300, seed=3)


def _model_and_frequency(graph, config):
    torch.manual_seed(1)
    # Dense ID-embedding gradients on both sides, as the CUDA trainer uses.
    model = build_model(
        config, graph.metadata(), {t: x.size(1) for t, x in graph.x.items()}, graph.num_nodes, sparse_embeddings=False
    )
    frequency = candidate_log_frequency(
        graph.train_edges, graph.num_nodes["track"], config.batch_size, config.negatives, config.negative_power
    )
    return model, frequency


@pytest.mark.parametrize("loss", ["softmax", "bpr", "bce"])
def test_batch_loss_and_gradients_on_cuda_equal_cpu(gdir, loss):
    config = TrainConfig(hidden=16, id_dim=8, fanout=(5, 5, 3), batch_size=64, loss=loss)
    graph = load_graph(gdir)
    cpu = dist.DistEnv(0, 0, 1, torch.device("cpu"), None)
    torch.manual_seed(0)
    batch = next(iter(epoch_loader(graph, config, cpu, epoch=0)))
    model, frequency = _model_and_frequency(graph, config)
    results = {}
    for device in ("cpu", "cuda"):
        m = copy.deepcopy(model).to(device)
        env = dist.DistEnv(0, 0, 1, torch.device(device), None)
        value, terms, positives = SampledTraining(graph, config, env, frequency.to(device)).loss(
            m, copy.copy(batch).to(device), amp=False
        )
        value.backward()
        results[device] = (value.item(), terms, positives, {n: p.grad.detach().cpu() for n, p in m.named_parameters()})
    (l_cpu, t_cpu, p_cpu, g_cpu), (l_gpu, t_gpu, p_gpu, g_gpu) = results["cpu"], results["cuda"]
    assert (t_cpu, p_cpu) == (t_gpu, p_gpu)
    assert l_gpu == pytest.approx(l_cpu, rel=1e-4, abs=1e-5)
    for name, grad in g_cpu.items():
        torch.testing.assert_close(g_gpu[name], grad, rtol=1e-3, atol=1e-5, msg=f"gradient of {name}")


@pytest.mark.parametrize("amp", [False, True])
def test_trains_on_cuda_and_embeds_alike_on_cpu(gdir, tmp_path, amp):
    run = tmp_path / "run"
    train_from_args(
        [
            "--graph",
            gdir,
            "--out",
            str(run),
            "--epochs=3",
            "--max_steps_per_epoch=8",
            "--device=cuda",
            f"--amp={amp}",
            *SMALL,
        ]
    )
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    for r in records:
        assert r["train_loss"] == pytest.approx(r["train_loss"]) and r["train_loss"] > 0  # finite
        assert 0 <= r["val_auc"] <= 1
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    graph = load_graph(gdir)
    on_gpu = encode_all(load_trained(str(run), graph, "cuda")[0], graph, 128, "cuda")
    on_cpu = encode_all(load_trained(str(run), graph, "cpu")[0], graph, 128, "cpu")
    for t in on_cpu:
        torch.testing.assert_close(on_gpu[t], on_cpu[t], rtol=1e-3, atol=1e-4, msg=f"{t} embeddings")


def test_full_graph_loss_and_gradients_on_cuda_equal_cpu(gdir):
    config = TrainConfig(hidden=16, id_dim=8, batch_size=128, loss_chunk=64)
    graph = load_graph(gdir)
    model, frequency = _model_and_frequency(graph, config)
    results = {}
    for device in ("cpu", "cuda"):
        m = copy.deepcopy(model).to(device)
        training = FullGraphTraining(
            graph, config, dist.DistEnv(0, 0, 1, torch.device(device), None), frequency.to(device)
        )
        training.start_epoch(0)
        batch = next(training.batches(1))
        # The same edges and negatives on both devices (CUDA draws its own random numbers).
        if device == "cpu":
            drawn = batch
        batch.negative = drawn.negative.to(device)
        value, _, _ = training.loss(m, batch, amp=False)
        value.backward()
        results[device] = (value.item(), {n: p.grad.detach().cpu() for n, p in m.named_parameters()})
    assert results["cuda"][0] == pytest.approx(results["cpu"][0], rel=1e-4, abs=1e-5)
    for name, grad in results["cpu"][1].items():
        torch.testing.assert_close(results["cuda"][1][name], grad, rtol=1e-3, atol=1e-5, msg=f"gradient of {name}")


def test_full_graph_trains_on_cuda(gdir, tmp_path):
    run = tmp_path / "run"
    train_from_args(
        [
            "--graph",
            gdir,
            "--out",
            str(run),
            "--epochs=3",
            "--device=cuda",
            "--propagation=full",
            "--hidden=16",
            "--id_dim=8",
            "--batch_size=512",
            "--val_rank_playlists=50",
        ]
    )
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert all(0 <= r["val_r_precision"] <= 1 and r["peak_gpu_mb"] > 0 for r in records)
