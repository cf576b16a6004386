r"""HalfCheetahVel: run at a target velocity (Finn et al. 2017 MAML; PEARL, Rakelly et al. 2019).

Exact semantics
---------------
- Dynamics and observation: Gymnasium's ``HalfCheetah-v5`` with its default keywords (17-number
  observation without the x position; ``frame_skip`` 5, ``dt`` 0.05 s).
- Task: ``{"velocity": v}``, ``v ~ U[0, 3]`` (PEARL's ``rlkit/envs/half_cheetah_vel.py``).
- Reward: ``-|v_x - v| - 0.05 ||a||^2`` with ``v_x`` = (x after - x before) / dt, the forward
  velocity Gymnasium reports as ``info["x_velocity"]`` (PEARL: ``forward_reward = -|v_x - v|``,
  ``ctrl_cost = 0.5 * 1e-1 * sum(a^2)``). ``info`` also has ``reward_forward`` and ``reward_ctrl``.
- Episode: ``episode_length`` = 200 steps (PEARL's ``max_path_length``), then ``truncated``;
  the environment never terminates.

The oracle's view (``oracle=True``, id ``offbench/HalfCheetahVelOracle-v0``): the same dynamics and
reward, the target velocity appended to the observation (18 numbers), and a new task at every
reset, drawn from the environment's own seeded stream (``np_random``, after the simulator's reset)
unless ``options["task"]`` names one. One SAC agent trained on it is the family's *per-task oracle*
(an agent told the task: MAML's and PEARL's oracle baselines): evaluated with a held-out task in
``options``, its return is the reference a meta-learner's adapted return is compared with. Because
the task comes from ``np_random``, an online run's exact resume (which restores that stream)
holds for it too.

This module imports MuJoCo; ``offbench.envs.meta`` registers the id without importing it.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

from offbench.envs.meta.api import MetaTaskMixin, Task, check_count, task_field
from offbench.errors import OffbenchError

VELOCITY_RANGE = (0.0, 3.0)
CONTROL_COST = 0.05
EPISODE_LENGTH = 200


class HalfCheetahVelEnv(MetaTaskMixin, HalfCheetahEnv):
    """HalfCheetah-v5 with PEARL's target-velocity reward (module doc)."""

    family = "HalfCheetahVel"

    def __init__(self, episode_length: int = EPISODE_LENGTH, oracle: bool = False, **kwargs):
        self.episode_length = check_count(episode_length, "episode_length")
        if not isinstance(oracle, bool):
            raise OffbenchError(f"{self.family}: oracle must be true or false, got {oracle!r}")
        super().__init__(**kwargs)
        self.oracle = oracle
        if oracle:  # the target velocity joins the observation (module doc)
            size = self.observation_space.shape[0] + 1
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float64)
        self._t = 0

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        return np.append(obs, self._task["velocity"]) if self.oracle else obs

    @property
    def max_episode_steps(self) -> int:
        """The episode's time limit (``episode_length``; the environment applies it itself)."""
        return self.episode_length

    def _draw_task(self, rng: np.random.Generator) -> Task:
        return {"velocity": float(rng.uniform(*VELOCITY_RANGE))}

    def _check_task(self, task: Task) -> Task:
        velocity = float(task_field(task, "velocity", (), self.family))
        if not VELOCITY_RANGE[0] <= velocity <= VELOCITY_RANGE[1]:
            raise OffbenchError(f"{self.family}: target velocity {velocity} is outside {list(VELOCITY_RANGE)}")
        return {"velocity": velocity}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = super().reset(seed=seed)
        if self.oracle and not (options and "task" in options):
            self._task = self._check_task(self._draw_task(self.np_random))  # a new task every episode
        else:
            self._start_episode_task(options)
        self._t = 0
        return self._observe(obs), {**info, **self._task_info()}

    def step(self, action):
        if self._task is None:
            raise OffbenchError(f"{self.family}: call reset() before step()")
        obs, _, _, _, info = super().step(action)
        forward = -abs(info["x_velocity"] - self._task["velocity"])
        control = -CONTROL_COST * float(np.sum(np.square(action)))
        self._t += 1
        info = {**info, "reward_forward": forward, "reward_ctrl": control, **self._task_info()}
        return self._observe(obs), forward + control, False, self._t >= self.episode_length, info
