r"""Bernoulli bandits with ``k`` arms and ``n`` pulls (RL², Duan et al. 2016, section 3.1).

Exact semantics
---------------
- Task: ``{"means": p}``, ``p`` in [0, 1]^k; the task distribution draws every ``p_i``
  independently from U[0, 1] (Duan et al. 2016: "sampling each parameter p_i from the uniform
  distribution on [0, 1]").
- Action: ``Discrete(k)``, the arm to pull. Reward: 1 with probability ``p_a``, else 0,
  drawn from the environment's ``np_random`` (``reward = 1[u < p_a]``, ``u ~ U[0, 1)``).
- Observation: the bandit is stateless, so the observation is a constant ``[0.0]``
  (in ``Box(0, 1, (1,))``); a learner sees what it needs through its own (a, r) history, as
  RL²'s recurrent policy does.
- Episode: ``pulls`` pulls, then ``truncated=True`` (the environment's own time limit, as
  StitchGrid's). The episode's return is Table 1's "total reward". RL² calls each pull an
  "episode" of a trial; wrapping the environment as ``MetaTrial(env, 1)`` gives the same
  interaction with the trial end flagged as a termination.

References (random, UCB1, Thompson sampling, Gittins index, and the exact Bayes-optimal value
for short horizons) are in :mod:`offbench.envs.meta.bandit_references`.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from offbench.envs.meta.api import MetaTaskMixin, Task, check_count, task_field
from offbench.errors import OffbenchError


class BernoulliBanditEnv(MetaTaskMixin, gym.Env):
    """``k``-armed Bernoulli bandit, ``pulls`` pulls per episode."""

    metadata = {"render_modes": []}
    family = "BernoulliBandit"

    def __init__(self, arms: int = 10, pulls: int = 100):
        self.arms = check_count(arms, "arms")
        self.pulls = check_count(pulls, "pulls")
        self.action_space = gym.spaces.Discrete(self.arms)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self._t = 0

    @property
    def max_episode_steps(self) -> int:
        """The episode's time limit (``pulls``; the environment applies it itself)."""
        return self.pulls

    # ---------------------------------------------------------------- tasks
    def _draw_task(self, rng: np.random.Generator) -> Task:
        return {"means": rng.uniform(0.0, 1.0, self.arms)}

    def _check_task(self, task: Task) -> Task:
        means = task_field(task, "means", (self.arms,), self.family)
        if np.any(means < 0) or np.any(means > 1):
            raise OffbenchError(f"{self.family}: arm means must lie in [0, 1], got {means.tolist()}")
        return {"means": means}

    # ---------------------------------------------------------------- Gymnasium
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._start_episode_task(options)
        self._t = 0
        return np.zeros(1, np.float32), self._task_info()

    def step(self, action):
        if self._task is None:
            raise OffbenchError(f"{self.family}: call reset() before step()")
        if not self.action_space.contains(action):
            raise OffbenchError(f"{self.family}: action {action!r} is not an arm in 0..{self.arms - 1}")
        reward = float(self.np_random.random() < self._task["means"][int(action)])
        self._t += 1
        return np.zeros(1, np.float32), reward, False, self._t >= self.pulls, self._task_info()
