"""Redraw a job's plots from its results.json, without rerunning it.

    python scripts/replot.py benchmarks/mixers-cpu.json --out benchmarks
    python scripts/replot.py --all benchmarks            # every committed PNG that can be redrawn
    python scripts/replot.py --list                      # which jobs have a plotter

Each plotter below calls the job's own plot function on what results.json keeps (its table
and metrics, and for a few jobs a side file saved beside it, e.g. `<stem>-curves.json`).
A plot whose data results.json does not keep (loss histories, images, model outputs) is not
drawn: rerun the job for it. `MISSING` says what a registered job cannot redraw, and
`NOT_REDRAWN` why the other jobs have no plotter.

Files: OUT/PREFIX-<plot>.png, or OUT/PREFIX.png when the job makes one plot; PREFIX is the
JSON's stem. The committed PNGs whose names predate that rule are listed in `NAMES`.
With --all, only PNGs that already exist in the folder are rewritten.
"""

from __future__ import annotations

import argparse
import json
import types
from collections.abc import Callable
from pathlib import Path

from deepnotes.utils.plot import pyplot

# committed PNG names that do not follow PREFIX[-plot].png: json stem -> {plot: file}
NAMES: dict[str, dict[str, str]] = {
    "base-lm-h200": {"base_lm_loss": "base-lm-h200-base_lm_loss.png"},
    "detr-h200": {
        "detr_training": "detr-h200-training.png",
        "detr_attention": "detr-h200-attention.png",
        "detr_queries": "detr-h200-queries.png",
    },
    "detr-cpu": {
        "detr_training": "detr-cpu.png",
        "detr_attention": "detr-cpu.attention.png",
        "detr_queries": "detr-cpu.queries.png",
    },
    "kimi-vl-h200": {"kimi_vl": "kimi-vl-h200-kimi_vl.png"},
    "ldm-cpu": {"guidance_tradeoff": "ldm-cpu.png", "samples_per_class": "ldm-cpu.samples.png"},
    "ldm-unet-h200": {"ldm_unet_speed": "ldm-unet-h200-ldm_unet_speed.png"},
    "rl-gridworld": {
        "gridworld_figures": "rl-gridworld.png",
        "planning_convergence": "rl-gridworld-convergence.png",
    },
    "rl-mc": {"mc_value_error": "rl-mc.png", "mc_policies": "rl-mc-policies.png"},
    "s4-diagnose-cpu": {
        "s4_diagnose_curves": "s4-diagnose-cpu-curves.png",
        "s4_diagnose_ssm": "s4-diagnose-cpu-ssm.png",
    },
    "score-toy-cpu": {
        "score_fields": "score-toy-cpu-fields.png",
        "ncsn_fig3_samples": "score-toy-cpu-samples.png",
    },
    "sde-toy-cpu": {
        "sde_toy_swd_vs_nfe": "sde-toy-cpu-swd.png",
        "sde_toy_likelihood": "sde-toy-cpu-likelihood.png",
    },
    "swin-bench-h200": {"swin_speed": "swin-bench-h200-swin_speed.png"},
}


class _Ctx:
    """The two Context methods the plotting functions use, writing to one file each."""

    def __init__(self, out: Path, prefix: str, single: bool, allowed: set[str] | None = None):
        self.out, self.prefix, self.single = out, prefix, single
        self.allowed, self.written = allowed, []  # allowed: file names it may write (None: any)

    def path(self, name: str) -> Path:
        stem = name.removesuffix(".png")
        fixed = NAMES.get(self.prefix, {}).get(stem)
        if fixed:
            return self.out / fixed
        return self.out / (f"{self.prefix}.png" if self.single else f"{self.prefix}-{stem}.png")

    def figure(self, *args, **kw):
        return pyplot().subplots(*args, **kw)

    def savefig(self, fig, name: str):
        path = self.path(name)
        if self.allowed is not None and path.name not in self.allowed:
            pyplot().close(fig)
            return path
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110)
        pyplot().close(fig)
        self.written.append(path)
        return path


# (kind, job name) -> plotter(results, ctx, side); kind None matches either kind
PLOTTERS: dict[tuple[str | None, str], Callable] = {}
# (kind, job name) -> the plots results.json cannot redraw, and why
MISSING: dict[tuple[str | None, str], str] = {}


