"""%BC (both definitions), behaviour-policy mixing with provenance, and episode splits."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from offbench.data.compose import mix, percent_bc, top_episodes_by_count, top_episodes_by_timesteps, \
    train_validation_split
from offbench.data.dataset import Dataset, DatasetMetadata, read_dataset
from offbench.errors import OffbenchError
from tests.conftest import BOX_ACT, BOX_OBS, write_toy


def make_dataset(lengths, returns, *, dataset_id="test/toy/a-v0", policies=("p",)):
    """In-memory dataset whose episode e has length lengths[e] and return returns[e]."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n, e = int(lengths.sum()), len(lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    episode = np.repeat(np.arange(e), lengths)
    rewards = (np.asarray(returns, dtype=np.float64) / lengths)[episode].astype(np.float32)
    trunc = np.zeros(n, bool)
    trunc[starts + lengths - 1] = True
    obs = np.stack([episode, np.arange(n) - starts[episode], np.zeros(n)], 1).astype(np.float32)
    arrays = {
        "observations": obs, "actions": np.zeros((n, 2), np.float32), "rewards": rewards,
        "terminations": np.zeros(n, bool), "truncations": trunc,
        "policy_id": np.zeros(n, np.int32),
        "episodes/start": starts, "episodes/length": lengths, "episodes/source": np.zeros(e, np.int32),
        "episodes/final/observations": np.stack([np.arange(e), lengths, np.zeros(e)], 1).astype(np.float32),
    }
    meta = DatasetMetadata(dataset_id=dataset_id, env_id="Toy-v0", observation_space=BOX_OBS,
                           action_space=BOX_ACT, reference_scores={"random": 0.0, "expert": 1.0},
                           sources=[{"dataset_id": dataset_id}],
                           behaviour_policies=[{"name": p} for p in policies])
    ds = Dataset(arrays, meta)
    ds.validate(check_checksums=False)
    return ds


def test_percent_bc_definitions_differ_as_documented():
    # Returns 10, 9, 8, 7 with lengths 1, 1, 1, 97: the best 3 episodes hold only 3% of timesteps.
    ds = make_dataset([1, 1, 1, 97], [10.0, 9.0, 8.0, 7.0])
    by_count = top_episodes_by_count(ds, 0.5)  # top 50% of episodes = 2 episodes
    np.testing.assert_allclose(by_count.episode_returns(), [10.0, 9.0], rtol=1e-6)
    by_steps = top_episodes_by_timesteps(ds, 0.5)  # needs 50 of 100 steps: all four episodes
    assert by_steps.num_episodes == 4
    assert top_episodes_by_timesteps(ds, 0.02).num_episodes == 2  # 2 steps = 2% exactly
    assert by_count.metadata.recipe["definition"] == "top_episodes_by_count"
    assert percent_bc(ds, 0.25, "top_episodes_by_count").num_episodes == 1
    with pytest.raises(OffbenchError, match="unknown %BC definition"):
        percent_bc(ds, 0.1, "top10")
    with pytest.raises(OffbenchError, match=r"\(0, 1\]"):
        top_episodes_by_count(ds, 0.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 20), st.floats(-100, 100, allow_nan=False)), min_size=1, max_size=25),
       st.floats(0.01, 1.0))
def test_percent_bc_properties(episodes, fraction):
    lengths, returns = zip(*episodes)
    ds = make_dataset(lengths, returns)
    all_returns = ds.episode_returns()
    for kept, definition in ((top_episodes_by_count(ds, fraction), "count"),
                             (top_episodes_by_timesteps(ds, fraction), "steps")):
        kept.validate(check_checksums=False)
        ids = kept.final_observations[:, 0].astype(int)  # original episode index
        assert np.all(np.diff(ids) > 0), "episodes keep their original order"
        dropped = np.setdiff1d(np.arange(len(lengths)), ids)
        if len(dropped):  # every kept episode is at least as good as every dropped one
            assert all_returns[ids].min() >= all_returns[dropped].max() - 1e-6
        if definition == "count":
            assert kept.num_episodes == max(1, int(np.ceil(fraction * len(lengths) - 1e-9)))
        else:  # minimal prefix of the ranking holding >= fraction of the steps
            assert kept.num_steps >= fraction * ds.num_steps - 1e-6
            # Minimal: without the last-ranked kept episode (lowest return, ties: highest index)
            # the kept steps would fall below the fraction.
            kept_returns = all_returns[ids]
            last = max(range(len(ids)), key=lambda k: (-kept_returns[k], ids[k]))
            assert kept.num_steps - kept.episode_lengths[last] < fraction * ds.num_steps - 1e-9


