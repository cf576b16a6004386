"""The goal-conditioned baselines (baselines/goal/): each loss checked against its equations on a
tiny batch with networks replaced by known linear maps (the expected numbers computed here in
numpy, term by term as the module docstrings write them), the gradient routing, the IQE distance,
OGBench's defaults, exact resume, and (slow) that each method learns to reach nearby goals."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from baselines.goal import ALGORITHMS
from baselines.goal.crl import CRL, CRLConfig
from baselines.goal.gcbc import GCBC, GCBCConfig
from baselines.goal.gciql import GCIQL, GCIQLConfig
from baselines.goal.gcivl import GCIVL, GCIVLConfig
from baselines.goal.hiql import HIQL, HIQLConfig
from baselines.goal.qrl import QRL, QRLConfig
from offbench.errors import OffbenchError
from offbench.goal import iqe

BOX2 = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
OBS = gym.spaces.Dict({"observation": BOX2, "achieved_goal": BOX2, "desired_goal": BOX2})
ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
LOG_2PI = math.log(2 * math.pi)


# ---------------------------------------------------------------------- stand-in networks
class Linear(nn.Module):
    """x -> x W + b with given numbers (for the actors' mean heads and single networks)."""

    def __init__(self, weight, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight, dtype=torch.float32))
        self.bias = nn.Parameter(torch.tensor(bias, dtype=torch.float32))

    def forward(self, x):
        return x @ self.weight + self.bias

    def np(self, x):
        return np.asarray(x, np.float64) @ self.weight.detach().double().numpy() + self.bias.detach().double().numpy()


class LinearEnsemble(Linear):
    """members x (x W_e + b_e): [members, B, out], like offbench.nn.EnsembleMLP."""

    def forward(self, x):
        return torch.einsum("bi,eio->ebo", x, self.weight) + self.bias[:, None, :]

    def np(self, x):
        w, b = self.weight.detach().double().numpy(), self.bias.detach().double().numpy()
        return np.einsum("bi,eio->ebo", np.asarray(x, np.float64), w) + b[:, None, :]


def rng_params(seed, *shape, scale=0.5):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).tolist()


def batch(b=3, *, seed=0, hiql=False):
    """A tiny GoalBatch: states, next states, actions, goals, rewards and masks (one goal reached)."""
    rng = np.random.default_rng(seed)
    f = lambda *shape: torch.tensor(rng.uniform(-1, 1, shape), dtype=torch.float32)  # noqa: E731
    out = SimpleNamespace(observations=f(b, 2), next_observations=f(b, 2), actions=f(b, 2) * 0.9,
                          value_goals=f(b, 2), actor_goals=f(b, 2),
                          rewards=torch.tensor([0.0] + [-1.0] * (b - 1)), masks=torch.tensor([0.0] + [1.0] * (b - 1)))
    if hiql:
        out.low_actor_goals, out.high_actor_targets = f(b, 2), f(b, 2)
    return out


def n(t):
    return t.detach().double().numpy()


def gaussian_log_prob(a, mean):
    """log N(a; mean, I) summed over dimensions (OGBench's actors: sigma = 1)."""
    return (-0.5 * (a - mean) ** 2 - 0.5 * LOG_2PI).sum(-1)


def expectile_weight(adv, tau):
    return np.where(adv >= 0, tau, 1 - tau)


def awr(adv, alpha):
    return np.minimum(np.exp(alpha * adv), 100.0)


def cat(*xs):
    return np.concatenate([n(x) if torch.is_tensor(x) else x for x in xs], -1)


def make(cls, config):
    algo = cls(OBS, ACT, config, seed=0)
    algo.discount = 0.99
    return algo


