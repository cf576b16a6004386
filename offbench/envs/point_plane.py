"""A bounded 2-D point plane, reward-free: the skill-discovery suite's smallest environment
(issue 18; DIAYN's and DADS's 2-D navigation experiments, course notes §16).

- State and observation: the position ``(x, y)`` in the box ``[-size, size]^2`` (default 10), float32;
  every episode starts at the origin.
- Action: ``a`` in ``[-1, 1]^2``; the position moves by ``a`` and is clipped to the box.
- Reward: 0 (reward-free). With ``goal=(x, y)`` (the goal-reaching variants
  ``offbench/point-plane-goal-<name>-v0``, :data:`GOALS`) the reward is :class:`GoalReward`'s
  sparse ``1[||s' - goal||_2 <= radius]`` (radius 1) of the position after the step; episodes
  still never terminate, so a reward-free dataset relabelled for a goal keeps its end flags.
- State: :attr:`PointPlaneEnv.state`, the float64 position the observation rounds to float32
  (``offbench.data.collect.simulator_state`` stores it as ``sim_state/state``).
- Episode: ``episode_length`` = 50 steps, then ``truncated``; never terminated.

So a policy can reach any cell of the plane within an episode, the cells of the coverage metric
are 1 x 1 (METRA's measure), and a uniformly random policy's 50-step walk covers about 40 cells.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from offbench.errors import OffbenchError

EPISODE_LENGTH = 50
SUCCESS_RADIUS = 1.0
#: The downstream goals of the default 20 x 20 plane: its corners and edge midpoints, each inset by
#: the success radius so that the whole success disc lies on the plane ("top" is +y).
GOALS: dict[str, tuple[float, float]] = {
    "top-left": (-9.0, 9.0), "top": (0.0, 9.0), "top-right": (9.0, 9.0), "right": (9.0, 0.0),
    "bottom-right": (9.0, -9.0), "bottom": (0.0, -9.0), "bottom-left": (-9.0, -9.0), "left": (-9.0, 0.0),
}


def goal_env_id(name: str) -> str:
    """The Gymnasium id of the goal-reaching plane for goal ``name`` of :data:`GOALS`."""
    return f"offbench/point-plane-goal-{name}-v0"


@dataclass(frozen=True)
class GoalReward:
    """The sparse goal-reaching reward, 1 when the position after a step lies within ``radius`` of
    ``goal`` (Euclidean, float64) and 0 otherwise: per step in [0, 1], as the ExORL/URLB
    point-mass-maze ``reach_*`` tasks' rewards, without their smooth tail outside the target.

    ``rewards(positions)`` is the environment's own reward; calling the object on a
    ``offbench.data.relabel.TransitionView`` recomputes it from stored next states
    (``sim_state/state``), so ``relabel_task`` gives the rewards the goal environment would have paid."""

    goal: tuple[float, float]
    radius: float = SUCCESS_RADIUS

    def rewards(self, positions: np.ndarray) -> np.ndarray:
        """1.0 / 0.0 per position [..., 2] (float64)."""
        diff = np.asarray(positions, np.float64) - np.asarray(self.goal, np.float64)
        return (np.sqrt((diff * diff).sum(-1)) <= self.radius).astype(np.float64)

    def __call__(self, batch: Any) -> np.ndarray:
        batch.require_sim_state("state", f"the goal reward at {self.goal}")
        return self.rewards(batch.next_sim_state["state"])

    def spec(self) -> dict:
        return {"kind": "point_plane_goal", "goal": [float(g) for g in self.goal], "radius": float(self.radius),
                "reward": "1[||s' - goal||_2 <= radius], s' = sim_state/state after the step"}


class PointPlaneEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, size: float = 10.0, episode_length: int = EPISODE_LENGTH,
                 goal: tuple[float, float] | None = None, goal_radius: float = SUCCESS_RADIUS):
        if not size > 0 or int(episode_length) < 1:
            raise OffbenchError(f"PointPlane: size must be > 0 and episode_length >= 1, got {size}, {episode_length}")
        if goal is not None and (np.shape(goal) != (2,) or not np.all(np.abs(goal) <= size) or not goal_radius > 0):
            raise OffbenchError(f"PointPlane: a goal is 2 numbers on the plane [-{size}, {size}]^2 and its radius "
                                f"> 0, got goal={goal}, goal_radius={goal_radius}")
        self.size, self.episode_length = float(size), int(episode_length)
        self.goal_reward = None if goal is None else GoalReward((float(goal[0]), float(goal[1])), float(goal_radius))
        self.observation_space = gym.spaces.Box(-self.size, self.size, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._position = np.zeros(2)
        self._t = 0

    @property
    def max_episode_steps(self) -> int:
        return self.episode_length

    @property
    def state(self) -> np.ndarray:
        """The simulator state: the float64 position (a copy); the observation is its float32 rounding."""
        return self._position.copy()

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
        reward = 0.0 if self.goal_reward is None else float(self.goal_reward.rewards(self._position))
        return self._position.astype(np.float32), reward, False, self._t >= self.episode_length, {}
