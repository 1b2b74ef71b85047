"""Batch-1 decoding over fixed-size KV buffers, replayed as CUDA graphs.

At batch 1 a small LM's decoding step is bound by kernel launches and Python, not by the
GPU's arithmetic: a forward of our 8-layer base is ~300 small kernels. A CUDA graph records
those launches once and replays them with one call. A graph needs fixed shapes and fixed
memory, so here the keys and values live in buffers of a fixed capacity L:

- a forward of N tokens at the current length t writes its keys and values to slots
  t .. t + N - 1 (`index_copy_`) and attends over all L slots with an additive mask
  [N, L]: 0 for the t cached slots, the tree bias for the N new ones, -inf for the rest;
- t, the token ids, their depths and the tree bias are inputs held in fixed tensors, so one
  graph per N serves every step (N = 1 for greedy, N = tree nodes for Medusa);
- the rollback after acceptance copies a fixed D + 1 slots (the chosen root-to-leaf path,
  padding included): slots past the accepted length hold stale keys, which the mask hides
  until they are overwritten.

Everything else (the tree's candidates, acceptance, the output) runs eagerly, as in
`medusa_generate`. The graph also computes the base head's logits and, for Medusa, every
head's logits at every node, so that a step needs no other launch for them.

Off CUDA (or with `cuda_graph=False`) the same fixed-buffer code runs eagerly: that is how
the tests check it on the CPU.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.generate.medusa import check_model, embed_positions, run_blocks
from deepnotes.generate.medusa_tree import MedusaTree


class StaticDecoder:
    """Batch-1 decoding state of `model` in KV buffers of `capacity` slots.

    forward(tokens [N], depth [N], bias [N, N]) runs N new tokens at positions length + depth
    (bias: additive mask among them) and returns (hidden [N, D], logits [N, V], head logits
    [K, N, V] or None). keep(start, path [D + 1], n) rolls back to start + the first n nodes
    of path. On CUDA each distinct N and each path length is captured once and replayed.
    """

    def __init__(
        self,
        model: nn.Module,
        capacity: int,
        heads: nn.Module | None = None,
        cuda_graph: bool | None = None,
    ) -> None:
        check_model(model)
        p = model.embed.weight
        # a weak reference: the decoder cache below is keyed weakly by the model
        self._model = weakref.ref(model)
        self.heads, self.capacity = heads, capacity
        self.device, self.dtype = p.device, p.dtype
        mixer = model.blocks[0].mixer
        shape = (1, mixer.n_heads, capacity, mixer.head_dim)
        # one tensor [2 * n_layers, H, L, hd] for every block's keys and values, so that a
        # rollback is one gather and one scatter, not two per buffer; zeros, not empty: a
        # masked slot gets weight 0, and 0 * NaN would still be NaN
        n = len(model.blocks)
        self._kv = torch.zeros((2 * n, *shape[1:]), device=self.device, dtype=self.dtype)
        self.k = [self._kv[i : i + 1] for i in range(n)]  # [1, H, L, hd] views
        self.v = [self._kv[n + i : n + i + 1] for i in range(n)]
        self._stacked: StackedHeads | None = None
        self.length = 0
        self._t = torch.zeros((), dtype=torch.long, device=self.device)  # length, as a tensor
        self._slots = torch.arange(capacity, device=self.device)
        graphs = self.device.type == "cuda" if cuda_graph is None else cuda_graph
        self.graphs = graphs and self.device.type == "cuda"
        self._forward_graphs: dict[int, tuple] = {}
        self._keep_graphs: dict[int, tuple] = {}
        self._tree_steps: dict[tuple, GreedyTreeStep] = {}  # `tree_step`'s, one per tree

    @property
    def model(self) -> nn.Module:
        return self._model()

    def reset(self) -> StaticDecoder:
        """Empty the cache (buffers and captured graphs are kept)."""
        self.length = 0
        return self

    # ------------------------------------------------------------------ forward
    def _forward(self, tokens, depth, bias, heads: bool):
        """The fixed-shape forward: tokens [1, N], depth [N], bias [N, N]; reads self._t."""
        model = self.model
        N, t = tokens.shape[1], self._t
        positions = t + depth
        x = embed_positions(model, tokens, positions)
        slots = t + self._slots[:N]
        rel = self._slots - t  # [L]: slot index relative to the first new token
        new = (rel >= 0) & (rel < N)
        cached = torch.zeros((), dtype=bias.dtype, device=bias.device)
        outside = torch.full_like(cached, float("-inf"))
        mask = torch.where(
            new, bias[:, rel.clamp(0, N - 1)], torch.where(rel < 0, cached, outside)
        )  # [N, L]

        def kv(i, k, v):  # write the new slots of the fixed buffers, attend over all of them
            self.k[i].index_copy_(2, slots, k)
            self.v[i].index_copy_(2, slots, v)
            return self.k[i], self.v[i]

        hidden = run_blocks(model, x, positions, mask, kv)[0]
        head_logits = self.heads(hidden) if heads and self.heads is not None else None
        return hidden, model.head(hidden), head_logits

    def _capture(self, fn, inputs: dict):
        """Warm fn(**inputs) up on a side stream, then capture it; -> (graph, outputs)."""
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                fn(**inputs)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn(**inputs)
        return graph, out

    @torch.no_grad()
    def forward(
        self, tokens: torch.Tensor, depth: torch.Tensor, bias: torch.Tensor, graph: bool = True
    ):
        """tokens [N], depth [N] (offsets from the current end), bias [N, N] -> outputs.

        With graphs the outputs are the graph's own buffers: read them before the next call.
        graph=False runs eagerly (the prompt, whose length varies, goes that way).
        """
        N = tokens.numel()
        if self.length + N > self.capacity:
            raise ValueError(f"{self.length} + {N} tokens exceed the capacity {self.capacity}")
        self._t.fill_(self.length)
        if not (graph and self.graphs):
            out = self._forward(tokens.view(1, N), depth, bias, heads=True)
        else:
            if N not in self._forward_graphs:
                inputs = {
                    "tokens": torch.zeros(1, N, dtype=torch.long, device=self.device),
                    "depth": torch.zeros(N, dtype=torch.long, device=self.device),
                    "bias": torch.zeros(N, N, dtype=self.dtype, device=self.device),
                    "heads": True,
                }
                self._forward_graphs[N] = (*self._capture(self._forward, inputs), inputs, [None])
            g, out, inputs, last = self._forward_graphs[N]
            inputs["tokens"].copy_(tokens.view(1, N))
            if last[0] is None or last[0][0] is not depth or last[0][1] is not bias:
                inputs["depth"].copy_(depth)  # the tree's buffers: copied when they change
                inputs["bias"].copy_(bias)
                last[0] = (depth, bias)
            g.replay()
        self.length += N
        return out

    # ------------------------------------------------------------------ rollback
    def _keep(self, src):
        dst = self._t + self._slots[: src.numel()]
        self._kv.index_copy_(2, dst, self._kv.index_select(2, src))

    def stacked_heads(self) -> StackedHeads:
        """The Medusa heads as batched products (built once, weights refreshed if changed)."""
        if self._stacked is None:
            self._stacked = StackedHeads(self.heads)
        return self._stacked.refresh()

    @torch.no_grad()
    def keep(self, start: int, path: torch.Tensor, n: int) -> None:
        """Keep slots start + path[:n] as slots start .. start + n - 1; drop the rest.

        path: [D + 1] node indices of the chosen root-to-leaf path (-1 padding allowed past n).
        """
        src = start + path.clamp(min=0)
        self._t.fill_(start)
        if not self.graphs:
            self._keep(src[:n])
        else:
            m = src.numel()  # the whole padded path: fixed shape, stale past n
            if m not in self._keep_graphs:
                # the warm-up runs move slots around: capture on a copy of the cache's state
                saved = self._kv.clone()
                inputs = {"src": torch.zeros(m, dtype=torch.long, device=self.device)}
                self._keep_graphs[m] = (self._capture(self._keep, inputs)[0], inputs)
                self._kv.copy_(saved)
            g, inputs = self._keep_graphs[m]
            inputs["src"].copy_(src)
            g.replay()
        self.length = start + n


class StackedHeads:
    """`MedusaHeads` at one row as batched products: h [D] -> logits [K, V].

    The module runs K ResBlocks and K vocabulary projections one after another (5K + 1
    launches); stacked, each ResBlock layer is one `baddbmm`, a SiLU and an add for all heads,
    and the projections one `bmm`. The stacks are copies of the heads' weights, re-copied
    in place by `refresh` when a parameter has changed (moved or updated in place), so a
    captured graph, which reads the stacks, always sees the current weights.
    """

    def __init__(self, heads: nn.Module) -> None:
        self.heads = heads
        blocks = heads.heads
        self.n_layers = len(blocks[0]) - 1
        self.U = [self._stack(lambda h, i=i: h[i].linear.weight) for i in range(self.n_layers)]
        self.b = [self._stack(lambda h, i=i: h[i].linear.bias) for i in range(self.n_layers)]
        self.W = self._stack(lambda h: h[-1].weight)  # [K, V, D]
        self._seen = self._state()

    def _stack(self, get) -> torch.Tensor:
        return torch.stack([get(h).detach() for h in self.heads.heads])

    def _state(self) -> list[tuple[int, int]]:
        return [(p.data_ptr(), p._version) for p in self.heads.parameters()]

    @torch.no_grad()
    def refresh(self) -> StackedHeads:
        state = self._state()
        if state != self._seen:
            for i in range(self.n_layers):
                self.U[i].copy_(self._stack(lambda h, i=i: h[i].linear.weight))
                self.b[i].copy_(self._stack(lambda h, i=i: h[i].linear.bias))
            self.W.copy_(self._stack(lambda h: h[-1].weight))
            self._seen = state
        return self

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """h [D] -> [K, V], equal to heads(h) up to rounding."""
        x = h.expand(self.W.shape[0], -1)  # [K, D]
        for U, b in zip(self.U, self.b, strict=True):  # ResBlock: x + SiLU(U x + b)
            x = x + F.silu(torch.baddbmm(b.unsqueeze(-1), U, x.unsqueeze(-1)).squeeze(-1))
        return torch.bmm(self.W, x.unsqueeze(-1)).squeeze(-1)


class GreedyTreeStep:
    """One greedy Medusa step of `dec` as a single replay, for a fixed tree.

    Replaying `StaticDecoder.forward` and `keep` as graphs leaves the rest of a step eager:
    the candidates (top-k), the acceptance and the indexing, ~40 small ops launched one by
    one after a host sync, while the GPU waits. Here all of it is one function of fixed
    shapes, captured once: candidates from the base model's next token and the heads'
    logits of the last step (held in `token` [1] and `med` [K, V]), the tree forward,
    greedy acceptance, the next step's token and head logits (the Medusa heads at the
    accepted node only), the rollback of the chosen path, and the length advanced on the
    device (`dec._t`). A call returns [1 + D + 1] long: a (the accepted head tokens), then
    the chosen path's tokens (the step emits the first a + 1), read by the host while the
    next step runs (`run_tree_steps`).
    Greedy only: typical acceptance picks among tied paths, a data-dependent shape.

    At batch 1 on a GPU a replay costs about a microsecond or two per kernel, so the step
    keeps its launches few: one top-k over all heads, the base model's argmax once per node
    (not per path entry), the heads stacked (`StackedHeads`), and the rollback as one
    gather and one scatter over every block's keys and values.
    """

    def __init__(self, dec: StaticDecoder, tree: MedusaTree) -> None:
        if dec.heads is None:
            raise ValueError("GreedyTreeStep needs a StaticDecoder built with Medusa heads")
        self.dec, self.tree = dec, tree
        self.token = torch.zeros(1, device=dec.device, dtype=torch.long)
        self.med = torch.zeros(dec.heads.n_heads, dec.heads.vocab_size, device=dec.device,
                               dtype=dec.dtype)  # fmt: skip
        self.bias, self.depth = tree.attn_bias(dec.dtype), tree.position_ids
        self.retrieve = tree.retrieve_indices.clamp(min=0)
        # [L, D]: the node whose base prediction each path entry 1..D must equal, and
        # whether that entry is a real node (False at padding)
        self.parents = self.retrieve[:, :-1].contiguous()
        self.valid = (tree.retrieve_indices[:, 1:] >= 0).contiguous()
        self._graph: tuple | None = None

    def _step(self) -> torch.Tensor:
        dec = self.dec
        tree_tokens, cands = self.tree.candidates_after(self.token, self.med)
        hidden, logits, _ = dec._forward(
            tree_tokens.view(1, -1), self.depth, self.bias, heads=False
        )
        top = logits.argmax(-1)  # [N]: the base model's next token after each node
        # greedy acceptance (`evaluate_posterior` at temperature 0, from the argmax per node)
        accept = (cands[:, 1:] == top[self.parents]) & self.valid
        a, best = torch.cumprod(accept.int(), dim=1).sum(dim=1).max(0)  # a: [] long
        path = self.retrieve.index_select(0, best.view(1))[0]  # [D + 1] node indices
        last = path.gather(0, a.view(1))  # the last accepted node
        self.token.copy_(top.index_select(0, last))
        self.med.copy_(dec.stacked_heads()(hidden.index_select(0, last)[0]))
        dec._keep(dec._t + path)  # slots t + path -> t .. t + D (stale past a, masked later)
        dec._t.add_(a + 1)
        return torch.cat([a.view(1), cands.index_select(0, best.view(1))[0]])

    @torch.no_grad()
    def __call__(self, base: torch.Tensor | None = None, med: torch.Tensor | None = None):
        """Run one step; base [V] / med [K, V] (the prompt's logits) replace the held
        next token and head logits first.
        The result is the graph's buffer on CUDA: read it before the next call."""
        dec = self.dec
        if dec.length + self.tree.n_nodes > dec.capacity:
            raise ValueError(
                f"{dec.length} + {self.tree.n_nodes} tree nodes exceed the capacity {dec.capacity}"
            )
        if base is not None:
            self.token.copy_(base.argmax(-1, keepdim=True))
        if med is not None:
            self.med.copy_(med)
        if not dec.graphs:
            return self._step()
        dec.stacked_heads()  # re-copied in place if the heads changed since the capture
        if self._graph is None:
            # the warm-up runs advance the state (capturing runs nothing): restore it after
            state = [dec._kv, dec._t, self.token, self.med]
            saved = [b.clone() for b in state]
            self._graph = dec._capture(self._step, {})
            for b, v in zip(state, saved, strict=True):
                b.copy_(v)
        graph, out = self._graph
        graph.replay()
        return out


def run_tree_steps(step: GreedyTreeStep, base, med, max_new_tokens: int, stats) -> list[int]:
    """Decode with `step` until max_new_tokens tokens are out (or a few more); -> the tokens.

    base [V] / med [K, V]: the prompt's last base and head logits. Updates stats (forwards,
    accepted) and the decoder's host length.

    Reading a step's result on the host waits for the GPU, and the GPU would then idle
    while the host reads it and launches the next replay. So on CUDA the next step is
    launched first (the device keeps the length itself): each result is copied to one of
    two pinned host buffers behind its replay and read while the next step runs. A step is
    launched ahead only while the steps in flight cannot finish the output even if each
    accepted every head token, so no step is wasted and the capacity (prompt + new tokens +
    tree nodes) always holds: the decoder's true length before a launch stays below
    prompt + max_new_tokens. Off CUDA the same schedule and buffers run eagerly, which is
    how the tests check it.
    """
    dec = step.dec
    dec._t.fill_(dec.length)  # the step keeps the length on the device from here
    most = step.tree.depth + 1  # tokens a step can emit
    cuda = dec.device.type == "cuda"
    # the step's result is the graph's buffer, overwritten by the next replay: each result is
    # copied behind its replay into one of two host buffers (pinned: the copy is async)
    host = [torch.empty(1 + most, dtype=torch.long, pin_memory=cuda) for _ in range(2)]
    inflight: list[tuple[torch.Tensor, torch.cuda.Event | None]] = []  # launched, unread
    emitted: list[int] = []
    launched = 0

    def launch() -> None:
        nonlocal launched
        first = launched == 0
        out = step(base if first else None, med if first else None)
        buf, event = host[launched % 2], torch.cuda.Event() if cuda else None
        buf.copy_(out, non_blocking=cuda)
        if event is not None:
            event.record(torch.cuda.current_stream(dec.device))
        inflight.append((buf, event))
        launched += 1

    while len(emitted) < max_new_tokens:
        while len(inflight) < 2 and (
            not inflight or len(emitted) + most * len(inflight) < max_new_tokens
        ):
            launch()
        buf, event = inflight.pop(0)
        if event is not None:
            event.synchronize()
        a, *tokens = buf.tolist()
        stats.forwards += 1
        stats.accepted.append(a)
        dec.length += a + 1
        emitted += tokens[: a + 1]
    return emitted


_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def static_decoder(
    model: nn.Module, capacity: int, heads: nn.Module | None = None, cuda_graph: bool = True
) -> StaticDecoder:
    """A reset StaticDecoder for (model, heads), re-used across calls so that its graphs are
    captured once (the first call pays for the capture, later calls only replay)."""
    p = model.embed.weight
    key = (id(heads), capacity, p.dtype, p.device, cuda_graph)
    per_model = _DECODERS.setdefault(model, {})
    dec = per_model.get(key)
    if dec is None or dec.heads is not heads:
        dec = per_model[key] = StaticDecoder(model, capacity, heads, cuda_graph)
    return dec.reset()


def tree_step(dec: StaticDecoder, tree: MedusaTree) -> GreedyTreeStep:
    """dec's GreedyTreeStep for this tree, kept on the decoder so that its graph is captured
    once per tree (dec is itself re-used across calls by `static_decoder`)."""
    key = (  # by content: medusa_generate moves the tree to the device, a new object each call
        tuple(tree.topk),
        tuple(tree.tree_indices.tolist()),
        tuple(map(tuple, tree.retrieve_indices.tolist())),
    )
    if key not in dec._tree_steps:
        dec._tree_steps[key] = GreedyTreeStep(dec, tree)
    return dec._tree_steps[key]
