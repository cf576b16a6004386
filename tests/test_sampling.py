"""Tests of offbench.data.sampling on datasets whose every value encodes (episode, step).

Observation of step t of episode e is [e, t, 0.5]; the final observation is [e, T, 1.0].
Actions are [e, t], rewards e * 1000 + t (exact in float32), so each sampled row can be
decoded and checked exactly against the source.
"""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from offbench.data.dataset import Dataset, read_dataset
from offbench.data.labels import n_step_targets, returns_to_go
from offbench.data.sampling import (
    SegmentBatch,
    SegmentSampler,
    TransitionBatch,
    TransitionSampler,
    available_extras,
)
from offbench.data.writer import DatasetWriter

LENGTHS = [5, 1, 7, 3, 12, 1, 2, 9]
ENDS = ["truncated", "terminated", "terminated", "truncated", "truncated", "truncated", "terminated",
        "truncated"]


def code(e, t):
    return e * 1000 + t


def write_encoded(path: Path, lengths=LENGTHS, ends=ENDS, *, dict_obs: bool = False) -> Dataset:
    """Write the encoded dataset through DatasetWriter and read it back."""
    if dict_obs:
        obs_space = gym.spaces.Dict({
            "pos": gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
            "img": gym.spaces.Box(0, 255, (2, 2), np.uint8),
        })
        action_space = gym.spaces.Discrete(4)
    else:
        obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        action_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    with DatasetWriter(path, dataset_id="test/encoded-v0", env_id="Test-v0", observation_space=obs_space,
                       action_space=action_space, behaviour_policies=[{"name": "a"}, {"name": "b"},
                                                                      {"name": "c"}]) as writer:
        for e, (length, end) in enumerate(zip(lengths, ends)):
            t = np.arange(length + 1)
            pos = np.stack([np.full(length + 1, e), t, np.where(t == length, 1.0, 0.5)], 1).astype(np.float32)
            if dict_obs:
                # Image pixels: episode, step, and 7 marking the final observation.
                img = np.zeros((length + 1, 2, 2), np.uint8)
                img[:, 0, 0], img[:, 0, 1], img[:, 1, 0] = e, t, np.where(t == length, 7, 3)
                obs = {"pos": pos, "img": img}
                actions = (e + t[:-1]) % 4
            else:
                obs = pos
                actions = np.stack([np.full(length, e), t[:-1]], 1).astype(np.float32)
            term = np.zeros(length, bool)
            trunc = np.zeros(length, bool)
            (term if end == "terminated" else trunc)[-1] = True
            writer.add_episode(
                observations=obs, actions=actions, rewards=code(e, t[:-1]).astype(np.float32),
                terminations=term, truncations=trunc,
                behaviour_log_prob=-code(e, t[:-1]).astype(np.float64) / 7, policy_id=e % 3,
                infos={"success": t[:-1] == length - 1})
    return read_dataset(path)


@pytest.fixture(scope="module")
def ds(tmp_path_factory) -> Dataset:
    return write_encoded(tmp_path_factory.mktemp("sampling") / "encoded.h5")


@pytest.fixture(scope="module")
def dict_ds(tmp_path_factory) -> Dataset:
    return write_encoded(tmp_path_factory.mktemp("sampling") / "encoded_dict.h5", dict_obs=True)


def all_rows(dataset: Dataset) -> torch.Tensor:
    return torch.arange(dataset.num_steps)


