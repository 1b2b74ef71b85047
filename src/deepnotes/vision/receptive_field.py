"""Receptive fields: the formula (two ways), a module walk, and the gradient measurement.

Conventions (Araujo et al. 2019, "Computing Receptive Fields of CNNs", Distill):
- `rf` (r): how many input pixels along one axis can influence one unit of a layer;
- `jump` (j): the distance in input pixels between two neighbouring units of the layer (the
  product of the strides so far);
- `start`: the input coordinate of the centre of the layer's first unit (pixel centres are
  0, 1, 2, ...), so unit u is centred at `start + u * jump` and sees the input pixels
  `[start + u*jump - (r-1)/2, start + u*jump + (r-1)/2]`.

With an effective kernel k_eff = d (k - 1) + 1 (dilation d), stride s and padding p, one layer
updates them bottom-up as

    r_l = r_{l-1} + (k_eff - 1) j_{l-1},    j_l = j_{l-1} s,
    start_l = start_{l-1} + ((k_eff - 1) / 2 - p) j_{l-1}.

The note computes r top-down instead: start with 1 unit at the top and, going down one layer
at a time, r <- (r - 1) s + k_eff; unrolled, both give r = 1 + sum_l (k_eff_l - 1) prod_{i<l} s_i.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

Spec = tuple[int, ...]  # (kernel, stride) or (kernel, stride, dilation)


def _parse(layers: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
    out = []
    for i, spec in enumerate(layers):
        if len(spec) not in (2, 3):
            raise ValueError(f"layer {i}: expected (kernel, stride[, dilation]), got {spec!r}")
        k, s, d = (*spec, 1) if len(spec) == 2 else spec
        if min(k, s, d) < 1:
            raise ValueError(f"layer {i}: kernel, stride and dilation must be >= 1, got {spec!r}")
        out.append((int(k), int(s), int(d)))
    return out


def receptive_field_topdown(layers: Sequence[Sequence[int]]) -> int:
    """The note's recursion: from one top unit down to the input, r <- (r - 1) s + k_eff."""
    r = 1
    for k, s, d in reversed(_parse(layers)):
        r = (r - 1) * s + d * (k - 1) + 1
    return r


def receptive_field_closed_form(layers: Sequence[Sequence[int]]) -> int:
    """r = 1 + sum_l (k_eff_l - 1) * prod_{i<l} s_i (Araujo et al. 2019, eq. 2)."""
    r, jump = 1, 1
    for k, s, d in _parse(layers):
        r += (d * (k - 1)) * jump
        jump *= s
    return r


@dataclass
class LayerRF:
    """One row of a receptive-field table (one axis)."""

    name: str  # layer name (module path for a walked nn.Module)
    kind: str  # conv / pool / add / cat ...
    kernel: int  # effective kernel d (k - 1) + 1 (0 for merges)
    stride: int
    padding: int
    size: int | None  # output feature-map length along this axis (None without an input size)
    rf: int  # receptive field in input pixels
    jump: int  # distance between neighbouring units in input pixels
    start: float  # input coordinate of the first unit's centre

    def box(self, unit: int) -> tuple[float, float]:
        """Input pixels [lo, hi] seen by `unit` (before clipping to the image)."""
        c = self.start + unit * self.jump
        return c - (self.rf - 1) / 2, c + (self.rf - 1) / 2


