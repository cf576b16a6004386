"""IQL and CQL: every loss against a hand computation with fixed network outputs, the Lagrange
multiplier's direction, reward scaling, exact resume, and learning on random Pendulum data (slow).

The stitching claim (discrete IQL and CQL on StitchGrid) is in tests/test_stitching.py."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from offbench import load_dataset
from offbench.data.recipes import build_dataset
from offbench.data.sampling import TransitionBatch
from offbench.train import TrainConfig, build_algorithm, train_run
from tests.conftest import BOX_ACT, BOX_OBS
from tests.conftest import kill_and_resume
from tests.test_train import SMALL

from baselines.cql import CQL, CQLConfig
from baselines.iql import IQL, IQLConfig

GAMMA = 0.99


def batch_of(obs, actions, rewards, next_obs, terminations) -> TransitionBatch:
    t = lambda x, dtype=torch.float32: torch.as_tensor(np.asarray(x), dtype=dtype)  # noqa: E731
    act_dtype = torch.int64 if np.asarray(actions).dtype.kind == "i" else torch.float32
    obs_dtype = torch.int64 if np.asarray(obs).dtype.kind == "i" else torch.float32
    return TransitionBatch(observations=t(obs, obs_dtype), actions=t(actions, act_dtype), rewards=t(rewards),
                           next_observations=t(next_obs, obs_dtype), terminations=t(terminations),
                           truncations=torch.zeros(len(rewards)), discounts=torch.full((len(rewards),), GAMMA))


class KnownQ(nn.Module):
    """Twin critics with known outputs: Q_1 = w (sum s + sum a), Q_2 = w (2 sum a - sum s), row by row."""

    def __init__(self, w: float = 1.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w))

    def forward(self, obs, action):
        s, a = obs.sum(-1), action.sum(-1)
        return self.w * torch.stack([s + a, 2 * a - s])

    @staticmethod
    def by_hand(w, s, a):
        return [w * (sum(s) + sum(a)), w * (2 * sum(a) - sum(s))]


class TabularQ(nn.Module):
    """Twin tabular critics over one-hot states: forward(features) = table[:, state] -> [2, B, A]."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(table, dtype=torch.float32))

    def forward(self, features):
        return self.table[:, features.argmax(-1)]


class Fixed(nn.Module):
    """Returns ``out`` whatever the input (and ``log_prob`` returns ``log_prob``)."""

    def __init__(self, out=None, log_prob=None):
        super().__init__()
        self.out = nn.Parameter(torch.as_tensor(out, dtype=torch.float32)) if out is not None else None
        self._log_prob = nn.Parameter(torch.as_tensor(log_prob, dtype=torch.float32)) if log_prob is not None else None

    def forward(self, *args, **kwargs):
        return self.out

    def log_prob(self, *args):
        return self._log_prob


# ---------------------------------------------------------------------- IQL
def test_expectile_loss_weights_by_hand():
    diff = torch.tensor([2.0, -1.0, 0.5, -3.0])  # u = Q - V
    # |tau - 1(u < 0)| u^2: tau above V, 1 - tau below it.
    expected = (0.7 * 4 + 0.3 * 1 + 0.7 * 0.25 + 0.3 * 9) / 4
    assert IQL.expectile_loss(diff, 0.7).item() == pytest.approx(expected)
    assert IQL.expectile_loss(diff, 0.5).item() == pytest.approx(0.5 * (4 + 1 + 0.25 + 9) / 4)  # = 1/2 MSE
    # The minimiser is an upper expectile: for tau 0.9 it lies above the mean of {0, 1}.
    # 0.9 (1 - v) = 0.1 v at v = 0.9: the gradient vanishes there and only there.
    for v0, sign in ((0.9, 0.0), (0.5, -1.0), (0.95, 1.0)):
        v = torch.tensor(v0, requires_grad=True)
        IQL.expectile_loss(torch.tensor([0.0, 1.0]) - v, 0.9).backward()
        assert np.sign(round(v.grad.item(), 6)) == sign


def test_advantage_weights_are_exponentiated_and_clipped():
    iql = IQL(BOX_OBS, BOX_ACT, IQLConfig(hidden=(8,)))
    weights = iql.advantage_weights(torch.tensor([-1.0, 0.0, 1.0, 2.0]))
    np.testing.assert_allclose(weights.numpy(), [math.exp(-3), 1.0, math.exp(3), 100.0], rtol=1e-6)  # e^6 > 100
    iql.config.max_weight = 1e9
    assert iql.advantage_weights(torch.tensor([2.0])).item() == pytest.approx(math.exp(6), rel=1e-6)


