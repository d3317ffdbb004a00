"""Flag types every command shares (the ETL's and the trainer's): each number is checked as
argparse reads it, so a bad one is refused with the flag's name in one line (exit 2) before any
work starts."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

_MEMORY = re.compile(r"^[1-9][0-9]*[kmgt]?$", re.IGNORECASE)


def _at_least(convert, minimum, kind: str) -> Callable[[str], float]:
    """An argparse type: ``convert(text)``, finite and at least ``minimum``."""

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got {text}")
        return value

    parse.__name__ = f"{kind} >= {minimum:g}"
    return parse


def count(minimum: int = 1) -> Callable[[str], int]:
    """An integer of at least ``minimum``."""
    return _at_least(int, minimum, "an integer")


def number(minimum: float = 0.0) -> Callable[[str], float]:
    """A finite number of at least ``minimum``."""
    return _at_least(float, minimum, "a finite number")


def memory(text: str) -> str:
    """A JVM memory size as Spark takes it (``512m``, ``6g``): refused here, not by a JVM that
    fails to start."""
    if not _MEMORY.match(text):
        raise argparse.ArgumentTypeError(f"expected a size such as 512m or 6g, got {text!r}")
    return text


def memory_bytes(text: str) -> int:
    """Bytes of a JVM memory size as ``spark.driver.memory`` takes it (no suffix: MiB)."""
    text = text.strip().lower()
    unit = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}.get(text[-1:])
    return int(text[:-1]) * unit if unit else int(text) * 2**20
