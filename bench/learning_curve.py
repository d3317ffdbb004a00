"""Learning curves of training runs side by side: val R-precision (the trainer's ranking set)
against wall minutes and against propagations (steps), with the baselines' lines on the same
playlists (``bench/selection_lines.py``'s JSON lines).

    python bench/learning_curve.py --runs NAME=RUN_DIR [NAME=RUN_DIR ...] [--lines LINES.jsonl]
        --out curve.png [--table]

Reads each run's ``metrics.jsonl`` (validations within epochs carry ``global_step`` and
``elapsed_s``; ``--val_every`` makes them). ``--table`` prints the points as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def points(run: str) -> list[dict]:
    """The run's validations in order: global step, wall minutes, R-precision, NDCG."""
    with open(os.path.join(run, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    return [
        {
            "step": r["global_step"],
            "minutes": r["elapsed_s"] / 60,
            "r_precision": r["val_r_precision"],
            "ndcg": r["val_ndcg"],
        }
        for r in records
        if r.get("val_r_precision") is not None and "global_step" in r and "elapsed_s" in r
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, metavar="NAME=RUN_DIR")
    ap.add_argument("--lines", help="JSON lines of bench/selection_lines.py")
    ap.add_argument("--out", required=True, help="PNG to write")
    ap.add_argument("--table", action="store_true")
    a = ap.parse_args(argv)
    runs = {name: points(path) for name, path in (r.split("=", 1) for r in a.runs)}
    lines = []
    if a.lines:
        with open(a.lines) as f:
            lines = [json.loads(line) for line in f if line.strip()]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, x, label in ((axes[0], "minutes", "wall minutes"), (axes[1], "step", "propagations (steps)")):
        for name, ps in runs.items():
            ax.plot([p[x] for p in ps], [p["r_precision"] for p in ps], "o-", label=name)
        for line, style in zip(lines, ("--", ":", "-.")):
            ax.axhline(
                line["val_r_precision"],
                linestyle=style,
                color="grey",
                label=f"{line['method']} {line['val_r_precision']:.4f}",
            )
        ax.set(xlabel=label, ylabel="val R-precision", title=f"val R-precision against {label}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=100)
    if a.table:
        print("| run | step | wall min | R-precision | NDCG |\n|---|---|---|---|---|")
        for name, ps in runs.items():
            for p in ps:
                print(f"| {name} | {p['step']} | {p['minutes']:.1f} | {p['r_precision']:.4f} | {p['ndcg']:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
