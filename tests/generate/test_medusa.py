"""Medusa: lossless greedy decoding, tree buffers and typical acceptance vs medusa-llm."""

from __future__ import annotations

import itertools

import pytest
import torch

# The peer is installed by scripts/setup.sh (pip install --no-deps medusa-llm); a missing
# peer is a failure, not a skip.
from medusa.model.utils import evaluate_posterior as ref_evaluate_posterior  # noqa: E402
from medusa.model.utils import (
    generate_candidates,  # noqa: E402
    generate_medusa_buffers,  # noqa: E402
)

from deepnotes.generate import generate
from deepnotes.generate.medusa import (
    MedusaHeads,
    forward_cached,
    greedy_cached,
    medusa_generate,
    medusa_loss,
)
from deepnotes.generate.medusa_tree import dense_tree, evaluate_posterior, sparse_tree
from deepnotes.models.lm import LM, LMConfig
from tests.helpers import assert_close


def tiny_lm(positions="learned", norm_position="pre", vocab=37, seed=None):
    cfg = LMConfig(
        vocab_size=vocab,
        d_model=24,
        n_layers=2,
        n_heads=2,
        max_len=128,
        mixer="softmax",
        positions=positions,
        norm_position=norm_position,
    )
    return LM(cfg).double().eval()


@pytest.mark.parametrize("positions", ["learned", "rotary", "sinusoidal"])
def test_forward_cached_matches_full_forward(positions):
    model = tiny_lm(positions)
    tokens = torch.randint(0, 37, (1, 13))
    state = model.init_state(1)
    n = 9
    causal = torch.full((n, n), float("-inf"), dtype=torch.float64).triu(1)
    h1 = forward_cached(model, tokens[:, :n], torch.arange(n), causal, state)
    causal2 = torch.full((4, 4), float("-inf"), dtype=torch.float64).triu(1)
    h2 = forward_cached(model, tokens[:, n:], torch.arange(n, 13), causal2, state)
    assert_close(torch.cat([h1, h2], 1), model.hidden(tokens))


@pytest.mark.parametrize(
    "positions,norm_position,tree",
    [
        ("learned", "pre", None),
        ("rotary", "post", [[0], [1], [0, 0], [0, 1], [1, 0], [0, 0, 0], [2]]),
        ("sinusoidal", "pre", [3, 1, 2]),
    ],
)
def test_lossless_random_heads(positions, norm_position, tree):
    torch.manual_seed(0)
    model = tiny_lm(positions, norm_position)
    heads = MedusaHeads(24, 37, n_heads=3).double()
    for p in heads.parameters():
        torch.nn.init.normal_(p, std=0.3)  # random heads: most proposals get rejected
    if isinstance(tree, list) and isinstance(tree[0], int):
        tree = dense_tree(tree)
    elif tree is not None:
        tree = sparse_tree(tree, topk=3)
    for T0, n in [(1, 11), (6, 23)]:
        prompt = torch.randint(0, 37, (1, T0))
        ours, stats = medusa_generate(model, heads, prompt, n, tree=tree)
        assert torch.equal(ours, generate(model, prompt, n, temperature=0))
        assert stats.forwards == len(stats.accepted) + 1
        assert sum(a + 1 for a in stats.accepted) >= n


def test_lossless_trained_heads_accept_more():
    """Heads trained on the model's own greedy text: same tokens, fewer forwards."""
    torch.manual_seed(1)
    model = tiny_lm(vocab=19)
    for p in model.parameters():
        p.requires_grad_(False)
    heads = MedusaHeads(24, 19, n_heads=3).double().init_from_head(model.head.weight)
    starts = torch.randint(0, 19, (24, 3))
    data = generate(model, starts, 30, temperature=0)
    opt = torch.optim.Adam(heads.parameters(), lr=3e-2)
    hidden = model.hidden(data)
    for _ in range(80):
        loss, per_head = medusa_loss(heads, hidden, data)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert per_head[0] < 0.5
    prompt = starts[:1]  # a prompt whose greedy continuation the heads were trained on
    ours, stats = medusa_generate(model, heads, prompt, 30, tree=dense_tree([2, 2, 2]))
    assert torch.equal(ours, generate(model, prompt, 30, temperature=0))
    assert torch.equal(ours, greedy_cached(model, prompt, 30))
    assert stats.mean_accepted_length > 1.8


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_greedy_cached_batched_equals_generate(positions):
    """A batch of prompts (the self-distillation path) decodes as `generate` does."""
    torch.manual_seed(3)
    model = tiny_lm(positions)
    prompt = torch.randint(0, 37, (5, 4))
    ours = greedy_cached(model, prompt, 17)
    assert ours.shape == (5, 21)
    assert torch.equal(ours, generate(model, prompt, 17, temperature=0))
    assert torch.equal(greedy_cached(model, prompt, 0), prompt)


