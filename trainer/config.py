"""The trainer's one config: a frozen, validated dataclass, overridable from a JSON file and the
command line (``--key=value``). Unknown keys are errors that list the valid ones."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
from dataclasses import dataclass, fields
from typing import Any

import fsspec

BATCH_FULL = 4096  # full-graph training's default batch (bench/RESULTS.md, "Real data")
# Full-graph (LightGCN) training's default depth: on real playlists each layer up to 6 ranked
# better (val R-precision, mean of 3 seeds: 3 layers 0.1147, 4: 0.1173, 5: 0.1189, 6: 0.1212)
# and overfit later (bench/RESULTS.md, "Real data: deeper propagation").
LAYERS_FULL = 6
REGIMES = ("auto", "standard", "large-graph")
# Keys added after runs were written, and the value that reproduces what those runs did: a
# resumed run whose config.json lacks one is compared against it.
EARLIER_RUNS = {"val_every": 0, "regime": "standard", "val_selection": "all"}
LAYERS_SAMPLED = 3  # the seed notebook's depth: every sampled hop multiplies a batch's neighbourhood
FANOUT = (30, 10, 5)  # sampled neighbours of the first hops; 5 for each further one


class ConfigError(ValueError):
    """A config key or value is invalid."""


@dataclass(frozen=True)
class TrainConfig:
    # fmt: off
    # model
    hidden: int = 64                      # width of every layer
    layers: int = 0                       # message-passing layers (to_hetero); 0: auto (len(fanout) if given, else LAYERS_FULL for propagation=full, LAYERS_SAMPLED for sampled)
    conv: str = "lightgcn"                # sage (SAGEConv + ReLU) | lightgcn (parameter-free mean, linear)
    aggr: str = "mean"                    # SAGEConv neighbour aggregation (conv=sage only): mean | sum | max
    id_embeddings: bool = True            # learnable ID embeddings for tracks, albums, artists
    playlist_ids: bool = True             # and for playlists (zero-initialised; trained through their visible tracks)
    id_dim: int = 32                      # their width (concatenated to the features)
    id_init_std: float = 0.1              # initial spread of ID embeddings
    layer_mean: bool = True               # decode the mean of all layers' outputs (LightGCN-style)
    temperature: float = 0.1              # > 0: score = cosine / temperature; 0: plain dot product
    track_bias: bool = True               # add a learned per-track prior (from its input projection) to the score
    # training graph and loss
    propagation: str = "auto"             # full (whole graph propagated on the device every step; lightgcn only) | sampled (LinkNeighborLoader) | auto (full for lightgcn, sampled for sage)
    fanout: tuple[int, ...] = ()          # propagation=sampled: neighbours per layer and relation, seed hop first; (): auto, FANOUT cut or extended by 5s to `layers`
    sampler: str = "auto"                 # propagation=sampled: torch_sparse (PyG's NeighborSampler, on the CPU) | device (trainer/gnn/neighbor_sampler.py, on the graph's device) | auto (device)
    batch_size: int = 0                   # supervision edges per step and rank; 0: auto (sampled 256, full BATCH_FULL)
    loss_chunk: int = 1024                # propagation=full: positives per softmax, each chunk against its own candidates (a step scores batch_size positives)
    negatives: int = 10                   # sampled negatives per positive
    negative_power: float = 0.0           # negatives drawn with P(track) ~ (degree+1)^power; 0: uniform
    loss: str = "softmax"                 # softmax (over the batch's tracks) | full_softmax (over every track; propagation=full) | bpr | bce (on triplets: playlist, positive, negatives)
    supervision_ratio: float = 0.5        # fraction of train edges supervised (and hidden from message passing) each epoch
    supervise_seeds: bool = True          # held-out playlists' seed edges are supervised too (their seeds are the query, as ALS folds them in); never their hidden tracks
    # optimisation
    lr: float = 1e-2                      # Adam learning rate of the dense weights
    embedding_optimizer: str = "rowwise_adagrad"  # ID embeddings: rowwise_adagrad (one float of state per row) | adam (SparseAdam on CPU)
    embedding_lr: float = 0.1             # their learning rate (0: lr)
    weight_decay: float = 0.0             # L2 penalty of the dense weights (Adam)
    epochs: int = 40                      # at most; patience usually stops the run first
    max_steps_per_epoch: int = 0          # 0: the whole shard
    seed: int = 0                         # every random draw of the run derives from it (trainer/gnn/shards.py: mix)
    # validation
    val_max_edges: int = 20000            # hidden val edges scored per epoch for val_loss/val_auc (0: all)
    val_rank_playlists: int = 1000        # seeded val playlists ranked over the full catalogue after each epoch (0: none); selects the best checkpoint
    patience: int = 4                     # stop after this many validations without a better val R-precision (0, or val_rank_playlists=0: train every epoch)
    val_selection: str = "half"           # half: rank-validate (select) on one half of the val playlists (trainer/gnn/shards.py: selection_half), the second-stage ranker (trainer.rerank) trains on the other | all: every val playlist
    val_every: int = 0                    # also rank-validate (select, checkpoint, count patience) every N steps within an epoch (0: at epoch ends only)
    regime: str = "auto"                  # standard | large-graph (ranking validation, selection and patience every 20 steps within the epoch) | auto: large-graph when a rank's epoch is over 2,000 steps (a few hundred thousand playlists), else standard; resolved once the graph is loaded, config.json records it and the keys it chose (trainer/regime.py)
    # runtime
    device: str = "auto"                  # auto | cpu | cuda
    amp: bool = False                     # bf16 autocast (CUDA only)
    num_workers: int = -1                 # loader worker processes per rank; -1: auto (CPU: one if the rank has a spare core; CUDA: every spare core, at most 16)
    checkpoint_every: int = 0             # also checkpoint every N steps (0: per epoch only)
    malloc_arenas: int = 1                # glibc heap arenas per process (0: glibc's default, 8 per core)
    # fmt: on

    def __post_init__(self):
        def need(ok: bool, msg: str):
            if not ok:
                raise ConfigError(msg)

        for f in fields(self):  # inf passes every "> 0" below, and nan fails them without saying why
            value = getattr(self, f.name)
            need(not isinstance(value, float) or math.isfinite(value), f"{f.name} must be a finite number, got {value}")
        need(self.hidden > 0, f"hidden must be > 0, got {self.hidden}")
        need(self.conv in ("sage", "lightgcn"), f"conv must be sage or lightgcn, got {self.conv!r}")
        need(
            self.propagation in ("auto", "full", "sampled"),
            f"propagation must be auto, full or sampled, got {self.propagation!r}",
        )
        need(
            not (self.propagation == "full" and self.conv == "sage"),
            "propagation=full needs conv=lightgcn (parameter-free layers); use propagation=sampled with conv=sage",
        )
        if self.propagation == "auto":  # resolved here, so config.json says what ran
            object.__setattr__(self, "propagation", "full" if self.conv == "lightgcn" else "sampled")
        need(self.layers >= 0, f"layers must be > 0 (or 0 for auto), got {self.layers}")
        if self.layers == 0:
            auto = LAYERS_FULL if self.propagation == "full" else LAYERS_SAMPLED
            object.__setattr__(self, "layers", len(self.fanout) or auto)
        if not self.fanout:
            object.__setattr__(self, "fanout", (FANOUT + (5,) * self.layers)[: self.layers])
        need(
            self.sampler in ("auto", "torch_sparse", "device"),
            f"sampler must be auto, torch_sparse or device, got {self.sampler!r}",
        )
        if self.sampler == "auto":
            # device on CUDA (torch-sparse samples on the CPU only), and on CPU too: 5.3x the
            # batches/s of torch-sparse at the default fan-out on a 10k-playlist graph, one core
            # each (bench/RESULTS.md, "Device-resident neighbour sampler (CPU)").
            object.__setattr__(self, "sampler", "device")
        need(self.aggr in ("mean", "sum", "max"), f"aggr must be mean, sum or max, got {self.aggr!r}")
        need(self.id_dim > 0, f"id_dim must be > 0, got {self.id_dim}")
        need(self.id_init_std > 0, f"id_init_std must be > 0, got {self.id_init_std}")
        need(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        need(
            len(self.fanout) == self.layers,
            f"fanout has {len(self.fanout)} entries {list(self.fanout)} but layers={self.layers};"
            " give one fan-out per layer",
        )
        need(
            all(f == -1 or f > 0 for f in self.fanout),
            f"fanout entries must be positive (or -1 for all neighbours), got {list(self.fanout)}",
        )
        need(self.batch_size >= 0, f"batch_size must be > 0 (or 0 for auto), got {self.batch_size}")
        if self.batch_size == 0:  # a full-graph step propagates the whole graph: amortise it over many edges
            object.__setattr__(self, "batch_size", BATCH_FULL if self.propagation == "full" else 256)
        need(self.loss_chunk > 0, f"loss_chunk must be > 0, got {self.loss_chunk}")
        need(self.negatives > 0, f"negatives must be > 0, got {self.negatives}")
        need(0 <= self.negative_power <= 1, f"negative_power must be in [0, 1], got {self.negative_power}")
        need(
            self.loss in ("bce", "bpr", "softmax", "full_softmax"),
            f"loss must be bce, bpr, softmax or full_softmax, got {self.loss!r}",
        )
        need(
            not (self.loss == "full_softmax" and self.propagation != "full"),
            "loss=full_softmax needs propagation=full (every track's readout each step); use loss=softmax",
        )
        need(0 < self.supervision_ratio < 1, f"supervision_ratio must be in (0, 1), got {self.supervision_ratio}")
        need(self.lr > 0, f"lr must be > 0, got {self.lr}")
        need(
            self.embedding_optimizer in ("adam", "rowwise_adagrad"),
            f"embedding_optimizer must be adam or rowwise_adagrad, got {self.embedding_optimizer!r}",
        )
        need(self.embedding_lr >= 0, f"embedding_lr must be >= 0 (0: lr), got {self.embedding_lr}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.epochs > 0, f"epochs must be > 0, got {self.epochs}")
        need(self.max_steps_per_epoch >= 0, f"max_steps_per_epoch must be >= 0, got {self.max_steps_per_epoch}")
        need(self.val_max_edges >= 0, f"val_max_edges must be >= 0, got {self.val_max_edges}")
        need(self.val_rank_playlists >= 0, f"val_rank_playlists must be >= 0, got {self.val_rank_playlists}")
        need(self.patience >= 0, f"patience must be >= 0, got {self.patience}")
        need(self.val_selection in ("half", "all"), f"val_selection must be half or all, got {self.val_selection!r}")
        need(self.device in ("auto", "cpu", "cuda"), f"device must be auto, cpu or cuda, got {self.device!r}")
        need(self.num_workers >= -1, f"num_workers must be >= 0, or -1 for auto, got {self.num_workers}")
        need(self.malloc_arenas >= 0, f"malloc_arenas must be >= 0, got {self.malloc_arenas}")
        need(self.regime in REGIMES, f"regime must be one of {list(REGIMES)}, got {self.regime!r}")
        need(self.val_every >= 0, f"val_every must be >= 0 (0: at epoch ends only), got {self.val_every}")
        need(self.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {self.checkpoint_every}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["fanout"] = list(self.fanout)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> "TrainConfig":
        """Build from a mapping of raw (JSON or string) values, checking every key."""
        types = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ConfigError(f"{where}: unknown config key(s) {unknown}; valid keys are {sorted(types)}")
        return cls(**{k: _coerce(k, types[k], v, where) for k, v in values.items()})


def describe() -> list[tuple[str, str, str]]:
    """``(key, default, description)`` of every config key, the description being the comment
    beside the key in :class:`TrainConfig` (one place documents a key; ``--help`` shows it)."""
    comments = dict(re.findall(r"^    (\w+): [^=]+= .*?#\s*(.*)$", inspect.getsource(TrainConfig), re.M))

    def shown(v):  # as typed on the command line
        return ",".join(map(str, v)) if isinstance(v, tuple) else str(v).lower() if isinstance(v, bool) else str(v)

    return [(f.name, shown(f.default), comments.get(f.name, "")) for f in fields(TrainConfig)]


def help_text() -> str:
    """Every config key, its default and what it does, for ``--help``."""
    width = max(len(f"--{k}={d}") for k, d, _ in describe())
    return "config keys (--key=value, or a JSON file with --config):\n" + "\n".join(
        f"  {f'--{k}={d}':<{width}}  {text}" for k, d, text in describe()
    )


def _coerce(key: str, type_name: str, value: Any, where: str) -> Any:
    try:
        if type_name == "bool":
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes", "on"):
                return True
            if str(value).lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if type_name == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if type_name == "float":
            return float(value)
        if type_name == "str":
            return str(value)
        if type_name.startswith("tuple"):
            if isinstance(value, str):
                value = json.loads(value) if value.strip().startswith("[") else value.split(",")
            return tuple(int(v) for v in value)
    except (TypeError, ValueError, json.JSONDecodeError):
        raise ConfigError(f"{where}: {key}={value!r} is not a valid {type_name}") from None
    raise AssertionError(f"unhandled config type {type_name}")


def parse_overrides(tokens: list[str]) -> dict[str, str]:
    """``['--lr=0.01', '--epochs', '2']`` -> ``{'lr': '0.01', 'epochs': '2'}``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or tok == "--":
            raise ConfigError(f"unexpected argument {tok!r}; config overrides look like --key=value")
        if "=" in tok:
            key, value = tok[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise ConfigError(f"{tok} needs a value (--key=value)")
            key, value = tok[2:], tokens[i + 1]
            i += 2
        out[key.replace("-", "_")] = value
    return out


def resolve(config_file: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults, then the JSON file, then command-line overrides."""
    return TrainConfig.from_dict(
        given_values(config_file, overrides), where="config" if not overrides else "command line"
    )


def given_values(config_file: str | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """The keys a user set (the JSON file's, then the command line's), checked; what a regime
    (``trainer.regime``) leaves alone."""
    values: dict[str, Any] = {}
    if config_file:
        with fsspec.open(config_file, "r") as f:
            try:
                values = json.load(f)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{config_file}: not valid JSON ({e})") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{config_file}: expected a JSON object of config keys")
        TrainConfig.from_dict(values, where=config_file)  # name the file in errors
    values.update(overrides)
    return values
