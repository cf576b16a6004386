"""OGBench's PointMaze tasks as goal-conditioned offbench environments.

The simulator is OGBench's own (``ogbench`` 1.2.2, ``ogbench/locomaze``), so success rates are
directly comparable with the OGBench paper. offbench adds a thin wrapper,
``offbench/pointmaze-{medium,large,giant,teleport}-v0``, that

- returns Gymnasium-Robotics-style Dict observations ``{"observation", "achieved_goal",
  "desired_goal"}``, each the float32 ``(x, y)`` position (the agent's; the agent's again; the
  goal's), which is what offbench's goal datasets store and what a goal-conditioned policy reads;
- chooses one of the maze's 5 fixed evaluation tasks per episode: ``reset(options={"task_id": k})``
  or ``gym.make(..., task_id=k)``; otherwise task ``1 + seed % 5`` for a seeded reset, so the
  episodes ``seed, seed + 1, ...`` that :func:`offbench.rollout.rollout` plays cycle through the
  five tasks (250 episodes from a seed divisible by 5 = OGBench's 50 per task);
- keeps OGBench's draws from NumPy's *global* generator (start and goal jitter at reset, the
  teleport destination) on a generator of its own, seeded by ``reset(seed=...)``, so episodes
  are reproducible and the caller's global NumPy state is neither read nor changed (OGBench's
  maze module gets a stand-in ``np`` whose ``random`` the environment points at its own
  generator during its calls; see :class:`_OGBenchNumpy`).

Facts taken from OGBench's source (read for facts only, nothing copied):

- observation = ``qpos`` = (x, y); action in [-1, 1]^2; a step sets ``qpos += 0.2 * action``,
  zeroes the velocity and runs 5 MuJoCo steps of 0.02 s (``locomaze/point.py``);
- success = ``||xy - goal_xy||_2 <= 1.0`` (``_goal_tol`` is 1.0 for the point, 0.5 for the ant),
  computed *after* the physics step (``success_timing='post'``) but *before* a teleport; reward
  1.0 on success, else 0.0; the evaluation episode ends (``terminated``) at the goal
  (``terminate_at_goal=True``) or is truncated after 1000 steps (``locomaze/maze.py``);
- cells are 4 units wide, cell ``(i, j)`` has its centre at ``x = 4 j - 4``, ``y = 4 i - 4``;
  evaluation starts and goals are the task's cell centres plus U[-1, 1] per axis;
- in the teleport maze, reaching an inbound teleport (within 1.5 of its centre) moves the agent
  to a random outbound one *after* the observation was taken, so the returned observation is
  the pre-teleport position while the state (``qpos``) is the post-teleport one.

``ogbench`` is imported lazily and only its locomotion maze code runs: ``dm_control`` (which
OGBench lists as a requirement for its manipulation suites) is never imported. Install it with
``pip install --no-deps ogbench==1.2.2`` (see pyproject.toml for why not as a dependency).

The module also holds the maze geometry and OGBench's oracle controller
(:class:`MazeGeometry`), used by the dataset recipes (``offbench.data.goal_generation``) and by
the reference-score measurements.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np

from offbench.errors import OffbenchError

OGBENCH_VERSION = "1.2.2"
INSTALL_COMMAND = f"pip install --no-deps ogbench=={OGBENCH_VERSION}"
MAZES = ("medium", "large", "giant", "teleport")
NUM_EVAL_TASKS = 5
SUCCESS_RADIUS = 1.0
EVAL_MAX_EPISODE_STEPS = 1000
MAZE_UNIT = 4.0
MAZE_OFFSET = 4.0
# The oracle's direction is (subgoal - xy) / (||subgoal - xy|| + 1e-6), as OGBench's data script.
DIRECTION_EPS = 1e-6

__all__ = [
    "INSTALL_COMMAND", "MAZES", "NUM_EVAL_TASKS", "OGBENCH_VERSION", "SUCCESS_RADIUS", "MazeGeometry",
    "PointMazeGoalEnv", "env_id", "goal_wrapper", "make_pointmaze_env", "ogbench_env_id", "oracle_policy",
    "require_ogbench",
    "success",
]


def env_id(maze: str) -> str:
    """offbench's Gymnasium id of a maze: ``offbench/pointmaze-<maze>-v0``."""
    _check_maze(maze)
    return f"offbench/pointmaze-{maze}-v0"


