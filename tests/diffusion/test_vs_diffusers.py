"""One step of ours equals one step of diffusers' schedulers (same model output and noise)."""

from __future__ import annotations

import diffusers
import pytest
import torch

from deepnotes.diffusion.samplers import (
    LangevinCorrector,
    ReverseDiffusionPredictor,
    beta_schedule,
    ddim_step,
    ddpm_step,
    inference_timesteps,
)
from deepnotes.diffusion.sde import VESDE
from tests.helpers import assert_close

TOL = 1e-6


def _noise(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("steps", [None, 50, 37])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("clip", [None, 1.0])
def test_ddpm_step(steps, prediction_type, clip):
    sched = diffusers.DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        prediction_type=prediction_type,
        clip_sample=clip is not None,
        clip_sample_range=clip or 1.0,
    )
    if steps is not None:
        sched.set_timesteps(steps)
    ac = torch.cumprod(1 - beta_schedule("linear", 1000), 0)
    assert_close(ac, sched.alphas_cumprod, tol=1e-7)
    ts = sched.timesteps.tolist()
    for i in [0, 1, len(ts) // 2, len(ts) - 2, len(ts) - 1]:
        t = ts[i]
        t_prev = (
            ts[i + 1] if steps is not None and i + 1 < len(ts) else (t - 1 if steps is None else -1)
        )
        x, out = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
        ref = sched.step(out, t, x, generator=torch.Generator().manual_seed(i)).prev_sample
        ours, _ = ddpm_step(
            out,
            t,
            t_prev,
            x,
            ac,
            _noise(x.shape, i),
            prediction_type=prediction_type,
            clip_sample=clip,
        )
        assert_close(ours, ref, tol=TOL, what=f"t={t}")


@pytest.mark.parametrize("spacing,offset", [("leading", 0), ("leading", 1), ("trailing", 0)])
@pytest.mark.parametrize("eta", [0.0, 0.7])
@pytest.mark.parametrize("schedule", ["linear", "scaled_linear"])
def test_ddim_step(spacing, offset, eta, schedule):
    b0, b1 = (1e-4, 0.02) if schedule == "linear" else (0.00085, 0.012)
    sched = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=b0,
        beta_end=b1,
        beta_schedule=schedule,
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=offset,
        timestep_spacing=spacing,
    )
    sched.set_timesteps(20)
    ours_ts = inference_timesteps(1000, 20, spacing, offset)
    assert ours_ts.tolist() == sched.timesteps.tolist()
    ac = torch.cumprod(1 - beta_schedule(schedule, 1000, b0, b1), 0)
    for t in ours_ts.tolist()[::6]:
        # diffusers' DDIM steps back by T // n whatever the spacing
        t_prev = t - 1000 // 20
        x, out = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
        z = torch.randn(3, 4, 8, 8)
        ref = sched.step(out, t, x, eta=eta, variance_noise=z if eta > 0 else None).prev_sample
        ours, _ = ddim_step(out, t, t_prev, x, ac, eta, z)
        assert_close(ours, ref, tol=TOL, what=f"t={t}")


@pytest.mark.parametrize("n", [10, 37])
def test_score_sde_ve_predictor_and_corrector(n):
    smin, smax = 0.01, 348.0
    sched = diffusers.ScoreSdeVeScheduler(
        num_train_timesteps=2000, snr=0.17, sigma_min=smin, sigma_max=smax
    )
    sched.set_timesteps(n)
    sched.set_sigmas(n)
    sde = VESDE(sigma_min=smin, sigma_max=smax, N=n)
    for i, t in enumerate(sched.timesteps.tolist()):
        if i % 3 and i != n - 1:
            continue
        x, out = 50 * torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6)
        score_fn = lambda x_, t_: out  # noqa: E731 - the same model output for both
        ref = sched.step_pred(out, t, x, generator=torch.Generator().manual_seed(i))
        vec_t = torch.full((2,), t)
        ours, ours_mean = ReverseDiffusionPredictor(sde, score_fn).update(
            x, vec_t, noise=_noise(x.shape, i)
        )
        assert_close(ours_mean, ref.prev_sample_mean, tol=TOL, what=f"predictor mean t={t}")
        assert_close(ours, ref.prev_sample, tol=TOL, what=f"predictor t={t}")
        ref_c = sched.step_correct(
            out, x, generator=torch.Generator().manual_seed(100 + i)
        ).prev_sample
        ours_c, _ = LangevinCorrector(sde, score_fn, snr=0.17, n_steps=1).update(
            x, vec_t, noise=_noise(x.shape, 100 + i)
        )
        assert_close(ours_c, ref_c, tol=TOL, what=f"corrector t={t}")
