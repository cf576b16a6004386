"""The task registry: what offbench knows about each benchmark task, in one place.

A :class:`Task` names a task (the ``<name>`` in dataset ids ``suite/<name>/...``), the
Gymnasium id and keyword arguments that build its environment, the suites it belongs to,
and its TRUE termination function written on observations. Model-based offline RL (MOPO,
COMBO, MOReL) needs that function during model rollouts: a learned dynamics model predicts
the next observation, and the rollout must stop where the real environment would. Leaving
it out is a known cause of MOPO failing to reproduce (REFERENCE.md, section 4).

- ``hopper``: ``Hopper-v5``, suite ``locomotion``; terminates when unhealthy.
- ``halfcheetah``: ``HalfCheetah-v5``, suite ``locomotion``; never terminates.
- ``walker2d``: ``Walker2d-v5``, suite ``locomotion``; terminates when unhealthy.
- ``pendulum``: ``Pendulum-v1``, suite ``lite``; never terminates.
- ``invdoublependulum``: ``InvertedDoublePendulum-v5``, suite ``lite``; terminates when the
  tip of the second pole is at height 1 or lower.
- ``reacher``: ``Reacher-v5``, suite ``lite``; never terminates.
- ``stitchgrid``: ``offbench/StitchGrid-v0`` (also ``offbench/StitchGridOneHot-v0``), suite
  ``lite``; terminates on entering the goal.
- ``pointmaze-{medium,large,giant,teleport}``: ``offbench/pointmaze-<maze>-v0`` (also OGBench's
  ``pointmaze-<maze>-v0``), suite ``goal``; terminates at the goal (within 1.0). Its Dict
  observations are taken flattened, ``[achieved_goal, desired_goal, observation]`` (6 numbers).
- ``point-plane``: ``offbench/PointPlane-v0``, suite ``explore`` (the reward-free exploratory
  datasets ``explore/point-plane/*``); reward 0, never terminates.
- ``point-plane-goal-<name>``: ``offbench/point-plane-goal-<name>-v0`` for the eight goals of
  ``offbench.envs.point_plane.GOALS`` (corners and edge midpoints of the plane, inset by 1), suite
  ``explore``: the downstream tasks the exploratory data are relabelled for. Reward
  ``1[||s' - goal|| <= 1]`` per step (``point_plane.GoalReward``), never terminates, 50 steps; their
  ``relabel_reward`` recomputes it from a dataset's stored states (``relabel_for_task``).
- ``pointmaze-medium-reward-free``: ``offbench/PointMazeRewardFree-v0`` (maze ``medium``, 200-step
  episodes), suite ``explore`` (the exploratory datasets ``explore/pointmaze-medium-reward-free/*``):
  the (x, y) position as observation, reward 0, never terminates.
- ``pointmaze-medium-goal-{near,far}``: ``offbench/pointmaze-medium-goal-<name>-v0``, suite ``explore``:
  the same maze paying ``1[||xy' - g|| <= 1]`` per step at a goal cell's centre g
  (``maze_tasks.MazeGoalReward``, recomputed from the stored ``sim_state/qpos``).
- ``halfcheetah-reward-free``: ``offbench/halfcheetah-reward-free-v0``, suite ``explore`` (the
  exploratory datasets ``explore/halfcheetah-reward-free/*``): HalfCheetah with the x position in the
  observation (18 numbers), reward 0, 200 steps, never terminates.
- ``halfcheetah-{run-forward,run-backward,jump}``: ``offbench/halfcheetah-<task>-v0``, suite
  ``explore``: the same HalfCheetah paying the downstream tasks' rewards that the exploratory data are
  relabelled for, recomputed from the stored ``sim_state/qpos`` (``cheetah_tasks.CheetahTaskReward``).

Each rule is transcribed from the installed Gymnasium 1.4 source (the file is cited next to
the rule) for the DEFAULT keyword arguments, in particular the default v5 observation
(``exclude_current_positions_from_observation=True``). ``Task.make(**overrides)`` accepts any
keyword, but ``is_terminal`` describes the default task: an override that changes the
observation layout or the health ranges makes it wrong for that env.

``is_terminal`` is written once against the operations NumPy arrays and torch tensors share
(comparisons, ``&``/``~``, indexing, ``.all(-1)``, ``.argmax(-1)``; two small helpers,
``_all_false`` and ``_constant_like``, make constants in the input's namespace and on its
device), so it takes either and answers in kind: a bool ``np.ndarray`` for NumPy (or list)
input, a bool ``torch.Tensor`` on the input's device for torch input. Torch is never
imported by this module.

Where the observation cannot decide termination exactly (the observation is a lossy view of
the simulator state), the rule says so and what it uses instead; see the Hopper velocity
check and the InvertedDoublePendulum tip height below.
"""
from __future__ import annotations

