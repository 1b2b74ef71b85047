"""`linear_cross_entropy`: an LM head and its cross-entropy, chunk by chunk over the rows.

The plain head + loss (`torch_linear_cross_entropy`) holds the [N, V] logits in the input
dtype and again in fp32, keeps fp32 log-probabilities for the backward and builds an [N, V]
gradient there: with N = B T = 16k tokens and V = 50k, 3.3 GB per fp32 copy. Here the rows
are processed C at a time; for each chunk:

    logits = h_c W^T (+ b)               [C, V], input dtype (the matmul's own precision)
    z = fp32(logits); lse = logsumexp(z)  loss_c = sum(lse - z[target]) over kept rows
    g = (softmax(z) - onehot(target)) * s, in the input dtype  (s = 1/n_kept or 1)
    dh_c = g W;  dW += g^T h_c;  db += sum_rows(g)   (dW, db accumulated in fp32)

The gradients are computed in the forward, as Liger-Kernel's fused linear cross-entropy
does, so nothing of size [C, V] outlives its chunk and the backward only scales the stored
dh, dW, db by the incoming gradient (the loss is a scalar). Matrix products: the same three
as the plain path (logits, dh, dW). The price: dh [N, D] and dW [V, D] are held from the
forward to the backward, and the gradients are computed even when the caller would not
backpropagate through every input (they are skipped only for inputs that need none, or
under no_grad). Memory: see `peak_bytes`.

Plain PyTorch, no Triton: it runs on every device and under `torch.compile`, which unrolls
the chunk loop (N, C are static).
"""

from __future__ import annotations

import torch

from deepnotes.ops.backend import cast_inputs

REDUCTIONS = ("mean", "sum")
DEFAULT_CHUNK = 2048  # rows per chunk: [2048, 50304] fp32 is 412 MB, and M = 2048 keeps the
# three matmuls per chunk large enough for the tensor cores