def rf_table(
    layers: Sequence[Sequence[int]],
    paddings: Sequence[int] | None = None,
    names: Sequence[str] | None = None,
    input_size: int | None = None,
) -> list[LayerRF]:
    """Bottom-up r, jump and start for every layer of a chain of (kernel, stride[, dilation])."""
    specs = _parse(layers)
    paddings = list(paddings) if paddings is not None else [0] * len(specs)
    if len(paddings) != len(specs):
        raise ValueError(f"{len(paddings)} paddings for {len(specs)} layers")
    rows, r, j, start, n = [], 1, 1, 0.0, input_size
    for i, ((k, s, d), p) in enumerate(zip(specs, paddings, strict=True)):
        ke = d * (k - 1) + 1
        r, start, j = r + (ke - 1) * j, start + ((ke - 1) / 2 - p) * j, j * s
        if n is not None:
            n = (n + 2 * p - ke) // s + 1
            if n < 1:
                raise ValueError(f"layer {i}: input of length {input_size} is too small")
        name = names[i] if names is not None else f"layer{i + 1}"
        rows.append(LayerRF(name, "conv", ke, s, p, n, r, j, start))
    return rows


def receptive_field(
    layers: Sequence[Sequence[int]] | nn.Module, input_size: int | Sequence[int] | None = None
) -> int | tuple[int, int]:
    """Receptive field, in input pixels, of a unit of the last layer.

    layers: (kernel, stride) or (kernel, stride, dilation) tuples, first layer first; or an
      `nn.Module` with an `input_size` ((H, W) or one int): its Conv/Pool layers are walked in
      forward order (`module_rf_table`) up to the head (global pooling, flatten, linear).
    Returns an int, or (rf_h, rf_w) for a module whose two axes differ.
    """
    if isinstance(layers, nn.Module):
        if input_size is None:
            raise ValueError("an nn.Module needs an input_size (H, W)")
        h, w = module_rf_table(layers, input_size)
        return h[-1].rf if h[-1].rf == w[-1].rf else (h[-1].rf, w[-1].rf)
    r = receptive_field_closed_form(layers)
    assert r == receptive_field_topdown(layers)  # the two derivations are the same sum
    return r


# ---------------------------------------------------------------------------- module walk

_POINTWISE = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.ELU,
    nn.Identity,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.LocalResponseNorm,
)  # fmt: skip  (LocalResponseNorm mixes channels only)
_POINTWISE_FNS = {torch.relu, torch.nn.functional.relu, torch.sigmoid, torch.tanh,
                  operator.mul, operator.truediv, torch.nn.functional.gelu}  # fmt: skip