import difflib
import math
import sys
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

import gymnasium as gym
import numpy as np

from offbench.envs.cheetah_tasks import EPISODE_LENGTH as CHEETAH_TASK_MAX_EPISODE_STEPS
from offbench.envs.cheetah_tasks import TASKS as CHEETAH_TASKS
from offbench.envs.cheetah_tasks import env_id as cheetah_task_env_id
from offbench.envs.gridworld import GOAL_REWARD, HORIZON, STEP_COST, default_mdp
from offbench.envs.maze_tasks import EPISODE_LENGTH as MAZE_TASK_MAX_EPISODE_STEPS
from offbench.envs.maze_tasks import GOALS as MAZE_GOALS
from offbench.envs.maze_tasks import env_id as maze_goal_env_id
from offbench.envs.pointmaze import EVAL_MAX_EPISODE_STEPS as POINTMAZE_MAX_EPISODE_STEPS
from offbench.envs.pointmaze import MAZES as POINTMAZES
from offbench.envs.pointmaze import SUCCESS_RADIUS as POINTMAZE_SUCCESS_RADIUS
from offbench.envs.pointmaze import env_id as pointmaze_env_id
from offbench.envs.point_plane import GOALS as POINT_PLANE_GOALS
from offbench.envs.point_plane import EPISODE_LENGTH as POINT_PLANE_MAX_EPISODE_STEPS
from offbench.envs.point_plane import GoalReward
from offbench.envs.point_plane import goal_env_id as point_plane_goal_env_id
from offbench.errors import OffbenchError

__all__ = ["Task", "TASKS", "get_task", "task_for_dataset"]


# ---------------------------------------------------------------------- array-API helpers
def _namespace(x: Any):
    """The module whose functions go with ``x``: ``torch`` for tensors, else ``numpy``."""
    torch = sys.modules.get("torch")  # a tensor can only exist if torch was imported already
    if torch is not None and isinstance(x, torch.Tensor):
        return torch
    return np


def _is_floating(x: Any) -> bool:
    dtype = x.dtype
    return bool(dtype.is_floating_point) if hasattr(dtype, "is_floating_point") else np.issubdtype(dtype, np.floating)


def _all_false(x: Any, shape: tuple[int, ...]):
    """A bool array of ``shape`` in ``x``'s namespace and on its device."""
    xp = _namespace(x)
    if xp is np:  # NumPy before 2.0 has neither `np.bool` nor `device=`
        return np.zeros(shape, dtype=bool)
    return xp.zeros(shape, dtype=xp.bool, device=x.device)


def _constant_like(x: Any, values: np.ndarray):
    """``values`` (a NumPy constant) in ``x``'s namespace and on its device."""
    xp = _namespace(x)
    # A copy: constants may be read-only arrays, which torch warns about when wrapping them.
    return values if xp is np else xp.asarray(values.copy(), device=x.device)


def _inside(x: Any, low: float, high: float):
    """``low < x < high`` elementwise: the open interval, exactly as Gymnasium tests health.

    NaN is outside (both comparisons are False), so a model that predicts NaN terminates, as
    the real env would if its state became NaN.
    """
    return (low < x) & (x < high)


# ---------------------------------------------------------------------- termination rules
# Each rule maps next observations [..., D] (already an array or tensor) to a bool [...].

def _never(next_obs):
    # gymnasium/envs/mujoco/half_cheetah_v5.py and reacher_v5.py: `step` returns
    # `observation, reward, False, False, info`; gymnasium/envs/classic_control/pendulum.py:
    # `return self._get_obs(), -costs, False, False, {}`. Only the TimeLimit wrapper ends them
    # (truncation, which is not termination).
    return _all_false(next_obs, tuple(next_obs.shape[:-1]))


