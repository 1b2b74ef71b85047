"""Redraw a job's plots from its results.json, without rerunning it.

    python scripts/replot.py benchmarks/mixers-cpu.json --out benchmarks --prefix mixers-cpu
    python scripts/replot.py benchmarks/arena-cpu.json --out benchmarks --prefix arena-cpu

Supported: `bench mixers` (the scaling plot, from the table and fitted exponents) and
`run arena` (the quality-vs-speed scatter, from the table). The arena's loss curves need
the per-mixer histories, which results.json does not keep: rerun the arena for those.
Writes OUT/PREFIX-<plot>.png (PREFIX.png for a job with one plot).
"""

from __future__ import annotations

import argparse
import json
import types
from pathlib import Path

from deepnotes.utils.plot import pyplot


class _Ctx:
    """The two Context methods the plotting functions use, writing to one file each."""

    def __init__(self, out: Path, prefix: str, single: bool):
        self.out, self.prefix, self.single, self.written = out, prefix, single, []

    def figure(self, *args, **kw):
        return pyplot().subplots(*args, **kw)

    def savefig(self, fig, name: str):
        stem = name.removesuffix(".png")
        path = self.out / (f"{self.prefix}.png" if self.single else f"{self.prefix}-{stem}.png")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110)
        pyplot().close(fig)
        self.written.append(path)
        return path


def replot(results: dict, out: Path, prefix: str) -> list[Path]:
    name = results.get("name")
    if name == "mixers":
        from deepnotes.bench.mixers.mixers import _plot

        ctx = _Ctx(out, prefix, single=True)
        _plot(results["table"], results["metrics"], types.SimpleNamespace(**results["config"]), ctx)
    elif name == "arena":
        from deepnotes.experiments.lm.common import plot_bpb_vs_speed

        ctx = _Ctx(out, prefix, single=False)
        plot_bpb_vs_speed(ctx, results["table"])
    else:
        raise SystemExit(f"replot: no plotter for job {name!r} (supported: mixers, arena)")
    return ctx.written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, help="a results.json (or a committed benchmarks JSON)")
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for the PNGs")
    ap.add_argument("--prefix", default=None, help="file name prefix (default: the JSON's stem)")
    a = ap.parse_args()
    results = json.loads(a.results.read_text())
    for p in replot(results, a.out, a.prefix or a.results.stem):
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