def test_iql_losses_by_hand():
    iql = IQL(BOX_OBS, BOX_ACT, IQLConfig(hidden=(8,), normalize_observations=False))
    q_target = [[1.0, 2.0, 0.5], [3.0, 1.5, 4.0]]  # [twins, B]: min = [1.0, 1.5, 0.5]
    q = [[0.2, -1.0, 2.0], [0.4, 0.0, 1.0]]
    v, v_next = [0.5, 2.0, -1.5], [1.0, -2.0, 3.0]
    log_prob = [-1.0, -0.5, -2.0]
    iql.critic_target = Fixed(q_target)
    iql.critic = Fixed(q)
    iql.value = Fixed(np.array(v + v_next)[:, None])  # called once on [obs; next_obs]
    iql.policy = Fixed(log_prob=log_prob)
    rewards, terms = [0.5, -1.0, 2.0], [0.0, 1.0, 0.0]
    batch = batch_of(np.zeros((3, 3)), np.zeros((3, 2)), rewards, np.ones((3, 3)), terms)
    total, info = iql.loss(batch)

    q_min = [1.0, 1.5, 0.5]
    u = [qm - vv for qm, vv in zip(q_min, v)]  # [0.5, -0.5, 2.0]
    value = sum((0.7 if x >= 0 else 0.3) * x * x for x in u) / 3
    y = [r + GAMMA * (1 - d) * vn for r, d, vn in zip(rewards, terms, v_next)]
    critic = sum(sum((qj[b] - y[b]) ** 2 for b in range(3)) / 3 for qj in q)
    w = [min(math.exp(3.0 * x), 100.0) for x in u]  # exp(6) is clipped to 100
    actor = -sum(wb * lp for wb, lp in zip(w, log_prob)) / 3
    assert info["value_loss"].item() == pytest.approx(value, rel=1e-6)
    assert info["critic_loss"].item() == pytest.approx(critic, rel=1e-6)
    assert info["actor_loss"].item() == pytest.approx(actor, rel=1e-6)
    assert info["weight_clipped"].item() == pytest.approx(1 / 3)
    assert total.item() == pytest.approx(value + critic + actor, rel=1e-6)
    # Each term reaches only its own network: the targets and the weights are constants.
    total.backward()
    assert iql.critic_target.out.grad is None
    np.testing.assert_allclose(iql.value.out.grad[3:].numpy(), 0.0)  # V(s') only enters the TD target


def test_iql_discrete_q_head_gathers_the_data_actions():
    iql = IQL(gym.spaces.Discrete(3), gym.spaces.Discrete(4), IQLConfig(hidden=(8,)))
    table = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    q = iql.q_values(TabularQ(table), iql.encoder(torch.tensor([0, 2, 1])), torch.tensor([3, 0, 1]))
    np.testing.assert_array_equal(q.detach().numpy(), table[:, [0, 2, 1], [3, 0, 1]])
    assert iql.act(np.array([0, 1, 2])).dtype == np.int64


def test_reward_scaling_is_fitted_in_prepare_and_saved(pendulum):
    returns = pendulum.episode_returns()
    iql = build_algorithm("iql", pendulum, {"hidden": [8]}, seed=0)
    data = iql.prepare(pendulum)
    scale = 1000.0 / (returns.max() - returns.min())
    assert iql.reward_scale.item() == pytest.approx(scale, rel=1e-6)
    np.testing.assert_allclose(data.rewards, pendulum.rewards * scale, rtol=1e-5)
    assert data.observations is pendulum.observations  # only the rewards are new
    batch = iql.make_sampler(data, 8, 0).sample()
    assert batch.rewards.abs().max() > 0
    # The factor is a buffer: a fresh module that never saw the data gets it from the state dict.
    fresh = build_algorithm("iql", pendulum, {"hidden": [8]}, seed=1)
    fresh.load_state_dict(iql.state_dict())
    assert fresh.reward_scale.item() == iql.reward_scale.item()
    unscaled = build_algorithm("iql", pendulum, {"hidden": [8], "reward_scaling": "none"}, seed=0)
    assert unscaled.prepare(pendulum) is pendulum and unscaled.reward_scale.item() == 1.0


