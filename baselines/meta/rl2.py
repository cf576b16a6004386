r"""RL² (Duan, Schulman, Chen, Bartlett, Sutskever & Abbeel, "RL²: Fast Reinforcement Learning via
Slow Reinforcement Learning", 2016; course notes §13.1): a recurrent policy fed
(s_t, a_{t-1}, r_{t-1}, d_{t-1}) (section 2.3) whose hidden state runs across all the episodes of
a *trial* on one task and is reset only between trials (Figure 1), trained by a policy-gradient
outer loop to maximise the trial's total reward (section 2.2; the paper used TRPO, this module
PPO: ``baselines/online/ppo.py`` with ``recurrent=True``, whose loss and GAE are written there).
Adaptation is the hidden state's update; nothing is differentiated at test time.

The loop (:func:`train`): every PPO update starts ``num_envs`` fresh trials (``MetaTrial`` over a
family of ``offbench.envs.meta``; tasks drawn by ``sample_tasks`` inside the trial wrapper) with
reset seeds made from the run's seed and the update index, and collects ``trials_per_update``
whole trials in each environment; so an update boundary is a trial boundary in every
environment, the state of a run between updates is the network, the optimiser and the agent's
generator, and a killed run resumes to identical parameters. ``rollout_steps`` is therefore
``trials_per_update`` times the *longest* trial (:func:`trial_length`: ``episodes`` x the
family's episode time limit), a number fixed by the settings alone. GridNavi, bandits and the
point robot always take exactly that long. SignGrid's episodes may end sooner (at a corner):
an environment whose trials end early starts the next one within the same rollout (same-step
autoreset), and the trial still running at the rollout's end is cut there and bootstrapped
from its value, as at the end of any PPO rollout (the next update resets every environment).

Meta-test (:func:`evaluate`): ``trials`` trials of held-out tasks (``sample_tasks(trials, seed)``),
each episode's return kept, so the adaptation curve (the return of episode k = 1, 2, ...) and the
regret against an exact reference (``offbench.envs.meta.metrics``) follow.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from baselines.online.ppo import PPO, PPOConfig, TrainingLog
from offbench.atomic import write_atomic
from offbench.checkpoint import load_checkpoint, save_checkpoint
from offbench.cpu import torch_threads
from offbench.envs.meta import make_trial_env
from offbench.envs.vector import SerialVectorEnv
from offbench.errors import OffbenchError


@dataclass
class RL2Config:
    env_id: str = "offbench/GridNavi-v0"
    episodes: int = 4  # episodes per trial (GridNavi: VariBAD's 4)
    env_kwargs: dict = field(default_factory=dict)
    trials_per_update: int = 1  # whole trials per environment per PPO update
    ppo: PPOConfig = field(default_factory=lambda: PPOConfig(num_envs=16, recurrent=True, gru_hidden=64,
                                                            hidden=(64,), lr=7e-4, gamma=0.99, entropy_coef=0.01))


def make_env_fn(config: RL2Config, tasks=None) -> Callable[[], gym.Env]:
    return lambda: make_trial_env(config.env_id, config.episodes, tasks, **config.env_kwargs)


def trial_length(config: RL2Config) -> int:
    """The most steps a trial can take: ``episodes`` x the family's episode time limit
    (``max_episode_steps`` of the environment). Read from the family, not measured by playing
    an episode: where episodes may end sooner (SignGrid) a measured length would depend on the
    actions played, and with it PPO's rollout length and so the whole run."""
    env = make_env_fn(config)()
    try:
        limit = getattr(env.unwrapped, "max_episode_steps", None)
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise OffbenchError(f"RL² needs the episode time limit of {config.env_id} (max_episode_steps of "
                                f"{type(env.unwrapped).__name__}) to size its rollouts")
        return config.episodes * int(limit)
    finally:
        env.close()


def build_agent(config: RL2Config, seed: int) -> tuple[PPO, PPOConfig]:
    """The recurrent PPO agent, its rollout length set to whole trials."""
    if not config.ppo.recurrent:
        raise OffbenchError("RL² needs a recurrent policy: ppo.recurrent must be true")
    length = trial_length(config)
    ppo = replace(config.ppo, rollout_steps=length * config.trials_per_update)
    env = make_env_fn(config)()
    try:
        return PPO(env.observation_space, env.action_space, ppo, seed), ppo
    finally:
        env.close()


