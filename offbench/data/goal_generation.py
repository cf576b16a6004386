"""OGBench's PointMaze dataset recipe: a noisy oracle that walks the maze towards goals.

Recipe kind ``ogbench_pointmaze`` (a card's ``[recipe]`` table)::

    kind = "ogbench_pointmaze"
    maze = "medium"                 # medium | large | giant | teleport
    dataset_type = "navigate"       # navigate | stitch
    episodes = 1000                 # episodes in this file
    first_episode = 0               # index of the first one (the validation split starts after the training one)
    max_episode_steps = 1001        # steps per episode (every episode runs to this time limit)
    noise = 0.5                     # standard deviation of the Gaussian action noise
    seed = 0
    ogbench_version = "1.2.2"       # the simulator code the data was made with

What one episode is, as OGBench's ``data_gen_scripts/generate_locomaze.py`` makes it (read for
the facts; no code copied):

- start: a free cell drawn uniformly; OGBench's reset jitters the start and the goal by
  U[-1, 1] per axis around the cell centres;
- goal: *navigate*: a "vertex" cell (a free cell that is not a straight corridor) drawn
  uniformly, and a new one each time the goal is reached (success radius 1.0), so an episode
  visits many goals; *stitch*: a cell exactly 4 BFS steps from the start cell, drawn uniformly
  from those (the start cell if there is none), kept for the whole episode;
- action: ``clip(d + eps, -1, 1)`` with ``d`` the unit vector towards the centre of the next cell
  on a shortest path to the goal's cell (:meth:`offbench.envs.pointmaze.MazeGeometry.oracle_direction`)
  and ``eps ~ N(0, noise^2 I)``;
- the episode is never terminated (``terminate_at_goal=False``) and is truncated after
  ``max_episode_steps`` steps.

offbench stores all ``max_episode_steps`` transitions and the final observation (T + 1
observations; OGBench's files keep T observations and so lose the last transition). Each step
stores the Dict observation (``observation`` = ``achieved_goal`` = position, ``desired_goal`` = the
goal being pursued), the float32 action (the one applied to the simulator), the environment's
reward (1.0 at the goal, else 0.0), ``infos/success``, ``sim_state/qpos`` and ``sim_state/qvel``
(float64, with the final state) and the behaviour log-probability (:func:`clipped_gaussian_log_prob`).

Randomness: episode ``k`` draws from generators seeded by ``(seed, k)`` only, so the validation
split (``first_episode = episodes of the training split``) is generated without the training one,
and any range of episodes is reproducible on its own.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from scipy.special import log_ndtr

from offbench.envs import pointmaze
from offbench.errors import OffbenchError

DATASET_TYPES = ("navigate", "stitch")
STITCH_GOAL_STEPS = 4  # stitch goals are this many BFS steps from the start cell
RECIPE_KEYS = ("maze", "dataset_type", "episodes", "first_episode", "max_episode_steps", "noise", "seed",
               "ogbench_version")
BEHAVIOUR_NAME = "ogbench_pointmaze_oracle"


def clipped_gaussian_log_prob(actions: np.ndarray, mean: np.ndarray, std: float, low: float = -1.0,
                              high: float = 1.0) -> np.ndarray:
    """Log-probability of ``actions = clip(mean + N(0, std^2), low, high)``, summed over the last axis.

    The clipped Gaussian puts probability mass ``P(mean + eps >= high)`` on the value ``high``
    exactly (and ``P(mean + eps <= low)`` on ``low``), and Gaussian density everywhere strictly
    inside. Per coordinate the stored value is therefore

    - ``log Phi((mean - high) / std)`` where the action equals ``high`` (the tail's mass),
    - ``log Phi((low - mean) / std)`` where it equals ``low``,
    - ``log N(action; mean, std)`` otherwise (the density),

    i.e. the log of the density with respect to Lebesgue measure plus unit point masses at the
    bounds. A ratio of two such values for the same action (two clipped-Gaussian policies) is
    the exact importance weight. ``log_ndtr`` keeps far tails finite.
    """
    a = np.asarray(actions, dtype=np.float64)
    mu = np.asarray(mean, dtype=np.float64)
    z = (a - mu) / std
    density = -0.5 * z * z - math.log(std * math.sqrt(2.0 * math.pi))
    upper = log_ndtr((mu - high) / std)
    lower = log_ndtr((low - mu) / std)
    per_coordinate = np.where(a >= high, upper, np.where(a <= low, lower, density))
    return per_coordinate.sum(axis=-1)


def check_recipe(recipe: dict[str, Any], where: str) -> dict[str, Any]:
    """The recipe with its values typed; an incomplete or impossible recipe raises naming the key."""
    missing = [k for k in RECIPE_KEYS if k not in recipe]
    if missing:
        raise OffbenchError(f"{where}: ogbench_pointmaze recipe lacks {missing} (it needs {list(RECIPE_KEYS)})")
    r = dict(recipe)
    if r["maze"] not in pointmaze.MAZES:
        raise OffbenchError(f"{where}: maze {r['maze']!r} is not one of {pointmaze.MAZES}")
    if r["dataset_type"] not in DATASET_TYPES:
        raise OffbenchError(f"{where}: dataset_type {r['dataset_type']!r} is not one of {DATASET_TYPES}")
    for key in ("episodes", "first_episode", "max_episode_steps", "seed"):
        r[key] = int(r[key])
    if r["episodes"] < 1 or r["first_episode"] < 0 or r["max_episode_steps"] < 1:
        raise OffbenchError(f"{where}: episodes and max_episode_steps must be >= 1 and first_episode >= 0")
    r["noise"] = float(r["noise"])
    if not r["noise"] > 0:
        raise OffbenchError(f"{where}: noise must be > 0 (the behaviour log-probability needs a density), "
                            f"got {r['noise']}")
    return r


def _episode_streams(seed: int, episode: int) -> tuple[np.random.Generator, np.random.Generator, int]:
    """(cell draws, action noise, reset seed) of one episode, from ``(seed, episode)`` alone."""
    cells, noise, reset = np.random.SeedSequence([seed, episode]).spawn(3)
    return np.random.default_rng(cells), np.random.default_rng(noise), int(reset.generate_state(1)[0])


def generate_episode(env: gym.Env, geometry: pointmaze.MazeGeometry, *, dataset_type: str,
                     steps: int, noise: float, seed: int, episode: int) -> dict[str, Any]:
    """One episode as the arrays ``DatasetWriter.add_episode`` takes (``env`` from
    :func:`make_data_env`: no termination at the goal and a time limit of ``steps``)."""
    maze = pointmaze.goal_wrapper(env)
    cells, noise_rng, reset_seed = _episode_streams(seed, episode)
    start = geometry.free_cells[int(cells.integers(len(geometry.free_cells)))]
    if dataset_type == "navigate":
        goal = geometry.vertex_cells[int(cells.integers(len(geometry.vertex_cells)))]
    else:
        nearby = geometry.cells_at_distance(start, STITCH_GOAL_STEPS)
        goal = nearby[int(cells.integers(len(nearby)))] if nearby else start
    eps = noise_rng.normal(0.0, noise, size=(steps, 2))

    position = np.empty((steps + 1, 2), np.float32)
    desired = np.empty((steps + 1, 2), np.float32)
    qpos = np.empty((steps + 1, 2), np.float64)
    qvel = np.empty((steps + 1, 2), np.float64)
    mean = np.empty((steps, 2), np.float64)
    actions = np.empty((steps, 2), np.float32)
    rewards = np.empty(steps, np.float32)
    succeeded = np.empty(steps, bool)
    data = env.unwrapped.data

    obs, _ = env.reset(seed=reset_seed, options={"task_info": {"init_ij": start, "goal_ij": goal}})
    truncated = False
    for t in range(steps):
        position[t] = obs["observation"]
        desired[t] = obs["desired_goal"]
        qpos[t] = data.qpos
        qvel[t] = data.qvel
        mean[t] = geometry.oracle_direction(maze.position, maze.goal)
        actions[t] = np.clip(mean[t] + eps[t], -1.0, 1.0)
        obs, reward, terminated, truncated, info = env.step(actions[t])
        if terminated or (truncated and t < steps - 1):
            raise OffbenchError(f"episode {episode} ended at step {t + 1} of {steps}: the data environment must be "
                                "made with terminate_at_goal=False and a time limit of max_episode_steps")
        rewards[t] = reward
        succeeded[t] = bool(info["success"])
        if succeeded[t] and dataset_type == "navigate":
            maze.set_goal_cell(geometry.vertex_cells[int(cells.integers(len(geometry.vertex_cells)))])
            obs = {**obs, "desired_goal": maze.goal.astype(np.float32)}
    if not truncated:
        raise OffbenchError(f"episode {episode} was not truncated after {steps} steps: the data environment's "
                            "time limit must equal max_episode_steps")
    position[steps] = obs["observation"]
    desired[steps] = obs["desired_goal"]
    qpos[steps] = data.qpos
    qvel[steps] = data.qvel
    flags = np.zeros(steps, bool)
    last = flags.copy()
    last[-1] = True
    return {
        "observations": {"observation": position, "achieved_goal": position.copy(), "desired_goal": desired},
        "actions": actions, "rewards": rewards, "terminations": flags, "truncations": last,
        "behaviour_log_prob": clipped_gaussian_log_prob(actions, mean, noise), "policy_id": 0,
        "sim_state": {"qpos": qpos, "qvel": qvel}, "infos": {"success": succeeded},
    }


def make_data_env(maze: str, max_episode_steps: int) -> gym.Env:
    """The environment the data comes from: OGBench's data settings (no termination at the goal)."""
    return gym.make(pointmaze.env_id(maze), terminate_at_goal=False, max_episode_steps=int(max_episode_steps))


def _env_spec(env: gym.Env) -> dict | None:
    try:
        return json.loads(env.spec.to_json())
    except (AttributeError, TypeError, ValueError):
        return None


def write_pointmaze(path: Path, recipe: dict[str, Any], *, dataset_id: str, description: str = "",
                    reference_scores: dict | None = None, progress: bool = False) -> Path:
    """Generate the episodes of an ``ogbench_pointmaze`` recipe into the dataset file ``path``."""
    from tqdm.auto import tqdm

    from offbench.data.writer import DatasetWriter

    r = check_recipe(recipe, dataset_id)
    pointmaze.require_ogbench(r["ogbench_version"])
    env = make_data_env(r["maze"], r["max_episode_steps"])
    geometry = pointmaze.MazeGeometry(env.unwrapped.maze_map)
    behaviour = [{"name": BEHAVIOUR_NAME, "checkpoint_sha256": None, "return": None,
                  "noise": r["noise"], "dataset_type": r["dataset_type"]}]
    total = r["episodes"] * r["max_episode_steps"]
    try:
        with DatasetWriter(path, dataset_id=dataset_id, env_id=pointmaze.env_id(r["maze"]),
                           observation_space=env.observation_space, action_space=env.action_space,
                           env_spec=_env_spec(env), recipe=dict(recipe), behaviour_policies=behaviour,
                           reference_scores=reference_scores, description=description) as writer, \
                tqdm(total=total, desc=dataset_id, unit="step", unit_scale=True, disable=not progress,
                     leave=False) as bar:
            for episode in range(r["first_episode"], r["first_episode"] + r["episodes"]):
                writer.add_episode(**generate_episode(env, geometry, dataset_type=r["dataset_type"],
                                                      steps=r["max_episode_steps"], noise=r["noise"],
                                                      seed=r["seed"], episode=episode))
                bar.update(r["max_episode_steps"])
    finally:
        env.close()
    return Path(path)


def build_from_card(card, path: Path, progress: bool) -> None:
    """The ``ogbench_pointmaze`` builder of ``offbench.data.recipes`` (see the module docstring)."""
    recipe = check_recipe(card.recipe, str(card.path))
    if card.env_id != pointmaze.env_id(recipe["maze"]):
        raise OffbenchError(f"{card.path}: env_id {card.env_id!r} does not match the recipe's maze "
                            f"(expected {pointmaze.env_id(recipe['maze'])!r})")
    ref = card.reference_scores
    reference = dict(ref) if ref and "random" in ref and "expert" in ref else None
    write_pointmaze(path, card.recipe, dataset_id=card.id, description=card.description,
                    reference_scores=reference, progress=progress)


__all__ = ["DATASET_TYPES", "build_from_card", "check_recipe", "clipped_gaussian_log_prob", "generate_episode",
           "make_data_env", "write_pointmaze"]