# ---------------------------------------------------------------------- CQL, continuous
def small_cql(**overrides) -> CQL:
    return CQL(BOX_OBS, BOX_ACT, CQLConfig(hidden=(8,), normalize_observations=False, **overrides), seed=0)


def test_cql_importance_sampled_logsumexp_by_hand():
    q = torch.tensor([[[0.5, -1.0, 2.0, 0.0]]])  # [critics=1, B=1, M=4]
    log_p = torch.tensor([[-1.3862944, -1.3862944, 0.3, -0.7]])  # uniform on [-1, 1]^2, then policy densities
    # log( 1/M sum_i exp(Q_i) / p_i )
    expected = math.log(sum(math.exp(qi) / math.exp(lp) for qi, lp in zip(q[0, 0].tolist(), log_p[0].tolist())) / 4)
    assert CQL.importance_sampled_logsumexp(q, log_p).item() == pytest.approx(expected, rel=1e-6)


def test_cql_critic_loss_by_hand(monkeypatch):
    cql = small_cql(num_sampled_actions=2, alpha=5.0)
    cql.critic, cql.critic_target = KnownQ(1.0), KnownQ(0.5)
    rng = np.random.default_rng(0)
    obs, next_obs = rng.normal(size=(2, 3)).round(2), rng.normal(size=(2, 3)).round(2)
    data_actions = rng.uniform(-1, 1, (2, 2)).round(2)
    rewards, terms = [1.0, -0.5], [0.0, 1.0]
    sampled = rng.uniform(-1, 1, (2, 6, 2)).round(2)  # [B, 3N, A]: 2 uniform, 2 pi(.|s), 2 pi(.|s')
    log_density = np.concatenate([np.full((2, 2), -math.log(4)), rng.normal(size=(2, 4)).round(2)], axis=1)
    next_action = rng.uniform(-1, 1, (2, 2)).round(2)
    monkeypatch.setattr(cql, "sample_actions", lambda o, n: (torch.tensor(sampled, dtype=torch.float32),
                                                              torch.tensor(log_density, dtype=torch.float32)))
    monkeypatch.setattr(cql.actor, "forward", lambda o, deterministic=False, generator=None:
                        (torch.tensor(next_action, dtype=torch.float32), torch.zeros(2)))
    calls = []
    forward = cql.critic.forward
    monkeypatch.setattr(cql.critic, "forward", lambda o, a: calls.append(len(o)) or forward(o, a))
    batch = batch_of(obs, data_actions, rewards, next_obs, terms)
    f_obs, f_next = cql.encoder(batch.observations), cql.encoder(batch.next_observations)
    loss, gap, info = cql.critic_loss(batch, f_obs, f_next)
    assert calls == [2 * (3 * 2 + 1)]  # ONE critic call for the data actions and all 3N proposals

    td, gaps = 0.0, [0.0, 0.0]
    for b in range(2):
        q_data = KnownQ.by_hand(1.0, obs[b], data_actions[b])
        y = rewards[b] + GAMMA * (1 - terms[b]) * min(KnownQ.by_hand(0.5, next_obs[b], next_action[b]))
        for j in range(2):
            td += 0.5 * (q_data[j] - y) ** 2 / 2
            terms_ij = [math.exp(KnownQ.by_hand(1.0, obs[b], sampled[b, i])[j] - log_density[b, i]) for i in range(6)]
            gaps[j] += (math.log(sum(terms_ij) / 6) - q_data[j]) / 2
    assert info["td_loss"].item() == pytest.approx(td, rel=1e-5)
    np.testing.assert_allclose(gap.numpy(), gaps, rtol=1e-5)
    assert loss.item() == pytest.approx(td + 5.0 * sum(gaps), rel=1e-5)


