"""Direct Preference Optimization (Rafailov et al. 2023), with TRL's definitions.

With h(y) = log πθ(y|x) - log πref(y|x) and the margin z = h(y⁺) - h(y⁻):
- sigmoid (DPO, eq. 7):      L = -log σ(β z)
- conservative DPO:          L = -(1 - ε) log σ(β z) - ε log σ(-β z)   (label_smoothing ε)
- hinge (SLiC):              L = max(0, 1 - β z)
- ipo (Azar et al. 2023):    L = (z - 1/(2β))²   (TRL feeds it length-averaged log-probs)
The implicit rewards are β h(y⁺) and β h(y⁻). At π = πref, z = 0: the sigmoid loss is ln 2.
The policy minimising the population loss under Bradley-Terry preferences with reward r is
π*(y) = πref(y) exp(r(y)/β) / Z.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES = ("sigmoid", "hinge", "ipo")


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    loss_type: str = "sigmoid",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All inputs [B] sequence log-probs -> (losses [B], chosen_rewards [B], rejected_rewards [B]).

    Rewards are detached (they are metrics). Take losses.mean() to train.
    """
    shapes = {
        tuple(t.shape)
        for t in (
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps,
            reference_rejected_logps,
        )
    }
    if len(shapes) != 1:
        raise ValueError(f"dpo_loss: the four log-prob tensors differ in shape: {shapes}")
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"dpo_loss: loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    if beta <= 0:
        raise ValueError(f"dpo_loss: beta must be positive, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"dpo_loss: label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    z = (policy_chosen_logps - policy_rejected_logps) - (
        reference_chosen_logps - reference_rejected_logps
    )
    if loss_type == "sigmoid":
        losses = (
            -F.logsigmoid(beta * z) * (1 - label_smoothing)
            - F.logsigmoid(-beta * z) * label_smoothing
        )
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * z)
    else:
        losses = (z - 1 / (2 * beta)) ** 2
    chosen_rewards = beta * (policy_chosen_logps - reference_chosen_logps).detach()
    rejected_rewards = beta * (policy_rejected_logps - reference_rejected_logps).detach()
    return losses, chosen_rewards, rejected_rewards


def dpo_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    """TRL's logged reward metrics from the [B] implicit rewards."""
    return {
        "rewards/chosen": float(chosen_rewards.mean()),
        "rewards/rejected": float(rejected_rewards.mean()),
        "rewards/accuracies": float((chosen_rewards > rejected_rewards).float().mean()),
        "rewards/margins": float((chosen_rewards - rejected_rewards).mean()),
    }
