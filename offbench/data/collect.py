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


def collect_vectorised(env_id: str, policy, writer: DatasetWriter, *, num_steps: int, seed: int, num_envs: int = 8,
                       env_kwargs: dict | None = None, policy_id: int = 0,
                       on_step: Callable[[int], None] | None = None) -> list[float]:
    """Like :func:`collect`, stepping ``num_envs`` environments in lockstep with one batched
    policy call per step (``policy.act_batch``). Environment i is seeded ``seed + i`` once and
    continues its own random stream afterwards. Exactly ``num_steps`` steps are collected: in
    the last round only the remaining budget is stepped, and every episode still running at the
    budget is cut and marked truncated (final observation kept). Completed episodes are written
    in the order they finish (environment index breaks ties), so the file is deterministic for a
    given ``seed`` and ``num_envs``.
    """
    envs = [gym.make(env_id, **(env_kwargs or {})) for _ in range(num_envs)]
    current = []
    for i, env in enumerate(envs):
        obs, _ = env.reset(seed=seed + i)
        current.append({"obs": [obs], "sim": [simulator_state(env)], "act": [], "rew": [], "logp": [], "term": [],
                        "trunc": []})
    returns: list[float] = []

    def write(ep):
        sim = _stack(ep["sim"]) if ep["sim"][0] else None
        writer.add_episode(observations=_stack(ep["obs"]), actions=np.stack(ep["act"]), rewards=np.asarray(ep["rew"]),
                           terminations=np.asarray(ep["term"]), truncations=np.asarray(ep["trunc"]),
                           behaviour_log_prob=np.asarray(ep["logp"]), policy_id=policy_id, sim_state=sim)
        returns.append(float(np.sum(ep["rew"])))

    steps = 0
    while steps < num_steps:
        active = min(num_envs, num_steps - steps)
        actions, log_probs = policy.act_batch(np.stack([current[i]["obs"][-1] for i in range(active)]))
        for i in range(active):
            env, ep = envs[i], current[i]
            obs, reward, terminated, truncated, _ = env.step(actions[i])
            ep["obs"].append(obs)
            ep["sim"].append(simulator_state(env))
            ep["act"].append(actions[i])
            ep["rew"].append(reward)
            ep["logp"].append(log_probs[i])
            ep["term"].append(terminated)
            ep["trunc"].append(truncated and not terminated)
            if terminated or truncated:
                write(ep)
                obs, _ = env.reset()
                current[i] = {"obs": [obs], "sim": [simulator_state(env)], "act": [], "rew": [], "logp": [],
                              "term": [], "trunc": []}
        steps += active
        if on_step:
            on_step(active)
    for ep in current:  # the budget cuts the episodes still running
        if ep["act"]:
            ep["trunc"][-1] = not ep["term"][-1]
            write(ep)
    for env in envs:
        env.close()
    return returns
