"""HalfCheetah without reward, and its downstream tasks for reward-free data (issue 18): run forward,
run backward and jump.

``offbench/halfcheetah-reward-free-v0`` is Gymnasium's ``HalfCheetah-v5`` with the x position kept in the
observation (index 0; 18 numbers), 200-step episodes and reward 0: the skill suite's HalfCheetah
(``skills/halfcheetah-v0``) and the environment of the exploratory datasets
``explore/halfcheetah-reward-free/*``, which store the simulator state (``sim_state/qpos``,
``sim_state/qvel``) of every step. The tasks below recompute their rewards from it
(``offbench.data.relabel.relabel_for_task``) and are played in ``offbench/halfcheetah-<task>-v0``, the same
HalfCheetah paying the task's reward.

With ``v = (qpos'[0] - qpos[0]) / dt`` the x velocity over the step (dt = 5 x 0.01 s = 0.05 s, exactly how
``HalfCheetah-v5`` computes its ``x_velocity``), ``z' = qpos'[1]`` the torso's height relative to its
initial height (the ``rootz`` slide joint, 0 before reset noise) and ``a`` the action:

=================  ==================================================  ==============================================
task               reward per step                                     source
=================  ==================================================  ==============================================
``reward-free``    0                                                   (the data's environment)
``run-forward``    ``v - 0.1 |a|^2``                                   ``HalfCheetah-v5``'s own reward
``run-backward``   ``-v - 0.1 |a|^2``                                  ``HalfCheetah-v5`` with
                                                                       ``forward_reward_weight = -1``
``jump``           ``v - 0.1 |a|^2 + 15 max(z', 0)``                   MOPO's halfcheetah-jump (Yu et al., 2020):
                                                                       the running reward plus 15 times the rise of
                                                                       the torso above its initial height
=================  ==================================================  ==============================================

No task terminates; episodes are truncated after 200 steps, as the data's are. The environment computes
the reward from the simulator state before and after its step with the same :class:`CheetahTaskReward`
that relabels the data, so a relabelled dataset holds exactly the rewards its environment pays.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from offbench.errors import OffbenchError

EPISODE_LENGTH = 200  # the skill suite's HalfCheetah episodes (offbench/envs/skill_environments.py)
DT = 0.05  # HalfCheetah-v5: frame_skip 5 x timestep 0.01
CTRL_COST = 0.1  # HalfCheetah-v5's ctrl_cost_weight
JUMP_WEIGHT = 15.0  # MOPO's halfcheetah-jump


@dataclass(frozen=True)
class CheetahTaskReward:
    """``forward_weight * v - ctrl_cost * |a|^2 + jump_weight * max(z', 0)`` (module docstring).

    ``rewards(qpos, next_qpos, actions)`` is the environment's reward on arrays; calling the object on a
    ``offbench.data.relabel.TransitionView`` recomputes it from stored states (``sim_state/qpos``)."""

    forward_weight: float = 1.0
    jump_weight: float = 0.0
    ctrl_cost: float = CTRL_COST
    dt: float = DT

    def rewards(self, qpos: np.ndarray, next_qpos: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Rewards [N] (float64) of transitions with qpos [N, 9] before and after, actions [N, 6]."""
        qpos, next_qpos = np.asarray(qpos, np.float64), np.asarray(next_qpos, np.float64)
        actions = np.asarray(actions, np.float64).reshape(len(qpos), -1)
        velocity = (next_qpos[:, 0] - qpos[:, 0]) / self.dt
        return (self.forward_weight * velocity - self.ctrl_cost * np.sum(actions ** 2, axis=1)
                + self.jump_weight * np.maximum(next_qpos[:, 1], 0.0))

    def __call__(self, batch: Any) -> np.ndarray:
        batch.require_sim_state("qpos", f"the HalfCheetah task reward {self.spec()['reward']}")
        return self.rewards(batch.sim_state["qpos"], batch.next_sim_state["qpos"], batch.actions)

    def spec(self) -> dict:
        terms = [f"{self.forward_weight:g} v"] if self.forward_weight else []
        if self.ctrl_cost:
            terms.append(f"- {self.ctrl_cost:g} |a|^2")
        if self.jump_weight:
            terms.append(f"+ {self.jump_weight:g} max(z', 0)")
        terms = terms or ["0"]
        return {"kind": "halfcheetah_task", "forward_weight": self.forward_weight, "jump_weight": self.jump_weight,
                "ctrl_cost": self.ctrl_cost, "dt": self.dt,
                "reward": " ".join(terms) + ", v = (qpos'[0] - qpos[0]) / dt, z' = qpos'[1] (sim_state/qpos)"}


TASKS: dict[str, CheetahTaskReward] = {
    "reward-free": CheetahTaskReward(forward_weight=0.0, ctrl_cost=0.0),
    "run-forward": CheetahTaskReward(forward_weight=1.0),
    "run-backward": CheetahTaskReward(forward_weight=-1.0),
    "jump": CheetahTaskReward(forward_weight=1.0, jump_weight=JUMP_WEIGHT),
}


def env_id(task: str) -> str:
    """The Gymnasium id that plays ``task``: ``offbench/halfcheetah-<task>-v0``."""
    return f"offbench/halfcheetah-{task}-v0"


class CheetahTaskEnv(gym.Wrapper):
    """HalfCheetah (x position in the observation) paying a :class:`CheetahTaskReward`; the inner
    environment's reward and its ``info`` terms are kept in ``info`` (``x_velocity``, ...)."""

    def __init__(self, env: gym.Env, reward: CheetahTaskReward):
        super().__init__(env)
        self.task_reward = reward

    def step(self, action):
        qpos = np.array(self.env.unwrapped.data.qpos, dtype=np.float64)
        obs, _, terminated, truncated, info = self.env.step(action)
        next_qpos = np.array(self.env.unwrapped.data.qpos, dtype=np.float64)
        reward = float(self.task_reward.rewards(qpos[None], next_qpos[None], np.asarray(action)[None])[0])
        return obs, reward, terminated, truncated, info


def make_cheetah_task_env(task: str = "run-forward", **kwargs) -> CheetahTaskEnv:
    """The entry point of ``offbench/halfcheetah-<task>-v0`` (the time limit is the registration's)."""
    if task not in TASKS:
        raise OffbenchError(f"unknown HalfCheetah task {task!r}: use one of {sorted(TASKS)}")
    from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv

    inner = HalfCheetahEnv(exclude_current_positions_from_observation=False, **kwargs)
    return CheetahTaskEnv(inner, TASKS[task])


def register_envs() -> None:
    from gymnasium.envs.registration import register, registry

    for task in TASKS:
        if env_id(task) not in registry:
            register(id=env_id(task), entry_point="offbench.envs.cheetah_tasks:make_cheetah_task_env",
                     kwargs={"task": task}, max_episode_steps=EPISODE_LENGTH)
