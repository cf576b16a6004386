r"""The meta-RL task API shared by every family in :mod:`offbench.envs.meta`, and trials.

Tasks
-----
A *task* is one member of a family: a bandit's arm means, GridNavi's goal cell, a target
velocity. Every family environment implements :class:`MetaTaskEnv`:

- ``sample_tasks(n, seed)``: ``n`` tasks drawn from the family's task distribution with a
  generator made from ``seed`` alone, so the same ``(n, seed)`` gives the same tasks on any
  machine and whatever the environment has done before (train/test task sets are seeds);
- ``set_task(task)``: checks the task (an :class:`~offbench.errors.OffbenchError` names the
  bad field) and makes it the current one; it takes effect at the next ``reset``;
- ``get_task()``: a copy of the current task.

A task is a ``dict`` of named parameters (floats, ints or small NumPy arrays), e.g.
``{"goal": array([3, 4])}``. ``reset(options={"task": task})`` is ``set_task`` then
``reset``. An environment whose task was never set draws one from its own ``np_random`` at
the first ``reset`` (so ``gym.make(...)`` works as a plain Gymnasium environment), and keeps
its task across resets: consecutive episodes of one environment are episodes *of the same
task*, which is exactly what a meta-RL trial is made of.

Recording. ``info["task"]`` holds the current task in the info of every ``reset`` and every
``step``, so whatever records episodes (a dataset writer, a rollout) records the task
parameters with them.

Trials
------
:class:`MetaTrial` turns a family environment into the environment a black-box meta-learner
(RL², Duan et al. 2016, section 2.2) or a Bayes-adaptive agent (VariBAD's BAMDP, Zintgraf et
al. 2020) acts in: one Gymnasium episode of the wrapper is a *trial* of ``episodes``
consecutive episodes of one task. At ``reset`` it draws a new task (from a fixed task list if
given, else from ``sample_tasks`` with a seed taken from the wrapper's own generator, seeded by
``reset(seed=...)`` and separate from the inner environment's);
when an inner episode ends it resets the inner environment itself (same task) and reports
``info["episode_done"] = True`` with the inner episode's last observation in
``info["episode_final_observation"]`` (the returned observation is the next episode's first,
as in RL²'s Figure 1). ``info["episode"]`` is the index of the inner episode the returned
observation belongs to. The trial ends with ``terminated=True`` after the last inner
episode: the trial's total reward is the meta-RL objective, and nothing follows it (no value
to bootstrap).
"""
from __future__ import annotations

import copy
from typing import Any, Protocol, Sequence, runtime_checkable

import gymnasium as gym
import numpy as np

from offbench.errors import OffbenchError

Task = dict[str, Any]


@runtime_checkable
class MetaTaskEnv(Protocol):
    """What every meta-RL family environment offers besides the Gymnasium API."""

    def sample_tasks(self, n: int, seed: int) -> list[Task]: ...

    def set_task(self, task: Task) -> None: ...

    def get_task(self) -> Task: ...


def check_count(n: Any, what: str = "n") -> int:
    """``n`` as a positive int, or an OffbenchError that says what was given."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise OffbenchError(f"{what} must be a positive integer, got {n!r}")
    return int(n)


def check_seed(seed: Any) -> int:
    """``seed`` as a non-negative int (what ``np.random.default_rng`` accepts)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OffbenchError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def task_field(task: Any, name: str, shape: tuple[int, ...], family: str, *, dtype=np.float64) -> np.ndarray:
    """The field ``name`` of ``task`` as a finite array of ``shape`` (``()`` for a scalar)."""
    if not isinstance(task, dict):
        raise OffbenchError(f"{family}: a task is a dict like {{{name!r}: ...}}, got {type(task).__name__}")
    if name not in task:
        raise OffbenchError(f"{family}: the task has no {name!r} field (fields: {sorted(task)})")
    try:
        value = np.asarray(task[name], dtype=np.float64)
    except (TypeError, ValueError):
        raise OffbenchError(f"{family}: task[{name!r}] = {task[name]!r} is not numeric") from None
    if value.shape != shape:
        raise OffbenchError(f"{family}: task[{name!r}] must have shape {shape}, got {value.shape}")
    if not np.all(np.isfinite(value)):
        raise OffbenchError(f"{family}: task[{name!r}] must be finite, got {task[name]!r}")
    if np.issubdtype(dtype, np.integer):
        if not np.all(value == np.round(value)):
            raise OffbenchError(f"{family}: task[{name!r}] must be integers, got {task[name]!r}")
        return value.astype(dtype)
    return value.astype(dtype)