@pytest.mark.parametrize(
    "positions,norm_position", [("learned", "pre"), ("rotary", "post"), ("sinusoidal", "pre")]
)
def test_fixed_buffer_decoder_is_lossless(positions, norm_position):
    """The CUDA-graph path's fixed-size KV buffers (run eagerly here): the same tokens."""
    torch.manual_seed(4)
    model = tiny_lm(positions, norm_position)
    heads = MedusaHeads(24, 37, n_heads=3).double()
    for p in heads.parameters():
        torch.nn.init.normal_(p, std=0.3)
    for T0, n, tree in [(1, 11, None), (6, 23, sparse_tree([[0], [1], [0, 0], [2]], topk=3))]:
        prompt = torch.randint(0, 37, (1, T0))
        ref = generate(model, prompt, n, temperature=0)
        ours, stats = medusa_generate(model, heads, prompt, n, tree=tree, cuda_graph=True)
        assert torch.equal(ours, ref)
        assert stats.forwards == len(stats.accepted) + 1
        assert torch.equal(greedy_cached(model, prompt, n, cuda_graph=True), ref)
    # the decoder is re-used across calls (its graphs are captured once): still exact
    again, _ = medusa_generate(model, heads, prompt, n, tree=tree, cuda_graph=True)
    assert torch.equal(again, ref)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_one_graph_a_step_is_lossless_and_accepts_the_same(positions):
    """The whole greedy step as one function of fixed shapes (run eagerly here): greedy's
    tokens, and the same accepted lengths as the per-forward graph path, step by step."""
    torch.manual_seed(11)
    model = tiny_lm(positions)
    heads = MedusaHeads(24, 37, n_heads=3).double()
    for p in heads.parameters():
        torch.nn.init.normal_(p, std=0.3)
    trees = [None, sparse_tree([[0], [1], [0, 0], [2], [0, 0, 0]], topk=3)]
    for T0, n in [(1, 11), (6, 23), (6, 23)]:  # the repeat re-uses the decoder and its steps
        prompt = torch.randint(0, 37, (1, T0))
        ref = generate(model, prompt, n, temperature=0)
        for tree in trees:
            ours, st = medusa_generate(
                model, heads, prompt, n, tree=tree, cuda_graph=True, step_graph=True
            )
            _, per_forward = medusa_generate(model, heads, prompt, n, tree=tree, cuda_graph=True)
            assert torch.equal(ours, ref)
            assert st.accepted == per_forward.accepted and st.forwards == per_forward.forwards


def test_steps_read_behind_survive_a_reused_result_buffer():
    """On a GPU the step's result is the graph's own buffer, overwritten by the next replay,
    and the next step runs before the host reads the last: `run_tree_steps` must copy each
    result away first. A fake step that writes every result into one tensor checks it."""
    from types import SimpleNamespace

    from deepnotes.generate.medusa import MedusaStats
    from deepnotes.generate.medusa_graph import run_tree_steps

    accepted = [2, 0, 3, 1, 3, 0, 2]  # a per step; the step emits a + 1 tokens
    buf = torch.zeros(1 + 4, dtype=torch.long)  # [a, path tokens] for a depth-3 tree
    calls = []

    def step(base=None, med=None):
        i = len(calls)
        calls.append(base is not None)
        buf[0] = accepted[i]
        buf[1:] = torch.arange(4) + 10 * i  # step i's tokens: 10 i, 10 i + 1, ...
        return buf

    dec = SimpleNamespace(_t=torch.zeros((), dtype=torch.long), length=5,
                          device=torch.device("cpu"))  # fmt: skip
    fake = type("Step", (), {"__call__": staticmethod(step), "dec": dec,
                             "tree": SimpleNamespace(depth=3)})()  # fmt: skip
    stats = MedusaStats()
    n = 12
    out = run_tree_steps(fake, torch.zeros(3), torch.zeros(2, 3), n, stats)
    expect = [10 * i + j for i, a in enumerate(accepted) for j in range(a + 1)]
    k = next(i for i in range(len(accepted)) if sum(a + 1 for a in accepted[: i + 1]) >= n)
    assert out == expect[: len(out)] and len(out) >= n
    assert stats.accepted == accepted[: k + 1] and len(calls) == k + 1  # none in vain
    assert calls[0] and not any(calls[1:])  # the prompt's logits go to the first step only
    assert dec.length == 5 + len(out)


