"""A bounded 2-D point plane, reward-free: the skill-discovery suite's smallest environment
(issue 18; DIAYN's and DADS's 2-D navigation experiments, course notes §16).

- State and observation: the position ``(x, y)`` in the box ``[-size, size]^2`` (default 10), float32;
  every episode starts at the origin.
- Action: ``a`` in ``[-1, 1]^2``; the position moves by ``a`` and is clipped to the box.
- Reward: 0 (reward-free; downstream tasks relabel the stored positions, e.g. goal reaching).
- Episode: ``episode_length`` = 50 steps, then ``truncated``; never terminated.

So a policy can reach any cell of the plane within an episode, the cells of the coverage metric
are 1 x 1 (METRA's measure), and a uniformly random policy's 50-step walk covers about 40 cells.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from offbench.errors import OffbenchError


class PointPlaneEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, size: float = 10.0, episode_length: int = 50):
        if not size > 0 or int(episode_length) < 1:
            raise OffbenchError(f"PointPlane: size must be > 0 and episode_length >= 1, got {size}, {episode_length}")
        self.size, self.episode_length = float(size), int(episode_length)
        self.observation_space = gym.spaces.Box(-self.size, self.size, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._position = np.zeros(2)
        self._t = 0

    @property
    def max_episode_steps(self) -> int:
        return self.episode_length

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._position, self._t = np.zeros(2), 0
        return self._position.astype(np.float32), {}

    def step(self, action):
        action = np.asarray(action, np.float64).reshape(-1)
        if action.shape != (2,) or not np.all(np.isfinite(action)):
            raise OffbenchError(f"PointPlane: an action is 2 finite numbers, got {action.tolist()}")
        self._position = np.clip(self._position + np.clip(action, -1.0, 1.0), -self.size, self.size)
        self._t += 1
        return self._position.astype(np.float32), 0.0, False, self._t >= self.episode_length, {}
