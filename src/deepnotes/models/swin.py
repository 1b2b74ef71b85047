"""Swin Transformer (Liu et al. 2021): windowed self-attention with shifted windows.

The image is cut into `patch_size`² patches (a strided conv), then four stages of blocks run
on a shrinking grid; between stages *patch merging* concatenates each 2×2 group of tokens
(4C channels) and projects to 2C, so the grid halves and the width doubles (sec. 3.1).

Each block is pre-norm: x = x + MSA(LN(x)); x = x + MLP(LN(x)). The MSA runs inside
non-overlapping M×M windows (W-MSA), so its cost is linear in the number of tokens
(eq. 1-2: 4hwC² + 2M²hwC instead of 4hwC² + 2(hw)²C). Every second block shifts the grid by
⌊M/2⌋ tokens before partitioning (SW-MSA, eq. 3), which links neighbouring windows. The shift
is cyclic (torch.roll), so a shifted window may hold tokens that were not adjacent in the
image: an additive mask of -100 (as the reference implementation uses; exp(-100) ≈ 0 while a
row is never fully masked) stops them from attending to each other.

Inside a window, attention is softmax(QKᵀ/√d + B)V (eq. 4), with B a learned relative
position bias looked up from a (2M-1)² × heads table by the offset (Δy, Δx) of each pair.
Both B and the shift mask go to the shared attention as one `attn_bias`.

Two paths compute the same block (`SwinConfig.fast`):
- the plain reference: torch.roll, `window_partition` to [B·nW, M², C], the shared
  `MultiHeadAttention` with the bias (and mask) repeated for every image, `window_reverse`,
  roll back;
- the fast path (default), which does less memory traffic for the same result:
  - the roll and the partition are one gather of the tokens (`window_token_index`), and so
    are their inverses; the gather's gradient is the inverse gather, not a scatter;
  - the windows are laid out token-major, [B, M², nW, C], so that after one fused q/k/v
    projection the windows fold into the head axis as views, q: [B, nW·heads, M², d]. One
    [1, nW·heads, M², M²] bias (relative positions plus the shift mask) then broadcasts over
    the batch: it is never copied per image;
  - q, k, v come from one matmul whose weight is the three projections' weights interleaved
    per head (built each call from the unchanged parameters), so the normed input is cast
    to the autocast dtype once instead of three times, and read once;
  - the shift mask and both gather indices are built once per grid size and cached.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deepnotes.layers.attention import MultiHeadAttention, attention


@dataclass
class SwinConfig:
    image_size: int = 224  # input side; fixes each stage's grid (and so where the shift is off)
    patch_size: int = 4  # side of the patches the stem cuts (a strided conv)
    in_chans: int = 3  # input channels
    embed_dim: int = 96  # C, the width of stage 1 (doubles at each patch merging)
    depths: tuple[int, ...] = (2, 2, 6, 2)  # blocks per stage (Swin-T)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)  # heads per stage (head dim 32 throughout)
    window_size: int = 7  # M: attention windows are M×M tokens
    mlp_ratio: float = 4.0  # MLP hidden width / C
    qkv_bias: bool = True  # biases on the q/k/v (and output) projections
    drop_path: float = 0.0  # stochastic depth at the last block, linear from 0 (0.2 for Swin-T)
    num_classes: int = 1000  # classifier outputs; 0 = no head (features only)
    shift: bool = True  # False = W-MSA in every block: the shift ablation of Table 4
    layer_norm_eps: float = 1e-5  # LayerNorm eps in the blocks and the final norm
    attn_impl: str = "auto"  # kernel for the shared attention: auto | sdpa | math | flash
    fast: bool = True  # fused gather / q-k-v path; False = the plain roll + partition reference

    def __post_init__(self):
        if len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"depths {self.depths} and num_heads {self.num_heads} differ in length"
            )
        if self.embed_dim % self.num_heads[0] != 0:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by {self.num_heads[0]} heads"
            )
        if self.image_size < self.patch_size or self.window_size < 1:
            raise ValueError("image_size must be >= patch_size and window_size >= 1")


def swin_t(**kw) -> SwinConfig:
    """Swin-T: C=96, depths 2-2-6-2 (28M parameters, 4.5 GMACs at 224²)."""
    return SwinConfig(
        **{"embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24), **kw}
    )


def swin_s(**kw) -> SwinConfig:
    """Swin-S: C=96, depths 2-2-18-2 (50M, 8.7G)."""
    return SwinConfig(
        **{"embed_dim": 96, "depths": (2, 2, 18, 2), "num_heads": (3, 6, 12, 24), **kw}
    )


def swin_b(**kw) -> SwinConfig:
    """Swin-B: C=128, depths 2-2-18-2 (88M, 15.4G)."""
    return SwinConfig(
        **{"embed_dim": 128, "depths": (2, 2, 18, 2), "num_heads": (4, 8, 16, 32), **kw}
    )


def swin_tiny_test(**kw) -> SwinConfig:
    """A small config for CPU runs: 32² images, C=32, depths 2-2-2, window 4."""
    base = dict(image_size=32, patch_size=2, embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8))
    return SwinConfig(**{**base, "window_size": 4, "num_classes": 10, **kw})


def window_partition(x: Tensor, M: int) -> Tensor:
    """x: [B, H, W, C] with H, W multiples of M -> [B * (H/M) * (W/M), M*M, C]."""
    B, H, W, C = x.shape
    x = x.view(B, H // M, M, W // M, M, C).transpose(2, 3)
    return x.reshape(-1, M * M, C)


def window_reverse(win: Tensor, M: int, H: int, W: int) -> Tensor:
    """win: [B * nW, M*M, C] -> [B, H, W, C] (inverse of window_partition)."""
    C = win.shape[-1]
    x = win.view(-1, H // M, W // M, M, M, C).transpose(2, 3)
    return x.reshape(-1, H, W, C)


def relative_position_index(M: int) -> Tensor:
    """[M*M, M*M] index into the (2M-1)² bias table for each (query, key) pair of a window.

    Built on the CPU whatever the default device (a model built on the meta device for
    counting would otherwise trace these small ops slowly).
    """
    r = torch.arange(M, device="cpu")
    ys, xs = torch.meshgrid(r, r, indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])  # [2, M*M]
    rel = coords[:, :, None] - coords[:, None, :] + (M - 1)  # offsets shifted to 0..2M-2
    return rel[0] * (2 * M - 1) + rel[1]


def shift_mask(H: int, W: int, M: int, s: int, device=None) -> Tensor:
    """[nW, M*M, M*M] additive mask for SW-MSA on a padded H×W grid shifted by s.

    After the cyclic shift each axis has three regions: [0, H-M), [H-M, H-s), [H-s, H); tokens
    from different regions (of either axis) were not neighbours and get -100.
    """

    def regions(n):
        i = torch.arange(n, device=device)
        return (i >= n - M).long() + (i >= n - s).long()

    label = (regions(H)[:, None] * 3 + regions(W)[None, :]).float()  # [H, W]
    win = window_partition(label[None, :, :, None], M)[..., 0]  # [nW, M*M]
    diff = win[:, None, :] - win[:, :, None]
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


def window_token_index(H: int, W: int, M: int, s: int, device=None) -> Tensor:
    """[H*W] source token (row-major in the H×W grid) of each slot of the token-major windows.

    Slot n·nW + w holds token n (row-major inside the M×M window) of window w (row-major over
    the grid of windows) of the grid cyclically shifted by -s: gathering x[:, index] equals
    window_partition(torch.roll(x, (-s, -s), (1, 2)), M) transposed to [B, M*M, nW, C].
    """
    i = torch.arange(M, device=device)
    ys = (torch.arange(H // M, device=device)[None] * M + i[:, None] + s) % H  # [M, H/M]
    xs = (torch.arange(W // M, device=device)[None] * M + i[:, None] + s) % W  # [M, W/M]
    return (ys[:, None, :, None] * W + xs[None, :, None, :]).reshape(-1)  # (i, j, wy, wx)


class _PermuteTokens(torch.autograd.Function):
    """x[:, index] for a permutation `index` of dim 1; the gradient is the inverse gather.

    (Autograd's own backward of a gather would scatter-add, with atomics on CUDA.)
    """

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, inverse: Tensor) -> Tensor:
        ctx.save_for_backward(inverse)
        return x.index_select(1, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (inverse,) = ctx.saved_tensors
        return grad.index_select(1, inverse), None, None


def permute_tokens(x: Tensor, index: Tensor, inverse: Tensor) -> Tensor:
    """x: [B, L, ...] -> x[:, index]; `inverse` is the inverse permutation of `index`."""
    return _PermuteTokens.apply(x, index, inverse)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability p."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty(x.shape[0], *([1] * (x.ndim - 1))).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside M×M windows with a relative position bias (eq. 4)."""

    def __init__(self, dim: int, heads: int, M: int, qkv_bias: bool = True, impl: str = "auto"):
        super().__init__()
        self.M, self.heads = M, heads
        self.attn = MultiHeadAttention(dim, heads, bias=qkv_bias, impl=impl)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * M - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("rel_index", relative_position_index(M), persistent=False)

    def position_bias(self) -> Tensor:
        """[heads, M*M, M*M] bias B."""
        return self.relative_position_bias_table[self.rel_index].permute(2, 0, 1)

    def reference(self, win: Tensor, mask: Tensor | None = None) -> Tensor:
        """The plain path. win: [B * nW, M*M, C]; mask: [nW, M*M, M*M] or None -> like win."""
        bias = self.position_bias()[None]  # [1, h, N, N]
        if mask is not None:  # the same windows' masks for every image: [B * nW, h, N, N]
            bias = (bias + mask.to(bias)[:, None]).repeat(win.shape[0] // mask.shape[0], 1, 1, 1)
        return self.attn(win, attn_bias=bias)

    def _qkv_weights(self) -> tuple[Tensor, Tensor | None]:
        """q/k/v weights [3C, C] (and biases) interleaved per head: rows (head, q|k|v, d)."""
        a = self.attn
        lins = (a.q_proj, a.k_proj, a.v_proj)
        w = torch.stack([lin.weight.view(a.n_heads, a.head_dim, -1) for lin in lins], 1)
        if a.q_proj.bias is None:
            return w.flatten(0, 2), None
        b = torch.stack([lin.bias.view(a.n_heads, a.head_dim) for lin in lins], 1)
        return w.flatten(0, 2), b.flatten()

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The fast path. x: [B, N, nW, C] token-major windows (N = M*M tokens per window, nW
        windows); mask: [nW, N, N] or None -> [B, N, nW, C]."""
        a = self.attn
        B, N, nW, C = x.shape
        # One projection; per token the output is (head, q|k|v, d), so merging (window, head)
        # is a view: q, k, v: [B, nW*h, N, d] with no copy.
        qkv = F.linear(x, *self._qkv_weights()).view(B, N, nW * a.n_heads, 3, a.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(3))
        bias = self.position_bias()  # [h, N, N]
        bias = bias.expand(nW, -1, -1, -1) if mask is None else bias + mask.to(bias)[:, None]
        o = attention(
            q, k, v, attn_bias=bias.reshape(1, nW * a.n_heads, N, N), finite_bias=True,
            dropout_p=a.dropout if self.training else 0.0, scale=a.scale, impl=a.impl,
        )  # fmt: skip
        return a.out_proj(o.transpose(1, 2).reshape(B, N, nW, C))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    """x: [B, H*W, C] -> [B, H*W, C]; W-MSA when shift == 0, SW-MSA otherwise."""

    def __init__(self, dim, heads, resolution, M, shift, cfg: SwinConfig, drop_path=0.0):
        super().__init__()
        # As in the paper's code: a grid no larger than the window is one window, unshifted.
        if min(resolution) <= M:
            M, shift = min(resolution), 0
        self.M, self.shift, self.fast = M, shift, cfg.fast
        self._cache: dict = {}
        self.norm1 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.attn = WindowAttention(dim, heads, M, cfg.qkv_bias, cfg.attn_impl)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def _layout(self, Hp: int, Wp: int, s: int, device):
        """(index, inverse, mask) for a padded Hp×Wp grid shifted by s, built once per grid.

        index / inverse: the token gather into token-major windows and back (None when it is
        the identity: one unshifted window); mask: the SW-MSA mask, or None when s = 0.
        Built on the CPU and moved, so a model on the meta device still gets real ones.
        """
        key = (Hp, Wp, s, str(device))
        if key not in self._cache:
            index = window_token_index(Hp, Wp, self.M, s)
            inverse = torch.argsort(index)
            mask = shift_mask(Hp, Wp, self.M, s, "cpu").to(device) if s else None
            same = torch.equal(index, torch.arange(index.numel()))
            pair = (None, None) if same else (index.to(device), inverse.to(device))
            self._cache[key] = (*pair, mask)
        return self._cache[key]

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        B, L, C = x.shape
        M = self.M
        s = self.shift if min(H, W) > M else 0
        h = self.norm1(x)
        # Pad right/bottom to multiples of M (the padded tokens take part, as in the reference).
        pad_h, pad_w = (-H) % M, (-W) % M
        if pad_h or pad_w:
            h = F.pad(h.view(B, H, W, C), (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        if self.fast:
            h = self._attend_fast(h.reshape(B, Hp * Wp, C), Hp, Wp, s)
        else:
            h = self._attend_reference(h.view(B, Hp, Wp, C), s)
        if pad_h or pad_w:
            h = h.view(B, Hp, Wp, C)[:, :H, :W]
        x = x + self.drop_path(h.reshape(B, L, C))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    def _attend_fast(self, h: Tensor, Hp: int, Wp: int, s: int) -> Tensor:
        """h: [B, Hp*Wp, C] -> [B, Hp*Wp, C]: shift, windows, attention and back, 2 gathers."""
        B, _, C = h.shape
        index, inverse, mask = self._layout(Hp, Wp, s, h.device)
        N = self.M * self.M
        if index is not None:
            h = permute_tokens(h, index, inverse)
        h = self.attn(h.view(B, N, -1, C), mask).view(B, -1, C)
        return h if index is None else permute_tokens(h, inverse, index)

    def _attend_reference(self, h: Tensor, s: int) -> Tensor:
        """h: [B, Hp, Wp, C] -> [B, Hp, Wp, C] with torch.roll and window_partition."""
        _, Hp, Wp, _ = h.shape
        mask = self._layout(Hp, Wp, s, h.device)[2]
        if s:
            h = torch.roll(h, shifts=(-s, -s), dims=(1, 2))
        h = window_reverse(self.attn.reference(window_partition(h, self.M), mask), self.M, Hp, Wp)
        return torch.roll(h, shifts=(s, s), dims=(1, 2)) if s else h


class PatchMerging(nn.Module):
    """[B, H*W, C] -> [B, ⌈H/2⌉*⌈W/2⌉, 2C]: concat each 2×2 group (4C), LayerNorm, project."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        B, _, C = x.shape
        x = x.view(B, H, W, C)
        if H % 2 or W % 2:
            x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        Hp, Wp = H + H % 2, W + W % 2
        # Channel groups in the order (row, col) = (0,0), (1,0), (0,1), (1,1), as the paper's
        # code concatenates them (so weights load unchanged): one permuted copy, where slicing
        # four times and concatenating would also cost four zero-filled gradients.
        x = x.view(B, Hp // 2, 2, Wp // 2, 2, C).permute(0, 1, 3, 4, 2, 5)
        return self.reduction(self.norm(x.reshape(B, -1, 4 * C)))


class SwinStage(nn.Module):
    def __init__(self, dim, depth, heads, resolution, cfg: SwinConfig, dprs, downsample):
        super().__init__()
        shift = cfg.window_size // 2 if cfg.shift else 0
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, resolution, cfg.window_size, shift if i % 2 else 0, cfg, dprs[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor, H: int, W: int) -> tuple[Tensor, int, int]:
        for blk in self.blocks:
            x = blk(x, H, W)
        if self.downsample is not None:
            x = self.downsample(x, H, W)
            H, W = (H + 1) // 2, (W + 1) // 2
        return x, H, W


class PatchEmbed(nn.Module):
    """[B, 3, H, W] -> ([B, H/p * W/p, C], H/p, W/p); inputs are zero-padded to multiples of p."""

    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.p = cfg.patch_size
        self.proj = nn.Conv2d(cfg.in_chans, cfg.embed_dim, cfg.patch_size, stride=cfg.patch_size)
        self.norm = nn.LayerNorm(cfg.embed_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        pad_w, pad_h = (-x.shape[-1]) % self.p, (-x.shape[-2]) % self.p
        if pad_w or pad_h:  # F.pad copies even when it pads nothing
            x = F.pad(x, (0, pad_w, 0, pad_h))
        x = self.proj(x)
        H, W = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), H, W


class Swin(nn.Module):
    """Swin classifier: images [B, 3, H, W] -> logits [B, num_classes]."""

    def __init__(self, cfg: SwinConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        n = sum(cfg.depths)
        dpr = [cfg.drop_path * i / max(n - 1, 1) for i in range(n)]
        res = -(-cfg.image_size // cfg.patch_size)
        stages, dim = [], cfg.embed_dim
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads, strict=True)):
            last = i == len(cfg.depths) - 1
            start = sum(cfg.depths[:i])
            stages.append(
                SwinStage(dim, depth, heads, (res, res), cfg, dpr[start : start + depth], not last)
            )
            if not last:
                dim, res = dim * 2, (res + 1) // 2
        self.stages = nn.ModuleList(stages)
        self.num_features = dim
        self.norm = nn.LayerNorm(dim, eps=cfg.layer_norm_eps)
        self.head = nn.Linear(dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()

    def features(self, x: Tensor) -> Tensor:
        """x: [B, C_in, H, W] -> final normed tokens [B, h*w, C_last]."""
        if x.ndim != 4 or x.shape[1] != self.cfg.in_chans:
            raise ValueError(
                f"expected images [B, {self.cfg.in_chans}, H, W], got {tuple(x.shape)}"
            )
        x, H, W = self.patch_embed(x)
        for stage in self.stages:
            x, H, W = stage(x, H, W)
        return self.norm(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x).mean(1))