# jobs without a plotter: what their results.json lacks
NOT_REDRAWN: dict[str, str] = {
    "base-lm": "the loss history",
    "hippo": "the signals and reconstructions (only the error table is kept)",
    "kimi-vl": "the loss histories and per-expert loads",
    "medusa (experiment)": "the heads' loss history",
    "mc": "the value-error histories and the estimated q / policies",
    "moe": "the loss histories and expert loads per step",
    "oadtr, two-stream": "the predictions, flows and loss histories",
    "perceptron": "the data points and the mistakes per epoch",
    "rl-gridworld": "the policies and the solvers' iterates (the values alone are kept)",
    "score-toy": "the score fields, samples and loss history",
    "stochastic-approximation": "the iterates",
    "swin": "the accuracy and loss histories (experiment); the bench plot is inline in its run",
    "upsampling": "the outputs at init, the crops and the loss histories",
}


def plotter(name: str, kind: str | None = None, missing: str = ""):
    def wrap(fn):
        PLOTTERS[(kind, name)] = fn
        if missing:
            MISSING[(kind, name)] = missing
        return fn

    return wrap


def _cfg(results: dict):
    return types.SimpleNamespace(**results.get("config", {}))


def _side(path: Path | None, suffix: str):
    """A side file saved next to the JSON (`<stem>-<suffix>.json`), or None."""
    if path is None:
        return None
    f = path.with_name(f"{path.stem}-{suffix}.json")
    return json.loads(f.read_text()) if f.exists() else None


# --- benchmarks ---------------------------------------------------------------------------


@plotter("mixers", "bench")
def _mixers(res, ctx, path):
    from deepnotes.bench.mixers.mixers import _plot

    _plot(res["table"], res["metrics"], _cfg(res), ctx)


@plotter("kernels", "bench")
def _kernels(res, ctx, path):
    from deepnotes.bench.mixers.kernels import _plot

    _plot(res["table"], ctx)


@plotter("decode", "bench")
def _decode(res, ctx, path):
    from deepnotes.bench.lm.decode import _plot

    _plot([r for r in res["table"] if "us" in r], _cfg(res), ctx)


@plotter("arena-kernels", "bench")
def _arena_kernels(res, ctx, path):
    from deepnotes.bench.lm.arena_kernels import _plot

    _plot(ctx, res["table"])


@plotter("checkpointing", "bench")
def _checkpointing(res, ctx, path):
    from deepnotes.bench.lm.checkpointing import _plot

    _plot(ctx, res["table"], _cfg(res), res.get("device", ""))


@plotter("scan-forms", "bench")
def _scan_forms(res, ctx, path):
    from deepnotes.bench.mixers.scan_forms import _plot

    _plot(ctx, res["table"], _cfg(res))


@plotter("maxgap", "bench")
def _maxgap(res, ctx, path):
    from deepnotes.bench.algorithms.maxgap import _plot

    _plot(ctx, res["table"], res["metrics"])


@plotter("ngram", "bench")
def _ngram(res, ctx, path):
    from deepnotes.bench.nlp.ngram import _plot

    rows = [r for r in res["table"] if r["impl"] != "ppl"]
    ppl = [{**r, "perplexity": float(r["perplexity"])} for r in res["table"] if r["impl"] == "ppl"]
    _plot(rows, ppl, ctx)


@plotter("ldm-unet", "bench")
def _ldm_unet(res, ctx, path):
    from deepnotes.bench.diffusion.ldm_unet import _plot

    c, rows = _cfg(res), res["table"]
    B = next(r["batch"] for r in rows if r["op"] == "fwd+bwd")
    _plot(ctx, rows, f"UNet {c.block_channels}, batch {B}, {c.dtype}, {res.get('device', '')}")


@plotter("medusa", "bench")
def _medusa_bench(res, ctx, path):
    from deepnotes.bench.llm.medusa import _plot

    c, dev = _cfg(res), res.get("device", "")
    graphs = ", CUDA graphs" if getattr(c, "cuda_graph", False) and dev == "cuda" else ""
    title = f"Medusa, batch 1, {c.dtype}, {c.new_tokens} new tokens, {dev}{graphs}"
    _plot(ctx, res["table"], title)


@plotter("kernels-tuning")
def _kernels_tuning(res, ctx, path):
    from deepnotes.bench.mixers.tuning_plot import plot_tuning

    plot_tuning(res["trials"], ctx)


@plotter("training", "bench", missing="without -curves.json (runs before it was saved): all")
def _training(res, ctx, path):
    from deepnotes.bench.lm.training import plot_training

    side = _side(path, "curves")  # the run's curves.json: {"title", "curves": {variant: [x, y]}}
    if side:
        plot_training(ctx, side["curves"], side["title"])


