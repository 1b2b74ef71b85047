"""Synthetic tasks that tell sequence mixers apart by what they can remember.

Every generator is deterministic given `seed` and returns LongTensors. Token tasks return
(x, y): x [n, T] inputs and y [n, T] targets, with y = IGNORE (-100, the cross-entropy
ignore index) wherever nothing is asked; a causal model predicts y[t] from x[<= t].

- `mqar`: multi-query associative recall (Arora et al. 2023, "Zoology"). Key-value pairs, then
  keys again at power-law distributed gaps; after each repeated key the model must produce
  its value. Attention does this with one lookup; a fixed-size state must store all pairs.
- `selective_copying`: the Mamba paper's variant of copying (Gu & Dao 2023, Fig. 2): data
  tokens scattered at random positions among noise, then markers at which the data tokens
  must be reproduced in order. Needs content-dependent (selective) memory.
- `induction_heads`: a trigger token followed by an answer somewhere in random text; the
  trigger again at the end asks for the answer (Olsson et al. 2022; H3, Mamba).
- `listops`: Long Range Arena's ListOps (Nangia & Bowman 2018; Tay et al. 2021): nested
  [MAX / [MIN / [MED / [SM (sum mod 10) expressions over digits, label = the value (10
  classes). Returns (x [n, T] padded with PAD = 0, y [n]).
"""

from __future__ import annotations

import random

import numpy as np
import torch

IGNORE = -100


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