_MERGE_FNS = {operator.add, torch.add, operator.iadd, torch.cat}
_HEADS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)
_HEAD_FNS = {torch.flatten, torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.linear}


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_like(mod: nn.Module) -> tuple[str, tuple[int, int], tuple[int, int], tuple, tuple, bool]:
    """(kind, kernel, stride, padding, dilation, ceil_mode) of a Conv2d/MaxPool2d/AvgPool2d."""
    if isinstance(mod, nn.Conv2d):
        k, s, d = _pair(mod.kernel_size), _pair(mod.stride), _pair(mod.dilation)
        p = mod.padding
        if p == "valid":
            p = (0, 0)
        elif p == "same":
            p = tuple(di * (ki - 1) // 2 for ki, di in zip(k, d, strict=True))
        return "conv", k, s, _pair(p), d, False
    k, s = _pair(mod.kernel_size), _pair(mod.stride or mod.kernel_size)
    d = _pair(getattr(mod, "dilation", 1))
    return "pool", k, s, _pair(mod.padding), d, bool(mod.ceil_mode)


def _trace(module: nn.Module):
    import torch.fx

    try:
        return torch.fx.symbolic_trace(module)
    except Exception as e:  # noqa: BLE001 - re-raised with the reason
        raise ValueError(
            f"cannot walk {type(module).__name__}: torch.fx could not trace it ({e})"
        ) from e


def module_rf_table(
    module: nn.Module, input_size: int | Sequence[int], *, return_node: bool = False
):
    """Walk a CNN's Conv/Pool layers in forward order; one `LayerRF` list per axis (H, W).

    The module is traced with torch.fx, so branches are followed: at a residual add (or a
    concatenation) the field is the union of the branches' fields. The walk stops at the head
    (adaptive pooling, flatten, linear). Layers the walk cannot place (anything that is neither
    a Conv2d/MaxPool2d/AvgPool2d, an elementwise layer nor a merge) raise ValueError.
    """
    size = _pair(input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"input_size must be (H, W) with positive entries, got {input_size!r}")
    gm = _trace(module)
    mods = dict(gm.named_modules())
    # per node: per axis (rf, jump, start, size); None = no spatial state (e.g. constants)
    state: dict = {}
    label: dict = {}  # node -> name of the layer whose field it carries
    rows: tuple[list[LayerRF], list[LayerRF]] = ([], [])
    last = None
    for node in gm.graph.nodes:
        ins = [state[a] for a in node.all_input_nodes if state.get(a) is not None]
        if node.op == "placeholder":
            state[node] = tuple((1, 1, 0.0, n) for n in size)
            continue
        if node.op == "output" or not ins:
            continue
        target = mods.get(node.target) if node.op == "call_module" else node.target
        name = str(node.target) if node.op == "call_module" else node.name
        if isinstance(target, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            kind, k, s, p, d, ceil = _conv_like(target)
            new = []
            for ax, (r, j, start, n) in enumerate(ins[0]):
                ke = d[ax] * (k[ax] - 1) + 1
                num = n + 2 * p[ax] - ke
                n_out = (-(-num // s[ax]) if ceil else num // s[ax]) + 1
                if n_out < 1:
                    raise ValueError(f"{name}: the input of size {size} is too small")
                new.append((r + (ke - 1) * j, j * s[ax], start + ((ke - 1) / 2 - p[ax]) * j, n_out))
                rows[ax].append(LayerRF(name, kind, ke, s[ax], p[ax], n_out, *new[-1][:3]))
            state[node] = tuple(new)
            label[node] = name
        elif (
            isinstance(target, _POINTWISE)
            or target in _POINTWISE_FNS
            or (node.op == "call_method" and node.target in ("relu", "relu_", "sigmoid", "tanh"))
        ):
            state[node] = ins[0]
            label[node] = label.get(node.all_input_nodes[0], name)
        elif target in _MERGE_FNS or (node.op == "call_method" and node.target == "add"):
            new = []
            for ax in range(2):
                per = [st[ax] for st in ins]
                j, n = per[0][1], per[0][3]
                if any(q[1] != j or q[3] != n for q in per):
                    raise ValueError(f"{name}: merged branches differ in jump or size")
                lo = min(q[2] - (q[0] - 1) / 2 for q in per)
                hi = max(q[2] + (q[0] - 1) / 2 for q in per)
                new.append((int(round(hi - lo)) + 1, j, (lo + hi) / 2, n))
                # a merge is named after the block of its widest branch (e.g. layer4.1)
                widest = max(node.all_input_nodes, key=lambda a: state.get(a, ((0,),))[0][0])
                where = label.get(widest, "").rsplit(".", 1)[0]
                kind = "cat" if target is torch.cat else "add"
                rows[ax].append(LayerRF(f"{where}.{kind}", kind, 0, 1, 0, n, *new[-1][:3]))
            state[node] = tuple(new)
            label[node] = f"{where}.{kind}"
        elif (
            isinstance(target, _HEADS)
            or target in _HEAD_FNS
            or (node.op == "call_method" and node.target in ("flatten", "view", "reshape", "mean"))
        ):
            break  # the head: the field of the last layer before it is the answer
        else:
            raise ValueError(f"{name}: don't know how {target!r} changes the receptive field")
        last = node
    if last is None:
        raise ValueError(f"{type(module).__name__} has no Conv/Pool layer to walk")
    return (rows, last) if return_node else rows


# ------------------------------------------------------------------ measured by gradients


def _constant_copy(module: nn.Module) -> nn.Module:
    """A float64 copy with constant positive weights, zero biases, identity norms and
    average pooling in place of max pooling: every path then carries a positive gradient, so
    the non-zero input gradient is exactly the receptive field (no cancellation, no argmax)."""
    import copy

    m = copy.deepcopy(module).double().eval()
    for name, child in list(m.named_modules()):
        if isinstance(child, nn.MaxPool2d):
            parent = m.get_submodule(name.rsplit(".", 1)[0]) if "." in name else m
            pool = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode)
            setattr(parent, name.rsplit(".", 1)[-1], pool)
    with torch.no_grad():
        for child in m.modules():
            if isinstance(child, nn.Conv2d):
                child.weight.fill_(1.0 / child.weight[0].numel())
                if child.bias is not None:
                    child.bias.zero_()
            elif isinstance(child, nn.BatchNorm2d):
                child.reset_parameters()
                child.reset_running_stats()
    return m


def _truncate(module: nn.Module, node_name: str) -> nn.Module:
    """The traced module with its output moved to the walk's last spatial node."""
    gm = _trace(module)
    graph = gm.graph
    node = next(n for n in graph.nodes if n.name == node_name)
    out = next(n for n in graph.nodes if n.op == "output")
    out.args = (node,)
    graph.eliminate_dead_code()
    gm.recompile()
    return gm


def _smallest_length(module: nn.Module, length: int, ax: int) -> int:
    """A short extent across axis `ax` the network accepts (a strip input): the first power of
    two that leaves every feature map at least one unit long."""
    n = 1
    while True:
        try:
            module_rf_table(module, (length, n) if ax == 0 else (n, length))
            return n
        except ValueError as e:
            if "too small" not in str(e) or n > 4096:
                raise
            n *= 2


def _strip_gradient(m, ax, length, other, in_channels):
    """Backpropagate from the unit nearest the middle of a (length along ax) x (other across)
    input; return (whether any gradient is non-zero, (first, last) non-zero pixel along ax)."""
    size = [0, 0]
    size[ax], size[1 - ax] = length, other
    rows, last = module_rf_table(m, size, return_node=True)
    units = []
    for a, n in ((ax, length), (1 - ax, other)):
        row = rows[a][-1]
        # the unit whose field is closest to the middle of the input along this axis
        units.append(
            min(range(row.size), key=lambda u: abs(row.start + u * row.jump - (n - 1) / 2))
        )
    lo, hi = rows[ax][-1].box(units[0])
    if lo < 0 or hi > length - 1:
        raise ValueError(
            f"input length {length} cannot hold a receptive field of {rows[ax][-1].rf}"
        )
    x = torch.ones(1, in_channels, *size, dtype=torch.float64, requires_grad=True)
    y = _truncate(m, last.name)(x)
    idx = [0, slice(None), 0, 0]
    idx[2 + ax], idx[3 - ax] = units
    y[tuple(idx)].sum().backward()
    nz = torch.nonzero(x.grad.abs().sum(dim=(0, 1, 3 - ax)) > 0).flatten()
    if len(nz) == 0:
        return False, (0, -1)
    return True, (int(nz.min()), int(nz.max()))


def measure_receptive_field(
    module: nn.Module, input_size: Sequence[int] | None = None, in_channels: int | None = None
) -> tuple[tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]:
    """Measure the receptive field of the last spatial layer by backpropagation.

    For each axis, one strip-shaped input (as short as the network allows across, `input_size`
    or just long enough along) goes through a constant-weight float64 copy; the gradient of
    one central unit w.r.t. the input is non-zero exactly on the pixels that unit sees. The
    axes are separable, so strips give the same extent as a full square image, far cheaper.
    Returns ((rf_h, rf_w), ((lo_h, hi_h), (lo_w, hi_w))): the extent and the pixel bounds.
    """
    m = _constant_copy(module)
    if in_channels is None:
        conv = next((c for c in m.modules() if isinstance(c, nn.Conv2d)), None)
        in_channels = conv.in_channels if conv is not None else 1
    theory = [t[-1] for t in module_rf_table(m, (4096, 4096))]
    rfs, bounds = [], []
    for ax in range(2):
        t = theory[ax]
        length = t.rf + 2 * t.jump + int(abs(t.start)) * 2 if input_size is None else input_size[ax]
        other = _smallest_length(m, length, ax) if input_size is None else input_size[1 - ax]
        while True:
            g, (a, b) = _strip_gradient(m, ax, length, other, in_channels)
            # the extent along `ax` is right as soon as one valid path exists across (the
            # axes are separable); with none (a unit that sees only padding across) widen
            if g or input_size is not None or other > 4096:
                break
            other *= 2
        if not g:
            raise ValueError("no input pixel reaches the chosen unit (it sees only padding)")
        rfs.append(b - a + 1)
        bounds.append((a, b))
    return (rfs[0], rfs[1]), (bounds[0], bounds[1])


# --------------------------------------------------------------- effective receptive field


def effective_receptive_field(
    features: nn.Module, x: torch.Tensor, *, reduce: str = "mean"
) -> torch.Tensor:
    """Luo et al. 2016: |d y_centre / d x| for the central unit of the output feature map.

    features: maps x [B, C, H, W] -> [B, C', H', W'] (a CNN trunk, no head);
    x: [B, C, H, W] input images. The gradient 1 is put on every channel of the centre unit
    (Luo et al.'s "set the gradient at the centre to 1, all others 0") and backpropagated.
    Returns [H, W]: the absolute input gradient summed over channels, averaged (or summed)
    over the batch. For a trained network it depends on the images, hence the average.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    x = x.detach().clone().requires_grad_(True)
    y = features(x)
    if y.dim() != 4:
        raise ValueError(f"features must return [B, C, H, W], got shape {tuple(y.shape)}")
    y[:, :, y.shape[2] // 2, y.shape[3] // 2].sum().backward()
    g = x.grad.abs().sum(dim=1)
    return g.mean(0) if reduce == "mean" else g.sum(0)


def mass_radius(
    erf: torch.Tensor, fraction: float = 0.95, centre: tuple[int, int] | None = None
) -> float:
    """Half-width of the square around `centre` (default: the pixel nearest the map's centre of
    mass) that holds `fraction` of the total gradient mass, comparable with the theoretical
    half-width (r - 1) / 2. Linear in the mass between whole-pixel half-widths."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    e = erf.double() / erf.sum()
    h, w = e.shape
    ys, xs = torch.arange(h, dtype=e.dtype), torch.arange(w, dtype=e.dtype)
    if centre is None:
        centre = (round(float((e.sum(1) * ys).sum())), round(float((e.sum(0) * xs).sum())))
    # Chebyshev distance of every pixel from the centre -> mass within half-width k
    dist = torch.maximum((ys[:, None] - centre[0]).abs(), (xs[None, :] - centre[1]).abs()).long()
    mass = torch.cumsum(torch.bincount(dist.flatten(), weights=e.flatten()), 0)
    k = int(torch.searchsorted(mass, torch.tensor(fraction - 1e-12, dtype=mass.dtype)))
    k = min(k, len(mass) - 1)
    if k == 0:
        return 0.0
    return k - 1 + float((fraction - mass[k - 1]) / (mass[k] - mass[k - 1]))


def gaussian_fit_r2(profile: torch.Tensor) -> tuple[float, float]:
    """Fit a Gaussian to a 1-D non-negative profile by its moments; return (sigma, R^2)."""
    p = profile.double()
    xs = torch.arange(len(p), dtype=p.dtype)
    w = p / p.sum()
    mu = float((w * xs).sum())
    sigma = math.sqrt(float((w * (xs - mu) ** 2).sum()))
    g = torch.exp(-0.5 * ((xs - mu) / max(sigma, 1e-12)) ** 2)
    g = g * (p @ g) / (g @ g)  # least-squares amplitude
    r2 = 1 - float(((p - g) ** 2).sum() / ((p - p.mean()) ** 2).sum())
    return sigma, r2
