"""Export track and playlist embeddings of a trained run as Parquet:
``python -m trainer.embed --graph DIR --run RUN_DIR [--batch-size B]``.

Writes ``RUN_DIR/embeddings/`` (``trainer/io/embeddings.py``) from the run's final checkpoint
(``checkpoints/best.pt``, the epoch training selected by val R-precision, else ``last.pt``),
embedding every node on the full visible graph (``trainer/gnn/inference.py``).
"""

from __future__ import annotations

import trainer.hugepages  # noqa: F401  (first, before torch: it asks torch for huge pages)

# isort: split

import json
import sys

import torch

from etl import contract
from trainer import cli, dist
from trainer.gnn.inference import EMBEDDED_TYPES, encode_all, load_trained, seed_query
from trainer.io import embeddings, storage
from trainer.io.graph import load_graph, read_keys
from trainer.io.run_dir import RunMismatchError, graph_record


def export(graph_path: str, run_dir: str, batch_size: int = 4096, device: str = "auto") -> dict[str, str]:
    """Embed every track and playlist of ``graph_path`` with ``run_dir``'s model and publish the
    set; returns the paths written."""
    device = dist.pick_device(device)
    storage.check_writable(run_dir, "--run", folder=True)
    graph = load_graph(graph_path)
    model, _, source = load_trained(run_dir, graph, device)
    h = encode_all(model, graph, batch_size, device, progress=True)
    query = seed_query(model)
    tables = {}
    for t, name in [(t, t) for t in EMBEDDED_TYPES] + ([("track", "track_seed")] if query else []):
        if not bool(torch.isfinite(h[name]).all()):
            raise RunMismatchError(
                f"{source['checkpoint']} embeds some {t}s as non-finite numbers: "
                "that model diverged; nothing was exported"
            )
        keys = read_keys(graph_path, t)
        tables[name] = (
            keys.column(contract.ID_COLUMN[t]).to_numpy(),
            keys.column(contract.KEY_COLUMN[t]),
            h[name].numpy(),
        )
    with storage.exclusive(run_dir, "run dir", f"trainer.embed --run {run_dir}"):
        # track_bias: the track vectors end in the model's per-track bias (LinkPredictor.readout)
        return embeddings.publish(
            run_dir,
            tables,
            query,
            {**source, **graph_record(graph_path, graph.manifest), "track_bias": model.track_bias is not None},
        )


def main(argv: list[str] | None = None) -> int:
    """``python -m trainer.embed`` and ``mpd-embed``: exit code 0, or 2 with the error named."""
    p = cli.parser("trainer.embed", __doc__)
    cli.add_graph(p, "the graph dir the run was trained on")
    cli.add_run(p)
    p.add_argument("--batch-size", type=cli.count(1), default=4096, help="destination nodes per inference batch")
    cli.add_device(p)
    args = p.parse_args(argv)
    return cli.run(lambda: print(json.dumps(export(args.graph, args.run, args.batch_size, args.device))))


if __name__ == "__main__":
    sys.exit(main())