def ogbench_env_id(maze: str) -> str:
    """OGBench's own Gymnasium id of a maze: ``pointmaze-<maze>-v0``."""
    _check_maze(maze)
    return f"pointmaze-{maze}-v0"


def _check_maze(maze: str) -> None:
    if maze not in MAZES:
        raise OffbenchError(f"unknown PointMaze maze {maze!r}; choose one of {', '.join(MAZES)}")


def require_ogbench(version: str | None = None):
    """Import OGBench's maze module ``ogbench.locomaze.maze`` or explain how to install it.

    ``version``: refuse any other installed release (dataset recipes pin the simulator code).
    """
    try:
        module = importlib.import_module("ogbench.locomaze.maze")
    except ImportError as exc:
        raise OffbenchError(
            f"the PointMaze tasks need OGBench's simulator code, which is not installed ({exc}). Install it with "
            f"`{INSTALL_COMMAND}`: --no-deps because OGBench also lists dm_control (for its manipulation tasks), "
            "which PointMaze never imports; gymnasium and mujoco come with offbench") from None
    if version is not None:
        installed = importlib.metadata.version("ogbench")
        if installed != version:
            raise OffbenchError(f"this recipe was made with ogbench {version}, but ogbench {installed} is installed: "
                                f"`pip install --no-deps ogbench=={version}` to rebuild it exactly")
    return module


def success(achieved_goal, desired_goal):
    """OGBench's PointMaze success rule, vectorised: ``||achieved - desired||_2 <= 1.0``."""
    diff = np.asarray(achieved_goal, dtype=np.float64) - np.asarray(desired_goal, dtype=np.float64)
    return np.sqrt((diff * diff).sum(-1)) <= SUCCESS_RADIUS


# ---------------------------------------------------------------------- the global-RNG isolation
class _OGBenchNumpy:
    """Stands in for ``numpy`` inside ``ogbench.locomaze.maze``, the one module whose draws come
    from NumPy's global generator (``np.random.uniform`` for the jitter, ``np.random.randint`` for
    a random task and the teleport destination).

    Every attribute is numpy's, except ``random``: numpy's global generator, unless an
    environment has made its own generator current for the duration of a call (see
    :class:`_PrivateRandom`). Outside such calls OGBench behaves exactly as without offbench.
    Swapping a pointer costs nothing, unlike copying the 2.5 kB Mersenne-Twister state in and out
    of the global generator around every step (about 0.3 ms here).
    """

    def __init__(self):
        self.random = np.random

    def __getattr__(self, name: str):
        return getattr(np, name)


def _ogbench_numpy() -> _OGBenchNumpy:
    """The stand-in installed as ``ogbench.locomaze.maze.np`` (installed once per process)."""
    module = require_ogbench()
    proxy = module.__dict__.get("np")
    if type(proxy).__name__ != _OGBenchNumpy.__name__:
        proxy = _OGBenchNumpy()
        module.np = proxy
    return proxy


class _PrivateRandom:
    """One environment's own ``RandomState`` for OGBench's global-generator draws, seeded by
    ``reset(seed=...)``: the same seed gives the same jitter (and teleports) as a global
    generator seeded with it would, and the caller's global NumPy state is never touched."""

    def __init__(self):
        self.proxy = _ogbench_numpy()
        self.rng = np.random.RandomState()

    def reseed(self, seed: int) -> None:
        self.rng = np.random.RandomState(int(seed) % 2**32)

    @contextmanager
    def active(self) -> Iterator[None]:
        previous = self.proxy.random
        self.proxy.random = self.rng
        try:
            yield
        finally:
            self.proxy.random = previous