# ---------------------------------------------------------------------- losses
def test_gcbc_loss_is_the_negative_log_likelihood_of_the_data_actions():
    algo = make(GCBC, GCBCConfig(hidden=(4,)))
    algo.actor.net = Linear(rng_params(1, 4, 2), [0.1, -0.2])
    bt = batch()
    total, info = algo.loss(bt)
    mean = algo.actor.net.np(cat(bt.observations, bt.actor_goals))
    expected = -gaussian_log_prob(n(bt.actions), mean).mean()
    assert float(total.detach()) == pytest.approx(expected, rel=1e-6)
    # by hand: the mean at zero and actions (0.3, -0.4): 0.5 * 0.25 + log(2 pi) = 1.962877...
    algo.actor.net = Linear(np.zeros((4, 2)).tolist(), [0.0, 0.0])
    one = SimpleNamespace(observations=torch.zeros(1, 2), actor_goals=torch.zeros(1, 2),
                          actions=torch.tensor([[0.3, -0.4]]))
    assert float(algo.loss(one)[0].detach()) == pytest.approx(0.125 + LOG_2PI, rel=1e-6)
    assert float(info["actor_loss"].detach()) == pytest.approx(expected, rel=1e-6)


def test_gcivl_value_and_awr_losses():
    cfg = GCIVLConfig(hidden=(4,), expectile=0.9, alpha=10.0)
    algo = make(GCIVL, cfg)
    algo.value = LinearEnsemble(rng_params(2, 2, 4, 1), [[0.1], [-0.1]])
    algo.target_value = LinearEnsemble(rng_params(3, 2, 4, 1), [[-90.0], [-90.2]])
    algo.actor.net = Linear(rng_params(4, 4, 2), [0.0, 0.1])
    bt = batch(4)
    total, info = algo.loss(bt)

    s, s2, g, ga, a = (n(x) for x in (bt.observations, bt.next_observations, bt.value_goals, bt.actor_goals,
                                      bt.actions))
    r, m, gamma = n(bt.rewards), n(bt.masks), 0.99
    vt_next = algo.target_value.np(cat(s2, g))[..., 0]  # [2, B]
    vt = algo.target_value.np(cat(s, g))[..., 0]
    adv = r + gamma * m * vt_next.min(0) - vt.mean(0)
    v = algo.value.np(cat(s, g))[..., 0]
    value_loss = sum((expectile_weight(adv, 0.9) * (r + gamma * m * vt_next[j] - v[j]) ** 2).mean() for j in range(2))
    a_adv = algo.value.np(cat(s2, ga))[..., 0].mean(0) - algo.value.np(cat(s, ga))[..., 0].mean(0)
    actor_loss = -(awr(a_adv, 10.0) * gaussian_log_prob(a, algo.actor.net.np(cat(s, ga)))).mean()
    assert float(info["value_loss"].detach()) == pytest.approx(value_loss, rel=1e-5)
    assert float(info["actor_loss"].detach()) == pytest.approx(actor_loss, rel=1e-5)
    assert float(total.detach()) == pytest.approx(value_loss + actor_loss, rel=1e-5)
    assert (adv > 0).any() and (adv < 0).any()  # both sides of the expectile are exercised


def test_gciql_losses_and_the_actor_does_not_train_the_critic():
    cfg = GCIQLConfig(hidden=(4,), expectile=0.9, alpha=0.003)
    algo = make(GCIQL, cfg)
    algo.value = LinearEnsemble(rng_params(5, 1, 4, 1), [[0.3]])
    algo.critic = LinearEnsemble(rng_params(6, 2, 6, 1), [[0.0], [0.1]])
    algo.target_critic = LinearEnsemble(rng_params(7, 2, 6, 1), [[0.2], [-0.1]])
    algo.actor.net = Linear(rng_params(8, 4, 2, scale=1.0), [0.5, -0.5])
    bt = batch(4, seed=1)
    total, info = algo.loss(bt)

    s, s2, g, ga, a = (n(x) for x in (bt.observations, bt.next_observations, bt.value_goals, bt.actor_goals,
                                      bt.actions))
    r, m, gamma = n(bt.rewards), n(bt.masks), 0.99
    q_t = algo.target_critic.np(cat(s, g, a))[..., 0].min(0)
    v = algo.value.np(cat(s, g))[0, :, 0]
    value_loss = (expectile_weight(q_t - v, 0.9) * (q_t - v) ** 2).mean()
    target = r + gamma * m * algo.value.np(cat(s2, g))[0, :, 0]
    q = algo.critic.np(cat(s, g, a))[..., 0]
    critic_loss = ((q - target) ** 2).mean(1).sum()
    mu = algo.actor.net.np(cat(s, ga))
    q_pi = algo.critic.np(cat(s, ga, np.clip(mu, -1, 1)))[..., 0].min(0)
    actor_loss = -q_pi.mean() / (np.abs(q_pi).mean() + 1e-6) - 0.003 * gaussian_log_prob(a, mu).mean()
    assert float(info["value_loss"].detach()) == pytest.approx(value_loss, rel=1e-5)
    assert float(info["critic_loss"].detach()) == pytest.approx(critic_loss, rel=1e-5)
    assert float(info["actor_loss"].detach()) == pytest.approx(actor_loss, rel=1e-5)
    assert float(total.detach()) == pytest.approx(value_loss + critic_loss + actor_loss, rel=1e-5)
    assert (np.abs(mu) > 1).any()  # the clip to the action box is exercised
    # the actor's term reaches the actor only; the critic learns from L_Q alone
    grads = torch.autograd.grad(info["actor_loss"], list(algo.critic.parameters()), allow_unused=True)
    assert all(gr is None for gr in grads)
    assert algo.critic.weight.requires_grad


