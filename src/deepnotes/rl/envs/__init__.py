"""Environments: the grid world of the notes (gymnasium API) and its renderer."""

from deepnotes.rl.envs.gridworld import (
    ACTION_NAMES,
    GridWorld,
    sutton_barto_4x4,
    sutton_barto_grid,
    zhao_grid,
)

__all__ = ["ACTION_NAMES", "GridWorld", "sutton_barto_4x4", "sutton_barto_grid", "zhao_grid"]
