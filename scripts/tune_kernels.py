"""Time candidate tile settings of each Triton kernel on a GPU and print the fastest.

Usage (on a CUDA machine, from the repository root):
    PYTHONPATH=src python3 scripts/tune_kernels.py [--ops flash,linear,gau,scan,decode,scan-parts]
        [--json F] [--plot F.png]

Each op is timed at the benchmark's setting (bf16, B*T = 65,536, H*D = 2048) at one or two
lengths; the winners are what the kernels' CONFIG tables hold (see docs/kernels.md).
A candidate that fails to compile (e.g. too much shared memory) is reported, not fatal.
"""

# ruff: noqa: B023 - each closure is timed inside the loop iteration that made it
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch
from triton.testing import do_bench

TOKENS, WIDTH = 65536, 2048
DT = torch.bfloat16
DEV = "cuda"


def ms(fn) -> float:
    return float(do_bench(fn, warmup=10, rep=50, return_mode="median"))


def trial(results, op, shape, cfg, fn):
    t0 = time.perf_counter()
    try:
        fn()  # compile
        torch.cuda.synchronize()
        t = ms(fn)
        status = "ok"
    except Exception as e:  # noqa: BLE001 - a failing candidate is a result
        t, status = float("nan"), f"{type(e).__name__}: {str(e)[:80]}"
    results.append(
        {
            "op": op,
            "shape": shape,
            "config": cfg,
            "ms": t,
            "status": status,
            "wall_s": time.perf_counter() - t0,
        }
    )
    print(f"{op:12s} {shape:22s} {json.dumps(cfg):90s} {t:8.3f} ms  {status}", flush=True)


def tune_flash(results):
    import deepnotes.ops.attention.triton_flash as tf

    fwd_cands = [
        dict(BLOCK_M=128, BLOCK_N=64, num_warps=4, num_stages=3),
        dict(BLOCK_M=128, BLOCK_N=64, num_warps=8, num_stages=3),
        dict(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=3),
        dict(BLOCK_M=128, BLOCK_N=64, num_warps=4, num_stages=4),
        dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3),
        dict(BLOCK_M=128, BLOCK_N=128, num_warps=8, num_stages=2),
    ]
    bwd_cands = [
        dict(BLOCK_M1=64, BLOCK_N1=128, BLOCK_M2=128, BLOCK_N2=64, num_warps=8, num_stages=2),
        dict(BLOCK_M1=64, BLOCK_N1=128, BLOCK_M2=128, BLOCK_N2=64, num_warps=8, num_stages=3),
        dict(BLOCK_M1=32, BLOCK_N1=128, BLOCK_M2=128, BLOCK_N2=32, num_warps=4, num_stages=3),
        dict(BLOCK_M1=32, BLOCK_N1=128, BLOCK_M2=128, BLOCK_N2=32, num_warps=4, num_stages=5),
        dict(BLOCK_M1=64, BLOCK_N1=64, BLOCK_M2=64, BLOCK_N2=64, num_warps=4, num_stages=3),
        dict(BLOCK_M1=64, BLOCK_N1=128, BLOCK_M2=128, BLOCK_N2=64, num_warps=4, num_stages=2),
    ]
    T = 8192
    for D in (64, 128):
        H, B = WIDTH // D, TOKENS // T
        q, k, v, do = (torch.randn(B, H, T, D, device=DEV, dtype=DT) for _ in range(4))
        scale = 1 / math.sqrt(D)
        saved = dict(tf.FWD_CONFIGS[D]), dict(tf.BWD_CONFIGS[D])
        for c in fwd_cands:
            tf.FWD_CONFIGS[D] = c
            trial(
                results,
                "flash_fwd",
                f"D{D} T{T}",
                c,
                lambda: tf.flash_attn_fwd(q, k, v, True, scale),
            )
        tf.FWD_CONFIGS[D] = saved[0]
        o, lse = tf.flash_attn_fwd(q, k, v, True, scale)
        for c in bwd_cands:
            tf.BWD_CONFIGS[D] = c
            trial(
                results,
                "flash_bwd",
                f"D{D} T{T}",
                c,
                lambda: tf.flash_attn_bwd(do, q, k, v, o, lse, True, scale),
            )
        tf.BWD_CONFIGS[D] = saved[1]


