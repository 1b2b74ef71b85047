"""The grid world of the notes (Zhao, *Mathematical Foundations of RL*, ch. 1-5), as a
gymnasium environment with its exact model.

Cells are (row, col), 0-indexed, row 0 at the top; state s = row * cols + col. Actions, in
Zhao's order: 0 up, 1 right, 2 down, 3 left, 4 stay (Sutton & Barto's grids use the first
four only). The dynamics are deterministic, and the reward depends on where a move leads:

- moving off the grid: the agent stays put and gets `r_boundary`;
- entering (or staying in) the target: `r_target`; a forbidden cell: `r_forbidden`;
- any other move: `r_other` (Figure 4.1 of Sutton & Barto uses -1 here, Zhao uses 0);
- `jumps` override this: from a jump cell every action leads to its destination with its
  own reward (Sutton & Barto's A -> A' (+10) and B -> B' (+5));
- terminal states (Sutton & Barto's corners, or the target when `terminal_target`) are
  absorbing with reward 0 in the model, and end the episode in `step`.

Forbidden cells can be entered (with the penalty), as in Zhao's book. The exact model is
`P[s, a, s']` and `R[s, a]` (float64 numpy); `next_state[s, a]` and `reward[s, a]` are the
same model in table form.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from deepnotes.rl.common import require_gymnasium

gym = require_gymnasium()

ACTION_NAMES = ("up", "right", "down", "left", "stay")
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1), (0, 0))

Cell = tuple[int, int]


class GridWorld(gym.Env):
    """A deterministic grid world with forbidden cells, a target, jumps and terminals.

    rows, cols: grid size. forbidden: cells with penalty `r_forbidden`. target: the goal cell
    or None. allow_stay: 5 actions (Zhao) or 4 (Sutton & Barto). terminal_target: episodes
    end on reaching the target. terminals: further absorbing cells. jumps: {cell: (dest,
    reward)}. start: reset cell, or "random" for a uniform non-terminal cell. max_steps:
    truncate episodes after this many steps (None: never).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        rows: int = 5,
        cols: int = 5,
        forbidden: Iterable[Cell] = (),
        target: Cell | None = None,
        r_boundary: float = -1.0,
        r_forbidden: float = -1.0,
        r_target: float = 1.0,
        r_other: float = 0.0,
        allow_stay: bool = True,
        terminal_target: bool = False,
        terminals: Iterable[Cell] = (),
        jumps: dict[Cell, tuple[Cell, float]] | None = None,
        start: Cell | str = (0, 0),
        max_steps: int | None = None,
        render_mode: str | None = None,
    ):
        if rows < 1 or cols < 1:
            raise ValueError(f"grid must be at least 1x1, got {rows}x{cols}")
        self.rows, self.cols = rows, cols
        self.forbidden = [tuple(c) for c in forbidden]
        self.target = tuple(target) if target is not None else None
        self.jumps = {tuple(k): (tuple(v[0]), float(v[1])) for k, v in (jumps or {}).items()}
        terms = [tuple(c) for c in terminals]
        if terminal_target:
            if self.target is None:
                raise ValueError("terminal_target=True needs a target cell")
            terms.append(self.target)
        self.terminals = terms
        for c in [
            *self.forbidden,
            *self.terminals,
            *self.jumps,
            *(d for d, _ in self.jumps.values()),
        ]:
            self._check_cell(c)
        if self.target is not None:
            self._check_cell(self.target)
        if start != "random":
            self._check_cell(start)
        self.r_boundary, self.r_forbidden = float(r_boundary), float(r_forbidden)
        self.r_target, self.r_other = float(r_target), float(r_other)
        self.start, self.max_steps, self.render_mode = start, max_steps, render_mode
        self.n_states = rows * cols
        self.n_actions = 5 if allow_stay else 4
        self.observation_space = gym.spaces.Discrete(self.n_states)
        self.action_space = gym.spaces.Discrete(self.n_actions)
        self.next_state, self.reward = self._build_tables()
        self.terminal_mask = np.zeros(self.n_states, bool)
        for c in self.terminals:
            self.terminal_mask[self.state(c)] = True
        self._s, self._t = 0, 0

    # -- geometry -------------------------------------------------------------------------
    def _check_cell(self, c) -> None:
        r, col = c
        if not (0 <= r < self.rows and 0 <= col < self.cols):
            raise ValueError(f"cell {tuple(c)} is outside the {self.rows}x{self.cols} grid")

    def state(self, cell: Cell) -> int:
        return int(cell[0]) * self.cols + int(cell[1])

    def cell(self, s: int) -> Cell:
        return divmod(int(s), self.cols)

    def _build_tables(self) -> tuple[np.ndarray, np.ndarray]:
        nxt = np.zeros((self.n_states, self.n_actions), np.int64)
        rew = np.zeros((self.n_states, self.n_actions), np.float64)
        forb, terms = set(self.forbidden), set(self.terminals)
        for s in range(self.n_states):
            r, c = self.cell(s)
            for a in range(self.n_actions):
                if (r, c) in terms:
                    nxt[s, a], rew[s, a] = s, 0.0  # absorbing
                    continue
                if (r, c) in self.jumps:
                    dest, reward = self.jumps[(r, c)]
                    nxt[s, a], rew[s, a] = self.state(dest), reward
                    continue
                dr, dc = MOVES[a]
                r2, c2 = r + dr, c + dc
                if not (0 <= r2 < self.rows and 0 <= c2 < self.cols):
                    nxt[s, a], rew[s, a] = s, self.r_boundary
                    continue
                nxt[s, a] = self.state((r2, c2))
                if (r2, c2) == self.target:
                    rew[s, a] = self.r_target
                elif (r2, c2) in forb:
                    rew[s, a] = self.r_forbidden
                else:
                    rew[s, a] = self.r_other
        return nxt, rew

    # -- exact model ----------------------------------------------------------------------
    @property
    def P(self) -> np.ndarray:
        """P[s, a, s'] = p(s' | s, a): [S, A, S] float64 (one-hot: the grid is deterministic)."""
        P = np.zeros((self.n_states, self.n_actions, self.n_states))
        s_idx, a_idx = np.meshgrid(
            np.arange(self.n_states), np.arange(self.n_actions), indexing="ij"
        )
        P[s_idx, a_idx, self.next_state] = 1.0
        return P

    @property
    def R(self) -> np.ndarray:
        """R[s, a] = E[r | s, a]: [S, A] float64."""
        return self.reward.copy()

    # -- gymnasium API --------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """options: {"start": cell or state index} overrides the configured start."""
        super().reset(seed=seed)
        start = (options or {}).get("start", self.start)
        if isinstance(start, str):
            if start != "random":
                raise ValueError(f"start must be a cell, a state index or 'random', got {start!r}")
            choices = np.flatnonzero(~self.terminal_mask)
            self._s = int(self.np_random.choice(choices))
        elif isinstance(start, int | np.integer):
            if not 0 <= start < self.n_states:
                raise ValueError(f"start state {start} outside [0, {self.n_states})")
            self._s = int(start)
        else:
            self._check_cell(start)
            self._s = self.state(start)
        self._t = 0
        return self._s, {"cell": self.cell(self._s)}

    def step(self, action):
        a = int(action)
        if not 0 <= a < self.n_actions:
            raise ValueError(f"action {action} outside [0, {self.n_actions})")
        s = self._s
        self._s = int(self.next_state[s, a])
        self._t += 1
        terminated = bool(self.terminal_mask[self._s])
        truncated = self.max_steps is not None and self._t >= self.max_steps
        return (
            self._s,
            float(self.reward[s, a]),
            terminated,
            truncated,
            {"cell": self.cell(self._s)},
        )

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from deepnotes.rl.envs.render import grid_rgb_array

        return grid_rgb_array(self, agent=self._s)