def test_iqe_is_the_length_of_a_union_of_intervals():
    # by hand: components (0, 0) -> (1, 2): [0, 1] u [0, 2] = 2; (0, 3) -> (2, 4): [0, 2] u [3, 4] = 3
    x = torch.tensor([[0.0, 0.0, 0.0, 3.0]])
    y = torch.tensor([[1.0, 2.0, 2.0, 4.0]])
    assert float(iqe(x, y, 2, torch.tensor(0.25))) == pytest.approx(0.25 * 3 + 0.75 * 2.5)
    assert float(iqe(y, x, 2, torch.tensor(0.25))) == 0.0  # asymmetric: nothing to cover going back
    rng = np.random.default_rng(0)
    a, b, c = (torch.tensor(rng.normal(size=(200, 12)), dtype=torch.float32) for _ in range(3))
    mix = torch.tensor(0.3)
    d = iqe(a, b, 4, mix).numpy()
    for i in range(20):  # brute force: merge the intervals of each component
        comps = []
        for k in range(3):
            spans = sorted((float(a[i, 4 * k + j]), max(float(a[i, 4 * k + j]), float(b[i, 4 * k + j])))
                           for j in range(4))
            total, reach = 0.0, -math.inf
            for lo, hi in spans:
                total += max(0.0, hi - max(lo, reach))
                reach = max(reach, hi)
            comps.append(total)
        assert d[i] == pytest.approx(0.3 * max(comps) + 0.7 * sum(comps) / 3, rel=1e-5, abs=1e-6)
    assert torch.all(iqe(a, a, 4, mix) == 0)
    assert torch.all(iqe(a, c, 4, mix) <= iqe(a, b, 4, mix) + iqe(b, c, 4, mix) + 1e-5)  # triangle inequality


def iqe_np(x, y, per, mix):
    return n(iqe(torch.tensor(x), torch.tensor(y), per, torch.tensor(mix)))


