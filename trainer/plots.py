"""Learning curves from ``metrics.jsonl`` records, as a PNG (matplotlib, Agg backend)."""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def learning_curves(records: list[dict]) -> bytes:
    """PNG bytes: train/val loss and val AUC per epoch."""
    epochs = [r["epoch"] for r in records]
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(10, 4))
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
    for ax in (ax_loss, ax_auc):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()