# Hopper-v5 defaults, gymnasium/envs/mujoco/hopper_v5.py `HopperEnv.__init__`.
HOPPER_HEALTHY_STATE_RANGE = (-100.0, 100.0)
HOPPER_HEALTHY_Z_RANGE = (0.7, float("inf"))
HOPPER_HEALTHY_ANGLE_RANGE = (-0.2, 0.2)


def _hopper(next_obs):
    # gymnasium/envs/mujoco/hopper_v5.py: `terminated = (not self.is_healthy) and
    # self._terminate_when_unhealthy` (default True), with `is_healthy`:
    #     z, angle = self.data.qpos[1:3]
    #     state = self.state_vector()[2:]          # concatenate([qpos, qvel])[2:]
    #     healthy = all(min_state < state < max_state) and min_z < z < max_z
    #               and min_angle < angle < max_angle
    # qpos = [rootx, rootz, rooty, thigh, leg, foot] (6), qvel the same 6 coordinates.
    # `_get_obs` drops qpos[0] (rootx) and clips qvel to [-10, 10], so the 11-dim observation is
    #     obs[0]     = qpos[1]            z, the torso height
    #     obs[1]     = qpos[2]            angle, the torso pitch
    #     obs[2:5]   = qpos[3:6]          thigh, leg, foot joint angles
    #     obs[5:11]  = clip(qvel[0:6])    velocities
    # and state_vector()[2:] = [qpos[2:6], qvel[0:6]] is obs[1:11] (10 elements).
    # Not exact from the observation: the env tests the UNCLIPPED qvel against (-100, 100),
    # the observation holds it clipped to +-10, which is always inside. A true velocity beyond
    # +-100 terminates the env but cannot be seen in its observation (it does not happen in
    # ordinary play: random rollouts stay under |qvel| = 10). Testing obs[1:11] is the rule as
    # Gymnasium writes it, and it is what matters for model rollouts, whose predicted
    # observations are not clipped.
    z = next_obs[..., 0]
    angle = next_obs[..., 1]
    state = next_obs[..., 1:11]
    healthy = (_inside(state, *HOPPER_HEALTHY_STATE_RANGE).all(-1)
               & _inside(z, *HOPPER_HEALTHY_Z_RANGE)
               & _inside(angle, *HOPPER_HEALTHY_ANGLE_RANGE))
    return ~healthy


# Walker2d-v5 defaults, gymnasium/envs/mujoco/walker2d_v5.py `Walker2dEnv.__init__`.
WALKER2D_HEALTHY_Z_RANGE = (0.8, 2.0)
WALKER2D_HEALTHY_ANGLE_RANGE = (-1.0, 1.0)


def _walker2d(next_obs):
    # gymnasium/envs/mujoco/walker2d_v5.py: `terminated = (not self.is_healthy) and
    # self._terminate_when_unhealthy` (default True), with `is_healthy`:
    #     z, angle = self.data.qpos[1:3]
    #     healthy = min_z < z < max_z and min_angle < angle < max_angle
    # (v5 has no state-range test, unlike Hopper). qpos = [rootx, rootz, rooty, 6 joints];
    # `_get_obs` drops qpos[0], so obs[0] = qpos[1] = z (torso height) and
    # obs[1] = qpos[2] = angle (torso pitch). Exact from the observation.
    z = next_obs[..., 0]
    angle = next_obs[..., 1]
    return ~(_inside(z, *WALKER2D_HEALTHY_Z_RANGE) & _inside(angle, *WALKER2D_HEALTHY_ANGLE_RANGE))


# InvertedDoublePendulum geometry, gymnasium/envs/mujoco/assets/inverted_double_pendulum.xml:
# the cart and the first hinge sit at height 0 (body "cart" pos 0 0 0, body "pole" pos 0 0 0;
# the slider moves along x only); body "pole2" (the second hinge) is at 0 0 0.6 in the pole's
# frame; site "tip" is at 0 0 .6 in pole2's frame. Both hinges turn about the y axis.
IDP_HINGE_HEIGHT = 0.0
IDP_POLE_LENGTH = 0.6   # hinge -> hinge2
IDP_POLE2_LENGTH = 0.6  # hinge2 -> tip site
IDP_MIN_TIP_HEIGHT = 1.0


