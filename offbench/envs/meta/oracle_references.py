r"""Measured references for a meta benchmark whose optimum cannot be computed (HalfCheetahVel).

On the bandits, GridNavi, SignGrid and the point robot the reference trial return is exact
(:mod:`offbench.envs.meta.benchmarks`). On HalfCheetahVel it is a *per-task oracle*: one SAC agent
trained on ``offbench/HalfCheetahVelOracle-v0``, which observes the target velocity (MAML's and
PEARL's oracle baseline). Its checkpoint ships in ``datasets/policies/cheetah-vel/`` and its
measured returns in a *references card* beside it, so a report does not replay MuJoCo:

- ``tasks``: the held-out tasks, ``sample_tasks(n, EVAL_TASK_SEED)`` (prefix-consistent, so the
  first ``k`` entries are the ``k``-task evaluation set);
- ``oracle_trial_returns[i]``: the oracle's trial return on task ``i``, acting with its mean
  action (deterministic) for the benchmark's ``episodes`` episodes, simulator reset seeded with
  ``seed + i``;
- ``random_trial_returns[i]``: the mean over ``random_trials`` trials of a uniformly random
  policy (actions drawn from a generator seeded with ``seed + i``).

A benchmark's ``(random, reference)`` is then the mean of the first ``tasks`` entries of each
list, as for the point robot. :func:`measure_references` writes a card;
:func:`card_references` reads one and checks that its tasks are the benchmark's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from offbench.errors import OffbenchError

#: the references card of each benchmark with a measured oracle, relative to the catalogue dir
REFERENCE_CARDS = {"meta/cheetah-vel-v0": "policies/cheetah-vel/references.json"}


def _trial_return(env, act, task: dict, episodes: int, seed: int) -> float:
    total = 0.0
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None, options={"task": task})
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(act(obs))
            total += float(reward)
            done = terminated or truncated
    return total


def measure_references(benchmark, held_out: list[dict], eval_task_seed: int, oracle_checkpoint: str | Path, *,
                       random_trials: int = 5, seed: int = 0) -> dict[str, Any]:
    """Play the oracle checkpoint and a uniformly random policy on ``held_out``, the first tasks of
    ``sample_tasks(n, eval_task_seed)`` of ``benchmark`` (a ``MetaBenchmark``), and return the
    references card (module doc)."""
    import gymnasium as gym
    import torch

    from offbench.behaviour import CheckpointPolicy

    benchmark_id = benchmark.benchmark_id
    if benchmark_id not in REFERENCE_CARDS:
        raise OffbenchError(f"{benchmark_id} has exact references; only {sorted(REFERENCE_CARDS)} are measured")
    oracle = CheckpointPolicy(oracle_checkpoint, deterministic=True)
    oracle_env_id = oracle.info["env_id"]
    oracle_env = gym.make(oracle_env_id, disable_env_checker=True, **benchmark.env_kwargs)
    plain_env = gym.make(benchmark.env_id, disable_env_checker=True, **benchmark.env_kwargs)
    try:
        def oracle_act(obs):
            with torch.no_grad():
                return oracle.act_batch(np.asarray(obs, np.float32)[None])[0][0]

        oracle_returns, random_returns = [], []
        for i, task in enumerate(held_out):
            oracle_returns.append(_trial_return(oracle_env, oracle_act, task, benchmark.episodes, seed + i))
            rng = np.random.default_rng(seed + i)
            space = plain_env.action_space
            trials = [_trial_return(plain_env, lambda _obs: rng.uniform(space.low, space.high).astype(space.dtype),
                                    task, benchmark.episodes, seed + i + 1_000_000 * (k + 1))
                      for k in range(random_trials)]
            random_returns.append(float(np.mean(trials)))
    finally:
        oracle_env.close()
        plain_env.close()
    return {
        "benchmark": benchmark_id,
        "env_id": benchmark.env_id,
        "episodes": benchmark.episodes,
        "eval_task_seed": eval_task_seed,
        "seed": seed,
        "oracle": {"checkpoint": Path(oracle_checkpoint).name, "sha256": oracle.sha256, "env_id": oracle_env_id,
                   "step": oracle.info.get("step"), "actions": "deterministic (the policy's mean)"},
        "random_trials": random_trials,
        "tasks": held_out,
        "oracle_trial_returns": [round(r, 4) for r in oracle_returns],
        "random_trial_returns": [round(r, 4) for r in random_returns],
    }


def card_path(benchmark_id: str) -> Path:
    from offbench.data.catalogue import catalogue_dir

    if benchmark_id not in REFERENCE_CARDS:
        raise OffbenchError(f"{benchmark_id} has no references card")
    return catalogue_dir() / REFERENCE_CARDS[benchmark_id]


def card_references(benchmark, held_out: list[dict], eval_task_seed: int) -> tuple[float, float]:
    """``(random, oracle)`` mean trial returns over ``held_out`` (the first tasks of
    ``sample_tasks(n, eval_task_seed)`` of ``benchmark``, a ``MetaBenchmark``), read from the
    benchmark's references card; an error names the card if it is missing, was made for other
    tasks, or is too short."""
    benchmark_id, tasks = benchmark.benchmark_id, len(held_out)
    path = card_path(benchmark_id)
    if not path.is_file():
        raise OffbenchError(f"{benchmark_id}: references card {path} not found (is the repository's datasets/ "
                            "directory present?)")
    card = json.loads(path.read_text())
    stored = card.get("tasks", [])
    if card.get("eval_task_seed") != eval_task_seed or card.get("episodes") != benchmark.episodes:
        raise OffbenchError(f"{path}: made for eval_task_seed {card.get('eval_task_seed')} and "
                            f"{card.get('episodes')} episodes, the benchmark uses {eval_task_seed} and "
                            f"{benchmark.episodes}: remake it with scripts/make_oracle_references.py")
    if tasks > len(stored):
        raise OffbenchError(f"{path} has references for {len(stored)} held-out tasks, {tasks} were asked for: "
                            "remake it with more tasks (scripts/make_oracle_references.py --tasks)")
    if stored[:tasks] != held_out:
        raise OffbenchError(f"{path}: its tasks are not the benchmark's held-out tasks; remake it")
    return (float(np.mean(card["random_trial_returns"][:tasks])),
            float(np.mean(card["oracle_trial_returns"][:tasks])))