def test_qrl_losses_and_gradient_routing():
    cfg = QRLConfig(hidden=(4,), latent_dim=4, dim_per_component=2, eps=0.05, alpha=0.0003)
    algo = make(QRL, cfg)
    algo.phi = Linear(rng_params(9, 2, 4, scale=2.0), [0.0, 0.1, -0.1, 0.0])
    algo.dynamics = Linear(rng_params(10, 6, 4), [0.0, 0.0, 0.1, 0.0])
    algo.actor.net = Linear(rng_params(11, 4, 2), [0.0, 0.0])
    with torch.no_grad():
        algo.iqe_mix.fill_(0.4)
        algo.log_lam.fill_(math.log(2.0))
    bt = batch(4, seed=2)
    total, info = algo.loss(bt)

    s, s2, g, ga, a = (n(x) for x in (bt.observations, bt.next_observations, bt.value_goals, bt.actor_goals,
                                      bt.actions))
    mix, lam = 1 / (1 + math.exp(-0.4)), 2.0
    z, z2, zg = (algo.phi.np(x) for x in (s, s2, g))
    d = lambda u, v: iqe_np(u.astype(np.float32), v.astype(np.float32), 2, mix)  # noqa: E731
    d_neg, d_pos = d(z, zg), d(z, z2)
    excess = (np.maximum(d_pos - 1, 0) ** 2).mean()
    value_loss = (100 * np.log1p(np.exp(5 - d_neg / 100))).mean() + lam * excess
    lam_loss = lam * (0.05 - excess)
    z_pred = z + algo.dynamics.np(np.concatenate([z, a], -1))
    dynamics_loss = (d(z2, z_pred) + d(z_pred, z2)).mean() / 2
    mu = algo.actor.net.np(cat(s, ga))
    q = -d(z + algo.dynamics.np(np.concatenate([z, np.clip(mu, -1, 1)], -1)), algo.phi.np(ga))
    actor_loss = -q.mean() / (np.abs(q).mean() + 1e-6) - 0.0003 * gaussian_log_prob(a, mu).mean()
    assert float(info["value_loss"].detach()) == pytest.approx(value_loss, rel=1e-5)
    assert float(info["dynamics_loss"].detach()) == pytest.approx(dynamics_loss, rel=1e-5)
    assert float(info["actor_loss"].detach()) == pytest.approx(actor_loss, rel=1e-5)
    assert float(total.detach()) == pytest.approx(value_loss + lam_loss + dynamics_loss + actor_loss, rel=1e-5)
    assert excess > 0  # the constraint is active in this batch
    # lambda learns from L_lambda alone: d total / d log(lambda) = lambda (eps - excess)
    (grad,) = torch.autograd.grad(total, [algo.log_lam])
    assert float(grad) == pytest.approx(lam * (0.05 - excess), rel=1e-4)
    # the actor's term trains the actor only
    frozen = [*algo.phi.parameters(), *algo.dynamics.parameters(), algo.iqe_mix]
    assert all(gr is None for gr in torch.autograd.grad(info["actor_loss"], frozen, allow_unused=True))


def test_crl_binary_nce_and_ddpg_bc():
    cfg = CRLConfig(hidden=(4,), latent_dim=4, alpha=0.03)
    algo = make(CRL, cfg)
    algo.phi = LinearEnsemble(rng_params(12, 2, 4, 4), rng_params(13, 2, 4))
    algo.psi = LinearEnsemble(rng_params(14, 2, 2, 4), rng_params(15, 2, 4))
    algo.actor.net = Linear(rng_params(16, 4, 2), [0.0, 0.0])
    bt = batch(3, seed=3)
    total, info = algo.loss(bt)

    s, g, ga, a = (n(x) for x in (bt.observations, bt.value_goals, bt.actor_goals, bt.actions))
    phi, psi = algo.phi.np(cat(s, a)), algo.psi.np(g)  # [2, B, 4]
    losses = []
    for e in range(2):
        for i in range(3):
            for j in range(3):
                f = phi[e, i] @ psi[e, j] / 2.0  # / sqrt(latent_dim = 4)
                sig = 1 / (1 + math.exp(-f))
                losses.append(-math.log(sig) if i == j else -math.log(1 - sig))
    critic_loss = float(np.mean(losses))
    mu = algo.actor.net.np(cat(s, ga))
    q = ((algo.phi.np(cat(s, np.clip(mu, -1, 1))) * algo.psi.np(ga)).sum(-1) / 2.0).min(0)
    actor_loss = -q.mean() / (np.abs(q).mean() + 1e-6) - 0.03 * gaussian_log_prob(a, mu).mean()
    assert float(info["critic_loss"].detach()) == pytest.approx(critic_loss, rel=1e-5)
    assert float(info["actor_loss"].detach()) == pytest.approx(actor_loss, rel=1e-5)
    assert float(total.detach()) == pytest.approx(critic_loss + actor_loss, rel=1e-5)
    frozen = [*algo.phi.parameters(), *algo.psi.parameters()]
    assert all(gr is None for gr in torch.autograd.grad(info["actor_loss"], frozen, allow_unused=True))


