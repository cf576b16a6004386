"""Goal-reaching tasks in PointMaze-medium for reward-free data (issue 18): the downstream tasks of the
exploratory datasets ``explore/pointmaze-medium-reward-free/*``.

Those data are collected in the skill suite's maze (``skills/pointmaze-medium-v0``,
``offbench/PointMazeRewardFree-v0``: OGBench's PointMaze-medium, the (x, y) position as observation,
reward 0, 200-step episodes from the start cell of OGBench's evaluation task 1, jittered by U[-1, 1] per
axis) and store the simulator state of every step (``sim_state/qpos``, the float64 (x, y);
``sim_state/qvel``). A goal task pays

    r(s, a, s') = 1[ ||xy' - g||_2 <= 1 ]   per step, xy' = qpos after the step,

OGBench's success radius for the point, at a cell centre g; it never terminates, so a 200-step
episode returns the number of steps spent at the goal. The goals are cells of OGBench's evaluation
tasks that a 200-step episode can reach from the start (a step moves at most 0.2 per axis; cells are
4 wide):

========  ===========  ==========  ===========================================  ===================
name      cell (i, j)  centre g    from the start cell (1, 1)                   OGBench
========  ===========  ==========  ===========================================  ===================
``near``  (4, 2)       (4, 12)     4 cells along the corridors                  task 3's goal
``far``   (6, 1)       (0, 20)     7 cells                                      task 4's goal
========  ===========  ==========  ===========================================  ===================

Each is played in ``offbench/pointmaze-medium-goal-<name>-v0`` (the reward-free maze paying the goal's
reward, computed by the same :class:`MazeGoalReward` that relabels the data) and registered as task
``pointmaze-medium-goal-<name>`` (``offbench/envs/tasks.py``). :class:`MazeGoalController` (behaviour
policy ``maze_goal``) is the tasks' scripted expert: OGBench's oracle route through the cells, at full
speed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from offbench.envs.point_plane import GoalReward
from offbench.envs.pointmaze import MAZE_OFFSET, MAZE_UNIT, SUCCESS_RADIUS
from offbench.errors import OffbenchError

MAZE = "medium"
EPISODE_LENGTH = 200  # the skill suite's maze episodes (offbench/envs/skill_environments.py)
STEP = 0.2  # OGBench's point: qpos += 0.2 * action, action in [-1, 1]^2
START_CELL = (1, 1)  # OGBench's medium evaluation task 1 starts here (the reward-free maze's start)
GOAL_CELLS = {"near": (4, 2), "far": (6, 1)}


def cell_centre(cell: tuple[int, int]) -> tuple[float, float]:
    """OGBench's ``ij_to_xy``: cell (i, j) is centred at x = 4 j - 4, y = 4 i - 4."""
    i, j = cell
    return float(j * MAZE_UNIT - MAZE_OFFSET), float(i * MAZE_UNIT - MAZE_OFFSET)


@dataclass(frozen=True)
class MazeGoalReward(GoalReward):
    """The point plane's goal reward, ``1[||xy' - goal||_2 <= radius]`` per step (``rewards(positions)``),
    with OGBench's success radius; calling the object on an ``offbench.data.relabel.TransitionView``
    recomputes it from the stored next states, which in the maze are ``sim_state/qpos`` (the (x, y))."""

    radius: float = SUCCESS_RADIUS

    def __call__(self, batch: Any) -> np.ndarray:
        batch.require_sim_state("qpos", f"the maze goal reward at {self.goal}")
        return self.rewards(batch.next_sim_state["qpos"])

    def spec(self) -> dict:
        return {"kind": "pointmaze_goal", "maze": MAZE, "goal": [float(g) for g in self.goal],
                "radius": float(self.radius), "reward": "1[||xy' - goal||_2 <= radius], xy' = sim_state/qpos after the step"}


GOALS: dict[str, MazeGoalReward] = {name: MazeGoalReward(cell_centre(cell)) for name, cell in GOAL_CELLS.items()}


def env_id(name: str) -> str:
    """The Gymnasium id that plays goal ``name``: ``offbench/pointmaze-medium-goal-<name>-v0``."""
    return f"offbench/pointmaze-{MAZE}-goal-{name}-v0"


class MazeGoalEnv(gym.Wrapper):
    """The reward-free maze paying a :class:`MazeGoalReward` (``goal_reward``) on the position after each step."""

    def __init__(self, env: gym.Env, reward: MazeGoalReward):
        super().__init__(env)
        self.goal_reward = reward

    def step(self, action):
        obs, _, terminated, truncated, info = self.env.step(action)
        position = np.array(self.env.unwrapped.data.qpos, dtype=np.float64)
        return obs, float(self.goal_reward.rewards(position[None])[0]), terminated, truncated, info


def make_maze_goal_env(goal: str = "near") -> MazeGoalEnv:
    """The entry point of ``offbench/pointmaze-medium-goal-<goal>-v0`` (needs ``ogbench``)."""
    if goal not in GOALS:
        raise OffbenchError(f"unknown PointMaze-{MAZE} goal {goal!r}: use one of {sorted(GOALS)}")
    from offbench.envs.pointmaze import make_reward_free_pointmaze

    return MazeGoalEnv(make_reward_free_pointmaze(MAZE, EPISODE_LENGTH), GOALS[goal])


class MazeGoalController:
    """The goal tasks' scripted expert (behaviour policy ``maze_goal``): towards the centre of the next cell
    on OGBench's oracle route to the goal's cell (``MazeGeometry.subgoal_cell``), then onto the goal, each
    step as far as the action box allows (``clip((target - xy) / 0.2, -1, 1)``). Measures the expert
    reference return without a trained agent."""

    name = "maze_goal"
    deterministic = True

    def __init__(self, env: gym.Env):
        from offbench.envs.pointmaze import MazeGeometry

        try:  # the MazeGoalEnv's, under any wrappers gym.make added
            reward = env.get_wrapper_attr("goal_reward")
        except AttributeError:
            reward = None
        if not isinstance(reward, MazeGoalReward):
            raise OffbenchError("maze_goal needs a maze goal task (offbench/pointmaze-medium-goal-<name>-v0), "
                                f"not {env.spec.id if env.spec else env}")
        self.goal = np.asarray(reward.goal, np.float64)
        self.geometry = MazeGeometry.of(MAZE)

    def act(self, observation, rng=None):
        xy = np.asarray(observation, np.float64)
        cell = tuple(int(c) for c in self.geometry.cell_of(xy))
        goal_cell = tuple(int(c) for c in self.geometry.cell_of(self.goal))
        target = self.goal if cell == goal_cell else self.geometry.centre(self.geometry.subgoal_cell[goal_cell + cell])
        return np.clip((target - xy) / STEP, -1.0, 1.0).astype(np.float32), 0.0


def register_envs() -> None:
    from gymnasium.envs.registration import register, registry

    for name in GOALS:
        if env_id(name) not in registry:
            # the maze truncates its own 200-step episodes; the spec records the same limit
            register(id=env_id(name), entry_point="offbench.envs.maze_tasks:make_maze_goal_env", kwargs={"goal": name},
                     max_episode_steps=EPISODE_LENGTH)
