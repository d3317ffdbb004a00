"""Distribution, in one place for every command: rank, world size, device and backend, and the
few collectives the training loop needs. The same code runs under ``python -m`` (world size 1,
no process group) and under ``torchrun`` (env:// rendezvous: RANK, WORLD_SIZE, LOCAL_RANK).
The process's own set-up (logging, allocator, peak memory) is ``trainer.process``."""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ErrorHandler
from torch.distributed.elastic.multiprocessing.errors import record as _record

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None  # None when running as a single process without a process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


class DeviceError(RuntimeError):
    """The device asked for is not there."""


def pick_device(choice: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this rank's GPU when CUDA is available, else the CPU; ``cuda`` without CUDA fails."""
    if choice not in DEVICES:
        raise DeviceError(f"device must be one of {DEVICES}, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"device=cuda but torch.cuda.is_available() is False (torch {torch.__version__}); use device=cpu or auto"
        )
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    torch.cuda.set_device(dev)
    return dev


def launched_rank() -> int:
    """This process's rank as the launcher set it (0 without one): read before any set-up."""
    return int(os.environ.get("RANK", "0"))


def setup(device: str = "auto", timeout: timedelta | None = None) -> DistEnv:
    """Read the launcher's environment, pick the device, and join the process group if any;
    ``timeout``: how long a collective may wait (torch's default when None)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = launched_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    use_cuda = dev.type == "cuda"
    backend = None
    if world_size > 1:
        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(
                backend, device_id=dev if use_cuda else None, timeout=timeout, **_attempt_store(rank, world_size)
            )
    return DistEnv(rank, local_rank, world_size, dev, backend)


def from_rank_0(make, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``make()`` (a float32 CPU tensor of ``shape``) computed by rank 0 alone and sent to every
    rank; simply ``make()`` without a process group."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return make()
    on = device if dist.get_backend() == "nccl" else torch.device("cpu")  # NCCL moves only GPU tensors
    out = make().to(on) if dist.get_rank() == 0 else torch.empty(shape, dtype=torch.float32, device=on)
    dist.broadcast(out, src=0)
    return out.cpu()


def _attempt_store(rank: int, world_size: int) -> dict:
    """Under torchrun, the agent's store with a prefix of this restart attempt's own.

    After a restart (``--max-restarts``) with env:// rendezvous, gloo read peer addresses that the
    killed attempt had published (the restarted ranks refused each other's connections: "Gloo
    connectFullMesh failed ... Connection refused"); keys of their own make every attempt start clean.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return {}
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False)
    return {"store": dist.PrefixStore(f"/mpd/attempt_{attempt}", store), "rank": rank, "world_size": world_size}


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


class _WholeErrorFile(ErrorHandler):
    """torchrun's per-rank error file, written to a temporary name and renamed: the launcher reads
    it when the rank exits, and a rank stopped mid-write (the launcher's SIGTERM after a peer
    died) left it empty, which crashed the launcher with a JSONDecodeError instead of restarting."""

    def record_exception(self, e: BaseException) -> None:
        path = self._get_error_file_path()
        if not path:
            return
        data = {
            "message": {
                "message": f"{type(e).__name__}: {e}",
                "extraInfo": {"py_callstack": traceback.format_exc(), "timestamp": str(int(time.time()))},
            }
        }
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)


def record(fn):
    """torchrun's ``@record`` (the failing rank's error in the launcher's summary), written whole."""
    return _record(fn, error_handler=_WholeErrorFile())