def test_hiql_value_and_both_policies():
    cfg = HIQLConfig(hidden=(4,), rep_dim=3, expectile=0.7, high_alpha=3.0, low_alpha=3.0)
    algo = make(HIQL, cfg)
    for net, seed in ((algo.value, 17), (algo.target_value, 18)):
        net.rep.net = Linear(rng_params(seed, 4, 3), [0.1, 0.0, -0.1])
        net.value = LinearEnsemble(rng_params(seed + 10, 2, 5, 1), [[0.0], [0.3]])
    algo.low_actor.net = Linear(rng_params(19, 5, 2), [0.0, 0.0])
    algo.high_actor.net = Linear(rng_params(20, 4, 3), [0.2, 0.0, 0.0])
    bt = batch(4, seed=4, hiql=True)
    total, info = algo.loss(bt)

    s, s2, g, ga, a, w, tgt = (n(x) for x in (bt.observations, bt.next_observations, bt.value_goals, bt.actor_goals,
                                              bt.actions, bt.low_actor_goals, bt.high_actor_targets))
    r, m, gamma = n(bt.rewards), n(bt.masks), 0.99

    def rep(net, x, y):
        u = net.rep.net.np(np.concatenate([x, y], -1))
        return u / np.linalg.norm(u, axis=-1, keepdims=True) * math.sqrt(3)

    def value(net, x, y):  # [2, B]
        return net.value.np(np.concatenate([x, rep(net, x, y)], -1))[..., 0]

    vt_next, vt = value(algo.target_value, s2, g), value(algo.target_value, s, g)
    adv = r + gamma * m * vt_next.min(0) - vt.mean(0)
    v = value(algo.value, s, g)
    value_loss = sum((expectile_weight(adv, 0.7) * (r + gamma * m * vt_next[j] - v[j]) ** 2).mean() for j in range(2))
    low_adv = value(algo.value, s2, w).mean(0) - value(algo.value, s, w).mean(0)
    low_mu = algo.low_actor.net.np(np.concatenate([s, rep(algo.value, s, w)], -1))
    low_loss = -(awr(low_adv, 3.0) * gaussian_log_prob(a, low_mu)).mean()
    high_adv = value(algo.value, tgt, ga).mean(0) - value(algo.value, s, ga).mean(0)
    high_mu = algo.high_actor.net.np(np.concatenate([s, ga], -1))
    high_loss = -(awr(high_adv, 3.0) * gaussian_log_prob(rep(algo.value, s, tgt), high_mu)).mean()
    assert float(info["value_loss"].detach()) == pytest.approx(value_loss, rel=1e-5)
    assert float(info["low_actor_loss"].detach()) == pytest.approx(low_loss, rel=1e-5)
    assert float(info["high_actor_loss"].detach()) == pytest.approx(high_loss, rel=1e-5)
    assert float(total.detach()) == pytest.approx(value_loss + low_loss + high_loss, rel=1e-5)
    # phi learns from the value loss only (OGBench's low_actor_rep_grad=False)
    rep_params = list(algo.value.rep.parameters())
    for key in ("low_actor_loss", "high_actor_loss"):
        assert all(gr is None for gr in torch.autograd.grad(info[key], rep_params, allow_unused=True))
    # acting: the high-level mean, length-normalised to sqrt(rep_dim), then the low-level mean
    obs = {"observation": s.astype(np.float32), "desired_goal": ga.astype(np.float32)}
    z = high_mu / np.linalg.norm(high_mu, axis=-1, keepdims=True) * math.sqrt(3)
    expected = np.clip(algo.low_actor.net.np(np.concatenate([s, z], -1)), -1, 1)
    np.testing.assert_allclose(algo.act(obs), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- defaults and plumbing
def test_defaults_are_ogbench_s_pointmaze_hyperparameters():
    """REFERENCE §7: 3x512, lr 3e-4, expectile 0.9 (HIQL 0.7), PointMaze's alphas, tau 0.005."""
    for cfg in (GCBCConfig(), GCIVLConfig(), GCIQLConfig(), QRLConfig(), CRLConfig(), HIQLConfig()):
        assert cfg.hidden == (512, 512, 512) and cfg.lr == 3e-4 and cfg.discount is None and cfg.const_std
    assert not GCBCConfig().layer_norm and all(c.layer_norm for c in (GCIVLConfig(), GCIQLConfig(), QRLConfig(),
                                                                      CRLConfig(), HIQLConfig()))
    assert (GCIVLConfig().expectile, GCIVLConfig().alpha, GCIVLConfig().tau) == (0.9, 10.0, 0.005)
    assert (GCIQLConfig().expectile, GCIQLConfig().alpha) == (0.9, 0.003)
    assert (QRLConfig().latent_dim, QRLConfig().eps, QRLConfig().alpha) == (512, 0.05, 0.0003)
    assert (CRLConfig().latent_dim, CRLConfig().alpha) == (512, 0.03)
    h = HIQLConfig()
    assert (h.expectile, h.high_alpha, h.low_alpha, h.rep_dim, h.tau) == (0.7, 3.0, 3.0, 10, 0.005)
    assert set(ALGORITHMS) == {"gcbc", "gcivl", "gciql", "qrl", "crl", "hiql"}


def test_the_actor_is_ogbench_s_gaussian_and_networks_are_glorot_initialised():
    algo = GCIVL(OBS, ACT, GCIVLConfig(), seed=0)
    layers = [m for m in algo.actor.net.modules() if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in layers] == [(4, 512), (512, 512), (512, 512), (512, 2)]
    assert not any(isinstance(m, nn.LayerNorm) for m in algo.actor.modules())
    assert sum(isinstance(m, nn.LayerNorm) for m in algo.value.modules()) == 3
    assert all(isinstance(m, nn.GELU) for m in algo.actor.net if not isinstance(m, nn.Linear))
    bound = math.sqrt(6 / (512 + 512))
    assert layers[1].weight.abs().max() <= bound and layers[1].weight.abs().max() > 0.95 * bound
    assert layers[-1].weight.abs().max() <= 0.1 * math.sqrt(6 / (512 + 2))  # the mean head at scale 1e-2
    assert all(float(l.bias.detach().abs().max()) == 0 for l in layers)


def test_discount_and_goal_mix_follow_the_dataset():
    from offbench.data.goal_batches import GoalBatchConfig

    class Fake:
        def __init__(self, dataset_id):
            self.metadata = SimpleNamespace(dataset_id=dataset_id, recipe={})

    for cls, config in ((GCIVL, GCIVLConfig(hidden=(4,))), (HIQL, HIQLConfig(hidden=(4,)))):
        algo = cls(OBS, ACT, config, seed=0)
        algo.prepare(Fake("goal/pointmaze-giant/stitch-v0"))
        assert algo.discount == 0.995
        assert algo.batch_config == GoalBatchConfig.ogbench(algo.method, stitch=True, discount=0.995)
        algo.prepare(Fake("goal/pointmaze-medium/navigate-v0"))
        assert algo.discount == 0.99 and algo.batch_config.actor_random == 0.0
    algo = GCIVL(OBS, ACT, GCIVLConfig(hidden=(4,), discount=0.9), seed=0)
    algo.prepare(Fake("goal/pointmaze-giant/navigate-v0"))
    assert algo.discount == 0.9 and algo.batch_config.discount == 0.9


def test_non_goal_datasets_are_refused():
    with pytest.raises(OffbenchError, match="Dict observations"):
        GCBC(BOX2, ACT, GCBCConfig(hidden=(4,)))
    with pytest.raises(OffbenchError, match="Box"):
        GCBC(OBS, gym.spaces.Discrete(3), GCBCConfig(hidden=(4,)))
    with pytest.raises(OffbenchError, match="multiple"):
        QRL(OBS, ACT, QRLConfig(hidden=(4,), latent_dim=10, dim_per_component=8))


# ---------------------------------------------------------------------- training through fit
@pytest.fixture(scope="module")
def tiny_navigate(tmp_path_factory):
    """Three 150-step episodes of OGBench's navigate recipe in the medium maze."""
    pytest.importorskip("ogbench", reason="PointMaze needs `pip install --no-deps ogbench==1.2.2`")
    from offbench.data.dataset import read_dataset
    from offbench.data.goal_generation import write_pointmaze

    recipe = dict(kind="ogbench_pointmaze", maze="medium", dataset_type="navigate", episodes=3, first_episode=0,
                  max_episode_steps=150, noise=0.5, seed=0, ogbench_version="1.2.2")
    path = tmp_path_factory.mktemp("goal") / "nav.hdf5"
    return read_dataset(write_pointmaze(path, recipe, dataset_id="goal/pointmaze-medium/navigate-v0",
                                        reference_scores={"random": 0.0, "expert": 1.0}))


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_a_killed_run_resumes_to_identical_parameters(name, tiny_navigate, tmp_path):
    from offbench.train import TrainConfig
    from tests.conftest import kill_and_resume

    settings = {"hidden": [16, 16], **({"latent_dim": 16} if name in ("qrl", "crl") else {})}
    config = TrainConfig(steps=12, batch_size=32, eval_every=12, eval_episodes=2, final_eval_episodes=2,
                         checkpoint_every=4, log_every=6)
    kill_and_resume(ALGORITHMS[name], tiny_navigate, settings, config, tmp_path, kill_at=10, checkpoint_at=8)
    row = json.loads((tmp_path / "a" / "evaluations.jsonl").read_text())
    first = row["task_ids"][0]
    assert row["task_ids"] == [first, 1 + first % 5]  # consecutive episodes play consecutive tasks
    assert row["normalized_score"] == 100 * row["success_rate"] and len(row["successes"]) == 2


# ---------------------------------------------------------------------- learning (slow)
# Nearby goals in the medium maze, each 2 cells (BFS) from its start; success as OGBench counts it
# (within 1.0 of the goal; the episode ends there), at most 200 steps. A uniform random policy
# reaches none of them (asserted below).
NEAR_TASKS = [((1, 1), (2, 2)), ((4, 4), (4, 6)), ((6, 1), (6, 3)), ((2, 4), (3, 3))]
# (gradient steps, success required) with 2x64 networks (latent 64), batch 256, 100 stitch episodes;
# measured on this machine: GCBC, GCIVL and HIQL 100% from 1000 steps, GCIQL 92% at 6000, QRL 85% at
# 6000, CRL 50% at 3000-4500 steps.
LEARNING = {"gcbc": (1000, 0.9), "gcivl": (1500, 0.9), "hiql": (1000, 0.9), "gciql": (6000, 0.75),
            "qrl": (6000, 0.6), "crl": (4500, 0.3)}


@pytest.fixture(scope="module")
def near_stitch(tmp_path_factory):
    """100 episodes of OGBench's stitch recipe in the medium maze (201 steps, goals 4 cells away)."""
    pytest.importorskip("ogbench", reason="PointMaze needs `pip install --no-deps ogbench==1.2.2`")
    from offbench.data.dataset import read_dataset
    from offbench.data.goal_generation import write_pointmaze

    recipe = dict(kind="ogbench_pointmaze", maze="medium", dataset_type="stitch", episodes=100, first_episode=0,
                  max_episode_steps=201, noise=0.5, seed=0, ogbench_version="1.2.2")
    path = tmp_path_factory.mktemp("near") / "stitch.hdf5"
    return read_dataset(write_pointmaze(path, recipe, dataset_id="goal/pointmaze-medium/stitch-v0",
                                        reference_scores={"random": 0.0, "expert": 1.0}))


@pytest.mark.slow
def test_a_random_policy_reaches_no_nearby_goal():
    from offbench.goal import play_tasks

    rng = np.random.default_rng(0)
    success = play_tasks(lambda obs: rng.uniform(-1, 1, (len(obs["observation"]), 2)).astype(np.float32),
                         "medium", NEAR_TASKS, 10, seed=100, max_episode_steps=200)
    assert success.mean() == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(LEARNING))
def test_each_method_learns_to_reach_nearby_goals(name, near_stitch):
    from offbench.goal import play_tasks
    from offbench.train import build_algorithm

    steps, required = LEARNING[name]
    torch.set_num_threads(1)
    settings = {"hidden": [64, 64], **({"latent_dim": 64} if name in ("qrl", "crl") else {})}
    algo = build_algorithm(ALGORITHMS[name], near_stitch, settings, seed=0)
    sampler = algo.make_sampler(algo.prepare(near_stitch), 256, 0)
    for _ in range(steps):
        algo.update(sampler.sample())
    algo.eval()
    success = play_tasks(algo.act, "medium", NEAR_TASKS, 10, seed=100, max_episode_steps=200)
    assert success.mean() >= required, (name, success.mean(1))