# -- the grids of the books ---------------------------------------------------------------
def zhao_grid(r_forbidden: float = -1.0, r_boundary: float = -1.0, r_target: float = 1.0, **kw):
    """Zhao's 5x5 grid (Figures 3.4, 3.5): target (3, 2); forbidden cells (1, 1), (1, 2),
    (2, 2), (3, 1), (3, 3), (4, 1) (0-indexed; the book's (row, col) minus one); 5 actions."""
    return GridWorld(
        5,
        5,
        forbidden=[(1, 1), (1, 2), (2, 2), (3, 1), (3, 3), (4, 1)],
        target=(3, 2),
        r_boundary=r_boundary,
        r_forbidden=r_forbidden,
        r_target=r_target,
        **kw,
    )


def sutton_barto_grid(**kw):
    """Sutton & Barto's 5x5 grid (Example 3.5, Figures 3.2 and 3.5): from A = (0, 1) every
    action jumps to A' = (4, 1) with +10, from B = (0, 3) to B' = (2, 3) with +5; moving off
    the grid costs -1; other moves 0; four actions."""
    return GridWorld(
        5,
        5,
        jumps={(0, 1): ((4, 1), 10.0), (0, 3): ((2, 3), 5.0)},
        r_boundary=-1.0,
        r_other=0.0,
        allow_stay=False,
        **kw,
    )


def sutton_barto_4x4(**kw):
    """Sutton & Barto's 4x4 grid (Example 4.1, Figure 4.1): terminal corners (0, 0) and
    (3, 3), reward -1 on every transition (off-grid moves stay put), four actions."""
    return GridWorld(
        4,
        4,
        terminals=[(0, 0), (3, 3)],
        r_boundary=-1.0,
        r_other=-1.0,
        allow_stay=False,
        **kw,
    )
