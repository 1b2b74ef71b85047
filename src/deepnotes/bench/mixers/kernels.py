"""`deepnotes bench kernels`: the Triton kernels against their peers, in one run.

At a fixed token count (B*T) and model width (H*D), for each sequence length T:
- softmax attention: `flash_attn` (ours) vs torch SDPA (whichever backend it picks, recorded)
  and the explicit reference where its T x T matrix fits; beside it the forward with Hopper's
  TMA loads (`tma`, `tma-ws` with warp specialisation; rows per `flash_variants`, sm_90+);
- causal linear attention: `chunk_linear_attn` (ours) vs fla's `chunk_linear_attn`
  (`fla-core`, optional) and the chunked PyTorch form; beside it the sequence-parallel form
  (`seg-<n>` rows, one per segment count in `linear_segments`) and, where ours runs that form,
  the one-walk kernel (`walk`);
- FLASH/GAU mixed-chunk attention: `chunk_gau` (ours) vs the chunked PyTorch form and vs SDPA
  at the same width (S = 128 shared q/k width, E = H*D values, one head);
- the Mamba selective scan: `selective_scan` (ours: the step-by-step forward) vs the chunked
  PyTorch form, with the device's measured copy bandwidth as the yardstick; beside it the
  kernel's chunk-parallel forward (`chunked-<CL>` rows, one per chunk length in
  `scan_chunks`, same backward) and its chunk-parallel backward (`chunked-bwd-<CL>`); the
  peer `mamba_ssm` (its CUDA scan) when it is built.

Forward and forward+backward times are medians from CUDA events after warm-up
(`triton.testing.do_bench`). Attention TFLOP/s count 4 T^2 D H B for the forward (halved
when causal) and 2.5x that for the backward; the scan's GB/s count the bytes it must read
and write once. Ratios (`x_<peer>` = peer time / our time, > 1 means we are faster) compare
rows measured in the same run. On a CPU the kernels are skipped (they need CUDA) and only
the PyTorch paths are timed (the `smoke` budget).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version

import torch
import torch.nn.functional as F

from deepnotes.jobs import Context, Result, suite
from deepnotes.utils.errors import error_line
from deepnotes.utils.timing import peak_memory_bytes, time_ms


@dataclass
class KernelsBenchConfig:
    ops: list[str] = field(default_factory=lambda: ["flash", "linear", "gau", "scan"])  # kernels
    tokens: int = 65536  # B*T, fixed across lengths (the setting)
    width: int = 2048  # H*D for attention; E for GAU; channels Dm for the scan
    head_dims: list[int] = field(default_factory=lambda: [64, 128])  # D (H = width / D)
    lengths: list[int] = field(default_factory=lambda: [2048, 8192, 32768])  # T sweep
    gau_lengths: list[int] = field(
        default_factory=lambda: [2048, 4096, 8192, 16384, 32768, 65536]
    )  # GAU: linear in T up to 64k
    gau_chunk: int = 256  # FLASH's chunk length C
    gau_width: int = 128  # S, the shared q/k width of GAU (the paper's s = 128)
    flash_variants: list[str] = field(
        default_factory=lambda: ["tma", "tma-ws"]
    )  # flash forwards timed beside ours: tma (Hopper TMA loads), tma-ws (+ warp specialisation)
    linear_segments: list[int] = field(
        default_factory=lambda: [4, 16]
    )  # segment counts of the sequence-parallel linear attention timed beside ours (empty: none)
    scan_state: int = 16  # N, Mamba's default state size
    scan_chunks: list[int] = field(
        default_factory=lambda: [64, 128, 256]
    )  # chunk lengths CL of the scan's chunk-parallel forward timed beside ours (empty: none)
    scan_bwd_chunks: list[int] = field(
        default_factory=lambda: [128]
    )  # chunk lengths CL of the scan's chunk-parallel backward (multiples of 64) timed beside ours
    dtype: str = "bfloat16"  # bf16 on GPU; the smoke budget uses float32 on CPU
    causal: bool = True  # causal masking (the LM setting)
    peers: bool = True  # time SDPA and fla (when installed)
    references: bool = True  # time the PyTorch forms where they fit ref_max_gb / ref_max_T
    ref_max_gb: float = 24.0  # skip a reference whose T x T or working set would exceed this
    ref_max_T: int = 8192  # longest T at which the (slow) PyTorch forms are timed
    copy_gb: float = 2.0  # buffer size of the copy-bandwidth measurement


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _has_kernels(device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _fla():
    try:
        from fla.ops.linear_attn import chunk_linear_attn as fla_chunk_linear_attn
    except Exception:  # noqa: BLE001 - any import failure means "peer absent"
        return None
    return fla_chunk_linear_attn


def _measure(fwd, fwdbwd, ctx: Context, label: str, rows: list[dict]) -> dict:
    """Median fwd and fwd+bwd times (and peak memory on CUDA). First the rows measured so far
    go to rows_so_far.json and the log says what is timed next, so a run stopped mid-way
    keeps its rows and shows where it stopped (compilation and autotuning included)."""
    if rows:
        ctx.save_rows(rows)
    ctx.log(f"timing {label} ...")
    t0 = time.perf_counter()
    device = ctx.device
    out = {"fwd_ms": time_ms(fwd, device), "fwdbwd_ms": time_ms(fwdbwd, device)}
    if device.type == "cuda":  # the CPU profiler trace is slow; smoke runs skip it
        out["peak_mb"] = peak_memory_bytes(fwdbwd, device) / 2**20
    ctx.log(f"  {label}: fwd {out['fwd_ms']:.3g} ms, fwd+bwd {out['fwdbwd_ms']:.3g} ms "
            f"({time.perf_counter() - t0:.1f} s with warm-up)")  # fmt: skip
    return out


def _grad_fn(f, inputs, cot):
    """Forward+backward of f(*inputs) (first output) against a fixed cotangent."""
    xs = [x.detach().requires_grad_(x.is_floating_point()) for x in inputs]
    diff = [x for x in xs if x.requires_grad]

    def run():
        o = f(*xs)
        o = o[0] if isinstance(o, tuple) else o
        torch.autograd.grad(o, diff, cot)

    def fwd():
        with torch.no_grad():
            f(*xs)

    return fwd, run


def _sdpa_backend(q, k, v, causal: bool) -> str:
    """Name of the SDPA backend torch picks for these inputs."""
    try:
        from torch.nn.attention import SDPBackend

        idx = torch._fused_sdp_choice(q, k, v, None, 0.0, causal)
        return SDPBackend(idx).name.lower()
    except Exception as e:  # noqa: BLE001 - private API; record why instead of failing
        return f"unknown ({type(e).__name__})"


def _attn_flops(B, H, T, D, causal) -> float:
    return 4.0 * T * T * D * H * B * (0.5 if causal else 1.0)


# --------------------------------------------------------------------------- ops
def bench_flash(cfg, ctx, kernels, rows, notes):
    from deepnotes.ops.attention import flash_attn, naive_softmax_attn
    from deepnotes.ops.attention.triton_flash import triton_flash_attn
    from deepnotes.ops.attention.triton_flash_tma import tma_problem

    dt = _dtype(cfg.dtype)
    for D in cfg.head_dims:
        H = cfg.width // D
        variants = []
        if kernels and cfg.flash_variants:
            why = tma_problem(torch.empty(1, 1, 1, D, device=ctx.device, dtype=dt))
            if why is None:
                variants = list(cfg.flash_variants)
            else:
                notes.append(f"flash_attn variants {cfg.flash_variants} skipped at D={D}: {why}")
        for T in cfg.lengths:
            B = max(1, cfg.tokens // T)
            x = [torch.randn(B, H, T, D, device=ctx.device, dtype=dt) for _ in range(3)]
            cot = torch.randn_like(x[0])
            flops = _attn_flops(B, H, T, D, cfg.causal)
            impls = {}
            if kernels:
                impls["ours"] = lambda q, k, v: flash_attn(
                    q, k, v, causal=cfg.causal, backend="triton"
                )
                for loads in variants:
                    impls[loads] = lambda q, k, v, loads=loads: triton_flash_attn(
                        q, k, v, causal=cfg.causal, loads=loads
                    )
            if cfg.peers:
                impls["sdpa"] = lambda q, k, v: F.scaled_dot_product_attention(
                    q, k, v, is_causal=cfg.causal
                )
            ref_gb = B * H * T * T * 4 * 3 / 1e9  # scores, probabilities and their grads
            if cfg.references and T <= cfg.ref_max_T and ref_gb <= cfg.ref_max_gb:
                impls["reference"] = lambda q, k, v: naive_softmax_attn(q, k, v, causal=cfg.causal)
            for impl, f in impls.items():
                fwd, fb = _grad_fn(f, x, cot)
                try:
                    m = _measure(fwd, fb, ctx, f"flash_attn {impl} D={D} T={T}", rows)
                except Exception as e:  # noqa: BLE001 - an opt-in variant may not compile
                    if impl not in variants:
                        raise
                    notes.append(f"flash_attn {impl} D={D} T={T} failed: {error_line(e)}")
                    continue
                row = {"op": "flash_attn", "impl": impl, "D": D, "T": T, "B": B, "H": H, **m}
                row["fwd_tflops"] = flops / m["fwd_ms"] / 1e9
                row["fwdbwd_tflops"] = 3.5 * flops / m["fwdbwd_ms"] / 1e9
                if impl == "sdpa":
                    row["note"] = "backend: " + _sdpa_backend(*x, cfg.causal)
                rows.append(row)
            del x, cot
    if cfg.references:
        notes.append(
            f"flash_attn reference: timed only where T <= {cfg.ref_max_T} and its T x T "
            f"tensors fit {cfg.ref_max_gb} GB"
        )


def bench_linear(cfg, ctx, kernels, rows, notes):
    from deepnotes.ops.linear_attention import chunk_linear_attn, torch_chunk_linear_attn
    from deepnotes.ops.linear_attention.triton_chunk import (
        segments_for,
        triton_chunk_linear_attn,
    )
    from deepnotes.ops.linear_attention.triton_segmented import segmented_chunk_linear_attn

    dt = _dtype(cfg.dtype)
    fla = _fla() if cfg.peers and ctx.device.type == "cuda" else None
    if cfg.peers and fla is None:
        notes.append("fla (fla-core) not installed or no CUDA: the fla peer was skipped")
    elif fla is not None:
        try:
            notes.append(f"fla peer: fla-core {version('fla-core')}")
        except PackageNotFoundError:
            notes.append("fla peer: fla (version not found in package metadata)")
    for D in cfg.head_dims:
        H = cfg.width // D
        for T in cfg.lengths:
            B = max(1, cfg.tokens // T)
            # feature-mapped (non-negative) q, k, as the mixer passes them
            q = F.elu(torch.randn(B, H, T, D, device=ctx.device, dtype=dt)) + 1
            k = F.elu(torch.randn(B, H, T, D, device=ctx.device, dtype=dt)) + 1
            v = torch.randn(B, H, T, D, device=ctx.device, dtype=dt)
            cot = torch.randn_like(v)
            impls = {}
            if kernels:
                impls["ours"] = (
                    lambda q, k, v: chunk_linear_attn(q, k, v, backend="triton")[0],
                    (q, k, v),
                    cot,
                )
                if segments_for(B, H, T, D) > 1:  # ours runs segments here: the one walk too
                    impls["walk"] = (
                        lambda q, k, v: triton_chunk_linear_attn(q, k, v, segments=1)[0],
                        (q, k, v),
                        cot,
                    )
            if fla is not None:
                # fla's layout is [B, T, H, D]; transposed copies are made outside the timing
                ft = [t.transpose(1, 2).contiguous() for t in (q, k, v)]
                impls["fla"] = (
                    lambda q, k, v: fla(q, k, v, normalize=True)[0],
                    ft,
                    cot.transpose(1, 2).contiguous(),
                )
            # the forced segment counts after the peer: one that fails costs no peer row
            segs = [f"seg-{n}" for n in cfg.linear_segments] if kernels else []
            for name, n in zip(segs, cfg.linear_segments, strict=False):
                impls[name] = (
                    lambda q, k, v, n=n: segmented_chunk_linear_attn(q, k, v, segments=n)[0],
                    (q, k, v),
                    cot,
                )
            if cfg.references and T <= cfg.ref_max_T:
                impls["reference"] = (
                    lambda q, k, v: torch_chunk_linear_attn(q, k, v)[0],
                    (q, k, v),
                    cot,
                )
            for impl, (f, xs, c) in impls.items():
                fwd, fb = _grad_fn(f, xs, c)
                try:
                    m = _measure(fwd, fb, ctx, f"chunk_linear_attn {impl} D={D} T={T}", rows)
                except Exception as e:  # noqa: BLE001 - a forced segment count may not compile
                    if impl not in segs:
                        raise
                    notes.append(f"chunk_linear_attn {impl} D={D} T={T} failed: {error_line(e)}")
                    continue
                rows.append(
                    {"op": "chunk_linear_attn", "impl": impl, "D": D, "T": T, "B": B, "H": H, **m}
                )
            del q, k, v, cot
    notes.append("chunk_linear_attn: causal, normalize=True, q/k already feature-mapped (elu+1)")
    if kernels and cfg.linear_segments:
        notes.append(
            "chunk_linear_attn seg-<n>: the sequence-parallel form (n segments from their "
            "prefix states, triton_segmented.py); walk: the one-walk kernel, timed where ours "
            "runs segments (segments_for); x_<row> = its time / ours, > 1 means ours is faster"
        )


def bench_gau(cfg, ctx, kernels, rows, notes):
    from deepnotes.ops.gau import chunk_gau, torch_chunk_gau

    dt = _dtype(cfg.dtype)
    S, E, C = cfg.gau_width, cfg.width, cfg.gau_chunk
    D_sdpa = 128 if cfg.width % 128 == 0 and cfg.width >= 128 else cfg.width
    for T in cfg.gau_lengths:
        B = max(1, cfg.tokens // T)
        x = [torch.randn(B, T, S, device=ctx.device, dtype=dt) / S**0.25 for _ in range(4)]
        x.append(torch.randn(B, T, E, device=ctx.device, dtype=dt))
        cot = torch.randn(B, T, E, device=ctx.device, dtype=dt)
        impls = {}
        if kernels:
            impls["ours"] = lambda *a: chunk_gau(
                *a, chunk_size=C, causal=cfg.causal, backend="triton"
            )
        if cfg.references and T <= cfg.ref_max_T:
            impls["reference"] = lambda *a: torch_chunk_gau(*a, chunk_size=C, causal=cfg.causal)
        for impl, f in impls.items():
            fwd, fb = _grad_fn(f, x, cot)
            m = _measure(fwd, fb, ctx, f"chunk_gau {impl} T={T}", rows)
            rows.append({"op": "chunk_gau", "impl": impl, "D": S, "T": T, "B": B, "H": 1, **m})
        del x, cot
        if cfg.peers:
            H = cfg.width // D_sdpa
            q = [torch.randn(B, H, T, D_sdpa, device=ctx.device, dtype=dt) for _ in range(3)]
            fwd, fb = _grad_fn(
                lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=cfg.causal),
                q,
                torch.randn_like(q[0]),
            )
            m = _measure(fwd, fb, ctx, f"chunk_gau sdpa T={T}", rows)
            rows.append(
                {"op": "chunk_gau", "impl": "sdpa", "D": D_sdpa, "T": T, "B": B, "H": H, **m}
            )
            del q
    notes.append(
        f"chunk_gau: one head, S = {S}, E = {E}, chunk {C}; the 'sdpa' peer is softmax "
        f"attention at the same width (H*D = {cfg.width}, D = {D_sdpa})"
    )


def _copy_bandwidth(cfg, ctx) -> float | None:
    """Device-to-device copy GB/s (bytes read + written), the scan's yardstick."""
    if ctx.device.type != "cuda":
        return None
    n = int(cfg.copy_gb * 1e9 / 2)
    src = torch.empty(n, device=ctx.device, dtype=torch.bfloat16).normal_()
    dst = torch.empty_like(src)
    ms = time_ms(lambda: dst.copy_(src), ctx.device)
    return 2 * n * 2 / ms / 1e6


