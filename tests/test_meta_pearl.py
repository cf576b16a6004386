"""PEARL (baselines/meta/pearl.py): the posterior is eq. (2)'s product of Gaussians, the KL term is
exact, gradients reach the encoder from the critic and the KL only, a killed run resumes exactly,
and trials adapt by posterior sampling."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import offbench.envs.meta  # noqa: F401
from baselines.meta.pearl import PEARL, PEARLConfig, PEARLTrainer, kl_to_standard_normal, product_of_gaussians

TINY = PEARLConfig(hidden=(16,), latent_dim=2, batch_size=8, context_batch=4, context_window=50, meta_batch=2,
                   train_tasks=4, tasks_per_iteration=2, updates_per_iteration=3)


def _point():
    return gym.make("offbench/PointRobot-v0", disable_env_checker=True)


def test_product_of_gaussians_is_the_precision_weighted_mean():
    mu = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    var = torch.tensor([[1.0, 4.0], [1.0, 4.0]])
    mean, v = product_of_gaussians(mu, var)
    assert torch.allclose(v, torch.tensor([0.5, 2.0]))
    assert torch.allclose(mean, torch.tensor([2.0, 1.0]))
    # one factor is itself; the order of factors does not matter
    m1, v1 = product_of_gaussians(mu[:1], var[:1])
    assert torch.allclose(m1, mu[0]) and torch.allclose(v1, var[0])
    m2, _ = product_of_gaussians(mu.flip(0), var.flip(0))
    assert torch.allclose(m2, mean)


def test_kl_to_the_prior():
    mean, var = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.5])
    expected = sum(0.5 * (v + m ** 2 - 1 - np.log(v)) for m, v in zip(mean.tolist(), var.tolist()))
    assert kl_to_standard_normal(mean, var).item() == pytest.approx(expected)
    assert kl_to_standard_normal(torch.zeros(3), torch.ones(3)).item() == 0.0


def test_the_encoder_learns_from_the_critic_and_kl_only():
    env = _point()
    agent = PEARL(env.observation_space, env.action_space, TINY, seed=0)
    context = torch.randn(2, 4, 7)
    batch = {"observations": torch.randn(2, 8, 2), "actions": torch.rand(2, 8, 2) * 0.2 - 0.1,
             "rewards": torch.randn(2, 8), "next_observations": torch.randn(2, 8, 2), "terminations": torch.zeros(2, 8)}
    before = [p.detach().clone() for p in agent.encoder.parameters()]
    actor_before = [p.detach().clone() for p in agent.actor.parameters()]
    # freeze the critic step: with lr 0 for the critic and encoder, only the actor and alpha move
    for group in agent.critic_optim.param_groups:
        group["lr"] = 0.0
    agent.update(context, batch)
    assert all(torch.equal(a, b) for a, b in zip(before, agent.encoder.parameters())), "the actor trained the encoder"
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    for group in agent.critic_optim.param_groups:
        group["lr"] = 1e-2
    agent.update(context, batch)
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.encoder.parameters()))


def test_a_killed_run_resumes_exactly(tmp_path):
    straight = PEARLTrainer(_point, TINY, seed=1)
    rows = straight.fit(3, tmp_path / "a")
    first = PEARLTrainer(_point, TINY, seed=1)
    first.fit(2, tmp_path / "b")
    resumed = PEARLTrainer(_point, TINY, seed=1)
    assert resumed.fit(3, tmp_path / "b") == rows
    for a, b in zip(straight.agent.parameters(), resumed.agent.parameters()):
        assert torch.equal(a, b)
    assert [json.loads(line)["iteration"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_evaluation_is_seeded_and_leaves_training_untouched():
    trainer = PEARLTrainer(_point, TINY, seed=0)
    tasks = _point().unwrapped.sample_tasks(3, 5)
    state = trainer.agent.generator.get_state()
    a = trainer.adapt_and_evaluate(tasks, 2, seed=9)
    assert a.shape == (3, 2) and np.array_equal(a, trainer.adapt_and_evaluate(tasks, 2, seed=9))
    assert torch.equal(state, trainer.agent.generator.get_state())


@pytest.mark.slow
def test_pearl_adapts_on_point_robot_goals():
    """After a short meta-training the second episode of a trial, played with the posterior from
    the first, is better than the first (played with the prior), on held-out goals."""
    config = PEARLConfig(hidden=(64, 64), train_tasks=20, tasks_per_iteration=5, updates_per_iteration=50,
                         meta_batch=8, batch_size=128)
    trainer = PEARLTrainer(_point, config, seed=0)
    import tempfile

    trainer.fit(40, tempfile.mkdtemp())
    tasks = _point().unwrapped.sample_tasks(20, 123)
    returns = trainer.adapt_and_evaluate(tasks, 2, seed=0)
    assert returns[:, 1].mean() > returns[:, 0].mean() + 1.0, returns.mean(0)
