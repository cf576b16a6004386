"""Roll a behaviour policy out in an environment and stream the episodes into a writer."""
from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from offbench.behaviour import BehaviourPolicy
from offbench.data.writer import DatasetWriter


def simulator_state(env: gym.Env) -> dict[str, np.ndarray]:
    """The simulator state to store beside observations: qpos/qvel for MuJoCo envs,
    ``state`` for classic-control envs that keep one (e.g. Pendulum's [theta, theta_dot])."""
    inner = env.unwrapped
    data = getattr(inner, "data", None)
    if data is not None and hasattr(data, "qpos"):
        return {"qpos": np.array(data.qpos, dtype=np.float64), "qvel": np.array(data.qvel, dtype=np.float64)}
    state = getattr(inner, "state", None)
    if state is not None:
        return {"state": np.array(state, dtype=np.float64).reshape(-1)}
    return {}


def _stack(rows):
    if isinstance(rows[0], dict):
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    return np.stack(rows)


def collect(env: gym.Env, policy: BehaviourPolicy, writer: DatasetWriter, *, num_steps: int, seed: int,
            policy_id: int = 0, on_step: Callable[[int], None] | None = None) -> list[float]:
    """Collect exactly ``num_steps`` steps; return the undiscounted return of each episode.

    Episodes end when the env terminates or truncates (time limit); the last episode is
    cut at the step budget and marked truncated (its final observation is kept, so its
    last transition stays valid for bootstrapping). The env is seeded once with ``seed``
    and the policy draws from its own generator seeded from ``seed``.
    """
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    returns: list[float] = []
    steps = 0
    while steps < num_steps:
        observations, states = [obs], [simulator_state(env)]
        actions, rewards, log_probs, terms, truncs = [], [], [], [], []
        while True:
            action, log_prob = policy.act(obs, rng)
            obs, reward, terminated, truncated, _ = env.step(action)
            steps += 1
            if steps >= num_steps:
                truncated = True  # the data budget ends the episode
            observations.append(obs)
            states.append(simulator_state(env))
            actions.append(action)
            rewards.append(reward)
            log_probs.append(log_prob)
            terms.append(terminated)
            truncs.append(truncated and not terminated)
            if on_step:
                on_step(1)
            if terminated or truncated:
                break
        sim = _stack(states) if states[0] else None
        writer.add_episode(
            observations=_stack(observations), actions=np.stack(actions), rewards=np.asarray(rewards),
            terminations=np.asarray(terms), truncations=np.asarray(truncs),
            behaviour_log_prob=None if policy.deterministic else np.asarray(log_probs),
            policy_id=policy_id, sim_state=sim)
        returns.append(float(np.sum(rewards)))
        if steps < num_steps:
            obs, _ = env.reset()
    return returns


def measure_returns(env: gym.Env, policy: BehaviourPolicy, *, episodes: int, seed: int) -> np.ndarray:
    """Undiscounted returns of ``episodes`` full episodes (for reference scores)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            action, _ = policy.act(obs, rng)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        out.append(total)
    return np.asarray(out)
