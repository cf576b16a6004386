"""Model-based offline RL: the dynamics ensemble (offbench/dynamics.py), MOPO and COMBO."""
from __future__ import annotations

import json
import math
import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from offbench.dynamics import DynamicsEnsemble, gaussian_nll, holdout_split, soft_clamp_logvar
from offbench.envs.tasks import get_task
from offbench.errors import OffbenchError
from offbench.train import TrainConfig, build_algorithm, fit, train_run

DATASET = "lite/pendulum/random-v0"


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as training runs use by default (on a busy 2-core machine two threads
    contend and a small matmul can take 30x longer)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pendulum(tmp_path_factory):
    """The real 100k-step random Pendulum dataset, built once for the module (in memory)."""
    from offbench import load_dataset
    from offbench.data.recipes import build_dataset

    home = tmp_path_factory.mktemp("offbench_home")
    saved = {k: os.environ.get(k) for k in ("OFFBENCH_HOME", "OFFBENCH_CATALOGUE")}
    os.environ["OFFBENCH_HOME"] = str(home)
    os.environ.pop("OFFBENCH_CATALOGUE", None)
    try:
        build_dataset(DATASET, progress=False)
        return load_dataset(DATASET)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def constant_ensemble(obs_dim, act_dim, mean_bias, logvar_bias, members=None, elites=None, hidden=(8,)):
    """An ensemble whose outputs do not depend on the input: zero output weights, given biases
    ``mean_bias`` [M, O + 1] and raw log-variance ``logvar_bias`` [M, O + 1]."""
    mean_bias, logvar_bias = torch.as_tensor(mean_bias, dtype=torch.float32), torch.as_tensor(logvar_bias,
                                                                                              dtype=torch.float32)
    members = members or mean_bias.shape[0]
    model = DynamicsEnsemble(obs_dim, act_dim, members=members, elites=elites or min(5, members), hidden=hidden)
    with torch.no_grad():
        model.net.out.weight.zero_()
        model.net.out.bias.copy_(torch.cat([mean_bias, logvar_bias], dim=-1).unsqueeze(1))
    return model


# ---------------------------------------------------------------------- the ensemble's pieces
def test_gaussian_nll_by_hand():
    mean = torch.tensor([[[0.0, 1.0]], [[2.0, -1.0]]])  # [M=2, B=1, D=2]
    logvar = torch.tensor([[[0.0, math.log(4.0)]], [[math.log(0.25), 0.0]]])
    target = torch.tensor([[[1.0, 3.0]], [[2.0, 1.0]]])
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    # member 0: dim 0: 0.5 * (1 * 1 + 0); dim 1: 0.5 * (4 / 4 + log 4)
    m0 = (0.5 * 1.0 + 0.5 * (1.0 + math.log(4.0))) / 2 + half_log_2pi
    # member 1: dim 0: 0.5 * (0 + log 0.25); dim 1: 0.5 * (4 * 1 + 0)
    m1 = (0.5 * math.log(0.25) + 0.5 * 4.0) / 2 + half_log_2pi
    np.testing.assert_allclose(gaussian_nll(mean, logvar, target).numpy(), [m0, m1], rtol=1e-6)
    # the same as torch's Gaussian log-density
    ref = -torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(target).mean(dim=(1, 2))
    torch.testing.assert_close(gaussian_nll(mean, logvar, target), ref)