def _inverted_double_pendulum(next_obs):
    # gymnasium/envs/mujoco/inverted_double_pendulum_v5.py `step`:
    #     x, _, y = self.data.site_xpos[0]          # the "tip" site
    #     terminated = bool(y <= 1)
    # `_get_obs` = [qpos[0] (cart x), sin(qpos[1:3]), cos(qpos[1:3]), clip(qvel), clip(qfrc_constraint)[:1]],
    # so obs[1] = sin t1, obs[2] = sin t2, obs[3] = cos t1, obs[4] = cos t2, where t1 is the
    # first hinge's angle from vertical and t2 the second hinge's angle relative to the
    # first pole. A rotation by t about y maps (0, 0, L) to (L sin t, 0, L cos t), so
    #     y = h + L1 cos t1 + L2 cos(t1 + t2) = h + L1 c1 + L2 (c1 c2 - s1 s2).
    # This is the tip height of the state in the observation, to rounding (checked against
    # mj_kinematics in tests/test_tasks.py). It is NOT bit-exact with the env's test, and no
    # function of the observation can be: MuJoCo computes site_xpos during the last
    # integration substep (RK4 here; Gymnasium does not rerun kinematics after mj_step), so the
    # env tests a slightly stale tip height. The two differ by about 1e-4 at most in random
    # play, so they can disagree only when the tip is within that distance of height 1.
    s1, s2, c1, c2 = next_obs[..., 1], next_obs[..., 2], next_obs[..., 3], next_obs[..., 4]
    y = IDP_HINGE_HEIGHT + IDP_POLE_LENGTH * c1 + IDP_POLE2_LENGTH * (c1 * c2 - s1 * s2)
    return y <= IDP_MIN_TIP_HEIGHT


def _stitchgrid(next_obs):
    # offbench/envs/gridworld.py `StitchGridEnv.step`: `terminated = bool(self.mdp.terminal[nxt])`,
    # i.e. the NEXT state is terminal (only s9, the goal). Integer observations are the state
    # index; floating-point observations are one-hot (StitchGridOneHot-v0), read with argmax
    # over the last axis.
    states = next_obs.argmax(-1) if _is_floating(next_obs) else next_obs
    return _constant_like(next_obs, default_mdp().terminal)[states]


# offbench/envs/pointmaze.py wraps OGBench's maze (ogbench/locomaze/maze.py `step`): the evaluation
# episode terminates once `compute_success()` holds after the step, `||xy - goal_xy||_2 <= _goal_tol`
# with `_goal_tol = 1.0` for the point robot, before any teleport. Its Dict observations are read
# flattened in Gymnasium's key order (gymnasium.spaces.flatten): [achieved_goal (x, y),
# desired_goal (x, y), observation (x, y)]; achieved_goal is the position after the step. Exact up
# to the float32 rounding of the observation (the env tests the float64 position).
def _pointmaze(next_obs):
    diff = next_obs[..., 0:2] - next_obs[..., 2:4]
    return (diff * diff).sum(-1) ** 0.5 <= POINTMAZE_SUCCESS_RADIUS


# ---------------------------------------------------------------------- reward bounds
# Per-step reward bounds (low, high) of each default task, for actions anywhere the env accepts
# them, transcribed from the installed Gymnasium 1.4 source; -inf/inf where the reward has no
# bound on that side. The leaderboard rejects episode returns outside what these allow
# (``Task.return_bounds``; offbench.leaderboard.validate). The time limits (``max_episode_steps``
# below) are the registrations' in gymnasium/envs/__init__.py, and StitchGrid's own ``HORIZON``.

