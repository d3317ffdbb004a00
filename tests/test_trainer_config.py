"""Config: defaults, overrides, and errors that name the problem."""

import json

import pytest

from trainer.config import LAYERS_FULL, ConfigError, TrainConfig, parse_overrides, resolve
from trainer.train import train_from_args


def test_defaults_are_valid_and_round_trip():
    c = TrainConfig()
    assert c.layers == LAYERS_FULL and len(c.fanout) == c.layers
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize(
    "given, layers, fanout",
    [
        ({}, LAYERS_FULL, (30, 10, 5) + (5,) * (LAYERS_FULL - 3)),
        ({"conv": "sage"}, 3, (30, 10, 5)),  # the seed notebook's 3-layer SAGE
        ({"propagation": "sampled"}, 3, (30, 10, 5)),  # sampled hops multiply the neighbourhood
        ({"fanout": (5, 5, 3)}, 3, (5, 5, 3)),  # one fan-out per layer: the fan-out sets the depth
        ({"layers": 2}, 2, (30, 10)),
        ({"layers": 4, "conv": "sage"}, 4, (30, 10, 5, 5)),
    ],
)
def test_auto_depth_and_fanout(given, layers, fanout):
    c = TrainConfig(**given)
    assert (c.layers, c.fanout) == (layers, fanout)


def test_command_line_overrides_are_typed():
    c = resolve(None, parse_overrides(["--lr=0.01", "--epochs", "2", "--fanout=4,3,2", "--amp=true", "--loss", "bpr"]))
    assert (c.lr, c.epochs, c.fanout, c.amp, c.loss) == (0.01, 2, (4, 3, 2), True, "bpr")


def test_file_then_command_line(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"hidden": 16, "epochs": 5}))
    c = resolve(str(f), {"epochs": "1"})
    assert (c.hidden, c.epochs) == (16, 1)


def test_unknown_key_is_named_with_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key\(s\) \['hiden'\]; valid keys are \[.*'hidden'"):
        resolve(None, {"hiden": "3"})


def test_unknown_key_in_file_names_the_file(tmp_path):
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"learning_rate": 0.1}))
    with pytest.raises(ConfigError, match=r"c\.json: unknown config key\(s\) \['learning_rate'\]"):
        resolve(str(f), {})


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"fanout": "10,10", "layers": "3"}, r"fanout has 2 entries \[10, 10\] but layers=3"),
        ({"layers": "-1"}, r"layers must be > 0 \(or 0 for auto\), got -1"),
        ({"loss": "mse"}, r"loss must be bce, bpr, softmax or full_softmax, got 'mse'"),
        ({"supervision_ratio": "1.5"}, r"supervision_ratio must be in \(0, 1\), got 1.5"),
        ({"epochs": "two"}, r"epochs='two' is not a valid int"),
        ({"amp": "maybe"}, r"amp='maybe' is not a valid bool"),
        ({"device": "tpu"}, r"device must be auto, cpu or cuda, got 'tpu'"),
        ({"conv": "gat"}, r"conv must be sage or lightgcn, got 'gat'"),
        ({"temperature": "-0.1"}, r"temperature must be >= 0, got -0.1"),
    ],
)
def test_bad_values_are_explained(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(None, overrides)


def test_entry_point_rejects_unknown_key_before_touching_data(tmp_path):
    with pytest.raises(ConfigError, match=r"\['batchsize'\]; valid keys are"):
        train_from_args(["--graph", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"), "--batchsize=3"])
    assert not (tmp_path / "run").exists()


def test_command_line_errors_are_one_line_not_a_traceback(tmp_path):
    import subprocess
    import sys

    from graphdir_fixture import REPO_ROOT

    proc = subprocess.run(
        [sys.executable, "-m", "trainer.train", "--graph", str(tmp_path), "--out", str(tmp_path / "run"), "--lrr=3"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "error: command line: unknown config key(s) ['lrr']; valid keys are" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "key, value",
    [
        ("lr", "inf"),
        ("lr", "nan"),
        ("lr", "-inf"),
        ("embedding_lr", "inf"),
        ("temperature", "nan"),
        ("supervision_ratio", "inf"),
    ],
)
def test_non_finite_numbers_are_refused_by_name(key, value):
    with pytest.raises(ConfigError, match=rf"{key} must be a finite number, got -?{value.lstrip('-')}"):
        TrainConfig.from_dict({key: value})
