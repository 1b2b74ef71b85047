"""`deepnotes run kimi-rl`: Kimi k1.5 mirror-descent RL on a verifiable task, vs RLOO.

Task (`deepnotes.align.rewards.AdditionTask`): "a+b=" -> an answer ending in ";", checked
programmatically. A small byte-level LM is first fine-tuned on noisy demonstrations (a share
of the answers wrong, 0..6 filler dots before the digits) so that it partly solves the task
and its responses vary in length. Then, per iteration:
1. B new prompts (plus the groups carried over) get k sampled responses each, through
   partial rollouts: at most `segment_budget` new tokens per response per iteration;
2. groups whose k responses have all finished are scored: reward 1 for a correct answer,
   plus `length_weight` x the length penalty λ in the with-penalty run;
3. the policy takes `inner_steps` Adam steps (a fresh optimizer each iteration) on
   - Kimi: the surrogate (r - r̄ - τ log πθ/πi)² (`kimi_surrogate_loss`), or
   - RLOO: REINFORCE with the leave-one-out mean baseline, on the same samples;
   only each response's newest segment enters the loss.
Reported per iteration: greedy accuracy on all 100 prompts and the mean sampled response
length.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

import torch

from deepnotes.align.kimi import kimi_surrogate_loss, length_penalty, rloo_loss
from deepnotes.align.logprobs import sequence_logps
from deepnotes.align.rewards import END, AdditionTask
from deepnotes.align.rollouts import Rollout, pad_rollouts, partial_rollouts
from deepnotes.generate import generate
from deepnotes.jobs import Context, Result, experiment
from deepnotes.models.lm import LM, LMConfig


@dataclass
class KimiRLConfig:
    d_model: int = 64  # width of the byte-level policy LM
    n_layers: int = 2  # its blocks
    sft_steps: int = 1000  # supervised steps on noisy demonstrations
    sft_noise: float = 0.5  # share of demonstrations with a wrong answer
    iterations: int = 30  # RL iterations
    prompts_per_iter: int = 16  # new prompts per iteration (B)
    k: int = 8  # samples per prompt
    segment_budget: int = 6  # partial rollouts: new tokens per response per iteration
    max_response: int = 12  # a response is cut (and wrong) after this many tokens
    tau: float = 0.5  # τ of the mirror-descent step (KL weight)
    length_weight: float = 0.5  # weight of the length penalty in the with-penalty run
    inner_steps: int = 4  # Adam steps per iteration (fresh optimizer each time)
    lr: float = 1e-3  # Adam learning rate in RL


def _enc(s: str) -> list[int]:
    return list(s.encode())


def _dec(ids) -> str:
    return bytes(int(i) for i in ids).decode("latin-1")


def _sft(cfg: KimiRLConfig, task: AdditionTask, ctx: Context) -> LM:
    torch.manual_seed(ctx.seed)
    model = LM(
        LMConfig(vocab_size=256, d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=4, max_len=64)
    ).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = random.Random(ctx.seed)
    end = _enc(END)[0]
    for _ in ctx.progress(range(cfg.sft_steps), desc="sft"):
        lines = [_enc(task.demo(rng, cfg.sft_noise)) for _ in range(64)]
        T = max(map(len, lines))
        x = torch.tensor([s + [end] * (T - len(s)) for s in lines], device=ctx.device)
        mask = torch.zeros_like(x, dtype=torch.bool)
        for i, s in enumerate(lines):
            mask[i, 4 : len(s)] = True  # prompts are "a+b=" (4 bytes): response tokens only
        loss = -sequence_logps(model, x, mask).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


@torch.no_grad()
def _accuracy(model, task, cfg, device) -> float:
    pairs = [(a, b) for a in range(task.high) for b in range(task.high)]
    x = torch.tensor([_enc(f"{a}+{b}=") for a, b in pairs], device=device)
    out = generate(model, x, cfg.max_response, temperature=0)[:, 4:]
    ok = 0
    for (a, b), row in zip(pairs, out.tolist(), strict=True):
        text = _dec(row)
        text = text[: text.index(END) + 1] if END in text else text
        ok += task.correct(text, a + b)
    return ok / len(pairs)


def _rl(cfg, base, task, method, ctx):
    policy = copy.deepcopy(base)
    rng = random.Random(ctx.seed + 1)
    g = torch.Generator(ctx.device).manual_seed(ctx.seed + 1)
    end = _enc(END)[0]
    pending: list[Rollout] = []
    group = 0
    curve = [{"iteration": 0, "accuracy": _accuracy(policy, task, cfg, ctx.device)}]
    for it in ctx.progress(range(1, cfg.iterations + 1), desc=method):
        for _ in range(cfg.prompts_per_iter):
            prompt, ans = task.sample(rng)
            pending += [Rollout(_enc(prompt), group, ans) for _ in range(cfg.k)]
            group += 1
        made = partial_rollouts(
            policy, pending, cfg.segment_budget, eos=end, max_response=cfg.max_response, generator=g
        )
        groups: dict[int, list[Rollout]] = {}
        for r in pending:
            groups.setdefault(r.group, []).append(r)
        done = [rs for rs in groups.values() if all(r.done for r in rs)]
        pending = [r for rs in groups.values() if not all(r.done for r in rs) for r in rs]
        if not done:
            continue
        batch = [r for rs in done for r in rs]
        correct = torch.tensor(
            [[task.correct(_dec(r.response), r.meta) for r in rs] for rs in done]
        )
        lengths = torch.tensor([[len(r.response) for r in rs] for rs in done])
        reward = correct.float()
        if method == "kimi + length penalty":
            reward = reward + cfg.length_weight * length_penalty(lengths, correct)
        reward = reward.to(ctx.device)
        tokens, _, seg = pad_rollouts(batch, pad=end, device=ctx.device)
        shape = (len(done), cfg.k)
        with torch.no_grad():
            logp_old = sequence_logps(policy, tokens, seg).view(shape)
        policy.train()
        opt = torch.optim.Adam(policy.parameters(), lr=cfg.lr)  # reset every iteration
        for _ in range(cfg.inner_steps):
            logp = sequence_logps(policy, tokens, seg).view(shape)
            if method == "rloo":
                loss = rloo_loss(logp, reward)
            else:
                loss = kimi_surrogate_loss(logp, logp_old, reward, cfg.tau)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        policy.eval()
        curve.append(
            {
                "iteration": it,
                "accuracy": _accuracy(policy, task, cfg, ctx.device),
                "train_correct": float(correct.float().mean()),
                "mean_length": float(lengths.float().mean()),
                "tokens": made,
                "carried": len(pending),
            }
        )
    return curve


@experiment(
    "kimi-rl",
    "Kimi k1.5 mirror-descent RL (with/without length penalty) vs RLOO on checkable sums",
    KimiRLConfig,
    presets={
        "smoke": {
            "d_model": 16,
            "n_layers": 1,
            "sft_steps": 2,
            "iterations": 2,
            "prompts_per_iter": 2,
            "k": 2,
            "segment_budget": 4,
            "max_response": 6,
            "inner_steps": 1,
        },
        "gpu": {
            "d_model": 128,
            "n_layers": 4,
            "sft_steps": 600,
            "iterations": 80,
            "prompts_per_iter": 64,
        },
    },
)
def run(cfg: KimiRLConfig, ctx: Context) -> Result:
    task = AdditionTask()
    base = _sft(cfg, task, ctx).eval()
    curves = {m: _rl(cfg, base, task, m, ctx) for m in ("kimi", "kimi + length penalty", "rloo")}
    rows = []
    for m, c in curves.items():
        trained = [h for h in c if "mean_length" in h]
        rows.append(
            {
                "method": m,
                "accuracy_before": c[0]["accuracy"],
                "accuracy_after": c[-1]["accuracy"],
                "best_accuracy": max(h["accuracy"] for h in c),
                "length_first": trained[0]["mean_length"] if trained else None,
                "length_last": trained[-1]["mean_length"] if trained else None,
                "samples": cfg.iterations * cfg.prompts_per_iter * cfg.k,
            }
        )
    _plot(ctx, curves)
    return Result(
        metrics={
            "curves": curves,
            **{f"{r['method']} accuracy": r["accuracy_after"] for r in rows},
        },
        table=rows,
        columns=[
            "method",
            "accuracy_before",
            "accuracy_after",
            "best_accuracy",
            "length_first",
            "length_last",
            "samples",
        ],
        notes=[
            "equal samples: every method sees the same number of prompts x k responses",
            "lengths count bytes of the response including the end mark",
        ],
    )


def _plot(ctx: Context, curves: dict[str, list[dict]]) -> None:
    """Greedy accuracy and mean sampled response length per iteration, one line per method.
    `curves[method] = [{"iteration", "accuracy", "mean_length"?}, ...]`."""
    fig, (a1, a2) = ctx.figure(1, 2, figsize=(11, 4))
    for m, c in curves.items():
        a1.plot([h["iteration"] for h in c], [h["accuracy"] for h in c], label=m)
        t = [h for h in c if "mean_length" in h]
        a2.plot([h["iteration"] for h in t], [h["mean_length"] for h in t], label=m)
    a1.set(xlabel="iteration", ylabel="greedy accuracy (100 sums)", title="accuracy")
    a2.set(
        xlabel="iteration", ylabel="mean sampled response length (bytes)", title="response length"
    )
    for a in (a1, a2):
        a.grid(alpha=0.3)
    # one legend, in the length panel's empty top right: the accuracy curves fill theirs
    a2.legend(fontsize=9, loc="upper right")
    ctx.savefig(fig, "kimi_rl.png")
