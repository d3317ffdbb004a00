"""The one place that reads rank, world size, device and backend, plus the few collectives the
training loop needs. The same code runs under ``python -m`` (world size 1, no process group) and
under ``torchrun`` (env:// rendezvous: RANK, WORLD_SIZE, LOCAL_RANK)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None     # None when running as a single process without a process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def setup(device: str = "auto") -> DistEnv:
    """Read the launcher's environment, pick the device, and join the process group if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda but torch.cuda.is_available() is False "
                           f"(torch {torch.__version__}); use device=cpu or auto")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    backend = None
    if world_size > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend, device_id=dev if use_cuda else None)
    return DistEnv(rank, local_rank, world_size, dev, backend)


def cleanup(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(env: DistEnv, values: list[float]) -> list[float]:
    """Element-wise sum of a list of numbers over ranks (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=env.device)
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_reduce_min(env: DistEnv, value: int) -> int:
    t = torch.tensor([value], dtype=torch.int64, device=env.device)
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def all_reduce_max(env: DistEnv, value: float) -> float:
    t = torch.tensor([value], dtype=torch.float64, device=env.device)
    if env.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def all_gather_cat(env: DistEnv, tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate a 1-D CPU tensor of any length from every rank, in rank order."""
    if not env.distributed:
        return tensor
    parts: list = [None] * env.world_size
    dist.all_gather_object(parts, tensor.cpu())
    return torch.cat(parts)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()