def _check(h, weight, targets, bias, chunk_size, reduction) -> None:
    if h.dim() != 2 or weight.dim() != 2:
        raise ValueError(
            "linear_cross_entropy: h must be [N, D] and weight [V, D]; got shapes "
            f"{tuple(h.shape)}, {tuple(weight.shape)}"
        )
    if h.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear_cross_entropy: h has D = {h.shape[1]} but weight has D = {weight.shape[1]}"
        )
    if not (h.is_floating_point() and weight.is_floating_point()):
        raise ValueError(
            f"linear_cross_entropy: h and weight must be floating point, got {h.dtype}, "
            f"{weight.dtype}"
        )
    if targets.dtype not in (torch.int64, torch.int32) or tuple(targets.shape) != (h.shape[0],):
        raise ValueError(
            "linear_cross_entropy: targets must be int64/int32 of shape [N] = "
            f"[{h.shape[0]}], got {targets.dtype} {tuple(targets.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"linear_cross_entropy: bias must be [V] = [{weight.shape[0]}], got {tuple(bias.shape)}"
        )
    if h.shape[0] == 0:
        raise ValueError("linear_cross_entropy: no rows (N = 0)")
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(
            f"linear_cross_entropy: chunk_size must be a positive int, got {chunk_size!r}"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"linear_cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r} "
            "(the gradients are formed in the forward, so a per-row loss is not offered)"
        )


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk_size, ignore_index, mean, needs):
        need_h, need_w, need_b = needs
        N, D = h.shape
        V = weight.shape[0]
        acc = torch.promote_types(h.dtype, torch.float32)  # fp32, or fp64 for fp64 inputs
        kept = targets != ignore_index
        # 1 / (number of kept targets) for "mean": 0 kept gives inf and a NaN loss, as
        # F.cross_entropy does. A tensor, so nothing here waits for the device.
        scale = kept.sum().to(acc).reciprocal() if mean else torch.ones((), dtype=acc)
        scale = scale.to(h.device)
        safe_t = targets.masked_fill(~kept, 0).long()  # ignored rows gather a harmless column
        dh = torch.empty_like(h) if need_h else None
        dw = torch.zeros(V, D, dtype=acc, device=h.device) if need_w else None
        db = torch.zeros(V, dtype=acc, device=h.device) if need_b else None
        any_grad = need_h or need_w or need_b
        total = torch.zeros((), dtype=acc, device=h.device)
        with torch.autocast(h.device.type, enabled=False):  # matmuls in the inputs' dtype
            for lo in range(0, N, chunk_size):
                hi = min(lo + chunk_size, N)
                hc, tc, kc = h[lo:hi], safe_t[lo:hi, None], kept[lo:hi]
                logits = hc @ weight.T
                if bias is not None:
                    logits += bias
                z = logits.to(acc)
                del logits  # only the fp32 copy lives on
                lse = torch.logsumexp(z, dim=-1)
                z_t = z.gather(1, tc)[:, 0]
                total += torch.where(kc, lse - z_t, 0).sum()
                if not any_grad:
                    continue
                # z becomes the gradient of the chunk's logits, in place: softmax - onehot,
                # zero on ignored rows, times the reduction's scale
                z.sub_(lse[:, None]).exp_()
                z.scatter_add_(1, tc, torch.full_like(z_t, -1.0)[:, None])
                z.mul_((kc.to(acc) * scale)[:, None])
                g = z.to(h.dtype)
                del z
                if need_h:
                    dh[lo:hi] = g @ weight
                if need_w:
                    gw = g.T @ hc
                    dw += gw if gw.dtype == acc else gw.to(acc)
                if need_b:
                    db += g.to(acc).sum(0)
        ctx.save_for_backward(dh, dw, db)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return total * scale

    @staticmethod
    def backward(ctx, grad_loss):
        dh, dw, db = ctx.saved_tensors
        w_dtype, b_dtype = ctx.dtypes
        # the stored gradients are for d(loss) = 1; the loss is a scalar, so scale them
        dh = None if dh is None else dh * grad_loss.to(dh.dtype)
        dw = None if dw is None else (dw * grad_loss.to(dw.dtype)).to(w_dtype)
        db = None if db is None else (db * grad_loss.to(db.dtype)).to(b_dtype)
        return dh, dw, db, None, None, None, None, None


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy of h @ weight^T (+ bias) against targets, C = chunk_size rows at a time.

    h: [N, D], weight: [V, D], bias: [V] or None, targets: [N] int (ignore_index = skipped)
    -> scalar loss, fp32 (fp64 for fp64 inputs): the mean over kept targets or their sum.
    Equals `torch_linear_cross_entropy` (the logits' log-sum-exp in fp32, the matmuls in
    the inputs' dtype) without ever holding more than [C, V] logits. h, weight and bias are
    first cast to one dtype (the autocast dtype under `torch.autocast`, see
    `deepnotes.ops.backend.cast_inputs`); gradients come back in each input's dtype.
    Targets outside [0, V) that are not ignore_index are an indexing error, as in
    F.cross_entropy.
    """
    _check(h, weight, targets, bias, chunk_size, reduction)
    if bias is None:
        h_c, w_c = cast_inputs(h, weight)
        b_c = None
    else:
        h_c, w_c, b_c = cast_inputs(h, weight, bias)
    grad = torch.is_grad_enabled()
    needs = (
        grad and h.requires_grad,
        grad and weight.requires_grad,
        grad and bias is not None and bias.requires_grad,
    )
    return _LinearCrossEntropy.apply(
        h_c, w_c, b_c, targets, chunk_size, ignore_index, reduction == "mean", needs
    )


def peak_bytes(N: int, V: int, D: int, *, chunk_size: int = DEFAULT_CHUNK, itemsize: int = 2,
               fused: bool = True) -> int:  # fmt: skip
    """Bytes of the loss's own buffers at their peak (not counting h, weight, activations).

    fused: C = min(chunk_size, N) rows of logits in the input dtype, then in fp32, then the
    gradient in the input dtype (the input-dtype logits are freed before the gradient is
    made, so at most an fp32 and one input-dtype copy live together), plus dh [N, D] (input
    dtype) and dW [V, D] (fp32) held until the backward, plus one [V, D] product in the
    input dtype per chunk:
        C V (4 + s) + N D s + V D (4 + s)
    plain (`torch_linear_cross_entropy` under autocast): logits [N, V] in the input dtype and
    in fp32, the fp32 log-probabilities saved for the backward, and in the backward an fp32
    gradient of the log-probabilities plus its input-dtype cast:
        forward N V (s + 4 + 4), backward about N V (4 + 4 + s)
    (the fused kernels of `torch.compile` can drop some of these copies).
    """
    s = itemsize
    if not fused:
        return N * V * (s + 8)
    C = min(chunk_size, N)
    return C * V * (4 + s) + N * D * s + V * D * (4 + s)
