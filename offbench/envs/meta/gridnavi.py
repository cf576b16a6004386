r"""GridNavi: find a hidden goal on a grid (VariBAD, Zintgraf et al. 2020).

Exact semantics (VariBAD's ``environments/navigation/gridworld.py``, default 5x5)
-------------------------------------------------------------------------------
- Cells ``(x, y)`` with ``0 <= x < width``, ``0 <= y < height``; every episode starts at
  ``(0, 0)``. Observation: the agent's cell as ``float32 [x, y]``.
- Actions (``Discrete(5)``): 0 stay, 1 up (y + 1), 2 right (x + 1), 3 down (y - 1), 4 left
  (x - 1). A move off the grid leaves the agent where it is.
- Task: ``{"goal": [x, y]}``, uniform over the *candidate* cells: every cell except the 2x2
  block at the start, ``(0, 0), (0, 1), (1, 0), (1, 1)``; 21 goals on 5x5.
- Reward, after the move: ``+1`` if the agent is on the goal, else ``-0.1``. Reaching the goal
  does not end the episode; staying on it pays ``+1`` per step.
- Episode: ``episode_length`` = 15 steps, then ``truncated=True``. VariBAD's trial (its
  BAMDP) is 4 episodes of one task: ``MetaTrial(env, 4)``.

With the goal known, the best episode walks the Manhattan distance ``d`` to the goal and
stays: ``(L + 1 - d) - 0.1 (d - 1)`` for ``d <= L`` (``16.1 - 1.1 d`` for L = 15;
:func:`known_goal_return`). The exact Bayes-optimal trial return, which has to pay for the
search, is computed in :mod:`offbench.envs.meta.gridnavi_bayes`.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from offbench.envs.meta.api import MetaTaskMixin, Task, check_count, task_field
from offbench.errors import OffbenchError

START = (0, 0)
ACTION_NAMES = ("stay", "up", "right", "down", "left")
ACTION_DELTAS = ((0, 0), (0, 1), (1, 0), (0, -1), (-1, 0))
GOAL_REWARD = 1.0
STEP_REWARD = -0.1
EPISODE_LENGTH = 15
EPISODES_PER_TRIAL = 4  # VariBAD's trial for GridNavi


def check_grid(width: int, height: int) -> tuple[int, int]:
    width, height = check_count(width, "width"), check_count(height, "height")
    if width < 3 and height < 3:
        raise OffbenchError(f"GridNavi needs a cell outside the 2x2 start block: width or height must be at "
                            f"least 3, got {width}x{height}")
    return width, height


def candidate_goals(width: int = 5, height: int = 5) -> list[tuple[int, int]]:
    """The goal cells, in row-major order of ``(x, y)``: all but the 2x2 block at the start."""
    width, height = check_grid(width, height)
    return [(x, y) for x in range(width) for y in range(height) if x >= 2 or y >= 2]


def move(cell: tuple[int, int], action: int, width: int = 5, height: int = 5) -> tuple[int, int]:
    """The cell after ``action`` (clamped to the grid)."""
    dx, dy = ACTION_DELTAS[int(action)]
    return min(max(cell[0] + dx, 0), width - 1), min(max(cell[1] + dy, 0), height - 1)


def known_goal_return(goal: tuple[int, int], episode_length: int = EPISODE_LENGTH) -> float:
    """The best return of one episode when the goal is known (module doc)."""
    d = abs(goal[0] - START[0]) + abs(goal[1] - START[1])
    if d > episode_length:
        return STEP_REWARD * episode_length
    return GOAL_REWARD * (episode_length + 1 - d) + STEP_REWARD * (d - 1)


class GridNaviEnv(MetaTaskMixin, gym.Env):
    """VariBAD's GridNavi (module doc); ``width``, ``height`` and ``episode_length`` as keywords."""

    metadata = {"render_modes": []}
    family = "GridNavi"

    def __init__(self, width: int = 5, height: int = 5, episode_length: int = EPISODE_LENGTH):
        self.width, self.height = check_grid(width, height)
        self.episode_length = check_count(episode_length, "episode_length")
        self.goals = candidate_goals(self.width, self.height)
        self.action_space = gym.spaces.Discrete(len(ACTION_DELTAS))
        self.observation_space = gym.spaces.Box(0.0, float(max(self.width, self.height) - 1), (2,), np.float32)
        self._cell = START
        self._t = 0

    @property
    def max_episode_steps(self) -> int:
        """The episode's time limit (``episode_length``; the environment applies it itself)."""
        return self.episode_length

    # ---------------------------------------------------------------- tasks
    def _draw_task(self, rng: np.random.Generator) -> Task:
        return {"goal": np.array(self.goals[int(rng.integers(len(self.goals)))], dtype=np.int64)}

    def _check_task(self, task: Task) -> Task:
        goal = task_field(task, "goal", (2,), self.family, dtype=np.int64)
        if tuple(goal.tolist()) not in self.goals:
            raise OffbenchError(f"{self.family}: goal {goal.tolist()} is not a candidate cell of the "
                                f"{self.width}x{self.height} grid (any cell outside the 2x2 start block)")
        return {"goal": goal}

    # ---------------------------------------------------------------- Gymnasium
    def _obs(self) -> np.ndarray:
        return np.array(self._cell, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._start_episode_task(options)
        self._cell, self._t = START, 0
        return self._obs(), self._task_info()

    def step(self, action):
        if self._task is None:
            raise OffbenchError(f"{self.family}: call reset() before step()")
        # plain integers are checked directly (Discrete.contains's dtype checks cost as much as the step)
        if not (0 <= action < len(ACTION_DELTAS) if type(action) in (int, np.int64) else self.action_space.contains(action)):
            raise OffbenchError(f"{self.family}: action {action!r} is not one of 0..4 ({', '.join(ACTION_NAMES)})")
        self._cell = move(self._cell, action, self.width, self.height)
        self._t += 1
        at_goal = self._cell == tuple(self._task["goal"].tolist())
        reward = GOAL_REWARD if at_goal else STEP_REWARD
        return self._obs(), reward, False, self._t >= self.episode_length, self._task_info()
