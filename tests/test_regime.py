"""The training regime: what ``regime=auto`` picks for a graph's size, what it leaves to the user,
a run of the large-graph path on a tiny graph, and runs from before regimes resuming as trained."""

import json

import pytest
import torch
from graphdir_fixture import toy_graph_dir

from trainer import regime
from trainer.config import BATCH_FULL, LAYERS_FULL, ConfigError, TrainConfig
from trainer.io import checkpoint
from trainer.train import train_from_args

SMALL = ["--hidden=16", "--id_dim=8", "--loss_chunk=64", "--device=cpu", "--val_rank_playlists=20"]


@pytest.fixture(scope="module")
def gdir(tmp_path_factory):
    return toy_graph_dir(str(tmp_path_factory.mktemp("g") / "graph"), 200, seed=3)


def test_auto_keeps_the_standard_regime_up_to_the_size_rule():
    # an epoch supervises supervision_ratio (0.5) of the supervisable edges, in batches of 4,096
    at_rule = 2 * regime.MAX_STANDARD_STEPS * BATCH_FULL
    small = regime.for_graph(TrainConfig(), frozenset(), at_rule)
    assert small.regime == "standard" and small.val_every == 0
    large = regime.for_graph(TrainConfig(), frozenset(), at_rule + 2 * BATCH_FULL)
    assert large.regime == "large-graph" and large.val_every == regime.VAL_EVERY
    # the model and its batches stay today's
    assert (large.batch_size, large.layers) == (BATCH_FULL, LAYERS_FULL)
    # the full MPD on one rank (63.75M train edges and ~0.65M seeds): large-graph
    assert regime.for_graph(TrainConfig(), frozenset(), 64_400_000).regime == "large-graph"
    # what config.json records resolves to itself
    assert TrainConfig.from_dict(large.to_dict()) == large


def test_the_regime_leaves_the_keys_a_user_set():
    huge = 10**9
    mine = regime.for_graph(TrainConfig(val_every=7), frozenset({"val_every"}), huge)
    assert (mine.regime, mine.val_every) == ("large-graph", 7)
    assert regime.for_graph(TrainConfig(regime="standard"), frozenset({"regime"}), huge).val_every == 0
    # sampled training's small batches make long epochs too
    assert regime.for_graph(TrainConfig(conv="sage"), frozenset({"conv"}), 10**8).regime == "large-graph"
    forced = regime.for_graph(TrainConfig(regime="large-graph"), frozenset({"regime"}), 1000)
    assert forced.regime == "large-graph" and forced.val_every == regime.VAL_EVERY
    with pytest.raises(ConfigError, match="regime must be one of"):
        TrainConfig(regime="huge")


def test_a_large_graph_run_on_a_tiny_graph_records_what_it_chose(gdir, tmp_path):
    run = tmp_path / "run"
    result = train_from_args(
        ["--graph", gdir, "--out", str(run), "--regime=large-graph", "--epochs=2", "--patience=0", *SMALL]
    )
    config = json.loads((run / "config.json").read_text())
    assert config["regime"] == "large-graph" and config["val_every"] == regime.VAL_EVERY
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "step" not in r] == [0, 1]
    assert result.global_step == sum(r["steps"] for r in records if "step" not in r)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_a_run_from_before_regimes_resumes_as_it_was_trained(gdir, tmp_path):
    run = tmp_path / "run"
    train_from_args(["--graph", gdir, "--out", str(run), "--epochs=1", "--batch_size=256", *SMALL])
    path = checkpoint.checkpoint_path(str(run))
    old = checkpoint.load(path)
    for key in ("regime", "val_every", "val_selection"):  # what a checkpoint written before these keys holds
        del old["config"][key]
    checkpoint.save(path, old)
    again = train_from_args(["--graph", gdir, "--out", str(run), "--epochs=2", "--batch_size=256", "--resume", *SMALL])
    config = json.loads((run / "config.json").read_text())
    assert (config["regime"], config["val_selection"]) == ("standard", "all")
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1] and again.global_step == sum(r["steps"] for r in records)
