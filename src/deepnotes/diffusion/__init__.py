"""Score-based and diffusion generative models: SDEs, score matching, samplers, likelihood."""

from deepnotes.diffusion.likelihood import ode_likelihood
from deepnotes.diffusion.samplers import (
    EulerMaruyamaPredictor,
    LangevinCorrector,
    ReverseDiffusionPredictor,
    annealed_langevin_dynamics,
    beta_schedule,
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    inference_timesteps,
    langevin_dynamics,
    ode_sampler,
    pc_sampler,
)
from deepnotes.diffusion.score_matching import dsm_loss, sde_dsm_loss, sliced_score_matching_loss
from deepnotes.diffusion.sde import SDE, VESDE, VPSDE, subVPSDE
from deepnotes.diffusion.toy import GaussianMixture, ScoreNet, sliced_wasserstein

__all__ = [
    "SDE",
    "VESDE",
    "VPSDE",
    "EulerMaruyamaPredictor",
    "GaussianMixture",
    "LangevinCorrector",
    "ReverseDiffusionPredictor",
    "ScoreNet",
    "annealed_langevin_dynamics",
    "beta_schedule",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "dsm_loss",
    "inference_timesteps",
    "langevin_dynamics",
    "ode_likelihood",
    "ode_sampler",
    "pc_sampler",
    "sde_dsm_loss",
    "sliced_score_matching_loss",
    "sliced_wasserstein",
    "subVPSDE",
]
