"""`deepnotes run word2vec`: skip-gram and CBOW on the KJV, beside gensim in the same run.

Both train on the same tokenised sentences (`deepnotes.nlp.words`) with matched settings
(dimension, window, min_count, subsampling, negatives, ns_exponent 0.75, learning rate and
its linear decay, epochs). Both sets of vectors go through the same evaluation
(`deepnotes.nlp.word2vec.evaluate`, which reproduces gensim's own evaluators): Spearman rho
on WordSim-353 and SimLex-999, 3CosAdd accuracy on questions-words, each with its coverage
(the KJV's vocabulary reaches few modern test words), words per second, and nearest
neighbours. words/s = corpus words known to the vocabulary x epochs / training seconds
(vocabulary building excluded) for both.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from deepnotes.jobs import Context, Result, experiment
from deepnotes.nlp.word2vec import (
    Word2Vec,
    analogy_accuracy,
    gensim_datapath,
    nearest,
    word_similarity,
)
from deepnotes.nlp.words import corpus_sentences
from deepnotes.utils.env import threads


@dataclass
class Word2VecConfig:
    corpus: str = "kjv"  # load_corpus name or text path; KJV: 934k tokens, 30k sentences
    max_tokens: int | None = None  # None: the whole corpus
    archs: list[str] = field(default_factory=lambda: ["skipgram", "cbow"])  # architectures
    dim: int = 100  # gensim's default vector_size
    window: int = 5  # gensim's default
    min_count: int = 5  # gensim's default; KJV keeps about 6k words
    sample: float = 1e-3  # subsampling threshold (gensim's default)
    negative: int = 5  # negatives per example (gensim's default)
    lr: float = 0.025  # gensim's default alpha for both architectures
    epochs: int = 5  # gensim's default
    batch_size: int = 1024  # examples per SGD step (gensim updates one at a time)
    impl: str = "manual"  # "manual" (written-out gradient) or "autograd" (sparse grads)
    cbow_update: str = "word2vec"  # CBOW context update as word2vec.c/gensim, or "gradient"
    threads: int = 1  # torch threads for ours: small ops, a shared 2-core machine
    gensim: bool = True  # train the peer in the same run
    gensim_workers: int = 2  # gensim's worker threads (its C/Cython loop scales with them)
    seeds: int = 1  # repeat every training with seeds seed, seed+1, ...; means are compared
    neighbours: list[str] = field(
        default_factory=lambda: ["god", "king", "david", "water", "love", "jerusalem"]
    )  # words whose nearest neighbours are listed


QUALITY = ("wordsim353_rho", "simlex999_rho", "analogy_acc")


def _evaluate(words, vectors) -> dict:
    try:
        import gensim  # noqa: F401 - the evaluation sets ship inside its wheel
    except ImportError:
        nan = float("nan")
        return {k: nan for k in (*QUALITY, "wordsim353_pairs", "simlex999_pairs")} | {
            "analogy_covered": 0,
            "analogy_coverage": 0.0,
        }
    ws = word_similarity(words, vectors, gensim_datapath("wordsim353.tsv"))
    sl = word_similarity(words, vectors, gensim_datapath("simlex999.txt"))
    an = analogy_accuracy(words, vectors, gensim_datapath("questions-words.txt"))
    return {
        "wordsim353_rho": ws.spearman,
        "wordsim353_pairs": ws.pairs,
        "simlex999_rho": sl.spearman,
        "simlex999_pairs": sl.pairs,
        "analogy_acc": an.accuracy,
        "analogy_covered": an.covered,
        "analogy_coverage": an.coverage,
    }


def _gensim(cfg: Word2VecConfig, arch: str, sentences, seed: int):
    from gensim.models import Word2Vec as GensimWord2Vec

    model = GensimWord2Vec(
        vector_size=cfg.dim,
        window=cfg.window,
        min_count=cfg.min_count,
        sample=cfg.sample,
        negative=cfg.negative,
        ns_exponent=0.75,
        alpha=cfg.lr,
        min_alpha=cfg.lr * 1e-4,
        sg=1 if arch == "skipgram" else 0,
        cbow_mean=1,
        hs=0,
        workers=cfg.gensim_workers,
        seed=seed,
        epochs=cfg.epochs,
    )
    model.build_vocab(sentences)
    t0 = time.perf_counter()
    model.train(sentences, total_examples=model.corpus_count, epochs=cfg.epochs)
    seconds = time.perf_counter() - t0
    known = sum(int(model.wv.get_vecattr(w, "count")) for w in model.wv.index_to_key)
    return model.wv.index_to_key, model.wv.vectors, seconds, known * cfg.epochs


def _rho_se(n: int) -> float:
    """Approximate standard error of Spearman's rho over n pairs (Fisher z: 1.03/sqrt(n-3))."""
    return 1.03 / math.sqrt(n - 3) if n > 3 else float("nan")