def test_mix_concatenates_with_provenance():
    medium = make_dataset([3, 4], [1.0, 2.0], dataset_id="test/toy/medium-v0", policies=("medium",))
    expert = make_dataset([5], [9.0], dataset_id="test/toy/expert-v0", policies=("expert",))
    both = mix([medium, expert], dataset_id="test/toy/medium-expert-v0")
    both.validate(check_checksums=False)
    assert both.num_steps == 12 and both.num_episodes == 3
    assert both.episode_sources.tolist() == [0, 0, 1]
    assert [s["mixed_from"] for s in both.metadata.sources] == ["test/toy/medium-v0", "test/toy/expert-v0"]
    assert [p["name"] for p in both.metadata.behaviour_policies] == ["medium", "expert"]
    assert both.extra("policy_id").tolist() == [0] * 7 + [1] * 5  # re-indexed into the merged table
    assert both.metadata.reference_scores == {"random": 0.0, "expert": 1.0}
    np.testing.assert_allclose(both.episode_returns(), [1.0, 2.0, 9.0], rtol=1e-6)
    np.testing.assert_array_equal(both.next_observations[11], [0, 5, 0])  # final obs of the expert episode


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.integers(2, 30), st.floats(0.05, 0.95), st.sampled_from(["episodes", "steps"]),
       st.integers(0, 1000))
def test_mix_proportions(n_a, n_b, p, by, seed):
    a = make_dataset(np.full(n_a, 4), np.arange(n_a), dataset_id="test/toy/a-v0")
    b = make_dataset(np.full(n_b, 4), np.arange(n_b), dataset_id="test/toy/b-v0")
    total = min(n_a, n_b) * (1 if by == "episodes" else 4)
    mixed = mix([a, b], [p, 1 - p], by=by, total=total, seed=seed)
    mixed.validate(check_checksums=False)
    counts = np.bincount(mixed.episode_sources, minlength=2) * (1 if by == "episodes" else 4)
    # Whole episodes are drawn, so step counts may exceed the target by less than one episode.
    slack = 0 if by == "episodes" else 4
    for got, want in zip(counts, (round(p * total), round((1 - p) * total))):
        assert want <= got <= want + slack
    again = mix([a, b], [p, 1 - p], by=by, total=total, seed=seed)
    np.testing.assert_array_equal(again.observations, mixed.observations)


def test_mix_refuses_incompatible_sources():
    a = make_dataset([3], [1.0])
    b = make_dataset([3], [1.0])
    b.metadata.reference_scores = {"random": 0.0, "expert": 2.0}
    with pytest.raises(OffbenchError, match="different reference scores"):
        mix([a, b])
    with pytest.raises(OffbenchError, match="has 1 episodes, 5 requested"):
        mix([a, make_dataset([3], [1.0])], [0.5, 0.5], total=10)


def test_split_by_episode_is_seeded_and_disjoint(tmp_path):
    ds = read_dataset(write_toy(tmp_path / "t.hdf5", lengths=[2] * 20, terminated=[False] * 20))
    train, val = train_validation_split(ds, 0.25, seed=3)
    assert train.num_episodes == 15 and val.num_episodes == 5
    train_ids = set(train.final_observations[:, 0].astype(int))
    val_ids = set(val.final_observations[:, 0].astype(int))
    assert train_ids.isdisjoint(val_ids) and len(train_ids | val_ids) == 20
    _, val2 = train_validation_split(ds, 0.25, seed=3)
    assert set(val2.final_observations[:, 0].astype(int)) == val_ids
    _, val3 = train_validation_split(ds, 0.25, seed=4)
    assert set(val3.final_observations[:, 0].astype(int)) != val_ids
    saved = read_dataset(val.save(tmp_path / "val.hdf5"), validate=True)
    assert saved.metadata.recipe["part"] == "validation"
