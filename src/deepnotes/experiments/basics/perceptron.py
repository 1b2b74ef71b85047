"""`deepnotes run perceptron`: why a perceptron needs its bias.

Data: two clusters on the same side of the origin (`off_origin_data`), where a line off the
origin separates them and no line through the origin can (checked by a linear program). The
rule is run with and without a bias; the plot shows both decision boundaries and the
mistakes per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deepnotes.jobs import Context, Result, experiment
from deepnotes.nlp.perceptron import off_origin_data, separable_through_origin, train_perceptron


@dataclass
class PerceptronConfig:
    n: int = 60  # points (half per class)
    max_epochs: int = 200  # the no-bias rule never converges here: this caps it
    lr: float = 1.0  # the perceptron's step (scale-free without a bias)


def _line(ax, w, b, style, label, lim=(-1.0, 5.0)):
    xs = np.linspace(*lim, 2)
    if abs(w[1]) > 1e-12:
        ax.plot(xs, -(w[0] * xs + b) / w[1], style, label=label)
    else:
        ax.axvline(-b / w[0], linestyle=style[-2:] if "--" in style else "-", label=label)


@experiment(
    "perceptron",
    "perceptron with vs without bias on data only an off-origin line separates",
    PerceptronConfig,
    presets={"smoke": {"n": 20, "max_epochs": 30}},
)
def run_perceptron(cfg: PerceptronConfig, ctx: Context) -> Result:
    rng = np.random.default_rng(ctx.seed)
    X, y = off_origin_data(rng, cfg.n)
    lp_bias = separable_through_origin(X, y, bias=True)
    lp_none = separable_through_origin(X, y, bias=False)
    runs = {
        name: train_perceptron(X, y, bias=bias, lr=cfg.lr, max_epochs=cfg.max_epochs, shuffle=rng)
        for name, bias in (("with bias", True), ("without bias", False))
    }
    rows = []
    for name, r in runs.items():
        rows.append(
            {
                "model": name,
                "converged": r.converged,
                "epochs": len(r.errors),
                "final_epoch_mistakes": r.errors[-1],
                "min_epoch_mistakes": min(r.errors),
                "train_accuracy": float((r.predict(X) == y).mean()),
                "w": [round(float(v), 3) for v in r.w],
                "b": round(float(r.b), 3),
            }
        )
    fig, (ax, ax2) = ctx.figure(1, 2, figsize=(11, 4.5))
    ax.scatter(*X[y < 0].T, c="tab:blue", marker="o", label="y = -1")
    ax.scatter(*X[y > 0].T, c="tab:red", marker="^", label="y = +1")
    _line(ax, runs["with bias"].w, runs["with bias"].b, "g-", "with bias")
    _line(ax, runs["without bias"].w, 0.0, "k--", "without bias (through 0)")
    ax.scatter([0], [0], c="k", marker="x", s=60, label="origin")
    ax.set_xlim(-1, 5)
    ax.set_ylim(-1, 5)
    ax.set_aspect("equal")
    ax.set_title("decision boundaries")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    # under the panel: inside, it covered the boundary with bias
    ax.legend(fontsize=9, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    look = {"with bias": "g-o", "without bias": "k--"}  # the boundaries' styles on the left
    for name, r in runs.items():
        ax2.plot(range(1, len(r.errors) + 1), r.errors, look.get(name, "-"), ms=4, lw=1,
                 label=name)  # fmt: skip
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("mistakes in the epoch")
    ax2.set_title("perceptron rule")
    ax2.grid(alpha=0.3)
    ax2.legend()
    ctx.savefig(fig, "perceptron_bias.png")
    return Result(
        metrics={
            "lp_separable_with_bias": lp_bias,
            "lp_separable_through_origin": lp_none,
            "epochs_to_converge_with_bias": len(runs["with bias"].errors),
            "min_epoch_mistakes_without_bias": min(runs["without bias"].errors),
        },
        table=rows,
        notes=[
            "(1,1) is labelled -1 and (3,3) = 3 (1,1) is labelled +1, so every line through "
            "the origin gives them the same side; a linear program confirms no such line "
            "separates the data, while one with a bias does"
        ],
    )