def test_logvar_soft_bounds_clamp_as_documented():
    max_lv, min_lv = torch.tensor(0.5, requires_grad=True), torch.tensor(-10.0, requires_grad=True)
    raw = torch.tensor([-1000.0, -30.0, -10.0, -3.0, 0.0, 0.5, 5.0, 1000.0])
    out = soft_clamp_logvar(raw, max_lv, min_lv)
    # by hand: max - softplus(max - l), then min + softplus(l - min)
    by_hand = []
    for l in raw.tolist():
        l = 0.5 - math.log1p(math.exp(min(0.5 - l, 50))) if 0.5 - l < 50 else l  # softplus(x) = x for large x
        by_hand.append(-10.0 + math.log1p(math.exp(l + 10.0)) if l + 10.0 < 50 else l)
    np.testing.assert_allclose(out.detach().numpy(), by_hand, rtol=1e-5, atol=1e-5)
    # never below min; above max by at most softplus(min - max) = log(1 + e^-10.5)
    assert torch.all(out >= -10.0) and torch.all(out <= 0.5 + math.log1p(math.exp(-10.5)) + 1e-6)
    assert out[0].item() == pytest.approx(-10.0, abs=1e-6) and out[-1].item() == pytest.approx(0.5, abs=1e-4)
    # well inside the bounds it is nearly the identity; it never decreases (float32 saturates at the bounds)
    assert out[3].item() == pytest.approx(-3.0, abs=0.05) and torch.all(out[1:] >= out[:-1])
    # the bounds are learned: gradients reach them
    out.sum().backward()
    assert max_lv.grad.item() > 0 and min_lv.grad.item() > 0

    # inside the ensemble: a huge raw log-variance is capped at the member's max bound, a tiny one at its min
    model = constant_ensemble(2, 1, torch.zeros(2, 3), torch.tensor([[100.0] * 3, [-100.0] * 3]), elites=2)
    _, logvar = model(torch.zeros(4, 2), torch.zeros(4, 1))
    torch.testing.assert_close(logvar[0], torch.full((4, 3), 0.5 + math.log1p(math.exp(-10.5))), atol=1e-6, rtol=0)
    torch.testing.assert_close(logvar[1], torch.full((4, 3), -10.0), atol=1e-5, rtol=0)
    loss, _ = model.loss(torch.zeros(4, 2), torch.zeros(4, 1), torch.zeros(4, 3))
    nll = gaussian_nll(*model(torch.zeros(4, 2), torch.zeros(4, 1)), torch.zeros(4, 3)).sum()
    # bound regulariser 0.01 * (sum max - sum min): 2 members x 3 dims x (0.5 + 10)
    assert (loss - nll).item() == pytest.approx(0.01 * 2 * 3 * 10.5, rel=1e-5)


def test_elite_selection_picks_the_lowest_holdout_errors():
    offsets = torch.tensor([0.9, 0.1, 0.5, 2.0, 0.3, 0.05, 1.5])  # member i predicts delta = reward = offset_i
    model = constant_ensemble(3, 2, offsets[:, None].expand(7, 4), torch.zeros(7, 4), elites=5)
    obs, act = torch.randn(50, 3), torch.randn(50, 2)
    mse = model.mse(obs, act, torch.zeros(50, 4))  # every prediction is off by offset_i in every output
    torch.testing.assert_close(mse, offsets ** 2)
    elites = model.select_elites(mse)
    assert elites.tolist() == [5, 1, 4, 2, 0]  # the five lowest errors, best first
    assert model.elites.tolist() == [5, 1, 4, 2, 0] and model.holdout_mse.tolist() == pytest.approx(mse.tolist())
    # predictions only ever come from elites: the sampled delta is an elite's offset
    prediction = model.predict(obs, act, torch.Generator().manual_seed(0), deterministic=True)
    assert set(prediction.members.tolist()) <= {5, 1, 4, 2, 0} and len(set(prediction.members.tolist())) > 1
    torch.testing.assert_close(prediction.next_observations - obs, offsets[prediction.members][:, None].expand(50, 3))
    torch.testing.assert_close(prediction.rewards, offsets[prediction.members])
    assert prediction.means.shape == (5, 50, 4) and prediction.stds.shape == (5, 50, 4)


def test_holdout_split_takes_whole_episodes():
    episode_of_step = np.repeat(np.arange(20), 50)  # 20 episodes of 50 steps
    train, holdout = holdout_split(episode_of_step, 0.1, 5000, generator=torch.Generator().manual_seed(0))
    assert len(holdout) == 100 and len(train) == 900  # 10% = exactly two episodes
    held = set(episode_of_step[holdout.numpy()].tolist())
    assert len(held) == 2 and not held & set(episode_of_step[train.numpy()].tolist())
    _, capped = holdout_split(episode_of_step, 0.5, 120, generator=torch.Generator().manual_seed(0))
    assert len(capped) == 150  # the cap of 120 transitions rounds up to whole episodes (3 x 50)
    # one long episode cannot be split by episode: random transitions instead
    train, holdout = holdout_split(np.zeros(1000, dtype=np.int64), 0.1, 5000, generator=torch.Generator())
    assert len(holdout) == 100 and len(train) == 900


