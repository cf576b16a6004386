r"""Point robot navigation, dense and sparse (PEARL, Rakelly et al. 2019, ``rlkit/envs/point_robot.py``).

Exact semantics
---------------
- State and observation: the position ``s`` in the plane (``float32 [x, y]``).
- Action: a displacement ``a`` in ``[-0.1, 0.1]^2`` (``Box(-0.1, 0.1, (2,))``; actions outside
  are clipped to it), ``s' = s + a``.
- Dense (``sparse=False``): goals uniform in ``[-1, 1]^2``; reward ``-||s' - g||_2``; each
  episode starts at a uniformly random position in ``[-1, 1]^2`` (PEARL's ``PointEnv``).
- Sparse (``sparse=True``): goals on the upper unit half-circle, ``g = (cos th, sin th)`` with
  ``th ~ U[0, pi]``; each episode starts at the origin; reward ``1 - ||s' - g||`` within
  ``goal_radius`` = 0.2 of the goal and 0 elsewhere (PEARL's ``SparsePointEnv``, whose
  ``sparsify_rewards`` keeps ``-d`` inside the radius and adds 1). ``info["dense_reward"]``
  carries ``-||s' - g||`` for relabelling.
- Episode: ``episode_length`` = 20 steps (PEARL's ``max_path_length``), then ``truncated``.
- Task: ``{"goal": [gx, gy]}``. PEARL draws 80 training and 20 evaluation tasks once; here
  ``sample_tasks(n, seed)`` draws them, so a task set is a seed.

Known-goal optimum. Every coordinate moves at most 0.1 per step, so after ``t`` steps the
robot is inside the box ``s_0 + [-0.1 t, 0.1 t]^2``. Moving each coordinate towards the goal
by ``min(0.1, |gap|)`` puts it, at every ``t``, on the point of that box nearest the goal
(the coordinate-wise clip), so it minimises every step's distance at once: it maximises the
dense return, and the sparse one (a non-increasing function of the distance at every step).
:func:`oracle_return` evaluates it exactly.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from offbench.envs.meta.api import MetaTaskMixin, Task, check_count, task_field
from offbench.errors import OffbenchError

MAX_STEP = 0.1
GOAL_RADIUS = 0.2
EPISODE_LENGTH = 20


def step_reward(position: np.ndarray, goal: np.ndarray, sparse: bool, goal_radius: float = GOAL_RADIUS) -> float:
    """The reward after moving to ``position`` (module doc)."""
    return distance_reward(float(np.linalg.norm(np.asarray(position, np.float64) - goal)), sparse, goal_radius)


def distance_reward(distance: float, sparse: bool, goal_radius: float = GOAL_RADIUS) -> float:
    """The reward at ``distance`` from the goal (module doc)."""
    if not sparse:
        return -distance
    return 1.0 - distance if distance <= goal_radius else 0.0


def oracle_return(goal, start, *, sparse: bool, episode_length: int = EPISODE_LENGTH,
                  goal_radius: float = GOAL_RADIUS) -> float:
    """The best return of one episode from ``start`` when ``goal`` is known (module doc)."""
    goal, position = np.asarray(goal, np.float64), np.asarray(start, np.float64)
    total = 0.0
    for _ in range(check_count(episode_length, "episode_length")):
        position = position + np.clip(goal - position, -MAX_STEP, MAX_STEP)
        total += step_reward(position, goal, sparse, goal_radius)
    return total


class PointRobotEnv(MetaTaskMixin, gym.Env):
    """PEARL's point robot (module doc)."""

    metadata = {"render_modes": []}

    def __init__(self, sparse: bool = False, episode_length: int = EPISODE_LENGTH, goal_radius: float = GOAL_RADIUS):
        self.sparse = bool(sparse)
        self.family = "SparsePointRobot" if self.sparse else "PointRobot"
        self.episode_length = check_count(episode_length, "episode_length")
        if not (isinstance(goal_radius, (int, float)) and goal_radius > 0):
            raise OffbenchError(f"{self.family}: goal_radius must be positive, got {goal_radius!r}")
        self.goal_radius = float(goal_radius)
        self.action_space = gym.spaces.Box(-MAX_STEP, MAX_STEP, (2,), np.float32)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self._position = np.zeros(2)
        self._t = 0

    @property
    def max_episode_steps(self) -> int:
        """The episode's time limit (``episode_length``; the environment applies it itself)."""
        return self.episode_length

    def _draw_task(self, rng: np.random.Generator) -> Task:
        if self.sparse:
            angle = rng.uniform(0.0, np.pi)
            return {"goal": np.array([np.cos(angle), np.sin(angle)])}
        return {"goal": rng.uniform(-1.0, 1.0, 2)}

    def _check_task(self, task: Task) -> Task:
        goal = task_field(task, "goal", (2,), self.family)
        return {"goal": goal}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._start_episode_task(options)
        self._position = np.zeros(2) if self.sparse else self.np_random.uniform(-1.0, 1.0, 2)
        self._t = 0
        return self._position.astype(np.float32), {**self._task_info(), "start": self._position.copy()}

    def step(self, action):
        if self._task is None:
            raise OffbenchError(f"{self.family}: call reset() before step()")
        action = np.asarray(action, np.float64).reshape(-1)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise OffbenchError(f"{self.family}: an action is 2 finite numbers, got {action.tolist()}")
        # np.minimum/np.maximum: np.clip's result for finite actions, at a fraction of its per-call cost
        self._position = self._position + np.minimum(np.maximum(action, -MAX_STEP), MAX_STEP)
        self._t += 1
        distance = float(np.linalg.norm(self._position - self._task["goal"]))
        reward = distance_reward(distance, self.sparse, self.goal_radius)
        info = {**self._task_info(), "dense_reward": -distance}
        return self._position.astype(np.float32), reward, False, self._t >= self.episode_length, info