# gymnasium/envs/classic_control/pendulum.py `step`: `u = np.clip(u, -max_torque, max_torque)`,
# `costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)`, reward `-costs`, where
# angle_normalize maps into [-pi, pi), thdot is clipped to [-max_speed, max_speed] = [-8, 8]
# (and starts in [-1, 1]) and max_torque = 2. So every reward lies in
# [-(pi^2 + 0.1 * 8^2 + 0.001 * 2^2), 0] = [-16.2736..., 0].
PENDULUM_REWARD_BOUNDS = (-(np.pi ** 2 + 0.1 * 8.0 ** 2 + 0.001 * 2.0 ** 2), 0.0)
# gymnasium/envs/mujoco/inverted_double_pendulum_v5.py `_get_rew`: `alive_bonus - dist_penalty -
# vel_penalty` with alive_bonus = healthy_reward (10) or 0 and both penalties sums of squares
# (>= 0), so at most 10; the velocity penalty `1e-3 * v1**2 + 5e-3 * v2**2` has no bound (qvel is
# not limited), so there is none below.
IDP_REWARD_BOUNDS = (-float("inf"), 10.0)
# gymnasium/envs/mujoco/reacher_v5.py `_get_rew`: `-norm(fingertip - target) - square(action).sum()`
# (both weights 1): never positive; the control cost charges the action as given (it is not
# clipped to the action space), so there is no bound below.
REACHER_REWARD_BOUNDS = (-float("inf"), 0.0)
# gymnasium/envs/mujoco/half_cheetah_v5.py, hopper_v5.py, walker2d_v5.py `_get_rew`: the forward
# reward is `forward_reward_weight * x_velocity`, and the body's velocity has no bound either way.
LOCOMOTION_REWARD_BOUNDS = (-float("inf"), float("inf"))
# offbench/envs/gridworld.py `stitch_grid_mdp`: `STEP_COST` (-0.1) per step, `GOAL_REWARD` (+1) on
# the step that enters the goal.
STITCHGRID_REWARD_BOUNDS = (STEP_COST, GOAL_REWARD)
# ogbench/locomaze/maze.py `step` (goal-conditioned mode): reward 1.0 on success, else 0.0; with
# `terminate_at_goal=True` (offbench's evaluation env) the successful step ends the episode, so an
# episode returns 0 or 1 (`max_rewarded_steps=1`; the datasets' episodes, which do not end at the
# goal, return the number of steps spent at goals).
POINTMAZE_REWARD_BOUNDS = (0.0, 1.0)
# offbench/envs/point_plane.py `PointPlaneEnv.step`: reward 0 without a goal; with one, GoalReward's
# 1[||s' - goal|| <= 1], so 0 or 1 on every step of the 50 (no termination: an episode returns 0 to 50).
POINT_PLANE_REWARD_BOUNDS = (0.0, 0.0)
POINT_PLANE_GOAL_REWARD_BOUNDS = (0.0, 1.0)


# ---------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Task:
    """One benchmark task. ``env_kwargs`` is read-only; ``is_terminal`` is the env's true
    termination on observations (see the module docstring)."""

    name: str
    env_id: str
    suites: tuple[str, ...]
    env_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: The observation length ``is_terminal`` expects, Dict observations flattened (None: StitchGrid,
    #: integer or one-hot).
    observation_dim: int | None = None
    #: Other Gymnasium ids of the same task (``get_task`` finds the task by them too).
    other_env_ids: tuple[str, ...] = ()
    termination: Callable[[Any], Any] = field(default=_never, repr=False, compare=False)
    #: Per-step reward bounds ``(low, high)`` of the default task (see "reward bounds" above;
    #: -inf/inf where unbounded), or None where not recorded.
    reward_bounds: tuple[float, float] | None = None
    #: The time limit of an episode: Gymnasium's ``max_episode_steps`` (or the env's own horizon).
    max_episode_steps: int | None = None
    #: At most this many steps of an episode earn a reward above 0 (None: any step may). PointMaze:
    #: 1, the step that reaches the goal, which ends the evaluation episode (reward 1, else 0).
    max_rewarded_steps: int | None = None
    #: The task's reward recomputed from stored transitions, where the data hold what it reads: a
    #: ``offbench.data.relabel.TaskRewardFn`` (a ``TransitionView`` -> rewards [N]) for
    #: ``relabel_task`` / ``relabel_for_task``; None where the task has none.
    relabel_reward: Callable[[Any], Any] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "env_kwargs", MappingProxyType(dict(self.env_kwargs)))
        object.__setattr__(self, "suites", tuple(self.suites))

    def return_bounds(self) -> tuple[float, float] | None:
        """Bounds on one episode's undiscounted return, or None where the reward bounds or the
        time limit are not recorded: an episode has 1 to ``max_episode_steps`` steps, each
        rewarded within ``reward_bounds``; -inf/inf where the reward is unbounded."""
        if self.reward_bounds is None or self.max_episode_steps is None:
            return None
        low, high = self.reward_bounds
        steps = self.max_episode_steps
        rewarded = steps if self.max_rewarded_steps is None else min(steps, self.max_rewarded_steps)
        return min(low, steps * low), max(high, rewarded * high)

    def make(self, **overrides) -> gym.Env:
        """``gym.make(env_id, **env_kwargs, **overrides)`` (overrides win)."""
        return gym.make(self.env_id, **{**self.env_kwargs, **overrides})

    def is_terminal(self, observations, actions, next_observations):
        """Whether each transition ends the episode in the true environment: bool ``[B]``.

        Takes batches ``[B, D]`` (or any leading shape, or one transition ``[D]``) as NumPy
        arrays, lists or torch tensors. Termination depends only on ``next_observations`` for
        every task here; ``observations`` and ``actions`` are accepted so model-based code
        can call every task's rule the same way.
        """
        xp = _namespace(next_observations)
        next_obs = next_observations if xp is not np else np.asarray(next_observations)
        if self.observation_dim is not None:
            if next_obs.ndim == 0 or next_obs.shape[-1] != self.observation_dim:
                raise OffbenchError(
                    f"{self.name}: next_observations must be shaped [..., {self.observation_dim}] "
                    f"(the default {self.env_id} observation), got {tuple(next_obs.shape)}")
            if not _is_floating(next_obs):
                next_obs = next_obs.astype(np.float64) if xp is np else next_obs.double()
        done = self.termination(next_obs)
        return np.asarray(done, dtype=bool) if xp is np else done