def test_cql_proposals_and_their_densities():
    cql = small_cql(num_sampled_actions=5)
    obs, next_obs = torch.randn(3, 3), torch.randn(3, 3)
    actions, log_density = cql.sample_actions(obs, next_obs)
    assert actions.shape == (3, 15, 2) and log_density.shape == (3, 15)
    uniform, at_s, at_next = actions[:, :5], actions[:, 5:10], actions[:, 10:]
    assert torch.all(uniform.abs() <= 1.0)
    np.testing.assert_allclose(log_density[:, :5].numpy(), -math.log(4.0), rtol=1e-6)  # 1 / vol([-1, 1]^2)
    # Policy samples carry their exact tanh-Gaussian log-density under pi(.|s) and pi(.|s') respectively.
    for k in range(5):
        np.testing.assert_allclose(log_density[:, 5 + k].numpy(), cql.actor.log_prob(obs, at_s[:, k]).detach().numpy(),
                                   atol=1e-3)
        np.testing.assert_allclose(log_density[:, 10 + k].numpy(),
                                   cql.actor.log_prob(next_obs, at_next[:, k]).detach().numpy(), atol=1e-3)
    # Pendulum's torque box [-2, 2]: density 1/4, uniform samples fill the box.
    env = gym.make("Pendulum-v1")
    cql = CQL(env.observation_space, env.action_space, CQLConfig(hidden=(8,), num_sampled_actions=200))
    actions, log_density = cql.sample_actions(torch.randn(2, 3), torch.randn(2, 3))
    assert log_density[0, 0].item() == pytest.approx(-math.log(4.0))
    assert actions[:, :200].abs().max() > 1.5 and actions.abs().max() <= 2.0


def test_lagrange_alpha_moves_towards_the_target_gap():
    for gap, direction in ((torch.tensor([5.0, 3.0]), +1), (torch.tensor([0.5, 1.0]), -1)):
        cql = small_cql(lagrange=True, target_action_gap=2.0, alpha=1.0)
        assert cql.log_alpha.requires_grad and "lagrange" in cql.optimizers()
        before = cql.log_alpha.item()
        loss = cql.lagrange_loss(gap)
        # d loss / d log alpha = -alpha (mean gap - target): negative (alpha grows) above the target.
        assert loss.item() == pytest.approx(-math.exp(before) * (gap.mean().item() - 2.0), rel=1e-6)
        cql.optimizers()["lagrange"].zero_grad()
        loss.backward()
        cql.optimizers()["lagrange"].step()
        assert np.sign(cql.log_alpha.item() - before) == direction
    fixed = small_cql(alpha=10.0)
    assert not fixed.log_alpha.requires_grad and fixed.log_alpha.exp().item() == pytest.approx(10.0)


def test_cql_update_steps_every_part(pendulum):
    cql = build_algorithm("cql", pendulum, {"hidden": [16], "lagrange": True}, seed=0)
    sampler = cql.make_sampler(cql.prepare(pendulum), 32, 0)
    before = {k: v.clone() for k, v in cql.state_dict().items()}
    metrics = cql.update(sampler.sample())
    # metrics stay on the device as 0-d tensors (the training loop reads them when it logs)
    assert all(torch.is_tensor(v) and v.dim() == 0 and math.isfinite(float(v)) for v in metrics.values())
    after = cql.state_dict()
    for key in ("critic.net.out.weight", "actor.net.0.weight", "log_entropy_alpha", "log_alpha",
                "critic_target.net.out.weight"):
        assert not torch.equal(before[key], after[key]), key
    actions = cql.act(pendulum.observations[:5])
    assert actions.shape == (5, 1) and np.all(np.abs(actions) <= 2.0)


