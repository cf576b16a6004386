"""Skill discovery (issue 18, first part): DIAYN's pseudo-reward by hand, the metrics that the agent
cannot game (coverage, an independent classifier and its mutual-information bound), exact resume,
and (slow) DIAYN's skills separating on the point plane."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import offbench.envs  # noqa: F401 - registers offbench/PointPlane-v0
from baselines.skills.diayn import DIAYNConfig, DIAYNTrainer, pseudo_reward
from offbench.evaluation.skills import coverage, independent_classifier


def _plane():
    return gym.make("offbench/PointPlane-v0")


def test_pseudo_reward_is_log_q_minus_log_p():
    log_q = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    r = pseudo_reward(log_q, torch.tensor([0, 2]), 3)
    assert torch.allclose(r, torch.tensor([np.log(0.5) + np.log(3), np.log(0.8) + np.log(3)], dtype=torch.float32))


def test_coverage_counts_distinct_unit_cells():
    assert coverage(np.array([[0.1, 0.1], [0.9, 0.2], [1.1, 0.0], [-0.1, 0.0], [-0.5, -0.5]])) == 4  # (0,0) twice
    assert coverage(np.zeros((5, 7, 2))) == 1


def test_the_independent_classifier_and_its_bound():
    rng = np.random.default_rng(0)
    skills = np.repeat(np.arange(4), 200)
    rollouts = np.repeat(np.arange(40), 20)
    centres = np.array([[5, 0], [-5, 0], [0, 5], [0, -5]])
    separable = centres[skills] + rng.normal(0, 0.3, (800, 2))
    result = independent_classifier(separable, skills, rollouts)
    assert result["accuracy"] == 1.0 and result["chance"] == 0.25
    # a perfect classifier: the smoothed q is at most 0.95 + 0.05 / 4 on the right skill
    ceiling = np.log(4) + np.log(0.9625)
    assert ceiling - 0.02 < result["mi_lower_bound"] <= ceiling
    # one confidently wrong state among the 400 held out costs at most (log 0.9625 - log 0.0125) / 400
    # = 0.011 nats, not minus infinity as with the raw classifier
    wrong = separable.copy()
    wrong[skills == 0] = np.where(rollouts[skills == 0, None] == 0, centres[1], wrong[skills == 0])  # rollout 0 at skill 1
    worst = independent_classifier(wrong, skills, rollouts)
    assert result["mi_lower_bound"] - 20 * 0.011 - 0.01 <= worst["mi_lower_bound"] < result["mi_lower_bound"]
    mixed = rng.normal(0, 1, (800, 2))  # states that say nothing about the skill
    blind = independent_classifier(mixed, skills, rollouts)
    assert blind["accuracy"] < 0.4 and blind["mi_lower_bound"] < 0.1


def test_a_killed_run_resumes_exactly(tmp_path):
    config = DIAYNConfig(skills=3, hidden=(16,), batch_size=16, warmup_steps=60, buffer_size=1000)
    straight = DIAYNTrainer(_plane, config, seed=1)
    rows = straight.fit(4, tmp_path / "a", checkpoint_every=1)
    DIAYNTrainer(_plane, config, seed=1).fit(2, tmp_path / "b", checkpoint_every=1)
    resumed = DIAYNTrainer(_plane, config, seed=1)
    assert resumed.fit(4, tmp_path / "b", checkpoint_every=1) == rows
    for a, b in zip(straight.sac.parameters(), resumed.sac.parameters()):
        assert torch.equal(a, b)
    assert [json.loads(line)["iteration"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2, 3, 4]


@pytest.mark.slow
def test_diayn_skills_separate_on_the_point_plane():
    """150 episodes (7,500 steps, about 40 s of CPU): an independent classifier tells the 10 skills
    apart from held-out rollouts' states (measured 0.93; chance 0.10), and the skills travel about
    twice as far as uniform random play (10.7 against 5.6). Not asserted, because it does not hold
    at this budget: coverage; the 40 skill rollouts visit 187 distinct cells, random play's 219."""
    torch.set_num_threads(1)  # small networks: a second thread only adds waiting on a busy machine
    trainer = DIAYNTrainer(_plane, DIAYNConfig(), seed=0)
    for _ in range(150):
        trainer.iterate()
    rollouts = trainer.skill_rollouts(4, seed=123)
    positions, skills = rollouts["positions"], rollouts["skills"]
    R, T1, _ = positions.shape
    result = independent_classifier(positions[:, 1:].reshape(-1, 2), np.repeat(skills, T1 - 1),
                                     np.repeat(np.arange(R), T1 - 1))
    assert result["accuracy"] >= 0.7 and result["mi_lower_bound"] > 1.0
    env, rng, random_final = _plane(), np.random.default_rng(0), []
    for e in range(40):
        env.reset(seed=e)
        for _ in range(50):
            obs, *_ = env.step(rng.uniform(-1, 1, 2))
        random_final.append(np.linalg.norm(obs))
    assert np.linalg.norm(positions[:, -1], axis=1).mean() > 1.5 * np.mean(random_final)
