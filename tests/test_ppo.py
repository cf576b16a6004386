"""PPO (baselines/online/ppo.py): GAE and the loss against hand computations, the rollout
storage's recurrent states, seeding, and two short learning runs (CartPole; a bandit trial
that only a policy with memory can solve)."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from baselines.online.ppo import PPO, PPOConfig, TrainingLog, compute_gae, make_ppo, ppo_loss
from offbench.envs.meta import MetaTrial
from offbench.envs.meta.bandits import BernoulliBanditEnv
from offbench.envs.meta.gridnavi import GridNaviEnv
from offbench.cpu import torch_threads
from offbench.errors import OffbenchError


def test_gae_matches_a_hand_computation():
    # One environment, three steps: step 0 continues, step 1 is truncated (bootstrap 2.0),
    # step 2 terminates. gamma = 0.5, lambda = 0.5.
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [4.0]])
    terminated = torch.tensor([[False], [False], [True]])
    truncated = torch.tensor([[False], [True], [False]])
    bootstrap = torch.tensor([[0.0], [2.0], [0.0]])
    adv, targets = compute_gae(rewards, values, torch.tensor([9.0]), terminated, truncated, bootstrap, 0.5, 0.5)
    d2 = 3.0 + 0.0 - 4.0  # terminated: no value after
    d1 = 2.0 + 0.5 * 2.0 - 1.0  # truncated: the final observation's value, and the sum is cut
    d0 = 1.0 + 0.5 * 1.0 - 0.5
    a0 = d0 + 0.25 * d1
    np.testing.assert_allclose(adv[:, 0], [a0, d1, d2])
    np.testing.assert_allclose(targets[:, 0], [a0 + 0.5, d1 + 1.0, d2 + 4.0])
    # without an end in the rollout the last step bootstraps from last_value
    adv, _ = compute_gae(rewards[:1], values[:1], torch.tensor([9.0]), terminated[:1] & False, truncated[:1] & False,
                         bootstrap[:1], 0.5, 0.5)
    assert adv.item() == pytest.approx(1.0 + 0.5 * 9.0 - 0.5)


def test_ppo_loss_matches_a_hand_computation():
    # ratios e^0.5 = 1.6487 (clipped to 1.2 for A > 0) and e^-0.5 = 0.6065 (A < 0: min picks 0.8 * A)
    new_lp = torch.tensor([0.0, -1.0])
    old_lp = torch.tensor([-0.5, -0.5])
    adv = torch.tensor([2.0, -1.0])
    values, targets = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    entropy = torch.tensor([0.7, 0.3])
    loss, stats = ppo_loss(new_lp, old_lp, adv, values, targets, entropy, clip_coef=0.2, value_coef=0.5,
                           entropy_coef=0.01)
    policy = -(min(math.exp(0.5) * 2.0, 1.2 * 2.0) + min(math.exp(-0.5) * -1.0, 0.8 * -1.0)) / 2
    value = (1.0 + 4.0) / 2
    assert stats["policy_loss"] == pytest.approx(policy)
    assert stats["value_loss"] == pytest.approx(value)
    assert loss.item() == pytest.approx(policy + 0.5 * value - 0.01 * 0.5)
    assert stats["clip_fraction"] == 1.0
    assert stats["approx_kl"] == pytest.approx(((math.exp(0.5) - 1 - 0.5) + (math.exp(-0.5) - 1 + 0.5)) / 2)


@pytest.mark.parametrize("recurrent, env_fn", [
    (True, lambda: MetaTrial(GridNaviEnv(width=3, height=3, episode_length=4), 2)),
    (False, lambda: gym.make("Pendulum-v1")),
])
def test_minibatches_recompute_the_stored_log_probs_and_values(recurrent, env_fn):
    """Before any update, re-running a minibatch (for a GRU: each sequence from its stored
    hidden state, zeroed at trial starts) reproduces what the rollout stored."""
    cfg = PPOConfig(num_envs=3, rollout_steps=24, minibatches=3, recurrent=recurrent, bptt_chunk=6, gru_hidden=16,
                    hidden=(16,))
    agent = make_ppo(env_fn, cfg, seed=0)
    envs = gym.vector.SyncVectorEnv([env_fn] * 3, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    obs, _ = envs.reset(seed=0)
    state = {**agent.initial_state(3), "starts": torch.ones(3, dtype=torch.bool)}
    with torch_threads(1):
        buf, _, _ = agent.collect(envs, obs, state, TrainingLog(), 0, np.zeros(3))
    if recurrent:
        assert buf.starts[0].all() and buf.starts[8].all() and not buf.starts[1:8].any()  # trials of 8 steps
        assert (buf.hidden[8] == 0).all() and (buf.hidden[5].abs() > 0).any()
    covered = torch.zeros(24, 3, dtype=torch.bool)
    with torch.no_grad():
        for time_idx, env_idx in agent._minibatches(24, 3):
            new_lp, _, value, old_lp, _, _ = agent._evaluate_batch(buf, time_idx, env_idx)
            torch.testing.assert_close(new_lp, old_lp, atol=1e-5, rtol=0)
            torch.testing.assert_close(value, buf.values[time_idx, env_idx], atol=1e-5, rtol=0)
            covered[time_idx, env_idx] = True
    assert covered.all()  # every step is in exactly one minibatch per epoch


def test_seeded_runs_are_identical():
    fn = lambda: gym.make("CartPole-v1")  # noqa: E731
    cfg = PPOConfig(num_envs=2, rollout_steps=32, hidden=(16,))
    runs = []
    for _ in range(2):
        agent = make_ppo(fn, cfg, seed=7)
        log = agent.train_envs(fn, 128)
        runs.append((agent.net.state_dict(), log.updates[-1]["policy_loss"], log.episode_returns))
    (a, la, ra), (b, lb, rb) = runs
    assert la == lb and ra == rb and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_configurations_are_refused():
    fn = lambda: gym.make("CartPole-v1")  # noqa: E731
    with pytest.raises(OffbenchError, match="bptt_chunk"):
        make_ppo(fn, PPOConfig(recurrent=True, rollout_steps=10, bptt_chunk=4))
    with pytest.raises(OffbenchError, match="minibatches"):
        make_ppo(fn, PPOConfig(recurrent=True, num_envs=2, minibatches=4))
    with pytest.raises(OffbenchError, match="num_envs"):
        make_ppo(fn, PPOConfig(num_envs=0))
    with pytest.raises(OffbenchError, match="total_steps"):
        make_ppo(fn, PPOConfig(num_envs=2, rollout_steps=8)).train_envs(fn, 10)
    with pytest.raises(OffbenchError, match="observations"):
        PPO(gym.spaces.Dict({"a": gym.spaces.Discrete(2)}), gym.spaces.Discrete(2))
    for scale in (0.0, -1.0, float("inf")):
        with pytest.raises(OffbenchError, match="reward_scale must be a positive finite number"):
            make_ppo(fn, PPOConfig(reward_scale=scale))


def test_reward_scale_scales_what_the_critic_learns_not_what_is_stored():
    """With reward_scale c the advantages and value targets are GAE of c r (the stored rewards stay
    raw). Two rollouts from the same seed differ only there: GAE is linear in the rewards, so the
    gap between their targets is GAE of (1 - c) r with zero values."""
    fn = lambda: gym.make("Pendulum-v1")  # noqa: E731
    bufs = {}
    for scale in (1.0, 0.05):
        agent = make_ppo(fn, PPOConfig(num_envs=2, rollout_steps=16, hidden=(8,), reward_scale=scale), seed=0)
        envs = gym.vector.SyncVectorEnv([fn] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        obs, _ = envs.reset(seed=0)
        with torch_threads(1):
            bufs[scale], _, _ = agent.collect(envs, obs, {**agent.initial_state(2), "starts": torch.ones(2, dtype=torch.bool)},
                                              TrainingLog(), 0, np.zeros(2))
    raw, scaled = bufs[1.0], bufs[0.05]
    torch.testing.assert_close(raw.rewards, scaled.rewards)  # the same rollout, rewards stored raw
    torch.testing.assert_close(raw.values, scaled.values)  # the same weights
    assert raw.rewards.abs().max() > 1.0
    gap, _ = compute_gae(raw.rewards * (1 - 0.05), torch.zeros_like(raw.values), torch.zeros(2), raw.terminated,
                         raw.truncated, torch.zeros_like(raw.bootstrap), agent.config.gamma, agent.config.gae_lambda)
    torch.testing.assert_close(raw.advantages - scaled.advantages, gap, atol=1e-4, rtol=0)
    torch.testing.assert_close(raw.targets - scaled.targets, gap, atol=1e-4, rtol=0)


def test_ppo_learns_cartpole_in_ten_thousand_steps():
    fn = lambda: gym.make("CartPole-v1")  # noqa: E731
    cfg = PPOConfig(num_envs=4, rollout_steps=128, lr=2.5e-3, entropy_coef=0.0, hidden=(32, 32))
    agent = make_ppo(fn, cfg, seed=0)
    log = agent.train_envs(fn, 10_240)
    returns = agent.evaluate(fn, 10, seed=100)
    assert returns.mean() >= 150  # random play scores about 22; measured 395 with this seed
    assert log.updates[-1]["steps"] == 10_240 and log.updates[-1]["steps_per_second"] > 0


def test_recurrent_ppo_learns_to_remember_which_arm_pays():
    """Two-armed bandit trials of 10 pulls whose good arm (0.9 vs 0.1) is either one: without
    memory no policy beats 5 per trial in expectation; with it about 8.5 is reachable."""
    tasks = [{"means": [0.9, 0.1]}, {"means": [0.1, 0.9]}]
    fn = lambda: MetaTrial(BernoulliBanditEnv(arms=2, pulls=10), 1, tasks=tasks)  # noqa: E731
    cfg = PPOConfig(num_envs=8, rollout_steps=40, lr=3e-3, minibatches=2, hidden=(32,), recurrent=True,
                    gru_hidden=32, gamma=0.9)
    agent = make_ppo(fn, cfg, seed=0)
    agent.train_envs(fn, 40 * 8 * 40)
    returns = agent.evaluate(fn, 200, seed=100, deterministic=False)
    assert returns.mean() >= 7.0


# ---------------------------------------------------------------------- the rollout's fast parts
@pytest.mark.parametrize("discrete", [True, False])
def test_policy_distribution_equals_torch_distributions_to_the_bit(discrete):
    """PolicyDistribution's samples, log-probabilities, entropies and their gradients are
    torch.distributions' own (Categorical; Normal summed over dimensions), bit for bit."""
    from baselines.online.ppo import PolicyDistribution

    g = torch.Generator().manual_seed(0)
    params = torch.randn(64, 5 if discrete else 3, generator=g, requires_grad=True)
    log_std = None if discrete else torch.randn(3, generator=g, requires_grad=True)
    twin_params = params.detach().clone().requires_grad_(True)
    twin_log_std = None if discrete else log_std.detach().clone().requires_grad_(True)
    ours = PolicyDistribution(params, log_std)
    theirs = (torch.distributions.Categorical(logits=twin_params) if discrete
              else torch.distributions.Normal(twin_params, twin_log_std.exp().expand_as(twin_params)))
    if discrete:
        action = ours.sample(False, torch.Generator().manual_seed(5))
        assert torch.equal(action, torch.multinomial(theirs.probs, 1, generator=torch.Generator().manual_seed(5)).squeeze(-1))
        assert torch.equal(ours.sample(True, g), theirs.probs.argmax(-1))
        their_lp, their_ent = theirs.log_prob(action), theirs.entropy()
    else:
        action = ours.sample(False, torch.Generator().manual_seed(5)).detach()
        noise = torch.randn(action.shape, generator=torch.Generator().manual_seed(5))
        assert torch.equal(action, (theirs.mean + theirs.stddev * noise).detach())
        their_lp, their_ent = theirs.log_prob(action).sum(-1), theirs.entropy().sum(-1)
    our_lp, our_ent = ours.log_prob(action), ours.entropy()
    assert torch.equal(our_lp, their_lp) and torch.equal(our_ent, their_ent)
    weights = torch.randn(64, generator=g)
    (weights * our_lp - 0.01 * our_ent).sum().backward()
    (weights * their_lp - 0.01 * their_ent).sum().backward()
    assert torch.equal(params.grad, twin_params.grad)
    if not discrete:
        assert torch.equal(log_std.grad, twin_log_std.grad)


