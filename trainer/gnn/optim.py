"""The optimiser: AdamW for dense weights, row-wise Adagrad (or Adam) for the ID embeddings."""

from __future__ import annotations

import torch

from trainer.config import ConfigError, TrainConfig


class RowWiseAdagrad(torch.optim.Optimizer):
    """Adagrad with one accumulator per embedding row, the mean of the row's squared gradients
    (FBGEMM's row-wise Adagrad for recommender embedding tables): 4 bytes of state per row where
    Adam keeps two rows of floats (at 100k playlists, 232 MB of SparseAdam state become 3.6 MB).
    Sparse or dense gradients; a row without gradient is left as it is."""

    def __init__(self, params, lr: float, eps: float = 1e-10):
        super().__init__(params, {"lr": lr, "eps": eps})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "sum" not in state:
                    state["sum"] = torch.zeros(p.size(0), dtype=torch.float32, device=p.device)
                grad = p.grad
                if grad.is_sparse:
                    grad = grad.coalesce()
                    rows, values = grad.indices()[0], grad.values()
                else:
                    rows = grad.abs().sum(1).nonzero().squeeze(1)
                    values = grad[rows]
                state["sum"].index_add_(0, rows, values.float().pow(2).mean(1))
                scale = state["sum"][rows].sqrt_().add_(group["eps"]).reciprocal_()
                p.index_add_(0, rows, (values * scale.unsqueeze(1)).to(p.dtype), alpha=-group["lr"])


class Optimizer:
    """AdamW for the dense weights; the ID embeddings, without weight decay, by
    :class:`RowWiseAdagrad` (the default: at 100k playlists it took 2 CPU ranks from 1.94-1.97
    to 1.71-1.74 GiB each, at the same g10k quality as Adam, bench/RESULTS.md), or with
    ``embedding_optimizer=adam`` by SparseAdam when their gradients are sparse (on CPU: state
    and update touch only a batch's rows; dense gradients for 900k rows cost ~300 MB of peak
    memory per step at 100k playlists) and by AdamW when dense (CUDA)."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, sparse: bool):
        embeddings = [p for n, p in model.named_parameters() if n.startswith("embedding.")]
        dense = [p for n, p in model.named_parameters() if not n.startswith("embedding.")]
        groups = [{"params": dense, "weight_decay": config.weight_decay}]
        embedding_lr = config.embedding_lr or config.lr
        self.parts = {}
        if embeddings and config.embedding_optimizer == "rowwise_adagrad":
            self.parts["rowwise"] = RowWiseAdagrad(embeddings, lr=embedding_lr)
        elif sparse and embeddings:
            self.parts["sparse"] = torch.optim.SparseAdam(embeddings, lr=embedding_lr)
        elif embeddings:
            groups.append({"params": embeddings, "weight_decay": 0.0, "lr": embedding_lr})
        self.parts["dense"] = torch.optim.AdamW(groups, lr=config.lr)

    def zero_grad(self) -> None:
        for opt in self.parts.values():
            opt.zero_grad(set_to_none=True)

    def step(self) -> None:
        for opt in self.parts.values():
            opt.step()

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.parts.items()}

    def load_state_dict(self, state: dict, where: str) -> None:
        if set(state) != set(self.parts):
            raise ConfigError(
                f"--resume: {where} holds optimizer state for {sorted(state)}, this run "
                f"needs {sorted(self.parts)}: it was written on another device type "
                "(with embedding_optimizer=adam, ID embeddings are sparse on CPU, dense on "
                "CUDA) or by an older trainer; "
                "resume on the device type the run started on, or start a new run"
            )
        for name, opt in self.parts.items():
            opt.load_state_dict(state[name])