def _mamba_scan(cfg, ctx, notes):
    """mamba_ssm's CUDA selective scan (`mamba_peer.mamba_selective_scan`) when peers are
    asked for, the device is CUDA and `selective_scan_cuda` imports; else None and a note."""
    if not cfg.peers:
        return None
    from deepnotes.ops.ssm import mamba_peer

    on_cuda = ctx.device.type == "cuda"
    why = mamba_peer.available() if on_cuda else f"device {ctx.device}, it needs CUDA"
    if why is not None:
        notes.append(f"mamba_ssm peer skipped: {why}")
        return None
    notes.append(
        "mamba_ssm peer: mamba_ssm's selective_scan_cuda (fwd + bwd as its SelectiveScanFn), "
        "built alone by scripts/build_mamba_scan.sh"
    )
    return mamba_peer.mamba_selective_scan


def bench_scan(cfg, ctx, kernels, rows, notes, metrics):
    from deepnotes.ops.ssm import selective_scan, torch_selective_scan
    from deepnotes.ops.ssm.triton_scan import triton_selective_scan

    dt = _dtype(cfg.dtype)
    Dm, N = cfg.width, cfg.scan_state
    mamba = _mamba_scan(cfg, ctx, notes)
    copy = _copy_bandwidth(cfg, ctx)
    if copy is not None:
        metrics["copy_GBps"] = copy

    def chunk_rows(prefix, lengths, key, **variant):
        """{prefix-CL: our kernel with key=CL and `variant` (fwd, bwd; unnamed ones the walk)}
        for each chunk length CL."""
        variant = dict(fwd="walk", bwd="walk") | variant
        return {
            f"{prefix}-{cl}": lambda *a, cl=cl: triton_selective_scan(
                *a, delta_softplus=True, **variant, **{key: cl}
            )
            for cl in lengths
        }

    for L in cfg.lengths:
        Bt = max(1, cfg.tokens // L)
        dev = ctx.device
        u = torch.randn(Bt, Dm, L, device=dev, dtype=dt)
        delta = (torch.randn(Bt, Dm, L, device=dev) * 0.5 - 1.0).to(dt)
        A = -torch.exp(torch.randn(Dm, N, device=dev) * 0.5)
        Bm = torch.randn(Bt, N, L, device=dev, dtype=dt)
        Cm = torch.randn(Bt, N, L, device=dev, dtype=dt)
        Dv = torch.randn(Dm, device=dev)
        z = torch.randn(Bt, Dm, L, device=dev, dtype=dt)
        bias = torch.randn(Dm, device=dev) * 0.3
        xs = (u, delta, A, Bm, Cm, Dv, z, bias)
        cot = torch.randn_like(u)
        esize = u.element_size()
        # bytes read and written once: u, delta, z in; y out; B, C in (fp32 params negligible)
        fwd_bytes = 4 * u.numel() * esize + 2 * Bm.numel() * esize
        # backward also reads dy and writes du, ddelta, dz (and dB, dC in fp32)
        bwd_bytes = fwd_bytes + 4 * u.numel() * esize + 2 * Bm.numel() * 4
        impls = {}
        if kernels:
            impls["ours"] = lambda *a: selective_scan(
                *a, delta_softplus=True, backend="triton", fwd="walk", bwd="walk"
            )
            impls |= chunk_rows("chunked", cfg.scan_chunks, "chunk_len", fwd="chunked")
            impls |= chunk_rows("chunked-bwd", cfg.scan_bwd_chunks, "bwd_chunk_len", bwd="chunked")
        if mamba is not None:
            impls["mamba_ssm"] = lambda *a: mamba(*a, delta_softplus=True)
        if cfg.references and L <= cfg.ref_max_T:
            impls["reference"] = lambda *a: torch_selective_scan(*a, delta_softplus=True)
        for impl, f in impls.items():
            fwd, fb = _grad_fn(f, xs, cot)
            try:
                m = _measure(fwd, fb, ctx, f"selective_scan {impl} L={L}", rows)
            except Exception as e:  # noqa: BLE001 - the separately built peer may not run here
                if impl != "mamba_ssm":
                    raise
                notes.append(f"selective_scan mamba_ssm L={L} failed: {error_line(e)}")
                continue
            row = {"op": "selective_scan", "impl": impl, "D": N, "T": L, "B": Bt, "H": Dm, **m}
            row["fwd_GBps"] = fwd_bytes / m["fwd_ms"] / 1e6
            row["fwdbwd_GBps"] = (fwd_bytes + bwd_bytes) / m["fwdbwd_ms"] / 1e6
            if copy:
                row["note"] = f"fwd at {100 * row['fwd_GBps'] / copy:.0f}% of copy bandwidth"
            rows.append(row)
        del xs, u, delta, z, Bm, Cm, cot
    notes.append(
        f"selective_scan: Dm = {Dm}, N = {N}, delta_softplus, D and z given; GB/s count u, "
        "delta, z, B, C read and y written once (backward adds dy read, du/ddelta/dz written)"
        + (f"; device copy bandwidth {copy:.0f} GB/s" if copy else "")
    )
    if kernels and cfg.scan_chunks:
        notes.append(
            "selective_scan chunked-<CL>: the two-level forward (chunks of CL steps in parallel, "
            "then a scan over chunks) with the same backward; fwd_x_chunked-<CL> = its time / "
            "ours (the step-by-step forward), > 1 means the chunked one is slower"
        )
    if kernels and cfg.scan_bwd_chunks:
        notes.append(
            "selective_scan chunked-bwd-<CL>: the step-by-step forward with the chunk-parallel "
            "backward (chunks of CL steps in parallel, joined by a reverse scan over chunks); "
            "fwdbwd_x_chunked-bwd-<CL> = its time / ours, > 1 means the chunked one is slower"
        )


PEERS = {"sdpa", "fla", "mamba_ssm", "reference"}


def _ratios(rows: list[dict], metrics: dict) -> None:
    """x_<peer> = peer time / our time, for rows of the same op, T (and D, except for GAU,
    whose SDPA peer has its own head dim)."""

    def key(r):
        return (r["op"], r["T"]) if r["op"] == "chunk_gau" else (r["op"], r["T"], r["D"])

    ours = {key(r): r for r in rows if r["impl"] == "ours"}
    for r in rows:
        o = ours.get(key(r))
        if r["impl"] == "ours" or o is None:
            continue
        for phase in ("fwd", "fwdbwd"):
            ratio = r[f"{phase}_ms"] / o[f"{phase}_ms"]
            o[f"{phase}_x_{r['impl']}"] = ratio
            metrics[f"{r['op']}/D{o['D']}/T{r['T']}/{phase}_x_{r['impl']}"] = ratio
    # our variants (tma, seg-<n>, chunked-<CL>) against the peers of their own row
    peers = {(key(r), r["impl"]): r for r in rows if r["impl"] in PEERS}
    for r in rows:
        if r["impl"] == "ours" or r["impl"] in PEERS:
            continue
        for peer in PEERS - {"reference"}:
            p = peers.get((key(r), peer))
            if p is not None:
                for phase in ("fwd", "fwdbwd"):
                    r[f"{phase}_x_{peer}"] = p[f"{phase}_ms"] / r[f"{phase}_ms"]


def _widen_to_125(ax) -> None:
    """Stretch a log y axis out to the nearest 1-2-5 values around its limits (when it spans
    at most 2.5 decades, where `log_ticks` labels 1-2-5 steps), so that no point lies beyond
    the last labelled tick."""
    import math

    lo, hi = ax.get_ylim()
    if lo <= 0 or math.log10(hi / lo) > 2.5:
        return
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    steps = [m * 10.0**e for e in range(e0, e1 + 1) for m in (1, 2, 5)]
    new_lo = max(v for v in steps if v <= lo * 1.0001)
    new_hi = min(v for v in steps if v >= hi / 1.0001)
    if math.log10(new_hi / new_lo) <= 2.5:
        ax.set_ylim(new_lo / 1.08, new_hi * 1.08)


def _plot(rows, ctx):
    """One panel per op: forward+backward median ms against T, log-log; colour = implementation,
    line style = head dim D (two legends beside the panel). Ticks sit at the measured T and
    read as plain numbers."""
    from matplotlib.lines import Line2D

    from deepnotes.utils.plot import few_series_styles, log_ticks

    ops = list(dict.fromkeys(r["op"] for r in rows if r.get("fwdbwd_ms") is not None))
    if not ops:  # nothing timed (e.g. only the kernels asked for, off CUDA): no plot
        return
    fig, axes = ctx.figure(1, len(ops), figsize=(7 * len(ops), 4.5))
    axes = [axes] if len(ops) == 1 else list(axes)
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    styles = few_series_styles(impls)  # peers keep their fixed styles; variants get free colours
    lines = ("-", "--", ":", "-.")
    for ax, op in zip(axes, ops, strict=False):
        sel = [r for r in rows if r["op"] == op and r.get("fwdbwd_ms") is not None]
        dims = list(dict.fromkeys(r["D"] for r in sel))
        for impl, d in dict.fromkeys((r["impl"], r["D"]) for r in sel):
            pts = sorted((r["T"], r["fwdbwd_ms"]) for r in sel if (r["impl"], r["D"]) == (impl, d))
            st = dict(styles[impl], linestyle=lines[dims.index(d) % 4])
            ax.plot(*zip(*pts, strict=True), **st, ms=7)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        log_ticks(ax, "x", at=[r["T"] for r in sel])
        _widen_to_125(ax)  # a labelled tick below the fastest point and above the slowest
        log_ticks(ax, "y")
        ax.set_title(f"{op}: forward+backward")
        ax.set_xlabel("sequence length T (B*T fixed)")
        ax.set_ylabel("time (ms, median)")
        ax.grid(True, which="major", alpha=0.3)
        mine = [i for i in impls if any(r["impl"] == i for r in sel)]
        handles = [Line2D([], [], **dict(styles[i], linestyle="-"), ms=7, label=i) for i in mine]
        handles += [Line2D([], [], color="k", linestyle=lines[k % 4], label=f"D={d}")
                    for k, d in enumerate(dims)]  # fmt: skip
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=9)
    ctx.savefig(fig, "kernels.png")


