"""Learning curves from ``metrics.jsonl`` records, as a PNG (matplotlib, Agg backend)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(records: list[dict]) -> bytes:
    """PNG bytes: train/val loss, val AUC, and the full-catalogue val R-precision and NDCG
    (with the selected epoch marked) per epoch."""
    # Validations within epochs (val_every) put the curves on the step axis.
    by_step = any("step" in r for r in records)
    x_key, x_label = ("global_step", "step") if by_step else ("epoch", "epoch")

    def points(key):
        return [(r[x_key], r[key]) for r in records if r.get(key) is not None]

    fig, (ax_loss, ax_auc, ax_rank) = plt.subplots(1, 3, figsize=(15, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if points(key):
            ax_loss.plot(*zip(*points(key)), "o-", label=label)
    ax_loss.set(xlabel=x_label, ylabel="loss", title="loss")
    ax_loss.legend()
    if points("val_auc"):
        ax_auc.plot(*zip(*points("val_auc")), "o-", color="tab:green")
    ax_auc.set(xlabel=x_label, ylabel="AUC", title="validation AUC (sampled negatives)")
    for key, label in (("val_r_precision", "R-precision"), ("val_ndcg", "NDCG")):
        if points(key):
            ax_rank.plot(*zip(*points(key)), "o-", label=label)
    best = records[-1].get("best_step" if by_step else "best_epoch") if records else None
    if best is not None:
        ax_rank.axvline(best, color="grey", linestyle="--", label=f"best {x_label} {best}")
    ax_rank.set(xlabel=x_label, title="validation, full catalogue (top 500)")
    if ax_rank.lines:
        ax_rank.legend()
    for ax in (ax_loss, ax_auc, ax_rank):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
