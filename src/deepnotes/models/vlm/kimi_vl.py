"""Kimi-VL (Kimi team 2025): MoonViT -> pixel-shuffle MLP projector -> MoE language model.

    images --MoonViT--> patch features [N, D_v] --2x2 merge + MLP--> image tokens [N/4, D]
    text ids with one placeholder id per image token --embed--> [B, T, D]
    placeholders replaced by the image tokens, in order --> MoE LM --> logits [B, T, V]

The LM is `deepnotes.models.lm.LM` with MoE FFNs (Moonlight / DeepSeek-V3 style): every MoE
layer has top-k routed experts plus one always-on shared expert,
    y = sum_{e in topk(x)} g_e(x) FFN_e(x) + FFN_shared(x),
and the routed part's load-balancing (Switch) and z losses are added to the training loss.

Loss: next-token cross-entropy on answer tokens only. `answer_targets` turns an answer mask
into targets: position t predicts token t + 1 when token t + 1 is part of an answer, and is
ignored (-100) otherwise, so questions, image tokens and padding never enter the loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.layers import init as I
from deepnotes.layers.ffn import build_ffn
from deepnotes.layers.moe import MoE
from deepnotes.models.lm import LM, LMConfig
from deepnotes.models.vlm.moonvit import MoonViT, MoonViTConfig
from deepnotes.models.vlm.projector import Projector

IGNORE = -100


class SharedExpertMoE(MoE):
    """Routed top-k experts plus one shared expert every token goes through (DeepSeekMoE,
    Dai et al. 2024, eq. 3). x: [..., D] -> [..., D]; aux_loss and stats as in MoE."""

    def __init__(self, d_model: int, n_experts: int, *, shared_hidden: int, **kw) -> None:
        super().__init__(d_model, n_experts, **kw)
        ffn, bias = kw.get("ffn", "gelu"), kw.get("bias", False)
        self.shared = build_ffn(ffn, d_model, hidden=shared_hidden, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.shared(x)


def build_moe_lm(cfg: LMConfig, shared_expert: bool = True) -> LM:
    """Our LM; with shared_expert, each MoE FFN also gets an always-on shared expert of the
    routed experts' width (initialised like them, residual projection scaled the same)."""
    lm = LM(cfg)
    if not shared_expert or cfg.moe_experts == 0:
        return lm
    for block in lm.blocks:
        old = block.ffn
        if not isinstance(old, MoE):
            continue
        hidden = old.experts[0].w_out.in_features
        block.ffn = SharedExpertMoE(
            cfg.d_model,
            cfg.moe_experts,
            shared_hidden=hidden,
            top_k=cfg.moe_top_k,
            capacity_factor=cfg.moe_capacity_factor,
            ffn=cfg.ffn,
            hidden=hidden,
            bias=cfg.bias,
            dropout=cfg.dropout,
            balance_coef=cfg.moe_balance_coef,
            z_coef=cfg.moe_z_coef,
        )
    lm.reset_parameters()  # draws the new experts under cfg.init
    if cfg.scaled_residual_init:
        for block in lm.blocks:
            if isinstance(block.ffn, SharedExpertMoE):
                I.scale_weight_(block.ffn.shared.w_out, I.residual_scale(cfg.n_layers))
    return lm


def lm_hidden_from_embeddings(lm: LM, x: torch.Tensor) -> torch.Tensor:
    """Run the LM's blocks on input embeddings x: [B, T, D] -> final hidden [B, T, D].

    The same path as `LM.hidden` after its token lookup (positions, dropout, blocks, norm);
    sets lm.aux_loss."""
    T = x.shape[1]
    if lm.cfg.positions in ("learned", "sinusoidal") and T > lm.cfg.max_len:
        raise ValueError(f"sequence of {T} tokens is longer than max_len = {lm.cfg.max_len}")
    if lm.pos is not None:
        x = x + lm.pos.weight[:T]
    elif lm.cfg.positions == "sinusoidal":
        x = x + lm.pos_table[:T].to(x.dtype)
    x = lm.drop(x)
    for block in lm.blocks:
        x = block(x, None)
    lm.aux_loss = lm._collect_aux(x)
    return x if lm.norm is None else lm.norm(x)


def answer_targets(input_ids: torch.Tensor, answer_mask: torch.Tensor) -> torch.Tensor:
    """input_ids, answer_mask: [B, T] -> targets [B, T]: ids[t + 1] where answer_mask[t + 1],
    else -100 (ignored)."""
    if input_ids.shape != answer_mask.shape:
        raise ValueError(f"ids {tuple(input_ids.shape)} vs mask {tuple(answer_mask.shape)}")
    targets = torch.full_like(input_ids, IGNORE)
    nxt = input_ids[:, 1:]
    targets[:, :-1] = torch.where(answer_mask[:, 1:], nxt, torch.full_like(nxt, IGNORE))
    return targets


