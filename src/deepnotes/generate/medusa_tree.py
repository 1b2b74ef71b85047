"""Medusa candidate trees and the acceptance rules (Cai et al. 2024).

A step of Medusa proposes candidates from the heads' top-k lists and verifies all of them in
one forward pass. The candidates form a tree: node 0 is the base model's next token, a node
at depth d is one of head d's top-k tokens, and its parent is the node it continues. The
buffers, laid out as the reference `medusa-llm` lays them out:

- `tree_indices` [N]: node n's token is `flat[tree_indices[n]]`, where
  flat = [base argmax, head 1's top-k_1, head 2's top-k_2, ...];
- `attn_mask` [N, N] (1.0 / 0.0): node n sees itself and its ancestors only;
- `position_ids` [N]: a node's depth (its offset from the current sequence end);
- `retrieve_indices` [L, D + 1]: the node indices of each root-to-leaf path, padded with -1.

Two shapes of tree:
- `dense_tree([k_1, ..., k_K])`: the cartesian tree, every top-k_i token under every node of
  depth i - 1 (medusa-llm 0.1's `medusa_choices=[1, k_1, ..., k_K]`);
- `sparse_tree(paths)`: the nodes listed as paths of top-k ranks, e.g. [[0], [0, 0], [1]]
  (the reference's `medusa_choices` lists such as `mc_sim_7b_63`).

Acceptance (`evaluate_posterior`), per candidate path:
- temperature 0: a token is accepted while it equals the base model's argmax at its parent,
  so the output is exactly greedy decoding;
- typical acceptance: a token is accepted while p(token) > min(posterior_threshold,
  posterior_alpha * exp(-H(p))), with p the base model's distribution at the parent and H its
  entropy; ties between the longest paths go to the most likely one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

DEFAULT_TOPK = 10  # top-k per head behind sparse trees (the reference's TOPK)


@dataclass
class MedusaTree:
    """Tree buffers (see the module docstring). All tensors are on one device."""

    tree_indices: torch.Tensor  # [N] long: node -> index into the flat candidate list
    attn_mask: torch.Tensor  # [N, N] float 1/0: node (row) may attend node (column)
    position_ids: torch.Tensor  # [N] long: depth of each node (0 = the base token)
    retrieve_indices: torch.Tensor  # [L, D + 1] long: paths as node indices, -1 = padding
    topk: list[int]  # tokens taken from head d's ranking, d = 1..D
    # [N] long: node -> index into [base token, head 1's top-k_max, ..., head D's, 0], the
    # layout of one top-k call over all heads (k_max = max(topk)); set from the above
    node_slots: torch.Tensor = field(init=False, repr=False)
    # [L, D + 1] long: the same for each path's entries (padding -> the trailing 0)
    path_slots: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        kmax, D = max(self.topk), len(self.topk)
        ref = [0] + [1 + d * kmax + r for d, k in enumerate(self.topk) for r in range(k)]
        slots = torch.tensor(ref, device=self.tree_indices.device)[self.tree_indices]
        self.node_slots = slots
        pad = torch.full_like(slots[:1], 1 + D * kmax)  # the trailing 0
        self.path_slots = torch.cat([slots, pad])[self.retrieve_indices]

    @property
    def n_nodes(self) -> int:
        return int(self.tree_indices.numel())

    @property
    def depth(self) -> int:
        """D: the number of Medusa heads the tree uses."""
        return self.retrieve_indices.shape[1] - 1

    def to(self, device) -> MedusaTree:
        return MedusaTree(
            self.tree_indices.to(device),
            self.attn_mask.to(device),
            self.position_ids.to(device),
            self.retrieve_indices.to(device),
            list(self.topk),
        )

    def attn_bias(self, dtype: torch.dtype) -> torch.Tensor:
        """[N, N] additive bias: 0 where the mask allows, -inf elsewhere."""
        zero = torch.zeros((), dtype=dtype, device=self.attn_mask.device)
        return torch.where(self.attn_mask > 0, zero, torch.full_like(zero, float("-inf")))

    def candidates(self, base_logits: torch.Tensor, head_logits: torch.Tensor):
        """base_logits: [V], head_logits: [K, V] (K >= depth).

        Returns (tree_tokens [N], candidates [L, D + 1]); padded path entries hold token 0.
        """
        return self.candidates_after(base_logits.argmax(-1, keepdim=True), head_logits)

    def candidates_after(self, base_token: torch.Tensor, head_logits: torch.Tensor):
        """`candidates` from the base model's next token [1] (long) instead of its logits.

        One top-k call over the heads (k = max(topk), as the reference's single `topk`
        over all heads): head d's top-k_d is the first k_d of its top-k_max.
        """
        if head_logits.shape[0] < self.depth:
            raise ValueError(
                f"tree of depth {self.depth} needs {self.depth} heads, got {head_logits.shape[0]}"
            )
        top = torch.topk(head_logits[: self.depth], max(self.topk)).indices  # [D, k_max]
        flat = torch.cat([base_token, top.flatten(), torch.zeros_like(base_token)])
        return flat[self.node_slots], flat[self.path_slots]


def _check_topk(topk: list[int]) -> None:
    if not topk or any(int(k) < 1 for k in topk):
        raise ValueError(f"top-k per head must be a non-empty list of ints >= 1, got {topk}")


def dense_tree(topk: list[int], device=None) -> MedusaTree:
    """The cartesian tree: depth d holds every top-k_d token under every depth d-1 node."""
    _check_topk(topk)
    paths = [
        list(p)
        for d in range(1, len(topk) + 1)
        for p in itertools.product(*[range(k) for k in topk[:d]])
    ]
    return sparse_tree(paths, topk=list(topk), device=device)


def sparse_tree(paths: list[list[int]], topk: list[int] | int | None = None, device=None):
    """A tree from node paths: [r_1, ..., r_d] is the r_d-th token of head d under the node
    [r_1, ..., r_{d-1}]. Every prefix of a path must itself be listed.

    topk: how many tokens each head offers (an int for all heads, or one per depth; default
    the reference's 10); it fixes the layout of the flat candidate list.
    """
    if not paths:
        raise ValueError("a Medusa tree needs at least one path")
    paths = [tuple(int(r) for r in p) for p in paths]
    if any(len(p) == 0 or min(p) < 0 for p in paths):
        raise ValueError("paths must be non-empty lists of ranks >= 0")
    if len(set(paths)) != len(paths):
        raise ValueError("paths must not repeat")
    order = sorted(paths, key=lambda p: (len(p), p))  # breadth first, then by rank
    index = {p: i + 1 for i, p in enumerate(order)}  # node 0 is the base token
    missing = [p for p in order if len(p) > 1 and p[:-1] not in index]
    if missing:
        raise ValueError(f"the parent of path {list(missing[0])} is not in the tree")
    depth = len(order[-1])
    if topk is None:
        topk = DEFAULT_TOPK
    topk = [topk] * depth if isinstance(topk, int) else list(topk)
    if len(topk) < depth:
        raise ValueError(f"topk lists {len(topk)} heads; the tree has depth {depth}")
    topk = topk[:depth]
    _check_topk(topk)
    too_deep = [p for p in order if p[-1] >= topk[len(p) - 1]]
    if too_deep:
        raise ValueError(f"path {list(too_deep[0])} takes a rank beyond head top-k {topk}")
    offset = [1 + sum(topk[:d]) for d in range(depth)]  # start of head d+1 in the flat list

    n = len(order) + 1
    mask = torch.eye(n)
    mask[:, 0] = 1.0
    tree_indices = torch.zeros(n, dtype=torch.long)
    position_ids = torch.zeros(n, dtype=torch.long)
    for p, i in index.items():
        for c in range(1, len(p)):
            mask[i, index[p[:c]]] = 1.0
        tree_indices[i] = offset[len(p) - 1] + p[-1]
        position_ids[i] = len(p)

    leaves = [p for p in order if not any(q[: len(p)] == p and len(q) > len(p) for q in order)]
    rows = [[index[p[:c]] for c in range(1, len(p) + 1)] for p in leaves]
    rows = [r + [-1] * (depth - len(r)) for r in rows]
    big = n + 5
    rows.sort(key=lambda r: [x if x >= 0 else big for x in r])
    retrieve = torch.tensor([[0] + r for r in rows], dtype=torch.long)
    tree = MedusaTree(tree_indices, mask, position_ids, retrieve, topk)
    return tree if device is None else tree.to(device)


def evaluate_posterior(
    logits: torch.Tensor,
    candidates: torch.Tensor,
    temperature: float = 0.0,
    posterior_threshold: float = 0.09,
    posterior_alpha: float = 0.3,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick the candidate path to keep.

    logits: [L, D + 1, V], the base model's logits at each node of each path;
    candidates: [L, D + 1] tokens (column 0 is the base token, always kept);
    valid: [L, D + 1] bool, False at a path's padding (None = all real).
    Returns (best path index, accepted head tokens a) as 0-dim long tensors; the step emits
    candidates[best, : a + 1].
    """
    if logits.dim() != 3 or candidates.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits [L, D+1, V] and candidates [L, D+1], got {tuple(logits.shape)} "
            f"and {tuple(candidates.shape)}"
        )
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    nxt = candidates[:, 1:]
    if temperature == 0:
        accept = nxt == logits[:, :-1].argmax(-1)
    else:
        p = torch.softmax(logits[:, :-1] / temperature, dim=-1)
        p_tok = torch.gather(p, -1, nxt[..., None])[..., 0]
        entropy = -(p * torch.log(p + 1e-5)).sum(-1)  # the reference's guarded entropy
        threshold = torch.minimum(
            torch.full_like(entropy, posterior_threshold), torch.exp(-entropy) * posterior_alpha
        )
        accept = p_tok > threshold
    if valid is not None:
        accept = accept & valid[:, 1:]
    lengths = torch.cumprod(accept.int(), dim=1).sum(dim=1)
    a = lengths.max()
    if temperature == 0:  # argmax of all-zero lengths is path 0: no host sync needed
        return lengths.argmax().long(), a
    if a == 0:
        return torch.zeros((), dtype=torch.long, device=candidates.device), a
    best = torch.where(lengths == a)[0]
    likelihood = torch.log(p_tok[best, :a]).sum(-1)
    return best[likelihood.argmax()], a


# A sparse tree for 4 heads (18 nodes): more children near the root, where acceptance is
# likeliest, in the spirit of the reference's accuracy-ranked `mc_sim_7b_63`.
SPARSE_4 = [
    [0], [1], [2], [3], [0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [2, 0], [0, 0, 0], [0, 0, 1],
    [0, 1, 0], [1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0],
]  # fmt: skip