# ---------------------------------------------------------------------- the wrapper
_BOX = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)


class PointMazeGoalEnv(gym.Wrapper):
    """OGBench's PointMaze with Dict observations, task choice per episode and private randomness.

    ``info`` keeps everything OGBench reports (``success``, ``goal``, ``qpos``, ``prev_qpos``...)
    and adds ``task_id`` (1..5, or None for a ``task_info`` reset) at reset.
    """

    def __init__(self, env: gym.Env, *, maze: str, task_id: int | None = None):
        super().__init__(env)
        _check_maze(maze)
        self.maze = maze
        if task_id is not None and not (isinstance(task_id, (int, np.integer)) and 1 <= task_id <= NUM_EVAL_TASKS):
            raise OffbenchError(f"task_id must be one of 1..{NUM_EVAL_TASKS} (the maze's evaluation tasks), "
                                f"got {task_id!r}")
        self.task_id = None if task_id is None else int(task_id)
        self.observation_space = gym.spaces.Dict(
            {"observation": _BOX, "achieved_goal": _BOX, "desired_goal": _BOX})
        self._random = _PrivateRandom()

    def _observation(self, ob) -> dict[str, np.ndarray]:
        position = np.asarray(ob, dtype=np.float32)
        goal = np.asarray(self.env.unwrapped.cur_goal_xy, dtype=np.float32)
        return {"observation": position, "achieved_goal": position.copy(), "desired_goal": goal}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        if seed is not None:
            self._random.reseed(seed)
        if "task_info" not in options:
            task = options.get("task_id", self.task_id)
            if task is None and seed is not None:
                task = 1 + int(seed) % NUM_EVAL_TASKS
            if task is not None:
                if not (isinstance(task, (int, np.integer)) and 1 <= task <= NUM_EVAL_TASKS):
                    raise OffbenchError(f"task_id must be one of 1..{NUM_EVAL_TASKS}, got {task!r}")
                options["task_id"] = int(task)
        with self._random.active():
            ob, info = self.env.reset(seed=seed, options=options)
        info["task_id"] = self.env.unwrapped.cur_task_id
        return self._observation(ob), info

    def step(self, action):
        with self._random.active():  # the teleport maze draws its destination here
            ob, reward, terminated, truncated, info = self.env.step(action)
        return self._observation(ob), reward, terminated, truncated, info

    def set_goal_cell(self, cell: tuple[int, int]) -> None:
        """OGBench's ``set_goal(goal_ij)``: a new goal at the cell's centre, jittered as at reset."""
        with self._random.active():
            self.env.unwrapped.set_goal(goal_ij=tuple(int(c) for c in cell))

    @property
    def position(self) -> np.ndarray:
        """The agent's true (x, y): ``qpos`` (after a teleport, unlike the last observation)."""
        return self.env.unwrapped.get_xy()

    @property
    def goal(self) -> np.ndarray:
        """The current goal's (x, y), float64."""
        return np.asarray(self.env.unwrapped.cur_goal_xy, dtype=np.float64)


def goal_wrapper(env: gym.Env) -> PointMazeGoalEnv:
    """The :class:`PointMazeGoalEnv` inside ``env``'s wrappers (``gym.make`` adds some around it)."""
    inner = env
    while not isinstance(inner, PointMazeGoalEnv):
        if not isinstance(inner, gym.Wrapper):
            raise OffbenchError(f"{env} is not an offbench PointMaze environment (offbench/pointmaze-<maze>-v0)")
        inner = inner.env
    return inner


def _forget_temporary_xml(env: gym.Env) -> None:
    """OGBench writes each maze's MuJoCo XML to a temporary file and never deletes it; the model
    is compiled by now, so remove the file (one per environment, otherwise left in /tmp)."""
    path = getattr(env.unwrapped, "fullpath", None)
    if (isinstance(path, str) and path.endswith(".xml") and os.path.basename(path).startswith("tmp")
            and os.path.dirname(os.path.abspath(path)) == os.path.abspath(tempfile.gettempdir())):
        try:
            os.unlink(path)
        except OSError:
            pass