# --- experiments --------------------------------------------------------------------------


@plotter(
    "arena", "experiment",
    missing="loss_vs_step, loss_vs_time: per-mixer histories (in -curves.json since it is saved)",
)  # fmt: skip
def _arena(res, ctx, path):
    from deepnotes.experiments.lm.arena import plot_loss_curves
    from deepnotes.experiments.lm.common import RunResult, plot_bpb_vs_speed

    plot_bpb_vs_speed(ctx, res["table"])
    curves = _side(path, "curves")  # the run's curves.json: mixer -> history
    if curves:
        plot_loss_curves(ctx, {n: RunResult(history=h) for n, h in curves.items()})


@plotter(
    "video-temporal", "experiment",
    missing="without -curves.json (runs before it was saved): all",
)  # fmt: skip
def _video_temporal(res, ctx, path):
    from deepnotes.experiments.video.video_temporal import plot_video_temporal

    curves = _side(path, "curves")  # the run's curves.json: {model kind: losses per step}
    if curves:
        plot_video_temporal(ctx, res["table"], curves)


@plotter(
    "detr", "experiment",
    missing="detr_queries, detr_attention: the model's outputs; detr_training without "
    "-curves.json (runs before it was saved)",
)  # fmt: skip
def _detr(res, ctx, path):
    from deepnotes.experiments.vision.detr import plot_detr_training

    side = _side(path, "curves")  # the run's curves.json: {"losses", "history"}
    if side:
        plot_detr_training(ctx, side["losses"], side["history"])


@plotter("activations", "experiment", missing="loss_curves: the training histories")
def _activations(res, ctx, path):
    from deepnotes.experiments.lm.activations import plot_activations

    plot_activations(ctx)  # the functions themselves: nothing measured


@plotter("dpo", "experiment")
def _dpo(res, ctx, path):
    from deepnotes.experiments.llm.dpo import _plot

    _plot(ctx, res["metrics"]["history"], res["table"], _cfg(res))


@plotter("kimi-rl", "experiment")
def _kimi_rl(res, ctx, path):
    from deepnotes.experiments.llm.kimi_rl import _plot

    _plot(ctx, res["metrics"]["curves"])


@plotter(
    "ldm",
    "experiment",
    missing="samples_per_class, training: the samples and loss histories",
)
def _ldm(res, ctx, path):
    from deepnotes.experiments.diffusion.ldm import _plot_tradeoff

    m = res["metrics"]
    _plot_tradeoff(ctx, res["table"], m["classifier_test_accuracy"], m["real_vs_real_fd"])


@plotter("listops", "experiment")
def _listops(res, ctx, path):
    from deepnotes.experiments.ssm.listops import _plot, _plot_curves

    rows, m = res["table"], res["metrics"]
    _plot(ctx, rows, m["majority_baseline"], m.get("first_op_baseline"))
    if any(r.get("curve") for r in rows) and "first_op_baseline" in m:
        _plot_curves(ctx, rows, m["majority_baseline"], _cfg(res), m["first_op_baseline"])


