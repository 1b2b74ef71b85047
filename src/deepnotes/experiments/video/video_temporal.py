"""`deepnotes run video-temporal`: TSN vs TSM vs 3D CNNs on clips that need temporal order.

The claim (Lin et al. 2019, TSM, Table 1 and Fig. 1): a 2D CNN averaged over frames (TSN)
cannot tell "something moving left" from "moving right", while the same 2D CNN with temporal
shifts can, at no extra parameters or FLOPs, matching a 3D CNN that costs several times more.

Data: `deepnotes.data.clips.action_clips` (8 temporal-order classes in time-reversed pairs,
4 appearance classes). All models share one width; accuracy is reported separately on the
temporal-order and the appearance classes, next to parameters, multiply-adds and latency.
The FLOP counter is also checked against the two published reference configurations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from deepnotes.data.clips import CLASS_NAMES, N_TEMPORAL, action_clips
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.video.resnet import VideoResNet, r3d_18, small, tsm_resnet50
from deepnotes.utils.io import atomic_write_json
from deepnotes.utils.timing import time_ms
from deepnotes.video.fit import predict, train_classifier
from deepnotes.video.flops import count

LABELS = {"tsn": "TSN (2D)", "tsm": "TSM (2D + shift)", "r3d": "R3D (3D)", "r2plus1d": "R(2+1)D"}


@dataclass
class VideoTemporalConfig:
    models: str = "tsn,tsm,r3d"  # comma-separated: tsn, tsm, r3d, r2plus1d
    n_train: int = 720  # training clips (60 per class)
    n_test: int = 480  # test clips
    frames: int = 8  # T, frames per clip (the TSM paper's 8-frame setting)
    size: int = 32  # clip side in pixels
    width: int = 8  # channels of the first stage, the same for every model
    stem_stride: int = 2  # 2: blocks run at 16x16, which keeps the CPU run in minutes
    epochs: int = 16  # passes over the training clips
    batch: int = 32  # clips per step
    lr: float = 3e-3  # AdamW peak learning rate (cosine decay)
    max_seconds: float = 0.0  # wall-clock cap per model (0 = none; the GPU preset caps)
    check_references: bool = True  # count R3D-18 and TSM-ResNet50 on the meta device


def _split_acc(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    temporal = y < N_TEMPORAL
    # within-pair accuracy: did it get the direction right, given the pair?
    pair_ok = (pred // 2 == y // 2) & temporal
    return {
        "acc": (pred == y).float().mean().item(),
        "acc_temporal": (pred == y)[temporal].float().mean().item(),
        "acc_appearance": (pred == y)[~temporal].float().mean().item(),
        "direction_given_pair": ((pred == y) & pair_ok).sum().item() / max(pair_ok.sum().item(), 1),
    }


def reference_counts() -> list[dict]:
    rows = []
    for name, cfg, t, s, pub in (
        ("R3D-18, 16x112x112", r3d_18(), 16, 112, (33.4, 40.7)),
        ("TSM-ResNet50, 8x224x224", tsm_resnet50(), 8, 224, (24.3, 33.0)),
    ):
        with torch.device("meta"):
            c = count(VideoResNet(cfg, t), torch.empty(1, t, 3, s, s))
        rows.append(
            {
                "reference": name,
                "params_M": round(c.params / 1e6, 2),
                "GMACs": round(c.macs / 1e9, 2),
                "published_params_M": pub[0],
                "published_GFLOPs(=GMACs)": pub[1],
            }
        )
    return rows


@experiment(
    "video-temporal",
    "TSN vs TSM vs 3D CNN on synthetic clips whose classes need temporal order",
    VideoTemporalConfig,
    presets={
        "smoke": dict(
            models="tsn,tsm,r3d",
            n_train=24,
            n_test=24,
            frames=4,
            size=16,
            width=4,
            epochs=1,
            batch=12,
            check_references=False,
        ),
        "gpu": dict(
            models="tsn,tsm,r3d,r2plus1d",
            n_train=6000,
            n_test=1200,
            width=32,
            stem_stride=1,
            epochs=30,
            batch=64,
            max_seconds=20.0,
        ),
    },  # fmt: skip
)
def run_video_temporal(cfg: VideoTemporalConfig, ctx: Context) -> Result:
    kinds = [k.strip() for k in cfg.models.split(",") if k.strip()]
    bad = [k for k in kinds if k not in LABELS]
    if bad or not kinds:
        raise ValueError(f"unknown model(s) {bad}; valid: {', '.join(LABELS)}")
    ctx.log("generating clips ...")
    x_tr, y_tr = action_clips(cfg.n_train, frames=cfg.frames, size=cfg.size, seed=ctx.seed)
    x_te, y_te = action_clips(cfg.n_test, frames=cfg.frames, size=cfg.size, seed=ctx.seed + 1)
    rows, curves = [], {}
    for kind in kinds:
        torch.manual_seed(ctx.seed)
        mcfg = small(kind, len(CLASS_NAMES), cfg.width, stem_stride=cfg.stem_stride)
        model = VideoResNet(mcfg, cfg.frames)
        c = count(model, x_te[:1])
        ctx.log(f"training {kind}: {c.params} params, {c.macs / 1e6:.1f} MMACs per clip")
        hist = train_classifier(
            model, x_tr, y_tr, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr, device=ctx.device,
            max_seconds=cfg.max_seconds or None, seed=ctx.seed,
            progress=lambda k=kind, **kw: ctx.progress(desc=k, **kw),
        )  # fmt: skip
        pred = predict(model, x_te, device=ctx.device).argmax(-1)
        one = x_te[:1].to(ctx.device)
        with torch.no_grad():
            lat = time_ms(
                lambda m=model, o=one: m(o), ctx.device, warmup=2, repeat=10, max_seconds=3.0
            )
        curves[kind] = hist["loss"]
        rows.append(
            {
                "model": LABELS[kind],
                "params_k": round(c.params / 1e3, 1),
                "MMACs_per_clip": round(c.macs / 1e6, 1),
                **{k: round(v, 3) for k, v in _split_acc(pred, y_te).items()},
                "latency_ms_per_clip": round(lat, 2),
                "train_s": round(hist["seconds"][0], 1),
                "steps": len(hist["loss"]),
            }
        )
    refs = reference_counts() if cfg.check_references else []
    atomic_write_json(ctx.out / "curves.json", curves)  # plot data, for scripts/replot.py
    plot_video_temporal(ctx, rows, curves)
    by = {r["model"]: r for r in rows}
    metrics = {f"{k}_acc_temporal": by[LABELS[k]]["acc_temporal"] for k in kinds}
    metrics |= {f"{k}_acc_appearance": by[LABELS[k]]["acc_appearance"] for k in kinds}
    metrics |= {f"{k}_MMACs": by[LABELS[k]]["MMACs_per_clip"] for k in kinds}
    metrics["reference_counts"] = refs
    return Result(
        metrics=metrics,
        table=rows,
        notes=[
            "chance on the temporal-order classes: 1/8 overall, 1/2 within a time-reversed pair "
            "(direction_given_pair); an order-blind model such as TSN cannot beat 1/2 there",
            "MACs = multiply-adds (what the papers and torchvision call FLOPs); the shift "
            "adds 0 parameters and 0 MACs, so TSN and TSM rows match",
            *[
                f"counter check, {r['reference']}: {r['params_M']}M params, {r['GMACs']} GMACs "
                f"(published {r['published_params_M']}M, {r['published_GFLOPs(=GMACs)']}G)"
                for r in refs
            ],
        ],  # fmt: skip
    )


def plot_video_temporal(ctx: Context, rows: list[dict], curves: dict) -> None:
    """rows: the job's table; curves: {model kind: training losses per step}."""
    from deepnotes.utils.plot import log_ticks

    fig, (a1, a2, a3) = ctx.figure(1, 3, figsize=(15, 4.5))
    names = [r["model"] for r in rows]
    xs = torch.arange(len(rows)).numpy()
    # greys: the other panels' colours name the models, here the bars are class types
    a1.bar(xs - 0.2, [r["acc_temporal"] for r in rows], 0.4, color="dimgray",
           label="temporal-order classes")  # fmt: skip
    a1.bar(xs + 0.2, [r["acc_appearance"] for r in rows], 0.4, color="silver",
           label="appearance classes")  # fmt: skip
    a1.axhline(0.5, ls=":", c="k", label="pair chance (1/2)")
    a1.set_xticks(xs, names, fontsize=8)
    a1.set_ylim(0, 1.4)
    a1.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    a1.set_ylabel("test accuracy")
    a1.set_title("accuracy by class type")
    a1.legend(fontsize=8, loc="upper left", ncol=2)
    for i, r in enumerate(rows):
        a2.scatter(r["MMACs_per_clip"], r["acc_temporal"], s=60, c=f"C{i}", label=r["model"])
    a2.legend(fontsize=8, loc="lower right")
    a2.set_xlabel("multiply-adds per clip (M)")
    a2.set_ylabel("accuracy, temporal-order classes")
    a2.set_title("temporal accuracy vs cost")
    a2.set_ylim(0, 1.05)
    for i, (k, loss) in enumerate(curves.items()):
        a3.plot(loss, label=LABELS.get(k, k), lw=1, c=f"C{i}")
    a3.set_xlabel("step")
    a3.set_ylabel("training loss (cross-entropy)")
    a3.set_yscale("log")
    log_ticks(a3, "y")
    a3.set_title("training")
    a3.legend(fontsize=8)
    ctx.savefig(fig, "video_temporal.png")
