"""Write -> read round trips and the T+1 / terminated-vs-truncated semantics of the store."""
from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from offbench.data import format as fmt
from offbench.data.dataset import read_dataset
from offbench.data.writer import DatasetWriter
from tests.conftest import BOX_ACT, BOX_OBS, write_toy


def test_next_observation_is_exact_at_truncation(toy_path):
    ds = read_dataset(toy_path, validate=True)
    assert ds.num_steps == 12 and ds.num_episodes == 3
    np.testing.assert_array_equal(ds.episode_starts, [0, 5, 8])
    nxt = ds.next_observations
    # Inside an episode the next observation is (e, t + 1); at the end it is the final one (e, T).
    for e, (s, T) in enumerate(zip(ds.episode_starts, ds.episode_lengths)):
        for t in range(T):
            np.testing.assert_array_equal(nxt[s + t], [e, t + 1, 0])
    np.testing.assert_array_equal(ds.final_observations[:, 1], [5, 3, 4])
    # Terminated and truncated stay apart: episode 1 terminated, the others were truncated.
    ends = ds.episode_starts + ds.episode_lengths - 1
    np.testing.assert_array_equal(ds.terminations[ends], [False, True, False])
    np.testing.assert_array_equal(ds.truncations[ends], [True, False, True])
    assert ds.terminations.sum() == 1 and ds.truncations.sum() == 2


def test_episode_view_has_t_plus_one_observations(toy_path):
    ds = read_dataset(toy_path)
    ep = ds.episode(2)
    assert ep.observations.shape == (5, 3) and ep.actions.shape == (4, 2) and ep.sim_state["qpos"].shape == (5, 2)
    np.testing.assert_array_equal(ep.observations[:, 1], np.arange(5))
    assert not ep.terminated and ep.truncations[-1]
    assert ep.extras["policy_id"].tolist() == [0] * 4
    assert ds.episode(-1).observations[0, 0] == 2
    with pytest.raises(IndexError):
        ds.episode(3)


def test_metadata_round_trip(toy_path):
    ds = read_dataset(toy_path)
    m = ds.metadata
    assert m.dataset_id == "test/toy/toy-v0" and m.env_id == "Toy-v0"
    assert m.observation_space == BOX_OBS and m.action_space == BOX_ACT
    assert m.reference_scores == {"random": 0.0, "expert": 10.0}
    assert [p["name"] for p in m.behaviour_policies] == ["p0", "p1"]
    assert set(m.checksums) == set(ds.arrays)
    assert m.format_version == fmt.FORMAT_VERSION
    assert "numpy" in m.library_versions
    np.testing.assert_allclose(ds.normalized_score([0.0, 5.0, 10.0]), [0.0, 50.0, 100.0])


def test_rebuild_is_byte_identical(tmp_path):
    a = write_toy(tmp_path / "a.hdf5")
    b = write_toy(tmp_path / "b.hdf5")
    assert hashlib.sha256(a.read_bytes()).hexdigest() == hashlib.sha256(b.read_bytes()).hexdigest()


def test_save_of_loaded_dataset_preserves_content(toy_path, tmp_path):
    ds = read_dataset(toy_path)
    again = read_dataset(ds.save(tmp_path / "copy.hdf5"), validate=True)
    assert again.content_sha256() == ds.content_sha256()


def test_dict_observations_and_discrete_actions(tmp_path):
    obs_space = gym.spaces.Dict({
        "observation": gym.spaces.Box(-20, 20, (4,), np.float32),  # holds the values 0..15 written below
        "achieved_goal": gym.spaces.Box(-20, 20, (2,), np.float32),
        "desired_goal": gym.spaces.Box(-20, 20, (2,), np.float32)})
    act_space = gym.spaces.Discrete(4)
    with DatasetWriter(tmp_path / "d.hdf5", dataset_id="test/grid/goal-v0", env_id="Grid-v0",
                       observation_space=obs_space, action_space=act_space) as w:
        for T in (3, 2):
            obs = {k: np.arange((T + 1) * s.shape[0], dtype=np.float32).reshape(T + 1, -1)
                   for k, s in obs_space.spaces.items()}
            trunc = np.zeros(T, bool)
            trunc[-1] = True
            w.add_episode(observations=obs, actions=np.arange(T) % 4, rewards=np.ones(T),
                          terminations=np.zeros(T, bool), truncations=trunc)
    ds = read_dataset(tmp_path / "d.hdf5", validate=True)
    assert ds.is_dict_observation and set(ds.observations) == {"observation", "achieved_goal", "desired_goal"}
    assert ds.actions.dtype == np.int64 and ds.actions.tolist() == [0, 1, 2, 0, 1]
    np.testing.assert_array_equal(ds.next_observations["achieved_goal"][2], [6, 7])  # final of episode 0
    assert ds.episode(1).observations["observation"].shape == (3, 4)


def test_writer_memory_is_bounded_by_flush(tmp_path):
    w = DatasetWriter(tmp_path / "s.hdf5", dataset_id="test/toy/s-v0", env_id="Toy-v0",
                      observation_space=BOX_OBS, action_space=BOX_ACT, flush_steps=100)
    T = 40
    for e in range(20):
        trunc = np.zeros(T, bool)
        trunc[-1] = True
        w.add_episode(observations=np.zeros((T + 1, 3)), actions=np.zeros((T, 2)), rewards=np.zeros(T),
                      terminations=np.zeros(T, bool), truncations=trunc)
        assert w._buffered < 100 + T  # never more than one flush worth of steps held in memory
    w.close()
    assert read_dataset(tmp_path / "s.hdf5", validate=True).num_steps == 800


settings_rt = settings(max_examples=40, deadline=None)


@settings_rt
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=8),
    data=st.data(),
)
def test_write_read_round_trip_property(tmp_path_factory, lengths, data):
    path = tmp_path_factory.mktemp("rt") / "p.hdf5"
    episodes = []
    with DatasetWriter(path, dataset_id="test/toy/p-v0", env_id="Toy-v0", observation_space=BOX_OBS,
                       action_space=BOX_ACT, flush_steps=data.draw(st.integers(1, 30))) as w:
        for T in lengths:
            seed = data.draw(st.integers(0, 2**31))
            rng = np.random.default_rng(seed)
            term = data.draw(st.booleans())
            ends = np.zeros(T, bool)
            ends[-1] = True
            ep = dict(observations=rng.standard_normal((T + 1, 3)).astype(np.float32),
                      actions=rng.uniform(-1, 1, (T, 2)).astype(np.float32),
                      rewards=rng.standard_normal(T).astype(np.float32),
                      terminations=ends & term, truncations=ends & (not term) | ends & data.draw(st.booleans()),
                      behaviour_log_prob=rng.standard_normal(T))
            episodes.append(ep)
            w.add_episode(**ep)
    ds = read_dataset(path, validate=True)
    assert ds.num_episodes == len(lengths) and ds.num_steps == sum(lengths)
    for e, ep in enumerate(episodes):
        got = ds.episode(e)
        np.testing.assert_array_equal(got.observations, ep["observations"])
        np.testing.assert_array_equal(got.actions, ep["actions"])
        np.testing.assert_array_equal(got.rewards, ep["rewards"])
        np.testing.assert_array_equal(got.terminations, ep["terminations"])
        np.testing.assert_array_equal(got.truncations, ep["truncations"])
        np.testing.assert_array_equal(got.extras["behaviour_log_prob"], ep["behaviour_log_prob"])
