"""TD3+BC, AWAC and AWR: losses against hand computations, TD3+BC's lambda and policy delay, AWR's
two value targets, exact resume, and learning on real datasets (marked slow)."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from baselines.awac import AWAC, AWACConfig
from baselines.awr import AWR, AWRConfig
from baselines.td3_bc import TD3BC, TD3BCConfig
from offbench import load_dataset
from offbench.data.dataset import read_dataset
from offbench.data.recipes import build_dataset
from offbench.data.sampling import TransitionBatch
from offbench.data.writer import DatasetWriter
from offbench.errors import OffbenchError
from offbench.train import TrainConfig, train_run
from tests.conftest import kill_and_resume

OBS = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
ACT = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


def batch(obs, actions, rewards=(0.0, 0.0), next_obs=(0.0, 0.0), terminations=(0.0, 0.0), discount=0.9, **extras):
    t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    n = len(obs)
    return TransitionBatch(observations=t(obs).view(n, -1), actions=t(actions).view(n, -1), rewards=t(rewards),
                           next_observations=t(next_obs).view(n, -1), terminations=t(terminations),
                           truncations=torch.zeros(n), discounts=torch.full((n,), discount),
                           extras={k: t(v) for k, v in extras.items()})


@torch.no_grad()
def set_linear(layer, weight, bias):
    """Set an nn.Linear ([out, in]) or EnsembleLinear ([members, in, out]) layer in place."""
    layer.weight.copy_(torch.tensor(weight, dtype=torch.float32).view_as(layer.weight))
    layer.bias.copy_(torch.tensor(bias, dtype=torch.float32).view_as(layer.bias))


# Hand-set linear critics (hidden=()): Q1(s, a) = 2 s + 3 a + 1 and Q2(s, a) = -s + a + 0.5.
def set_critics(*critics):
    for critic in critics:
        set_linear(critic.net.out, [[2.0, 3.0], [-1.0, 1.0]], [1.0, 0.5])


# ---------------------------------------------------------------------- TD3+BC
def linear_td3bc(**overrides) -> TD3BC:
    """hidden=() makes every network one linear layer; pi(s) = tanh(atanh 0.5) = 0.5 for every s."""
    algo = TD3BC(OBS, ACT, TD3BCConfig(hidden=(), normalize_observations=False, **overrides))
    for actor in (algo.actor, algo.actor_target):
        set_linear(actor.net[0], [0.0], [math.atanh(0.5)])
    set_critics(algo.critic, algo.critic_target)
    return algo


def test_td3bc_critic_loss_by_hand():
    algo = linear_td3bc(policy_noise=0.0)
    b = batch(obs=[1.0, -3.0], actions=[0.5, -0.5], rewards=[1.0, 2.0], next_obs=[2.0, 0.0], terminations=[0.0, 1.0])
    loss, q = algo.critic_loss(b)
    # Q1 = [2 + 1.5 + 1, -6 - 1.5 + 1] = [4.5, -6.5]; Q2 = [-1 + 0.5 + 0.5, 3 - 0.5 + 0.5] = [0, 3].
    torch.testing.assert_close(q, torch.tensor([[4.5, -6.5], [0.0, 3.0]]))
    # a' = 0.5 (no noise); min(Q1'(2, .5), Q2'(2, .5)) = min(6.5, -1) = -1: y = [1 + 0.9 * -1, 2 (terminated)].
    y = np.array([0.1, 2.0])
    expected = np.mean((np.array([4.5, -6.5]) - y) ** 2) + np.mean((np.array([0.0, 3.0]) - y) ** 2)
    assert expected == pytest.approx(46.31)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_td3bc_target_noise_is_scaled_clipped_and_drawn_from_the_generator(monkeypatch):
    wide = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)  # half-range 2
    algo = TD3BC(OBS, wide, TD3BCConfig(hidden=(), normalize_observations=False), seed=5)
    set_linear(algo.actor_target.net[0], [0.0], [0.0])  # pi'(s') = 0
    seen = {}

    def critic_target(obs, action):
        seen["action"] = action.clone()
        return torch.zeros(2, len(obs))

    monkeypatch.setattr(algo.critic_target, "forward", critic_target)
    n = 4000
    b = TransitionBatch(observations=torch.zeros(n, 1), actions=torch.zeros(n, 1), rewards=torch.zeros(n),
                        next_observations=torch.zeros(n, 1), terminations=torch.zeros(n), truncations=torch.zeros(n),
                        discounts=torch.full((n,), 0.99))
    state = algo.generator.get_state()
    algo.critic_loss(b)
    eps = torch.randn(n, 1, generator=torch.Generator().manual_seed(0).set_state(state))
    torch.testing.assert_close(seen["action"], (0.2 * eps).clamp(-0.5, 0.5) * 2.0)
    assert seen["action"].abs().max().item() == pytest.approx(1.0)  # clipped at 0.5 x half-range
    assert (seen["action"].abs() == 1.0).sum() > 10  # |eps| > 2.5 happens ~1.2% of the time
    assert seen["action"].std().item() == pytest.approx(0.4, rel=0.05)  # 0.2 x half-range


def test_td3bc_actor_loss_and_lambda_by_hand():
    algo = linear_td3bc()
    b = batch(obs=[1.0, -3.0], actions=[0.5, -0.5])
    loss, info = algo.actor_loss(b)
    # pi = 0.5: Q1(s, pi) = [2 + 1.5 + 1, -6 + 1.5 + 1] = [4.5, -3.5]; mean|Q| = 4: lambda = 2.5 / 4.
    assert info["lambda"].item() == pytest.approx(0.625)
    # -lambda mean(Q) + mean((pi - a)^2) = -0.625 * 0.5 + (0 + 1) / 2.
    assert info["bc_loss"].item() == pytest.approx(0.5)
    assert loss.item() == pytest.approx(0.1875)
    loss.backward()
    grad = algo.actor.net[0].weight.grad.clone()

    # The normalisation: scaling every Q by 10 leaves the loss and the actor's gradient unchanged.
    scaled = linear_td3bc()
    set_linear(scaled.critic.net.out, [[20.0, 30.0], [-10.0, 10.0]], [10.0, 5.0])
    loss10, info10 = scaled.actor_loss(b)
    assert info10["lambda"].item() == pytest.approx(0.0625)
    assert loss10.item() == pytest.approx(0.1875)
    loss10.backward()
    torch.testing.assert_close(scaled.actor.net[0].weight.grad, grad)


def test_td3bc_actor_and_targets_update_every_second_step_only():
    algo = TD3BC(OBS, ACT, TD3BCConfig(hidden=(8, 8)), seed=0)
    gen = torch.Generator().manual_seed(1)
    b = TransitionBatch(observations=torch.randn(32, 1, generator=gen),
                        actions=torch.rand(32, 1, generator=gen) * 2 - 1, rewards=torch.randn(32, generator=gen),
                        next_observations=torch.randn(32, 1, generator=gen),
                        terminations=torch.zeros(32), truncations=torch.zeros(32), discounts=torch.full((32,), 0.99))

    def snapshot(module):
        return torch.cat([p.detach().flatten().clone() for p in module.parameters()])

    changed, metrics = [], []
    for _ in range(6):
        before = {name: snapshot(getattr(algo, name)) for name in ("actor", "critic", "actor_target", "critic_target")}
        metrics.append(algo.update(b))
        changed.append({name: not torch.equal(before[name], snapshot(getattr(algo, name))) for name in before})
    assert [c["critic"] for c in changed] == [True] * 6
    for name in ("actor", "actor_target", "critic_target"):
        assert [c[name] for c in changed] == [True, False, True, False, True, False], name
    # Between actor updates the actor's metrics repeat those of the latest actor update.
    assert metrics[1]["actor_loss"] == metrics[0]["actor_loss"] and metrics[3]["lambda"] == metrics[2]["lambda"]
    assert metrics[2]["actor_loss"] != metrics[0]["actor_loss"]
    assert int(algo.state_dict()["_extra_state"]) == 6  # the delay phase travels with the checkpoint


def test_td3bc_and_awac_refuse_discrete_actions():
    for cls, config in ((TD3BC, TD3BCConfig()), (AWAC, AWACConfig())):
        with pytest.raises(OffbenchError, match="awr"):
            cls(OBS, gym.spaces.Discrete(3), config)


# ---------------------------------------------------------------------- AWAC
def linear_awac(monkeypatch, sampled=0.0, **overrides) -> AWAC:
    """Linear critics as above; a Gaussian policy N(0, 0.5^2) whose samples are monkeypatched to ``sampled``."""
    algo = AWAC(OBS, ACT, AWACConfig(hidden=(), normalize_observations=False, **overrides))
    set_critics(algo.critic, algo.critic_target)
    set_linear(algo.actor.net[0], [0.0], [0.0])  # mean = tanh(0) = 0
    with torch.no_grad():
        algo.actor.log_std.fill_(math.log(0.5))
    # AWAC samples through GaussianPolicy.sample (from the one mean/std forward it shares with log pi)
    monkeypatch.setattr(algo.actor, "sample", lambda mean, std, deterministic=False, generator=None,
                        with_log_prob=True, noise=None: (torch.full((len(mean), 1), sampled), torch.zeros(len(mean))))
    return algo


def gaussian_log_prob(a, mean=0.0, std=0.5):
    return -0.5 * ((a - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def test_awac_critic_loss_by_hand(monkeypatch):
    algo = linear_awac(monkeypatch)
    b = batch(obs=[1.0, -3.0], actions=[0.5, -0.5], rewards=[1.0, 2.0], next_obs=[2.0, 0.0], terminations=[0.0, 1.0])
    loss, _ = algo.critic_loss(b)
    # a' ~ pi(.|s') = 0: min(Q1'(2, 0), Q2'(2, 0)) = min(5, -1.5): y = [1 + 0.9 * -1.5, 2 (terminated)].
    y = np.array([-0.35, 2.0])
    expected = np.mean((np.array([4.5, -6.5]) - y) ** 2) + np.mean((np.array([0.0, 3.0]) - y) ** 2)
    assert loss.item() == pytest.approx(expected, rel=1e-6) and expected == pytest.approx(48.4475)


def test_awac_advantage_weights_and_actor_loss_by_hand(monkeypatch):
    obs, actions = torch.tensor([[1.0], [-3.0]]), torch.tensor([[0.5], [-0.5]])
    # Q = min(Q1, Q2)(s, a) = min([4.5, -6.5], [0, 3]) = [0, -6.5]; V = min(Q1, Q2)(s, a' = 0) = min([3, -5],
    # [-0.5, 3.5]) = [-0.5, -5]; A = [0.5, -1.5].
    algo = linear_awac(monkeypatch)
    weights, advantage = algo.advantage_weights(obs, actions)
    torch.testing.assert_close(advantage, torch.tensor([0.5, -1.5]))
    torch.testing.assert_close(weights, torch.tensor([math.exp(0.5), math.exp(-1.5)]))
    # lambda = 0.25: exp(A / lambda) = [e^2, e^-6], the first clipped at max_weight 5.
    sharp = linear_awac(monkeypatch, temperature=0.25, max_weight=5.0)
    torch.testing.assert_close(sharp.advantage_weights(obs, actions)[0], torch.tensor([5.0, math.exp(-6.0)]))

    # The actor loss: -mean(w * log N(a; 0, 0.5^2)).
    loss, info = algo.actor_loss(batch(obs=[1.0, -3.0], actions=[0.5, -0.5]))
    expected = -(math.exp(0.5) * gaussian_log_prob(0.5) + math.exp(-1.5) * gaussian_log_prob(-0.5)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert info["weight_mean"].item() == pytest.approx((math.exp(0.5) + math.exp(-1.5)) / 2)


def test_awac_value_averages_policy_samples(monkeypatch):
    algo = AWAC(OBS, ACT, AWACConfig(hidden=(), normalize_observations=False, value_samples=2))
    set_critics(algo.critic)
    # Rows of the repeated batch [s1, s2, s1, s2] get a' = [0, 0.1, 0.2, 0.3].
    monkeypatch.setattr(algo.actor, "sample", lambda mean, std, deterministic=False, generator=None,
                        with_log_prob=True, noise=None: (0.1 * torch.arange(len(mean), dtype=torch.float32).unsqueeze(1),
                                             torch.zeros(len(mean))))
    _, advantage = algo.advantage_weights(torch.tensor([[1.0], [-3.0]]), torch.tensor([[0.5], [-0.5]]))
    q_min = lambda s, a: min(2 * s + 3 * a + 1, -s + a + 0.5)  # noqa: E731
    value = [(q_min(1.0, 0.0) + q_min(1.0, 0.2)) / 2, (q_min(-3.0, 0.1) + q_min(-3.0, 0.3)) / 2]
    torch.testing.assert_close(advantage, torch.tensor([q_min(1.0, 0.5) - value[0], q_min(-3.0, -0.5) - value[1]]))


# ---------------------------------------------------------------------- AWR
@pytest.fixture
def tiny(tmp_path):
    """Episode 0: s = 0, 1, 2 (final 3), rewards 1, 2, 3, terminated. Episode 1: s = 10, 11 (final 12),
    rewards 1, 1, truncated by a time limit."""
    path = tmp_path / "tiny.h5"
    with DatasetWriter(path, dataset_id="test/tiny-v0", env_id="Tiny-v0", observation_space=OBS,
                       action_space=ACT) as writer:
        for obs, rewards, terminated in (([0, 1, 2, 3], [1, 2, 3], True), ([10, 11, 12], [1, 1], False)):
            none, last = np.zeros(len(rewards), bool), np.arange(len(rewards)) == len(rewards) - 1
            writer.add_episode(observations=np.array(obs, np.float32)[:, None],
                               actions=np.zeros((len(rewards), 1), np.float32), rewards=np.array(rewards, np.float32),
                               terminations=last if terminated else none, truncations=none if terminated else last)
    return read_dataset(path)


def test_awr_monte_carlo_and_td_value_targets_on_a_tiny_dataset(tiny):
    gamma = 0.5
    mc = AWR(OBS, ACT, AWRConfig(gamma=gamma, value_target="monte_carlo", hidden=(), normalize_observations=False))
    rows = mc.make_sampler(tiny, 5, seed=0).batch_at(torch.arange(5))
    # Discounted returns-to-go: [1 + 2/2 + 3/4, 2 + 3/2, 3 | 1 + 1/2, 1]; the truncated episode gets no bootstrap.
    torch.testing.assert_close(mc.returns(rows), torch.tensor([2.75, 3.5, 3.0, 1.5, 1.0]))

    td = AWR(OBS, ACT, AWRConfig(gamma=gamma, value_target="td", hidden=(), normalize_observations=False))
    set_linear(td.target_value[0], [1.0], [1.0])  # V'(s) = s + 1
    rows = td.make_sampler(tiny, 5, seed=0).batch_at(torch.arange(5))
    # r + gamma (1 - terminated) V'(s'): s' = 1, 2, 3 (terminal: no bootstrap) | 11, 12 (truncated: bootstrap).
    torch.testing.assert_close(td.returns(rows), torch.tensor([1 + 0.5 * 2, 2 + 0.5 * 3, 3.0, 1 + 0.5 * 12,
                                                               1 + 0.5 * 13]))


def test_awr_losses_by_hand_continuous():
    algo = AWR(OBS, ACT, AWRConfig(hidden=(), normalize_observations=False, temperature=0.5))
    set_linear(algo.value[0], [1.0], [1.0])  # V(s) = s + 1
    set_linear(algo.actor.net[0], [0.0], [0.0])
    with torch.no_grad():
        algo.actor.log_std.fill_(math.log(0.5))
    b = batch(obs=[0.0, 10.0], actions=[0.5, -0.25], returns_to_go=[2.75, 1.5])
    value_loss, policy_loss, info = algo.loss(b)
    # A = R - V(s) = [2.75 - 1, 1.5 - 11] = [1.75, -9.5]; weights = min(exp(A / 0.5), 20) = [20 (e^3.5 = 33.1), e^-19].
    assert value_loss.item() == pytest.approx((1.75 ** 2 + 9.5 ** 2) / 2)
    assert info["weight_mean"].item() == pytest.approx((20.0 + math.exp(-19.0)) / 2)
    expected = -(20.0 * gaussian_log_prob(0.5) + math.exp(-19.0) * gaussian_log_prob(-0.25)) / 2
    assert policy_loss.item() == pytest.approx(expected, rel=1e-6)


def test_awr_losses_by_hand_discrete():
    algo = AWR(gym.spaces.Discrete(3), gym.spaces.Discrete(2), AWRConfig(hidden=(), temperature=1.0))
    set_linear(algo.value[0], [[0.0, 1.0, 2.0]], [0.0])  # V(one-hot s) = s
    set_linear(algo.actor.net[0], [[0.0] * 3, [0.0] * 3], [0.0, math.log(3.0)])  # pi = [1/4, 3/4] everywhere
    b = TransitionBatch(observations=torch.tensor([0, 2]), actions=torch.tensor([0, 1]), rewards=torch.zeros(2),
                        next_observations=torch.tensor([1, 2]), terminations=torch.zeros(2), truncations=torch.zeros(2),
                        discounts=torch.full((2,), 0.99), extras={"returns_to_go": torch.tensor([1.0, 1.0])})
    value_loss, policy_loss, _ = algo.loss(b)
    # A = [1 - 0, 1 - 2] = [1, -1]: loss = -(e log 1/4 + e^-1 log 3/4) / 2.
    assert value_loss.item() == pytest.approx(1.0)
    assert policy_loss.item() == pytest.approx(-(math.e * math.log(0.25) + math.log(0.75) / math.e) / 2, rel=1e-6)
    assert algo.act(np.array([0, 1, 2])).tolist() == [1, 1, 1]


def test_awr_rejects_an_unknown_value_target():
    with pytest.raises(OffbenchError, match="monte_carlo"):
        AWR(OBS, ACT, AWRConfig(value_target="lambda"))


# ---------------------------------------------------------------------- the training loop
# checkpoint_every = 15 puts the resumed checkpoint at step 45, an odd step: a TD3+BC that forgot
# its update count on resume would update its actor one step out of phase.
SMALL = TrainConfig(steps=60, batch_size=32, eval_every=30, eval_episodes=2, final_eval_episodes=2,
                    checkpoint_every=15, log_every=10)


@pytest.mark.parametrize("name, settings", [("td3_bc", {}), ("awac", {}), ("awr", {"value_target": "monte_carlo"}),
                                            ("awr", {"value_target": "td"})])
def test_resume_after_kill_gives_identical_parameters(pendulum, tmp_path, name, settings):
    kill_and_resume(name, pendulum, {"hidden": [16, 16], **settings}, SMALL, tmp_path, kill_at=47, checkpoint_at=45)


# ---------------------------------------------------------------------- learning
@pytest.mark.parametrize("name, settings", [("awr", {"value_target": "monte_carlo"}), ("awr", {"value_target": "td"}),
                                            ("bc", {})])
def test_awr_stitches_the_gridworld_where_bc_cannot(monkeypatch, tmp_path, name, settings):
    """StitchGrid medium-v0: route A (s1 -> s5 -> s3) and route B (s7 -> s5 -> s9). The optimum from s1
    joins them at s5. At s5 the data's SE actions (route B) earn +1 and its NE actions (route A) -0.1 per
    step: AWR's weights favour SE with either value target, while BC copies the majority NE."""
    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    build_dataset("lite/stitchgrid/medium-v0", progress=False)
    data = load_dataset("lite/stitchgrid/medium-v0")
    lr = {"bc": {"lr": 3e-3}, "awr": {"actor_lr": 3e-3, "value_lr": 3e-3, "tau": 0.05}}[name]
    summary = train_run(name, data, {"hidden": [32, 32], **lr, **settings},
                        TrainConfig(steps=300, batch_size=64, eval_every=300, eval_episodes=30, final_eval_episodes=30,
                                    checkpoint_every=300, log_every=100), tmp_path / "run", progress=False)
    # Normalised: 100 is the optimum (return 0.9 from both starts), 0 the uniform random policy. BC
    # turns NE at s5 from both starts and waits at s3 (return -1.0): about -22 (measured -22.3).
    if name == "awr":
        assert summary["score"] == pytest.approx(100.0, abs=1e-6)
    else:
        assert summary["score"] < 0