@experiment(
    "word2vec",
    "skip-gram / CBOW with negative sampling on the KJV vs gensim: similarity, analogies, words/s",
    Word2VecConfig,
    presets={
        "smoke": {
            "max_tokens": 20_000,
            "epochs": 1,
            "dim": 16,
            "min_count": 2,
            "archs": ["skipgram", "cbow"],
            "neighbours": ["god"],
        },
        "gpu": {"seeds": 3, "threads": 4, "gensim_workers": 8},
    },
)
def run_word2vec(cfg: Word2VecConfig, ctx: Context) -> Result:
    sentences = corpus_sentences(cfg.corpus, cfg.max_tokens)
    rows, metrics, notes, losses = [], {}, [], {}
    impls = ["deepnotes", "gensim"] if cfg.gensim else ["deepnotes"]
    with threads(cfg.threads):
        for arch in cfg.archs:
            for rep in range(cfg.seeds):
                seed = ctx.seed + rep
                ours = Word2Vec(
                    arch,
                    dim=cfg.dim,
                    window=cfg.window,
                    min_count=cfg.min_count,
                    sample=cfg.sample,
                    negative=cfg.negative,
                    lr=cfg.lr,
                    epochs=cfg.epochs,
                    batch_size=cfg.batch_size,
                    impl=cfg.impl,
                    cbow_update=cfg.cbow_update,
                    device=ctx.device,
                    seed=seed,
                )
                stats = ours.fit(sentences, progress=ctx.progress)
                losses[f"{arch} seed {seed}"] = stats.losses
                runs = [("deepnotes", ours.vocab.words, ours.vectors, stats.seconds, stats.words)]
                if cfg.gensim:
                    ctx.log(f"gensim {arch} seed {seed} ...")
                    runs.append(("gensim", *_gensim(cfg, arch, sentences, seed)))
                for impl, words, vectors, seconds, n_words in runs:
                    row = {
                        "arch": arch,
                        "impl": impl,
                        "seed": seed,
                        "vocab": len(words),
                        "train_s": seconds,
                        "words_per_s": n_words / seconds,
                        **_evaluate(words, vectors),
                    }
                    rows.append(row)
                    if rep == 0:
                        for w in cfg.neighbours:
                            key = f"{arch}/{impl}/neighbours/{w}"
                            metrics[key] = nearest(words, vectors, w, 5)
            for impl in impls:
                mine = [r for r in rows if r["arch"] == arch and r["impl"] == impl]
                summary = {"arch": arch, "impl": f"{impl} mean", "seed": f"{len(mine)} seeds"}
                for k in (*QUALITY, "words_per_s"):
                    vals = np.array([r[k] for r in mine], dtype=np.float64)
                    summary[k] = float(vals.mean())
                    if len(vals) > 1:
                        summary[f"{k}_std"] = float(vals.std(ddof=1))
                    metrics[f"{arch}/{k}/{impl}"] = summary[k]
                rows.append(summary)
            if cfg.gensim:
                for k in QUALITY:
                    diff = metrics[f"{arch}/{k}/deepnotes"] - metrics[f"{arch}/{k}/gensim"]
                    metrics[f"{arch}/{k}/diff"] = diff
                    if k.endswith("_rho"):
                        metrics[f"{arch}/{k}/within_0.05"] = abs(diff) <= 0.05
    r0 = rows[0]
    if r0["analogy_covered"] == 0 and math.isnan(r0["wordsim353_rho"]):
        notes.append("gensim is not installed: no evaluation sets, quality not measured")
    notes.append(
        f"coverage: WordSim-353 {r0['wordsim353_pairs']}/353 pairs, SimLex-999 "
        f"{r0['simlex999_pairs']}/999, analogies {r0['analogy_covered']}/19544 questions; "
        f"rho's standard error at these sizes is about {_rho_se(r0['wordsim353_pairs']):.2f} "
        f"(WordSim) and {_rho_se(r0['simlex999_pairs']):.2f} (SimLex), so differences below "
        "that are noise"
    )
    notes.append(
        f"ours: PyTorch, impl={cfg.impl}, {cfg.threads} thread(s), batch {cfg.batch_size}, "
        f"device {ctx.device}; gensim: optimised C/Cython on the CPU, {cfg.gensim_workers} "
        f"workers, one example per update; {os.cpu_count()} CPU cores. On a shared machine "
        "words/s are noisy."
    )
    if cfg.seeds > 1:
        for r in (r for r in rows if str(r["impl"]).endswith("mean")):
            parts = [
                f"{k} {r[k]:.3f} +- {r.get(k + '_std', float('nan')):.3f}"
                for k in (*QUALITY, "words_per_s")
            ]
            notes.append(f"{r['arch']} {r['impl']} over {cfg.seeds} seeds: " + ", ".join(parts))
    for arch in cfg.archs:
        for w in cfg.neighbours:
            pair = [
                metrics.get(f"{arch}/{impl}/neighbours/{w}") for impl in ("deepnotes", "gensim")
            ]
            notes.append(f"{arch} {w}: ours {pair[0]} | gensim {pair[1]}")
    _plot(rows, losses, ctx)
    return Result(
        metrics=metrics,
        table=rows,
        columns=[
            "arch",
            "impl",
            "seed",
            "vocab",
            "train_s",
            "words_per_s",
            "wordsim353_rho",
            "simlex999_rho",
            "analogy_acc",
            "analogy_covered",
        ],
        notes=notes,
    )


