"""Batched policy rollouts over several environments at once (evaluation, reference scores).

One policy call per step serves every still-running episode; environments are stepped in
this process (gymnasium's synchronous vector env was measured faster than the asynchronous
one on this machine, REFERENCE §9, and a plain loop also avoids auto-reset semantics).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import gymnasium as gym
import numpy as np


@dataclass
class RolloutResult:
    returns: np.ndarray  # [episodes] undiscounted
    lengths: np.ndarray  # [episodes]
    terminated: np.ndarray  # [episodes] bool: ended by the MDP, not the time limit
    success: np.ndarray | None = None  # [episodes] bool where the env reports info["success"] / "is_success"
    discounted_returns: np.ndarray | None = None  # [episodes] sum_t gamma^t r_t, only when rollout(gamma=...)
    task_ids: np.ndarray | None = None  # [episodes] where the env reports info["task_id"] at reset (goal tasks)

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def stderr(self) -> float:
        return float(self.returns.std(ddof=1) / np.sqrt(len(self.returns))) if len(self.returns) > 1 else 0.0


class EpisodicPolicy(Protocol):
    """A policy that keeps per-episode context (e.g. Decision Transformer's history).

    ``rollout`` calls ``reset(slot)`` when an episode starts in environment slot ``slot``,
    ``act(observations, slots)`` for the running slots, and ``observe(slots, rewards)`` after
    each step. Plain callables ``observations -> actions`` are accepted too.
    """

    def reset(self, slot: int) -> None: ...

    def act(self, observations: np.ndarray, slots: list[int]) -> np.ndarray: ...

    def observe(self, slots: list[int], rewards: np.ndarray) -> None: ...


def _stack(observations: list):
    """A batch of observations: one array, or for Dict observations (goal-conditioned envs such
    as ``offbench/pointmaze-*``) a dict of arrays, one per key."""
    if isinstance(observations[0], dict):
        return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
    return np.stack(observations)


def rollout(policy: Callable[[np.ndarray], np.ndarray] | EpisodicPolicy, env_id: str, episodes: int, *, seed: int,
            parallel: int = 10, env_kwargs: dict | None = None, gamma: float | None = None) -> RolloutResult:
    """Run ``episodes`` full episodes; ``policy`` maps a batch of observations to a batch of
    actions (or is an :class:`EpisodicPolicy`). Dict observations reach it as a dict of batches.

    Episode i is reset with seed ``seed + i``, so results do not depend on ``parallel``.
    ``gamma`` also accumulates the discounted returns ``sum_t gamma^t r_t`` (``discounted_returns``).
    """
    episodic = hasattr(policy, "reset") and hasattr(policy, "act")
    envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(min(parallel, episodes))]
    returns = np.zeros(episodes)
    discounted = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=np.int64)
    terminated = np.zeros(episodes, dtype=bool)
    success = np.zeros(episodes, dtype=bool)
    saw_success = False
    task_ids: list = [None] * episodes
    next_episode = 0
    slots: list[tuple[int, gym.Env, object]] = []  # (episode index, env, current observation)
    slot_of = {id(env): k for k, env in enumerate(envs)}

    def start(env):
        nonlocal next_episode
        obs, info = env.reset(seed=seed + next_episode)
        task_ids[next_episode] = info.get("task_id")
        slots.append((next_episode, env, obs))
        next_episode += 1
        if episodic:
            policy.reset(slot_of[id(env)])

    for env in envs:
        start(env)
    while slots:
        observations = _stack([obs for _, _, obs in slots])
        running = [slot_of[id(env)] for _, env, _ in slots]
        actions = policy.act(observations, running) if episodic else policy(observations)
        still = []
        free = []
        rewards = np.zeros(len(slots))
        for k, ((i, env, _), action) in enumerate(zip(slots, actions)):
            obs, reward, term, trunc, info = env.step(action)
            rewards[k] = float(reward)
            returns[i] += float(reward)
            if gamma is not None:
                discounted[i] += float(gamma) ** int(lengths[i]) * float(reward)
            lengths[i] += 1
            for key in ("success", "is_success"):
                if key in info:
                    saw_success = True
                    success[i] |= bool(info[key])
            if term or trunc:
                terminated[i] = bool(term)
                free.append(env)
            else:
                still.append((i, env, obs))
        if episodic:
            policy.observe(running, rewards)
        slots = still
        for env in free:
            if next_episode < episodes:
                start(env)
    for env in envs:
        env.close()
    return RolloutResult(returns, lengths, terminated, success if saw_success else None,
                         discounted if gamma is not None else None,
                         np.array(task_ids, dtype=np.int64) if all(t is not None for t in task_ids) else None)