@suite(
    "kernels",
    "Triton kernels (flash, linear attention, GAU, selective scan) vs SDPA, fla and references",
    KernelsBenchConfig,
    presets={
        "smoke": {
            "tokens": 128,
            "width": 32,
            "head_dims": [16],
            "lengths": [32, 64],
            "gau_lengths": [32, 64],
            "gau_chunk": 16,
            "gau_width": 16,
            "scan_state": 4,
            "dtype": "float32",
            "copy_gb": 0.01,
        },
        "gpu": {},
    },
)
def bench_kernels(cfg: KernelsBenchConfig, ctx: Context) -> Result:
    kernels = _has_kernels(ctx.device)
    rows: list[dict] = []
    notes: list[str] = []
    metrics: dict = {}
    if not kernels:
        notes.append(f"device {ctx.device}: Triton kernels need CUDA; PyTorch paths only")
    valid = {"flash", "linear", "gau", "scan"}
    bad = sorted(set(cfg.ops) - valid)
    if bad:
        raise ValueError(f"unknown ops {bad}; valid: {sorted(valid)}")
    from deepnotes.ops.attention.triton_flash_tma import VARIANTS

    bad = sorted(set(cfg.flash_variants) - set(VARIANTS))
    if bad:
        raise ValueError(f"unknown flash_variants {bad}; valid: {sorted(VARIANTS)}")
    for op in ctx.progress(cfg.ops, desc="bench kernels"):
        if op == "flash":
            bench_flash(cfg, ctx, kernels, rows, notes)
        elif op == "linear":
            bench_linear(cfg, ctx, kernels, rows, notes)
        elif op == "gau":
            bench_gau(cfg, ctx, kernels, rows, notes)
        else:
            bench_scan(cfg, ctx, kernels, rows, notes, metrics)
        if ctx.device.type == "cuda":
            torch.cuda.empty_cache()
    _ratios(rows, metrics)
    if not any(r.get("fwdbwd_ms") is not None for r in rows):
        notes.append("nothing was timed, so no plot: the kernels need CUDA, and the PyTorch "
                     "forms were turned off (--references false) or did not fit")  # fmt: skip
    _plot(rows, ctx)
    cols = [
        "op",
        "impl",
        "D",
        "T",
        "B",
        "fwd_ms",
        "fwdbwd_ms",
        "fwd_tflops",
        "fwdbwd_tflops",
        "fwd_GBps",
        "fwdbwd_x_sdpa",
        "fwdbwd_x_fla",
        "fwdbwd_x_mamba_ssm",
        "fwdbwd_x_reference",
        "peak_mb",
        "note",
    ]
    return Result(metrics=metrics, table=rows, columns=cols, notes=notes)


__all__ = ["KernelsBenchConfig", "bench_kernels"]