def test_one_graph_a_step_needs_the_graph_path_and_greedy():
    model = tiny_lm()
    heads = MedusaHeads(24, 37, n_heads=3).double()
    prompt = torch.randint(0, 37, (1, 4))
    with pytest.raises(ValueError, match="step_graph needs cuda_graph=True and temperature 0"):
        medusa_generate(model, heads, prompt, 5, step_graph=True)
    with pytest.raises(ValueError, match="step_graph needs"):
        medusa_generate(model, heads, prompt, 5, cuda_graph=True, step_graph=True, temperature=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_cuda_graph_decoding_is_lossless(positions):
    """Captured and replayed CUDA graphs (fp64, so no near-tie can flip): greedy's tokens."""
    from deepnotes.generate.medusa_graph import static_decoder

    torch.manual_seed(7)
    model = tiny_lm(positions).cuda()
    heads = MedusaHeads(24, 37, n_heads=3).double().cuda()
    for p in heads.parameters():
        torch.nn.init.normal_(p, std=0.3)
    trees = [None, sparse_tree([[0], [1], [0, 0], [2], [0, 0, 0]], topk=3)]
    for T0, n in [(1, 11), (6, 23), (6, 23)]:  # the repeat replays the captured graphs
        prompt = torch.randint(0, 37, (1, T0), device="cuda")
        ref = generate(model, prompt, n, temperature=0)
        assert torch.equal(greedy_cached(model, prompt, n, cuda_graph=True), ref)
        for tree in trees:
            ours, _ = medusa_generate(model, heads, prompt, n, tree=tree, cuda_graph=True)
            assert torch.equal(ours, ref)
            ours, _ = medusa_generate(
                model, heads, prompt, n, tree=tree, cuda_graph=True, step_graph=True
            )
            assert torch.equal(ours, ref)
    dec = static_decoder(model, 6 + 23 + dense_tree([2, 2, 2]).n_nodes, heads)  # the default tree
    assert dec.graphs and dec._forward_graphs and dec._keep_graphs
    assert dec._tree_steps and all(step._graph is not None for step in dec._tree_steps.values())


def test_fixed_buffer_decoder_rolls_back_like_the_cache():
    """After a tree forward and a rollback, the fixed buffers hold the growing cache's keys."""
    from deepnotes.generate.medusa import CachedDecoder
    from deepnotes.generate.medusa_graph import StaticDecoder

    torch.manual_seed(5)
    model = tiny_lm("rotary")
    tree = dense_tree([2, 2, 1])
    bias = tree.attn_bias(torch.float64)
    prompt = torch.randint(0, 37, (7,))
    causal = torch.full((7, 7), float("-inf"), dtype=torch.float64).triu(1)
    nodes = torch.randint(0, 37, (tree.n_nodes,))
    cached, fixed = CachedDecoder(model), StaticDecoder(model, 40)
    outs = []
    with torch.no_grad():
        for dec in (cached, fixed):
            dec.forward(prompt, torch.arange(7), causal)
            dec.forward(nodes, tree.position_ids, bias)
            dec.keep(7, tree.retrieve_indices[1], 3)
            assert dec.length == 10
            outs.append(
                dec.forward(torch.tensor([3]), torch.zeros(1, dtype=torch.long), bias[:1, :1])
            )
    assert_close(outs[1][1], outs[0][1])
    for layer, kb in zip(cached.state.layers, fixed.k, strict=True):
        assert_close(kb[..., :11, :], layer.k)


def _dense_paths(ks):
    return [
        list(p)
        for d in range(1, len(ks) + 1)
        for p in itertools.product(*[range(k) for k in ks[:d]])
    ]


@pytest.mark.parametrize("ks", [[2], [3, 2], [2, 3, 2], [4, 1, 3]])
def test_tree_buffers_equal_medusa_llm(ks):
    ref = generate_medusa_buffers([1, *ks], device="cpu")
    for tree in (dense_tree(ks), sparse_tree(list(reversed(_dense_paths(ks))), topk=ks)):
        assert torch.equal(tree.attn_mask, ref["medusa_attn_mask"][0, 0])
        assert torch.equal(tree.tree_indices, ref["tree_indices"])
        assert torch.equal(tree.position_ids, ref["medusa_position_ids"])
        assert torch.equal(tree.retrieve_indices, ref["retrieve_indices"])


def test_sparse_tree_by_hand():
    tree = sparse_tree([[1], [0], [0, 0], [0, 1], [0, 0, 0]], topk=[2, 2, 1])
    # nodes: 0 root, 1 [0], 2 [1], 3 [0,0], 4 [0,1], 5 [0,0,0]
    assert tree.position_ids.tolist() == [0, 1, 1, 2, 2, 3]
    assert tree.tree_indices.tolist() == [0, 1, 2, 3, 4, 5]
    assert tree.retrieve_indices.tolist() == [[0, 1, 3, 5], [0, 1, 4, -1], [0, 2, -1, -1]]
    assert tree.attn_mask[5].tolist() == [1, 1, 0, 1, 0, 1]
    assert tree.attn_mask[4].tolist() == [1, 1, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="parent"):
        sparse_tree([[0, 0]])
    with pytest.raises(ValueError, match="beyond"):
        sparse_tree([[3]], topk=2)


@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0])
def test_evaluate_posterior_equals_medusa_llm(temperature):
    ks = [3, 2, 2]
    tree = dense_tree(ks)
    V = 11
    for trial in range(20):
        logits = torch.randn(tree.retrieve_indices.shape[0], 4, V) * (1 + trial % 4)
        # candidates that often agree with the argmax, so that acceptance varies
        cands = torch.randint(0, V, logits.shape[:2])
        agree = torch.rand(logits.shape[:2]) < 0.6
        shifted = torch.cat([logits.argmax(-1)[:, :1], logits.argmax(-1)[:, :-1]], 1)
        cands = torch.where(agree, shifted, cands)
        best, a = evaluate_posterior(logits, cands, temperature, 0.09, 0.3)
        rbest, ra = ref_evaluate_posterior(logits[None].squeeze(0), cands, temperature, 0.09, 0.3)
        assert int(a) == int(ra)
        assert int(best) == int(rbest)


