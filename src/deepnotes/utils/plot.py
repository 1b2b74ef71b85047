"""Matplotlib, imported lazily with a non-interactive backend, and the project's plot style.

Style: one fixed (colour, marker, line style) per mixer or method name in every plot of the
project (`series_style`): names in `KNOWN` keep their slot; a variant "base[tag]" keeps its
base's colour with another marker and a dashed line; any other name gets a slot from a
stable hash of its text (crc32, not Python's salted `hash`). `series_styles` gives one plot's
series distinct styles (a later series that collides moves to the next free slot), so 40
series stay distinguishable. `label_points` places scatter labels without overlaps, and
`log_if_wide` switches an axis to log scale when the data span decades, `log_ticks` writes
a log axis's labels as plain numbers ("2048", "0.5") that do not collide, and `short_ticks`
writes large linear ticks as "100k".
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

# tab10 colours, then markers and line styles: slot k -> (COLORS[k % 10],
# MARKERS[(k + k // 10) % 10], LINESTYLES[k // 10 % 4]); slots 0..39 are pairwise distinct.
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
          "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
LINESTYLES = ("-", "--", ":", "-.")
N_SLOTS = len(COLORS) * len(LINESTYLES)

# Fixed slots: the mixers (first ten: ten different colours), then other methods compared in
# plots. Append new names; never reorder (that would recolour every figure).
KNOWN = (
    "softmax", "linear", "performer", "linformer", "sliding_window",
    "strided_sparse", "gau_quad", "gau_flash", "s4d", "s4",
    "mamba", "lstm", "gru", "adamw", "adam", "sgd", "dense", "moe",
    "relu", "gelu", "swiglu", "geglu",
)  # fmt: skip
_SLOT = {n: i for i, n in enumerate(KNOWN)}
_VARIANT = re.compile(r"^(.+?)\[(.+)\]$")


def _style(slot: int, *, color_of: int | None = None, dashed: bool = False) -> dict:
    slot %= N_SLOTS
    c = slot if color_of is None else color_of
    ls = LINESTYLES[slot // 10 % len(LINESTYLES)] if not dashed else "--"
    return {"color": COLORS[c % 10], "marker": MARKERS[(slot + slot // 10) % 10], "linestyle": ls}


def _slot(name: str) -> int:
    if name in _SLOT:
        return _SLOT[name]
    return len(KNOWN) + zlib.crc32(name.encode()) % (N_SLOTS - len(KNOWN))


def series_style(name: str) -> dict:
    """{"color", "marker", "linestyle"} of `name`, the same in every plot."""
    m = _VARIANT.match(name)
    if name not in _SLOT and m and m.group(1) in _SLOT:
        base = _SLOT[m.group(1)]  # "softmax[math]": softmax's colour, its own marker, dashed
        return _style(base + 1 + zlib.crc32(m.group(2).encode()) % 9, color_of=base, dashed=True)
    return _style(_slot(name))


def series_styles(names: Sequence[str]) -> dict[str, dict]:
    """Distinct styles for one plot's series: each name's own style unless an earlier
    series holds it, then the next free slot."""
    out: dict[str, dict] = {}
    used: set[tuple] = set()
    for name in names:
        st = series_style(name)
        slot = _slot(name)
        while (st["color"], st["marker"], st["linestyle"]) in used:
            slot += 1
            st = _style(slot)
        used.add((st["color"], st["marker"], st["linestyle"]))
        out[name] = st
    return out


def few_series_styles(names: Sequence[str]) -> dict[str, dict]:
    """Styles for a plot of at most ten series: names in `KNOWN` (and their "base[tag]"
    variants) keep their fixed style; any other name keeps its own marker and line style
    but takes the first colour that no other series uses (hashed colours often collide).
    More than ten names: `series_styles`."""
    if len(names) > len(COLORS):
        return series_styles(names)
    out: dict[str, dict] = {}
    fixed = [n for n in names if n in _SLOT or ((m := _VARIANT.match(n)) and m.group(1) in _SLOT)]
    used = set()
    for n in fixed:
        out[n] = series_style(n)
        used.add(out[n]["color"])
    for n in names:
        if n in out:
            continue
        st = dict(series_style(n))
        if st["color"] in used:
            st["color"] = next(c for c in COLORS if c not in used)
        used.add(st["color"])
        out[n] = st
    return {n: out[n] for n in names}


def label_points(
    ax, xs, ys, labels, *, fontsize: float = 8, color=None, pad_px: float = 2.0,
    clear_px: float = 0.0,
):  # fmt: skip
    """Annotate points without overlapping labels: each label tries offsets around its point
    (right, above, left, below, then further out) and takes the first whose box overlaps no
    placed label and no other point. `clear_px` > 0 also keeps every box that far from every
    point's centre, its own included (the marker's radius in pixels: a label then never
    touches a marker). Returns the text artists."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the data -> pixel transform
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(list(zip(xs, ys, strict=True)))
    placed: list[tuple[float, float, float, float]] = []
    texts = []
    dirs = [(1, 0.3), (0, 1), (-1, 0.3), (0, -1.2), (1, -1), (-1, -1), (1, 1), (-1, 1)]
    for i, (label, (px, py)) in enumerate(zip(labels, pts, strict=True)):
        t = ax.annotate(label, (xs[i], ys[i]), xytext=(0, 0), textcoords="offset points",
                        fontsize=fontsize, color=color[i] if color else None)  # fmt: skip
        bb = t.get_window_extent(renderer)
        w, h = bb.width + 2 * pad_px, bb.height + 2 * pad_px
        best = None
        for r in (6, 14, 24, 36, 50):
            for dx, dy in dirs:
                cx, cy = px + dx * r, py + dy * r
                x0 = cx if dx > 0 else (cx - w if dx < 0 else cx - w / 2)
                y0 = cy - h / 2
                box = (x0, y0, x0 + w, y0 + h)
                m = clear_px
                hit = any(_overlap(box, b) for b in placed) or any(
                    box[0] - m <= qx <= box[2] + m and box[1] - m <= qy <= box[3] + m
                    for j, (qx, qy) in enumerate(pts)
                    if j != i or m > 0
                )
                if not hit:
                    best = box
                    break
            if best:
                break
        if best is None:  # crowded: farthest ring to the right
            best = (px + 50, py - h / 2, px + 50 + w, py + h / 2)
        placed.append(best)
        dpi = fig.dpi / 72.0  # pixels per point
        t.set_position(((best[0] + pad_px - px) / dpi, (best[1] + pad_px - py) / dpi))
        if abs(best[0] - px) > 12 or abs(best[1] + h / 2 - py) > 12:
            t.arrow_patch = None
            t.set_annotation_clip(False)
        texts.append(t)
    return texts


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def log_if_wide(ax, values, axis: str = "x", decades: float = 1.5) -> bool:
    """Log scale on `axis` when positive `values` span more than `decades` powers of ten."""
    vals = [v for v in values if v is not None and v > 0]
    if len(vals) < 2 or max(vals) / min(vals) < 10**decades:
        return False
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    quiet_minor_ticks(ax, axis)
    return True