def tune_linear(results):
    import deepnotes.ops.linear_attention.triton_chunk as tc

    # BV < 64 last: on Triton 3.6 a BV = 32 launch once hit an illegal address (see notes)
    cands = {
        64: [
            dict(BT=64, BV=64, num_warps=4, num_stages=2),
            dict(BT=64, BV=64, num_warps=4, num_stages=3),
            dict(BT=32, BV=64, num_warps=4, num_stages=2),
            dict(BT=64, BV=64, num_warps=8, num_stages=2),
        ],
        128: [
            dict(BT=64, BV=64, num_warps=8, num_stages=2),
            dict(BT=64, BV=64, num_warps=4, num_stages=2),
            dict(BT=64, BV=128, num_warps=8, num_stages=2),
            dict(BT=32, BV=64, num_warps=4, num_stages=2),
        ],
    }
    for D in (64, 128):
        for T in (8192, 32768):
            H, B = WIDTH // D, TOKENS // T
            q = torch.rand(B, H, T, D, device=DEV, dtype=DT)
            k = torch.rand(B, H, T, D, device=DEV, dtype=DT)
            v, do = (torch.randn(B, H, T, D, device=DEV, dtype=DT) for _ in range(2))
            saved = dict(tc.CONFIGS[D])
            for c in cands[D]:
                tc.CONFIGS[D] = c

                def fwd():
                    return tc.chunk_linear_attn_fwd(q, k, v, None, None, True, 1e-6, None, False)

                def bwd():
                    o, den, _ = fwd()
                    return tc.chunk_linear_attn_bwd(
                        q, k, v, o, den, None, None, do, None, None, True, 1e-6, None
                    )

                trial(results, "linear_fwd", f"D{D} T{T}", c, fwd)
                trial(results, "linear_fwdbwd", f"D{D} T{T}", c, bwd)
            tc.CONFIGS[D] = saved


def tune_gau(results):
    import deepnotes.ops.gau.triton_chunk as tg

    cands = [
        dict(BM=64, BE=128, BE_STATE=64, num_warps=4, num_stages=2),
        dict(BM=64, BE=64, BE_STATE=64, num_warps=4, num_stages=2),
        dict(BM=64, BE=128, BE_STATE=128, num_warps=8, num_stages=2),
        dict(BM=128, BE=128, BE_STATE=64, num_warps=8, num_stages=2),
        dict(BM=64, BE=256, BE_STATE=64, num_warps=8, num_stages=2),
    ]
    T, S, E, C = 8192, 128, WIDTH, 256
    B = TOKENS // T
    x = [torch.randn(B, T, S, device=DEV, dtype=DT) / S**0.25 for _ in range(4)]
    v, do = (torch.randn(B, T, E, device=DEV, dtype=DT) for _ in range(2))
    saved = dict(tg.CONFIG)
    for c in cands:
        tg.CONFIG.clear()
        tg.CONFIG.update(c)
        trial(results, "gau_fwd", f"T{T} C{C}", c, lambda: tg.gau_forward(*x, v, C, True))

        def fb():
            o, st = tg.gau_forward(*x, v, C, True)
            return tg.gau_backward(do, x[0], x[1], x[2], x[3], v, st, C, True)

        trial(results, "gau_fwdbwd", f"T{T} C{C}", c, fb)
    tg.CONFIG.clear()
    tg.CONFIG.update(saved)


def scan_args(L: int, N: int = 16):
    """The scan bench's inputs at length L (B*L = TOKENS, Dm = WIDTH, bf16, softplus on):
    (selective_scan_fwd's leading arguments, dout)."""
    Dm, Bt = WIDTH, TOKENS // L
    u, z, do = (torch.randn(Bt, Dm, L, device=DEV, dtype=DT) for _ in range(3))
    delta = (torch.randn(Bt, Dm, L, device=DEV) * 0.5 - 1).to(DT)
    A = -torch.exp(torch.randn(Dm, N, device=DEV) * 0.5)
    Bm, Cm = (torch.randn(Bt, N, L, device=DEV, dtype=DT) for _ in range(2))
    Dv, bias = torch.randn(Dm, device=DEV), torch.randn(Dm, device=DEV) * 0.3
    return (u, delta, A, Bm, Cm, Dv, z, bias, True), do


def tune_scan(results):
    import deepnotes.ops.ssm.triton_scan as ts

    L = 8192
    args, do = scan_args(L)
    saved = dict(ts.FWD_CONFIG), dict(ts.BWD_CONFIG)
    for BL in (32, 64):
        for BD, w in ((16, 4), (32, 4), (32, 8), (64, 8)):
            ts.FWD_CONFIG.update(BD=BD, BL=BL, num_warps=w, num_stages=2)
            trial(
                results,
                "scan_fwd",
                f"L{L}",
                dict(ts.FWD_CONFIG),
                lambda: ts.selective_scan_fwd(*args, False, False),
            )
        ts.FWD_CONFIG.update(saved[0])
        ts.FWD_CONFIG["BL"] = BL
        _, h0s, _, ypre = ts.selective_scan_fwd(*args, True, False)
        for BD, w in ((16, 4), (32, 4), (32, 8)):
            ts.BWD_CONFIG.update(BD=BD, BL=BL, num_warps=w, num_stages=1)
            trial(
                results,
                "scan_bwd",
                f"L{L} BL{BL}",
                dict(ts.BWD_CONFIG),
                lambda: ts.selective_scan_bwd(*args, h0s, ypre, do, None),
            )
    ts.FWD_CONFIG.update(saved[0])
    ts.BWD_CONFIG.update(saved[1])