def test_ensemble_fits_a_linear_system():
    g = torch.Generator().manual_seed(0)
    obs_dim, act_dim, n = 3, 2, 2400
    a_mat = torch.eye(obs_dim) + 0.1 * torch.randn(obs_dim, obs_dim, generator=g)
    b_mat = 0.5 * torch.randn(act_dim, obs_dim, generator=g)
    obs = torch.randn(n, obs_dim, generator=g)
    act = torch.rand(n, act_dim, generator=g) * 2 - 1
    noise = 0.05
    next_obs = obs @ a_mat.T + act @ b_mat + noise * torch.randn(n, obs_dim, generator=g)
    reward = obs[:, 0] - 0.5 * (act ** 2).sum(-1)
    episodes = np.repeat(np.arange(n // 100), 100)
    torch.manual_seed(0)
    model = DynamicsEnsemble(obs_dim, act_dim, members=7, elites=5, hidden=(64, 64))
    info = model.fit(obs, act, next_obs, reward, episodes, generator=torch.Generator().manual_seed(1),
                     lr=3e-3, batch_size=128, max_epochs=60)
    target = torch.cat([next_obs - obs, reward[:, None]], dim=1)
    # hold-out MSE of the elites: within 25% of the irreducible noise (variance 0.05^2 on the 3 state
    # dims, 0 on the reward: 0.001875 averaged over the 4 outputs), and far below the targets' variance
    floor = noise ** 2 * obs_dim / (obs_dim + 1)
    elite_mse = info["elite_holdout_mse"]
    assert floor <= elite_mse * 1.1 and elite_mse < 1.25 * floor, elite_mse
    assert info["elite_holdout_mse"] < 0.01 * target.var(0).mean().item()
    assert info["elites"] == np.argsort(info["holdout_mse"], kind="stable")[:5].tolist()
    # every member was restored to its best snapshot: re-measuring the hold-out set gives the recorded errors
    _, holdout = holdout_split(episodes, 0.1, 5000, generator=torch.Generator().manual_seed(1))
    remeasured = model.mse(obs[holdout], act[holdout], target[holdout])
    np.testing.assert_allclose(remeasured.numpy(), info["holdout_mse"], rtol=1e-5)
    # on fresh inputs the elites' mean predictions are accurate
    test_obs, test_act = torch.randn(500, obs_dim, generator=g), torch.rand(500, act_dim, generator=g) * 2 - 1
    prediction = model.predict(test_obs, test_act, deterministic=True)
    true_next = test_obs @ a_mat.T + test_act @ b_mat
    assert ((prediction.next_observations - true_next) ** 2).mean().item() < 0.002
    # and the learned noise level of the state dims is the true one (0.05)
    state_std = prediction.stds[..., :obs_dim].median().item()
    assert 0.04 < state_std < 0.065, state_std


def test_step_terminates_exactly_where_hopper_says():
    hopper = get_task("hopper")
    model = constant_ensemble(11, 3, torch.zeros(5, 12), torch.zeros(5, 12), elites=5)
    model.task = hopper
    healthy = np.zeros(11, dtype=np.float32)
    healthy[0] = 1.25  # z inside (0.7, inf), angle 0 inside (-0.2, 0.2), state inside (-100, 100)
    crafted = np.stack([healthy] * 7)
    crafted[1, 0] = 0.5     # fallen: z below 0.7
    crafted[2, 0] = 0.7     # z exactly at the bound: the open interval excludes it
    crafted[3, 1] = 0.25    # torso pitched beyond 0.2
    crafted[4, 1] = -0.2    # pitch exactly at the lower bound
    crafted[5, 7] = 150.0   # a joint velocity beyond the state range
    crafted[6, 3] = np.nan  # a model that predicts NaN must stop
    obs = torch.as_tensor(crafted)
    actions = torch.zeros(7, 3)
    next_obs, reward, terminated, _ = model.step(obs, actions, deterministic=True)  # delta = 0: s' = s
    torch.testing.assert_close(next_obs[:6], obs[:6])
    assert torch.isnan(next_obs[6]).all()  # NaN in, NaN predicted
    assert terminated.tolist() == [False, True, True, True, True, True, True]
    assert terminated.tolist() == hopper.is_terminal(crafted, actions.numpy(), next_obs.numpy()).tolist()

    # stochastic steps near the bounds: terminated is exactly the rule applied to the sampled s'
    g = torch.Generator().manual_seed(0)
    near = torch.as_tensor(np.stack([healthy] * 400))
    near[:, 0] = 0.75 + 0.1 * torch.randn(400, generator=g)
    near[:, 1] = 0.15 * torch.randn(400, generator=g)
    noisy = constant_ensemble(11, 3, torch.zeros(5, 12), torch.full((5, 12), math.log(0.05 ** 2)), elites=5)
    noisy.task = hopper
    next_obs, _, terminated, _ = noisy.step(near, torch.zeros(400, 3), g)
    assert not torch.equal(next_obs, near)
    expected = hopper.is_terminal(near.numpy(), np.zeros((400, 3)), next_obs.numpy())
    assert terminated.numpy().tolist() == expected.tolist() and 50 < expected.sum() < 350


# ---------------------------------------------------------------------- MOPO and COMBO pieces
def spaces(obs_dim=3, act_dim=1, bound=2.0):
    return (gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
            gym.spaces.Box(-bound, bound, (act_dim,), np.float32))


def test_mopo_penalty_is_lambda_times_max_elite_std_norm():
    from baselines.mopo import MOPO, MOPOConfig

    mopo = MOPO(*spaces(), MOPOConfig(hidden=(8,), model_hidden=(8,), penalty_coef=2.5, rollout_batch_size=64,
                                      rollout_horizon=1, retain_rollouts=1), seed=0)
    raw_logvar = torch.tensor([[-2.0, -1.0, -3.0, 0.0],
                               [0.4, 0.4, 0.4, 0.4],  # the largest std, but not an elite
                               [-1.0, -1.0, -1.0, -1.0],
                               [-4.0, -4.0, -4.0, -4.0],
                               [-0.5, -2.0, -6.0, -1.0],
                               [-8.0, -8.0, -8.0, -8.0],
                               [-5.0, -5.0, -5.0, -5.0]])
    rewards = torch.arange(7, dtype=torch.float32)
    mean_bias = torch.cat([torch.zeros(7, 3), rewards[:, None]], dim=1)
    mopo.dynamics = constant_ensemble(3, 1, mean_bias, raw_logvar, elites=5)
    mopo.dynamics.elites.copy_(torch.tensor([0, 2, 3, 4, 5]))
    mopo.dynamics.task = get_task("pendulum")
    # by hand: bounded log-variance, std = exp(l / 2), norm over the 4 outputs, max over the elites
    lv = -10.0 + F.softplus((0.5 - F.softplus(0.5 - raw_logvar)) + 10.0)
    norms = (0.5 * lv).exp().norm(dim=1)
    expected_u = norms[[0, 2, 3, 4, 5]].max().item()
    assert expected_u == pytest.approx(norms[2].item()) and norms[1] > norms[2]  # member 1 excluded
    prediction = mopo.dynamics.predict(torch.zeros(16, 3), torch.zeros(16, 1), torch.Generator().manual_seed(0))
    reward, penalty = mopo.model_reward(prediction)
    torch.testing.assert_close(penalty, torch.full((16,), expected_u))
    torch.testing.assert_close(reward, prediction.rewards - 2.5 * expected_u)
    # the rollout stores exactly r - lambda u for each transition
    mopo._start_obs = torch.randn(100, 3)
    mopo.rollout()
    assert int(mopo.model_buffer_size) == 64  # pendulum never terminates: 64 starts x 1 step
    stored = mopo.model_buffer[:64, 4]  # columns: s (3), a (1), r~, s', terminated
    elite_rewards = rewards[[0, 2, 3, 4, 5]]
    distance = (stored[:, None] + 2.5 * expected_u - elite_rewards[None]).abs().min(1).values
    # each stored reward is an elite's sampled reward (mean i, std sigma_i) minus the penalty
    assert distance.max().item() < 6 * (0.5 * lv[[0, 2, 3, 4, 5], 3]).exp().max().item()
    assert mopo.rollout_stats[1].item() == pytest.approx(expected_u, rel=1e-5)
    assert mopo.model_buffer[:64, -1].sum().item() == 0


def test_combo_gap_by_hand():
    from baselines.combo import combo_gap

    q_down = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]],
                           [[-1.0, 1.0, 0.5], [2.0, 2.0, 5.0]]], requires_grad=True)  # [M=2, B=2, K=3]
    q_data = torch.tensor([[1.0, 3.0, 2.0], [0.0, -1.0, 4.0]], requires_grad=True)  # [M=2, B'=3]
    # expectation form: mean over actions and states of Q at rho's samples, minus the data's mean Q
    gap = combo_gap(q_down, q_data)
    np.testing.assert_allclose(gap.detach().numpy(), [(2.0 + 0.0) / 2 - 2.0, (0.5 / 3 + 3.0) / 2 - 1.0], rtol=1e-6)
    # soft-max form with proposal log-densities: log(1/K sum exp(Q - log p)), averaged over states
    log_p = torch.tensor([[0.0, math.log(2.0), -1.0], [0.5, 0.5, 0.5]])
    gap = combo_gap(q_down, q_data, log_p)

    def lme(values, logs):
        return math.log(sum(math.exp(v - l) for v, l in zip(values, logs)) / len(values))

    m0 = (lme([1, 2, 3], [0, math.log(2), -1]) + lme([0, 0, 0], [0.5] * 3)) / 2 - 2.0
    m1 = (lme([-1, 1, 0.5], [0, math.log(2), -1]) + lme([2, 2, 5], [0.5] * 3)) / 2 - 1.0
    np.testing.assert_allclose(gap.detach().numpy(), [m0, m1], rtol=1e-6)
    # minimising it pushes Q down on rho's state-actions and up on the data's
    gap.sum().backward()
    assert torch.all(q_down.grad > 0) and torch.all(q_data.grad == -1.0 / 3)


