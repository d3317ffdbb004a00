"""The process's set-up, called by each command: logging, glibc's allocator (arena cap, mmap
threshold) and peak memory. Huge pages for PyTorch's buffers are asked for earlier, by the
first import of each command (``trainer.hugepages``): torch reads that setting once."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import resource
import sys

M_ARENA_MAX, M_MMAP_THRESHOLD = -8, -3  # glibc's <malloc.h>
MMAP_THRESHOLD = 1 << 20


def _mallopt():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return None


def cap_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's heap arenas (``mallopt(M_ARENA_MAX)``); whether the cap was set.

    glibc gives each allocating thread an arena of its own, up to 8 per core. The step's large
    transient buffers (sampled batches, gloo's gathered sparse gradients) are then freed into
    several heaps that each keep their high-water mark. At 100k playlists (bench/RESULTS.md)
    this cap lowers the peak from 1,943-1,972 to 1,878-1,886 MiB for one process and from
    2,220-2,260 to 2,063-2,083 MiB per rank for two. Set here, it is late for the heap that
    imports already made; ``MALLOC_ARENA_MAX=1`` in the environment (launch/torchrun.sh sets
    it) applies from the first malloc: 1,934-1,999 MiB per rank. An environment setting wins;
    without glibc this does nothing.
    """
    mallopt = _mallopt()
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ or mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


def fix_mmap_threshold(nbytes: int = MMAP_THRESHOLD) -> bool:
    """Give every allocation of ``nbytes`` or more a mapping of its own, unmapped when freed
    (``mallopt(M_MMAP_THRESHOLD)``); whether it was set.

    glibc raises its threshold to the size of each mapped block freed, up to 32 MiB; from then
    a full-graph step's transients of 1-32 MiB (the loss chunks' masks, playlist-sized layer
    outputs; their sizes change every step) are carved from the heap, whose holes the next
    step's do not fit: at 100k playlists the trainer's peak grew step by step to 2.0-2.3 GiB;
    with this (and the huge pages trainer.hugepages asks for) it stays at 1.5 GiB, the step
    0.82x the time (bench/RESULTS.md; alone, the threshold costs a page fault per 4 KiB mapped:
    +25% per step). An environment setting (``MALLOC_MMAP_THRESHOLD_``) wins.
    """
    mallopt = _mallopt()
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, nbytes))


def configure_logging(is_main: bool = True) -> None:
    """INFO on rank 0, warnings and errors only on the other ranks (they would repeat rank 0)."""
    logging.basicConfig(
        level=logging.INFO if is_main else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