def time_scan_parts(results):
    """What the walk backward spends where (not a tuning): at L = 2k, 8k, 32k (B*L fixed),
    the forward, then the backward whole ("all"), without dB and dC ("no-bc": their channel
    sums and atomic adds left out) and the dh recurrence alone ("dh"), in the shipped tiles."""
    import deepnotes.ops.ssm.triton_scan as ts

    for L in (2048, 8192, 32768):
        args, do = scan_args(L)
        trial(results, "scan_parts", f"L{L}", {"part": "fwd"},
              lambda: ts.selective_scan_fwd(*args, True, False))  # fmt: skip
        _, h0s, _, ypre = ts.selective_scan_fwd(*args, True, False)
        for part in ts.BWD_PARTS:
            run = lambda: ts.selective_scan_bwd(*args, h0s, ypre, do, None, parts=part)  # noqa: E731
            trial(results, "scan_parts", f"L{L}", {"part": f"bwd {part}"}, run)


def tune_decode(results):
    """Flash-decoding's launch settings at B = 1, T = 64k and B = 16, T = 16k (H = 16,
    D = 128), with SDPA timed on the same inputs as the yardstick (config {"impl": "sdpa"})."""
    import torch.nn.functional as F

    import deepnotes.ops.decode.triton_decode as td

    H, D = 16, 128
    saved = dict(td.CONFIG)
    for B, T in ((1, 65536), (16, 16384)):
        q = torch.randn(B, H, 1, D, device=DEV, dtype=DT)
        k, v = (torch.randn(B, H, T, D, device=DEV, dtype=DT) for _ in range(2))
        shape = f"B{B} T{T}"
        trial(results, "decode", shape, {"impl": "sdpa"},
              lambda: F.scaled_dot_product_attention(q, k, v))  # fmt: skip
        for per_sm in (2, 4, 8, 16):
            for bn in (32, 64, 128):
                for w in (4, 8):
                    for st in (1, 3):
                        td.CONFIG.update(programs_per_sm=per_sm, BLOCK_N=bn, num_warps=w,
                                         num_stages=st)  # fmt: skip
                        run = lambda: td.triton_flash_decode(q, k, v, None, T, scale=D**-0.5)  # noqa: E731
                        trial(results, "decode", shape, dict(td.CONFIG), run)
    td.CONFIG.clear()
    td.CONFIG.update(saved)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ops", default="flash,gau,scan,linear")
    p.add_argument("--json", default=None, help="write all trials to this file")
    p.add_argument("--plot", default=None, help="draw the sweeps into this PNG")
    args = p.parse_args(argv)
    results: list[dict] = []
    fns = {"flash": tune_flash, "linear": tune_linear, "gau": tune_gau, "scan": tune_scan,
           "decode": tune_decode, "scan-parts": time_scan_parts}  # fmt: skip
    unknown = set(args.ops.split(",")) - set(fns)
    if unknown:
        p.error(f"--ops: unknown {', '.join(sorted(unknown))}; choose from {', '.join(fns)}")
    for op in args.ops.split(","):
        t0 = time.perf_counter()
        fns[op](results)
        print(f"# {op}: {time.perf_counter() - t0:.0f} s", flush=True)
    best: dict[tuple, dict] = {}
    for r in results:
        # a peer (sdpa) and each part of the scan on its own line
        key = (r["op"], r["shape"], r["config"].get("impl", r["config"].get("part", "")))
        if r["status"] == "ok" and (key not in best or r["ms"] < best[key]["ms"]):
            best[key] = r
    print("\nfastest per op and shape:")
    for (op, shape, _), r in best.items():
        print(f"  {op:14s} {shape:22s} {r['ms']:8.3f} ms  {json.dumps(r['config'])}")
    if args.json:
        from deepnotes.utils.env import device_name, versions

        record = {
            "name": "kernels-tuning",
            "device_name": device_name(DEV),
            "versions": versions(),
            "command": "python scripts/tune_kernels.py " + " ".join(argv or sys.argv[1:]),
            "trials": results,
        }
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
    if args.plot:
        from pathlib import Path

        from deepnotes.bench.mixers.tuning_plot import plot_tuning
        from deepnotes.jobs import Context

        out = Path(args.plot)
        plot_tuning(results, Context(out=out.parent, device=torch.device(DEV)), name=out.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
