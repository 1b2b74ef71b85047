"""Back-fill provenance in committed results (benchmarks/*.json) written before results.json
recorded the code revision, the CPU model, and (for two hand-assembled files) the command
and device.

What is known is filled in; what is not is marked unknown, never guessed:
- versions.deepnotes: the package version has been 0.1.0 since the first commit;
- versions.revision: unknown; the commit that first added the file is recorded beside it
  (the code that produced it is at or before that commit, possibly with changes);
- device_name "x86_64" (the machine type, not a CPU model): marked unknown;
- versions.torch_threads: on CPU, the job's own `threads` setting where it has one (the old
  record read torch's count after the job had restored it);
- command / device: taken from the file's own `commands` / `runs` where it lists them.

Run from the repository root: `python scripts/backfill_provenance.py` (idempotent).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

UNKNOWN = "unknown (not recorded at the time)"


def first_commit(path: Path) -> str:
    out = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%h", "--", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return out[-1] if out else "uncommitted"


def backfill(path: Path) -> bool:
    text = path.read_text()
    rec = json.loads(text)
    if not isinstance(rec, dict) or "versions" not in rec:
        return False  # a companion data file (curves, per-layer tables), not a results record
    before = json.dumps(rec, sort_keys=True)
    v = rec["versions"]
    if v.get("deepnotes") is None:
        v["deepnotes"] = "0.1.0"
    if "revision" not in v:
        v["revision"] = f"{UNKNOWN}; results first committed in {first_commit(path)}"
    threads = (rec.get("config") or {}).get("threads")
    if rec.get("device") == "cpu" and isinstance(threads, int) and threads > 0:
        v["torch_threads"] = str(threads)  # the job set it; the old record read it afterwards
    if "cpu" not in v:
        v["cpu"] = UNKNOWN
    if rec.get("device_name") == "x86_64":
        rec["device_name"] = f"{UNKNOWN}; machine type x86_64"
    if not rec.get("command"):
        if isinstance(rec.get("commands"), dict):
            rec["command"] = "; ".join(f"{k}: {c}" for k, c in rec["commands"].items())
        elif isinstance(rec.get("runs"), list) and all("command" in r for r in rec["runs"]):
            rec["command"] = "; ".join(f"run {r.get('run', i + 1)}: {r['command']}"
                                       for i, r in enumerate(rec["runs"]))  # fmt: skip
        else:
            rec["command"] = UNKNOWN
    if not rec.get("device"):
        name = str(rec.get("device_name", ""))
        rec["device"] = "cuda" if ("NVIDIA" in name or "H100" in name) else UNKNOWN
    if json.dumps(rec, sort_keys=True) == before:
        return False
    second = text.splitlines()[1] if text.count("\n") > 1 else "  "
    indent = len(second) - len(second.lstrip(" ")) or 2  # keep the file's own layout
    path.write_text(json.dumps(rec, indent=indent, ensure_ascii=False) + "\n")
    return True


def main() -> None:
    changed = [p.name for p in sorted(Path("benchmarks").glob("*.json")) if backfill(p)]
    print(f"back-filled {len(changed)} file(s): {', '.join(changed)}")


if __name__ == "__main__":
    main()
