"""Medusa trees built from measured head accuracy (Cai et al. 2024, §3.3.1).

Calibration (`head_rank_accuracy`) decodes prompts greedily, then asks, for every position
and head d, at which rank of head d's top-k list the token greedy decoding actually produced
stands. acc[d, r] is the fraction of positions where that rank is r ([K, topk]; a row sums to
at most 1, the rest being "not in the top-k").

Under greedy acceptance a tree node (a path of ranks [r_1, ..., r_d]) is accepted iff its
parent is and its token equals greedy's, so at most one node per depth is accepted and the
tokens per forward are 1 + the number of accepted nodes. By linearity

    E[tokens per forward] = 1 + sum over nodes of P(node accepted),

and the paper's approximation treats the heads as independent:
P(node accepted) ~ prod_i acc[i - 1, r_i] (`expected_accepted_length`). `optimal_tree` picks
the n-node tree that maximises this expectation.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import torch
from torch import nn

from deepnotes.generate.medusa import MedusaHeads, greedy_cached
from deepnotes.generate.medusa_tree import MedusaTree, sparse_tree


@torch.no_grad()
def head_rank_accuracy(
    model: nn.Module,
    heads: MedusaHeads,
    prompts: torch.Tensor | Sequence[torch.Tensor],
    new_tokens: int,
    topk: int = 10,
    batch_size: int = 64,
) -> torch.Tensor:
    """Calibration: acc [K, topk] (float64 on the CPU), acc[d, r] = the fraction of positions
    where head d + 1's r-th ranked token (0 = its argmax) is the token greedy decoding chose.

    prompts: LongTensor [B, T0] or a list of [1, T0] / [T0] tensors of one length T0.
    Each prompt is continued greedily for new_tokens (`greedy_cached`, batched), then the
    whole sequence x goes through the base once (teacher forcing) and the heads read every
    hidden state h_t. Head k (= d + 1) at h_t predicts x_{t+k+1} (`medusa_loss`'s offset), as
    the tree's depth-k node under the last accepted token t does. Positions run from the
    prompt's last token t = T0 - 1 (where decoding starts) to the last t whose target exists,
    so a deeper head has fewer positions. Ranks come from `torch.topk`, the ranking that
    `MedusaTree.candidates` uses.
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    K = heads.n_heads
    if new_tokens < K + 1:
        raise ValueError(f"need new_tokens >= {K + 1} for {K} heads, got {new_tokens}")
    if isinstance(prompts, torch.Tensor):
        batch = prompts if prompts.dim() == 2 else prompts[None]
    else:
        rows = [p.reshape(1, -1) for p in prompts]
        if not rows or len({r.shape[1] for r in rows}) != 1:
            raise ValueError("prompts must be a non-empty list of tensors of one length")
        batch = torch.cat(rows)
    if batch.shape[0] == 0 or batch.shape[1] == 0:
        raise ValueError(f"need at least one non-empty prompt, got {tuple(batch.shape)}")
    T0 = batch.shape[1]
    hits = torch.zeros(K, topk, dtype=torch.float64)
    counts = torch.zeros(K, dtype=torch.float64)
    was_training = model.training, heads.training
    model.eval(), heads.eval()
    try:
        for i in range(0, batch.shape[0], batch_size):
            seq = greedy_cached(model, batch[i : i + batch_size], new_tokens)  # [b, T]
            hidden = model.hidden(seq)  # [b, T, D]
            T = seq.shape[1]
            for k, head in enumerate(heads.heads, start=1):
                h = hidden[:, T0 - 1 : T - k - 1]  # positions t whose target t + k + 1 < T
                target = seq[:, T0 + k :]  # x_{t+k+1}
                top = torch.topk(head(h), min(topk, heads.vocab_size), dim=-1).indices
                rank_hit = (top == target[..., None]).flatten(0, 1)  # [n, topk'] one-hot or 0
                hits[k - 1, : top.shape[-1]] += rank_hit.sum(0).double().cpu()
                counts[k - 1] += rank_hit.shape[0]
    finally:
        model.train(was_training[0]), heads.train(was_training[1])
    return hits / counts[:, None]


def _check_acc(acc: torch.Tensor) -> None:
    if not isinstance(acc, torch.Tensor) or acc.dim() != 2 or 0 in acc.shape:
        shape = tuple(acc.shape) if isinstance(acc, torch.Tensor) else type(acc).__name__
        raise ValueError(f"acc must be a non-empty [K, topk] tensor, got {shape}")
    a = acc.double()
    if not torch.isfinite(a).all() or (a < 0).any() or (a > 1).any():
        raise ValueError("acc must hold probabilities in [0, 1]")
    if (a.sum(1) > 1 + 1e-6).any():
        raise ValueError(f"each row of acc must sum to <= 1 (ranks exclude each other), got "
                         f"{[round(s, 4) for s in a.sum(1).tolist()]}")  # fmt: skip


def _check_paths(paths: Sequence[Sequence[int]], K: int, topk: int) -> list[tuple[int, ...]]:
    out = [tuple(int(r) for r in p) for p in paths]
    if not out:
        raise ValueError("a tree needs at least one path")
    if len(set(out)) != len(out):
        raise ValueError("paths must not repeat")
    have = set(out)
    for p in out:
        if not p or len(p) > K or min(p) < 0 or max(p) >= topk:
            raise ValueError(f"path {list(p)}: need 1..{K} ranks, each in [0, {topk})")
        if len(p) > 1 and p[:-1] not in have:
            raise ValueError(f"the parent of path {list(p)} is not in the tree")
    return out


def expected_accepted_length(acc: torch.Tensor, paths: Sequence[Sequence[int]]) -> float:
    """Predicted tokens per forward of the tree given as paths of ranks (see `sparse_tree`):

        1 + sum over paths [r_1, ..., r_d] of prod_i acc[i - 1, r_i].

    acc: [K, topk] from `head_rank_accuracy`. The sum is exact (at most one node per depth is
    accepted); the product is the paper's independence approximation.
    """
    _check_acc(acc)
    a = acc.double().tolist()
    total = 1.0
    for p in _check_paths(paths, len(a), len(a[0])):
        total += math.prod(a[i][r] for i, r in enumerate(p))
    return total


def optimal_paths(acc: torch.Tensor, n_nodes: int) -> list[list[int]]:
    """The n_nodes - 1 paths (node 0, the base token, makes n_nodes) of the tree that maximises
    `expected_accepted_length(acc, paths)`, in the order they were chosen.

    Best-first search: a heap holds the frontier, starting with the root's children, keyed by
    the value v(path) = prod acc along it; popping a node pushes its children. This is
    optimal: acc <= 1, so a child's value never exceeds its parent's, and every node outside
    the chosen set has an ancestor on the frontier worth at least as much. The chosen values
    are therefore the n_nodes - 1 largest over all nodes, the most any n_nodes - 1 nodes can
    sum to, and the set is ancestor-closed by construction. Ties go to the shallower path,
    then the lexicographically smaller one (deterministic).
    """
    _check_acc(acc)
    if isinstance(n_nodes, bool) or not isinstance(n_nodes, int) or n_nodes < 2:
        raise ValueError(f"n_nodes counts the base token: need an int >= 2, got {n_nodes!r}")
    a = acc.double().tolist()
    K, topk = len(a), len(a[0])
    size = sum(topk**d for d in range(1, K + 1))
    if n_nodes - 1 > size:
        raise ValueError(f"n_nodes = {n_nodes} exceeds the {size + 1} nodes of the full "
                         f"top-{topk} tree over {K} heads")  # fmt: skip
    heap = [(-a[0][r], 1, (r,)) for r in range(topk)]
    heapq.heapify(heap)
    chosen: list[list[int]] = []
    while len(chosen) < n_nodes - 1:
        neg, d, path = heapq.heappop(heap)
        chosen.append(list(path))
        if d < K:
            for r in range(topk):
                heapq.heappush(heap, (neg * a[d][r], d + 1, (*path, r)))
    return chosen


def optimal_tree(acc: torch.Tensor, n_nodes: int, device=None):
    """(MedusaTree of n_nodes nodes, its paths): `optimal_paths` as a `sparse_tree` whose head
    d offers just the ranks the tree uses (top-(max rank + 1))."""
    paths = optimal_paths(acc, n_nodes)
    depth = max(len(p) for p in paths)
    topk = [1 + max(p[d] for p in paths if len(p) > d) for d in range(depth)]
    return sparse_tree(paths, topk=topk, device=device), paths


def tree_paths(tree: MedusaTree) -> list[list[int]]:
    """The paths of ranks of a tree's nodes (node 0 excluded), read back from its buffers."""
    offset = [1 + sum(tree.topk[:d]) for d in range(tree.depth)]
    mask = tree.attn_mask.cpu() > 0
    depth = tree.position_ids.cpu().tolist()
    index = tree.tree_indices.cpu().tolist()
    rank = [0] + [index[n] - offset[depth[n] - 1] for n in range(1, tree.n_nodes)]
    paths = []
    for n in range(1, tree.n_nodes):
        ancestors = sorted((m for m in range(1, tree.n_nodes) if mask[n, m]), key=depth.__getitem__)
        paths.append([rank[m] for m in ancestors])
    return paths