def _plot(rows, losses, ctx: Context) -> None:
    """Quality and speed of each (arch, impl) mean over seeds (error bars: sd over seeds) and,
    when `losses` ({"<arch> seed <s>": [loss per epoch]}) is given, our loss per epoch."""
    from deepnotes.utils.plot import log_ticks, tick_label

    n = 3 if losses else 2
    fig, axes = ctx.figure(1, n, figsize=(5.5 * n, 4.4))
    ax, ax2 = axes[0], axes[1]
    rows = [r for r in rows if str(r["impl"]).endswith("mean")]  # the per-seed means
    labels = [f"{r['arch']}\n{r['impl'].removesuffix(' mean')}" for r in rows]
    x = np.arange(len(rows))
    names = {"wordsim353_rho": "WordSim rho", "simlex999_rho": "SimLex rho",
             "analogy_acc": "analogy acc."}  # fmt: skip
    for off, key in zip((-0.27, 0.0, 0.27), names, strict=True):
        err = [r.get(f"{key}_std", 0.0) for r in rows]
        ax.bar(x + off, [r[key] for r in rows], width=0.27, yerr=err, capsize=3,
               label=names[key], error_kw={"lw": 1})  # fmt: skip
    ax.set_xticks(x, labels, fontsize=9)
    ax.axhline(0, color="k", lw=0.5)
    top = max(r[k] + r.get(f"{k}_std", 0.0) for r in rows for k in names)
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.3 * top)  # headroom for the legend
    ax.set_ylabel("Spearman rho / accuracy (mean +- sd)")
    ax.set_title("quality (KJV vocabulary; see coverage)")
    ax.legend(fontsize=9, ncol=3, loc="upper center", columnspacing=0.8, handlelength=1.2)
    speeds = [r["words_per_s"] for r in rows]
    ax2.bar(x, speeds, width=0.6, yerr=[r.get("words_per_s_std", 0.0) for r in rows],
            capsize=3, color="tab:purple")  # fmt: skip
    # the value under each bar's name: text on the bars would collide with the error bars
    speed_labels = [
        f"{lab}\n{tick_label(float(f'{v:.3g}'))} /s" for lab, v in zip(labels, speeds, strict=True)
    ]
    ax2.set_xticks(x, speed_labels, fontsize=9)
    ax2.set_yscale("log")
    log_ticks(ax2, "y")
    ax2.set_ylabel("training words / s (log scale)")
    ax2.set_title("training speed")
    if losses:
        ax3 = axes[2]
        archs = list(dict.fromkeys(k.split(" seed ")[0] for k in losses))
        for i, arch in enumerate(archs):
            runs = [v for k, v in losses.items() if k.split(" seed ")[0] == arch]
            for j, ls in enumerate(runs):  # seeds nearly coincide: thin lines, one label
                ax3.plot(
                    range(1, len(ls) + 1),
                    ls,
                    marker="o",
                    ms=4,
                    lw=1,
                    color=f"C{i}",
                    alpha=0.7,
                    label=f"{arch} ({len(runs)} seeds)" if j == 0 else None,
                )
        ax3.set_xlabel("epoch")
        ax3.set_ylabel("mean loss per example (ours)")
        ax3.set_title("training loss")
        ax3.grid(alpha=0.3)
        ax3.legend(fontsize=9)
    ctx.savefig(fig, "word2vec.png")
