"""Evaluate trained `listops` runs on a fresh, larger held-out set, and compare them.

    python scripts/listops_eval.py --ckpt-dir runs/listops-cpu-s4-ckpt --budget cpu-s4 \
        --examples 5000 --out benchmarks/listops-cpu-s4-eval.json
    python scripts/listops_eval.py --budget cpu-s4 --ckpt s4d@10k=runs/s4d-10k-ckpt/s4d \
        --ckpt s4d@5k=runs/listops-cpu-s4-ckpt/s4d --ckpt softmax=runs/listops-cpu-s4-ckpt/softmax

`deepnotes run listops` scores each mixer on `eval_examples` held-out sequences (1,000 in
the cpu-s4 preset: a 95% interval of about +-3 points). This script loads the newest
checkpoint of each mixer under `--ckpt-dir` (`ckpt_dir/<mixer>`, as the job writes them),
rebuilds the preset's model, and scores it on `--examples` new sequences drawn from the same
generator with a seed the job never uses. Per mixer: accuracy with a 95% Wilson interval, and
accuracy on the examples that the first-operator rule (token 0's most common training label)
gets right and on those it gets wrong: a model that only reads token 0 scores about 0 on the
second group. Per pair of mixers: an exact McNemar test on the examples where exactly one of
the two is right.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from deepnotes import jobs
from deepnotes.experiments.ssm.listops import build_model, first_op_guess, generate
from deepnotes.train.checkpoint import find_latest, load_weights
from deepnotes.utils.env import code_revision, device_name, versions
from deepnotes.utils.io import atomic_write_json
from deepnotes.utils.stats import mcnemar_exact

EVAL_SEED = 7_919  # generator seed of the fresh set (the job uses 2 seed and 2 seed + 1)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (mid - half, mid + half)


def mean(hit: torch.Tensor) -> float | None:
    """Fraction of True in a bool tensor, None when it is empty."""
    return round(hit.float().mean().item(), 4) if hit.numel() else None


@torch.no_grad()
def predict(model, x: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """[M] argmax labels of token ids x [M, T] (padding = 0)."""
    model.eval()
    out = []
    for i in range(0, x.shape[0], batch):
        xb = x[i : i + batch].long()
        out.append(model(xb, xb != 0).argmax(-1))
    return torch.cat(out)


def evaluate(ckpt_dir: Path | None, budget: str, examples: int, seed: int = 0,
             ckpts: dict[str, Path] | None = None, device: str = "cpu") -> dict:  # fmt: skip
    """Score the newest checkpoint of each preset mixer under ckpt_dir (`ckpt_dir/<mixer>`),
    and of each ckpts entry: label -> a mixer's checkpoint folder, the label being the
    mixer's name or "<mixer>@<tag>" (e.g. two runs of one mixer: s4d@5k, s4d@10k)."""
    jobs.discover()
    cfg = jobs.EXPERIMENTS.get("listops").make_config(budget)
    runs = {}  # label -> checkpoint folder
    if ckpt_dir is not None:
        runs = {m: ckpt_dir / m for m in cfg.mixers if find_latest(ckpt_dir / m) is not None}
    for label, folder in (ckpts or {}).items():
        if find_latest(folder) is None:
            raise SystemExit(f"listops_eval: no checkpoint under {folder} (--ckpt {label})")
        runs[label] = folder
    if not runs:
        raise SystemExit(f"listops_eval: no checkpoint of {cfg.mixers} under {ckpt_dir}")
    mixers = list(runs)
    x, y = generate(cfg, cfg.train_examples, 2 * seed)  # the job's training set (for the rule)
    xv, yv = generate(cfg, examples, EVAL_SEED)
    rule = first_op_guess(x, y, xv)
    rule_right = rule == yv
    rows, hits = [], {}
    for name in mixers:
        path = find_latest(runs[name])
        model = build_model(cfg, name.split("@")[0])
        model.load_state_dict(load_weights(path / "model.safetensors"))
        t0 = time.perf_counter()
        hit = predict(model.to(device), xv.to(device)).cpu() == yv
        hits[name] = hit
        k, n = int(hit.sum()), hit.numel()
        lo, hi = wilson(k, n)
        rows.append({
            "mixer": name, "step": int(json.loads((path / "meta.json").read_text())["step"]),
            "acc": round(k / n, 4), "acc_lo95": round(lo, 4), "acc_hi95": round(hi, 4),
            "acc_rule_right": mean(hit[rule_right]), "acc_rule_wrong": mean(hit[~rule_right]),
            "eval_s": round(time.perf_counter() - t0, 1),
        })  # fmt: skip
    pairs = []
    for i, a in enumerate(mixers):
        for b in mixers[i + 1 :]:
            only_a = int((hits[a] & ~hits[b]).sum())
            only_b = int((hits[b] & ~hits[a]).sum())
            pairs.append({"a": a, "b": b, "only_a_right": only_a, "only_b_right": only_b,
                          "mcnemar_p": mcnemar_exact(only_a, only_b)})  # fmt: skip
    majority = Counter(y.tolist()).most_common(1)[0][0]
    return {
        "budget": budget, "examples": examples, "eval_seed": EVAL_SEED,
        "majority_baseline": round((yv == majority).float().mean().item(), 4),
        "first_op_baseline": round(rule_right.float().mean().item(), 4),
        "rows": rows, "pairs": pairs,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt-dir", help="the run's ckpt_dir (one folder per mixer)")
    ap.add_argument("--ckpt", action="append", default=[], metavar="LABEL=DIR",
                    help="also score this mixer's checkpoint folder; LABEL = the mixer, or "
                    "MIXER@TAG to tell two runs of one mixer apart (repeatable)")  # fmt: skip
    ap.add_argument("--budget", required=True, help="the listops preset the run used")
    ap.add_argument("--examples", type=int, default=5000, help="fresh held-out sequences")
    ap.add_argument("--seed", type=int, default=0, help="the run's --seed (for its training set)")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (fp32 either way)")
    a = ap.parse_args(argv)
    if a.examples < 1:
        ap.error(f"--examples {a.examples}: must be >= 1")
    ckpts = {}
    for item in a.ckpt:
        label, sep, folder = item.partition("=")
        if not sep or not label or not folder:
            ap.error(f"--ckpt {item!r}: expected LABEL=DIR, e.g. s4d@10k=runs/x-ckpt/s4d")
        ckpts[label] = Path(folder)
    if a.device.split(":")[0] not in ("cpu", "cuda"):
        ap.error(f"--device {a.device!r}: cpu or cuda")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device here")
    if a.ckpt_dir is None and not ckpts:
        ap.error("give --ckpt-dir, --ckpt LABEL=DIR, or both")
    jobs.discover()
    known = jobs.EXPERIMENTS.get("listops").make_config(a.budget).mixers
    bad = [lab for lab in ckpts if lab.split("@")[0] not in known]
    if bad:
        ap.error(f"--ckpt {bad[0]}: the mixer must be one of the preset's {known}")
    torch.set_num_threads(1)
    res = evaluate(Path(a.ckpt_dir) if a.ckpt_dir else None, a.budget, a.examples, a.seed,
                   ckpts, a.device)  # fmt: skip
    res["device"], res["device_name"] = a.device, device_name(torch.device(a.device))
    res["versions"] = {**versions(), "revision": code_revision()}
    res["command"] = "python scripts/listops_eval.py " + " ".join(
        arg for arg in (argv if argv is not None else sys.argv[1:])
    )
    for r in res["rows"]:
        print(f"{r['mixer']:>10} step {r['step']}: acc {r['acc']:.3f} "
              f"[{r['acc_lo95']:.3f}, {r['acc_hi95']:.3f}]; where the first-op rule is right "
              f"{r['acc_rule_right']}, wrong {r['acc_rule_wrong']}")  # fmt: skip
    for p in res["pairs"]:
        print(f"{p['a']} vs {p['b']}: only {p['a']} right {p['only_a_right']}, only {p['b']} "
              f"right {p['only_b_right']}, McNemar p = {p['mcnemar_p']:.2g}")  # fmt: skip
    print(f"majority {res['majority_baseline']:.3f}, first-op rule {res['first_op_baseline']:.3f}")
    if a.out:
        atomic_write_json(Path(a.out), res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
