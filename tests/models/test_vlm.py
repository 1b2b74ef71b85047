"""Kimi-VL pieces against their formulas: 2-D RoPE, the bicubic position table, packing,
the pixel-shuffle projector, the shared-expert MoE, image splicing and answer-only loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from deepnotes.layers.moe import MoE
from deepnotes.layers.rotary2d import Rotary2D
from deepnotes.models.lm import LMConfig
from deepnotes.models.vlm import (
    KimiVL,
    KimiVLConfig,
    MoonViT,
    MoonViTConfig,
    Projector,
    SharedExpertMoE,
    answer_targets,
    pixel_shuffle_merge,
)
from deepnotes.models.vlm.moonvit import (
    block_diagonal_bias,
    cu_seqlens_from_grids,
    interpolate_pos_table,
    pad_image,
    patchify,
)
from tests.helpers import assert_close


def tiny_vit(**kw) -> MoonViTConfig:
    base = dict(patch_size=7, d_model=24, n_layers=2, n_heads=2, mlp_hidden=40, pos_h=6, pos_w=5)
    base.update(kw)
    return MoonViTConfig(**base)


# ------------------------------------------------------------------ 2-D RoPE
@pytest.mark.parametrize("K", [8, 20])
def test_rotary2d_scores_depend_only_on_relative_position(seed, K):
    rope = Rotary2D(K)
    q, k = torch.randn(2, K, dtype=torch.float64).unbind(0)

    def score(pq, pk):
        rows = torch.tensor([pq[0], pk[0]])
        cols = torch.tensor([pq[1], pk[1]])
        x = rope(torch.stack([q, k]), rows, cols)
        return (x[0] @ x[1]).item()

    g = torch.Generator().manual_seed(seed)
    for _ in range(5):
        pq, pk, shift = torch.randint(0, 40, (3, 2), generator=g).tolist()
        base = score(pq, pk)
        moved = score([pq[0] + shift[0], pq[1] + shift[1]], [pk[0] + shift[0], pk[1] + shift[1]])
        assert math.isclose(base, moved, rel_tol=1e-10, abs_tol=1e-10)
    # and it does depend on each of dRow and dCol (the check above is not vacuous)
    assert abs(score([0, 0], [0, 0]) - score([3, 0], [0, 0])) > 1e-6
    assert abs(score([0, 0], [0, 0]) - score([0, 3], [0, 0])) > 1e-6


def test_rotary2d_splits_pairs_between_rows_and_columns():
    K = 16
    rope = Rotary2D(K)
    rows, cols = torch.tensor([0, 5, 0]), torch.tensor([0, 0, 5])
    a = rope.angles(rows, cols, torch.float64)  # [3, K/2]
    assert torch.equal(a[0], torch.zeros(K // 2, dtype=torch.float64))
    # a row move turns only the odd pairs, a column move only the even ones
    assert (a[1, 0::2] == 0).all() and (a[1, 1::2] != 0).all()
    assert (a[2, 1::2] == 0).all() and (a[2, 0::2] != 0).all()
    f = 10000.0 ** (-torch.arange(0, K // 2, 2, dtype=torch.float64) / (K // 2))
    assert_close(a[1, 1::2], 5 * f, torch.float64)
    x = torch.randn(3, K, dtype=torch.float64)
    assert_close(rope(x, rows, cols).norm(dim=-1), x.norm(dim=-1), torch.float64)


def test_rotary2d_bad_head_dim():
    with pytest.raises(ValueError, match="divisible by 4"):
        Rotary2D(10)


# ------------------------------------------------------------------ position table
def keys_cubic(t: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    """Keys' cubic convolution kernel (the one bicubic interpolation uses), |t| < 2."""
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, far)


