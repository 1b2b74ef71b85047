"""The plot of `scripts/tune_kernels.py`: every tile setting tried, the fastest, and the floor.

One row per kernel and shape, two panels (forward; forward + backward), time on a log axis:
grey dots are the tile settings that ran, the coloured diamond is the fastest (its time
written beside it), the black bar is the FLOP/byte floor of docs/kernels.md at the tuning
setting (bf16, B*T = 65,536 tokens, H*D = 2048; 795 TFLOP/s, 3.0 TB/s on an H100).
Flash and the scan time forward and backward kernels separately; their forward + backward
points add the fastest forward (of the same BL for the scan) to each backward setting.
"""

from __future__ import annotations

import math
import re

TOKENS, WIDTH = 65536, 2048  # the tuning setting (scripts/tune_kernels.py)
TFLOPS, TBPS = 795.0, 3.0  # H100 bf16 matrix-product and HBM-copy ceilings (DESIGN figures)
# memory-bound floors in ms (forward, forward + backward), docs/kernels.md
BYTE_FLOORS = {"linear": (0.36, 1.2), "gau": (0.27, 0.8), "scan": (0.36, 1.1)}


def floor_ms(kind: str, shape: str) -> tuple[float, float]:
    """(forward, forward + backward) floor in ms of kernel `kind` at `shape` ("D64 T8192")."""
    if kind == "flash":  # compute-bound: causal fwd = 2 * tokens * width * T FLOP, bwd 2.5x
        T = int(re.search(r"T(\d+)", shape).group(1))
        fwd = 2 * TOKENS * WIDTH * T / (TFLOPS * 1e12) * 1e3
        return fwd, 3.5 * fwd
    return BYTE_FLOORS[kind]


def _ok(t: dict) -> bool:
    ms = t.get("ms")
    return t.get("status") == "ok" and ms is not None and not math.isnan(ms)


def _label(kind: str, shape: str) -> str:
    """ "flash", "D64 T8192" -> "flash D=64 T=8k"."""
    parts = []
    for tok in shape.split():
        m = re.fullmatch(r"([A-Z]+)(\d+)", tok)
        if not m:
            parts.append(tok)
            continue
        key, v = m.group(1), int(m.group(2))
        if key in ("T", "L"):
            parts.append(f"{key}={v // 1024}k" if v % 1024 == 0 else f"{key}={v}")
        elif key != "BL":
            parts.append(f"{key}={v}")
    return " ".join([{"gau": "GAU"}.get(kind, kind), *parts])


def tuning_points(trials: list[dict]) -> list[dict]:
    """One entry per (kernel, shape): label, floors, and the times (ms) of every tile setting
    that ran, forward and forward + backward."""
    ok = [t for t in trials if _ok(t)]
    rows: dict[tuple[str, str], dict] = {}

    def row(kind, shape):
        key = (kind, shape)
        if key not in rows:
            fl = floor_ms(kind, shape)
            rows[key] = {"label": _label(kind, shape), "floor": fl, "fwd": [], "fwdbwd": []}
        return rows[key]

    # flash-decoding's sweep ("decode", no backward) and the scan's parts (not tile settings)
    # are not drawn: they print
    trials = [t for t in trials if "_" in t["op"] and t["op"] != "scan_parts"]
    ok = [t for t in ok if "_" in t["op"] and t["op"] != "scan_parts"]
    for t in trials:  # a failed setting (compile error, illegal access) leaves no point
        kind, phase = t["op"].split("_", 1)
        r = row(kind, t["shape"].split(" BL")[0])
        if _ok(t) and phase in ("fwd", "fwdbwd"):
            r[phase].append(t["ms"])
    for t in ok:  # separate backward kernels: best forward (same BL for the scan) + each
        kind, phase = t["op"].split("_", 1)
        if phase != "bwd":
            continue
        base = t["shape"].split(" BL")[0]
        bl = t["config"].get("BL")
        fwds = [
            f["ms"]
            for f in ok
            if f["op"] == f"{kind}_fwd"
            and f["shape"] == base
            and (bl is None or f["config"].get("BL") == bl)
        ]
        if fwds:
            rows[(kind, base)]["fwdbwd"].append(min(fwds) + t["ms"])
    order = {"flash": 0, "linear": 1, "gau": 2, "scan": 3}
    keys = sorted(rows, key=lambda k: (order.get(k[0], 9), _numbers(k[1])))
    return [rows[k] for k in keys]


def _numbers(shape: str) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"\d+", shape))


def plot_tuning(trials: list[dict], ctx, title: str = "", name: str = "kernels_tuning.png"):
    """Draw `name` (via ctx.savefig) from the trials of scripts/tune_kernels.py: dicts with op,
    shape, config, ms, status."""
    from matplotlib.lines import Line2D

    from deepnotes.utils.plot import log_ticks

    rows = tuning_points(trials)
    n = len(rows)
    fig, axes = ctx.figure(1, 2, figsize=(14, 1.6 + 0.55 * n), sharey=True)
    for k, (ax, phase, name) in enumerate(
        zip(axes, ("fwd", "fwdbwd"), ("forward", "forward + backward"), strict=True)
    ):
        for y, r in enumerate(rows):
            ts, fl = r[phase], r["floor"][k]
            ax.plot([fl], [y], marker="|", color="k", ms=16, mew=2.5, ls="none")
            if not ts:
                ax.text(fl * 1.15, y, "not timed", va="center", fontsize=9, color="0.4")
                continue
            best = min(ts)
            ax.plot([fl, best], [y, y], color="tab:red", lw=1, alpha=0.5)
            ax.plot(ts, [y] * len(ts), "o", color="0.55", ms=5, alpha=0.6, ls="none")
            ax.plot([best], [y], "D", color="tab:blue", ms=8, ls="none")
            note = f"{best:.2f} ms  ({best / fl:.1f}x floor)"
            ax.annotate(note, (max(ts), y), xytext=(8, 0), textcoords="offset points",
                        va="center", fontsize=9)  # fmt: skip
        ax.set_xscale("log")
        lo = min(min(r["floor"][k] for r in rows), *(min(r[phase]) for r in rows if r[phase]))
        hi = max(max(r[phase]) for r in rows if r[phase])
        ax.set_xlim(lo / 1.5, hi * 6)  # room for the notes on the right
        log_ticks(ax, "x")
        ax.set_xlabel("time (ms, median of do_bench; log scale)")
        ax.set_title(name)
        ax.grid(True, axis="x", which="major", alpha=0.3)
    axes[0].set_yticks(range(n), [r["label"] for r in rows], fontsize=10)
    axes[0].set_ylim(n + 0.1, -0.5)  # first row on top; a spare strip below for the legend
    handles = [
        Line2D([], [], marker="o", color="0.55", ls="none", ms=5, label="a tile setting"),
        Line2D([], [], marker="D", color="tab:blue", ls="none", ms=8, label="fastest setting"),
        Line2D(
            [],
            [],
            marker="|",
            color="k",
            ls="none",
            ms=14,
            mew=2.5,
            label=f"floor ({TFLOPS:.0f} TFLOP/s, {TBPS:.1f} TB/s)",
        ),  # fmt: skip
    ]
    axes[1].legend(handles=handles, loc="lower right", fontsize=9, ncol=3)
    fig.suptitle(title or "Triton tile sweeps, H100 bf16, B*T = 65,536, H*D = 2048 (ours only)")
    ctx.savefig(fig, name)