def test_critic_probe_integrates_a_known_critic(pendulum):
    """scripts/cql_critic_probe.py with twin critics of known form on Pendulum's action box [-2, 2]:
    Q_1 = w (s + a), Q_2 = w (2a - s). The exact gap's integral is closed-form per critic,
    log int exp(w a) da - w a_d = log((e^{2w} - e^{-2w}) / w) - w a_d, and
    log((e^{4w} - e^{-4w}) / (2w)) - 2w a_d; the grid's maximum is at the last midpoint, a = 1.95."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from cql_critic_probe import critic_summary, probe_indices

    w = 0.5
    cql = build_algorithm("cql", pendulum, {"hidden": [16]}, seed=0)
    cql.prepare(pendulum)
    cql.critic, cql.critic_target = KnownQ(w), KnownQ(w)
    out = critic_summary(cql, pendulum, samples=200)
    idx = probe_indices(pendulum, 200)
    assert not np.isin(idx, pendulum.episode_starts + pendulum.episode_lengths - 1).any()
    a = pendulum.actions[idx, 0].astype(np.float64)
    gap_1 = math.log((math.exp(2 * w) - math.exp(-2 * w)) / w) - w * a
    gap_2 = math.log((math.exp(4 * w) - math.exp(-4 * w)) / (2 * w)) - 2 * w * a
    assert out["gap_exact"] == pytest.approx(np.mean((gap_1 + gap_2) / 2), abs=2e-3)
    assert out["q_data"] == pytest.approx(1.5 * w * a.mean(), abs=2e-3)
    assert out["q_grid_max"] == pytest.approx(w * (1.95 + 2 * 1.95) / 2, abs=1e-3)
    assert out["q_grid_mean"] == pytest.approx(0.0, abs=2e-3)  # the s terms cancel over the twins, a averages to 0


# ---------------------------------------------------------------------- CQL, discrete
def test_discrete_cql_loss_by_hand():
    cql = CQL(gym.spaces.Discrete(3), gym.spaces.Discrete(4), CQLConfig(hidden=(8,), alpha=0.5))
    rng = np.random.default_rng(1)
    q, q_bar = rng.normal(size=(2, 3, 4)).round(2), rng.normal(size=(2, 3, 4)).round(2)
    cql.critic, cql.critic_target = TabularQ(q), TabularQ(q_bar)
    s, a, s2 = np.array([0, 2, 1, 2]), np.array([3, 0, 1, 1]), np.array([1, 1, 0, 2])
    rewards, terms = [0.5, -0.1, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0]
    batch = batch_of(s, a, rewards, s2, terms)
    loss, gap, info = cql.critic_loss(batch, cql.encoder(batch.observations), cql.encoder(batch.next_observations))

    td, gaps = 0.0, [0.0, 0.0]
    for b in range(4):
        best = int(np.argmax(q[:, s2[b]].min(0)))  # the online critics choose a'
        y = rewards[b] + GAMMA * (1 - terms[b]) * q_bar[:, s2[b], best].min()  # the targets evaluate it
        for j in range(2):
            td += 0.5 * (q[j, s[b], a[b]] - y) ** 2 / 4
            gaps[j] += (math.log(np.exp(q[j, s[b]]).sum()) - q[j, s[b], a[b]]) / 4
    assert info["td_loss"].item() == pytest.approx(td, rel=1e-5)
    np.testing.assert_allclose(gap.numpy(), gaps, rtol=1e-5)
    assert loss.item() == pytest.approx(td + 0.5 * sum(gaps), rel=1e-5)
    np.testing.assert_array_equal(cql.act(np.arange(3)), q.min(0).argmax(-1))  # greedy on the min of the twins


# ---------------------------------------------------------------------- exact resume
@pytest.mark.parametrize("name,overrides", [
    ("cql", {"hidden": [16, 16], "lagrange": True, "num_sampled_actions": 3}),
    ("iql", {"hidden": [16, 16], "actor_cosine_steps": 50}),
])
def test_resume_after_kill_gives_identical_parameters(pendulum, tmp_path, name, overrides):
    straight, resumed = kill_and_resume(name, pendulum, overrides, SMALL, tmp_path, kill_at=47, checkpoint_at=40)
    for optim_name, optim in straight.optimizers().items():
        lrs = [g["lr"] for g in resumed.optimizers()[optim_name].param_groups]
        assert [g["lr"] for g in optim.param_groups] == lrs


# ---------------------------------------------------------------------- learning
@pytest.fixture
def random_pendulum(monkeypatch):
    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    build_dataset("lite/pendulum/random-v0", progress=False)  # 100k uniform-random steps, ~8 s
    return load_dataset("lite/pendulum/random-v0")


@pytest.mark.slow
@pytest.mark.parametrize("name,overrides,steps", [
    ("iql", {"hidden": [64, 64], "lr": 1e-3}, 3000),  # measured: 98 and 90 (seeds 0, 1)
    # Uniform-random data covers every action, so little conservatism is needed: alpha 1, and a faster
    # target (tau 0.02) for the short budget. Measured: 102 and 85 (seeds 0, 1) at 3,000 steps.
    ("cql", {"hidden": [64, 64], "critic_lr": 1e-3, "actor_lr": 1e-3, "num_sampled_actions": 4, "alpha": 1.0,
             "tau": 0.02}, 3000),
])
def test_learns_far_beyond_random_on_random_pendulum(random_pendulum, tmp_path, name, overrides, steps):
    config = TrainConfig(steps=steps, batch_size=256, eval_every=steps, eval_episodes=10, final_eval_episodes=10,
                         checkpoint_every=steps, log_every=500)
    summary = train_run(name, random_pendulum, overrides, config, tmp_path / name, progress=False)
    # Normalised: the uniform-random behaviour scores 0 (return about -1200), the swing-up expert 100 (-157).
    assert summary["score"] > 50, summary