@plotter("recall", "experiment")
def _recall(res, ctx, path):
    from deepnotes.experiments.ssm.recall import _plot

    rows = res["table"]
    mixers = list(dict.fromkeys(r["mixer"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    _plot(ctx, rows, mixers, tasks, sorted({r["width"] for r in rows}))


@plotter("rl-benchmarks", "experiment")
def _rl_benchmarks(res, ctx, path):
    from deepnotes.experiments.rl.rl_benchmarks import plot_curves

    curves = _side(path, "curves")  # "<task>/<impl>/seed<s>" -> the eval curve
    if curves:
        runs = {tuple(k.split("/")): {"curve": c} for k, c in curves.items()}
        plot_curves(ctx, runs, res["config"]["tasks"])


@plotter("s4-diagnose", "experiment")
def _s4_diagnose(res, ctx, path):
    from deepnotes.experiments.ssm.s4_diagnose import _plot_curves, _plot_recall, _plot_ssm

    m = res["metrics"]
    runs = m.get("runs") or {}
    if runs:
        _plot_curves(ctx, runs, m["majority_baseline"], m.get("first_op_baseline"))
        _plot_ssm(ctx, runs)
    if m.get("recall"):
        _plot_recall(ctx, m["recall"])


@plotter("sde-toy", "experiment", missing="sde_toy_likelihood: the trained score networks")
def _sde_toy(res, ctx, path):
    from deepnotes.experiments.diffusion.sde_toy import _plot_swd

    curves: dict[tuple, list] = {}
    for r in res["table"]:
        if "sampler" in r:
            curves.setdefault((r["sde"], r["score"], r["sampler"]), []).append((r["nfe"], r["swd"]))
    m = res["metrics"]
    _plot_swd(ctx, curves, m["swd_floor_data_vs_data"], m.get("swd_floor_sd"))


@plotter(
    "attention-scaling",
    "experiment",
    missing="attention_entropy, loss_curves: the training histories",
)
def _attention_scaling(res, ctx, path):
    from deepnotes.experiments.lm.attention_scaling import _plot_init

    sweep = res["metrics"].get("init_sweep") or _side(path, "init_sweep")
    if sweep:
        _plot_init(ctx, sweep, _cfg(res).keys)


@plotter("receptive-field", "experiment", missing="erf_maps: the ERF maps themselves")
def _receptive_field(res, ctx, path):
    from deepnotes.experiments.vision.receptive_field import _plot_curves

    layers = _side(path, "layers")  # rf_layers.json of the run: [name, kind, rf, ...] rows
    if layers:
        curves = {
            n: [row[2] for row in rows if ".downsample" not in row[0] and row[1] != "add"]
            for n, rows in layers.items()
        }
        _plot_curves(ctx, curves)


@plotter("word2vec", "experiment", missing="the loss-per-epoch panel: losses are not saved")
def _word2vec(res, ctx, path):
    from deepnotes.experiments.nlp.word2vec import _plot

    _plot(res["table"], {}, ctx)


@plotter("rl-actor-critic", "experiment")
def _rl_actor_critic(res, ctx, path):
    from deepnotes.experiments.rl.rl_actor_critic import _plot

    curves = _side(path, "curves")  # the run's curves.json
    if curves:
        _plot(ctx, curves, res["config"]["env_id"])


# -------------------------------------------------------------------------------------------


def find_plotter(results: dict) -> Callable | None:
    name, kind = results.get("name"), results.get("kind")
    return PLOTTERS.get((kind, name)) or PLOTTERS.get((None, name))


def replot(
    results: dict,
    out: Path,
    prefix: str,
    *,
    path: Path | None = None,
    allowed: set[str] | None = None,
) -> list[Path]:
    """Draw every plot of `results` that its data allow; returns the files written.
    `path` is the JSON's own path (for side files such as `<stem>-curves.json`); `allowed`,
    if given, limits the file names written."""
    fn = find_plotter(results)
    if fn is None:
        jobs = ", ".join(sorted({n for _, n in PLOTTERS}))
        raise SystemExit(f"replot: no plotter for job {results.get('name')!r} (supported: {jobs})")
    ctx = _Ctx(out, prefix, len(results.get("plots") or []) <= 1, allowed)
    fn(results, ctx, path)
    return ctx.written


def replot_all(folder: Path, out: Path | None = None) -> list[Path]:
    """Redraw every PNG of `folder` that a results JSON there can redraw, into `out` (default:
    the same folder). The PNGs already in `folder` decide which files are written."""
    pngs = {p.name for p in folder.glob("*.png")}
    written = []
    for f in sorted(folder.glob("*.json")):
        results = json.loads(f.read_text())
        if isinstance(results, dict) and find_plotter(results) is not None:
            written += replot(results, out or folder, f.stem, path=f, allowed=pngs)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path, nargs="?", help="a results.json or benchmarks JSON")
    ap.add_argument("--out", type=Path, default=None, help="folder for the PNGs")
    ap.add_argument("--prefix", default=None, help="file name prefix (default: the JSON's stem)")
    ap.add_argument("--all", type=Path, default=None, help="redraw every PNG in this folder")
    ap.add_argument("--list", action="store_true", help="list the jobs that have a plotter")
    a = ap.parse_args()
    if a.list:
        for kind, name in sorted(PLOTTERS, key=lambda k: (k[1], k[0] or "")):
            gap = MISSING.get((kind, name))
            print(f"{name} ({kind or 'any'})" + (f"; not redrawn: {gap}" if gap else ""))
        for name, why in NOT_REDRAWN.items():
            print(f"{name}: no plotter; results.json lacks {why}")
        return
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
    if a.all:
        paths = replot_all(a.all, a.out)
    elif a.results:
        results = json.loads(a.results.read_text())
        out = a.out or Path(".")
        paths = replot(results, out, a.prefix or a.results.stem, path=a.results)
    else:
        ap.error("give a results JSON, --all FOLDER or --list")
    for p in paths:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
