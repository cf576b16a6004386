"""Property tests of offbench.data.labels against naive per-step reference loops."""
from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offbench.data.dataset import Dataset, read_dataset
from offbench.data.labels import (
    NStepTargets,
    discounted_cumsum,
    monte_carlo_returns,
    n_step_targets,
    returns_to_go,
)
from offbench.data.writer import DatasetWriter

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

gammas = st.one_of(st.just(1.0), st.floats(0.0, 1.0, exclude_min=True, exclude_max=True))
episode_lengths = st.lists(st.integers(1, 25), min_size=1, max_size=12)
# How each episode ends; "both" (terminated and truncated at once) is legal and counts as terminated.
end_kinds = st.sampled_from(["terminated", "truncated", "both"])


@st.composite
def episodes_and_rewards(draw):
    """(lengths, end kinds, float32 rewards) of a random dataset, length-1 episodes included."""
    lengths = draw(episode_lengths)
    ends = draw(st.lists(end_kinds, min_size=len(lengths), max_size=len(lengths)))
    rewards = draw(st.lists(st.floats(-100, 100, width=32), min_size=sum(lengths), max_size=sum(lengths)))
    return lengths, ends, np.array(rewards, dtype=np.float32)


# ---------------------------------------------------------------------- reference loops
def naive_discounted_cumsum(rewards, lengths, gamma) -> np.ndarray:
    """The definition, one step at a time, backwards through each episode."""
    out = np.zeros(len(rewards))
    start = 0
    for length in lengths:
        acc = 0.0
        for t in reversed(range(start, start + length)):
            acc = float(rewards[t]) + gamma * acc
            out[t] = acc
        start += length
    return out


def tolerance(rewards, lengths) -> float:
    """Absolute slack for comparing two float64 summation orders: a few ulps of the largest
    sum of |reward| over an episode (rtol alone fails when a return cancels to ~0)."""
    sums = np.add.reduceat(np.abs(np.asarray(rewards, dtype=np.float64)), np.cumsum([0, *lengths[:-1]]))
    return 1e-12 * max(1.0, float(sums.max()))


def write_dataset(path: Path, lengths, ends, rewards) -> Dataset:
    """Write a dataset with the given episodes through DatasetWriter and read it back."""
    with DatasetWriter(path, dataset_id="test/labels-v0", env_id="Test-v0",
                       observation_space=gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
                       action_space=gym.spaces.Box(-1, 1, (1,), np.float32)) as writer:
        start = 0
        for e, (length, end) in enumerate(zip(lengths, ends)):
            flag_term = np.zeros(length, dtype=bool)
            flag_trunc = np.zeros(length, dtype=bool)
            flag_term[-1] = end in ("terminated", "both")
            flag_trunc[-1] = end in ("truncated", "both")
            obs = np.stack([np.full(length + 1, e), np.arange(length + 1)], axis=1).astype(np.float32)
            writer.add_episode(observations=obs, actions=np.zeros((length, 1), np.float32),
                               rewards=rewards[start:start + length], terminations=flag_term,
                               truncations=flag_trunc)
            start += length
    return read_dataset(path)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("labels")


# ---------------------------------------------------------------------- discounted_cumsum
@SETTINGS
@given(data=episodes_and_rewards(), gamma=gammas)
def test_discounted_cumsum_matches_naive_loop(data, gamma):
    lengths, _, rewards = data
    got = discounted_cumsum(rewards, np.array(lengths), gamma)
    assert got.dtype == np.float64 and got.shape == rewards.shape
    np.testing.assert_allclose(got, naive_discounted_cumsum(rewards, lengths, gamma),
                               rtol=1e-9, atol=tolerance(rewards, lengths))