# ----------------------------------------------------------------------------- MQAR
def mqar(
    n: int,
    seq_len: int = 64,
    num_pairs: int = 4,
    vocab_size: int = 256,
    *,
    seed: int = 0,
    power_a: float = 0.01,
    random_non_queries: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-query associative recall, as Zoology's `multiquery_ar`.

    Layout of one example (T = seq_len): k_1 v_1 ... k_P v_P, then the rest of the sequence
    in slots of two, P of which (chosen with probability ~ gap^(power_a - 1), so near gaps
    dominate) hold a key k_i; the target at that position is v_i. Keys come from the first
    half of the vocabulary (token 0 excluded), values from the second half; other positions
    are random tokens (or 0 with random_non_queries=False).
    Returns x, y: [n, seq_len].
    """
    _check(seq_len % 2 == 0, f"mqar: seq_len must be even, got {seq_len}")
    _check(4 * num_pairs <= seq_len, f"mqar: need 4 * num_pairs <= seq_len, got {num_pairs}")
    half = vocab_size // 2
    _check(num_pairs < half, f"mqar: vocab_size {vocab_size} too small for {num_pairs} pairs")
    rng = np.random.default_rng(seed)
    ctx = 2 * num_pairs
    space = (seq_len - ctx) // 2
    p = power_a * np.arange(1, space + 1) ** (power_a - 1)
    p = p / p.sum()
    tokens = np.zeros((n, seq_len + 1), dtype=np.int64)
    labels = np.full((n, seq_len + 1), IGNORE, dtype=np.int64)
    for i in range(n):
        keys = rng.choice(np.arange(1, half), size=num_pairs, replace=False)
        values = rng.choice(np.arange(half, vocab_size), size=num_pairs, replace=False)
        tokens[i, 0:ctx:2], tokens[i, 1:ctx:2] = keys, values
        gaps = rng.choice(space, size=num_pairs, replace=False, p=p)
        tokens[i, ctx + 2 * gaps] = keys
        labels[i, ctx + 2 * gaps + 1] = values
    x, y = tokens[:, :-1], labels[:, 1:]
    if random_non_queries:
        filler = rng.integers(0, vocab_size, size=x.shape)
        x = np.where(x == 0, filler, x)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


# ----------------------------------------------------------------------------- copying
def selective_copying(
    n: int,
    seq_len: int = 256,
    num_tokens: int = 16,
    vocab_size: int = 16,
    *,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective copying (Gu & Dao 2023). Token 0 = noise, vocab_size - 1 = marker, data
    tokens in [1, vocab_size - 2].

    x: num_tokens data tokens at random (sorted) positions among seq_len - num_tokens noise
    slots, then num_tokens markers; y: the data tokens in order at the marker positions.
    Returns x, y: [n, seq_len].
    """
    _check(vocab_size >= 3, f"selective_copying: vocab_size must be >= 3, got {vocab_size}")
    _check(
        2 * num_tokens <= seq_len,
        f"selective_copying: need 2 * num_tokens <= seq_len, got {num_tokens}, {seq_len}",
    )
    rng = np.random.default_rng(seed)
    region = seq_len - num_tokens
    data = rng.integers(1, vocab_size - 1, size=(n, num_tokens))
    pos = np.sort(rng.random((n, region)).argsort(axis=1)[:, :num_tokens], axis=1)
    x = np.zeros((n, seq_len), dtype=np.int64)
    np.put_along_axis(x, pos, data, axis=1)
    x[:, region:] = vocab_size - 1
    y = np.full((n, seq_len), IGNORE, dtype=np.int64)
    y[:, region:] = data
    return torch.from_numpy(x), torch.from_numpy(y)


# ----------------------------------------------------------------------------- induction
def induction_heads(
    n: int, seq_len: int = 64, vocab_size: int = 16, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Induction heads. Token vocab_size - 1 is the trigger; other tokens are uniform in
    [0, vocab_size - 2]. The trigger appears once at a random position p < seq_len - 2,
    followed by the answer, and again at the last position, whose target is the answer.
    Returns x, y: [n, seq_len].
    """
    _check(vocab_size >= 3, f"induction_heads: vocab_size must be >= 3, got {vocab_size}")
    _check(seq_len >= 4, f"induction_heads: seq_len must be >= 4, got {seq_len}")
    rng = np.random.default_rng(seed)
    trigger = vocab_size - 1
    x = rng.integers(0, trigger, size=(n, seq_len))
    p = rng.integers(0, seq_len - 2, size=n)
    rows = np.arange(n)
    x[rows, p] = trigger
    x[:, -1] = trigger
    y = np.full((n, seq_len), IGNORE, dtype=np.int64)
    y[:, -1] = x[rows, p + 1]
    return torch.from_numpy(x), torch.from_numpy(y)


# ----------------------------------------------------------------------------- ListOps
LISTOPS_OPS = ("[MIN", "[MAX", "[MED", "[SM")
LISTOPS_END = "]"
PAD = 0
# Token ids: 0 = padding, then digits, operators and the closing bracket (LRA, no parens).
LISTOPS_VOCAB = ("<pad>", *map(str, range(10)), *LISTOPS_OPS, LISTOPS_END)
LISTOPS_ID = {t: i for i, t in enumerate(LISTOPS_VOCAB)}
VALUE_P = 0.25  # LRA: probability of an operator node (below max depth)


def listops_tree(rng: random.Random, depth: int = 1, max_depth: int = 10, max_args: int = 10):
    """LRA's `generate_tree`: an int leaf, or (op, [children]) with 2..max_args children."""
    r = rng.random() if depth < max_depth else 1.0
    if r > VALUE_P:
        return rng.choice(range(10))
    args = [
        listops_tree(rng, depth + 1, max_depth, max_args) for _ in range(rng.randint(2, max_args))
    ]
    return (rng.choice(LISTOPS_OPS), args)


def listops_tokens(tree) -> list[str]:
    """Prefix tokens without parentheses: '[MAX 4 3 [MIN 2 3 ] 1 ]'.split()."""
    if isinstance(tree, int):
        return [str(tree)]
    op, args = tree
    return [op, *(t for a in args for t in listops_tokens(a)), LISTOPS_END]


def apply_listop(op: str, values: list[int]) -> int:
    """MIN, MAX, MED (int of numpy's median: the floor of the two middles' mean), SM (sum
    mod 10)."""
    if op == "[MIN":
        return min(values)
    if op == "[MAX":
        return max(values)
    if op == "[MED":
        return int(np.median(values))
    if op == "[SM":
        return sum(values) % 10
    raise ValueError(f"unknown ListOps operator {op!r}")


def listops_value(tree) -> int:
    """The value of a tree (recursive definition)."""
    if isinstance(tree, int):
        return tree
    op, args = tree
    return apply_listop(op, [listops_value(a) for a in args])


def listops_eval_tokens(tokens: list[str]) -> int:
    """The value of a token sequence, by a stack machine (no tree needed)."""
    stack: list[tuple[str, list[int]]] = []
    result = None
    for tok in tokens:
        if tok in LISTOPS_OPS:
            stack.append((tok, []))
        elif tok == LISTOPS_END:
            op, vals = stack.pop()
            v = apply_listop(op, vals)
            if stack:
                stack[-1][1].append(v)
            else:
                result = v
        else:
            v = int(tok)
            if stack:
                stack[-1][1].append(v)
            else:
                result = v
    if stack or result is None:
        raise ValueError("listops_eval_tokens: unbalanced expression")
    return result


def listops(
    n: int,
    min_len: int = 500,
    max_len: int = 2000,
    *,
    max_depth: int = 10,
    max_args: int = 10,
    seed: int = 0,
    pad_to: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """n ListOps examples with min_len < length < max_len tokens (LRA: 500 < L < 2000,
    max_depth = max_args = 10), by rejection sampling as LRA does.

    Returns x: [n, pad_to or max length] token ids (PAD = 0 after the end) and y: [n] labels
    in 0..9.
    """
    _check(
        0 <= min_len < max_len - 1, f"listops: need min_len < max_len - 1, got {min_len}, {max_len}"
    )
    rng = random.Random(seed)
    seqs, labels = [], []
    while len(seqs) < n:
        tree = listops_tree(rng, 1, max_depth, max_args)
        toks = listops_tokens(tree)
        if min_len < len(toks) < max_len:
            seqs.append([LISTOPS_ID[t] for t in toks])
            labels.append(listops_value(tree))
    T = pad_to or max(len(s) for s in seqs)
    _check(T >= max(len(s) for s in seqs), f"listops: pad_to = {pad_to} is shorter than a sequence")
    x = torch.full((n, T), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.tensor(s)
    return x, torch.tensor(labels, dtype=torch.long)


def listops_decode(ids) -> list[str]:
    """Token ids (padding dropped) back to tokens."""
    return [LISTOPS_VOCAB[i] for i in ids if i != PAD]