def quiet_minor_ticks(ax, axis: str = "x") -> None:
    """No labels on a log axis's minor ticks (they collide: "3x10^3 4x10^3")."""
    from matplotlib.ticker import NullFormatter

    (ax.xaxis if axis == "x" else ax.yaxis).set_minor_formatter(NullFormatter())


def tick_label(v: float) -> str:
    """A short plain number for a tick: 2048 -> "2048", 0.05 -> "0.05", 50000 -> "50k",
    2e6 -> "2M", 3e-5 -> "3e-5" (k / M only where they stay exact: 16384 stays "16384")."""
    a = abs(v)
    if a == 0:
        return "0"
    if a < 1e-3 or a >= 1e9:
        m, e = f"{v:.0e}".split("e")
        return f"{m}e{int(e)}"
    for scale, suffix, start in ((1e6, "M", 1e6), (1e3, "k", 1e4)):  # 5000 stays "5000"
        if a >= start:
            m = v / scale
            if abs(m - round(m, 2)) < 1e-9 and len(f"{m:g}".replace(".", "").lstrip("-")) <= 3:
                return f"{m:g}{suffix}"
    return f"{v:g}" if a < 1e5 else f"{v:.0f}"


def log_ticks(ax, axis: str = "y", at: Sequence[float] | None = None) -> None:
    """Readable labels on a log axis (call after plotting): major ticks at `at` (e.g. the
    sequence lengths measured) or, without it, at 1-2-5 steps when the axis spans at most 2.5
    decades, at decades beyond, and (y only) at 1-2-3-5 under one decade; labels are plain
    numbers (`tick_label`), never "2x10^3 3x10^3" pairs that run into each other; minor ticks
    stay, unlabelled."""
    import math

    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    if at is not None:
        a.set_major_locator(FixedLocator(sorted({float(v) for v in at if v and v > 0})))
    else:
        lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
        span = math.log10(max(hi, 1e-300) / max(lo, 1e-300))
        subs = (1.0, 2.0, 5.0) if span <= 2.5 else (1.0,)  # numticks thins long spans
        if span <= 1 and axis == "y":  # under a decade: 1-2-3-5 (more crowd the decade's top)
            subs = (1.0, 2.0, 3.0, 5.0)
        a.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    a.set_major_formatter(FuncFormatter(lambda v, _pos: tick_label(v)))
    a.set_minor_formatter(NullFormatter())


def short_ticks(ax, axis: str = "x") -> None:
    """Tick labels of a linear axis in `tick_label` form ("100k" rather than "100000"), so
    six-digit step counts do not run into each other."""
    from matplotlib.ticker import FuncFormatter

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(
        FuncFormatter(lambda v, _pos: tick_label(v))
    )


def pyplot():
    """Return matplotlib.pyplot using the Agg backend, or raise a clear error if missing."""
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError(
            "plots need matplotlib: pip install 'deepnotes[plot]' (scripts/setup.sh installs it)"
        ) from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
