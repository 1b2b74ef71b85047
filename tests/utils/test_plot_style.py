"""The shared plot style: fixed per-name styles, distinct series, labels that do not overlap."""

from __future__ import annotations

import numpy as np

from deepnotes.utils.plot import (
    KNOWN,
    label_points,
    log_if_wide,
    pyplot,
    series_style,
    series_styles,
)


def _key(st):
    return (st["color"], st["marker"], st["linestyle"])


def test_fifteen_series_get_fifteen_distinct_styles():
    names = [*KNOWN[:13], "softmax[math]", "my_new_mixer"]
    styles = series_styles(names)
    assert len({_key(s) for s in styles.values()}) == 15
    many = [f"run{i}" for i in range(40)]  # unknown names whose hashes collide
    assert len({_key(s) for s in series_styles(many).values()}) == 40


def test_style_is_fixed_per_name_across_plots():
    a = series_styles(["gru", "softmax", "s4"])
    b = series_styles(["s4", "linear", "softmax", "mamba"])
    assert a["softmax"] == b["softmax"] == series_style("softmax")
    assert a["s4"] == b["s4"]
    assert series_style("softmax")["color"] != series_style("s4")["color"]  # the clash
    assert series_style("softmax[math]")["color"] == series_style("softmax")["color"]
    assert _key(series_style("softmax[math]")) != _key(series_style("softmax"))
    assert series_style("zzz") == series_style("zzz")  # deterministic fallback
    first_ten = [series_style(n)["color"] for n in KNOWN[:10]]
    assert len(set(first_ten)) == 10


def test_labels_do_not_overlap(seed):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    rng = np.random.default_rng(seed)
    xs = list(1e3 * 10 ** rng.uniform(0, 1.5, 12))
    ys = list(3.2 + rng.uniform(0, 0.15, 12))  # a tight cluster, as in the arena
    ax.scatter(xs, ys)
    assert log_if_wide(ax, xs, "x", decades=1.0) == (max(xs) / min(xs) > 10)
    texts = label_points(ax, xs, ys, [f"mixer_{i}" for i in range(12)])
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(r) for t in texts]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
    plt.close(fig)


def test_labels_keep_clear_of_every_marker(seed):
    """clear_px: no label box comes within that many pixels of any point, its own included."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    rng = np.random.default_rng(seed)
    xs, ys = list(rng.uniform(0, 1, 16)), list(rng.uniform(0, 1, 16))
    ax.scatter(xs, ys, s=40)
    texts = label_points(ax, xs, ys, [f"m{i}" for i in range(16)], clear_px=5)
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    pts = ax.transData.transform(list(zip(xs, ys, strict=True)))
    for t in texts:
        bb = t.get_window_extent(r).expanded(1.0, 1.0)
        for qx, qy in pts:
            near_x = bb.x0 - 4 <= qx <= bb.x1 + 4  # 5 px asked, 1 px for rounding
            assert not (near_x and bb.y0 - 4 <= qy <= bb.y1 + 4), t.get_text()
    plt.close(fig)


def test_few_series_get_distinct_colours():
    from deepnotes.utils.plot import few_series_styles

    names = ["dense", "switch", "top2"]  # hashed colours of the last two collide with dense's
    st = few_series_styles(names)
    assert len({s["color"] for s in st.values()}) == 3
    assert st["dense"] == series_style("dense")  # a known name keeps its fixed style
    eight = ["relu", "gelu", "silu", "glu", "bilinear", "reglu", "geglu", "swiglu"]
    st = few_series_styles(eight)
    assert len({s["color"] for s in st.values()}) == 8 and list(st) == eight
    assert st["relu"] == series_style("relu") and st["gelu"] == series_style("gelu")
    many = [f"run{i}" for i in range(12)]
    assert few_series_styles(many) == series_styles(many)