@SETTINGS
@given(lengths=episode_lengths, gamma=gammas)
def test_discounted_cumsum_of_ones_is_a_geometric_series(lengths, gamma):
    # Closed form, no summation-order slack at all for gamma == 1 (integers are exact).
    got = discounted_cumsum(np.ones(sum(lengths)), np.array(lengths), gamma)
    left = np.concatenate([np.arange(n, 0, -1) for n in lengths]).astype(np.float64)
    want = left if gamma == 1.0 else (1 - gamma ** left) / (1 - gamma)
    if gamma == 1.0:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_no_cancellation_across_episodes():
    # A tiny reward followed by an episode with a huge return: one filter pass over both
    # episodes minus the spill-over would return 0 here at gamma == 1.
    rewards = np.array([1e-8, 1e8, 1e8, 1e8])
    got = discounted_cumsum(rewards, np.array([1, 3]), 1.0)
    assert got[0] == 1e-8
    np.testing.assert_array_equal(got[1:], [3e8, 2e8, 1e8])


def test_discounted_cumsum_rejects_bad_input():
    with pytest.raises(ValueError, match="sum to"):
        discounted_cumsum(np.ones(5), np.array([2, 2]), 0.9)
    with pytest.raises(ValueError, match=">= 1"):
        discounted_cumsum(np.ones(2), np.array([2, 0]), 0.9)
    with pytest.raises(ValueError, match="gamma"):
        discounted_cumsum(np.ones(2), np.array([2]), 1.5)
    assert discounted_cumsum(np.zeros(0), np.zeros(0, dtype=np.int64), 0.5).shape == (0,)


# ---------------------------------------------------------------------- dataset labels
@SETTINGS
@given(data=episodes_and_rewards(), gamma=gammas)
def test_returns_to_go_and_episode_returns(data_dir, data, gamma):
    lengths, ends, rewards = data
    ds = write_dataset(data_dir / "rtg.h5", lengths, ends, rewards)
    rtg = returns_to_go(ds, gamma)
    np.testing.assert_allclose(rtg, naive_discounted_cumsum(rewards, lengths, gamma),
                               rtol=1e-9, atol=tolerance(rewards, lengths))
    # Episode returns are per-episode discounted sums computed independently of the scan.
    starts = np.cumsum([0, *lengths[:-1]])
    want = [math.fsum(gamma ** k * float(r) for k, r in enumerate(rewards[s:s + n]))
            for s, n in zip(starts, lengths)]
    got = ds.episode_returns(gamma)
    assert got.shape == (len(lengths),)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=tolerance(rewards, lengths))
    # The undiscounted default is the plain sum of each episode.
    np.testing.assert_allclose(ds.episode_returns(), np.add.reduceat(rewards.astype(np.float64), starts),
                               rtol=1e-9, atol=tolerance(rewards, lengths))


def naive_n_step(ds: Dataset, n: int, gamma: float) -> dict[str, np.ndarray]:
    """n-step targets step by step from the definition (episode ends never crossed)."""
    num = ds.num_steps
    out = {k: [] for k in ("reward", "next_row", "discount", "terminated", "truncated", "steps")}
    for e, (start, length) in enumerate(zip(ds.episode_starts, ds.episode_lengths)):
        end = start + length - 1
        for t in range(start, end + 1):
            n_ = min(n, end - t + 1)
            out["reward"].append(sum(gamma ** k * float(ds.rewards[t + k]) for k in range(n_)))
            reaches_end = t + n_ - 1 == end
            out["next_row"].append(num + e if reaches_end else t + n_)
            out["discount"].append(gamma ** n_)
            out["terminated"].append(reaches_end and bool(ds.terminations[end]))
            out["truncated"].append(reaches_end and bool(ds.truncations[end]))
            out["steps"].append(n_)
    return {k: np.array(v) for k, v in out.items()}


