"""DPO against TRL's `DPOTrainer`: same tiny model, same pairs, same loss and metrics.

TRL is optional (`pip install deepnotes[trl]`); without it the test is skipped. Both sides
score the same tokens: TRL tokenizes and collates the pairs, its trainer computes the loss and
logs the metrics; we apply `sequence_logps` to the same model's logits and call `dpo_loss`.

TRL 1.x definitions, and how ours meet them:
- sigmoid and hinge: the same formulas on summed response log-probs;
- ipo: TRL divides each sequence's log-ratio by its number of response tokens before the
  square; ours is fed length-averaged log-probs (`sequence_logps(average=True)`). The
  logged rewards stay beta * summed log-ratios on both sides;
- label smoothing (conservative DPO): TRL 1.x no longer applies label_smoothing to
  loss_type="sigmoid" (it now serves robust DPO and EXO). Its "aot" loss keeps the
  conservative form -(1 - e) log s(beta z) - e log s(-beta z) on batch-sorted margins, which
  for a batch of one pair is exactly conservative DPO: compared pair by pair.
"""

from __future__ import annotations

import pytest
import torch

trl = pytest.importorskip(
    "trl", minversion="1.0", reason="trl >= 1.0 is optional: pip install deepnotes[trl]"
)
datasets = pytest.importorskip("datasets", reason="trl's DPOTrainer needs datasets")
transformers = pytest.importorskip("transformers", reason="the tiny models are transformers Llamas")

from deepnotes.align.dpo import dpo_loss, dpo_metrics  # noqa: E402
from deepnotes.align.logprobs import sequence_logps  # noqa: E402
from tests.helpers import assert_close  # noqa: E402

pytestmark = pytest.mark.slow  # importing trl and building trainers takes ~10 s

V = 40
PAIRS = [  # (prompt, chosen, rejected) as token ids; lengths differ so padding is exercised
    ([5, 6], [7, 8, 9], [10]),
    ([11, 12, 13], [14], [15, 16, 17, 18]),
    ([19], [20, 21], [22, 23]),
    ([24, 25, 26, 27], [28, 29, 30], [31, 32]),
    ([33, 5], [6], [7]),
]


class Logits(torch.nn.Module):
    """tokens [B, T] -> logits [B, T, V] of a transformers causal LM (what our code calls)."""

    def __init__(self, hf: torch.nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.hf(input_ids=tokens).logits


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    # ids 0-2 are the special tokens; their names are no prefix of a word (special tokens
    # are matched in the raw text first)
    vocab = {"<pad>": 0, "<unk>": 1, "<eos>": 2, **{f"w{i}": i for i in range(3, V)}}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>"
    )


def _model(seed: int):
    cfg = transformers.LlamaConfig(
        vocab_size=V,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=3,
    )
    torch.manual_seed(seed)
    return transformers.LlamaForCausalLM(cfg).eval()  # fp32: TRL's log-softmax is fp32 anyway


def _text(ids):
    return " ".join(f"w{i}" for i in ids)


def _trainer(pairs, loss_type, beta, label_smoothing, tmp_path):
    """A DPOTrainer on `pairs` and one collated batch of all of them (chosen rows first)."""
    ds = datasets.Dataset.from_dict(
        {
            "prompt": [_text(p) for p, _, _ in pairs],
            "chosen": [f" {_text(c)} " for _, c, _ in pairs],  # a space before the EOS TRL adds
            "rejected": [f" {_text(r)} " for _, _, r in pairs],
        }
    )
    args = trl.DPOConfig(
        output_dir=str(tmp_path),
        beta=beta,
        loss_type=[loss_type],
        label_smoothing=label_smoothing,
        report_to=[],
        use_cpu=True,
        per_device_train_batch_size=len(pairs),
        disable_tqdm=True,
    )
    tr = trl.DPOTrainer(
        model=_model(0), ref_model=_model(1), args=args, train_dataset=ds,
        processing_class=_tokenizer(),
    )  # fmt: skip
    batch = tr.data_collator([tr.train_dataset[i] for i in range(len(pairs))])
    return tr, batch


