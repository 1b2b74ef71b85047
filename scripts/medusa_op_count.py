"""Count the ATen ops of one decoding step: greedy against one Medusa step (the whole step,
as `medusa_generate(..., step_graph=True)` captures it), on the CPU.

    PYTHONPATH=src python scripts/medusa_op_count.py                # base-lm's GPU shape
    PYTHONPATH=src python scripts/medusa_op_count.py --by-op        # the table per op

At batch 1 a replayed CUDA graph costs roughly a fixed time per kernel, so the number of ops
that launch one is the first thing a Medusa step adds to a greedy token. An op "launches" here
unless all its results are views of its inputs (view, transpose, split, ...) or it returns no
tensor. Counted with the same fixed-buffer code the GPU runs, eagerly: a CPU op is not one
GPU kernel (SDPA, topk or a norm may be several), so read the counts as a lower bound.
"""

from __future__ import annotations

import argparse
import collections

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from deepnotes.generate.medusa import MedusaHeads
from deepnotes.generate.medusa_graph import GreedyTreeStep, StaticDecoder
from deepnotes.generate.medusa_tree import SPARSE_4, dense_tree, sparse_tree
from deepnotes.models.lm import LM, LMConfig

NO_KERNEL = {"_unsafe_view", "_reshape_alias"}  # views whose schema has no alias annotation


class OpCounter(TorchDispatchMode):
    """Counts each ATen op called under it, and which of them launch work (not views)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter = collections.Counter()
        self.launching: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops[name] += 1
        rets = func._schema.returns
        tensors = [r for r in rets if "Tensor" in str(r.type)]
        views = name in NO_KERNEL or all(
            r.alias_info is not None and not r.alias_info.is_write for r in tensors
        )
        if tensors and not views:
            self.launching[name] += 1
        return func(*args, **(kwargs or {}))


def count(vocab: int, d_model: int, layers: int, prompt_len: int) -> dict[str, OpCounter]:
    """The ops of one greedy token and of one Medusa step (3 trees) of a random rotary /
    RMSNorm / SwiGLU LM of that shape with 4 random heads; -> {step name: its counter}."""
    torch.manual_seed(0)
    cfg = LMConfig(vocab_size=vocab, d_model=d_model, n_layers=layers,
                   n_heads=max(1, d_model // 64), max_len=512, mixer="softmax",
                   positions="rotary", norm="rmsnorm", ffn="swiglu")  # fmt: skip
    model = LM(cfg).eval()
    heads = MedusaHeads(d_model, vocab).eval()
    T0 = prompt_len
    prompt = torch.randint(0, vocab, (T0,))
    causal = torch.full((T0, T0), float("-inf")).triu(1)

    def greedy():
        dec = StaticDecoder(model, T0 + 4, None, cuda_graph=False)
        dec.forward(prompt, torch.arange(T0), causal, graph=False)
        with OpCounter() as c:
            dec.forward(prompt[:1], torch.zeros(1, dtype=torch.long), torch.zeros(1, 1))
        return c

    def medusa(tree):
        dec = StaticDecoder(model, T0 + 4 * tree.n_nodes, heads, cuda_graph=False)
        _, logits, med = dec.forward(prompt, torch.arange(T0), causal, graph=False)
        step = GreedyTreeStep(dec, tree)
        step(logits[-1], med[:, -1])  # the first step builds the stacked heads
        with OpCounter() as c:
            step()
        return c

    runs = {"greedy token": greedy()}
    trees = {
        "dense [1,1,1,1] (5 nodes)": dense_tree([1, 1, 1, 1]),
        "sparse 18": sparse_tree(SPARSE_4, topk=[4, 3, 2, 2]),
        "dense 2^K (31)": dense_tree([2, 2, 2, 2]),
    }
    for name, tree in trees.items():
        runs[f"Medusa step, {name}"] = medusa(tree)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, default=8192, help="base-lm --budget gpu: BPE 8192")
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--prompt", type=int, default=16, help="tokens before the counted step")
    ap.add_argument("--by-op", action="store_true", help="print the counts per op")
    args = ap.parse_args()
    runs = count(args.vocab, args.d_model, args.layers, args.prompt)
    print(f"{'decoding step':40s} {'aten ops':>9s} {'launching':>10s}")
    for name, c in runs.items():
        print(f"{name:40s} {sum(c.ops.values()):9d} {sum(c.launching.values()):10d}")
    if args.by_op:
        names = sorted(set().union(*(c.ops for c in runs.values())))
        names.sort(key=lambda k: -max(c.ops[k] for c in runs.values()))
        print("\nper op (launching / all):", ", ".join(runs))
        for k in names:
            print(
                f"  {k:40s}", "  ".join(f"{c.launching[k]:3d}/{c.ops[k]:3d}" for c in runs.values())
            )


if __name__ == "__main__":
    main()