@pytest.mark.parametrize("env_fn", [lambda: gym.make("offbench/PointRobot-v0"),
                                    lambda: MetaTrial(GridNaviEnv(episode_length=4), episodes=2)])
def test_serial_vector_env_steps_as_gymnasiums_same_step_vector_env(env_fn):
    """SerialVectorEnv returns what gymnasium's SyncVectorEnv (same-step autoreset) returns: the
    observations, rewards, end flags, final observations and numeric infos with their masks."""
    from gymnasium.vector import AutoresetMode

    import offbench.envs.meta  # noqa: F401
    from offbench.envs.vector import SerialVectorEnv

    ours = SerialVectorEnv([env_fn for _ in range(3)])
    theirs = gym.vector.SyncVectorEnv([env_fn for _ in range(3)], autoreset_mode=AutoresetMode.SAME_STEP)
    assert ours.single_action_space == theirs.single_action_space
    obs, _ = ours.reset(seed=4)
    twin, _ = theirs.reset(seed=4)
    np.testing.assert_array_equal(obs, twin)
    ours.action_space.seed(0)
    ends = 0
    for _ in range(30):
        actions = ours.action_space.sample()
        result, expected = ours.step(actions), theirs.step(actions)
        for a, b in zip(result[:4], expected[:4]):
            np.testing.assert_array_equal(a, b)
            assert a.dtype == b.dtype
        info, twin_info = result[4], expected[4]
        if "final_obs" in twin_info:
            ends += 1
            np.testing.assert_array_equal(info["_final_obs"], twin_info["_final_obs"])
            for i in np.flatnonzero(twin_info["_final_obs"]):
                np.testing.assert_array_equal(info["final_obs"][i], twin_info["final_obs"][i])
        for key in ("episode_done", "dense_reward"):
            if key in twin_info:
                np.testing.assert_array_equal(info[key], twin_info[key])
                np.testing.assert_array_equal(info[f"_{key}"], twin_info[f"_{key}"])
    assert ends > 0
    ours.close()
    theirs.close()
