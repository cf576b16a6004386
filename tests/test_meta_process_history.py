"""A meta run's result depends on its settings and seed only, not on what ran before it in the same
process (``offbench reproduce meta --workers 1`` runs every meta run of a protocol in one worker).

The bug this guards: RL² sized its PPO rollouts by playing one trial with the action space's own
unseeded generator, and SignGrid's episodes end early at a corner, so the rollout length, and with
it the whole run, changed from one construction to the next (RL² on meta/signgrid-v0 in the smoke
protocol scored 5.29 in the worker and 1.36 alone)."""
from __future__ import annotations

import json
import random

import gymnasium as gym
import numpy as np
import pytest
import torch

import offbench.envs.meta  # noqa: F401
from baselines.meta.rl2 import RL2Config, build_agent, trial_length
from offbench.envs.meta.benchmarks import BENCHMARKS, get_benchmark
from offbench.envs.meta.sign_grid import SignGridLayout

TINY = {
    "rl2": {"num_envs": 2, "minibatches": 2, "gru_hidden": 8, "hidden": [8]},
    "maml": {"hidden": [8], "meta_batch": 2, "episodes_per_task": 2, "outer_epochs": 1},
    "pearl": {"hidden": [8], "train_tasks": 3, "tasks_per_iteration": 2, "updates_per_iteration": 2,
              "meta_batch": 2, "batch_size": 8, "context_batch": 4},
    "dream": {"hidden": 8, "batch_size": 2},
}


def _rl2_config(benchmark_id: str) -> RL2Config:
    b = get_benchmark(benchmark_id)
    return RL2Config(env_id=b.env_id, episodes=b.episodes, env_kwargs=b.env_kwargs)


def test_rl2_trial_length_is_the_benchmark_s_longest_trial_whatever_the_rng_state():
    """SignGrid: 2 episodes of at most 20 steps; an episode may end sooner, so a length measured by
    playing random actions varied from call to call (22, 27, 40, ...)."""
    config = _rl2_config("meta/signgrid-v0")
    assert SignGridLayout().episode_length == 20
    lengths = set()
    for k in range(10):
        random.seed(k), np.random.seed(k), torch.manual_seed(k)
        lengths.add(trial_length(config))
    assert lengths == {2 * 20}
    _, ppo = build_agent(config, seed=0)
    assert ppo.rollout_steps == 40  # trials_per_update (1) x the longest trial
    # the families that always run to their time limit: the trial length they always had
    assert trial_length(_rl2_config("meta/gridnavi-v0")) == 4 * 15
    assert trial_length(_rl2_config("meta/point-robot-v0")) == 2 * 20
    assert trial_length(_rl2_config("meta/bandit-k5-n10-v0")) == 1 * 10
    for benchmark in BENCHMARKS.values():  # every family states its time limit
        env = gym.make(benchmark.env_id, disable_env_checker=True, **benchmark.env_kwargs)
        assert trial_length(_rl2_config(benchmark.benchmark_id)) == benchmark.episodes * env.unwrapped.max_episode_steps
        env.close()


def _run(algorithm: str, benchmark_id: str, out) -> tuple[list, str]:
    from offbench.meta_runs import train_meta_run
    from offbench.train import TrainConfig

    config = TrainConfig(steps=1, eval_every=1, eval_episodes=3, final_eval_episodes=3, seed=3)
    train_meta_run(algorithm, benchmark_id, TINY[algorithm], config, out)
    rows = [json.loads(line) for line in (out / "evaluations.jsonl").read_text().splitlines()]
    return [r["episode_returns"] for r in rows], (out / "agent" / "metrics.jsonl").read_text()


@pytest.mark.parametrize("algorithm, benchmark_id, before", [
    ("rl2", "meta/signgrid-v0", ("maml", "meta/signgrid-v0")),
    ("maml", "meta/signgrid-v0", ("rl2", "meta/signgrid-v0")),
    ("pearl", "meta/point-robot-v0", ("maml", "meta/point-robot-v0")),
    ("dream", "meta/signgrid-v0", ("rl2", "meta/signgrid-v0")),
])
def test_a_meta_run_gives_the_same_results_after_other_work_in_the_process(algorithm, benchmark_id, before,
                                                                           tmp_path):
    first_returns, first_metrics = _run(algorithm, benchmark_id, tmp_path / "first")
    _run(*before, tmp_path / "other")  # another run in between, then global state left disturbed
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    np.random.random(7), torch.rand(7), random.random()
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if threads > 1 else 2)
    try:
        again_returns, again_metrics = _run(algorithm, benchmark_id, tmp_path / "again")
    finally:
        torch.set_num_threads(threads)
    assert again_returns == first_returns  # the evaluation returns, every trial's every episode
    assert again_metrics == first_metrics  # and the training itself, update by update