def test_combo_critic_loss_adds_beta_times_the_gap():
    from baselines.combo import COMBO, COMBOConfig, combo_gap

    for regularizer in ("logsumexp", "expectation"):
        combo = COMBO(*spaces(), COMBOConfig(hidden=(8,), model_hidden=(8,), beta=3.0, num_sampled_actions=4,
                                             regularizer=regularizer), seed=0)
        obs, actions = torch.randn(6, 3), torch.rand(6, 1) * 4 - 2
        q, target = combo.critic(obs, actions), torch.randn(6)
        combo.generator.manual_seed(5)
        loss, info = combo.critic_loss(obs, actions, q, target, num_real=2)
        combo.generator.manual_seed(5)
        q_down, q_data, log_p = combo.conservative_terms(obs, q, 2)
        k = 8 if regularizer == "logsumexp" else 5  # 2N proposals, or the model action + N policy actions
        assert q_down.shape == (2, 4, k) and q_data.shape == (2, 2)
        torch.testing.assert_close(q_data, q[:, :2])
        bellman = 0.5 * ((q - target) ** 2).mean(1).sum()
        torch.testing.assert_close(loss, bellman + 3.0 * combo_gap(q_down, q_data, log_p).sum())
        if regularizer == "logsumexp":
            # the uniform proposal's log-density on [-2, 2] is -log 4
            torch.testing.assert_close(log_p[:, :4], torch.full((4, 4), -math.log(4.0)))
        else:
            torch.testing.assert_close(q_down[..., 0], q[:, 2:])  # the model transitions' own actions