def copy_task(task: Task) -> Task:
    """A copy of ``task`` that shares nothing mutable with it: arrays copied, numbers as they are,
    anything else deep-copied. (Every step's info carries the task; ``copy.deepcopy`` of the
    whole dictionary cost more than a GridNavi step itself.)"""
    return {key: value.copy() if isinstance(value, np.ndarray)
            else value if isinstance(value, (int, float, str, np.generic)) else copy.deepcopy(value)
            for key, value in task.items()}


class MetaTaskMixin:
    """The task half of :class:`MetaTaskEnv` for a ``gym.Env`` subclass.

    A family implements ``_draw_task(rng)`` (one task from the distribution) and
    ``_check_task(task)`` (a normalised copy, or an OffbenchError), calls
    ``self._start_episode_task(options)`` at the top of ``reset`` (after seeding) and adds
    ``self._task_info()`` to its infos.
    """

    family = "meta task"
    _task: Task | None = None

    def _draw_task(self, rng: np.random.Generator) -> Task:
        raise NotImplementedError

    def _check_task(self, task: Task) -> Task:
        raise NotImplementedError

    def sample_tasks(self, n: int, seed: int) -> list[Task]:
        n, rng = check_count(n), np.random.default_rng(check_seed(seed))
        return [self._draw_task(rng) for _ in range(n)]

    def set_task(self, task: Task) -> None:
        self._task = self._check_task(task)

    def get_task(self) -> Task:
        if self._task is None:
            raise OffbenchError(f"{self.family}: no task yet; call set_task(task) or reset() first")
        return copy_task(self._task)

    def _start_episode_task(self, options: dict | None) -> Task:
        """Apply ``options["task"]`` if given; draw a task if none was ever set."""
        if options and "task" in options:
            self.set_task(options["task"])
        elif self._task is None:
            self._task = self._check_task(self._draw_task(self.np_random))
        return self._task

    def _task_info(self) -> dict:
        return {"task": copy_task(self._task)}


class MetaTrial(gym.Wrapper):
    """One Gymnasium episode = one trial of ``episodes`` episodes of a single task (module doc)."""

    def __init__(self, env: gym.Env, episodes: int, tasks: Sequence[Task] | None = None):
        super().__init__(env)
        if not isinstance(env.unwrapped, MetaTaskEnv):
            raise OffbenchError(f"MetaTrial needs a meta-RL family environment (sample_tasks/set_task/get_task); "
                                f"{type(env.unwrapped).__name__} is not one")
        self.episodes = check_count(episodes, "episodes per trial")
        self.tasks = None
        if tasks is not None:
            if len(tasks) == 0:
                raise OffbenchError("MetaTrial: the task list is empty")
            for task in tasks:  # fail now, not at some later trial
                env.unwrapped._check_task(task)
            self.tasks = [copy.deepcopy(t) for t in tasks]
        self.episode = 0
        self._trial_rng: np.random.Generator | None = None  # task draws; separate from the inner env's RNG

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._trial_rng = np.random.default_rng(check_seed(seed))
        elif self._trial_rng is None:  # unseeded, as Gymnasium environments are
            self._trial_rng = np.random.default_rng()
        if options and "task" in options:
            task = options["task"]
        elif self.tasks is not None:
            task = self.tasks[int(self._trial_rng.integers(len(self.tasks)))]
        else:
            task = self.env.unwrapped.sample_tasks(1, seed=int(self._trial_rng.integers(2**63 - 1)))[0]
        self.episode = 0
        inner_seed = None if seed is None else int(self._trial_rng.integers(2**63 - 1))
        obs, info = self.env.reset(seed=inner_seed, options={**(options or {}), "task": task})
        return obs, {**info, "episode": 0, "episode_done": False}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "episode_done": bool(terminated or truncated), "episode": self.episode}
        if not (terminated or truncated):
            return obs, reward, False, False, info
        self.episode += 1
        if self.episode >= self.episodes:  # the trial is over
            return obs, reward, True, False, info
        info["episode_final_observation"] = obs
        info["episode_final_terminated"] = bool(terminated)
        obs, _ = self.env.reset()  # same task: the inner env keeps it
        info["episode"] = self.episode
        return obs, reward, False, False, info


def make_trial_env(env_id: str, episodes: int, tasks: Sequence[Task] | None = None, **kwargs) -> MetaTrial:
    """``MetaTrial(gym.make(env_id, **kwargs), episodes, tasks)``."""
    return MetaTrial(gym.make(env_id, disable_env_checker=True, **kwargs), episodes, tasks)