def bicubic_reference(table: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Separable bicubic resize (align_corners=False, border-clamped taps).

    table: [H0, W0, D] -> [h, w, D]."""

    def axis(n_in, n_out):
        m = torch.zeros(n_out, n_in, dtype=torch.float64)
        for i in range(n_out):
            src = (i + 0.5) * n_in / n_out - 0.5
            i0 = math.floor(src)
            for tap in range(-1, 3):
                j = min(max(i0 + tap, 0), n_in - 1)
                m[i, j] += keys_cubic(torch.tensor(src - (i0 + tap), dtype=torch.float64))
        return m

    H0, W0, _ = table.shape
    return torch.einsum("ai,bj,ijd->abd", axis(H0, h), axis(W0, w), table)


@pytest.mark.parametrize("shape", [(6, 5), (8, 8)])
def test_position_table_at_its_own_grid_is_unchanged(seed, shape):
    table = torch.randn(*shape, 12)
    out = interpolate_pos_table(table, *shape)
    assert torch.equal(out, table.reshape(-1, 12))


@pytest.mark.parametrize("hw", [(2, 14), (9, 4), (12, 10)])
def test_position_table_resize_is_bicubic(seed, hw):
    table = torch.randn(6, 5, 7, dtype=torch.float64)
    out = interpolate_pos_table(table, *hw)
    assert_close(out, bicubic_reference(table, *hw).reshape(-1, 7), torch.float64)


# ------------------------------------------------------------------ patching and packing
def test_pad_and_patchify():
    img = torch.randn(3, 30, 17)
    padded = pad_image(img, 14)
    assert padded.shape == (3, 42, 28)
    assert torch.equal(padded[:, :30, :17], img) and padded[:, 30:].abs().sum() == 0
    patches = patchify(padded, 14)  # [3 * 2, 3, 14, 14], raster order
    assert patches.shape == (6, 3, 14, 14)
    assert torch.equal(patches[1], padded[:, 0:14, 14:28])
    assert torch.equal(patches[2], padded[:, 14:28, 0:14])
    with pytest.raises(ValueError, match="multiple of the patch size"):
        patchify(img, 14)


def test_block_diagonal_bias_from_cu_seqlens():
    grids = torch.tensor([[2, 2], [2, 4], [4, 2]])
    cu = cu_seqlens_from_grids(grids)
    assert cu.tolist() == [0, 4, 12, 20]
    bias = block_diagonal_bias(cu)
    allowed = bias == 0
    for i in range(3):
        for j in range(3):
            block = allowed[cu[i] : cu[i + 1], cu[j] : cu[j + 1]]
            assert block.all() if i == j else not block.any()


def images_for_packing():
    # awkward sizes next to round ones; a 1:7 strip; sizes that need padding
    return [
        torch.randn(3, 28, 28, dtype=torch.float64),
        torch.randn(3, 14, 98, dtype=torch.float64),
        torch.randn(3, 33, 20, dtype=torch.float64),
        torch.randn(3, 56, 42, dtype=torch.float64),
    ]


@pytest.mark.parametrize("pack_tokens", [0, 44])  # one pack; packs of <= 44 patches
def test_packed_batch_equals_each_image_alone(seed, pack_tokens):
    vit = MoonViT(tiny_vit(pack_tokens=pack_tokens)).double()
    packs = [(0, 4)] if pack_tokens == 0 else [(0, 2), (2, 3), (3, 4)]
    assert vit._packs([16, 28, 24, 48]) == packs
    imgs = images_for_packing()
    packed, grids = vit(imgs)
    cu = cu_seqlens_from_grids(grids)
    assert grids.tolist() == [[4, 4], [2, 14], [6, 4], [8, 6]]
    for i, img in enumerate(imgs):
        alone, g = vit([img])
        assert g.tolist() == [grids[i].tolist()]
        assert_close(packed[cu[i] : cu[i + 1]], alone, torch.float64, what=f"image {i}")


def test_no_image_attends_to_another(seed):
    vit = MoonViT(tiny_vit()).double()
    imgs = [im.requires_grad_() for im in images_for_packing()[:3]]
    out, grids = vit(imgs)
    cu = cu_seqlens_from_grids(grids)
    out[cu[1] : cu[2]].sum().backward()  # image 1's features
    assert imgs[1].grad.abs().sum() > 0
    assert imgs[0].grad is None or imgs[0].grad.abs().sum() == 0
    assert imgs[2].grad is None or imgs[2].grad.abs().sum() == 0


def test_moonvit_rejects_bad_inputs():
    vit = MoonViT(tiny_vit())
    with pytest.raises(ValueError, match="expected images"):
        vit([torch.randn(1, 14, 14)])
    with pytest.raises(ValueError, match="no images"):
        vit([])
    with pytest.raises(ValueError, match="divisible by 4"):
        MoonViT(tiny_vit(d_model=20, n_heads=2))


# ------------------------------------------------------------------ projector
def test_pixel_shuffle_merge_order(seed):
    grids = torch.tensor([[2, 4], [4, 2]])
    x = torch.randn(16, 5)
    out = pixel_shuffle_merge(x, grids, 2)
    assert out.shape == (4, 4, 5)
    g0 = x[:8].reshape(2, 4, 5)  # image 0: rows x cols
    # merged token 1 of image 0 = block (rows 0-1, cols 2-3), patches in raster order
    expect = torch.stack([g0[0, 2], g0[0, 3], g0[1, 2], g0[1, 3]])
    assert torch.equal(out[1], expect)
    g1 = x[8:].reshape(4, 2, 5)
    assert torch.equal(out[3], torch.stack([g1[2, 0], g1[2, 1], g1[3, 0], g1[3, 1]]))
    with pytest.raises(ValueError, match="multiple of k"):
        pixel_shuffle_merge(torch.randn(6, 5), torch.tensor([[3, 2]]), 2)


def test_projector_formula(seed):
    proj = Projector(6, 10, merge=2).double()
    with torch.no_grad():
        for p in proj.parameters():
            p.normal_()
    grids = torch.tensor([[2, 2], [2, 6]])
    x = torch.randn(16, 6, dtype=torch.float64)
    merged = pixel_shuffle_merge(x, grids, 2)
    ln = F.layer_norm(merged, (6,), proj.pre_norm.weight, proj.pre_norm.bias, 1e-5).flatten(1)
    h = F.gelu(ln @ proj.in_proj.weight.T + proj.in_proj.bias)
    expect = h @ proj.out_proj.weight.T + proj.out_proj.bias
    assert_close(proj(x, grids), expect, torch.float64)
    assert Projector.tokens_per_image(grids) == [1, 3]


# ------------------------------------------------------------------ MoE with a shared expert
def test_shared_expert_moe_adds_an_always_on_expert(seed):
    moe = SharedExpertMoE(12, 4, shared_hidden=20, top_k=2, capacity_factor=None, ffn="swiglu")
    moe.double()
    x = torch.randn(3, 7, 12, dtype=torch.float64, requires_grad=True)
    y = moe(x)
    routed = MoE.forward(moe, x)
    assert_close(y, routed + moe.shared(x), torch.float64)
    assert moe.aux_loss > 0 and moe.stats["load"].sum().item() == pytest.approx(1.0)
    y.sum().backward()
    assert moe.shared.w_in.weight.grad.abs().sum() > 0


def tiny_vlm(**lm_kw) -> KimiVL:
    lm = dict(vocab_size=40, d_model=32, n_layers=2, n_heads=2, max_len=128, positions="rotary")
    lm.update(ffn="swiglu", moe_experts=3, moe_top_k=2, moe_capacity_factor=None)
    lm.update(lm_kw)
    return KimiVL(KimiVLConfig(vision=tiny_vit(), lm=LMConfig(**lm), image_token_id=1))


def test_lm_has_shared_expert_moe_layers():
    model = tiny_vlm()
    assert all(isinstance(b.ffn, SharedExpertMoE) for b in model.lm.blocks)
    assert model.expert_load() == []  # filled by a forward
    moe = model.lm.blocks[0].ffn
    per_expert = sum(p.numel() for p in moe.experts[0].parameters())
    assert sum(p.numel() for p in moe.shared.parameters()) == per_expert
    dense = tiny_vlm(moe_experts=0)
    assert not any(isinstance(b.ffn, MoE) for b in dense.lm.blocks)


# ------------------------------------------------------------------ splicing and loss
def batch_with_images(model: KimiVL, T: int = 40):
    imgs = [torch.randn(3, 14, 56), torch.randn(3, 28, 28), torch.randn(3, 20, 40)]
    n = model.tokens_per_image(imgs)  # grids 2x8, 4x4, 4x6 (padded) -> [4, 4, 6]
    ids = torch.randint(2, model.cfg.lm.vocab_size, (2, T))
    ids[0, 3 : 3 + n[0]] = 1
    ids[0, 10 : 10 + n[1]] = 1
    ids[1, 0 : n[2]] = 1
    return ids, imgs, n


def test_image_tokens_are_spliced_at_the_placeholders(seed):
    model = tiny_vlm().double()
    ids, imgs, n = batch_with_images(model)
    assert n == [4, 4, 6]
    x = model.embed(ids, [im.double() for im in imgs])
    slots = ids == 1
    assert_close(x[slots], model.image_embeddings([im.double() for im in imgs]), torch.float64)
    assert_close(x[~slots], model.lm.embed(ids)[~slots], torch.float64)
    logits = model(ids, [im.double() for im in imgs])
    assert logits.shape == (2, 40, 40)
    load = model.expert_load()
    assert len(load) == 2 and all(abs(float(l_.sum()) - 1) < 1e-6 for l_ in load)


def test_image_tokens_are_centered_per_image(seed):
    """Each image's tokens are the projector's output minus that image's mean token, so
    they sum to zero per image and an image gets the same tokens packed with others or alone."""
    model = tiny_vlm().double()
    _, imgs, n = batch_with_images(model)
    imgs = [im.double() for im in imgs]
    tokens = model.image_embeddings(imgs)
    feats, grids = model.vision(imgs)
    raw = model.projector(feats, grids)
    for t, r in zip(tokens.split(n), raw.split(n), strict=True):
        assert_close(t, r - r.mean(0), torch.float64)
        assert t.sum(0).abs().max() < 1e-12 * r.abs().sum(0).max()
    alone = torch.cat([model.image_embeddings([im]) for im in imgs])
    assert_close(tokens, alone, torch.float64)
    model.cfg.center_image_tokens = False
    assert_close(model.image_embeddings(imgs), raw, torch.float64)


def test_placeholder_count_must_match(seed):
    model = tiny_vlm()
    ids, imgs, _ = batch_with_images(model)
    with pytest.raises(ValueError, match="placeholders"):
        model(ids, imgs[:2])
    with pytest.raises(ValueError, match="no images"):
        model(ids, None)


def test_answer_targets():
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    ans = torch.tensor([[False, False, False, True, True]])
    assert answer_targets(ids, ans).tolist() == [[-100, -100, 8, 9, -100]]


def test_per_sequence_loss_weighs_every_question_the_same(seed):
    model = tiny_vlm(moe_balance_coef=0.0, moe_z_coef=0.0).double()
    ids, imgs, _ = batch_with_images(model)
    imgs = [im.double() for im in imgs]
    ans = torch.zeros_like(ids, dtype=torch.bool)
    ans[0, 30:34] = True  # a 4-token answer ...
    ans[1, 20:21] = True  # ... and a 1-token one
    targets = answer_targets(ids, ans)
    loss, logits = model.loss(ids, imgs, targets, per_sequence=True)
    nxt = ids.roll(-1, 1)
    ce0 = F.cross_entropy(logits[0, 29:33], nxt[0, 29:33])
    ce1 = F.cross_entropy(logits[1, 19:20], nxt[1, 19:20])
    assert_close(loss, (ce0 + ce1) / 2, torch.float64)


def test_loss_is_on_answer_tokens_only(seed):
    model = tiny_vlm(moe_balance_coef=0.0, moe_z_coef=0.0).double()
    ids, imgs, _ = batch_with_images(model)
    imgs = [im.double() for im in imgs]
    ans = torch.zeros_like(ids, dtype=torch.bool)
    ans[0, 30:33] = True
    ans[1, 20:22] = True
    targets = answer_targets(ids, ans)
    loss, logits = model.loss(ids, imgs, targets)
    pos = targets != -100
    assert int(pos.sum()) == 5
    expect = F.cross_entropy(logits[pos], ids.roll(-1, 1)[pos])
    assert_close(loss, expect, torch.float64)
    # logits outside the answer slots get no gradient from the loss
    logits = model(ids, imgs).detach().requires_grad_()
    F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100).backward()
    assert logits.grad[~pos].abs().sum() == 0 and logits.grad[pos].abs().sum() > 0