@pytest.mark.parametrize("ks", [[2], [3, 2], [4, 1, 3]])
def test_candidates_equal_medusa_llm(ks):
    """One top-k over all heads (k = max k_d) gives the reference's per-head top-k_d tokens."""
    ref_buffers = generate_medusa_buffers([1, *ks], device="cpu")
    tree = dense_tree(ks)
    for _ in range(10):
        base, med = torch.randn(50), torch.randn(len(ks), 50)
        tokens, cands = tree.candidates(base, med)
        _, ref = generate_candidates(med[:, None, None], base[None, None], ks,
                                     ref_buffers["tree_indices"], 0.0)  # fmt: skip
        assert torch.equal(tokens, ref[0])
        ext = torch.cat([tokens, tokens.new_zeros(1)])  # padding holds token 0
        assert torch.equal(cands, ext[tree.retrieve_indices])


@pytest.mark.parametrize("n_layers", [1, 2])
def test_stacked_heads_equal_the_module_and_follow_its_weights(n_layers):
    """The batched heads of the one-graph step equal MedusaHeads, also after the heads'
    weights change in place (a captured graph reads the stacks, so they must follow)."""
    from deepnotes.generate.medusa_graph import StackedHeads

    torch.manual_seed(3)
    heads = MedusaHeads(24, 37, n_heads=3, n_layers=n_layers).double()
    for p in heads.parameters():
        torch.nn.init.normal_(p, std=0.3)
    stacked = StackedHeads(heads)
    h = torch.randn(24, dtype=torch.float64)
    assert_close(stacked(h), heads(h))
    with torch.no_grad():
        for p in heads.parameters():
            p.mul_(-1.5)
    assert_close(stacked.refresh()(h), heads(h))


def test_typical_acceptance_runs_and_heads_shape():
    torch.manual_seed(2)
    model = tiny_lm()
    heads = MedusaHeads(24, 37, n_heads=2).double()
    assert heads(torch.randn(5, 24, dtype=torch.float64)).shape == (2, 5, 37)
    out, stats = medusa_generate(model, heads, torch.tensor([[1, 2, 3]]), 20, temperature=0.8)
    assert out.shape == (1, 23) and stats.new_tokens == 20
    with pytest.raises(ValueError, match="max_len"):
        medusa_generate(model, heads, torch.tensor([[1]]), 200)
    with pytest.raises(ValueError, match="softmax"):
        medusa_generate(
            LM(LMConfig(vocab_size=37, d_model=24, mixer="linear")), heads, torch.tensor([[1]]), 5
        )