def make_pointmaze_env(maze: str, *, task_id: int | None = None, terminate_at_goal: bool = True,
                       **ogbench_kwargs) -> PointMazeGoalEnv:
    """OGBench's point maze ``maze`` wrapped as :class:`PointMazeGoalEnv` (the entry point of
    offbench's ids; ``gym.make`` adds the time limit, 1000 steps unless ``max_episode_steps`` says).

    The defaults are OGBench's evaluation settings; the dataset recipes pass
    ``terminate_at_goal=False`` and ``max_episode_steps=1001`` (201, 2001) as OGBench's data
    script does. Other keywords go to OGBench's maze (e.g. ``add_noise_to_goal``).
    """
    _check_maze(maze)
    maze_module = require_ogbench()
    # OGBench's own factory, without its registered wrappers: the time limit is offbench's
    # registration's, so `gym.make(..., max_episode_steps=N)` is the one limit in force.
    inner = maze_module.make_maze_env("point", "maze", maze_type=maze, terminate_at_goal=bool(terminate_at_goal),
                                        **ogbench_kwargs)
    _forget_temporary_xml(inner)
    return PointMazeGoalEnv(inner, maze=maze, task_id=task_id)


class RewardFreePointMaze(gym.Wrapper):
    """PointMaze for skill discovery (issue 18; DADS's and METRA's maze experiments): the observation is the
    float32 ``(x, y)`` position alone, the reward is 0, no episode is terminated, and each is truncated after
    ``episode_length`` steps. Every episode starts in evaluation task 1's start cell (OGBench's jitter of
    U[-1, 1] per axis), so skills are compared from one place; the goal OGBench draws is never shown."""

    def __init__(self, env: PointMazeGoalEnv, episode_length: int = 200):
        super().__init__(env)
        if int(episode_length) < 1:
            raise OffbenchError(f"RewardFreePointMaze: episode_length must be >= 1, got {episode_length}")
        self.episode_length, self._t = int(episode_length), 0
        self.observation_space = _BOX

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        ob, info = self.env.reset(seed=seed, options={**(options or {}), "task_id": 1})
        self._t = 0
        return ob["observation"], info

    def step(self, action):
        ob, _, _, _, info = self.env.step(action)
        self._t += 1
        return ob["observation"], 0.0, False, self._t >= self.episode_length, info

    @property
    def state(self) -> np.ndarray:
        """The true (x, y) (``qpos``), float64: what an exploratory dataset would store as ``sim_state/state``."""
        return np.asarray(self.env.position, np.float64)


def make_reward_free_pointmaze(maze: str = "medium", episode_length: int = 200) -> RewardFreePointMaze:
    """The registered ``offbench/PointMazeRewardFree-v0``: :class:`RewardFreePointMaze` of ``maze``."""
    return RewardFreePointMaze(make_pointmaze_env(maze, terminate_at_goal=False), episode_length)


def maze_map(maze: str) -> np.ndarray:
    """OGBench's map of maze ``maze``: ``[i, j]`` is 1 for a wall cell, 0 for a free one."""
    env = make_pointmaze_env(maze)
    try:
        return np.asarray(env.unwrapped.maze_map, dtype=np.int64)
    finally:
        env.close()


def maze_walls(maze: str) -> list[tuple[float, float, float, float]]:
    """The wall cells of maze ``maze`` as ``(x_min, y_min, width, height)`` rectangles in the
    agent's coordinates (cell ``(i, j)`` is centred at OGBench's ``ij_to_xy``, ``MAZE_UNIT`` wide),
    read from OGBench's own map; for figures."""
    centres = MazeGeometry.centre(np.argwhere(maze_map(maze) == 1))
    return [(float(x - MAZE_UNIT / 2), float(y - MAZE_UNIT / 2), float(MAZE_UNIT), float(MAZE_UNIT))
            for x, y in centres]


