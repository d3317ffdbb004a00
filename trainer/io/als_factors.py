"""ALS track factors kept in the run dir (``als_factors.npz``), so that evaluate, submit and
recommend fit ALS once per graph and settings, not once per call (a fit is ~20 min at 1M
playlists on 2 cores).

The factors and what they were fitted on (the graph's identity, the ALS settings) travel in one
file written in one atomic step; a stored fit of another graph or other settings is refitted and
replaced, never used. A fit is not bit-reproducible (implicit runs its threads in any order), so
reusing it is also what keeps two calls' ALS answers the same.
"""

from __future__ import annotations

import io
import json
import logging
import zipfile

import numpy as np

from trainer.io import storage
from trainer.io.run_dir import ALS_FACTORS as FILE
from trainer.io.run_dir import graph_identity

log = logging.getLogger(__name__)

# Settings that change the factors; num_threads changes only how fast they come.
_NOT_IDENTITY = {"num_threads"}


def identity(manifest: dict, params: dict) -> dict:
    """What a fit depends on: the graph (not its path: a moved graph dir is the same graph) and
    the ALS settings."""
    fitted_on = {"graph": graph_identity(manifest), "als": {k: v for k, v in params.items() if k not in _NOT_IDENTITY}}
    return json.loads(json.dumps(fitted_on, sort_keys=True))  # as it reads back from the file


def load(path: str, wanted: dict) -> np.ndarray | None:
    """The factors stored at ``path`` when they were fitted on ``wanted`` (see :func:`identity`),
    else None."""
    if not storage.exists(path):
        return None
    try:
        with storage.open_file(path) as f:
            stored = np.load(io.BytesIO(f.read()))
            found = json.loads(str(stored["identity"]))
            factors = stored["item_factors"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # BadZipFile: a CRC-32 that does not match
        log.warning("ALS factors in %s unreadable (%s): fitting again", path, e)
        return None
    if found != wanted:
        changed = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        log.info("ALS factors in %s were fitted on another %s: fitting again", path, " and ".join(changed))
        return None
    log.info("ALS factors from %s (%d tracks x %d factors)", path, *factors.shape)
    return factors


def save(path: str, factors: np.ndarray, fitted_on: dict) -> None:
    """Store ``factors`` with their identity at ``path``, replacing any earlier fit in one step."""
    buf = io.BytesIO()
    np.savez(
        buf,
        item_factors=np.ascontiguousarray(factors, dtype=np.float32),
        identity=np.array(json.dumps(fitted_on, sort_keys=True)),
    )
    storage.atomic_write_bytes(path, buf.getvalue())


def fitted(run: str, manifest: dict, params: dict, fit) -> np.ndarray:
    """The factors stored in ``run`` for this graph and these settings, or ``fit()``'s, stored."""
    wanted, path = identity(manifest, params), storage.join(run, FILE)
    factors = load(path, wanted)
    if factors is None:
        factors = np.asarray(fit(), dtype=np.float32)
        try:
            save(path, factors, wanted)
        except OSError as e:  # a run dir that cannot be written costs only the reuse
            log.warning("ALS factors not stored in %s (%s): the next call fits them again", path, e)
    return factors
