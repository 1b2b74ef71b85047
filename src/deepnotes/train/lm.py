"""Language-model loss and evaluation (validation loss and bits per byte)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.train.checkpoint import unwrap


def lm_loss(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Next-token cross-entropy (fp32) plus the model's auxiliary loss (MoE balancing).

    batch: (x, y) LongTensor [B, T] each; model(x) -> logits [B, T, V].
    """
    x, y = batch[0], batch[1]
    logits = model(x)
    ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1))
    aux = getattr(unwrap(model), "aux_loss", None)
    if isinstance(aux, torch.Tensor):
        return ce + aux, {"ce": ce.detach(), "aux": aux.detach()}
    return ce, {"ce": ce.detach()}


@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    token_bytes: torch.Tensor | None = None,
) -> dict[str, float]:
    """Mean next-token loss (nats) over `batches`, and bits per byte.

    token_bytes: LongTensor [V], UTF-8 bytes per token (None = one byte each). Bits per byte
    = Σ loss / (ln 2 · Σ bytes of the target tokens), comparable across tokenizers.
    """
    was_training = model.training
    model.eval()
    nll, n_tok, n_bytes = 0.0, 0, 0
    device = next(iter(unwrap(model).parameters())).device
    tb = token_bytes.to(device) if token_bytes is not None else None
    try:
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            logits = model(x).float()
            nll += F.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            n_tok += y.numel()
            n_bytes += int(tb[y].sum()) if tb is not None else y.numel()
    finally:
        model.train(was_training)
    if n_tok == 0:
        raise ValueError("evaluate_lm got no batches")
    return {
        "val_loss": nll / n_tok,
        "val_bpb": nll / (math.log(2) * n_bytes),
        "val_tokens": n_tok,
    }


def lm_eval_fn(
    data, *, batch_size: int, seq_len: int, max_batches: int | None = None
) -> Callable[[nn.Module], dict[str, float]]:
    """An `eval_fn` for `Trainer`: sequential windows over `data.val` (a TextData)."""
    token_bytes = data.token_bytes()

    def eval_fn(model: nn.Module) -> dict[str, float]:
        batches = data.val_batches(batch_size, seq_len, max_batches=max_batches)
        return evaluate_lm(model, batches, token_bytes)

    return eval_fn