def _tasks(*tasks: Task) -> dict[str, Task]:
    return {task.name: task for task in tasks}


TASKS: dict[str, Task] = _tasks(
    Task("hopper", "Hopper-v5", ("locomotion",), observation_dim=11, termination=_hopper,
         reward_bounds=LOCOMOTION_REWARD_BOUNDS, max_episode_steps=1000),
    Task("halfcheetah", "HalfCheetah-v5", ("locomotion",), observation_dim=17, termination=_never,
         reward_bounds=LOCOMOTION_REWARD_BOUNDS, max_episode_steps=1000),
    Task("walker2d", "Walker2d-v5", ("locomotion",), observation_dim=17, termination=_walker2d,
         reward_bounds=LOCOMOTION_REWARD_BOUNDS, max_episode_steps=1000),
    Task("pendulum", "Pendulum-v1", ("lite",), observation_dim=3, termination=_never,
         reward_bounds=PENDULUM_REWARD_BOUNDS, max_episode_steps=200),
    Task("invdoublependulum", "InvertedDoublePendulum-v5", ("lite",), observation_dim=9,
         termination=_inverted_double_pendulum, reward_bounds=IDP_REWARD_BOUNDS, max_episode_steps=1000),
    Task("reacher", "Reacher-v5", ("lite",), observation_dim=10, termination=_never,
         reward_bounds=REACHER_REWARD_BOUNDS, max_episode_steps=50),
    Task("stitchgrid", "offbench/StitchGrid-v0", ("lite",),
         other_env_ids=("offbench/StitchGridOneHot-v0",), termination=_stitchgrid,
         reward_bounds=STITCHGRID_REWARD_BOUNDS, max_episode_steps=HORIZON),
    *(Task(f"pointmaze-{maze}", pointmaze_env_id(maze), ("goal",), observation_dim=6,
           other_env_ids=(f"pointmaze-{maze}-v0",), termination=_pointmaze,
           reward_bounds=POINTMAZE_REWARD_BOUNDS, max_episode_steps=POINTMAZE_MAX_EPISODE_STEPS,
           max_rewarded_steps=1)
      for maze in POINTMAZES),
    # offline meta-RL datasets (meta/<task>/...): the families' episodes never terminate; GridNavi
    # pays +1 on the goal and -0.1 elsewhere, the dense point robot minus the distance to the goal
    Task("gridnavi", "offbench/GridNavi-v0", ("meta",), observation_dim=2, termination=_never,
         reward_bounds=(-0.1, 1.0), max_episode_steps=15),
    Task("point-robot", "offbench/PointRobot-v0", ("meta",), observation_dim=2, termination=_never,
         reward_bounds=(-math.inf, 0.0), max_episode_steps=20),
    # reward-free exploratory data (explore/point-plane/...) and the goals it is relabelled for
    Task("point-plane", "offbench/PointPlane-v0", ("explore",), observation_dim=2, termination=_never,
         reward_bounds=POINT_PLANE_REWARD_BOUNDS, max_episode_steps=POINT_PLANE_MAX_EPISODE_STEPS),
    *(Task(f"point-plane-goal-{name}", point_plane_goal_env_id(name), ("explore",), observation_dim=2,
           termination=_never, reward_bounds=POINT_PLANE_GOAL_REWARD_BOUNDS,
           max_episode_steps=POINT_PLANE_MAX_EPISODE_STEPS, relabel_reward=GoalReward(goal))
      for name, goal in POINT_PLANE_GOALS.items()),
    # ... PointMaze-medium's (explore/pointmaze-medium-reward-free/...) and its goals ...
    Task("pointmaze-medium-reward-free", "offbench/PointMazeRewardFree-v0", ("explore",),
         env_kwargs={"maze": "medium", "episode_length": MAZE_TASK_MAX_EPISODE_STEPS}, observation_dim=2,
         termination=_never, reward_bounds=(0.0, 0.0), max_episode_steps=MAZE_TASK_MAX_EPISODE_STEPS),
    *(Task(f"pointmaze-medium-goal-{name}", maze_goal_env_id(name), ("explore",), observation_dim=2,
           termination=_never, reward_bounds=(0.0, 1.0), max_episode_steps=MAZE_TASK_MAX_EPISODE_STEPS,
           relabel_reward=reward)
      for name, reward in MAZE_GOALS.items()),
    # ... and HalfCheetah's (explore/halfcheetah-reward-free/...) and its downstream tasks
    Task("halfcheetah-reward-free", cheetah_task_env_id("reward-free"), ("explore",), observation_dim=18,
         termination=_never, reward_bounds=(0.0, 0.0), max_episode_steps=CHEETAH_TASK_MAX_EPISODE_STEPS),
    *(Task(f"halfcheetah-{name}", cheetah_task_env_id(name), ("explore",), observation_dim=18,
           termination=_never, reward_bounds=LOCOMOTION_REWARD_BOUNDS, max_episode_steps=CHEETAH_TASK_MAX_EPISODE_STEPS,
           relabel_reward=reward)
      for name, reward in CHEETAH_TASKS.items() if name != "reward-free"),
)


