"""`deepnotes run detr`: train a small DETR on generated shape scenes.

Data: `deepnotes.data.scenes` (coloured circles/squares/triangles... on a noisy canvas, 1..N
objects, tight boxes), generated offline from a seed. The model is our DETR with a small
ResNet trained from scratch (ordinary batch norm), the Hungarian-matched set loss with
auxiliary decoding losses, AdamW and gradient clipping as in the paper (sec. 4, A.4).

Reported on held-out scenes:
- COCO AP, AP50, AP75 (pycocotools; every query's best real class is a detection, no NMS);
- the duplicate rate: confident detections that overlap a better one of the same class
  (IoU > 0.7), i.e. what NMS would remove;
- what each query specialises in: the centres of its predicted boxes over the set, coloured
  by box shape (the paper's Fig. 7);
- the last decoder layer's cross-attention of the confident queries on one image (Fig. 6).
DETR learns slowly (the paper trains 300-500 epochs); a CPU run of minutes gives a low AP.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from deepnotes.data.scenes import SHAPES, make_scenes
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.detr import Detr, DetrConfig
from deepnotes.models.resnet import ResNetConfig
from deepnotes.utils.io import atomic_write_json
from deepnotes.vision.boxes import box_cxcywh_to_xyxy
from deepnotes.vision.detr_loss import SetCriterion
from deepnotes.vision.matcher import HungarianMatcher
from deepnotes.vision.metrics import coco_map, detr_predictions, duplicate_rate


@dataclass
class DetrExpConfig:
    canvas: int = 64  # image side in pixels
    max_objects: int = 3  # objects per scene: 1..max_objects
    num_classes: int = 3  # shape classes used (circle, square, triangle, cross, ring)
    n_train: int = 2000  # training scenes (generated once)
    n_val: int = 200  # held-out scenes
    backbone_width: int = 16  # ResNet stem width; stages double it
    backbone_stages: int = 3  # ResNet stages (stride 4 * 2^(stages-1): 16 -> 4×4 at 64²)
    d_model: int = 64  # Transformer width
    n_heads: int = 4  # attention heads
    layers: int = 2  # encoder layers = decoder layers
    ffn_dim: int = 128  # feed-forward width
    num_queries: int = 10  # object queries
    steps: int = 600  # optimiser steps
    batch_size: int = 16  # scenes per step
    lr: float = (
        5e-4  # AdamW learning rate (linear warm-up over the first 5 percent of steps, cosine decay)
    )
    weight_decay: float = 1e-4  # AdamW weight decay (the paper's)
    grad_clip: float = 0.1  # gradient-norm clip (the paper's)
    eval_every: int = 150  # steps between validation mAP evaluations
    max_minutes: float = 0.0  # wall-clock cap on training (0 = none): stops early, still reports


_LOSS_READ_EVERY = 50  # training losses are read back from the device in groups of this many


class _DeviceScenes:
    """The training scenes, moved to the device once, batched without per-image copies.

    The targets are kept concatenated ([N] labels, [N, 4] boxes); a batch gathers its rows
    with one index and splits them into per-image views, so a step costs a couple of small
    host-to-device copies instead of two per image.
    """

    def __init__(self, scenes, device):
        self.images = scenes.images.to(device)  # [n, 3, H, W]
        self.labels = torch.cat([t["class_labels"] for t in scenes.targets]).to(device)
        self.boxes = torch.cat([t["boxes"] for t in scenes.targets]).to(device)
        self.sizes = np.array([len(t["class_labels"]) for t in scenes.targets])
        self.starts = np.cumsum(self.sizes) - self.sizes  # first row of each scene
        self.device = device

    def batch(self, idx: Tensor, flip: bool) -> tuple[Tensor, list[dict]]:
        """idx [B] (host) -> images [B, 3, H, W], targets (mirrored left-right if flip)."""
        idx_np = idx.numpy()
        n = self.sizes[idx_np]
        # rows of the chosen scenes, scene after scene
        rows = np.arange(n.sum()) + np.repeat(self.starts[idx_np] - (np.cumsum(n) - n), n)
        images = self.images[idx.to(self.device)]
        rows = torch.from_numpy(rows).to(self.device)
        labels, boxes = self.labels[rows], self.boxes[rows]
        if flip:  # boxes: cx -> 1 - cx
            images = images.flip(-1)
            boxes[:, 0] = 1 - boxes[:, 0]
        split = n.tolist()
        return images, [
            {"class_labels": lab, "boxes": box}
            for lab, box in zip(labels.split(split), boxes.split(split), strict=True)
        ]


def _model(cfg: DetrExpConfig) -> Detr:
    widths = tuple(cfg.backbone_width * 2**i for i in range(cfg.backbone_stages))
    bb = ResNetConfig(
        stem_width=cfg.backbone_width, widths=widths, depths=(1,) * cfg.backbone_stages,
        bottleneck=False, frozen_bn=False, train_from_stage=0,
    )  # fmt: skip
    return Detr(
        DetrConfig(
            num_classes=cfg.num_classes,
            num_queries=cfg.num_queries,
            d_model=cfg.d_model,
            n_heads=cfg.n_heads,
            enc_layers=cfg.layers,
            dec_layers=cfg.layers,
            ffn_dim=cfg.ffn_dim,
            dropout=0.0,
            aux_loss=True,
            backbone=bb,
        )  # fmt: skip
    )


@torch.no_grad()
def _predict(model, images, device, bs=64):
    model.eval()
    logits, boxes = [], []
    for i in range(0, len(images), bs):
        out = model(images[i : i + bs].to(device))
        logits.append(out["logits"].float().cpu())
        boxes.append(out["pred_boxes"].float().cpu())
    model.train()
    return torch.cat(logits), torch.cat(boxes)


def _evaluate(model, val, cfg, device):
    logits, boxes = _predict(model, val.images, device)
    preds = detr_predictions(logits, boxes)
    m = coco_map(preds, val.targets, (cfg.canvas, cfg.canvas))
    m["duplicate_rate"] = duplicate_rate(preds, 0.5, 0.7)
    m["detections_over_0.5"] = float(
        sum((p["scores"] > 0.5).sum().item() for p in preds) / len(preds)
    )
    return m, logits, boxes


def plot_detr_training(ctx, losses: list[float], history: list[dict]) -> None:
    """Left: the training loss (moving mean). Right: AP, AP50, AP75 on held-out scenes at each
    evaluation, on an axis fitted to the values (they are far below 1 on a short run)."""
    fig, (ax1, ax2) = ctx.figure(1, 2, figsize=(11, 4))
    k = max(1, len(losses) // 40)
    ax1.plot(np.arange(k, len(losses) + 1), np.convolve(losses, np.ones(k) / k, mode="valid"))
    ax1.set_xlabel("step")
    ax1.set_ylabel("weighted set loss, all decoder layers\n(moving mean)")
    ax1.set_title("training loss")
    ax1.grid(alpha=0.3)
    for key, marker in (("AP", "o"), ("AP50", "s"), ("AP75", "^")):  # fractions, as in the table
        ys = [h[key] for h in history]
        ax2.plot([h["step"] for h in history], ys, marker=marker, label=key)
        ax2.annotate(f"{ys[-1]:.3f}", (history[-1]["step"], ys[-1]), xytext=(5, 0),
                     textcoords="offset points", va="center", fontsize=9)  # fmt: skip
    top = max(h[key] for h in history for key in ("AP", "AP50", "AP75"))
    ax2.set_ylim(0, min(1.05, max(0.01, 1.25 * top)))
    ax2.set_xlabel("step")
    ax2.set_ylabel("COCO AP on held-out scenes")
    ax2.set_title("detection quality")
    ax2.legend()
    ax2.grid(alpha=0.3)
    ctx.savefig(fig, "detr_training.png")


def _plot_queries(ctx, logits, boxes, cfg):
    """Centres of every query's boxes over the held-out set (paper Fig. 7)."""
    Q = logits.shape[1]
    cols = min(Q, 5)
    rows = math.ceil(Q / cols)
    fig, axes = ctx.figure(rows, cols, figsize=(2.6 * cols, 2.7 * rows + 0.4), squeeze=False)
    score = logits.softmax(-1)[..., :-1].max(-1).values
    w, h = boxes[..., 2], boxes[..., 3]
    for q in range(rows * cols):
        ax = axes[q // cols][q % cols]
        ax.set_xticks([])
        ax.set_yticks([])
        if q >= Q:
            ax.axis("off")
            continue
        colour = np.where(
            (w[:, q] * h[:, q] < 0.04).numpy(),
            "tab:green",
            np.where((w[:, q] > h[:, q]).numpy(), "tab:red", "tab:blue"),
        )
        conf = (score[:, q] > 0.5).numpy()
        ax.scatter(boxes[~conf, q, 0], boxes[~conf, q, 1], s=4, c=colour[~conf], alpha=0.15)
        ax.scatter(boxes[conf, q, 0], boxes[conf, q, 1], s=8, c=colour[conf], alpha=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(1, 0)
        ax.set_aspect("equal")
        ax.set_title(f"query {q}: {conf.mean():.0%} conf.", fontsize=9)
    fig.suptitle(
        "box centres per query on held-out scenes (green: small, red: wide, blue: tall; "
        "solid = score > 0.5)",
        fontsize=9,
    )
    ctx.savefig(fig, "detr_queries.png")


def _plot_attention(ctx, model, val, cfg, device):
    """Cross-attention of the last decoder layer for the confident queries of one image."""
    model.eval()
    with torch.no_grad():
        out = model(val.images[:1].to(device), return_attn=True)
    model.train()
    h, w = out["feature_size"]
    prob = out["logits"][0].softmax(-1)[:, :-1].cpu()
    score, label = prob.max(-1)
    top = score.argsort(descending=True)[: max(1, min(4, int((score > 0.5).sum()) or 1))].tolist()
    attn = out["cross_attn"][0].mean(0).float().cpu()  # [Q, h*w], mean over heads
    img = val.images[0].permute(1, 2, 0).numpy()
    fig, axes = ctx.figure(1, len(top) + 1, figsize=(3.2 * (len(top) + 1), 3.4), squeeze=False)
    axes = axes[0]
    axes[0].imshow(img)
    S = cfg.canvas
    for t in box_cxcywh_to_xyxy(val.targets[0]["boxes"]) * S:
        axes[0].add_patch(_rect(t, "white", "--"))
    for i, q in enumerate(top):
        box = box_cxcywh_to_xyxy(out["pred_boxes"][0, q].float().cpu()) * S
        axes[0].add_patch(_rect(box, f"C{i}", "-"))
        a = F.interpolate(
            attn[q].view(1, 1, h, w), size=(S, S), mode="bilinear", align_corners=False
        )[0, 0]
        axes[i + 1].imshow(img)
        axes[i + 1].imshow(a.numpy(), cmap="magma", alpha=0.6)
        axes[i + 1].add_patch(_rect(box, f"C{i}", "-"))
        axes[i + 1].set_title(f"query {q}: {SHAPES[int(label[q])]} {score[q]:.2f}", fontsize=9)
    axes[0].set_title("truth (dashed), predictions", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        f"decoder cross-attention (last layer, mean of heads; {h}×{w} feature grid)\n"
        "bright = more attention, each panel scaled to its own maximum",
        fontsize=9,
    )
    ctx.savefig(fig, "detr_attention.png")


def _rect(xyxy, colour, style):
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = [float(v) for v in xyxy]
    return Rectangle(
        (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=colour, ls=style, lw=1.5
    )


@experiment(
    "detr",
    "DETR on generated shape scenes: COCO mAP, duplicates without NMS, query specialisation",
    DetrExpConfig,
    presets={
        "smoke": {"n_train": 16, "n_val": 8, "steps": 3, "batch_size": 4, "eval_every": 3},
        "gpu": {
            "canvas": 128,
            "max_objects": 6,
            "num_classes": 5,
            "n_train": 12000,
            "n_val": 500,
            "backbone_width": 32,
            "backbone_stages": 3,
            "d_model": 128,
            "n_heads": 8,
            "layers": 3,
            "ffn_dim": 512,
            "num_queries": 20,
            "steps": 8000,
            "batch_size": 64,
            "lr": 2e-4,
            "eval_every": 1000,
            "max_minutes": 1.75,
        },
    },  # fmt: skip
)
def run_detr(cfg: DetrExpConfig, ctx: Context) -> Result:
    if cfg.num_queries < cfg.max_objects:
        raise ValueError(f"num_queries {cfg.num_queries} < max_objects {cfg.max_objects}")
    ctx.log(f"generating {cfg.n_train} + {cfg.n_val} scenes")
    t_data = time.perf_counter()
    kw = dict(size=cfg.canvas, max_objects=cfg.max_objects, num_classes=cfg.num_classes)
    train = make_scenes(cfg.n_train, seed=ctx.seed, **kw)
    val = make_scenes(cfg.n_val, seed=10_000 + ctx.seed, **kw)
    ctx.log(f"scenes generated in {time.perf_counter() - t_data:.1f} s")
    torch.manual_seed(ctx.seed)
    model = _model(cfg).to(ctx.device)
    crit = SetCriterion(cfg.num_classes, HungarianMatcher(1, 5, 2), eos_coef=0.1).to(ctx.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = max(1, cfg.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warm
            if s < warm
            else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, cfg.steps - warm))))
        ),
    )
    batches = _DeviceScenes(train, ctx.device)
    gen = torch.Generator().manual_seed(ctx.seed)
    history, losses, pending = [], [], []
    t0 = time.perf_counter()
    step = 0
    for step in ctx.progress(range(1, cfg.steps + 1), desc="detr"):
        idx = torch.randint(0, len(train), (cfg.batch_size,), generator=gen)
        flip = bool(torch.rand((), generator=gen) < 0.5)  # horizontal flip
        images, targets = batches.batch(idx, flip)
        losses_d = crit(model(images), targets)
        loss = crit.weighted_total(losses_d)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        pending.append(loss.detach())
        out_of_time = cfg.max_minutes > 0 and time.perf_counter() - t0 > 60 * cfg.max_minutes
        evaluate = step % cfg.eval_every == 0 or step == cfg.steps or out_of_time
        if len(pending) == _LOSS_READ_EVERY or evaluate:  # one device read per N steps
            losses += torch.stack(pending).float().tolist()
            pending = []
        if evaluate:
            t_eval = time.perf_counter()
            m, _, _ = _evaluate(model, val, cfg, ctx.device)
            history.append({"step": step, **m})
            ctx.log(
                f"step {step}: loss {np.mean(losses[-50:]):.3f} "
                f"AP {m['AP']:.3f} AP50 {m['AP50']:.3f} "
                f"({(time.perf_counter() - t0) / step * 1000:.1f} ms/step incl. evaluation; "
                f"evaluation {time.perf_counter() - t_eval:.1f} s)"
            )
        if out_of_time:
            break
    train_s = time.perf_counter() - t0
    final, logits, boxes = _evaluate(model, val, cfg, ctx.device)

    # the training plot's data beside results.json, so scripts/replot.py can redraw it
    atomic_write_json(ctx.out / "curves.json", {"losses": losses, "history": history})
    plot_detr_training(ctx, losses, history)
    _plot_queries(ctx, logits, boxes, cfg)
    _plot_attention(ctx, model, val, cfg, ctx.device)

    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rows = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()} for h in history
    ]
    return Result(
        metrics={
            "AP": round(final["AP"], 4),
            "AP50": round(final["AP50"], 4),
            "AP75": round(final["AP75"], 4),
            "duplicate_rate": round(final["duplicate_rate"], 4),
            "detections_over_0.5_per_image": round(final["detections_over_0.5"], 3),
            "objects_per_image": round(
                float(np.mean([len(t["class_labels"]) for t in val.targets])), 3
            ),
            "steps_done": step,
            "train_seconds": round(train_s, 1),
            "params": params,
        },
        table=rows,
        columns=list(rows[0]),
        notes=[
            "paper (COCO val, DETR-R50, 500 epochs): AP 42.0, AP50 62.4, AP75 44.2",
            f"{step} steps of {cfg.batch_size} scenes = "
            f"{step * cfg.batch_size / cfg.n_train:.1f} epochs",
            "duplicates: detections with score > 0.5 overlapping (IoU > 0.7) a better one of "
            "the same class",
        ],
    )
