"""Hardware counters of the FlashAttention and selective-scan kernels, read by Nsight Compute.

    PYTHONPATH=src python3 scripts/ncu_report.py --targets flash,scan --json F

For each target it runs ncu over one launch of each kernel (ours and, for flash, cuDNN's
through SDPA) at the bench's setting (bf16, B*T = 65,536, H*D = 2048, causal, T = 8192;
the scan at L = 8192) and keeps, per kernel: duration, compute (SM) and memory throughput
as % of peak, tensor-pipe utilisation, achieved occupancy, registers per thread, and the
warp stall reasons (cycles per issued instruction, largest first). These say what bounds a
kernel: a memory throughput near 100 % means bandwidth; a tensor pipe near 100 % means
math; both low with long stalls means latency (what the stall names).

The workload runs twice and only the second run is profiled (`--profile-from-start off`
and cudaProfilerStart), so the launches read are not Triton's autotuning trials, which
would otherwise fill the 16-launch cap. ncu replays each kernel many times with its caches
flushed; durations are of one replay with the clocks left alone (`--clock-control none`),
so compare them with the bench's timings, not as timings themselves. The JSON records
device, versions, revision, command.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SECTIONS = ("SpeedOfLight", "ComputeWorkloadAnalysis", "Occupancy", "LaunchStats",
            "WarpStateStats")  # fmt: skip
# kernel-name patterns (ncu regex over the demangled function name) of each target
KERNELS = {
    "flash": "regex:flash_attn|cudnn|sdpa|fmha|flash_",
    "scan": "regex:selective_scan",
}
# warp stall reasons: cycles a warp spends in each per issued instruction (their sum is
# the "Warp Cycles Per Issued Instruction" of WarpStateStats)
STALLS = ("long_scoreboard", "short_scoreboard", "barrier", "wait", "math_pipe_throttle",
          "mio_throttle", "lg_throttle", "not_selected", "selected", "no_instruction",
          "dispatch_stall", "membar", "branch_resolving", "drain", "sleeping", "tex_throttle",
          "imc_miss", "misc")  # fmt: skip
STALL_METRIC = "smsp__average_warps_issue_stalled_{}_per_issue_active.ratio"
# tensor pipes busy, % of peak: wgmma (Hopper's warp-group products) and the older mma
PIPES = {
    "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active": "tensor_gmma_pct",
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active": "tensor_hmma_pct",
}
# the metrics kept, by (section, metric name) as ncu's details page names them
KEEP = {
    "Duration": "duration",
    "Compute (SM) Throughput": "sm_throughput_pct",
    "Memory Throughput": "memory_throughput_pct",
    "DRAM Throughput": "dram_throughput_pct",
    "Achieved Occupancy": "achieved_occupancy_pct",
    "Theoretical Occupancy": "theoretical_occupancy_pct",
    "Registers Per Thread": "registers_per_thread",
    "Executed Ipc Active": "ipc_active",
    "Issue Slots Busy": "issue_slots_busy_pct",
    "Warp Cycles Per Issued Instruction": "cycles_per_issue",
}


def workload(target: str) -> None:
    """Run each kernel of `target` once to compile and autotune it, then once more between
    cudaProfilerStart / Stop: the launches ncu profiles."""
    import torch

    run = _kernels(target)
    run()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStart()
    run()
    torch.cuda.synchronize()
    torch.cuda.cudart().cudaProfilerStop()


def _kernels(target: str):
    """A closure launching one of each kernel of `target` on the bench's inputs."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    dev, dt = "cuda", torch.bfloat16
    if target == "flash":
        from deepnotes.ops.attention.flash import flash_attn

        T = 8192
        inputs = []
        for D in (64, 128):
            B, H = 65536 // T, 2048 // D
            q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=dt, requires_grad=True)
                       for _ in range(3))  # fmt: skip
            inputs.append((q, k, v, torch.randn(B, H, T, D, device=dev, dtype=dt)))

        def run():
            for q, k, v, do in inputs:
                flash_attn(q, k, v, causal=True, backend="triton").backward(do)
                with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                    F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(do)

        return run
    if target == "scan":
        sys.path.insert(0, str(Path(__file__).parent))
        import tune_kernels

        import deepnotes.ops.ssm.triton_scan as ts

        args, do = tune_kernels.scan_args(8192)

        def run():
            _, h0s, _, ypre = ts.selective_scan_fwd(*args, True, False)
            ts.selective_scan_bwd(*args, h0s, ypre, do, None)

        return run
    raise SystemExit(f"unknown target {target!r}; valid: {', '.join(KERNELS)}")


