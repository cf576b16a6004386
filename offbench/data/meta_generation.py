r"""Offline meta-RL datasets: per-task trajectories of a meta-RL family with the task recorded on
every step (issue 17; the offline setting of MACAW, BOReL and FOCAL).

Recipe kind ``meta_tasks`` (a card's ``[recipe]`` table)::

    kind = "meta_tasks"
    family = "offbench/GridNavi-v0"   # an offbench.envs.meta family
    env_kwargs = {}
    tasks = 40                        # the training tasks: sample_tasks(tasks, task_seed)
    task_seed = 0
    episodes_per_task = 25
    behaviour = "expert"              # expert | random | mixed
    expert_fraction = 0.5             # mixed: each episode's behaviour is the expert with this probability
    epsilon = 0.1                     # discrete actions: the expert's uniform-action probability
    noise = 0.01                      # continuous actions: the expert's Gaussian noise (clipped to the box)
    seed = 0

Behaviour policies, each knowing the task (a per-task expert), with exact log-probabilities:

- GridNavi, SignGrid: walk a shortest path to the goal cell (x first, then y) and stay there
  (GridNavi) or enter it (SignGrid); with probability ``epsilon`` a uniform action instead, so
  ``log pi(a) = log(epsilon / |A| + (1 - epsilon) 1[a = expert's])``.
- Bernoulli bandits: pull the arm with the highest mean; the same epsilon mixture.
- Point robot: the step towards the goal, ``clip(goal - position, -0.1, 0.1)``, plus
  ``N(0, noise^2)``, clipped to the box; the log-probability of the clipped Gaussian
  (:func:`offbench.data.goal_generation.clipped_gaussian_log_prob`: the tail's mass at a bound).
- random: uniform actions (``log 1/|A|``, or the uniform density on the box).

Every step stores ``task_id`` (the task's index in the recipe's task list) and the task's
parameters as ``infos/task/<name>`` (e.g. ``infos/task/goal``), so a dataset can be split by task
and its tasks rebuilt without the recipe. Episode ``k`` of task ``i`` draws its randomness from
``(seed, i, k)`` alone.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from offbench.errors import OffbenchError

BEHAVIOURS = ("expert", "random", "mixed")
RECIPE_KEYS = ("family", "tasks", "task_seed", "episodes_per_task", "behaviour", "seed")
FAMILIES = ("offbench/GridNavi-v0", "offbench/SignGrid-v0", "offbench/BernoulliBandit-v0", "offbench/PointRobot-v0",
            "offbench/SparsePointRobot-v0")


def check_recipe(recipe: dict[str, Any], where: str) -> dict[str, Any]:
    missing = [k for k in RECIPE_KEYS if k not in recipe]
    if missing:
        raise OffbenchError(f"{where}: meta_tasks recipe lacks {missing} (it needs {list(RECIPE_KEYS)})")
    r = {"env_kwargs": {}, "expert_fraction": 0.5, "epsilon": 0.1, "noise": 0.01, **recipe}
    if r["family"] not in FAMILIES:
        raise OffbenchError(f"{where}: family {r['family']!r} is not one of {FAMILIES}")
    if r["behaviour"] not in BEHAVIOURS:
        raise OffbenchError(f"{where}: behaviour {r['behaviour']!r} is not one of {BEHAVIOURS}")
    for key in ("tasks", "task_seed", "episodes_per_task", "seed"):
        r[key] = int(r[key])
    if r["tasks"] < 1 or r["episodes_per_task"] < 1 or r["task_seed"] < 0 or r["seed"] < 0:
        raise OffbenchError(f"{where}: tasks and episodes_per_task must be >= 1, seeds >= 0")
    if not 0 < float(r["epsilon"]) <= 1 or not float(r["noise"]) > 0 or not 0 <= float(r["expert_fraction"]) <= 1:
        raise OffbenchError(f"{where}: epsilon must be in (0, 1], noise > 0 and expert_fraction in [0, 1] "
                            "(the behaviour log-probability needs full support)")
    return r


def make_env(recipe: dict[str, Any]) -> gym.Env:
    import offbench.envs.meta  # noqa: F401 - registers the families

    return gym.make(recipe["family"], disable_env_checker=True, **recipe["env_kwargs"])


def expert_action(env: gym.Env, obs: np.ndarray, task: dict) -> Any:
    """The task-aware expert's action (module docstring)."""
    unwrapped = env.unwrapped
    if "GridNavi" in type(unwrapped).__name__ or "SignGrid" in type(unwrapped).__name__:
        goal = tuple(task["goal"].tolist()) if hasattr(task["goal"], "tolist") and np.ndim(task["goal"]) else None
        if goal is None:  # SignGrid: the goal is an index into its corners
            goal = unwrapped.layout.goals[int(task["goal"])]
        x, y = int(obs[0]), int(obs[1])
        if x != goal[0]:
            return 2 if goal[0] > x else 4  # right / left
        if y != goal[1]:
            return 1 if goal[1] > y else 3  # up / down
        return 0  # stay
    if "Bandit" in type(unwrapped).__name__:
        return int(np.argmax(task["means"]))
    if "PointRobot" in type(unwrapped).__name__:
        step = env.action_space.high
        return np.clip(np.asarray(task["goal"]) - np.asarray(obs, np.float64), -step, step)
    raise OffbenchError(f"no expert for {type(unwrapped).__name__}")  # pragma: no cover - FAMILIES covers it


