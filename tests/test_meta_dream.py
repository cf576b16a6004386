"""DREAM (baselines/meta/dream.py): the exploration reward is the decoder's error decrease minus the
step cost, acting step by step sees what training unrolls, a killed run resumes exactly, and on
SignGrid the exploitation episode reaches the goal corner that only the sign reveals."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import offbench.envs.meta  # noqa: F401
from baselines.meta.dream import DREAMConfig, DREAMTrainer, RecurrentQ, _pad


def _sign():
    return gym.make("offbench/SignGrid-v0", disable_env_checker=True)


def test_information_gain_is_the_decrease_of_each_prefix_s_decoder_error():
    trainer = DREAMTrainer(_sign, 4, DREAMConfig(hidden=8, step_cost=0.05), seed=0)
    episode = trainer.explore_episode({"goal": 2}, epsilon=1.0, seed=3)
    batch = _pad([episode], trainer.agent.obs_dim)
    target = trainer.agent.embedding(batch["task"]).detach()
    with torch.no_grad():
        errors = trainer.agent.decoder_errors(batch, target)[0]
        # each prefix decoded on its own: the error after t transitions reads obs_0..obs_t
        x = RecurrentQ.inputs(batch["obs"], batch["actions"], batch["rewards"], 5)
        alone = [((trainer.agent.decoder(x[:, : t + 1])[0][0, -1] - target[0]) ** 2).sum() for t in range(x.shape[1])]
        rewards = trainer.agent.information_gain(errors[None])[0]
    assert torch.allclose(errors, torch.stack(alone), atol=1e-6)
    assert torch.allclose(rewards, errors[:-1] - errors[1:] - 0.05)


def test_acting_step_by_step_sees_what_training_unrolls():
    trainer = DREAMTrainer(_sign, 4, DREAMConfig(hidden=8), seed=1)
    episode = trainer.explore_episode({"goal": 1}, epsilon=0.0, seed=4)  # greedy: every action is an argmax
    batch = _pad([episode], trainer.agent.obs_dim)
    with torch.no_grad():
        q, _ = trainer.agent.q_explore(RecurrentQ.inputs(batch["obs"], batch["actions"], batch["rewards"], 5))
    assert q[0, :-1].argmax(-1).tolist() == episode["actions"]


def test_a_killed_run_resumes_exactly(tmp_path):
    config = DREAMConfig(hidden=8, batch_size=4, iterations=6)
    straight = DREAMTrainer(_sign, 4, config, seed=2)
    rows = straight.fit(6, tmp_path / "a", checkpoint_every=2)
    DREAMTrainer(_sign, 4, config, seed=2).fit(4, tmp_path / "b", checkpoint_every=2)
    resumed = DREAMTrainer(_sign, 4, config, seed=2)
    assert resumed.fit(6, tmp_path / "b", checkpoint_every=2) == rows
    for a, b in zip(straight.agent.parameters(), resumed.agent.parameters()):
        assert torch.equal(a, b)
    assert [json.loads(line)["iteration"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()] \
        == list(range(1, 7))


@pytest.mark.slow
def test_dream_reads_the_sign_and_exploits_it():
    """After 800 iterations (about 15 s of CPU here) the exploitation episode walks to the right corner on
    every goal: 0.7 is the most an episode can earn (4 steps from the centre), and a policy that does
    not know the goal cannot reach that in expectation."""
    config = DREAMConfig(iterations=800)
    trainer = DREAMTrainer(_sign, 4, config, seed=0)
    for _ in range(800):
        trainer.iterate()
    returns = trainer.adapt_and_evaluate([{"goal": j} for j in range(4)] * 5, 2, seed=5)
    assert returns[:, 1].mean() >= 0.6, returns.mean(0)
