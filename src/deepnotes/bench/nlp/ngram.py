"""`deepnotes bench ngram`: fit + score time of our n-gram models against nltk.lm, same run.

Both sides get the same tokenised KJV sentences (`deepnotes.nlp.words`) and the same
settings: nltk's padding (n-1 `<s>` and `</s>`), the same `<unk>` cutoff, nltk's
discounts (Kneser-Ney 0.1, no discount at the unigram level). Every 20th sentence is held
out and scored n-gram by n-gram (nltk's `score(word, context)`; our vectorised
`score_ngrams`). The table also reports the largest |log p - log p_nltk| over the scored
n-grams, and the held-out perplexity of every estimator we have (standard padding).

nltk's Kneser-Ney scores one n-gram by scanning every stored n-gram of the next order
(`_continuation_counts`), so scoring the whole held-out set would take hours: it is timed on
`nltk_kn_queries` n-grams and extrapolated linearly (the row says so).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from deepnotes.jobs import Context, Result, suite
from deepnotes.nlp.ngram import MLE as OurMLE
from deepnotes.nlp.ngram import MODELS, KneserNey, Laplace
from deepnotes.nlp.words import corpus_sentences


@dataclass
class NgramBenchConfig:
    corpus: str = "kjv"  # a `load_corpus` name or a text path; KJV = 934k tokens
    max_tokens: int | None = None  # None: the whole corpus (~1M tokens, the size)
    order: int = 3  # trigrams: the usual size, and nltk's KN cost grows with the order
    min_count: int = 2  # words seen once read as <unk> (nltk's unk_cutoff)
    models: list[str] = field(default_factory=lambda: ["mle", "laplace", "kneser-ney"])  # LMs
    heldout_every: int = 20  # every k-th sentence is held out for scoring (about 5%)
    nltk: bool = True  # run the peer (pip install nltk)
    nltk_kn_queries: int = 200  # nltk KN scoring is timed on this many n-grams, extrapolated
    repeat: int = 3  # our fit/score are timed this many times (median); nltk once


def _ours(name: str, n: int, min_count: int):
    if name == "mle":
        return OurMLE(n, min_count=min_count, padding="nltk")
    if name == "laplace":
        return Laplace(n, min_count=min_count, padding="nltk")
    if name == "kneser-ney":
        return KneserNey(n, discount=[0.0] + [0.1] * (n - 1), min_count=min_count, padding="nltk")
    raise ValueError(f"no nltk peer for {name!r}; use mle, laplace, kneser-ney")


def _nltk(name: str, n: int, train, min_count: int):
    from nltk import lm as nlm
    from nltk.lm.preprocessing import padded_everygram_pipeline

    cls = {"mle": nlm.MLE, "laplace": nlm.Laplace, "kneser-ney": nlm.KneserNeyInterpolated}
    text, vocab_text = padded_everygram_pipeline(n, train)
    model = cls[name](order=n, vocabulary=nlm.Vocabulary(vocab_text, unk_cutoff=min_count))
    model.fit(text)
    return model


def _timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def _log_diff(a: np.ndarray, b: np.ndarray) -> float:
    both_zero = (a == 0) & (b == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(both_zero, 0.0, np.abs(np.log(a) - np.log(b)))
    return float(d.max()) if len(d) else 0.0


@suite(
    "ngram",
    "n-gram LM fit + score time and agreement vs nltk.lm on the KJV (~1M tokens), same run",
    NgramBenchConfig,
    presets={
        "smoke": {"max_tokens": 20_000, "nltk_kn_queries": 20, "repeat": 1},
        "quick": {"max_tokens": 200_000, "nltk_kn_queries": 50},
    },
)
def bench_ngram(cfg: NgramBenchConfig, ctx: Context) -> Result:
    from nltk.lm.preprocessing import pad_both_ends
    from nltk.util import ngrams

    n = cfg.order
    sents = corpus_sentences(cfg.corpus, cfg.max_tokens)
    test = sents[:: cfg.heldout_every]
    train = [s for i, s in enumerate(sents) if i % cfg.heldout_every]
    queries = [g for s in test for g in ngrams(pad_both_ends(s, n=n), n)]
    n_train = sum(map(len, train))
    ctx.log(f"train {len(train)} sentences / {n_train} tokens; {len(queries)} held-out n-grams")
    rows, metrics, notes = [], {"train_tokens": n_train, "heldout_ngrams": len(queries)}, []
    bar = ctx.progress(total=len(cfg.models) * (2 if cfg.nltk else 1), desc="bench ngram")
    for name in cfg.models:
        lm, fit_s = _timed(lambda name=name: _ours(name, n, cfg.min_count).fit(train), cfg.repeat)
        p_ours, score_s = _timed(lambda lm=lm: lm.score_ngrams(queries), cfg.repeat)
        rows.append(
            {
                "model": name,
                "impl": "deepnotes",
                "fit_s": fit_s,
                "score_s": score_s,
                "scored": len(queries),
                "total_s": fit_s + score_s,
            }
        )
        bar.update(1)
        if not cfg.nltk:
            continue
        t0 = time.perf_counter()
        peer = _nltk(name, n, train, cfg.min_count)
        nfit = time.perf_counter() - t0
        sub = queries
        if name == "kneser-ney" and len(queries) > cfg.nltk_kn_queries:
            pick = np.random.default_rng(ctx.seed).choice(len(queries), cfg.nltk_kn_queries, False)
            sub = [queries[i] for i in np.sort(pick)]
        t0 = time.perf_counter()
        p_nltk = np.array([peer.score(q[-1], q[:-1]) for q in sub])
        nscore = (time.perf_counter() - t0) * len(queries) / len(sub)
        mine = lm.score_ngrams(sub)
        first = np.array([all(t == "<s>" for t in q[:-1]) for q in sub])
        row = {
            "model": name,
            "impl": "nltk",
            "fit_s": nfit,
            "score_s": nscore,
            "scored": len(sub),
            "total_s": nfit + nscore,
            "max_abs_dlogp": _log_diff(mine[~first], p_nltk[~first]),
            "max_abs_dlogp_first_words": _log_diff(mine[first], p_nltk[first]),
            "speedup_fit": nfit / fit_s,
            "speedup_total": (nfit + nscore) / (fit_s + score_s),
        }
        if len(sub) < len(queries):
            notes.append(
                f"nltk {name}: scoring timed on {len(sub)} of {len(queries)} n-grams and "
                "extrapolated linearly (each nltk KN score scans every stored n-gram)"
            )
        rows.append(row)
        for k in ("speedup_fit", "speedup_total", "max_abs_dlogp", "max_abs_dlogp_first_words"):
            metrics[f"{name}/{k}"] = row[k]
        bar.update(1)
    bar.close()
    # Held-out perplexity of every estimator (standard padding, our defaults).
    ppl_rows = []
    for name, cls in MODELS.items():
        kw = {"k": 0.01} if name == "add-k" else {}
        name = "add-0.01" if name == "add-k" else name
        t0 = time.perf_counter()
        lm = cls(n, min_count=cfg.min_count, **kw).fit(train)
        fit_s = time.perf_counter() - t0
        ppl = lm.perplexity(test)
        ppl_rows.append({"model": name, "perplexity": ppl, "fit_s": fit_s})
        metrics[f"{name}/perplexity"] = ppl
    from deepnotes.utils.table import format_table

    notes.append(
        f"held-out perplexity, standard padding, order {n}, min_count {cfg.min_count}:\n"
        + format_table(ppl_rows)
    )
    notes.append(
        "max_abs_dlogp excludes sentence-initial n-grams for KN (context all <s>): nltk's "
        "KN there uses a different normaliser, reported as max_abs_dlogp_first_words "
        "(docs/ngram.md). The machine is shared, so times are noisy."
    )
    _plot(rows, ppl_rows, ctx)
    return Result(
        metrics=metrics,
        table=rows + [{"model": r["model"], "impl": "ppl", **r} for r in ppl_rows],
        columns=[
            "model",
            "impl",
            "fit_s",
            "score_s",
            "scored",
            "total_s",
            "speedup_total",
            "max_abs_dlogp",
            "perplexity",
        ],
        notes=notes,
    )


def _plot(rows, ppl_rows, ctx: Context) -> None:
    """Fit + score time of ours and nltk per model (log), and held-out perplexity per
    smoothing method."""
    from deepnotes.utils.plot import log_ticks

    fig, (ax, ax2) = ctx.figure(1, 2, figsize=(11, 4))
    models = list(dict.fromkeys(r["model"] for r in rows))
    x = np.arange(len(models))
    for off, impl in ((-0.2, "deepnotes"), (0.2, "nltk")):
        vals = [
            next((r["total_s"] for r in rows if r["model"] == m and r["impl"] == impl), np.nan)
            for m in models
        ]
        ax.bar(x + off, vals, width=0.4, label=impl)
    ax.set_yscale("log")
    log_ticks(ax, "y")
    ax.set_xticks(x, models)
    ax.set_ylabel("fit + score time (s, log)")
    ax.set_title("n-gram LM vs nltk.lm (same corpus, same run)")
    ax.legend()
    finite = [r for r in ppl_rows if np.isfinite(r["perplexity"])]
    ax2.bar([r["model"] for r in finite], [r["perplexity"] for r in finite])
    ax2.set_yscale("log")
    log_ticks(ax2, "y")
    ax2.set_ylabel("held-out perplexity (log; MLE is inf)")
    ax2.set_title("smoothing methods (lower is better)")
    ax2.tick_params(axis="x", rotation=30)
    for t in ax2.get_xticklabels():
        t.set_ha("right")
    ctx.savefig(fig, "ngram_bench.png")