def _act(env: gym.Env, obs, task: dict, expert: bool, r: dict, rng: np.random.Generator) -> tuple[Any, float]:
    """(action, its behaviour log-probability)."""
    from offbench.data.goal_generation import clipped_gaussian_log_prob

    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        n = int(space.n)
        if not expert:
            return int(rng.integers(n)), float(-np.log(n))
        best, eps = expert_action(env, obs, task), float(r["epsilon"])
        action = int(rng.integers(n)) if rng.random() < eps else best
        return action, float(np.log(eps / n + (1 - eps) * (action == best)))
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    if not expert:
        return rng.uniform(low, high).astype(space.dtype), float(-np.log(high - low).sum())
    mean = expert_action(env, obs, task)
    action = np.clip(mean + rng.normal(0.0, float(r["noise"]), mean.shape), low, high)
    if not (np.allclose(low, low[0]) and np.allclose(high, high[0])):  # pragma: no cover - every family's box is
        raise OffbenchError("meta_tasks: the clipped-Gaussian log-probability needs the same bounds on every axis")
    return action.astype(space.dtype), float(clipped_gaussian_log_prob(action, mean, float(r["noise"]), low[0], high[0]))


def generate_episode(env: gym.Env, task: dict, task_index: int, episode: int, r: dict) -> dict:
    """One episode of task ``task_index`` as ``DatasetWriter.add_episode``'s keyword arguments."""
    rng = np.random.default_rng([r["seed"], task_index, episode])
    expert = {"expert": True, "random": False}.get(r["behaviour"], bool(rng.random() < float(r["expert_fraction"])))
    obs, _ = env.reset(seed=int(rng.integers(2 ** 31)), options={"task": task})
    observations, actions, rewards, terms, truncs, log_probs = [obs], [], [], [], [], []
    done = False
    while not done:
        action, log_prob = _act(env, obs, task, expert, r, rng)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated and not terminated)
        log_probs.append(log_prob)
        done = terminated or truncated
    T = len(actions)
    infos = {f"task/{k}": np.repeat(np.asarray(v)[None], T, axis=0) for k, v in task.items()}
    infos["expert"] = np.full(T, expert)
    return {"observations": np.asarray(observations, dtype=env.observation_space.dtype),
            "actions": np.asarray(actions, dtype=env.action_space.dtype), "rewards": np.asarray(rewards, np.float32),
            "terminations": np.asarray(terms), "truncations": np.asarray(truncs),
            "behaviour_log_prob": np.asarray(log_probs), "task_id": task_index, "infos": infos}


def training_tasks(recipe: dict[str, Any]) -> list[dict]:
    """The recipe's task list (``sample_tasks(tasks, task_seed)``)."""
    r = check_recipe(recipe, "meta_tasks recipe")
    env = make_env(r)
    try:
        return env.unwrapped.sample_tasks(r["tasks"], r["task_seed"])
    finally:
        env.close()


def write_meta_dataset(path: Path, recipe: dict[str, Any], *, dataset_id: str, description: str = "",
                       reference_scores: dict | None = None) -> Path:
    from offbench.data.writer import DatasetWriter

    r = check_recipe(recipe, dataset_id)
    env = make_env(r)
    tasks = env.unwrapped.sample_tasks(r["tasks"], r["task_seed"])
    behaviour = [{"name": f"meta_{r['behaviour']}", "checkpoint_sha256": None, "return": None,
                  "epsilon": r["epsilon"], "noise": r["noise"], "expert_fraction": r["expert_fraction"]}]
    try:
        with DatasetWriter(path, dataset_id=dataset_id, env_id=r["family"], observation_space=env.observation_space,
                           action_space=env.action_space, recipe=dict(recipe), behaviour_policies=behaviour,
                           reference_scores=reference_scores, description=description) as writer:
            for i, task in enumerate(tasks):
                for k in range(r["episodes_per_task"]):
                    writer.add_episode(**generate_episode(env, task, i, k, r))
    finally:
        env.close()
    return Path(path)


def build_from_card(card, path: Path, progress: bool) -> None:
    """The ``meta_tasks`` builder of ``offbench.data.recipes``."""
    r = check_recipe(card.recipe, str(card.path))
    if card.env_id != r["family"]:
        raise OffbenchError(f"{card.path}: env_id {card.env_id!r} must be the recipe's family {r['family']!r}")
    ref = card.reference_scores
    write_meta_dataset(path, card.recipe, dataset_id=card.id, description=card.description,
                       reference_scores=dict(ref) if ref and "random" in ref and "expert" in ref else None)
