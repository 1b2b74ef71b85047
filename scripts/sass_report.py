"""What Triton makes of the FlashAttention kernels (and the scan backward) on Hopper,
without a GPU.

    python scripts/sass_report.py                       # flash fwd, dk/dv and dq, D = 64, 128
    python scripts/sass_report.py --out benchmarks/sass-flash-sm90.json
    python scripts/sass_report.py --kernels scan-bwd --out benchmarks/sass-scan-bwd-sm90.json

Each kernel is compiled ahead of time for sm_90a with the launch settings the library uses
(`triton_flash.FWD_CONFIGS` / `BWD_CONFIGS`, bf16, causal; for the selective scan's walk
backward `triton_scan.BWD_CONFIG` at the two channel blocks its launcher uses, with all
gradients and without dB, dC: `parts="no-bc"`), specialised as the JIT
specialises the benchmark shapes (every pointer and integer argument divisible by 16), and
its SASS (from the cubin, by the `cuobjdump` shipped with Triton) is read for:
- registers and stack bytes per thread (stack > 0: spills) and shared memory;
- instruction counts over the kernel and inside each loop (a backward branch to a label):
  HGMMA (Hopper's warp-group matrix products), HMMA (the older per-warp ones), LDGSTS
  (asynchronous global->shared copies, i.e. pipelined loads), UTMALDG (TMA loads), LDG
  (plain global loads), LDL / STL (local memory: spills), SHFL, BAR, MUFU.EX2, STS / LDS
  (shared memory), REDG (atomic adds to global memory). A loop inside another shows as a
  second loop whose instruction span (`span`) lies within the first's.
It is a reading of compiled code, not a timing. The Triton here may not be the GPU
machine's (the JSON records the version): code generation changes between releases.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

if __name__ == "__main__":  # before Triton and the kernels are imported
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default to 3.9, explicit
    os.environ["TRITON_INTERPRET"] = "0"  # compiled kernels, even where tests interpret them

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import deepnotes.ops.attention.triton_flash as tf  # noqa: E402
import deepnotes.ops.ssm.triton_scan as ts  # noqa: E402
from deepnotes.utils.env import code_revision  # noqa: E402

OPS = ("HGMMA", "HMMA", "LDGSTS", "UTMALDG", "LDG", "LDL", "STL", "SHFL", "BAR", "MUFU.EX2",
       "STS", "LDS", "REDG")  # fmt: skip
BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def compile_sm90(fn, types: dict[str, str], constexprs: dict, num_warps: int, num_stages: int):
    """AOT-compile a @triton.jit kernel for sm_90a; types: argument -> "*bf16" | "fp32" |
    ... (default "i32"); pointers and ints get tt.divisibility = 16, as the JIT gives them
    when the values are multiples of 16."""
    params = list(inspect.signature(fn.fn).parameters)
    sig = {p: "constexpr" if p in constexprs else types.get(p, "i32") for p in params}
    attrs = {(i,): [["tt.divisibility", 16]] for i, p in enumerate(params)
             if sig[p] != "constexpr" and not sig[p].startswith("fp")}  # fmt: skip
    src = ASTSource(fn=fn, signature=sig, attrs=attrs,
                    constexprs={(params.index(k),): v for k, v in constexprs.items()})  # fmt: skip
    opts = {"num_warps": num_warps, "num_stages": num_stages}
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=opts)


def _count(lines: list[str]) -> dict[str, int]:
    """Instructions by mnemonic family (LDG excludes LDGSTS and LDGDEPBAR)."""
    out = dict.fromkeys(OPS, 0)
    for line in lines:
        ins = line.split("*/", 1)[-1].strip().lstrip("@!P0123456789T ").split(" ", 1)[0]
        for op in OPS:
            if ins == op or ins.startswith(op + "."):
                out[op] += 1
    return out


def _address(line: str) -> int:
    return int(re.match(r"\s+/\*([0-9a-f]+)\*/", line).group(1), 16)


def read_sass(cubin: bytes) -> dict:
    """Resources and instruction counts (whole kernel, and per loop) of a cubin."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        Path(path).write_bytes(cubin)
        sass = subprocess.run([BIN / "cuobjdump", "-sass", path], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
        res = subprocess.run([BIN / "cuobjdump", "-res-usage", path], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    usage = dict(re.findall(r"(REG|STACK|SHARED|LOCAL):(\d+)", res))
    # instruction lines ("/*0a10*/  OPCODE ...;"); a loop is a branch back to an earlier one
    body = [line for line in sass.splitlines() if re.match(r"\s+/\*[0-9a-f]{4,}\*/", line)]
    where = {_address(line): i for i, line in enumerate(body)}
    loops = []
    for i, line in enumerate(body):
        m = re.search(r"BRA\s+(?:`\()?0x([0-9a-f]+)", line)
        start = where.get(int(m.group(1), 16), i + 1) if m else i + 1
        if start < i:  # (a branch to itself is the trap loop after the exit)
            loops.append({"instructions": i + 1 - start, "span": [start, i],
                          **_count(body[start : i + 1])})  # fmt: skip
    return {"registers": int(usage.get("REG", 0)), "stack_bytes": int(usage.get("STACK", 0)),
            "instructions": len(body), "counts": _count(body), "loops": loops}  # fmt: skip


KERNELS = ("fwd", "dkdv", "dq", "scan-bwd")
FLASH = KERNELS[:3]


def flash_kernels(dims: list[int], kernels=KERNELS) -> list[dict]:
    bf16 = {p: "*bf16" for p in ("Q", "K", "V", "O", "DO", "DK", "DV", "DQ")}
    types = {**bf16, "LSE": "*fp32", "DELTA": "*fp32", "qk_scale": "fp32", "sm_scale": "fp32"}
    rows = []
    for D in dims:
        f, b = tf.FWD_CONFIGS[D], tf.BWD_CONFIGS[D]
        common = {"D": D, "BLOCK_D": D, "CAUSAL": True, "PRECISION": "tf32", "UPCAST": False}
        specs = {
            "fwd": ("flash fwd", tf.flash_attn_fwd_kernel, f["BLOCK_M"], f["BLOCK_N"], f),
            "dkdv": ("flash bwd dk/dv", tf.flash_attn_bwd_dkdv_kernel, b["BLOCK_M1"],
                     b["BLOCK_N1"], b),
            "dq": ("flash bwd dq", tf.flash_attn_bwd_dq_kernel, b["BLOCK_M2"], b["BLOCK_N2"], b),
        }  # fmt: skip
        for name, fn, bm, bn, cfg in (specs[k] for k in kernels):
            k = compile_sm90(fn, types, {**common, "BLOCK_M": bm, "BLOCK_N": bn},
                             cfg["num_warps"], cfg["num_stages"])  # fmt: skip
            launch = {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}
            sass = read_sass(k.asm["cubin"])
            rows.append({"kernel": name, "D": D, "tiles": f"{bm}x{bn}", **launch,
                         "shared_bytes": k.metadata.shared, **sass})  # fmt: skip
    return rows


def scan_bwd_kernels() -> list[dict]:
    """The walk backward at BWD_CONFIG's channel block and at MIN_BD (the launcher halves BD
    down to MIN_BD when the grid is small: long L, small batch), N <= 16, D, z, delta_bias
    and softplus on; all gradients (PARTS 2) and without dB, dC (PARTS 1)."""
    tensors = ("U", "DELTA", "Z", "DOUT", "YPRE", "DU", "DDELTA", "DZ", "Bm", "Cm")
    fp32 = ("A", "Dv", "BIAS", "H0S", "DHLAST", "DA", "DB", "DC", "DD", "DBIAS")
    types = {**dict.fromkeys(tensors, "*bf16"), **dict.fromkeys(fp32, "*fp32")}
    cfg = dict(ts.BWD_CONFIG)
    flags = {"BN": 16, "BL": cfg["BL"], "HAS_D": True, "HAS_Z": True, "HAS_BIAS": True,
             "SOFTPLUS": True, "HAS_DHLAST": False}  # fmt: skip
    rows = []
    for bd in sorted({cfg["BD"], ts.MIN_BD}, reverse=True):
        for parts in ("all", "no-bc"):
            const = {**flags, "BD": bd, "PARTS": ts.BWD_PARTS[parts]}
            k = compile_sm90(ts.selective_scan_bwd_kernel, types, const, cfg["num_warps"],
                             cfg["num_stages"])  # fmt: skip
            launch = {"num_warps": cfg["num_warps"], "num_stages": cfg["num_stages"]}
            rows.append({"kernel": f"scan bwd ({parts})", "D": 16, "tiles": f"{bd}x{cfg['BL']}",
                         **launch, "shared_bytes": k.metadata.shared,
                         **read_sass(k.asm["cubin"])})  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="64,128", help="head dims D")
    what = "any of fwd, dkdv, dq (flash); scan-bwd (its D is the states N)"
    ap.add_argument("--kernels", default=",".join(FLASH), help=what)
    ap.add_argument("--out", help="write the rows as JSON here")
    args = ap.parse_args()
    kernels = args.kernels.split(",")
    if not kernels or set(kernels) - set(KERNELS):
        ap.error(f"--kernels {args.kernels!r}: choose among {', '.join(KERNELS)}")
    flash = [k for k in kernels if k in FLASH]
    rows = flash_kernels([int(d) for d in args.dims.split(",")], flash) if flash else []
    if "scan-bwd" in kernels:
        rows += scan_bwd_kernels()
    for r in rows:
        c = r["counts"]
        print(f"{r['kernel']:16s} D={r['D']:<4d} {r['tiles']:>7s} w{r['num_warps']} "
              f"s{r['num_stages']}: {r['registers']} regs, stack {r['stack_bytes']} B, "
              f"smem {r['shared_bytes'] // 1024} KiB, HGMMA {c['HGMMA']}, HMMA {c['HMMA']}, "
              f"LDGSTS {c['LDGSTS']}, LDG {c['LDG']}, LDL/STL {c['LDL']}/{c['STL']}")  # fmt: skip
        for i, lp in enumerate(r["loops"]):
            print(
                f"    loop {i} {lp['span']}: {lp['instructions']} instr, HGMMA {lp['HGMMA']}, "
                f"LDGSTS {lp['LDGSTS']}, LDL/STL {lp['LDL']}/{lp['STL']}, BAR {lp['BAR']}, "
                f"SHFL {lp['SHFL']}, REDG {lp['REDG']}"
            )
    if args.out:
        meta = {"triton": triton.__version__, "target": "sm_90a", "revision": code_revision(),
                "command": "python scripts/sass_report.py --kernels " + args.kernels
                           + " --out " + args.out}  # fmt: skip
        Path(args.out).write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