@pytest.fixture(scope="module")
def pendulum_random(tmp_path_factory):
    """The real lite/pendulum/random-v0 card: 100k steps of uniformly random torques, 500 episodes."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OFFBENCH_HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("OFFBENCH_CATALOGUE", raising=False)
        build_dataset("lite/pendulum/random-v0", progress=False)
        return load_dataset("lite/pendulum/random-v0")


# A short budget: 2x64 networks, Adam 1e-3 and tau 0.02 (instead of 2x256, 3e-4, 0.005) so that
# values propagate over Pendulum's ~100-step horizon within 4000 updates. TD3+BC's alpha is raised
# from 2.5 to 100: on uniform-random data its BC term pulls towards the data's mean torque (zero),
# and at alpha = 2.5 the policy stays there (measured: 11.6, exactly BC's score with this budget;
# the paper's random-data scores are low for the same reason).
FAST = {"hidden": [64, 64], "tau": 0.02}
LEARN = TrainConfig(steps=4000, batch_size=256, eval_every=4000, eval_episodes=10, final_eval_episodes=10,
                    checkpoint_every=4000, log_every=1000)


@pytest.mark.slow
@pytest.mark.parametrize("name, settings, floor", [
    ("td3_bc", {"alpha": 100.0, "actor_lr": 1e-3, "critic_lr": 1e-3}, 60.0),
    ("awac", {"actor_lr": 1e-3, "critic_lr": 1e-3}, 60.0),
    ("awr", {"value_target": "td", "actor_lr": 1e-3, "value_lr": 1e-3}, 30.0),
])
def test_learns_to_swing_up_from_uniform_random_pendulum_data(pendulum_random, tmp_path, name, settings, floor):
    """Normalised score 0 = the uniform random policy (the data), 100 = a scripted swing-up controller.
    Measured (seed 0 here; seed 1): TD3+BC 98.7 (96.6), AWAC 101.0 (83.0), AWR-TD 53.9 (47.5); BC 11.6.
    AWR's Monte-Carlo target scores 14.9 on this data: every episode is cut by the time limit (see
    baselines/awr.py), so it is tested on the gridworld above."""
    summary = train_run(name, pendulum_random, {**FAST, **settings}, LEARN, tmp_path / name, progress=False)
    assert summary["score"] > floor