def _number(text: str) -> float | str:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return text


def parse(csv_text: str) -> list[dict]:
    """ncu's `--csv --page details` -> one dict per profiled launch: kernel, grid, block,
    the KEEP metrics (with a unit suffix where ncu gives one) and `stalls` {reason: cycles
    per issued instruction}."""
    lines = [ln for ln in csv_text.splitlines() if ln.startswith('"')]
    launches: dict[str, dict] = {}
    for r in csv.DictReader(io.StringIO("\n".join(lines))):
        k = launches.setdefault(r["ID"], {"kernel": r["Kernel Name"][:120],
                                          "grid": r.get("Grid Size"), "block": r.get("Block Size"),
                                          "stalls": {}})  # fmt: skip
        name, unit, value = r["Metric Name"], r.get("Metric Unit", ""), _number(r["Metric Value"])
        if name in KEEP:
            k[KEEP[name] + (f"_{unit}" if name == "Duration" else "")] = value  # us or ms
        elif name in PIPES:
            k[PIPES[name]] = value
        elif name.startswith(STALL_METRIC.split("{")[0]):
            k["stalls"][name.split("stalled_")[1].split("_per_issue")[0]] = value
    for k in launches.values():
        k["stalls"] = dict(sorted(k["stalls"].items(), key=lambda kv: -(kv[1] if isinstance(
            kv[1], float) else 0))[:8])  # fmt: skip
    return list(launches.values())


def profile(target: str, ncu: str) -> dict:
    metrics = [*PIPES, *(STALL_METRIC.format(s) for s in STALLS)]
    for extra in (["--metrics", ",".join(metrics)], []):  # without them if ncu refuses one
        cmd = [ncu, "--clock-control", "none", "--csv", "--page", "details",
               "--profile-from-start", "off", "-k", KERNELS[target], "--launch-count", "16",
               *extra]  # fmt: skip
        for s in SECTIONS:
            cmd += ["--section", s]
        cmd += [sys.executable, __file__, "--workload", target]
        out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, timeout=600)
        if out.returncode == 0:
            break
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-5:]
        return {"target": target, "status": f"ncu exited {out.returncode}", "tail": tail}
    return {"target": target, "status": "ok", "launches": parse(out.stdout)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", default="flash,scan", help="comma-separated: flash, scan")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--workload", help=argparse.SUPPRESS)  # internal: what ncu runs
    a = p.parse_args(argv)
    if a.workload:
        workload(a.workload)
        return 0
    targets = [t for t in a.targets.split(",") if t]
    bad = [t for t in targets if t not in KERNELS]
    if bad:
        p.error(f"unknown target(s) {bad}; valid: {', '.join(KERNELS)}")
    ncu = shutil.which("ncu") or next(
        (str(c) for c in sorted(Path("/opt/nvidia").glob("nsight-compute/*/ncu"))), None
    )
    if ncu is None:
        p.error("ncu (Nsight Compute) not found on PATH or under /opt/nvidia")
    import torch

    from deepnotes.utils.env import code_revision, device_name, versions

    report = {
        "device": device_name(torch.device("cuda")),
        "versions": versions(),
        "revision": code_revision(),
        "command": "python3 scripts/ncu_report.py " + " ".join(argv or sys.argv[1:]),
        "ncu": subprocess.run([ncu, "--version"], capture_output=True, text=True)
        .stdout.strip()
        .splitlines()[-1:],
        "sections": list(SECTIONS),
        "results": [],
    }
    for t in targets:
        r = profile(t, ncu)
        report["results"].append(r)
        for k in r.get("launches", []):
            brief = {x: k.get(x) for x in ("duration_us", "duration_ms", "sm_throughput_pct",
                                           "memory_throughput_pct", "achieved_occupancy_pct",
                                           "registers_per_thread") if x in k}  # fmt: skip
            print(t, k["kernel"][:60], brief, list(k["stalls"].items())[:3], flush=True)
        if r["status"] != "ok":
            print(t, r["status"], *r["tail"], sep="\n", flush=True)
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