def register_envs() -> None:
    """Register ``offbench/pointmaze-<maze>-v0`` for every maze (ogbench is imported only on make)."""
    from gymnasium.envs.registration import register, registry

    for maze in MAZES:
        if env_id(maze) not in registry:
            register(id=env_id(maze), entry_point="offbench.envs.pointmaze:make_pointmaze_env",
                     max_episode_steps=EVAL_MAX_EPISODE_STEPS, kwargs={"maze": maze})
    if "offbench/PointMazeRewardFree-v0" not in registry:  # the skill-discovery suite's maze
        register(id="offbench/PointMazeRewardFree-v0", entry_point="offbench.envs.pointmaze:make_reward_free_pointmaze")


# ---------------------------------------------------------------------- geometry and the oracle
_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1))  # OGBench's search order (first minimum wins)


class MazeGeometry:
    """A maze's cells, BFS distances and OGBench's oracle subgoals, precomputed as tables.

    ``maze_map[i, j]`` is 1 for a wall, 0 for a free cell. ``subgoal_cell[gi, gj, i, j]`` is the
    cell OGBench's ``get_oracle_subgoal`` picks from cell ``(i, j)`` towards a goal in cell
    ``(gi, gj)``: among the four neighbours (up, left, down, right) the free one with the smallest
    BFS distance to the goal cell that is smaller than the current cell's, else the current cell.
    Distances are -1 for cells the goal cannot reach, exactly as OGBench's map holds them, so its
    comparisons are reproduced too. Looking the table up is what OGBench's per-step BFS computes.
    """

    def __init__(self, maze_map: np.ndarray):
        self.maze_map = np.asarray(maze_map, dtype=np.int64)
        rows, cols = self.maze_map.shape
        self.distance = np.full((rows, cols, rows, cols), -1, dtype=np.int64)
        self.subgoal_cell = np.zeros((rows, cols, rows, cols, 2), dtype=np.int64)
        free = [(i, j) for i in range(rows) for j in range(cols) if self.maze_map[i, j] == 0]
        for goal in free:
            dist = self._bfs(goal)
            self.distance[goal] = dist
            for i in range(rows):
                for j in range(cols):
                    best = (i, j)
                    for di, dj in _NEIGHBOURS:
                        ni, nj = i + di, j + dj
                        if (0 <= ni < rows and 0 <= nj < cols and self.maze_map[ni, nj] == 0
                                and dist[ni, nj] < dist[best]):
                            best = (ni, nj)
                    self.subgoal_cell[goal[0], goal[1], i, j] = best
        self.free_cells = free
        self.vertex_cells = [c for c in free if not self._is_hallway(c)]

    @classmethod
    def of(cls, maze: str) -> "MazeGeometry":
        """The geometry of a maze, read from OGBench's environment."""
        return cls(maze_map(maze))

    def _bfs(self, start: tuple[int, int]) -> np.ndarray:
        """BFS step counts from ``start`` to every cell (-1: unreachable or wall)."""
        return self._bfs_order(start)[0]

    def _bfs_order(self, start: tuple[int, int]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """(step counts, free cells in BFS discovery order) from ``start``."""
        rows, cols = self.maze_map.shape
        dist = np.full((rows, cols), -1, dtype=np.int64)
        dist[start] = 0
        queue = [start]
        head = 0
        while head < len(queue):
            i, j = queue[head]
            head += 1
            for di, dj in _NEIGHBOURS:
                ni, nj = i + di, j + dj
                if 0 <= ni < rows and 0 <= nj < cols and self.maze_map[ni, nj] == 0 and dist[ni, nj] == -1:
                    dist[ni, nj] = dist[i, j] + 1
                    queue.append((ni, nj))
        return dist, queue

    def _is_hallway(self, cell: tuple[int, int]) -> bool:
        """A straight corridor cell (free above and below, walls left and right, or the transpose);
        OGBench's navigate goals are drawn from the other free cells ("vertex cells")."""
        m = self.maze_map
        i, j = cell
        vertical = m[i - 1, j] == 0 and m[i + 1, j] == 0 and m[i, j - 1] == 1 and m[i, j + 1] == 1
        horizontal = m[i, j - 1] == 0 and m[i, j + 1] == 0 and m[i - 1, j] == 1 and m[i + 1, j] == 1
        return bool(vertical or horizontal)

    def cells_at_distance(self, start: tuple[int, int], steps: int) -> list[tuple[int, int]]:
        """Free cells exactly ``steps`` BFS steps from ``start``, in OGBench's discovery order
        (the order its stitch script lists candidate goals in)."""
        dist, order = self._bfs_order(start)
        return [cell for cell in order[1:] if dist[cell] == steps]  # order[0] is the start

    @staticmethod
    def cell_of(xy) -> np.ndarray:
        """Cell ``(i, j)`` of positions ``[..., 2]`` as OGBench's ``xy_to_ij`` (truncation to int)."""
        xy = np.asarray(xy, dtype=np.float64)
        i = np.trunc((xy[..., 1] + MAZE_OFFSET + 0.5 * MAZE_UNIT) / MAZE_UNIT).astype(np.int64)
        j = np.trunc((xy[..., 0] + MAZE_OFFSET + 0.5 * MAZE_UNIT) / MAZE_UNIT).astype(np.int64)
        return np.stack([i, j], axis=-1)

    @staticmethod
    def centre(cell) -> np.ndarray:
        """(x, y) of cell centres ``[..., 2]``, OGBench's ``ij_to_xy``."""
        cell = np.asarray(cell, dtype=np.float64)
        return np.stack([cell[..., 1] * MAZE_UNIT - MAZE_OFFSET, cell[..., 0] * MAZE_UNIT - MAZE_OFFSET], axis=-1)

    def oracle_direction(self, xy, goal_xy) -> np.ndarray:
        """OGBench's PointMaze oracle action, vectorised over ``[..., 2]``: the unit vector from
        ``xy`` towards the centre of the next cell on a shortest path to ``goal_xy``'s cell."""
        xy = np.asarray(xy, dtype=np.float64)
        if xy.ndim == 1:  # one position (data generation): OGBench's own scalar arithmetic, to the last bit
            gx, gy = float(goal_xy[0]), float(goal_xy[1])
            i, j = self._scalar_cell(xy[0], xy[1])
            si, sj = self.subgoal_cell[self._scalar_cell(gx, gy) + (i, j)]
            delta = np.array([sj * MAZE_UNIT - MAZE_OFFSET, si * MAZE_UNIT - MAZE_OFFSET]) - xy
            return delta / (np.linalg.norm(delta) + DIRECTION_EPS)
        cell = self.cell_of(xy)
        goal = self.cell_of(goal_xy)
        sub = self.subgoal_cell[goal[..., 0], goal[..., 1], cell[..., 0], cell[..., 1]]
        delta = self.centre(sub) - xy
        return delta / (np.sqrt((delta * delta).sum(-1, keepdims=True)) + DIRECTION_EPS)

    @staticmethod
    def _scalar_cell(x: float, y: float) -> tuple[int, int]:
        half = 0.5 * MAZE_UNIT
        return int((y + MAZE_OFFSET + half) / MAZE_UNIT), int((x + MAZE_OFFSET + half) / MAZE_UNIT)


def oracle_policy(geometry: MazeGeometry, *, noise: float = 0.0, seed: int = 0) -> Callable[[dict], np.ndarray]:
    """A batched policy for :func:`offbench.rollout.rollout`: OGBench's oracle direction plus
    Gaussian noise of standard deviation ``noise`` (0: deterministic), clipped to [-1, 1]."""
    rng = np.random.default_rng(seed)

    def act(observations: dict[str, np.ndarray]) -> np.ndarray:
        mean = geometry.oracle_direction(observations["observation"], observations["desired_goal"])
        if noise > 0:
            mean = mean + rng.normal(0.0, noise, mean.shape)
        return np.clip(mean, -1.0, 1.0).astype(np.float32)

    return act
