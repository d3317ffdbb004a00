"""Stored artefacts checked against the SHA-256 recorded when they were written: a damaged
checkpoint, embeddings export or ranker is named, never read."""

from __future__ import annotations

import hashlib
import logging

import fsspec

from trainer.io import storage

log = logging.getLogger(__name__)


class Damaged(ValueError):
    """A stored artefact whose bytes are not the ones recorded when it was written."""


def sha256(path: str) -> str:
    """The hex SHA-256 of the file at ``path``, streamed (a 1M-playlist checkpoint is gigabytes)."""
    digest = hashlib.sha256()
    with fsspec.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(
    path: str, recorded: str | None, remedy: str, error: type[Damaged] = Damaged, data: bytes | None = None
) -> None:
    """Check the file at ``path`` (or the ``data`` read from it) against the SHA-256 ``recorded``
    when it was written: ``error`` (a :class:`Damaged`), naming it and ``remedy``, when they
    differ; a warning when nothing was recorded (written by an earlier version): read unchecked."""
    if recorded is None:
        log.warning("%s has no recorded checksum (written by an earlier version): read unchecked", path)
        return
    found = sha256(path) if data is None else hashlib.sha256(data).hexdigest()
    if found != recorded:
        raise error(
            f"{path} is damaged: its SHA-256 is {found[:12]}..., not the {recorded[:12]}... recorded "
            f"when it was written ({storage.size(path):,} bytes now); {remedy}"
        )
