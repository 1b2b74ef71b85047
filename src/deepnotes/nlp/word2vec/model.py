"""Skip-gram and CBOW with negative sampling (Mikolov et al. 2013), in PyTorch.

Two embedding tables: input vectors v (`self.inp`, the word vectors we keep) and output
vectors u (`self.out`). For a center w with context c (skip-gram: one context word; CBOW:
h = mean of the context words' v) and K negatives n_k drawn from unigram^0.75:

    loss = -log sigmoid(u_w . h) - sum_k log sigmoid(-u_{n_k} . h)

Skip-gram uses h = v_c and predicts the center from each context word, as word2vec.c does.
Embeddings are `nn.Embedding(sparse=True)`: a step touches only the rows in the batch. Two
equivalent training paths (tested equal): impl="autograd" backpropagates to sparse
gradients and applies them with plain SGD (`sparse_sgd_`, as `torch.optim.SGD` does);
impl="manual" (default, 1.5-2x faster on CPU) writes the same gradient out and applies it
with `index_add_` (`SGNS.sgd_step`).
The learning rate decays linearly from `lr` to `lr * 1e-4` over all pairs of all epochs
(word2vec's schedule). Initialisation as word2vec.c:
v ~ U(-0.5/d, 0.5/d), u = 0. An `nn.Embedding` row lookup is the one-hot vector times the
table (tests/nlp/test_word2vec.py checks forward and gradient).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepnotes.nlp.word2vec.data import W2VVocab, cbow_windows, skipgram_pairs, subsample


class SGNS(nn.Module):
    """Input and output tables [V, d]; `loss` sums the negative-sampling loss of a batch.

    cbow_update: how CBOW's context words are updated. "word2vec" (word2vec.c and gensim
    with cbow_mean=1): h is the mean of the context vectors, but every context word receives
    the full error dloss/dh. "gradient": the exact gradient of the mean, dloss/dh / count.
    """

    def __init__(
        self,
        V: int,
        d: int,
        *,
        sparse: bool = True,
        cbow_update: Literal["word2vec", "gradient"] = "word2vec",
        generator=None,
    ):
        super().__init__()
        if cbow_update not in ("word2vec", "gradient"):
            raise ValueError(f"cbow_update must be 'word2vec' or 'gradient', got {cbow_update!r}")
        self.cbow_update = cbow_update
        self.inp = nn.Embedding(V, d, sparse=sparse)
        self.out = nn.Embedding(V, d, sparse=sparse)
        with torch.no_grad():
            self.inp.weight.uniform_(-0.5 / d, 0.5 / d, generator=generator)
            self.out.weight.zero_()

    def hidden(self, context: torch.Tensor) -> torch.Tensor:
        """context: int64 [B] (skip-gram) or [B, C] with -1 = empty (CBOW) -> h: [B, d]."""
        if context.dim() == 1:
            return self.inp(context)
        mask = (context >= 0).unsqueeze(-1).to(self.inp.weight.dtype)
        total = (self.inp(context.clamp_min(0)) * mask).sum(1)
        h = total / mask.sum(1).clamp_min(1.0)
        if self.cbow_update == "word2vec":  # value: the mean; gradient: as if h were the sum
            h = h.detach() + (total - total.detach())
        return h

    def loss(self, context: torch.Tensor, center: torch.Tensor, negatives: torch.Tensor):
        """center: int64 [B]; negatives: int64 [B, K] -> summed loss (scalar)."""
        h = self.hidden(context)  # [B, d]
        targets = torch.cat([center[:, None], negatives], dim=1)  # [B, 1 + K]
        logits = torch.bmm(self.out(targets), h.unsqueeze(-1)).squeeze(-1)  # [B, 1 + K]
        sign = torch.ones_like(logits)
        sign[:, 1:] = -1.0
        return -F.logsigmoid(sign * logits).sum()

    @torch.no_grad()
    def sgd_step(
        self, context: torch.Tensor, center: torch.Tensor, negatives: torch.Tensor, lr: float
    ) -> torch.Tensor:
        """One SGD step on `loss` with the gradient written out, updating only the rows in
        the batch (index_add_); the same update as autograd + sparse SGD, without the graph.

        With s = sigmoid(u_t . h) and label l_t (1 for the center, 0 for negatives):
            dloss/du_t = (s - l_t) h,    dloss/dh = sum_t (s - l_t) u_t,
        and for each CBOW context word dloss/dv = dloss/dh / count ("gradient"), or the
        full dloss/dh ("word2vec", see the class doc).
        Returns the batch's summed loss.
        """
        V_in, V_out = self.inp.weight, self.out.weight
        B, K = negatives.shape
        targets = torch.cat([center[:, None], negatives], dim=1).reshape(-1)  # [B(1+K)]
        if context.dim() == 1:
            h = V_in.index_select(0, context)
        else:
            mask = context >= 0
            count = mask.sum(1, keepdim=True).clamp_min(1).to(V_in.dtype)
            rows = V_in.index_select(0, context.clamp_min(0).reshape(-1)).view(*context.shape, -1)
            h = (rows * mask.unsqueeze(-1)).sum(1) / count
        U = V_out.index_select(0, targets).view(B, K + 1, -1)
        logits = (U * h.unsqueeze(1)).sum(-1)  # [B, 1 + K] (faster than bmm on CPU)
        g = torch.sigmoid(logits)  # dloss/dlogits = sigmoid - label
        g[:, 0] -= 1.0
        loss = -(F.logsigmoid(logits[:, 0]).sum() + F.logsigmoid(-logits[:, 1:]).sum())
        grad_h = torch.bmm(g.unsqueeze(1), U).squeeze(1)  # [B, d]
        grad_U = g.unsqueeze(-1) * h.unsqueeze(1)
        V_out.index_add_(0, targets, grad_U.reshape(-1, grad_U.shape[-1]), alpha=-lr)
        if context.dim() == 1:
            V_in.index_add_(0, context, grad_h, alpha=-lr)
        else:
            if self.cbow_update == "gradient":
                grad_h = grad_h / count
            per = grad_h.unsqueeze(1).expand(-1, context.shape[1], -1)
            V_in.index_add_(0, context[mask], per[mask], alpha=-lr)
        return loss


@torch.no_grad()
def sparse_sgd_(params, lr: float) -> None:
    """p <- p - lr * grad for (sparse) gradients, then clear them: `torch.optim.SGD`'s step
    without the optimizer object (whose construction imports torch._dynamo, seconds)."""
    for p in params:
        if p.grad is not None:
            p.add_(p.grad, alpha=-lr)
            p.grad = None


@dataclass
class TrainStats:
    words: int  # corpus words (known to the vocabulary) times epochs
    seconds: float
    pairs: int  # training examples (pairs or CBOW windows) over all epochs
    losses: list[float]  # mean loss per example, per epoch

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds


class Word2Vec:
    """Train word vectors on tokenised sentences.

    arch: "skipgram" or "cbow". Defaults follow gensim's (vector_size 100, window 5,
    min_count 5, sample 1e-3, negative 5, lr 0.025, 5 epochs).
    """

    def __init__(
        self,
        arch: Literal["skipgram", "cbow"] = "skipgram",
        *,
        dim: int = 100,
        window: int = 5,
        min_count: int = 5,
        sample: float = 1e-3,
        negative: int = 5,
        ns_exponent: float = 0.75,
        lr: float = 0.025,
        min_lr_ratio: float = 1e-4,
        epochs: int = 5,
        batch_size: int = 1024,
        impl: Literal["manual", "autograd"] = "manual",
        cbow_update: Literal["word2vec", "gradient"] = "word2vec",
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        if arch not in ("skipgram", "cbow"):
            raise ValueError(f"arch must be 'skipgram' or 'cbow', got {arch!r}")
        for name, v in (("dim", dim), ("window", window), ("negative", negative)):
            if v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        self.arch, self.dim, self.window, self.min_count = arch, dim, window, min_count
        self.sample, self.negative, self.ns_exponent = sample, negative, ns_exponent
        self.lr, self.min_lr_ratio, self.epochs = lr, min_lr_ratio, epochs
        if impl not in ("manual", "autograd"):
            raise ValueError(f"impl must be 'manual' or 'autograd', got {impl!r}")
        self.batch_size, self.device, self.seed = batch_size, torch.device(device), seed
        self.impl, self.cbow_update = impl, cbow_update

    def fit(
        self,
        sentences: Sequence[Sequence[str]],
        progress: Callable | None = None,
    ) -> TrainStats:
        """Build the vocabulary and train. `progress(total=...)` may return a tqdm bar."""
        rng = np.random.default_rng(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        self.vocab = W2VVocab.build(sentences, self.min_count)
        ids, sent = self.vocab.encode(sentences)
        keep_p = self.vocab.keep_probability(self.sample)
        table = torch.from_numpy(self.vocab.noise_table(self.ns_exponent)).to(self.device)
        self.model = SGNS(
            len(self.vocab), self.dim, cbow_update=self.cbow_update, generator=gen
        ).to(self.device)
        # Expected examples per epoch, for the linear decay (word2vec decays by words seen).
        est = self._estimate_examples(ids, sent, keep_p)
        total = max(1, est * self.epochs)
        done, losses, pairs_seen = 0, [], 0
        bar = (
            progress(total=self.epochs * len(ids), desc=f"word2vec {self.arch}")
            if progress
            else None
        )
        t0 = time.perf_counter()
        for epoch in range(self.epochs):
            kid, ksent = subsample(ids, sent, keep_p, rng)
            if self.arch == "skipgram":
                center, context = skipgram_pairs(kid, ksent, self.window, rng)
            else:
                center, context = cbow_windows(kid, ksent, self.window, rng)
            perm = rng.permutation(len(center))
            center_t = torch.from_numpy(center[perm]).to(self.device)
            context_t = torch.from_numpy(context[perm]).to(self.device)
            epoch_loss = 0.0
            for s in range(0, len(center_t), self.batch_size):
                c = center_t[s : s + self.batch_size]
                x = context_t[s : s + self.batch_size]
                slot = torch.randint(len(table), (len(c), self.negative), generator=gen)
                neg = table[slot.to(self.device)]
                lr = self.lr * max(1.0 - min(done / total, 1.0), self.min_lr_ratio)
                if self.impl == "manual":
                    loss = self.model.sgd_step(x, c, neg, lr)
                else:
                    loss = self.model.loss(x, c, neg)
                    loss.backward()
                    sparse_sgd_(self.model.parameters(), lr)
                epoch_loss += float(loss.detach())
                done += len(c)
                if bar is not None and (s // self.batch_size) % 64 == 0:
                    bar.n = epoch * len(ids) + len(ids) * (s + len(c)) // len(center_t)
                    bar.refresh()
            if bar is not None:
                bar.n = (epoch + 1) * len(ids)
                bar.refresh()
            pairs_seen += len(center_t)
            losses.append(epoch_loss / max(len(center_t), 1))
            if not np.isfinite(losses[-1]):
                raise FloatingPointError(
                    f"word2vec diverged (loss {losses[-1]}): a batch sums the updates of a "
                    "repeated word, so small vocabularies need a smaller batch_size or lr"
                )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - t0
        if bar is not None:
            bar.close()
        return TrainStats(len(ids) * self.epochs, seconds, pairs_seen, losses)

    def _estimate_examples(self, ids, sent, keep_p) -> int:
        rng = np.random.default_rng(self.seed + 1)
        kid, ksent = subsample(ids, sent, keep_p, rng)
        if self.arch == "skipgram":
            return len(skipgram_pairs(kid, ksent, self.window, rng)[0])
        return len(cbow_windows(kid, ksent, self.window, rng)[0])

    @property
    def vectors(self) -> np.ndarray:
        """The input vectors, float32 [V, d] (row i = vocab.words[i])."""
        return self.model.inp.weight.detach().float().cpu().numpy()

    def save_word2vec_format(self, path, *, binary: bool = False):
        """Save the vectors in the word2vec C tool's text or binary format (gensim reads it
        with `KeyedVectors.load_word2vec_format(path, binary=...)`)."""
        from deepnotes.nlp.word2vec.io import save_word2vec_format

        return save_word2vec_format(path, self.vocab.words, self.vectors, binary=binary)
