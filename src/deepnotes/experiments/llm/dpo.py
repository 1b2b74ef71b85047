"""`deepnotes run dpo`: DPO on the base LM's own samples, ranked by a programmatic reward.

1. The base LM (`--base`, or a small one trained here) samples k continuations of KJV
   prompts. The reward counts a marker word (default "LORD") in a continuation; the model is
   never told. Per prompt, the highest-reward sample is chosen and the lowest rejected
   (ties dropped).
2. DPO (`deepnotes.align.dpo.dpo_loss`, β) trains a copy of the base against the frozen base
   as reference, on the response tokens only. Logged: TRL's rewards/accuracies and
   rewards/margins on held-out pairs.
3. Beside it: SFT on the chosen responses (same steps), and best-of-n sampling from the base.
4. Before/after: the rate of responses containing the marker on held-out prompts, and the
   KL(π || πref) of the policy's own samples (mean of log π - log πref per response).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from deepnotes.align.dpo import dpo_loss, dpo_metrics
from deepnotes.align.lm_io import load_lm
from deepnotes.align.rewards import word_count_reward
from deepnotes.data.text import load_text
from deepnotes.experiments.llm.base_lm import BaseLMConfig, train_base
from deepnotes.generate import generate
from deepnotes.jobs import Context, Result, experiment


@dataclass
class DPOConfig:
    base: str = ""  # base LM folder (`deepnotes run base-lm`); "" = train a small one here
    base_steps: int = 400  # steps of that small base
    marker: str = "LORD"  # the reward counts this word in a response
    n_prompts: int = 384  # training prompts (pairs come from these)
    n_eval: int = 48  # held-out prompts for the before/after rates
    k: int = 8  # samples per prompt
    prompt_len: int = 12  # prompt tokens
    resp_len: int = 16  # response tokens
    beta: float = 0.5  # DPO β (TRL's default 0.1 overfits the few pairs of a CPU run)
    loss_type: str = "sigmoid"  # sigmoid | hinge | ipo
    steps: int = 40  # optimisation steps (DPO and the SFT baseline)
    batch_size: int = 16  # pairs per step
    lr: float = 1e-4  # Adam learning rate


def _sample(model, prompts, k, n, seed):
    g = torch.Generator(prompts.device).manual_seed(seed)
    x = prompts.repeat_interleave(k, 0)
    return generate(model, x, n, temperature=1.0, generator=g)


def _logps(model, seqs, P):
    logits = model(seqs[:, :-1]).float()
    lp = torch.gather(torch.log_softmax(logits, -1), -1, seqs[:, 1:, None])[..., 0]
    return lp[:, P - 1 :].sum(-1)  # response tokens only: positions P .. T-1


def _rate(model, tok, prompts, cfg, seed):
    seqs = _sample(model, prompts, 4, cfg.resp_len, seed)
    rewards = [
        word_count_reward(tok.decode(s[cfg.prompt_len :].tolist()), cfg.marker) for s in seqs
    ]
    return sum(r > 0 for r in rewards) / len(rewards), seqs


@experiment(
    "dpo",
    "DPO on the base LM's samples ranked by a marker-word reward; SFT and best-of-n beside",
    DPOConfig,
    presets={
        "smoke": {
            "base_steps": 2,
            "n_prompts": 4,
            "n_eval": 2,
            "k": 2,
            "prompt_len": 4,
            "resp_len": 4,
            "steps": 2,
            "batch_size": 2,
            "marker": "and",
        },
        "gpu": {"n_prompts": 1024, "n_eval": 256, "steps": 400, "batch_size": 64},
    },
)
def run(cfg: DPOConfig, ctx: Context) -> Result:
    if cfg.base:
        ref, tok = load_lm(cfg.base, ctx.device)
        data = load_text("kjv", cfg.base.rstrip("/") + "/tokenizer.json", seed=ctx.seed)
    else:
        small = {
            "bpe_vocab": 300,
            "d_model": 32,
            "n_layers": 1,
            "n_heads": 2,
            "seq_len": 32,
            "batch_size": 4,
            "warmup": 1,
            "max_docs": 30,
            "eval_batches": 2,
        }
        bcfg = BaseLMConfig(steps=cfg.base_steps, **(small if cfg.base_steps < 10 else {}))
        ref, tok, data, _, _ = train_base(bcfg, ctx)
    for p in ref.parameters():
        p.requires_grad_(False)
    P = cfg.prompt_len
    stream = data.train.long()
    starts = torch.randint(
        0, stream.numel() - P, (cfg.n_prompts,), generator=torch.Generator().manual_seed(ctx.seed)
    )
    prompts = torch.stack([stream[s : s + P] for s in starts]).to(ctx.device)
    val = data.val.long()
    vs = torch.linspace(0, val.numel() - P - 1, cfg.n_eval).long()
    eval_prompts = torch.stack([val[s : s + P] for s in vs]).to(ctx.device)

    # 1. pairs from the base's own samples
    seqs = _sample(ref, prompts, cfg.k, cfg.resp_len, ctx.seed).view(cfg.n_prompts, cfg.k, -1)
    r = torch.tensor(
        [[word_count_reward(tok.decode(s[P:].tolist()), cfg.marker) for s in row] for row in seqs]
    )
    keep = (r.max(1).values > r.min(1).values).nonzero()[:, 0]
    notes = []
    if len(keep) < 2:  # a tiny model that never writes the marker: break ties by length
        chars = torch.tensor([[len(tok.decode(s[P:].tolist())) for s in row] for row in seqs])
        r = r - 1e-3 * chars.float()
        keep = (r.max(1).values > r.min(1).values).nonzero()[:, 0]
        notes.append("too few pairs differ in the marker: ties broken by shorter text")
    hi, lo = r.argmax(1), r.argmin(1)
    idx = torch.arange(cfg.n_prompts)
    chosen, rejected = seqs[idx, hi][keep], seqs[idx, lo][keep]
    n_pairs = len(keep)
    if n_pairs < 2:
        raise ValueError(f"only {n_pairs} preference pairs: raise n_prompts or k")
    n_hold = max(1, n_pairs // 8)
    with torch.no_grad():
        ref_c, ref_r = _logps(ref, chosen, P), _logps(ref, rejected, P)

    rate_base, base_samples = _rate(ref, tok, eval_prompts, cfg, ctx.seed + 1)
    # best-of-n: n = k samples from the base, keep the best by the reward
    bon = r.max(1).values > 0
    rate_bon = float(bon.float().mean())

    # 2. DPO and SFT-on-chosen
    history, results = [], {}
    for method in ("dpo", "sft"):
        policy = copy.deepcopy(ref).train()
        for p in policy.parameters():
            p.requires_grad_(True)
        opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)
        g = torch.Generator().manual_seed(ctx.seed)
        tr = torch.arange(n_hold, n_pairs)
        for step in ctx.progress(range(cfg.steps), desc=method):
            b = tr[torch.randint(0, len(tr), (min(cfg.batch_size, len(tr)),), generator=g)]
            if method == "dpo":
                losses, _, _ = dpo_loss(
                    _logps(policy, chosen[b], P),
                    _logps(policy, rejected[b], P),
                    ref_c[b],
                    ref_r[b],
                    cfg.beta,
                    loss_type=cfg.loss_type,
                )
                loss = losses.mean()
            else:
                loss = -_logps(policy, chosen[b], P).mean() / cfg.resp_len
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if method == "dpo" and (step % max(1, cfg.steps // 30) == 0 or step == cfg.steps - 1):
                with torch.no_grad():
                    h = torch.arange(n_hold)
                    _, cr, rr = dpo_loss(
                        _logps(policy, chosen[h], P),
                        _logps(policy, rejected[h], P),
                        ref_c[h],
                        ref_r[h],
                        cfg.beta,
                    )
                    _, crt, rrt = dpo_loss(
                        _logps(policy, chosen[b], P),
                        _logps(policy, rejected[b], P),
                        ref_c[b],
                        ref_r[b],
                        cfg.beta,
                    )
                history.append(
                    {
                        "step": step + 1,
                        "loss": float(loss.detach()),
                        **{f"train {k}": v for k, v in dpo_metrics(crt, rrt).items()},
                        **{f"held-out {k}": v for k, v in dpo_metrics(cr, rr).items()},
                    }
                )
        policy.eval()
        with torch.no_grad():
            rate, samples = _rate(policy, tok, eval_prompts, cfg, ctx.seed + 1)
            kl = float((_logps(policy, samples, P) - _logps(ref, samples, P)).mean())
        results[method] = {"rate": rate, "kl": kl}
    rows = [
        {"method": "base (reference)", "marker_rate": rate_base, "kl_to_ref": 0.0},
        {"method": f"best-of-{cfg.k} from the base", "marker_rate": rate_bon, "kl_to_ref": None},
        {
            "method": "SFT on chosen",
            "marker_rate": results["sft"]["rate"],
            "kl_to_ref": results["sft"]["kl"],
        },
        {
            "method": f"DPO (beta={cfg.beta}, {cfg.loss_type})",
            "marker_rate": results["dpo"]["rate"],
            "kl_to_ref": results["dpo"]["kl"],
        },
    ]
    _plot(ctx, history, rows, cfg)
    last = history[-1]
    return Result(
        metrics={
            "pairs": n_pairs,
            "held_out_pairs": n_hold,
            "history": history,
            "final_held_out_accuracy": last["held-out rewards/accuracies"],
            "final_held_out_margin": last["held-out rewards/margins"],
            "marker_rate_before": rate_base,
            "marker_rate_dpo": results["dpo"]["rate"],
            "kl_dpo": results["dpo"]["kl"],
        },
        table=rows,
        columns=["method", "marker_rate", "kl_to_ref"],
        notes=notes
        + [
            f"marker_rate: share of sampled responses (T=1) containing {cfg.marker!r}; "
            f"best-of-{cfg.k} is measured on the training prompts",
            "kl_to_ref: mean log pi/pi_ref of the policy's own samples (nats / response)",
        ],
    )


def _plot(ctx, history, rows, cfg):
    fig, (a1, a2, a3) = ctx.figure(1, 3, figsize=(14, 4))
    s = [h["step"] for h in history]
    for part, style in (("train", "-"), ("held-out", "o-")):
        a1.plot(s, [h[f"{part} rewards/accuracies"] for h in history], style, ms=3, label=part)
        a2.plot(s, [h[f"{part} rewards/margins"] for h in history], style, ms=3, label=part)
    a1.set(xlabel="step", ylabel="rewards/accuracies (share of pairs)",
           title="DPO implicit-reward accuracy")  # fmt: skip
    a2.set(xlabel="step", ylabel="rewards/margins (nats x beta)", title="DPO reward margin")
    # accuracy axis from at most 0.5 (chance for a pair): the legend's corner stays empty
    low = min(h[f"{p} rewards/accuracies"] for h in history for p in ("train", "held-out"))
    a1.set_ylim(min(0.45, low - 0.05), 1.03)
    a1.legend(fontsize=8, loc="lower right")
    a2.legend(fontsize=8, loc="upper left")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    a3.barh(range(len(rows)), [r["marker_rate"] for r in rows], color="tab:purple")
    a3.set_yticks(range(len(rows)), [r["method"] for r in rows], fontsize=8)
    a3.set(xlabel=f"share of responses containing {cfg.marker!r}", title="preferred property")
    ctx.savefig(fig, "dpo.png")
