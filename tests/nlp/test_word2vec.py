"""Word vectors: Embedding = one-hot x matrix, the negative-sampling step, the data pipeline
against gensim's, the evaluators against gensim's, and a small training run."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from deepnotes.nlp.word2vec import SGNS, W2VVocab, Word2Vec
from deepnotes.nlp.word2vec.data import cbow_windows, skipgram_pairs
from deepnotes.nlp.word2vec.evaluate import analogy_accuracy, nearest, word_similarity
from deepnotes.nlp.word2vec.model import sparse_sgd_
from tests.helpers import assert_close


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids thread-pool waits on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("V,d", [(10, 4), (63, 60)])
def test_embedding_is_one_hot_times_matrix(V, d, seed):
    """E[ids] == one_hot(ids) @ W, forward and gradient (dense and sparse)."""
    ids = torch.randint(0, V, (37,))
    ids[:3] = ids[3]  # repeated ids: their gradients add up
    for sparse in (False, True):
        emb = torch.nn.Embedding(V, d, sparse=sparse).double()
        W = emb.weight.detach().clone().requires_grad_(True)
        one_hot = torch.nn.functional.one_hot(ids, V).double()  # [N, V]
        g = torch.randn(len(ids), d, dtype=torch.float64)
        (emb(ids) * g).sum().backward()
        ((one_hot @ W) * g).sum().backward()
        assert_close(emb(ids), one_hot @ W, what="forward")
        grad = emb.weight.grad.to_dense() if sparse else emb.weight.grad
        assert_close(grad, W.grad, what="gradient")
        # the gradient of row v is the sum of g over the positions where ids == v
        want = torch.zeros(V, d, dtype=torch.float64).index_add_(0, ids, g)
        assert_close(grad, want, what="gradient by rows")


@pytest.mark.parametrize("cbow", [False, "word2vec", "gradient"])
def test_manual_step_equals_autograd_sparse_sgd(cbow, seed):
    V, d, B, K = 57, 12, 64, 5
    upd = cbow or "word2vec"
    a, b = SGNS(V, d, cbow_update=upd).double(), SGNS(V, d, cbow_update=upd).double()
    with torch.no_grad():
        a.out.weight.normal_()
    b.load_state_dict(a.state_dict())
    if cbow:
        ctx = torch.randint(-1, V, (B, 6))
        ctx[:, 0] = ctx[:, 0].clamp_min(0)
    else:
        ctx = torch.randint(0, V, (B,))
    center, neg = torch.randint(0, V, (B,)), torch.randint(0, V, (B, K))
    loss_a = a.loss(ctx, center, neg)
    loss_a.backward()
    assert a.inp.weight.grad.is_sparse  # sparse gradients on the autograd path
    sparse_sgd_(a.parameters(), 0.07)
    loss_b = b.sgd_step(ctx, center, neg, 0.07)
    assert_close(loss_b, loss_a.detach(), what="loss")
    assert_close(b.inp.weight, a.inp.weight.detach(), what="input vectors")
    assert_close(b.out.weight, a.out.weight.detach(), what="output vectors")


def test_cbow_updates(seed):
    """ "gradient": d loss / d v_i = (d loss / d h) / count; "word2vec": the full d loss / d h."""
    V, d = 30, 5
    ctx = torch.tensor([[3, 4, -1, 8]])
    center, neg = torch.tensor([1]), torch.tensor([[2, 5]])
    grads = {}
    for upd in ("gradient", "word2vec"):
        torch.manual_seed(seed)
        m = SGNS(V, d, cbow_update=upd).double()
        with torch.no_grad():
            m.out.weight.normal_()
        h = m.hidden(ctx)
        assert_close(h[0], m.inp.weight[[3, 4, 8]].mean(0).detach(), what="h is the mean")
        m.loss(ctx, center, neg).backward()
        grads[upd] = m.inp.weight.grad.to_dense()[[3, 4, 8]]
    assert_close(grads["word2vec"], 3 * grads["gradient"])


def test_loss_gradient_is_the_textbook_one(seed):
    """d loss / d v_c = sum_t (sigmoid(u_t . v_c) - label_t) u_t for skip-gram."""
    m = SGNS(20, 6).double()
    with torch.no_grad():
        m.out.weight.normal_()
    c, w, neg = torch.tensor([3]), torch.tensor([7]), torch.tensor([[1, 2, 7]])
    m.loss(c, w, neg).backward()
    v = m.inp.weight[3].detach()
    U = m.out.weight.detach()[[7, 1, 2, 7]]
    label = torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)
    want = ((torch.sigmoid(U @ v) - label)[:, None] * U).sum(0)
    assert_close(m.inp.weight.grad.to_dense()[3], want)


def _corpus(rng: random.Random, n=300):
    words = [f"w{i}" for i in range(30)]
    return [
        rng.choices(words, [1 / (i + 1) for i in range(30)], k=rng.randint(1, 12)) for _ in range(n)
    ]


def test_vocab_subsampling_and_noise_match_gensim(seed):
    gensim = pytest.importorskip("gensim")
    sents = _corpus(random.Random(seed))
    ours = W2VVocab.build(sents, min_count=3)
    g = gensim.models.Word2Vec(min_count=3, sample=1e-2, ns_exponent=0.75, workers=1)
    g.build_vocab(sents)
    assert set(ours.words) == set(g.wv.index_to_key)
    idx = [g.wv.key_to_index[w] for w in ours.words]
    assert ours.counts.tolist() == [g.wv.get_vecattr(w, "count") for w in ours.words]
    keep = np.array([g.wv.get_vecattr(w, "sample_int") for w in ours.words]) / (2**32 - 1)
    np.testing.assert_allclose(ours.keep_probability(1e-2), keep, atol=1e-8)
    p = np.diff(np.concatenate([[0], g.cum_table])) / g.cum_table[-1]
    np.testing.assert_allclose(ours.noise_distribution(0.75), p[idx], atol=1e-8)
    table = ours.noise_table(0.75, size=2**16)
    freq = np.bincount(table, minlength=len(ours)) / len(table)
    np.testing.assert_allclose(freq, ours.noise_distribution(0.75), atol=2 / 2**16)


def test_skipgram_pairs_and_cbow_windows_by_brute_force(seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 9, size=70)
    sent = np.sort(rng.integers(0, 8, size=70))
    window = 3
    c, x = skipgram_pairs(ids, sent, window, np.random.default_rng(seed))
    b = np.random.default_rng(seed).integers(1, window + 1, size=len(ids))
    want = sorted(
        (int(ids[i]), int(ids[j]))
        for i in range(len(ids))
        for j in range(len(ids))
        if i != j and sent[i] == sent[j] and abs(i - j) <= b[i]
    )
    assert sorted(zip(c.tolist(), x.tolist(), strict=True)) == want
    centers, ctx = cbow_windows(ids, sent, window, np.random.default_rng(seed))
    want_c = [
        (
            int(ids[i]),
            sorted(
                int(ids[j])
                for j in range(len(ids))
                if j != i and sent[j] == sent[i] and abs(i - j) <= b[i]
            ),
        )
        for i in range(len(ids))
    ]
    want_c = [w for w in want_c if w[1]]
    got_c = [
        (int(cc), sorted(int(v) for v in row if v >= 0))
        for cc, row in zip(centers, ctx, strict=True)
    ]
    assert got_c == want_c


def test_evaluators_equal_gensims(seed):
    pytest.importorskip("gensim")
    from gensim.models import KeyedVectors
    from gensim.test.utils import datapath

    # vectors for every word of the test sets that the KJV would know, random but fixed
    words = []
    for name in ("wordsim353.tsv", "simlex999.txt"):
        for line in open(datapath(name)):
            if not line.startswith("#"):
                words += [w.lower() for w in line.split("\t")[:2]]
    words = list(dict.fromkeys(words))[:300]
    rng = np.random.default_rng(seed)
    vec = rng.normal(size=(len(words), 20)).astype(np.float32)
    kv = KeyedVectors(20)
    kv.add_vectors(words, vec)
    for name in ("wordsim353.tsv", "simlex999.txt"):
        ours = word_similarity(words, vec, datapath(name))
        _, (rho, _), oov = kv.evaluate_word_pairs(datapath(name))
        assert abs(ours.spearman - rho) < 1e-9
        assert abs((1 - ours.coverage) * 100 - oov) < 1e-9
    # analogies: use the real question words so that some are covered
    qw = list(
        dict.fromkeys(
            w.lower()
            for line in open(datapath("questions-words.txt"))
            if not line.startswith(":")
            for w in line.split()
        )
    )[:150]
    vq = rng.normal(size=(len(qw), 20)).astype(np.float32)
    kq = KeyedVectors(20)
    kq.add_vectors(qw, vq)
    ours = analogy_accuracy(qw, vq, datapath("questions-words.txt"))
    score, _ = kq.evaluate_word_analogies(datapath("questions-words.txt"))
    assert ours.covered > 0 and abs(ours.accuracy - score) < 1e-9
    assert nearest(qw, vq, qw[0], 3) == [w for w, _ in kq.most_similar(qw[0], topn=3)]


def test_training_separates_two_topics(seed):
    """Two vocabularies that never share a sentence end up far apart; each is close inside."""
    rng = random.Random(seed)
    a = [f"a{i}" for i in range(8)]
    b = [f"b{i}" for i in range(8)]
    sents = [rng.choices(a if rng.random() < 0.5 else b, k=8) for _ in range(150)]
    for arch in ("skipgram", "cbow"):
        # 16 words: every word repeats many times per batch, so keep batches small (the
        # summed minibatch update of a row grows with its repeats)
        m = Word2Vec(
            arch,
            dim=16,
            window=3,
            min_count=1,
            sample=0,
            epochs=5,
            lr=0.05,
            batch_size=32,
            seed=seed,
        )
        stats = m.fit(sents)
        assert stats.losses[-1] < stats.losses[0]
        v = m.vectors / np.linalg.norm(m.vectors, axis=1, keepdims=True)
        topic = np.array([w[0] == "a" for w in m.vocab.words])
        sims = v @ v.T
        within = sims[np.ix_(topic, topic)].mean() + sims[np.ix_(~topic, ~topic)].mean()
        across = 2 * sims[np.ix_(topic, ~topic)].mean()
        assert within > across + 0.5, (arch, within, across)


def test_bad_arguments():
    with pytest.raises(ValueError, match="arch"):
        Word2Vec("glove")
    with pytest.raises(ValueError, match="dim"):
        Word2Vec(dim=0)
    with pytest.raises(ValueError, match="min_count"):
        Word2Vec(min_count=5).fit([["a", "b"]])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cbow", [False, True])
def test_cuda_step_equals_cpu_step(cbow, seed):
    """The written-out step on CUDA equals the same step on the CPU (float64), and both
    paths run on the GPU."""
    V, d, B, K = 300, 32, 256, 5
    cpu = SGNS(V, d).double()
    with torch.no_grad():
        cpu.out.weight.normal_()
    gpu = SGNS(V, d).double().cuda()
    gpu.load_state_dict(cpu.state_dict())
    ctx = torch.randint(0, V, (B, 6)) if cbow else torch.randint(0, V, (B,))
    center, neg = torch.randint(0, V, (B,)), torch.randint(0, V, (B, K))
    cpu.sgd_step(ctx, center, neg, 0.05)
    gpu.sgd_step(ctx.cuda(), center.cuda(), neg.cuda(), 0.05)
    assert_close(gpu.inp.weight.cpu(), cpu.inp.weight, what="input vectors")
    assert_close(gpu.out.weight.cpu(), cpu.out.weight, what="output vectors")
    loss = gpu.loss(ctx.cuda(), center.cuda(), neg.cuda())
    loss.backward()
    assert gpu.inp.weight.grad.is_sparse and gpu.inp.weight.grad.is_cuda


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda_separates_topics(seed):
    rng = random.Random(seed)
    a, b = [f"a{i}" for i in range(8)], [f"b{i}" for i in range(8)]
    sents = [rng.choices(a if rng.random() < 0.5 else b, k=8) for _ in range(150)]
    for impl in ("manual", "autograd"):
        m = Word2Vec(dim=16, window=2, min_count=1, sample=0, epochs=4, lr=0.05, batch_size=64,
                     impl=impl, device="cuda", seed=seed)  # fmt: skip
        m.fit(sents)
        v = m.vectors / np.linalg.norm(m.vectors, axis=1, keepdims=True)
        topic = np.array([w[0] == "a" for w in m.vocab.words])
        sims = v @ v.T
        within = sims[np.ix_(topic, topic)].mean() + sims[np.ix_(~topic, ~topic)].mean()
        assert within > 2 * sims[np.ix_(topic, ~topic)].mean() + 0.5
