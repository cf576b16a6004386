"""``SerialVectorEnv``: N environments stepped one after another, each reset in the step it ends.

The same results as ``gymnasium.vector.SyncVectorEnv(env_fns, autoreset_mode=SAME_STEP)`` for
what on-policy training reads, without its per-step cost: Gymnasium merges every step's info
dictionary into masked arrays and deep-copies the batched observation, which took about a third
of a PPO rollout on the meta-RL environments (``scripts/bench_online.py``; docs/algorithms.md).

Semantics (Gymnasium's same-step autoreset):

- ``reset(seed=s)`` seeds environment ``i`` with ``s + i`` (a list gives each its own seed);
  ``reset()`` without a seed draws from each environment's own stream.
- ``step(actions)`` steps environment ``i`` with ``actions[i]``. Where it terminates or is
  truncated, the environment is reset at once (without a seed): the returned observation is the
  reset's, the final one is ``info["final_obs"][i]`` (and its info ``info["final_info"][i]``),
  with the masks ``info["_final_obs"]`` and ``info["_final_info"]``.
- Observations are a new array each step (``np.asarray`` of the rows, in the batched space's
  dtype); rewards float64, the end flags bool.
- Info values that are numbers or booleans become one array per key (zero where an
  environment did not report the key) with its mask ``info["_key"]``, as Gymnasium's; any other
  value goes into an object array, also masked. Where an environment was reset, its info is
  the reset's, as in Gymnasium.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from offbench.errors import OffbenchError


class SerialVectorEnv(gym.vector.VectorEnv):
    """``env_fns`` built once each and stepped in order (module doc)."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]):
        if not env_fns:
            raise OffbenchError("SerialVectorEnv needs at least one environment function")
        self.envs = [fn() for fn in env_fns]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        for i, env in enumerate(self.envs[1:], 1):
            if env.observation_space != self.single_observation_space or env.action_space != self.single_action_space:
                raise OffbenchError(f"SerialVectorEnv: environment {i}'s spaces differ from environment 0's")
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {**getattr(self.envs[0], "metadata", {}), "autoreset_mode": AutoresetMode.SAME_STEP}
        self.render_mode = None
        self.spec = None
        self._obs_dtype = getattr(self.single_observation_space, "dtype", None)

    def _stack(self, rows: list) -> np.ndarray:
        return np.asarray(rows, dtype=self._obs_dtype)

    def reset(self, *, seed: int | Sequence[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise OffbenchError(f"SerialVectorEnv.reset: {len(seeds)} seeds for {self.num_envs} environments")
        observations, infos = [], _InfoMerger(self.num_envs)
        for i, (env, env_seed) in enumerate(zip(self.envs, seeds)):
            obs, info = env.reset(seed=env_seed, options=options)
            observations.append(obs)
            infos.add(i, info)
        return self._stack(observations), infos.result()

    def step(self, actions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        n = self.num_envs
        observations = []
        rewards = np.zeros(n, np.float64)
        terminations, truncations = np.zeros(n, bool), np.zeros(n, bool)
        infos = _InfoMerger(n)
        for i, env in enumerate(self.envs):
            obs, reward, terminated, truncated, info = env.step(actions[i])
            rewards[i], terminations[i], truncations[i] = reward, terminated, truncated
            if terminated or truncated:
                infos.add_final(i, obs, info)
                obs, info = env.reset()
            observations.append(obs)
            infos.add(i, info)
        return self._stack(observations), rewards, terminations, truncations, infos.result()

    def close_extras(self, **kwargs) -> None:
        for env in self.envs:
            env.close()


class _InfoMerger:
    """Per-environment info dictionaries as masked arrays (module doc)."""

    def __init__(self, n: int):
        self.n = n
        self.values: dict[str, list] = {}
        self.finals: list[int] = []
        self.final_obs: list = []
        self.final_info: list = []

    def add(self, i: int, info: dict) -> None:
        for key, value in info.items():
            self.values.setdefault(key, [None] * self.n)[i] = value

    def add_final(self, i: int, obs, info: dict) -> None:
        self.finals.append(i)
        self.final_obs.append(obs)
        self.final_info.append(info)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, column in self.values.items():
            present = np.array([v is not None for v in column])
            kinds = {type(v) for v in column if v is not None}
            if all(issubclass(k, (bool, np.bool_)) for k in kinds):
                array = np.array([bool(v) if v is not None else False for v in column])
            elif all(issubclass(k, (int, float, np.integer, np.floating)) and not issubclass(k, (bool, np.bool_))
                     for k in kinds):
                array = np.array([v if v is not None else 0 for v in column])
            else:
                array = np.empty(self.n, dtype=object)
                array[:] = column
            out[key], out[f"_{key}"] = array, present
        if self.finals:
            final_obs, final_info = np.empty(self.n, dtype=object), np.empty(self.n, dtype=object)
            mask = np.zeros(self.n, bool)
            for i, obs, info in zip(self.finals, self.final_obs, self.final_info):
                final_obs[i], final_info[i], mask[i] = obs, info, True
            out.update(final_obs=final_obs, _final_obs=mask, final_info=final_info, _final_info=mask.copy())
        return out
