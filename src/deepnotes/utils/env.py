"""What ran where: versions, code revision, threads and device names recorded with every
result, and `threads(n)`, the one way a job changes torch's CPU thread count."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch

# thread counts set through `threads` since the last `reset_threads_used` (run_job reads it)
_THREADS_USED: set[int] = set()


def reset_threads_used() -> None:
    _THREADS_USED.clear()


def threads_used() -> str:
    """The CPU thread count(s) the work ran with: those set through `threads`, else torch's."""
    counts = sorted(_THREADS_USED) or [torch.get_num_threads()]
    return ",".join(str(n) for n in counts)


@contextlib.contextmanager
def threads(n: int):
    """Run a block with torch.set_num_threads(n) (n <= 0: leave it), restoring it after; the
    count is recorded in results.json as `versions.torch_threads`."""
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    _THREADS_USED.add(torch.get_num_threads())
    try:
        yield
    finally:
        torch.set_num_threads(old)


@functools.cache
def code_revision() -> str:
    """The git commit of the source tree ("+dirty" with uncommitted changes), or the installed
    package version when the code is not a git checkout. DEEPNOTES_REVISION overrides both,
    for a copy of the tree without its .git (e.g. shipped to a GPU machine)."""
    if os.environ.get("DEEPNOTES_REVISION"):
        return os.environ["DEEPNOTES_REVISION"]
    src = Path(__file__).resolve().parents[1]
    try:
        run = lambda *a: subprocess.run(
            ["git", *a], cwd=src, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = bool(run("status", "--porcelain", "--untracked-files=no"))
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"deepnotes {package_version('deepnotes') or 'unknown'} (not a git checkout)"


@functools.cache
def cpu_model() -> str:
    """The processor's model name (Linux /proc/cpuinfo), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    out = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": package_version("numpy"),
        "triton": package_version("triton"),
        "cuda": torch.version.cuda,
        "deepnotes": package_version("deepnotes"),
        "revision": code_revision(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": threads_used(),
    }
    return out


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:1' or 'auto' -> torch.device, with a clear error when unavailable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: deepnotes runs on cpu or cuda (cuda:N, auto)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine; use cpu")
    if device.type == "cuda" and device.index is not None:
        if device.index >= torch.cuda.device_count():
            n = torch.cuda.device_count()
            raise ValueError(f"--device {name}: this machine has {n} CUDA device(s)")
    return device
