"""Medusa: extra decoding heads and tree-verified speculative decoding (Cai et al. 2024).

Head k (k = 1..K) reads the base model's last hidden state h_t and predicts token t + k + 1
(the base head predicts t + 1):
    head_k(h) = W_k · ResBlock(h),   ResBlock(h) = h + SiLU(U h + b),   U = 0 at init,
with W_k copied from the base model's output head, so an untrained head starts as the base
head (Medusa-1, the reference's one ResBlock per head).

Decoding step (batch 1):
1. the base logits and head logits at the last accepted token give a candidate tree
   (`deepnotes.generate.medusa_tree`);
2. one forward pass runs every tree node on top of the KV cache, with the tree mask as an
   additive attention bias and position = sequence end + node depth;
3. `evaluate_posterior` keeps the longest acceptable path: a + 1 new tokens for one forward;
4. the cache keeps the keys/values of the accepted nodes only (moved to the positions they
   now hold); the rest of the tree is rolled back.
At temperature 0 the output equals greedy decoding token for token, whatever the heads.

The tree forward reuses the LM's own blocks (norms, q/k/v and output projections, FFNs) and
needs softmax-attention mixers (`LMConfig.mixer = "softmax"`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.generate.medusa_tree import MedusaTree, dense_tree, evaluate_posterior


class ResBlock(nn.Module):
    """x + SiLU(U x + b) with U zero-initialised (b keeps nn.Linear's default init)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.linear.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.silu(self.linear(x))


class MedusaHeads(nn.Module):
    """K Medusa heads. forward(h: [..., D]) -> logits [K, ..., V] (head k predicts t + k + 1)."""

    def __init__(self, d_model: int, vocab_size: int, n_heads: int = 4, n_layers: int = 1):
        super().__init__()
        if d_model <= 0 or vocab_size <= 0 or n_heads <= 0 or n_layers < 0:
            raise ValueError(
                f"MedusaHeads: need d_model, vocab_size, n_heads > 0 and n_layers >= 0, got "
                f"{d_model}, {vocab_size}, {n_heads}, {n_layers}"
            )
        self.d_model, self.vocab_size, self.n_heads = d_model, vocab_size, n_heads
        self.heads = nn.ModuleList(
            nn.Sequential(
                *[ResBlock(d_model) for _ in range(n_layers)],
                nn.Linear(d_model, vocab_size, bias=False),
            )
            for _ in range(n_heads)
        )

    @torch.no_grad()
    def init_from_head(self, weight: torch.Tensor) -> MedusaHeads:
        """Copy the base model's output head weight [V, D] into every head (as medusa-llm)."""
        for h in self.heads:
            h[-1].weight.copy_(weight)
        return self

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(h) for head in self.heads])


def medusa_loss(
    heads: MedusaHeads, hidden: torch.Tensor, tokens: torch.Tensor, decay: float = 0.8
) -> tuple[torch.Tensor, list[float]]:
    """Medusa-1 loss on a frozen base: sum_k decay^(k-1) CE(head_k(h_t), token_{t+k+1}).

    hidden: [B, T, D] base hidden states of tokens [B, T]. Returns (loss, per-head CE list).
    """
    if hidden.shape[:2] != tokens.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} and tokens {tuple(tokens.shape)} differ")
    if tokens.shape[1] <= heads.n_heads + 1:
        raise ValueError(f"need T > {heads.n_heads + 1} tokens for {heads.n_heads} heads")
    total, per_head = hidden.new_zeros((), dtype=torch.float32), []
    for k, head in enumerate(heads.heads, start=1):
        logits = head(hidden[:, : -(k + 1)])
        ce = F.cross_entropy(logits.float().flatten(0, 1), tokens[:, k + 1 :].flatten())
        total = total + decay ** (k - 1) * ce
        per_head.append(float(ce.detach()))
    return total, per_head


