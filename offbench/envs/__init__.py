"""offbench's own environments, registered with Gymnasium on import.

- ``offbench/StitchGrid-v0``: the 3x3 stitching gridworld, integer observations (``Discrete(9)``).
- ``offbench/StitchGridOneHot-v0``: the same task with one-hot ``Box`` observations.

Both truncate after 10 steps themselves (``horizon`` keyword; see ``offbench.envs.gridworld``).

- ``offbench/pointmaze-{medium,large,giant,teleport}-v0``: OGBench's PointMaze with Dict goal
  observations (``offbench.envs.pointmaze``; needs ``pip install --no-deps ogbench==1.2.2`` when made).
- ``offbench/PointPlane-v0``: a bounded, reward-free 2-D point plane for skill discovery
  (``offbench.envs.point_plane``), and its goal-reaching variants
  ``offbench/point-plane-goal-<name>-v0`` (``<name>`` a key of ``point_plane.GOALS``: reward
  1 within distance 1 of the goal), the downstream tasks of the exploratory datasets.
- ``offbench/PointPlaneSkills-v0``: a goal task whose action picks a skill of a trained DIAYN, DADS
  or METRA agent, played for ``k`` steps (``offbench.envs.skill_options``; kwargs ``goal``, ``skills``, ``k``).
- ``offbench/halfcheetah-reward-free-v0``: HalfCheetah with the x position in the observation,
  200-step episodes and reward 0 (the skill suite's HalfCheetah and its exploratory data), and
  ``offbench/halfcheetah-{run-forward,run-backward,jump}-v0``, the same paying a downstream task's
  reward, the tasks those data are relabelled for (``offbench.envs.cheetah_tasks``).
- ``offbench/pointmaze-medium-goal-{near,far}-v0``: the reward-free PointMaze-medium
  (``offbench/PointMazeRewardFree-v0``) paying 1 within 1 of a goal cell's centre, the tasks the
  exploratory datasets ``explore/pointmaze-medium-reward-free/*`` are relabelled for
  (``offbench.envs.maze_tasks``; needs ``ogbench`` when made).
- Meta-RL task families ``offbench/{BernoulliBandit,GridNavi,PointRobot,SparsePointRobot,SignGrid,
  HalfCheetahVel}-v0`` with exact references (``offbench.envs.meta``).
"""
from __future__ import annotations

from gymnasium.envs.registration import register, registry

from offbench.envs.gridworld import HORIZON, StitchGridEnv
from offbench.envs.point_plane import GOALS as POINT_PLANE_GOALS
from offbench.envs.point_plane import goal_env_id as point_plane_goal_env_id

# The horizon is spelled out so a dataset's recorded env_spec names the time limit it used.
_ENVS = {
    "offbench/StitchGrid-v0": {"one_hot": False, "horizon": HORIZON},
    "offbench/StitchGridOneHot-v0": {"one_hot": True, "horizon": HORIZON},
}
if "offbench/PointPlane-v0" not in registry:  # the skill-discovery suite's reward-free plane
    register(id="offbench/PointPlane-v0", entry_point="offbench.envs.point_plane:PointPlaneEnv")
for _name, _goal in POINT_PLANE_GOALS.items():  # its downstream goal-reaching tasks
    if point_plane_goal_env_id(_name) not in registry:
        register(id=point_plane_goal_env_id(_name), entry_point="offbench.envs.point_plane:PointPlaneEnv",
                 kwargs={"goal": _goal})
if "offbench/PointPlaneSkills-v0" not in registry:  # skills as a high-level policy's actions
    register(id="offbench/PointPlaneSkills-v0", entry_point="offbench.envs.skill_options:make_point_plane_skills_env")

for _id, _kwargs in _ENVS.items():
    if _id not in registry:  # importing twice (reloads, tests) must not re-register
        # No max_episode_steps here: the env applies its own time limit (the `horizon` kwarg),
        # so the exact solvers and the data share one definition of the horizon.
        register(id=_id, entry_point="offbench.envs.gridworld:StitchGridEnv", kwargs=dict(_kwargs))

from offbench.envs.pointmaze import register_envs as _register_pointmaze  # noqa: E402
from offbench.envs.cheetah_tasks import register_envs as _register_cheetah_tasks  # noqa: E402
from offbench.envs.maze_tasks import register_envs as _register_maze_tasks  # noqa: E402

_register_pointmaze()
_register_cheetah_tasks()
_register_maze_tasks()

import offbench.envs.meta  # noqa: E402,F401  (registers the meta-RL families; MuJoCo is imported lazily)

from offbench.envs.tasks import TASKS, Task, get_task, task_for_dataset  # noqa: E402  (after registration)

__all__ = ["StitchGridEnv", "TASKS", "Task", "get_task", "task_for_dataset"]