@dataclass
class KimiVLConfig:
    vision: MoonViTConfig = field(default_factory=MoonViTConfig)  # the encoder
    lm: LMConfig = field(  # the language model; MoE FFNs, rotary positions like Moonlight
        default_factory=lambda: LMConfig(
            vocab_size=128,
            d_model=64,
            n_layers=2,
            n_heads=4,
            max_len=512,
            positions="rotary",
            ffn="swiglu",
            moe_experts=4,
            moe_top_k=2,
            moe_capacity_factor=None,
        )
    )
    shared_expert: bool = True  # add an always-on shared expert to every MoE FFN
    image_token_id: int = 1  # placeholder id: one per image token in the text
    center_image_tokens: bool = True  # subtract each image's mean token before the LM


class KimiVL(nn.Module):
    """forward(input_ids [B, T], images: list of [C, H, W]) -> logits [B, T, V].

    The images are in the order of their placeholders (row by row through the batch); image i
    needs exactly h_i w_i / 4 placeholders (`tokens_per_image`)."""

    def __init__(self, cfg: KimiVLConfig) -> None:
        super().__init__()
        if not 0 <= cfg.image_token_id < cfg.lm.vocab_size:
            raise ValueError(f"image_token_id {cfg.image_token_id} is outside the vocabulary")
        self.cfg = cfg
        self.vision = MoonViT(cfg.vision)
        self.projector = Projector(cfg.vision.d_model, cfg.lm.d_model, cfg.vision.merge)
        self.lm = build_moe_lm(cfg.lm, cfg.shared_expert)

    def tokens_per_image(self, images: list[torch.Tensor]) -> list[int]:
        """LM tokens each image becomes (after padding, patching and the 2x2 merge)."""
        p, m = self.cfg.vision.patch_size, self.cfg.vision.merge
        return [(-(-img.shape[1] // (p * m))) * (-(-img.shape[2] // (p * m))) for img in images]

    def image_embeddings(self, images: list[torch.Tensor]) -> torch.Tensor:
        """images -> image tokens [M, D_lm], M = sum tokens_per_image.

        With cfg.center_image_tokens each image's tokens have their mean token subtracted:
        x_ij - mean_j x_ij. Trained from scratch on these canvases (mostly uniform background),
        about 95% of every token's energy is one vector shared by all tokens of all images, and
        the LM's per-token norms scale the part that tells images apart down with it; the LM
        then learns the text-only answer prior and stops attending to the image (see
        docs/kimi-vl.md). Centring removes the shared part; it is per image, so packing and
        batching still do not mix images."""
        feats, grids = self.vision(images)
        tokens = self.projector(feats, grids)
        if not self.cfg.center_image_tokens:
            return tokens
        sizes = Projector.tokens_per_image(grids, self.cfg.vision.merge)
        return torch.cat([t - t.mean(0, keepdim=True) for t in tokens.split(sizes)])

    def embed(self, input_ids: torch.Tensor, images: list[torch.Tensor] | None) -> torch.Tensor:
        """input_ids: [B, T] -> [B, T, D] with image tokens spliced at the placeholders."""
        if input_ids.dim() != 2:
            raise ValueError(f"expected input_ids [B, T], got {tuple(input_ids.shape)}")
        slots = input_ids == self.cfg.image_token_id
        n_slots = int(slots.sum())
        if images:
            need = sum(self.tokens_per_image(images))
            if need != n_slots:
                raise ValueError(
                    f"the text has {n_slots} image placeholders but the images give {need} tokens"
                )
        elif n_slots:
            raise ValueError(f"the text has {n_slots} image placeholders but no images")
        x = self.lm.embed(input_ids.masked_fill(slots, 0))
        if images:
            img = self.image_embeddings(images).to(x.dtype)
            x = x.masked_scatter(slots[..., None], img)
        return x

    def forward(
        self, input_ids: torch.Tensor, images: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        h = lm_hidden_from_embeddings(self.lm, self.embed(input_ids, images))
        return self.lm.head(h)

    def loss(
        self,
        input_ids: torch.Tensor,
        images: list[torch.Tensor] | None,
        targets: torch.Tensor,
        per_sequence: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """targets: [B, T] (-100 = ignored) -> (CE on the answer tokens + MoE aux, logits).

        CE is the mean over all answer tokens, or with per_sequence the mean over sequences of
        each sequence's mean answer-token CE (every question weighs the same, however long
        its answer)."""
        logits = self(input_ids, images)
        flat = logits.to(torch.promote_types(logits.dtype, torch.float32)).flatten(0, 1)
        if not per_sequence:
            ce = F.cross_entropy(flat, targets.flatten(), ignore_index=IGNORE)
            return ce + self.lm.aux_loss, logits
        tok = F.cross_entropy(flat, targets.flatten(), ignore_index=IGNORE, reduction="none")
        keep = targets != IGNORE
        per_seq = tok.view_as(targets).sum(1) / keep.sum(1).clamp(min=1)
        ce = per_seq[keep.any(1)].mean()
        return ce + self.lm.aux_loss, logits

    def expert_load(self) -> list[torch.Tensor]:
        """Per MoE layer, the share of routed assignments each expert served in the last
        forward: list of [E] (empty before the first forward)."""
        moes = [b.ffn for b in self.lm.blocks if isinstance(b.ffn, MoE)]
        return [m.stats["load"] for m in moes if "load" in m.stats]