@SETTINGS
@given(data=episodes_and_rewards(), gamma=gammas, n=st.integers(1, 7))
def test_n_step_targets_match_naive(data_dir, data, gamma, n):
    lengths, ends, rewards = data
    ds = write_dataset(data_dir / "nstep.h5", lengths, ends, rewards)
    got = n_step_targets(ds, n, gamma)
    want = naive_n_step(ds, n, gamma)
    assert isinstance(got, NStepTargets)
    np.testing.assert_allclose(got.reward, want["reward"], rtol=1e-9, atol=tolerance(rewards, lengths))
    np.testing.assert_array_equal(got.next_row, want["next_row"])
    np.testing.assert_allclose(got.discount, want["discount"], rtol=1e-12)
    np.testing.assert_array_equal(got.terminated, want["terminated"])
    np.testing.assert_array_equal(got.truncated, want["truncated"])
    np.testing.assert_array_equal(got.steps, want["steps"])
    # next_row indexes states_with_finals: observation (episode, step) encodes where it lands.
    landed = ds.states_with_finals("observations")[got.next_row]
    episode = np.repeat(np.arange(len(lengths)), lengths)
    step = np.concatenate([np.arange(k) for k in lengths])
    np.testing.assert_array_equal(landed[:, 0], episode)
    np.testing.assert_array_equal(landed[:, 1], step + got.steps)
    if n == 1:
        np.testing.assert_array_equal(got.next_row, ds.next_index)
        np.testing.assert_array_equal(got.reward, ds.rewards.astype(np.float64))


@SETTINGS
@given(data=episodes_and_rewards(), gamma=gammas, seed=st.integers(0, 2**31))
def test_monte_carlo_bootstrap_only_for_truncated_episodes(data_dir, data, gamma, seed):
    lengths, ends, rewards = data
    ds = write_dataset(data_dir / "mc.h5", lengths, ends, rewards)
    values = np.random.default_rng(seed).normal(0, 50, len(lengths))
    plain = monte_carlo_returns(ds, gamma)
    np.testing.assert_array_equal(plain, returns_to_go(ds, gamma))
    got = monte_carlo_returns(ds, gamma, bootstrap_values=values)
    want = naive_discounted_cumsum(rewards, lengths, gamma)
    start = 0
    for e, (length, end) in enumerate(zip(lengths, ends)):
        if end == "truncated":  # "both" counts as terminated: nothing to bootstrap
            for t in range(start, start + length):
                want[t] += gamma ** (start + length - t) * values[e]
        start += length
    slack = tolerance(rewards, lengths) + 1e-12 * np.abs(values).max()
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=slack)


def test_label_argument_errors(data_dir):
    ds = write_dataset(data_dir / "err.h5", [3, 2], ["truncated", "terminated"], np.ones(5, np.float32))
    with pytest.raises(ValueError, match="one value per episode"):
        monte_carlo_returns(ds, 0.9, bootstrap_values=np.zeros(3))
    with pytest.raises(ValueError, match="n must be"):
        n_step_targets(ds, 0, 0.9)
    with pytest.raises(ValueError, match="gamma"):
        returns_to_go(ds, -0.1)


# ---------------------------------------------------------------------- scale
def test_returns_to_go_exact_at_boundaries_on_100k_steps(tmp_path):
    rng = np.random.default_rng(7)
    lengths = list(rng.integers(1, 2000, size=200))
    lengths[:3] = [1, 1, 2]  # length-1 episodes next to each other at the start
    ends = ["truncated" if rng.random() < 0.5 else "terminated" for _ in lengths]
    rewards = rng.normal(3.0, 2.0, sum(lengths)).astype(np.float32)
    ds = write_dataset(tmp_path / "big.h5", lengths, ends, rewards)
    assert ds.num_steps > 100_000
    r = rewards.astype(np.float64)
    for gamma in (1.0, 0.99):
        rtg = returns_to_go(ds, gamma)
        np.testing.assert_allclose(rtg, naive_discounted_cumsum(rewards, lengths, gamma), rtol=1e-9)
        last = ds.episode_starts + ds.episode_lengths - 1
        # The last step of every episode sees only its own reward: exact, no spill-over.
        np.testing.assert_array_equal(rtg[last], r[last])
        two = last[ds.episode_lengths >= 2]
        np.testing.assert_array_equal(rtg[two - 1], r[two - 1] + gamma * r[two])
        # The first step of every episode is that episode's return, summed independently.
        want = [math.fsum(gamma ** k * x for k, x in enumerate(r[s:s + n]))
                for s, n in zip(ds.episode_starts, ds.episode_lengths)]
        np.testing.assert_allclose(rtg[ds.episode_starts], want, rtol=1e-11)
        np.testing.assert_allclose(ds.episode_returns(gamma), want, rtol=1e-11)