def _trl_step(tr, batch):
    """TRL's loss and logged metrics on `batch` (the model in eval mode: no dropout)."""
    tr.model.eval()
    tr._metrics["eval"].clear()
    with torch.no_grad():
        loss = tr.compute_loss(tr.model, batch)
    return loss, {k: v[-1] for k, v in tr._metrics["eval"].items()}


def _ours(tr, batch, average=False):
    """Our [n] log-probs (policy chosen, policy rejected, ref chosen, ref rejected)."""
    tokens, mask = batch["input_ids"], batch["completion_mask"].bool()
    assert tokens.shape[0] % 2 == 0 and not mask[:, 0].any()
    with torch.no_grad():
        pol = sequence_logps(Logits(tr.model), tokens, mask, average=average)
        ref = sequence_logps(Logits(tr.ref_model), tokens, mask, average=average)
    return (*pol.chunk(2), *ref.chunk(2))


def test_trl_collates_the_pairs_we_wrote(tmp_path):
    """The batch TRL builds holds our tokens: prompt, response, EOS (chosen rows first)."""
    _, batch = _trainer(PAIRS, "sigmoid", 0.1, 0.0, tmp_path)
    n = len(PAIRS)
    for i, (p, c, r) in enumerate(PAIRS):
        for row, resp in ((i, c), (n + i, r)):
            ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            assert ids == p + resp + [2]
            assert batch["completion_mask"][row].sum() == len(resp) + 1


@pytest.mark.parametrize("loss_type,beta", [("sigmoid", 0.1), ("hinge", 0.5), ("ipo", 0.3)])
def test_loss_and_metrics_equal_trl(loss_type, beta, tmp_path):
    tr, batch = _trainer(PAIRS, loss_type, beta, 0.0, tmp_path)
    trl_loss, trl_metrics = _trl_step(tr, batch)
    logps = _ours(tr, batch)
    losses, ch, rej = dpo_loss(*logps, beta=beta, loss_type=loss_type)
    if loss_type == "ipo":  # IPO's loss on length-averaged log-probs (rewards stay summed)
        losses, _, _ = dpo_loss(*_ours(tr, batch, average=True), beta=beta, loss_type="ipo")
    assert_close(losses.mean(), trl_loss, what=f"{loss_type} loss")
    ours = dpo_metrics(ch, rej)
    assert 0 < ours["rewards/accuracies"] < 1, "pick pairs whose reward order varies"
    assert ours["rewards/accuracies"] == trl_metrics["rewards/accuracies"]
    # one vector, so that the margin (a difference of close numbers) is judged against the
    # size of the rewards it is the difference of
    keys = ("rewards/chosen", "rewards/rejected", "rewards/margins")
    assert_close(
        torch.tensor([ours[k] for k in keys]),
        torch.tensor([trl_metrics[k] for k in keys]),
        what="rewards",
    )
    # and the log-probs TRL logs are the ones we computed
    assert_close(logps[0].mean(), torch.tensor(trl_metrics["logps/chosen"]), what="logps")
    assert_close(logps[1].mean(), torch.tensor(trl_metrics["logps/rejected"]), what="logps")


@pytest.mark.parametrize("label_smoothing", [0.1, 0.3])
def test_label_smoothing_equals_trl_per_pair(label_smoothing, tmp_path):
    """Conservative DPO against TRL's "aot" at one pair per batch (the same expression)."""
    beta = 0.2
    tr, batch = _trainer(PAIRS, "aot", beta, label_smoothing, tmp_path)
    losses, ch, rej = dpo_loss(*_ours(tr, batch), beta, label_smoothing, "sigmoid")
    unsmoothed, _, _ = dpo_loss(*_ours(tr, batch), beta, 0.0, "sigmoid")
    assert (losses - unsmoothed).abs().min() > 1e-4, "label smoothing changes every loss"
    n = len(PAIRS)
    for i in range(n):
        one = {k: v[[i, n + i]] for k, v in batch.items()}
        trl_loss, trl_metrics = _trl_step(tr, one)
        assert_close(losses[i], trl_loss, what=f"pair {i} loss")
        assert_close(ch[i], torch.tensor(trl_metrics["rewards/chosen"]), what="rewards/chosen")
        assert_close(rej[i], torch.tensor(trl_metrics["rewards/rejected"]), what="rewards")
