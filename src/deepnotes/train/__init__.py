"""Training machinery: optimizers, schedules, precision, checkpoints, distributed, Trainer."""

from deepnotes.train.checkpoint import find_latest, load_checkpoint, save_checkpoint
from deepnotes.train.grad_checkpoint import checkpoint_segments, set_gradient_checkpointing
from deepnotes.train.lm import evaluate_lm, lm_eval_fn, lm_loss
from deepnotes.train.optim import Adam, AdamW, build_optimizer, param_groups
from deepnotes.train.precision import Precision
from deepnotes.train.schedule import WarmupCosine, build_scheduler
from deepnotes.train.trainer import TrainConfig, Trainer, enable_gradient_checkpointing

__all__ = [
    "Adam",
    "AdamW",
    "Precision",
    "TrainConfig",
    "Trainer",
    "WarmupCosine",
    "build_optimizer",
    "build_scheduler",
    "checkpoint_segments",
    "enable_gradient_checkpointing",
    "evaluate_lm",
    "find_latest",
    "lm_eval_fn",
    "lm_loss",
    "load_checkpoint",
    "param_groups",
    "save_checkpoint",
    "set_gradient_checkpointing",
]
