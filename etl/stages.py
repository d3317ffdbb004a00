"""Per-stage progress on stderr and timings for the manifest."""
import logging
import time
from contextlib import contextmanager

log = logging.getLogger("etl")


class Stages:
    """``with stages("read"): ...`` logs the stage's start and end and records its seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        log.info("%s ...", name)
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start
        self.seconds[name] = round(self.seconds.get(name, 0.0) + took, 3)
        log.info("%s done in %.1f s", name, took)
