"""Divergence guards: a model whose loss, parameters or validation scores stop being finite
numbers is never stepped, selected, saved or exported; the error names what broke and what to do."""

from __future__ import annotations

import math

import torch

from trainer.config import TrainConfig


class TrainingDiverged(RuntimeError):
    """The loss, the parameters or the validation scores stopped being finite numbers."""

    @classmethod
    def at(cls, what: str, config: TrainConfig, run_path: str) -> TrainingDiverged:
        return cls(
            f"{what} (lr={config.lr}, embedding_lr={config.embedding_lr}): training diverged; lower the "
            f"learning rates. {run_path} keeps the last finite checkpoint, if any; start afresh "
            "(--overwrite, or another --out)"
        )


def check_metrics(values: dict, epoch: int, config: TrainConfig, run_path: str) -> None:
    """Finite parameters can still overflow in the forward pass: validation metrics say so."""
    diverged = [k for k, v in values.items() if k.startswith("val_") and v is not None and not math.isfinite(v)]
    if diverged:
        raise TrainingDiverged.at(f"epoch {epoch}: the model's validation {diverged} are not finite", config, run_path)


def check_parameters(model, epoch: int, step: int, config: TrainConfig, run_path: str) -> None:
    """Raise :class:`TrainingDiverged` when a parameter is no longer a finite number."""
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise TrainingDiverged.at(
            f"epoch {epoch}, step {step}: parameters {bad[:3]}{' ...' if len(bad) > 3 else ''} are no longer finite",
            config,
            run_path,
        )