def test_discrete_actions_are_refused():
    from baselines.combo import COMBO
    from baselines.mopo import MOPO

    obs = gym.spaces.Box(-1, 1, (3,), np.float32)
    for cls in (MOPO, COMBO):
        with pytest.raises(OffbenchError, match="continuous.*bc"):
            cls(obs, gym.spaces.Discrete(4), cls.config_class())


# ---------------------------------------------------------------------- end to end
TINY = {"hidden": [32, 32], "model_hidden": [32, 32], "model_max_epochs": 2, "rollout_batch_size": 200,
        "rollout_every": 20, "rollout_horizon": 3, "retain_rollouts": 2}
SMALL = TrainConfig(steps=60, batch_size=64, eval_every=30, eval_episodes=2, final_eval_episodes=2,
                    checkpoint_every=20, log_every=20)


@pytest.mark.parametrize("name", ["mopo", "combo"])
def test_end_to_end_through_train_run(name, pendulum, tmp_path, isolated_home):
    out = tmp_path / name
    summary = train_run(name, pendulum, TINY, SMALL, out, progress=False)
    metrics = [json.loads(r) for r in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [json.loads(r) for r in (out / "evaluations.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [20, 40, 60] and [e["step"] for e in evals] == [30, 60]
    for row in metrics:
        for key in ("critic_loss", "actor_loss", "alpha", "q_mean", "model_reward"):
            assert math.isfinite(row[key]), (key, row)
    # rollouts at steps 0, 20 and 40, each 200 branches x 3 steps (Pendulum never terminates), 2 retained
    assert [m["model_buffer"] for m in metrics] == [600, 1200, 1200]
    assert [m["rollout_terminated"] for m in metrics] == [0, 0, 0]
    if name == "combo":
        assert all(math.isfinite(m["combo_gap"]) and m["model_penalty"] == 0 for m in metrics)
    else:
        assert all(m["model_penalty"] > 0 for m in metrics)
    assert len(evals[-1]["returns"]) == 2 and all(math.isfinite(r) for r in evals[-1]["returns"])
    assert summary["score"] == pytest.approx(evals[-1]["normalized_score"])
    assert -2000 < evals[-1]["return_mean"] < 0  # Pendulum returns per 200 steps lie in about [-1900, 0]
    # the trained ensemble was cached under $OFFBENCH_HOME, keyed by the dataset, seed and model settings
    cached = list((isolated_home / "cache" / "dynamics").glob("*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["info"]["epochs"] == 2


class Killed(Exception):
    pass


def test_mopo_resumes_exactly_and_the_cache_changes_nothing(pendulum, tmp_path, isolated_home):
    straight = build_algorithm("mopo", pendulum, TINY, seed=SMALL.seed)
    fit(straight, pendulum, SMALL, tmp_path / "a", progress=False)
    assert "cached" not in straight.dynamics_info  # the first run trained the ensemble

    def kill(step):
        if step == 47:
            raise Killed

    with pytest.raises(Killed):
        train_run("mopo", pendulum, TINY, SMALL, tmp_path / "b", progress=False, on_step=kill)
    resumed = build_algorithm("mopo", pendulum, TINY, seed=SMALL.seed)
    fit(resumed, pendulum, SMALL, tmp_path / "b", progress=False)
    assert "cached" in resumed.dynamics_info  # prepare on resume loaded the cached ensemble: no retraining
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert int(resumed.model_buffer_size) == 1200 and int(resumed.num_updates) == 60
    evals_a = [json.loads(r)["returns"] for r in (tmp_path / "a" / "evaluations.jsonl").read_text().splitlines()]
    evals_b = [json.loads(r)["returns"] for r in (tmp_path / "b" / "evaluations.jsonl").read_text().splitlines()]
    assert evals_a == evals_b
    # a different model setting is a different cache entry
    other = build_algorithm("mopo", pendulum, {**TINY, "model_max_epochs": 1}, seed=SMALL.seed)
    assert other.dynamics_key(pendulum) != straight.dynamics_key(pendulum)


@pytest.mark.slow
def test_mopo_and_combo_learn_pendulum_from_random_data(pendulum, tmp_path, isolated_home):
    """A real model (3x200, 10 epochs) and 3000 updates each: both reach near-expert swing-up from
    uniformly random data (measured: MOPO 98, COMBO 95; random 0, expert 100). About 12 minutes
    on a busy 2-core machine, 4 on a quiet one; the second run reuses the cached ensemble."""
    model = {"model_hidden": [200, 200, 200], "model_max_epochs": 10, "rollout_batch_size": 5000,
             "rollout_every": 250, "hidden": [256, 256]}
    config = TrainConfig(steps=3000, batch_size=256, eval_every=1500, eval_episodes=5, final_eval_episodes=10,
                         checkpoint_every=3000, log_every=250)
    scores = {name: train_run(name, pendulum, model, config, tmp_path / name, progress=False)["score"]
              for name in ("mopo", "combo")}
    assert len(list((isolated_home / "cache" / "dynamics").glob("*.json"))) == 1  # trained once, shared
    assert scores["mopo"] > 50 and scores["combo"] > 50, scores
