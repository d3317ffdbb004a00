"""The second-stage ranker as a run dir keeps it (``reranker/``), published whole: the booster
(``model.txt``), the ALS factors its features were computed from (a refit would give others:
ALS is not bit-reproducible), and ``identity.json``: the checkpoint behind the GNN's embeddings,
the graph, the retrievers' settings, the features, and what the build measured.

It is used only with what it was built from: another checkpoint's embeddings, another graph or
other features are refused by name.
"""

from __future__ import annotations

import hashlib

import numpy as np

from trainer.io import als_factors, checksum, storage
from trainer.io.run_dir import RANKER, RunMismatchError, graph_identity

MODEL = "model.txt"
FACTORS = "als_factors.npz"
IDENTITY = "identity.json"


def path(run: str, name: str = "") -> str:
    return storage.join(run, RANKER, name) if name else storage.join(run, RANKER)


def exists(run: str) -> bool:
    return storage.exists(path(run, IDENTITY))


def publish(run: str, model: str, factors: np.ndarray, factors_identity: dict, identity: dict) -> str:
    identity = {**identity, "model_sha256": hashlib.sha256(model.encode()).hexdigest()}

    def write(staging: str) -> None:
        storage.atomic_write_bytes(storage.join(staging, MODEL), model.encode())
        als_factors.save(storage.join(staging, FACTORS), factors, factors_identity)
        storage.atomic_write_json(storage.join(staging, IDENTITY), identity)  # last: the set is complete

    return storage.publish_dir(run, RANKER, write, marker=IDENTITY)


def read(
    run: str, checkpoint_id: str | None, manifest: dict, title: str, features_version: int
) -> tuple[str, np.ndarray, dict]:
    """The booster's text, the ALS factors and the identity, once checked against the run's
    embeddings (``checkpoint_id``), the graph in use, the title model's ``title`` source and what
    the features mean (``features_version``)."""
    recorded = storage.read_json(path(run, IDENTITY)) if exists(run) else None
    if recorded is None:
        raise FileNotFoundError(
            f"--methods rerank: no ranker in {path(run)}/; build it with python -m trainer.rerank "
            f"--graph GRAPH --run {run}, or leave rerank out of --methods"
        )
    if recorded["checkpoint_id"] != checkpoint_id:
        raise RunMismatchError(
            f"{path(run)} was built on the embeddings of checkpoint {recorded['checkpoint_id']}, the run's are "
            f"now of {checkpoint_id}: build it again (python -m trainer.rerank --graph GRAPH --run {run})"
        )
    if recorded["graph"] != graph_identity(manifest):
        raise RunMismatchError(
            f"{path(run)} was built on another graph ({recorded['graph']}); build it again on this one"
        )
    if recorded.get("title") != title:  # its features include the title model's scores
        raise RunMismatchError(
            f"{path(run)} was built with the title model {recorded.get('title', 'training')!r}, this one is "
            f"{title!r}: build it again (python -m trainer.rerank --graph GRAPH --run {run})"
        )
    if recorded.get("features_version", 1) != features_version:  # the same names, computed otherwise
        raise RunMismatchError(
            f"{path(run)} was built on features of version {recorded.get('features_version', 1)}, these are of "
            f"version {features_version}: build it again (python -m trainer.rerank --graph GRAPH --run {run})"
        )
    with storage.open_file(path(run, MODEL), "rb") as f:
        data = f.read()
    checksum.verify(
        path(run, MODEL),
        recorded.get("model_sha256"),
        f"build it again (python -m trainer.rerank --graph GRAPH --run {run})",
        data=data,
    )
    model = data.decode()
    factors = als_factors.load(path(run, FACTORS), recorded["als_factors"])
    if factors is None:
        raise RunMismatchError(
            f"{path(run, FACTORS)} is missing or not the fit the ranker was built with; build it again"
        )
    return model, factors, recorded
