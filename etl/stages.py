"""Per-stage progress on stderr and timings for the manifest; a stop asked for (SIGTERM) is
honoured at the next stage boundary."""

import logging
import threading
import time
from contextlib import contextmanager

log = logging.getLogger("etl")

STOP = threading.Event()  # set by the command's SIGTERM handler


class Terminated(BaseException):
    """A stop asked for by SIGTERM: unwinds like Ctrl-C, so the pipeline's ``finally`` removes
    its staging dir; no ``except Exception`` swallows it."""


class Stages:
    """``with stages("read"): ...`` logs the stage's start and end and records its seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        if STOP.is_set():
            raise Terminated
        log.info("%s ...", name)
        start = time.perf_counter()
        yield
        if STOP.is_set():
            raise Terminated
        took = time.perf_counter() - start
        self.seconds[name] = round(self.seconds.get(name, 0.0) + took, 3)
        log.info("%s done in %.1f s", name, took)