# ---------------------------------------------------------------------------- tree forward
def _rotary_tables(rotary: nn.Module, positions: torch.Tensor, dtype: torch.dtype):
    """cos, sin [N, K] of RotaryEmbedding at arbitrary positions [N] (its own arithmetic)."""
    freqs = positions.float()[:, None] * rotary.inv_freq.to(positions.device)[None, :]
    cos, sin = freqs.cos(), freqs.sin()
    return torch.cat([cos, cos], -1).to(dtype), torch.cat([sin, sin], -1).to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding ("rotate half") of x [B, H, N, K] with tables [N, K]."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def check_model(model: nn.Module) -> None:
    """Raise ValueError unless model is an LM whose blocks all use softmax attention."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(model, "blocks"):
        raise ValueError("Medusa decoding needs a deepnotes.models.lm.LM")
    if cfg.mixer != "softmax":
        raise ValueError(f"Medusa tree attention needs mixer='softmax', got {cfg.mixer!r}")


@torch.no_grad()
def forward_cached(
    model: nn.Module, tokens: torch.Tensor, positions: torch.Tensor, bias: torch.Tensor, state
) -> torch.Tensor:
    """Run new tokens [B, N] over the KV cache in `state` (an LMState); append their keys.

    positions: [N] absolute positions; bias: [N, N] additive mask among the new tokens (they
    see every cached token). Returns the final hidden states [B, N, D] (after the norm).

    Decoding at batch 1 is bound by kernel launches and Python, not by arithmetic, so this
    path keeps the op count low: the rotary tables are computed once for all blocks (every
    block has the same rotary), attention calls SDPA directly (a node always sees itself, so
    no row is fully masked), and one new token needs no mask at all.
    """
    x = embed_positions(model, tokens, positions)
    N, t = tokens.shape[1], state.layers[0].length
    mask = None if N == 1 else torch.cat([bias.new_zeros(N, t), bias], dim=1)
    out = run_blocks(model, x, positions, mask, lambda i, k, v: state.layers[i].append(k, v))
    state.t = state.layers[0].length
    return out


def embed_positions(model: nn.Module, tokens: torch.Tensor, positions: torch.Tensor):
    """Token embeddings [B, N, D] plus the model's absolute positions (learned or sinusoidal)
    at `positions` [N]; rotary positions are applied later, in `run_blocks`."""
    x = model.embed(tokens)
    if model.pos is not None:
        x = x + model.pos.weight[positions]
    elif model.cfg.positions == "sinusoidal":
        x = x + model.pos_table[positions].to(x.dtype)
    return x


def run_blocks(model: nn.Module, x: torch.Tensor, positions: torch.Tensor, mask, kv):
    """The LM's blocks over new tokens x [B, N, D] -> final hidden states (after the norm).

    kv(i, k, v) stores block i's new keys/values [B, H, N, hd] and returns the keys and values
    to attend over ([B, H, S, hd]): a growing cache here, fixed-size buffers for CUDA graphs.
    mask: None or an additive [N, S] mask.
    """
    rotary = model.blocks[0].mixer.rotary
    tables = None if rotary is None else _rotary_tables(rotary, positions, x.dtype)
    for i, block in enumerate(model.blocks):
        mixer = block.mixer
        h = block.norm1(x) if block.pre else x
        q, k, v = (mixer.split_heads(u) for u in mixer.qkv(h).chunk(3, dim=-1))
        if tables is not None:
            q, k = _rotate(q, *tables), _rotate(k, *tables)
        k_all, v_all = kv(i, k, v)
        o = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, scale=mixer.scale)
        y = mixer.out(mixer.merge_heads(o))
        if block.pre:
            x = x + y
            x = x + block.ffn(block.norm2(x))
        else:
            x = block.norm1(x + y)
            x = block.norm2(x + block.ffn(x))
    return x if model.norm is None else model.norm(x)


def keep_nodes(state, start: int, nodes: torch.Tensor) -> None:
    """Roll the caches back to `start` tokens, then append the cached nodes start + nodes."""
    n = nodes.numel()
    for cache in state.layers:
        src = start + nodes
        cache._k[..., start : start + n, :] = cache._k[..., src, :]
        cache._v[..., start : start + n, :] = cache._v[..., src, :]
        cache.length = start + n
    state.t = start + n


def _causal_bias(n: int, dtype, device) -> torch.Tensor:
    allowed = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(allowed, zero, torch.full_like(zero, float("-inf")))


class CachedDecoder:
    """Batch-1 decoding state over the growing KV cache of `model.init_state` (eager).

    The same interface as `medusa_graph.StaticDecoder`: forward(tokens [N], depth [N],
    bias [N, N]) -> (hidden [N, D], logits [N, V], None) at positions length + depth, and
    keep(start, path, n) to roll back to start + path[:n].
    """

    def __init__(self, model: nn.Module) -> None:
        p = model.embed.weight
        self.model = model
        self.state = model.init_state(1, device=p.device, dtype=p.dtype)

    @property
    def length(self) -> int:
        return self.state.layers[0].length

    def forward(self, tokens, depth, bias, graph: bool = True):
        t = self.length
        h = forward_cached(self.model, tokens.view(1, -1), t + depth, bias, self.state)[0]
        return h, self.model.head(h), None

    def keep(self, start: int, path: torch.Tensor, n: int) -> None:
        keep_nodes(self.state, start, path[:n])


def _decoder(model, heads, capacity: int, cuda_graph: bool):
    if not cuda_graph:
        return CachedDecoder(model)
    from deepnotes.generate.medusa_graph import static_decoder  # it imports this module

    return static_decoder(model, capacity, heads)


@dataclass
class MedusaStats:
    """What a Medusa run did: accepted head tokens per step and forward passes."""

    accepted: list[int] = field(default_factory=list)  # a per step (the step emits a + 1)
    forwards: int = 0  # model forward passes, the prefill included
    new_tokens: int = 0  # tokens returned beyond the prompt

    @property
    def mean_accepted_length(self) -> float:
        """Mean tokens per decoding step, a + 1 (1.0 = no speed-up over greedy)."""
        return sum(a + 1 for a in self.accepted) / max(1, len(self.accepted))


@torch.no_grad()
def medusa_generate(
    model: nn.Module,
    heads: MedusaHeads,
    prompt: torch.Tensor,
    max_new_tokens: int,
    *,
    tree: MedusaTree | None = None,
    temperature: float = 0.0,
    posterior_threshold: float = 0.09,
    posterior_alpha: float = 0.3,
    cuda_graph: bool = False,
    step_graph: bool = False,
) -> tuple[torch.Tensor, MedusaStats]:
    """prompt: LongTensor [1, T0] -> (tokens [1, T0 + max_new_tokens], stats).

    tree: default a dense tree with top-k 2 per head. temperature 0 accepts greedily (exactly
    `generate(..., temperature=0)`); temperature > 0 uses typical acceptance with
    p > min(posterior_threshold, posterior_alpha * exp(-H)) (medusa-llm's defaults).
    cuda_graph: decode over fixed-size KV buffers (`medusa_graph.StaticDecoder`), each tree
    forward replayed as a CUDA graph on a GPU (eagerly elsewhere).
    step_graph (with cuda_graph, temperature 0): the whole step (candidates, tree forward,
    acceptance, rollback) as one graph (`medusa_graph.GreedyTreeStep`); the host reads each
    step's result while the next step runs (`medusa_graph.run_tree_steps`).
    """
    check_model(model)
    if prompt.dim() != 2 or prompt.shape[0] != 1 or prompt.shape[1] == 0:
        raise ValueError(f"medusa_generate needs a prompt of shape [1, T0], got {prompt.shape}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if step_graph and not (cuda_graph and temperature == 0):
        raise ValueError("step_graph needs cuda_graph=True and temperature 0 (greedy)")
    device = prompt.device
    tree = (tree or dense_tree([2] * heads.n_heads)).to(device)
    if tree.depth > heads.n_heads:
        raise ValueError(f"tree depth {tree.depth} exceeds the {heads.n_heads} Medusa heads")
    limit = prompt.shape[1] + max_new_tokens + tree.depth
    if model.cfg.positions in ("learned", "sinusoidal") and limit > model.cfg.max_len:
        raise ValueError(
            f"prompt + new tokens + tree depth = {limit} exceeds max_len = {model.cfg.max_len}"
        )
    stats = MedusaStats()
    if max_new_tokens == 0:
        return prompt.clone(), stats
    was_training = model.training
    model.eval()
    try:
        dtype = model.embed.weight.dtype
        T0 = prompt.shape[1]
        dec = _decoder(model, heads, T0 + max_new_tokens + tree.n_nodes, cuda_graph)
        causal = _causal_bias(T0, dtype, device)
        hidden, logits, _ = dec.forward(prompt[0], torch.arange(T0, device=device), causal, False)
        stats.forwards = 1
        base, med = logits[-1], heads(hidden[-1])
        bias, depth = tree.attn_bias(dtype), tree.position_ids
        valid = tree.retrieve_indices >= 0
        retrieve = tree.retrieve_indices.clamp(min=0)
        out: list[torch.Tensor] = []
        n_out = 0
        if step_graph:
            from deepnotes.generate.medusa_graph import run_tree_steps, tree_step

            emitted = run_tree_steps(tree_step(dec, tree), base, med, max_new_tokens, stats)
            n_out = len(emitted)
            out.append(torch.tensor(emitted, dtype=prompt.dtype, device=device))
        while n_out < max_new_tokens:
            tree_tokens, cands = tree.candidates(base, med)
            t = dec.length
            hidden, logits, head_logits = dec.forward(tree_tokens, depth, bias)
            stats.forwards += 1
            best, a = evaluate_posterior(
                logits[retrieve],
                cands,
                temperature,
                posterior_threshold,
                posterior_alpha,
                valid=valid,
            )
            best, a = torch.stack([best, a]).tolist()  # the step's one host sync
            path = retrieve[best]
            out.append(cands[best, : a + 1])
            n_out += a + 1
            stats.accepted.append(a)
            # copies (index_select), read before the next forward: with CUDA graphs the
            # outputs are the graph's buffers
            last = path[a : a + 1]
            base = logits.index_select(0, last)[0]
            if head_logits is None:
                med = heads(hidden.index_select(0, last)[0])
            else:
                med = head_logits.index_select(1, last)[:, 0]
            dec.keep(t, path, a + 1)
        new = torch.cat(out)[:max_new_tokens]
        stats.new_tokens = int(new.numel())
        return torch.cat([prompt, new[None]], dim=1), stats
    finally:
        model.train(was_training)


@torch.no_grad()
def greedy_cached(
    model: nn.Module, prompt: torch.Tensor, max_new_tokens: int, *, cuda_graph: bool = False
) -> torch.Tensor:
    """Greedy decoding through the same cached forward as Medusa (one token per forward).

    prompt [B, T0] -> [B, T0 + max_new_tokens]. The prompt goes in as one forward (not token
    by token), so a batch of B prompts costs 1 + max_new_tokens forwards in all: the speed
    baseline at B = 1, and the generator of self-distillation data at large B.
    cuda_graph (B = 1 only): the fixed-buffer decoder of `medusa_generate(cuda_graph=True)`.
    """
    check_model(model)
    if prompt.dim() != 2 or prompt.shape[1] == 0:
        raise ValueError(f"greedy_cached needs a prompt of shape [B, T0], got {prompt.shape}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    B, T0 = prompt.shape
    limit = T0 + max_new_tokens
    if model.cfg.positions in ("learned", "sinusoidal") and limit > model.cfg.max_len:
        raise ValueError(f"prompt + new tokens = {limit} exceeds max_len = {model.cfg.max_len}")
    if cuda_graph and B != 1:
        raise ValueError(f"greedy_cached(cuda_graph=True) decodes batch 1, got {B} prompts")
    if max_new_tokens == 0:
        return prompt.clone()
    was_training = model.training
    model.eval()
    try:
        device, dtype = prompt.device, model.embed.weight.dtype
        if cuda_graph:
            return _greedy_static(model, prompt, max_new_tokens)
        state = model.init_state(B, device=device, dtype=dtype)
        positions = torch.arange(limit, device=device)
        causal = _causal_bias(T0, dtype, device)
        h = forward_cached(model, prompt, positions[:T0], causal, state)[:, -1]
        one = torch.zeros(1, 1, dtype=dtype, device=device)
        out = []
        for i in range(max_new_tokens):
            nxt = model.head(h).argmax(-1, keepdim=True)  # [B, 1]
            out.append(nxt)
            if i < max_new_tokens - 1:
                pos = positions[T0 + i : T0 + i + 1]
                h = forward_cached(model, nxt, pos, one, state)[:, -1]
        return torch.cat([prompt, *out], dim=1)
    finally:
        model.train(was_training)


def _greedy_static(model: nn.Module, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """greedy_cached at batch 1 over the fixed-buffer decoder (CUDA graphs on a GPU)."""
    device, dtype = prompt.device, model.embed.weight.dtype
    T0 = prompt.shape[1]
    dec = _decoder(model, None, T0 + n, cuda_graph=True)
    causal = _causal_bias(T0, dtype, device)
    _, logits, _ = dec.forward(prompt[0], torch.arange(T0, device=device), causal, False)
    zero = torch.zeros(1, dtype=torch.long, device=device)
    one = torch.zeros(1, 1, dtype=dtype, device=device)
    out = [logits[-1:].argmax(-1)]  # a new tensor, safe from the next replay
    for _ in range(n - 1):
        _, logits, _ = dec.forward(out[-1], zero, one)
        out.append(logits.argmax(-1))
    return torch.cat([prompt, torch.cat(out)[None]], dim=1)
