"""`deepnotes run kimi-vl`: a small Kimi-VL trained on offline visual QA, native resolution
against a fixed square at an equal token budget.

Both runs use the same model (MoonViT -> 2x2 pixel-shuffle MLP projector -> MoE LM with a
shared expert), the same seeded data, steps and seed. Only the image input differs:
- native: each image keeps its size (padded to a multiple of 2 patches); tokens vary;
- square: each image is resized (bilinear, antialiased) to S x S, with S the multiple of
  2 patches closest to sqrt(mean native padded area): the same mean token budget.

Training is joint from the first step. The report (sec. 2.3) first aligns the vision side
to a trained, frozen LM; ours starts random, and aligning to a frozen random LM only hurt, so
that stage is off by default (`align_frac`). The loss is the per-question mean cross-entropy
on the answer tokens plus the MoE balance and z losses. Image tokens are centred per image
(`KimiVLConfig.center_image_tokens`): without it the model stayed at the answer prior.

Reported: exact-match answer accuracy per question type, on small objects and on extreme
aspect ratios (long side / short side >= 4); LM tokens per image; training throughput; the
routed experts' load per MoE layer on the evaluation set; and the accuracy with blank
(uniform grey) images, which shows what the answers owe the pixels. Exact match under
teacher forcing equals greedy decoding's exact match (greedy goes wrong exactly where the
first argmax differs from the answer).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from deepnotes.data.vqa import EOS, IMG, QTYPES, VOCAB, VQAConfig, VQAGenerator, VQASample, collate
from deepnotes.job_checks import ConfigError
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.lm import LMConfig
from deepnotes.models.vlm import KimiVL, KimiVLConfig, MoonViTConfig, answer_targets
from deepnotes.models.vlm.moonvit import pad_image
from deepnotes.utils.stats import paired


@dataclass
class KimiVLExperimentConfig:
    scale: float = 0.5  # image and object sizes x this (1.0 = 56x392 .. 336x336 canvases)
    n_train: int = 8000  # training samples, generated once and shared by both runs
    n_eval: int = 600  # held-out samples (another seed)
    steps: int = 700  # optimizer steps per run (both stages)
    max_seconds: float = 0.0  # cap on each run's training time (0 = none); the cosine
    # schedule then follows whichever of steps and seconds is further along
    align_frac: float = 0.0  # share of steps in an alignment stage that freezes the LM; 0
    # here: the report freezes a pretrained LM, ours starts random (see docs/kimi-vl.md)
    batch: int = 32  # images (= questions) per step
    lr: float = 1e-3  # AdamW peak learning rate (linear warm-up, cosine decay)
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    patch: int = 14  # ViT patch size (MoonViT: 14)
    d_vision: int = 64  # MoonViT width
    vit_layers: int = 2  # MoonViT blocks
    vit_heads: int = 4  # MoonViT heads (head dim divisible by 4 for 2-D RoPE)
    d_lm: int = 96  # LM width
    lm_layers: int = 2  # LM blocks
    lm_heads: int = 4  # LM heads
    experts: int = 4  # routed experts per MoE layer
    top_k: int = 2  # routed experts per token
    square: int = 0  # side of the fixed square (pixels); 0 = equal mean token budget
    modes: str = "native,square"  # which runs, comma-separated
    qtypes: str = ",".join(QTYPES)  # question types to generate, comma-separated
    distractors: str = "0,1"  # min,max extra objects of other shapes (count/colour/position);
    # the generator's 1-3 needs more training than the CPU default's few minutes
    small_frac: float = 0.4  # share of samples whose asked-about objects are small
    digit_len: str = "3,5"  # min,max digits per reading question
    digit_dot: str = "2.5,4"  # min,max font-dot size of regular digits, in px at scale 1
    # (a glyph is 3 x 5 dots, so 4 at scale 0.5 draws 6 x 10 px digits)
    small_digit_dot: float = 1.5  # font-dot size of small digits, in px at scale 1
    eval_batch: int = 64  # images per evaluation forward
    pack_tokens: int = 512  # ViT patches per packed sequence (0 = the whole batch in one)
    loss_per: str = "question"  # "question": each question's mean answer CE weighs the same;
    # "token": the mean over all answer tokens (5-digit reading answers then dominate)
    center: bool = True  # subtract each image's mean token before the LM (see KimiVLConfig)
    pad: str = "grey"  # what fills a native image up to a multiple of 2 patches: "grey" (0
    # after normalisation; the committed default run) or "black" (black pixels, as Kimi-VL's
    # image processor pads; a grey band beside our dark canvases hid the digits, see docs)


def resize_square(img: torch.Tensor, side: int) -> torch.Tensor:
    """[3, H, W] -> [3, side, side], bilinear with antialiasing (the usual fixed-size ViT input)."""
    return F.interpolate(
        img[None], size=(side, side), mode="bilinear", antialias=True, align_corners=False
    )[0]


def normalize(img: torch.Tensor) -> torch.Tensor:
    """Pixels [0, 1] -> [-1, 1] (mean = std = 0.5, as Kimi-VL's image processor does). Without
    it the dark background makes every patch embedding share one large component, and the
    tiny CPU model did not even fit 8 colour questions in 80 steps; with it, it did."""
    return (img - 0.5) / 0.5


def square_round_trip(img: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 [3, H, W] -> uint8 [3, H, W]: resized to the square and back to H x W (bilinear,
    antialiased). What survives the square's resize, at the native geometry: a model trained
    on native images then isolates the detail lost from the change of shape."""
    x = resize_square(img.float() / 255, side)
    back = F.interpolate(
        x[None], size=tuple(img.shape[-2:]), mode="bilinear", antialias=True, align_corners=False
    )[0]
    return to_u8(back)


def to_u8(img: torch.Tensor) -> torch.Tensor:
    """[3, H, W] float in [0, 1] -> uint8: a quarter of the memory for large training sets."""
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def from_u8(img: torch.Tensor) -> torch.Tensor:
    """uint8 [3, H, W] -> the model's input: float, normalised to [-1, 1]."""
    return normalize(img.float() / 255)


def generate(vqa: VQAConfig, seed: int, n: int) -> list[VQASample]:
    """n seeded samples with uint8 images (converted one by one to bound the peak memory)."""
    gen = VQAGenerator(vqa, seed=seed)
    out = []
    for _ in range(n):
        s = gen.sample()
        out.append(replace(s, image=to_u8(s.image)))
    return out


def equal_budget_side(sizes: list[tuple[int, int]], unit: int) -> int:
    """The multiple of `unit` closest to sqrt(mean padded area): the native mean token budget."""
    area = np.mean([math.ceil(h / unit) * unit * math.ceil(w / unit) * unit for h, w in sizes])
    return max(unit, int(round(math.sqrt(area) / unit)) * unit)


def build_model(cfg: KimiVLExperimentConfig) -> KimiVL:
    vit = MoonViTConfig(
        patch_size=cfg.patch,
        d_model=cfg.d_vision,
        n_layers=cfg.vit_layers,
        n_heads=cfg.vit_heads,
        mlp_hidden=4 * cfg.d_vision,
        pos_h=16,
        pos_w=16,
        pack_tokens=cfg.pack_tokens,
    )
    lm = LMConfig(
        vocab_size=len(VOCAB),
        d_model=cfg.d_lm,
        n_layers=cfg.lm_layers,
        n_heads=cfg.lm_heads,
        max_len=1024,
        positions="rotary",
        ffn="swiglu",
        moe_experts=cfg.experts,
        moe_top_k=cfg.top_k,
        moe_capacity_factor=None,
    )
    return KimiVL(
        KimiVLConfig(vision=vit, lm=lm, image_token_id=IMG, center_image_tokens=cfg.center)
    )


def _batch(model, samples, images, device):
    """images: uint8 [3, H, W] -> (ids [B, T], normalised float images, targets [B, T])."""
    ids, mask = collate(samples, model.tokens_per_image(images))
    ids, mask = ids.to(device), mask.to(device)
    return ids, [from_u8(im.to(device)) for im in images], answer_targets(ids, mask)


def train(model, cfg, samples, images, ctx, label):
    """Staged training; returns (loss curve, images/s, LM tokens/s, vision tokens/s)."""
    device = ctx.device
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warm = 0.05  # share of the run spent warming up
    align_steps = int(cfg.align_frac * cfg.steps)
    rng = np.random.default_rng(ctx.seed)
    losses, n_img, n_tok, n_vis, t_train = [], 0, 0, 0, 0.0
    t_start = time.perf_counter()
    for step in ctx.progress(range(cfg.steps), desc=label):
        # progress through the schedule: by steps, or by wall-clock seconds under a time cap
        done = step / cfg.steps
        if cfg.max_seconds > 0:
            elapsed = time.perf_counter() - t_start
            if elapsed >= cfg.max_seconds:
                break
            done = max(done, elapsed / cfg.max_seconds)
        if done < warm:
            scale = max(done, 1 / cfg.steps) / warm
        else:
            scale = 0.5 * (1 + math.cos(math.pi * (done - warm) / (1 - warm)))
        for g in opt.param_groups:
            g["lr"] = cfg.lr * scale
        joint = step >= align_steps
        for p in model.lm.parameters():
            p.requires_grad_(joint)
        idx = rng.choice(len(samples), cfg.batch, replace=False)
        batch = [samples[i] for i in idx], [images[i] for i in idx]
        ids, imgs, targets = _batch(model, *batch, device)
        t0 = time.perf_counter()
        loss, _ = model.loss(ids, imgs, targets, per_sequence=cfg.loss_per == "question")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_train += time.perf_counter() - t0
        losses.append(loss.item())
        n_img += len(idx)
        n_tok += ids.numel()
        n_vis += sum(4 * t for t in model.tokens_per_image(imgs))
    return losses, n_img / t_train, n_tok / t_train, n_vis / t_train


@torch.no_grad()
def evaluate(model, cfg, samples, images, device, blank=False):
    """Per-sample exact match and share of right answer words (teacher forcing), and the
    mean expert load per MoE layer. blank: every image replaced by a uniform grey one of its
    size (0 after normalisation), the ablation that shows what the answers owe the pixels."""
    model.eval()
    correct, token_acc, loads = [], [], []
    for i in range(0, len(samples), cfg.eval_batch):
        ids, imgs, targets = _batch(
            model, samples[i : i + cfg.eval_batch], images[i : i + cfg.eval_batch], device
        )
        if blank:
            imgs = [torch.zeros_like(im) for im in imgs]
        pred = model(ids, imgs).argmax(-1)
        scored = targets != -100
        ok = (pred == targets) & scored
        correct += (ok | ~scored).all(1).tolist()
        words = scored & (targets != EOS)  # the answer words, not the (easy) end token
        token_acc += ((ok & words).sum(1) / words.sum(1).clamp(min=1)).tolist()
        loads.append(torch.stack(model.expert_load()).cpu())
    load = torch.stack(loads).mean(0)  # [layers, E]
    return np.array(correct), np.array(token_acc), load


def parse_range(text: str, name: str, cast=int, low=0) -> tuple:
    """'min,max' -> (min, max), both >= low; a ValueError names the field otherwise."""
    parts = [v.strip() for v in str(text).split(",")]
    try:
        lo, hi = (cast(v) for v in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or not low <= lo <= hi:
        raise ValueError(f"{name} must be 'min,max' with {low} <= min <= max, got {text!r}")
    return lo, hi


def vqa_config(cfg: KimiVLExperimentConfig) -> VQAConfig:
    """The data generator's config from the experiment's fields (checked here)."""
    qtypes = tuple(q.strip() for q in cfg.qtypes.split(",") if q.strip())
    if not qtypes or any(q not in QTYPES for q in qtypes):
        raise ConfigError("qtypes", cfg.qtypes, f"must be a comma-separated subset of {QTYPES}")
    return VQAConfig(
        scale=cfg.scale,
        qtypes=qtypes,
        distractors=parse_range(cfg.distractors, "distractors"),
        small_frac=cfg.small_frac,
        digit_len=parse_range(cfg.digit_len, "digit_len", low=1),
        digit_dot=parse_range(cfg.digit_dot, "digit_dot", float, low=1e-6),
        small_digit_dot=cfg.small_digit_dot,
    )


def check_kimi_vl(cfg: KimiVLExperimentConfig) -> None:
    """Every field the generic checks cannot judge, before anything runs (ConfigError)."""
    if cfg.loss_per not in ("question", "token"):
        raise ConfigError("loss_per", cfg.loss_per, "must be 'question' or 'token'")
    modes = [m.strip() for m in cfg.modes.split(",") if m.strip()]
    if not modes or any(m not in ("native", "square") for m in modes):
        raise ConfigError("modes", cfg.modes, "must be a comma-separated subset of native,square")
    if cfg.pad not in ("grey", "black"):
        raise ConfigError("pad", cfg.pad, "must be 'grey' or 'black'")
    if not 0 <= cfg.small_frac <= 1:
        raise ConfigError("small_frac", cfg.small_frac, "must be in [0, 1]")
    for name, cast, low, rule in (
        ("distractors", int, 0, "0 <= min <= max"),
        ("digit_len", int, 1, "1 <= min <= max"),
        ("digit_dot", float, 1e-6, "0 < min <= max"),
    ):
        try:
            parse_range(getattr(cfg, name), name, cast, low)
        except ValueError:
            raise ConfigError(name, getattr(cfg, name), f"must be 'min,max', {rule}") from None
    if not cfg.small_digit_dot > 0:
        raise ConfigError("small_digit_dot", cfg.small_digit_dot, "must be > 0")
    vqa_config(cfg)  # the question types


def majority_answer(train: list[VQASample], samples: list[VQASample]) -> np.ndarray:
    """[N] bool: whether the training set's most common answer to the same question words is
    right. The answer prior from the text alone, measured on the evaluation samples."""
    counts: dict[tuple, Counter] = {}
    for s in train:
        counts.setdefault(tuple(s.question), Counter())[tuple(s.answer)] += 1
    guess = {q: c.most_common(1)[0][0] for q, c in counts.items()}
    return np.array([guess.get(tuple(s.question)) == tuple(s.answer) for s in samples])


def subsets(samples) -> dict[str, np.ndarray]:
    """Subset name -> [N] bool mask, for the question types present and the claim's subsets."""
    out = {q: np.array([s.qtype == q for s in samples]) for q in QTYPES}
    out["small objects"] = np.array([s.small for s in samples])
    out["aspect >= 4"] = np.array([s.aspect >= 4 for s in samples])
    out["all"] = np.ones(len(samples), bool)
    return {k: m for k, m in out.items() if m.any()}


def _paired_metric(pr: dict, other: str) -> dict:
    """A `stats.paired` result as a metric: the discordant counts and p to 3 digits."""
    return {"native_only": pr["a_only"], f"{other}_only": pr["b_only"],
            "mcnemar_p": float(f"{pr['p']:.3g}")}  # fmt: skip


def _acc(hit: np.ndarray, mask: np.ndarray) -> float | None:
    return round(float(hit[mask].mean()), 3) if mask.any() else None


@experiment(
    "kimi-vl",
    "Kimi-VL (MoonViT + pixel-shuffle MLP + MoE LM) on offline visual QA: native vs square",
    KimiVLExperimentConfig,
    check=check_kimi_vl,
    presets={
        "smoke": dict(
            n_train=24,
            n_eval=16,
            steps=3,
            batch=8,
            d_vision=16,
            vit_layers=1,
            vit_heads=2,
            d_lm=16,
            lm_layers=1,
            lm_heads=2,
            scale=0.25,
            eval_batch=16,
        ),
        # the native-resolution claim on one CPU thread (docs/kimi-vl.md, "cpu-native"):
        # one question type where resolution decides the answer: reading a single digit.
        # The 3x5 font at 2-px dots (6 x 10 px) is what the CPU model learns in these
        # steps (1-px dots and 3-digit strings were not learned); the fixed square scales
        # one axis of 7 of the 9 canvases by 0.57-0.67, to 1.1-1.3-px dots. Settings were
        # chosen on seed 1; the committed result is seed 0.
        "cpu-native": dict(
            qtypes="read",
            digit_len="1,1",
            digit_dot="4,4",  # 2-px dots at scale 0.5
            small_frac=0.0,  # 25% of 1-px digits halved what the model learned in these steps
            n_train=24000,  # reading is data-hungry: 6,000 samples plateaued at 0.29
            n_eval=1000,
            steps=1200,
            pad="black",
        ),
        "gpu": dict(
            scale=1.0,
            n_train=10000,
            n_eval=1000,
            steps=3000,
            max_seconds=70.0,  # per run: both runs and the data fit in about 3.5 minutes
            batch=256,
            lr=1e-3,
            d_vision=192,
            vit_layers=4,
            vit_heads=6,
            d_lm=256,
            lm_layers=4,
            lm_heads=8,
            experts=8,
            top_k=2,
            pack_tokens=4096,
            eval_batch=250,
            distractors="1,3",
            pad="black",  # a grey pad band hid the digits on 2 of 9 canvases (cpu-native)
        ),
    },
)
def run_kimi_vl(cfg: KimiVLExperimentConfig, ctx: Context) -> Result:
    check_kimi_vl(cfg)
    modes = [m.strip() for m in cfg.modes.split(",") if m.strip()]
    vqa = vqa_config(cfg)
    t0 = time.perf_counter()
    train_s = generate(vqa, ctx.seed, cfg.n_train)
    eval_s = generate(vqa, ctx.seed + 10_000, cfg.n_eval)
    ctx.log(f"generated {cfg.n_train + cfg.n_eval} samples in {time.perf_counter() - t0:.1f} s")
    unit = 2 * cfg.patch
    side = cfg.square or equal_budget_side([s.size for s in train_s], unit)
    groups = subsets(eval_s)
    reading = np.array([s.qtype == "read" for s in eval_s])

    rows, curves, loads, blank, hits = [], {}, {}, {}, {}
    for mode in modes:
        if mode == "native":
            # uint8 0 = black; MoonViT's own padding (0 after normalisation) is then a no-op
            fill = (lambda im: pad_image(im, unit)) if cfg.pad == "black" else (lambda im: im)
            tr_img = [fill(s.image) for s in train_s]
            ev_img = [fill(s.image) for s in eval_s]
        else:
            sq = lambda im: to_u8(resize_square(im.float() / 255, side))  # noqa: E731
            tr_img = [sq(s.image) for s in train_s]
            ev_img = [sq(s.image) for s in eval_s]
        torch.manual_seed(ctx.seed)  # the same initial weights for both runs
        model = build_model(cfg)
        losses, ips, tps, vps = train(model, cfg, train_s, tr_img, ctx, mode)
        correct, token_acc, load = evaluate(model, cfg, eval_s, ev_img, ctx.device)
        blind, _, _ = evaluate(model, cfg, eval_s, ev_img, ctx.device, blank=True)
        if mode == "native":  # the native model on what the square's resize leaves
            rt_img = [fill(square_round_trip(s.image, side)) for s in eval_s]
            hits["round trip"], _, _ = evaluate(model, cfg, eval_s, rt_img, ctx.device)
        tok = model.tokens_per_image(ev_img)
        row = {
            "input": mode if mode == "native" else f"square {side}x{side}",
            "tokens/image": round(float(np.mean(tok)), 1),
            "tokens min-max": f"{min(tok)}-{max(tok)}",
        }
        row.update({k: _acc(correct, m) for k, m in groups.items()})
        row.update(
            {
                "read (per digit)": round(float(token_acc[reading].mean()), 3)
                if reading.any()
                else None,
                "all, blank image": round(float(blind.mean()), 3),
                "steps": len(losses),
                "final loss": round(float(np.mean(losses[-20:])), 3),
                "images/s": round(ips, 1),
                "LM tokens/s": round(tps),
                "ViT patches/s": round(vps),
                "expert load (layer 0)": [round(float(v), 3) for v in load[0]],
                "params (M)": round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
                "active params (M)": round(
                    model.lm.num_active_params() / 1e6
                    + sum(p.numel() for p in model.vision.parameters()) / 1e6
                    + sum(p.numel() for p in model.projector.parameters()) / 1e6,
                    3,
                ),
            }
        )
        rows.append(row)
        curves[mode], loads[mode], hits[mode] = losses, load, correct
        blank[mode] = {k: float(blind[m].mean()) for k, m in groups.items() if m.any()}

    metrics = {f"{r['input'].split()[0]}_{k}": r[k] for r in rows for k in groups}
    for r in rows:
        metrics[f"{r['input'].split()[0]}_read_per_digit"] = r["read (per digit)"]
    for mode, accs in blank.items():
        metrics.update({f"{mode}_blank_{k}": round(v, 3) for k, v in accs.items()})
    prior = majority_answer(train_s, eval_s)
    prior_row = {"input": "answer prior (text only)"}
    prior_row.update({k: _acc(prior, m) for k, m in groups.items()})
    metrics.update({f"prior_{k}": prior_row[k] for k in groups})
    model_rows = list(rows)
    if "round trip" in hits:
        rt_row = {"input": "native model, images squeezed to the square and back"}
        rows.append(rt_row | {k: _acc(hits["round trip"], m) for k, m in groups.items()})
        metrics.update({f"round_trip_{k}": rows[-1][k] for k in groups})
        # the same questions with and without the detail the square's resize removes
        squeezed = np.array([side < max(s.size) for s in eval_s])
        for k, m in {**groups, "squeezed canvases": squeezed}.items():
            pr = paired(hits["native"][m], hits["round trip"][m])
            metrics[f"paired_round_trip_{k}"] = _paired_metric(pr, "round_trip")
    rows.append(prior_row)
    pairs = {}
    if "square" in hits and "native" in hits:  # the same held-out questions: a paired test
        pairs = {k: paired(hits["native"][m], hits["square"][m]) for k, m in groups.items()}
        for k, pr in pairs.items():
            metrics[f"paired_{k}"] = _paired_metric(pr, "square")
        p_row = {"input": "McNemar p, native vs square"}
        rows.append(p_row | {k: float(f"{pr['p']:.3g}") for k, pr in pairs.items()})
    metrics["square_side"] = side
    # per canvas size, with the factor by which the square shrinks its more squeezed axis
    # (< 1: detail lost; 112x112 at scale 0.5 is the control, the same pixels in both runs)
    canvases = sorted({s.size for s in eval_s}, key=lambda hw: (side / max(hw), hw))
    by_canvas = {}
    for h, w in canvases:
        m = np.array([s.size == (h, w) for s in eval_s])
        by_canvas[f"{h}x{w}"] = {"squeeze": round(side / max(h, w), 2), "n": int(m.sum())}
        by_canvas[f"{h}x{w}"].update({mode: _acc(hit, m) for mode, hit in hits.items()})
    metrics["by_canvas"] = by_canvas
    _plot(ctx, model_rows, curves, loads, groups, cfg, blank, prior_row, pairs, by_canvas)
    capped = [r["input"] for r in model_rows if r["steps"] < cfg.steps]
    n_types = len(vqa.qtypes)
    notes = [
        f"{cfg.n_train} training / {cfg.n_eval} held-out samples at scale {cfg.scale}, "
        f"{cfg.distractors} distractors, {cfg.small_frac:.0%} small; {cfg.steps} steps of "
        f"{cfg.batch} ({int(cfg.align_frac * cfg.steps)} alignment steps with the LM frozen, "
        "then joint)"
        + (f"; stopped by the {cfg.max_seconds:g} s cap: {', '.join(capped)}" if capped else "")
        + ".",
        "Accuracy = exact match of the whole answer (teacher forcing = greedy decoding here); "
        "read (per digit) = share of right digits on reading questions (teacher forcing).",
        "Answer priors from the question text alone: count 1/4, colour 1/6, position 1/2 (once "
        "the canvas orientation is known), larger 1/2 (one of the two colours named), read "
        "~0 (1/10 per digit). 'answer prior (text only)' = the training set's most common "
        "answer to the same question words, scored on the held-out questions. 'all, blank "
        "image' = the same model fed uniform grey images: what it scores without the pixels.",
        "McNemar p = exact two-sided test on the questions that exactly one input got right "
        "(the same held-out questions for both); the counts are in metrics paired_*.",
        f"About {len(eval_s) // n_types} eval samples per question type: a binomial "
        f"standard error of up to {0.5 / math.sqrt(max(1, len(eval_s) // n_types)):.2f}.",
    ]
    columns = [
        "input",
        "tokens/image",
        "tokens min-max",
        *groups,
        "read (per digit)",
        "all, blank image",
        "steps",
        "final loss",
        "images/s",
        "LM tokens/s",
        "ViT patches/s",
        "expert load (layer 0)",
    ]
    return Result(metrics=metrics, table=rows, columns=columns, notes=notes)


def _plot(ctx, rows, curves, loads, groups, cfg, blank=None, prior=None, pairs=None,
          by_canvas=None):  # fmt: skip
    fig, axes = ctx.figure(1, 4, figsize=(21, 4.8), gridspec_kw={"width_ratios": [2.0, 1.7, 1, 1]})
    ax = axes[0]
    names = list(groups)
    width = 0.8 / max(1, len(rows))
    for j, r in enumerate(rows):
        xs = np.arange(len(names)) + (j - (len(rows) - 1) / 2) * width
        label = f"{r['input']} ({r['tokens/image']} tokens/image)"
        ax.bar(xs, [r[n] or 0.0 for n in names], width, label=label)
        mode = r["input"].split()[0]
        if blank and mode in blank:  # what the same model scores on grey images
            ys = [blank[mode].get(n, np.nan) for n in names]
            ax.scatter(xs, ys, marker="_", s=250, color="black", zorder=3,
                       label="same model, blank images" if j == 0 else None)  # fmt: skip
    if prior:  # the answer prior from the question words alone, one mark per group
        ys = [np.nan if prior.get(n) is None else prior[n] for n in names]
        ax.scatter(np.arange(len(names)), ys, marker="x", s=40, color="grey", zorder=3,
                   label="answer prior (text only)")  # fmt: skip
    for i, n in enumerate(names if pairs else []):  # paired test over the same questions
        top = max(r[n] or 0.0 for r in rows)
        ax.text(i, min(top + 0.03, 1.0), f"p={pairs[n]['p']:.2g}", ha="center", fontsize=7)
    ax.set_xticks(np.arange(len(names)), names, rotation=20)
    ax.set_ylabel("exact-match accuracy")
    ax.set_ylim(0, 1.4)  # the band above 1.05 holds the legend, clear of bars and p labels
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_title(
        "held-out accuracy by question type and subset"
        + ("\n(p: McNemar, native vs square, same questions)" if pairs else "")
    )
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax = axes[1]
    modes = [r["input"].split()[0] for r in rows]
    labels = [r["input"] for r in rows]
    if by_canvas and "round trip" in next(iter(by_canvas.values())):
        modes.insert(1, "round trip")
        labels.insert(1, "native model, images squeezed to the square and back")
    names = list(by_canvas or {})
    w = 0.8 / max(1, len(modes))
    for j, (mode, label) in enumerate(zip(modes, labels, strict=True)):
        xs = np.arange(len(names)) + (j - (len(modes) - 1) / 2) * w
        hatch = "//" if mode == "round trip" else None
        color = f"C{0 if mode == 'native' else 1 if mode == 'square' else 2}"
        ys = [by_canvas[n][mode] or 0.0 for n in names]
        ax.bar(xs, ys, w, label=label, hatch=hatch, color=color, alpha=0.6 if hatch else 1)
    if prior and "all" in groups:
        ax.axhline(prior["all"], color="grey", ls=":", label="answer prior (all)")
    labels = [f"{n}\nx{by_canvas[n]['squeeze']:g}" for n in names]
    ax.set_xticks(np.arange(len(names)), labels, fontsize=7)
    ax.set_xlabel("canvas H x W (native), and the square's scale on its long side")
    ax.set_ylabel("exact-match accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_title("held-out accuracy by canvas size")
    ax.legend(fontsize=8, loc="upper left")
    ax = axes[2]
    for mode, c in curves.items():
        k = max(1, len(c) // 50)
        smooth = np.convolve(c, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(len(smooth)) + k - 1, smooth, label=mode)
    if int(cfg.align_frac * cfg.steps) > 0:
        ax.axvline(int(cfg.align_frac * cfg.steps), color="grey", ls=":", label="end of alignment")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (answer CE + MoE aux)")
    ax.set_title("training loss")
    ax.legend(fontsize=8)
    ax = axes[3]
    for j, (mode, load) in enumerate(loads.items()):
        L, E = load.shape
        xs = np.arange(L * E)
        ax.bar(xs + (j - 0.5) * 0.4, load.flatten().numpy(), 0.4, label=mode)
    ax.axhline(1 / load.shape[1], color="grey", ls=":", label="uniform")
    for i in range(1, L):  # one group of E bars per MoE layer
        ax.axvline(i * E - 0.5, color="black", lw=0.5, alpha=0.4)
    ax.set_xticks((np.arange(L) + 0.5) * E - 0.5, [f"layer {i}" for i in range(L)])
    ax.set_xlabel(f"{E} experts per layer")
    ax.set_ylabel("share of routed assignments")
    ax.set_ylim(0, 1.35 * float(max(v.max() for v in loads.values())))  # room for the legend
    ax.set_title("expert load (eval set)")
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    ctx.savefig(fig, "kimi_vl")
