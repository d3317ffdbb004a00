"""Learning curves from ``metrics.jsonl`` records, as a PNG (matplotlib, Agg backend)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(records: list[dict]) -> bytes:
    """PNG bytes: train/val loss, val AUC, and the full-catalogue val R-precision and NDCG
    (with the selected epoch marked) per epoch."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_auc, ax_rank) = plt.subplots(1, 3, figsize=(15, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], "o-", label="train")
    val = [(r["epoch"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    if val:
        ax_loss.plot(*zip(*val), "o-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    auc = [(r["epoch"], r["val_auc"]) for r in records if r.get("val_auc") is not None]
    if auc:
        ax_auc.plot(*zip(*auc), "o-", color="tab:green")
    ax_auc.set(xlabel="epoch", ylabel="AUC", title="validation AUC (sampled negatives)")
    for key, label in (("val_r_precision", "R-precision"), ("val_ndcg", "NDCG")):
        points = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax_rank.plot(*zip(*points), "o-", label=label)
    best = records[-1].get("best_epoch") if records else None
    if best is not None:
        ax_rank.axvline(best, color="grey", linestyle="--", label=f"best epoch {best}")
    ax_rank.set(xlabel="epoch", title="validation, full catalogue (top 500)")
    if ax_rank.lines:
        ax_rank.legend()
    for ax in (ax_loss, ax_auc, ax_rank):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