def _known() -> str:
    return ", ".join(f"{t.name} ({', '.join((t.env_id,) + t.other_env_ids)})" for t in TASKS.values())


def get_task(name_or_env_id: str) -> Task:
    """The task with this short name (``hopper``) or Gymnasium id (``Hopper-v5``)."""
    if name_or_env_id in TASKS:
        return TASKS[name_or_env_id]
    for task in TASKS.values():
        if name_or_env_id == task.env_id or name_or_env_id in task.other_env_ids:
            return task
    keys = list(TASKS) + [i for t in TASKS.values() for i in (t.env_id, *t.other_env_ids)]
    close = difflib.get_close_matches(str(name_or_env_id), keys, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise OffbenchError(f"unknown task {name_or_env_id!r}{hint} Known tasks: {_known()}")


def task_for_dataset(dataset_id: str) -> Task:
    """The task of a dataset id shaped ``suite/<name>/...`` (e.g. ``locomotion/hopper/medium-v0``)."""
    parts = str(dataset_id).split("/")
    if len(parts) < 3 or not all(parts):
        raise OffbenchError(
            f"{dataset_id!r} is not a dataset id: ids look like 'suite/<task>/<name>-vN' "
            "(e.g. 'lite/pendulum/random-v0')")
    suite, name = parts[0], parts[1]
    if name not in TASKS:
        raise OffbenchError(f"dataset {dataset_id!r} names an unknown task {name!r}. Known tasks: {_known()}")
    task = TASKS[name]
    if suite not in task.suites:
        raise OffbenchError(
            f"dataset {dataset_id!r}: task {name!r} is in suite(s) {', '.join(task.suites)}, not {suite!r}")
    return task
