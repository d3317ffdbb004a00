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
    # an epoch supervises supervision_ratio (0.5) of the supervisable edges
    at_rule = 2 * regime.MAX_STANDARD_STEPS * BATCH_FULL
    small = regime.for_graph(TrainConfig(), frozenset(), at_rule)
    assert small.regime == "standard" and small.batch_size == BATCH_FULL and small.layers == LAYERS_FULL
    assert small.val_every == 0
    large = regime.for_graph(TrainConfig(), frozenset(), at_rule + 2)
    assert large.regime == "large-graph" and large.layers == regime.LAYERS and len(large.fanout) == regime.LAYERS
    assert large.batch_size == -(-(at_rule + 2) // 2 // regime.STEPS_PER_EPOCH)
    assert large.val_every == regime.STEPS_PER_EPOCH // regime.VALIDATIONS_PER_EPOCH
    # the full MPD on one rank (63.75M train edges and ~0.65M seeds): an epoch of STEPS_PER_EPOCH
    # propagations, as the epoch's own batches count them
    pool = 64_400_000
    mpd = regime.for_graph(TrainConfig(), frozenset(), pool)
    assert -(-int(pool * mpd.supervision_ratio) // mpd.batch_size) == regime.STEPS_PER_EPOCH
    # what config.json records resolves to itself
    assert TrainConfig.from_dict(mpd.to_dict()) == mpd


def test_the_regime_leaves_the_keys_a_user_set_and_sampled_training_alone():
    huge = 10**9
    mine = regime.for_graph(TrainConfig(layers=6, batch_size=9000), frozenset({"layers", "batch_size"}), huge)
    assert (mine.regime, mine.layers, mine.batch_size) == ("large-graph", 6, 9000)
    assert regime.for_graph(TrainConfig(regime="standard"), frozenset({"regime"}), huge).batch_size == BATCH_FULL
    assert regime.for_graph(TrainConfig(conv="sage"), frozenset({"conv"}), huge).regime == "standard"
    forced = regime.for_graph(TrainConfig(regime="large-graph"), frozenset({"regime"}), 1000)
    assert forced.regime == "large-graph" and forced.batch_size == BATCH_FULL and forced.layers == regime.LAYERS
    with pytest.raises(ConfigError, match="regime must be one of"):
        TrainConfig(regime="huge")


def test_a_large_graph_run_on_a_tiny_graph_records_what_it_chose(gdir, tmp_path):
    run = tmp_path / "run"
    result = train_from_args(["--graph", gdir, "--out", str(run), "--regime=large-graph", "--epochs=2", "--patience=0", *SMALL])
    config = json.loads((run / "config.json").read_text())
    assert config["regime"] == "large-graph" and config["layers"] == regime.LAYERS
    assert config["val_every"] == regime.STEPS_PER_EPOCH // regime.VALIDATIONS_PER_EPOCH
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "step" not in r] == [0, 1]
    assert result.global_step == sum(r["steps"] for r in records if "step" not in r)
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_a_run_from_before_regimes_resumes_as_it_was_trained(gdir, tmp_path):
    run = tmp_path / "run"
    train_from_args(["--graph", gdir, "--out", str(run), "--epochs=1", "--batch_size=256", *SMALL])
    path = checkpoint.checkpoint_path(str(run))
    old = checkpoint.load(path)
    for key in ("regime", "val_every"):  # what a checkpoint written before these keys holds
        del old["config"][key]
    checkpoint.save(path, old)
    again = train_from_args(["--graph", gdir, "--out", str(run), "--epochs=2", "--batch_size=256", "--resume", *SMALL])
    assert json.loads((run / "config.json").read_text())["regime"] == "standard"
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1] and again.global_step == sum(r["steps"] for r in records)