def decode(obs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    o = obs.numpy()
    return o[..., 0].astype(int), o[..., 1].astype(int)


# ---------------------------------------------------------------------- transitions
def check_transitions(batch: TransitionBatch, gamma: float = 0.99) -> None:
    """Every row of a 1-step batch against the source, decoded from its observation."""
    e, t = decode(batch.observations)
    length = np.array(LENGTHS)[e]
    last = t == length - 1
    terminated = np.array([ENDS[i] == "terminated" for i in e])
    np.testing.assert_array_equal(batch.observations[:, 2].numpy(), 0.5)
    np.testing.assert_array_equal(batch.actions.numpy(), np.stack([e, t], 1))
    np.testing.assert_array_equal(batch.rewards.numpy(), code(e, t))
    # Next observation: the following step, or the final observation at the episode's end,
    # whether the episode terminated or was truncated by the time limit.
    nxt = batch.next_observations.numpy()
    np.testing.assert_array_equal(nxt[:, 0], e)
    np.testing.assert_array_equal(nxt[:, 1], t + 1)
    np.testing.assert_array_equal(nxt[:, 2], np.where(last, 1.0, 0.5))
    np.testing.assert_array_equal(batch.terminations.numpy(), last & terminated)
    np.testing.assert_array_equal(batch.truncations.numpy(), last & ~terminated)
    np.testing.assert_allclose(batch.discounts.numpy(), gamma, rtol=1e-7)


def test_every_transition_is_exact(ds):
    sampler = TransitionSampler(ds, batch_size=16, gamma=0.99)
    batch = sampler.batch_at(all_rows(ds))
    check_transitions(batch)
    e, t = decode(batch.observations)
    np.testing.assert_array_equal(e * 1000 + t, [code(i, s) for i, n in enumerate(LENGTHS) for s in range(n)])
    # Every truncated episode's last transition is there, with its final observation.
    last = batch.truncations.numpy() == 1
    assert last.sum() == ENDS.count("truncated")
    np.testing.assert_array_equal(batch.next_observations[last].numpy(), ds.final_observations[e[last]])


def test_random_batches_are_exact_and_typed(ds):
    sampler = TransitionSampler(ds, batch_size=64, seed=3)
    seen = set()
    for _ in range(20):
        batch = sampler.sample()
        check_transitions(batch)
        assert batch.observations.shape == (64, 3) and batch.actions.shape == (64, 2)
        for flag in (batch.rewards, batch.terminations, batch.truncations, batch.discounts):
            assert flag.shape == (64,) and flag.dtype == torch.float32
        assert batch.extras == {}
        seen.update(batch.rewards.tolist())
    assert len(seen) == ds.num_steps  # 1280 uniform draws over 40 rows reach them all


def test_same_seed_same_stream_and_no_global_rng(ds):
    global_state = torch.get_rng_state()
    a = TransitionSampler(ds, batch_size=32, seed=11)
    b = TransitionSampler(ds, batch_size=32, seed=11)
    c = TransitionSampler(ds, batch_size=32, seed=12)
    stream_a = [a.sample().rewards for _ in range(5)]
    stream_b = [b.sample().rewards for _ in range(5)]
    stream_c = [c.sample().rewards for _ in range(5)]
    assert all(torch.equal(x, y) for x, y in zip(stream_a, stream_b))
    assert not all(torch.equal(x, y) for x, y in zip(stream_a, stream_c))
    assert torch.equal(torch.get_rng_state(), global_state)


def test_state_dict_resumes_the_stream(ds):
    sampler = TransitionSampler(ds, batch_size=32, seed=5)
    for _ in range(3):
        sampler.sample()
    state = sampler.state_dict()
    expected = [sampler.sample().rewards for _ in range(4)]
    resumed = TransitionSampler(ds, batch_size=32, seed=999)
    resumed.load_state_dict(state)
    assert all(torch.equal(x, resumed.sample().rewards) for x in expected)
    # The saved state is a snapshot: sampling on does not change it.
    sampler.load_state_dict(state)
    assert torch.equal(sampler.sample().rewards, expected[0])


def test_extras(ds):
    gamma = 0.9
    names = ("behaviour_log_prob", "policy_id", "infos/success", "returns_to_go", "episode_index", "timesteps")
    sampler = TransitionSampler(ds, batch_size=8, extras=names, gamma=gamma)
    batch = sampler.batch_at(all_rows(ds))
    e, t = decode(batch.observations)
    x = batch.extras
    assert set(x) == set(names)
    assert x["behaviour_log_prob"].dtype == torch.float64
    np.testing.assert_array_equal(x["behaviour_log_prob"].numpy(), -code(e, t).astype(np.float64) / 7)
    assert x["policy_id"].dtype == torch.int32
    np.testing.assert_array_equal(x["policy_id"].numpy(), e % 3)
    assert x["infos/success"].dtype == torch.bool
    np.testing.assert_array_equal(x["infos/success"].numpy(), t == np.array(LENGTHS)[e] - 1)
    assert x["returns_to_go"].dtype == torch.float32
    np.testing.assert_allclose(x["returns_to_go"].numpy(), returns_to_go(ds, gamma), rtol=1e-6)
    np.testing.assert_array_equal(x["episode_index"].numpy(), e)
    np.testing.assert_array_equal(x["timesteps"].numpy(), t)
    # Random batches carry the extras of the same rows.
    batch = sampler.sample()
    e, t = decode(batch.observations)
    np.testing.assert_array_equal(batch.extras["episode_index"].numpy(), e)
    np.testing.assert_array_equal(batch.extras["policy_id"].numpy(), e % 3)


def test_unknown_extra_names_the_available_ones(ds):
    with pytest.raises(KeyError) as err:
        TransitionSampler(ds, extras=("behavior_log_prob",))
    message = str(err.value)
    assert "behavior_log_prob" in message
    for name in available_extras(ds):
        assert name in message
    assert {"behaviour_log_prob", "policy_id", "infos/success", "returns_to_go"} <= set(available_extras(ds))
    # Required arrays are batch fields, not extras.
    with pytest.raises(KeyError):
        TransitionSampler(ds, extras=("rewards",))


@pytest.mark.parametrize("n", [1, 3, 20])
def test_n_step_batches_match_labels(ds, n):
    gamma = 0.9
    sampler = TransitionSampler(ds, batch_size=8, n_step=n, gamma=gamma)
    batch = sampler.batch_at(all_rows(ds))
    want = n_step_targets(ds, n, gamma)
    np.testing.assert_allclose(batch.rewards.numpy(), want.reward, rtol=1e-6)
    np.testing.assert_array_equal(batch.next_observations.numpy(),
                                  ds.states_with_finals("observations")[want.next_row])
    np.testing.assert_allclose(batch.discounts.numpy(), want.discount, rtol=1e-6)
    np.testing.assert_array_equal(batch.terminations.numpy(), want.terminated)
    np.testing.assert_array_equal(batch.truncations.numpy(), want.truncated)
    np.testing.assert_array_equal(batch.observations.numpy(), ds.observations)
    np.testing.assert_array_equal(batch.actions.numpy(), ds.actions)
    # Decoded: the next state is n' steps later in the same episode.
    e, t = decode(batch.observations)
    ne, nt = decode(batch.next_observations)
    np.testing.assert_array_equal(ne, e)
    np.testing.assert_array_equal(nt, t + np.minimum(n, np.array(LENGTHS)[e] - t))


def test_dict_observations_and_discrete_actions(dict_ds):
    sampler = TransitionSampler(dict_ds, batch_size=8, seed=1)
    for batch in [sampler.batch_at(all_rows(dict_ds)), sampler.sample()]:
        assert set(batch.observations) == set(batch.next_observations) == {"pos", "img"}
        pos, img = batch.observations["pos"], batch.observations["img"]
        assert pos.dtype == torch.float32 and img.dtype == torch.uint8 and img.shape[1:] == (2, 2)
        e, t = decode(pos)
        last = t == np.array(LENGTHS)[e] - 1
        np.testing.assert_array_equal(img[:, 0, 0].numpy(), e)
        np.testing.assert_array_equal(img[:, 0, 1].numpy(), t)
        assert batch.actions.dtype == torch.int64
        np.testing.assert_array_equal(batch.actions.numpy(), (e + t) % 4)
        ne, nt = decode(batch.next_observations["pos"])
        np.testing.assert_array_equal(ne, e)
        np.testing.assert_array_equal(nt, t + 1)
        nimg = batch.next_observations["img"].numpy()
        np.testing.assert_array_equal(nimg[:, 0, 1], t + 1)
        np.testing.assert_array_equal(nimg[:, 1, 0], np.where(last, 7, 3))
        np.testing.assert_array_equal(batch.rewards.numpy(), code(e, t))


def test_constructor_errors(ds):
    with pytest.raises(ValueError):
        TransitionSampler(ds, batch_size=0)
    with pytest.raises(ValueError):
        TransitionSampler(ds, n_step=0)
    with pytest.raises(ValueError):
        SegmentSampler(ds, context_length=0)
    with pytest.raises(ValueError):
        SegmentSampler(ds, return_scale=0.0)


# ---------------------------------------------------------------------- segments
def check_segments(batch: SegmentBatch, dataset: Dataset, starts: np.ndarray, k: int, gamma: float,
                   scale: float) -> None:
    """Each segment against the source: left padding, mask, values, timesteps, RTG."""
    rtg = returns_to_go(dataset, gamma) / scale
    episode = dataset.episode_of_step
    ends = dataset.episode_starts + dataset.episode_lengths - 1
    obs = batch.observations["pos"] if isinstance(batch.observations, dict) else batch.observations
    for row, start in enumerate(starts):
        real = min(k, ends[episode[start]] - start + 1)
        pad = k - real
        np.testing.assert_array_equal(batch.mask[row].numpy(), [0] * pad + [1] * real)
        steps = np.arange(start, start + real)
        # Padding is zero everywhere, on the left; real steps follow in order, newest last.
        for field in (obs, batch.actions, batch.rewards, batch.returns_to_go, batch.timesteps):
            assert not field[row, :pad].any()
        np.testing.assert_array_equal(obs[row, pad:].numpy(), dataset.observations[steps]
                                      if not isinstance(batch.observations, dict)
                                      else dataset.observations["pos"][steps])
        np.testing.assert_array_equal(batch.actions[row, pad:].numpy(), dataset.actions[steps])
        np.testing.assert_array_equal(batch.rewards[row, pad:].numpy(), dataset.rewards[steps])
        np.testing.assert_allclose(batch.returns_to_go[row, pad:].numpy(), rtg[steps], rtol=1e-6)
        np.testing.assert_array_equal(batch.timesteps[row, pad:].numpy(),
                                      steps - dataset.episode_starts[episode[start]])


@pytest.mark.parametrize("k", [1, 4, 20])
def test_every_segment_is_exact(ds, k):
    gamma, scale = 0.95, 100.0
    sampler = SegmentSampler(ds, context_length=k, batch_size=4, gamma=gamma, return_scale=scale)
    starts = np.arange(ds.num_steps)
    batch = sampler.batch_at(torch.from_numpy(starts))
    n = ds.num_steps
    assert batch.observations.shape == (n, k, 3) and batch.actions.shape == (n, k, 2)
    for field in (batch.rewards, batch.returns_to_go, batch.mask):
        assert field.shape == (n, k) and field.dtype == torch.float32
    assert batch.timesteps.shape == (n, k) and batch.timesteps.dtype == torch.int64
    check_segments(batch, ds, starts, k, gamma, scale)


def test_random_segments_are_exact(ds):
    sampler = SegmentSampler(ds, context_length=6, batch_size=32, seed=4, return_scale=10.0)
    for _ in range(5):
        starts = sampler.sample_starts()
        state = sampler.state_dict()
        sampler.load_state_dict(state)  # a round trip in the middle of the stream changes nothing
        batch = sampler.batch_at(starts)
        check_segments(batch, ds, starts.numpy(), 6, 1.0, 10.0)


def test_undiscounted_rtg_starts_at_the_episode_return(ds):
    sampler = SegmentSampler(ds, context_length=1, batch_size=4, return_scale=1.0)
    batch = sampler.batch_at(torch.from_numpy(ds.episode_starts))
    np.testing.assert_allclose(batch.returns_to_go[:, 0].numpy(), ds.episode_returns(), rtol=1e-6)


def test_segments_sample_episodes_proportional_to_length(ds):
    sampler = SegmentSampler(ds, context_length=3, batch_size=256, seed=0)
    first_real, episodes = [], []
    for _ in range(60):
        batch = sampler.sample()
        # The first real token is the segment's start step; decode it from the observation.
        pad = (batch.mask == 0).sum(1)
        start_obs = batch.observations[torch.arange(256), pad]
        e, t = decode(start_obs)
        episodes.append(e)
        first_real.append(ds.episode_starts[e] + t)
    episodes = np.concatenate(episodes)
    first_real = np.concatenate(first_real)
    draws = len(episodes)
    lengths = np.array(LENGTHS)
    # Episodes in proportion to their length ...
    counts = np.bincount(episodes, minlength=len(LENGTHS))
    assert chisquare(counts, draws * lengths / lengths.sum()).pvalue > 1e-3
    # ... and, within them, every start step equally likely: uniform over all N steps.
    counts = np.bincount(first_real, minlength=ds.num_steps)
    assert chisquare(counts).pvalue > 1e-3
    assert counts.min() > 0


def test_segment_seeds_and_state_dict(ds):
    a = SegmentSampler(ds, context_length=5, batch_size=16, seed=2)
    b = SegmentSampler(ds, context_length=5, batch_size=16, seed=2)
    c = SegmentSampler(ds, context_length=5, batch_size=16, seed=3)
    xa, xb, xc = a.sample(), b.sample(), c.sample()
    assert torch.equal(xa.observations, xb.observations) and torch.equal(xa.mask, xb.mask)
    assert not torch.equal(xa.observations, xc.observations)
    state = a.state_dict()
    expected = [a.sample().observations for _ in range(3)]
    c.load_state_dict(state)
    assert all(torch.equal(x, c.sample().observations) for x in expected)


def test_segments_with_dict_observations(dict_ds):
    k = 4
    sampler = SegmentSampler(dict_ds, context_length=k, batch_size=8, seed=0)
    starts = np.arange(dict_ds.num_steps)
    batch = sampler.batch_at(torch.from_numpy(starts))
    assert set(batch.observations) == {"pos", "img"}
    img = batch.observations["img"]
    assert img.shape == (dict_ds.num_steps, k, 2, 2) and img.dtype == torch.uint8
    assert batch.actions.dtype == torch.int64
    check_segments(batch, dict_ds, starts, k, 1.0, 1.0)
    pad = (batch.mask == 0).numpy()
    assert not img.numpy()[pad].any()
    np.testing.assert_array_equal(img.numpy()[~pad], dict_ds.observations["img"][
        np.concatenate([np.arange(s, s + (~pad[i]).sum()) for i, s in enumerate(starts)])])
    random_batch = sampler.sample()
    assert random_batch.observations["pos"].shape == (8, k, 3)