def train(config: RL2Config, updates: int, out: str | Path, *, seed: int = 0,
          on_update: Callable[[dict], None] | None = None, stop_at: int | None = None) -> PPO:
    """Meta-train for ``updates`` PPO updates into ``out`` (``metrics.jsonl``, ``checkpoint.*``,
    ``config.json``), resuming from a checkpoint there. ``stop_at``: return after that many
    updates of the ``updates``-update schedule (the learning rate anneals over ``updates``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    agent, ppo = build_agent(config, seed)
    resolved = json.loads(json.dumps({"rl2": asdict(config), "seed": seed}, default=list))
    config_path, stem, metrics = out / "config.json", out / "checkpoint", out / "metrics.jsonl"
    if config_path.exists() and json.loads(config_path.read_text()) != resolved:
        raise OffbenchError(f"{out} holds an RL² run with other settings or seed; use another folder")
    write_atomic(config_path, json.dumps(resolved, indent=2))
    done = 0
    if stem.with_suffix(".json").exists():
        done = load_checkpoint(stem, modules={"agent": agent}, optimizers={"ppo": agent.optimizer},
                               generators={"agent": agent.generator})["update"]
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    rows = rows[:done]
    N = ppo.num_envs
    envs = SerialVectorEnv([make_env_fn(config) for _ in range(N)])
    try:
        with torch_threads(ppo.threads):
            for u in range(done, min(updates, updates if stop_at is None else stop_at)):
                if ppo.anneal_lr:
                    for group in agent.optimizer.param_groups:
                        group["lr"] = ppo.lr * (1.0 - u / updates)
                obs, _ = envs.reset(seed=seed * 1_000_003 + u * N)
                state = {**agent.initial_state(N), "starts": torch.ones(N, dtype=torch.bool)}
                log = TrainingLog()
                buf, _, _ = agent.collect(envs, obs, state, log, u * ppo.rollout_steps * N, np.zeros(N))
                stats = agent.update(buf)
                row = {"update": u + 1, "env_steps": (u + 1) * ppo.rollout_steps * N,
                       "trial_return": float(np.mean(log.episode_returns)), **stats}
                rows.append(row)
                write_atomic(metrics, "".join(json.dumps(r) + "\n" for r in rows))
                save_checkpoint(stem, modules={"agent": agent}, optimizers={"ppo": agent.optimizer},
                                generators={"agent": agent.generator}, extra={"update": u + 1})
                if on_update:
                    on_update(row)
    finally:
        envs.close()
    return agent


@torch.no_grad()
def evaluate(agent: PPO, config: RL2Config, trials: int, seed: int, *, deterministic: bool = False) -> np.ndarray:
    """Per-episode returns ``[trials, episodes]`` on the tasks ``sample_tasks(trials, seed)``, one
    trial each, the hidden state carried across the trial's episodes."""
    probe = make_env_fn(config)()
    tasks = probe.unwrapped.sample_tasks(trials, seed)
    probe.close()
    envs = [make_env_fn(config, [task])() for task in tasks]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns = np.zeros((trials, config.episodes))
    episode = np.zeros(trials, int)
    state = agent.initial_state(trials)
    running = np.ones(trials, bool)
    training_stream, agent.generator = agent.generator, torch.Generator().manual_seed(seed)  # seeded, and
    try:                                                                     # the training stream untouched
        _play(agent, envs, obs, state, running, returns, episode, deterministic)
    finally:
        agent.generator = training_stream
    return returns


def _play(agent, envs, obs, state, running, returns, episode, deterministic) -> None:
    trials = len(envs)
    with torch_threads(agent.config.threads):
        while running.any():
            actions, state = agent.act(obs, state, deterministic=deterministic)
            rewards, episode_done = np.zeros(trials), np.zeros(trials, bool)
            for i in np.flatnonzero(running):
                o, r, terminated, truncated, info = envs[i].step(actions[i])
                obs[i], rewards[i] = o, r
                returns[i, episode[i]] += r
                episode_done[i] = info.get("episode_done", terminated or truncated)
                if episode_done[i]:
                    episode[i] += 1
                running[i] = not (terminated or truncated)
            state = agent.observe(state, rewards, episode_done, ~running)
