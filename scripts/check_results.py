"""Rerun committed CPU results and check that the current code still produces them.

    python scripts/check_results.py --max-seconds 120          # every quick CPU result
    python scripts/check_results.py --only lm-moe-cpu,rl-mc    # these JSON stems
    python scripts/check_results.py --list                     # what would run, no runs

A committed result goes stale when the code or the data change after it was made (the KJV
marker clean-up once moved two LM results this way). For each `benchmarks/*.json` made on a
CPU whose recorded wall time is at most --max-seconds, this reruns its `command` (the same
job, config and seed; `--out` goes to a temporary folder) and compares the new results.json
with the committed one: every number of `metrics` and `table`, except timings, speeds and
memory (wall-clock figures that differ between any two runs), within --rtol. The rerun uses
the thread count the result recorded (`versions.torch_threads`): CPU sums are ordered by
it, and a model trained on 1 thread can differ from one trained on 2. Commands that need an
earlier run's output (`OUT/...`) or are scripts, not jobs, are skipped and listed. The
recorded wall time can be short for a run that reused earlier work; --only runs any result.

Exit status: 0 all reproduced, 1 some differ or failed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# keys whose values are wall-clock (times, speeds, memory): never compared
VOLATILE = re.compile(
    r"(time|seconds|wall|_s$|_s\]|^s$|per_s|/s|tok_s|_ms|^ms|ms_|latency|speed|throughput"
    r"|peak|_mb|mem|bytes_per_s|gbps|tflops|mfu|load)",
    re.IGNORECASE,
)


def runnable(command: str | None) -> str | None:
    """Why `command` cannot be rerun here (None when it can)."""
    if not command:
        return "no command recorded"
    words = shlex.split(command)
    if words[:1] != ["deepnotes"] or len(words) < 3 or words[1] not in ("run", "bench"):
        return "not a deepnotes job"
    if any(w.startswith("OUT/") for w in words):
        return "needs an earlier run's output"
    return None


def rerun_args(command: str, out: Path) -> list[str]:
    """The job's arguments with `--out` replaced by `out` and `--force` added."""
    words, args, skip = shlex.split(command)[1:], [], False
    for w in words:
        if skip:
            skip = False
            continue
        if w == "--out":
            skip = True
            continue
        if w.startswith("--out=") or w == "--force" or w == "--resume":
            continue
        args.append(w)
    return [*args, "--out", str(out), "--force"]


def differences(old, new, rtol: float, where: str = "") -> list[str]:
    """Where `new` differs from `old` (numbers within rtol, volatile keys skipped)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in old:
            if VOLATILE.search(str(k)):
                continue
            if k not in new:
                out.append(f"{where}{k}: missing")
                continue
            out += differences(old[k], new[k], rtol, f"{where}{k}.")
        return out
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{where.rstrip('.')}: {len(old)} items, now {len(new)}"]
        out = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            out += differences(a, b, rtol, f"{where}{i}.")
        return out
    if isinstance(old, bool) or isinstance(new, bool) or not isinstance(old, int | float):
        return [] if old == new else [f"{where.rstrip('.')}: {old!r} -> {new!r}"]
    if not isinstance(new, int | float):
        return [f"{where.rstrip('.')}: {old!r} -> {new!r}"]
    if math.isnan(old) and math.isnan(new):
        return []
    if math.isclose(old, new, rel_tol=rtol, abs_tol=1e-12):
        return []
    return [f"{where.rstrip('.')}: {old:.6g} -> {new:.6g}"]


def candidates(folder: Path, max_seconds: float, only: set[str] | None) -> list[tuple]:
    """(stem, committed results, why it is skipped or None) for the CPU results in `folder`."""
    found = []
    for f in sorted(folder.glob("*.json")):
        if f.stem.endswith(("-curves", "-init_sweep", "-expert_load", "-layers")):
            continue  # side files
        try:
            res = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
        if not isinstance(res, dict) or res.get("device") != "cpu":
            continue
        if only is not None and f.stem not in only:
            continue
        why = runnable(res.get("command"))
        wall = res.get("wall_time_s")
        if why is None and only is None and wall is None:
            why = "no wall time recorded (name it with --only)"
        elif why is None and only is None and wall > max_seconds:
            why = f"took {wall:.0f} s > --max-seconds"
        found.append((f.stem, res, why))
    return found


def check(stem: str, old: dict, tmp: Path, rtol: float) -> list[str]:
    out = tmp / stem
    cmd = [sys.executable, "-m", "deepnotes", *rerun_args(old["command"], out)]
    env = dict(os.environ, DEEPNOTES_NO_PROGRESS="1")
    threads = str(old.get("versions", {}).get("torch_threads", ""))
    if threads.isdigit():  # CPU sums are ordered by thread count: use the recorded one
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = threads
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not (out / "results.json").exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return [f"rerun failed (exit {proc.returncode}): {tail[0]}"]
    new = json.loads((out / "results.json").read_text())
    return differences(old.get("metrics", {}), new.get("metrics", {}), rtol, "metrics.") + (
        differences(old.get("table", []), new.get("table", []), rtol, "table.")
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=ROOT / "benchmarks", help="committed JSON")
    ap.add_argument("--max-seconds", type=float, default=120.0, help="skip longer results")
    ap.add_argument("--only", default="", help="comma-separated JSON stems (any wall time)")
    ap.add_argument("--rtol", type=float, default=1e-6, help="relative tolerance on numbers")
    ap.add_argument("--list", action="store_true", help="list what would run, run nothing")
    a = ap.parse_args()
    if a.max_seconds <= 0 or a.rtol < 0:
        ap.error("--max-seconds must be > 0 and --rtol >= 0")
    only = {s.strip() for s in a.only.split(",") if s.strip()} or None
    found = candidates(a.folder, a.max_seconds, only)
    if only is not None and (unknown := only - {s for s, _, _ in found}):
        ap.error(f"no CPU result named {', '.join(sorted(unknown))} in {a.folder}")
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for stem, res, why in found:
            if why is not None:
                print(f"skip  {stem}: {why}")
                continue
            if a.list:
                print(f"would {stem}: {res['command']}")
                continue
            print(f"rerun {stem}: {res['command']}", flush=True)
            diffs = check(stem, res, Path(tmp), a.rtol)
            bad += bool(diffs)
            for d in diffs[:8]:
                print(f"      DIFFERS {d}")
            if len(diffs) > 8:
                print(f"      ... and {len(diffs) - 8} more")
            if not diffs:
                print("      reproduced")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
