import pytest
import torch

from deepnotes.models.video import GRUDetector, GRUDetectorConfig, OadTR, OadTRConfig, OadTRStream
from tests.helpers import assert_close


def _model(**kw):
    torch.manual_seed(0)
    cfg = OadTRConfig(size=8, d_model=16, n_heads=2, window=6, future=3, **kw)
    return OadTR(cfg).double().eval()


@pytest.mark.parametrize("task_token", [True, False])
def test_streaming_equals_windowed_batch(task_token):
    m = _model(task_token=task_token)
    frames = torch.randn(13, 3, 8, 8, dtype=torch.float64)
    batch, fut = m.sequence_logits(frames)
    assert batch.shape == (13, 7) and fut.shape == (13, 3, 7)
    s = OadTRStream(m)
    assert_close(torch.stack([s.step(f) for f in frames]), batch)
    s.reset()
    assert_close(s.step(frames[0]), batch[0])


def test_no_leak_from_the_future():
    m = _model()
    frames = torch.randn(20, 3, 8, 8, dtype=torch.float64)
    ref = m.sequence_logits(frames)[0]
    for t in (0, 7, 18):
        changed = frames.clone()
        changed[t + 1 :] = torch.randn_like(changed[t + 1 :])
        out = m.sequence_logits(changed)[0]
        assert torch.equal(out[: t + 1], ref[: t + 1])  # bit for bit
        assert not torch.equal(out[t + 1 :], ref[t + 1 :])


def test_loss_targets_and_task_token():
    m = _model()
    frames, labels = torch.randn(9, 3, 8, 8, dtype=torch.float64), torch.randint(0, 7, (9,))
    loss = m.loss(frames, labels)
    loss.backward()
    assert m.task.grad is not None and m.queries.grad.abs().sum() > 0
    # future targets: logits that put all mass on labels[t+1..t+3] make the future CE zero
    assert _model(task_token=False).task is None
    with pytest.raises(ValueError, match="feats"):
        m.forward_features(torch.randn(1, 5, 16, dtype=torch.float64))


def test_gru_step_equals_sequence_and_is_causal():
    torch.manual_seed(0)
    g = GRUDetector(GRUDetectorConfig(size=8, d_model=8, hidden=12)).double().eval()
    frames = torch.randn(1, 10, 3, 8, 8, dtype=torch.float64)
    seq = g(frames)[0][0]
    h, outs = None, []
    for f in frames[0]:
        o, h = g.step(f, h)
        outs.append(o)
    assert_close(torch.stack(outs), seq)
    changed = frames.clone()
    changed[:, 6:] = 0.5
    assert torch.equal(g(changed)[0][0, :6], seq[:6])


def test_history_context_and_future_targets():
    m = _model()
    frames = torch.randn(15, 3, 8, 8, dtype=torch.float64)
    full = m.sequence_logits(frames)[0]
    for h in (2, 5, 9):  # with >= T-1 frames of history the windows are the full ones
        part = m.sequence_logits(frames, history=h)[0]
        assert part.shape[0] == 15 - h
        if h >= 5:
            assert_close(part, full[h:])
    # the anticipation loss reads labels t+1..t+3 for frame t
    labels = torch.randint(1, 7, (9 + 3,))
    cur, fut = m.sequence_logits(frames[:9])
    big = 1e4
    perfect_fut = torch.full_like(fut, -big)
    for t in range(9):
        for i in range(3):
            perfect_fut[t, i, labels[t + 1 + i]] = big
    m.forward_features = lambda feats: (cur, perfect_fut)
    loss = m.loss(frames[:9], labels)
    ce_cur = torch.nn.functional.cross_entropy(cur, labels[:9])
    assert abs(loss.item() - ce_cur.item()) < 1e-9
    with pytest.raises(ValueError, match="labels must have"):
        m.loss(frames[:9], labels[:5])
