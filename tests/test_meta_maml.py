"""MAML for RL (baselines/meta/maml.py): the meta-gradient is the derivative of the meta-objective
(finite differences, second and first order), the inner step is eq. (1), the baseline and returns
are what they claim, a killed run resumes exactly, and meta-training adapts on point-robot goals."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import offbench.envs.meta  # noqa: F401 - registers the families
from baselines.meta.maml import MAML, MAMLConfig, Rollouts, discounted_returns, linear_baseline


def _tiny(first_order: bool, discrete: bool = False, inner_steps: int = 1) -> MAML:
    obs = gym.spaces.Box(-1, 1, (2,), np.float32)
    act = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1, 1, (2,), np.float32)
    algo = MAML(obs, act, MAMLConfig(hidden=(3,), inner_lr=0.3, inner_steps=inner_steps, first_order=first_order,
                                     init_log_std=-0.3), seed=0).double()
    return algo


def _fixed_tasks(algo: MAML, discrete: bool, n_tasks: int = 2, seed: int = 0) -> list[tuple[Rollouts, Rollouts]]:
    """Random fixed data; the post-update behaviour log-probs are the adapted policy's own plus a small
    offset, so every ratio lies strictly inside the clip range (the objective is smooth there)."""
    rng = np.random.default_rng(seed)
    tasks = []
    for _ in range(n_tasks):
        pair = []
        for _ in range(2):
            obs = torch.as_tensor(rng.normal(size=(3, 4, 2)))
            actions = torch.as_tensor(rng.integers(0, 3, (3, 4))) if discrete else torch.as_tensor(rng.normal(size=(3, 4, 2)))
            mask = torch.ones(3, 4, dtype=torch.float64)
            mask[0, 3] = 0.0  # one episode ends early
            pair.append(Rollouts(obs, actions, torch.zeros(3, 4, dtype=torch.float64), mask,
                                 torch.zeros(3, 4, dtype=torch.float64), torch.as_tensor(rng.normal(size=(3, 4))) * mask))
        pre, post = pair
        adapted = algo.adapt({k: p.detach().requires_grad_() for k, p in algo.params().items()}, pre,
                             create_graph=False)
        post.log_probs = algo.log_prob(adapted, post.observations, post.actions).detach() + \
            torch.as_tensor(rng.uniform(-0.05, 0.05, (3, 4)))
        tasks.append((pre, post))
    return tasks


@pytest.mark.parametrize("discrete", [False, True])
@pytest.mark.parametrize("inner_steps", [1, 2])
def test_second_order_meta_gradient_equals_finite_differences(discrete, inner_steps):
    algo = _tiny(first_order=False, discrete=discrete, inner_steps=inner_steps)
    tasks = _fixed_tasks(algo, discrete)
    params = algo.params()
    grads = torch.autograd.grad(algo.meta_loss(params, tasks), list(params.values()))
    eps = 1e-6
    for (name, p), g in zip(params.items(), grads):
        numeric = torch.zeros_like(p)
        for idx in np.ndindex(*p.shape):
            values = []
            for sign in (1, -1):
                shifted = {k: v.detach().clone().requires_grad_() for k, v in params.items()}
                with torch.no_grad():
                    shifted[name][idx] += sign * eps
                values.append(algo.meta_loss(shifted, tasks).item())
            numeric[idx] = (values[0] - values[1]) / (2 * eps)
        assert torch.allclose(g, numeric, rtol=1e-5, atol=1e-8), (name, g, numeric)


def test_first_order_gradient_is_the_outer_gradient_at_the_adapted_parameters():
    """FOMAML: d theta'/d theta = I, so the meta-gradient is grad L_out evaluated at theta'."""
    algo = _tiny(first_order=True)
    tasks = _fixed_tasks(algo, False)
    params = algo.params()
    grads = torch.autograd.grad(algo.meta_loss(params, tasks), list(params.values()))
    expected = [torch.zeros_like(p) for p in params.values()]
    for pre, post in tasks:
        adapted = {k: v.detach().requires_grad_() for k, v in algo.adapt(params, pre, create_graph=False).items()}
        for e, g in zip(expected, torch.autograd.grad(algo.outer_loss(adapted, post), list(adapted.values()))):
            e += g / len(tasks)
    for g, e in zip(grads, expected):
        assert torch.allclose(g, e, atol=1e-12)
    second = _tiny(first_order=False)
    full = torch.autograd.grad(second.meta_loss(second.params(), tasks), list(second.params().values()))
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(full, grads)), "second order must differ"


def test_inner_step_is_equation_one():
    algo = _tiny(first_order=False)
    pre, _ = _fixed_tasks(algo, False)[0]
    params = algo.params()
    grads = torch.autograd.grad(algo.inner_loss(params, pre), list(params.values()))
    adapted = algo.adapt(params, pre, create_graph=False)
    for (k, p), g in zip(params.items(), grads):
        assert torch.allclose(adapted[k], p - 0.3 * g)


def test_returns_and_the_linear_baseline():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    g = discounted_returns(rewards, mask, 0.5)
    assert torch.allclose(g, torch.tensor([[1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0], [1.5, 1.0, 0.0]]))
    # returns that are an exact linear function of the features are fitted exactly
    obs = torch.randn(4, 5, 2, generator=torch.Generator().manual_seed(0))
    t = torch.arange(5.0) / 100
    target = 2 * obs[..., 0] - obs[..., 1] ** 2 + 30 * t + 1.0
    fitted = linear_baseline(obs, target, torch.ones(4, 5), 1e-10)
    assert torch.allclose(fitted, target, atol=1e-4)


def _make_point():
    return gym.make("offbench/PointRobot-v0")


def test_a_killed_run_resumes_to_identical_parameters(tmp_path):
    cfg = MAMLConfig(hidden=(16,), meta_batch=2, episodes_per_task=3, outer_epochs=2)
    env = _make_point()
    straight = MAML(env.observation_space, env.action_space, cfg, seed=3)
    rows = straight.fit(_make_point, 3, tmp_path / "a")
    first = MAML(env.observation_space, env.action_space, cfg, seed=3)
    first.fit(_make_point, 2, tmp_path / "b")
    resumed = MAML(env.observation_space, env.action_space, cfg, seed=3)  # a fresh process would build it anew
    again = resumed.fit(_make_point, 3, tmp_path / "b")
    assert again == rows
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert [json.loads(line)["iteration"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


@pytest.mark.slow
def test_meta_training_learns_to_adapt_on_point_robot_goals():
    """After meta-training, one inner step on 10 episodes of a held-out goal improves the return
    (the paper's Figure 4 effect), and the adapted return beats the untrained policy's."""
    env = _make_point()
    cfg = MAMLConfig(hidden=(64, 64), meta_batch=10, episodes_per_task=10)
    algo = MAML(env.observation_space, env.action_space, cfg, seed=0)
    tasks = env.unwrapped.sample_tasks(10, 123)
    before = algo.adapt_and_evaluate(_make_point, tasks, steps=1)
    for _ in range(40):
        algo.meta_iteration(_make_point)
    after = algo.adapt_and_evaluate(_make_point, tasks, steps=1)
    assert after[:, 1].mean() > after[:, 0].mean()
    assert after[:, 1].mean() > before[:, 1].mean()
