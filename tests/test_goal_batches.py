"""Goal-conditioned batches (offbench.data.goal_batches): goal-kind fractions, episode boundaries,
geometric offsets, rewards and masks at the goal, HIQL subgoals, OGBench's defaults, exact resume.

The synthetic datasets store observation = achieved_goal = [episode, j] for state s_j, so every
goal says which state it came from, independently of the row arithmetic under test.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from offbench.checkpoint import load_checkpoint, save_checkpoint
from offbench.data.dataset import read_dataset
from offbench.data.goal_batches import GOAL_KINDS, GoalBatchConfig, GoalBatchError, GoalBatchSampler
from offbench.data.writer import DatasetWriter
from offbench.errors import OffbenchError

BOX = dict(low=-np.inf, high=np.inf, dtype=np.float32)
CURRENT, FUTURE, RANDOM = (GOAL_KINDS.index(k) for k in ("current", "future", "random"))


def goal_dataset(path, lengths, terminated=()):
    """Episodes whose observations and achieved goals are [episode, j]; desired goals [-1, -1]."""
    space = gym.spaces.Dict({k: gym.spaces.Box(shape=(2,), **BOX)
                             for k in ("observation", "achieved_goal", "desired_goal")})
    rng = np.random.default_rng(0)
    with DatasetWriter(path, dataset_id="test/goals/synthetic-v0", env_id="Synthetic-v0", observation_space=space,
                       action_space=gym.spaces.Box(-1, 1, (2,), np.float32)) as writer:
        for e, length in enumerate(lengths):
            states = np.stack([np.full(length + 1, e), np.arange(length + 1)], axis=1).astype(np.float32)
            end = np.zeros(length, bool)
            end[-1] = True
            term = end if e in terminated else np.zeros(length, bool)
            writer.add_episode(
                observations={"observation": states, "achieved_goal": states,
                              "desired_goal": np.full((length + 1, 2), -1.0, np.float32)},
                actions=rng.uniform(-1, 1, (length, 2)).astype(np.float32), rewards=np.zeros(length, np.float32),
                terminations=term, truncations=end & ~term)
    return read_dataset(path)


@pytest.fixture
def dataset(tmp_path):
    return goal_dataset(tmp_path / "goals.hdf5", [40, 7, 120, 1, 60], terminated=(1,))


def draw(sampler, batches):
    """Concatenate ``batches`` batches into numpy arrays."""
    out = {}
    for _ in range(batches):
        b = sampler.sample()
        for k, v in vars(b).items():
            if v is not None:
                out.setdefault(k, []).append(v.numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def step_state(ds, steps):
    """(episode, t, T) of each step, from the episode index."""
    e = ds.episode_of_step[steps]
    return e, steps - ds.episode_starts[e], ds.episode_lengths[e]


# ---------------------------------------------------------------------- goal kinds
def test_goal_kind_fractions_match_the_config(dataset):
    config = GoalBatchConfig(value_current=0.2, value_future=0.5, value_random=0.3,
                             actor_current=0.0, actor_future=0.5, actor_random=0.5)
    b = draw(GoalBatchSampler(dataset, config, 256, seed=1, chunk_batches=16), 200)
    n = len(b["steps"])
    for kinds, want in ((b["value_goal_kinds"], (0.2, 0.5, 0.3)), (b["actor_goal_kinds"], (0.0, 0.5, 0.5))):
        for code, p in enumerate(want):
            tolerance = 5 * np.sqrt(max(p * (1 - p), 1e-12) / n)
            assert abs(np.mean(kinds == code) - p) <= max(tolerance, 1e-12)


def test_goals_are_the_goal_states_and_never_cross_an_episode(dataset):
    config = GoalBatchConfig(value_current=0.2, value_future=0.5, value_random=0.3, value_geometric=True,
                             actor_current=0.1, actor_future=0.6, actor_random=0.3, actor_geometric=False)
    b = draw(GoalBatchSampler(dataset, config, 128, seed=2), 100)
    e, t, T = step_state(dataset, b["steps"])
    goals_of = dataset.states_with_finals("observations/achieved_goal")
    for goals, rows, kinds in ((b["value_goals"], b["value_goal_rows"], b["value_goal_kinds"]),
                               (b["actor_goals"], b["actor_goal_rows"], b["actor_goal_kinds"])):
        np.testing.assert_array_equal(goals, goals_of[rows])
        ge, gj = goals[:, 0].astype(int), goals[:, 1].astype(int)
        current, future = kinds == CURRENT, kinds == FUTURE
        assert current.any() and future.any() and (kinds == RANDOM).any()
        np.testing.assert_array_equal(ge[current], e[current])
        np.testing.assert_array_equal(gj[current], t[current])
        np.testing.assert_array_equal(ge[future], e[future])  # never another episode
        assert (gj[future] >= t[future] + 1).all() and (gj[future] <= T[future]).all()
        random_episodes = ge[kinds == RANDOM]
        assert len(np.unique(random_episodes)) == dataset.num_episodes  # random goals come from everywhere
    # Observations and exact next observations (the final observation at an episode's end).
    np.testing.assert_array_equal(b["observations"], np.stack([e, t], 1))
    np.testing.assert_array_equal(b["next_observations"], np.stack([e, t + 1], 1))


def test_geometric_offsets_have_the_capped_geometric_mean(tmp_path):
    ds = goal_dataset(tmp_path / "long.hdf5", [3000, 3000, 50])
    discount = 0.99
    config = GoalBatchConfig(value_current=0.0, value_future=1.0, value_random=0.0, value_geometric=True,
                             discount=discount)
    b = draw(GoalBatchSampler(ds, config, 256, seed=3), 120)
    _, t, T = step_state(ds, b["steps"])
    offsets = b["value_goals"][:, 1].astype(np.int64) - t
    assert offsets.min() >= 1
    # E[min(K, m)] = (1 - gamma^m) / (1 - gamma) for K ~ Geometric(1 - gamma) on {1, 2, ...}.
    expected = (1 - discount ** (T - t)) / (1 - discount)
    k = np.arange(1, 20_000)
    pmf = (1 - discount) * discount ** (k - 1)
    variance = (pmf * k**2).sum() - ((pmf * k).sum()) ** 2
    se = np.sqrt(variance / len(offsets))
    assert abs(offsets.mean() - expected.mean()) < 4 * se
    far = T - t > 2000  # no cap in practice: the plain geometric mean 1 / (1 - gamma) = 100
    assert abs(offsets[far].mean() - 1 / (1 - discount)) < 4 * np.sqrt(variance / far.sum())
    assert (offsets <= T - t).all() and (offsets == T - t).any()  # capped at the final state


def test_uniform_future_goals_are_uniform_on_the_rest_of_the_episode(tmp_path):
    ds = goal_dataset(tmp_path / "u.hdf5", [200, 200])
    config = GoalBatchConfig(actor_current=0.0, actor_future=1.0, actor_random=0.0, actor_geometric=False)
    b = draw(GoalBatchSampler(ds, config, 256, seed=4), 100)
    _, t, T = step_state(ds, b["steps"])
    offsets = b["actor_goals"][:, 1] - t
    expected = (T - t + 1) / 2  # uniform on {1, ..., T - t}
    se = np.sqrt(((T - t) ** 2 - 1).mean() / 12 / len(t))
    assert abs(offsets.mean() - expected.mean()) < 4 * se
    np.testing.assert_array_equal(b["actor_goal_kinds"], FUTURE)


# ---------------------------------------------------------------------- rewards and masks
def test_reward_is_zero_and_the_mask_cut_exactly_at_the_goal(dataset):
    sampler = GoalBatchSampler(dataset, GoalBatchConfig(), 256, seed=5)
    b = draw(sampler, 60)
    at_goal = b["value_goal_rows"] == b["steps"]  # OGBench: the goal is the current state
    assert at_goal.any() and (~at_goal).any()
    current = b["value_goal_kinds"] == CURRENT
    assert at_goal[current].all()  # a current-state goal is always reached...
    assert (b["value_goal_kinds"][at_goal & ~current] == RANDOM).all()  # ...and a random one by chance
    np.testing.assert_array_equal(b["rewards"], np.where(at_goal, 0.0, -1.0).astype(np.float32))
    terminated = dataset.terminations[b["steps"]]
    assert terminated.any()
    np.testing.assert_array_equal(b["masks"], (~(at_goal | terminated)).astype(np.float32))
    assert b["rewards"].dtype == np.float32 and b["masks"].dtype == np.float32


def test_success_at_next_compares_the_goal_with_the_next_state(dataset):
    config = GoalBatchConfig(value_current=0.0, value_future=1.0, value_random=0.0, success_at="next")
    b = draw(GoalBatchSampler(dataset, config, 256, seed=6), 40)
    reached = b["value_goal_rows"] == dataset.next_index[b["steps"]]
    assert reached.any() and (~reached).any()
    np.testing.assert_array_equal(b["rewards"], np.where(reached, 0.0, -1.0).astype(np.float32))
    np.testing.assert_array_equal(b["masks"] == 0, reached | dataset.terminations[b["steps"]])


# ---------------------------------------------------------------------- HIQL
def test_hiql_subgoals_and_targets(dataset):
    config = GoalBatchConfig.ogbench("hiql", stitch=True)
    assert config.subgoal_steps == 25
    b = draw(GoalBatchSampler(dataset, config, 256, seed=7), 60)
    e, t, T = step_state(dataset, b["steps"])
    ahead = np.minimum(t + 25, T)
    np.testing.assert_array_equal(b["low_actor_goals"], np.stack([e, ahead], 1))
    random = b["actor_goal_kinds"] == RANDOM
    assert random.any() and (~random).any()
    goal_j = b["actor_goals"][:, 1].astype(np.int64)
    want = np.where(random, ahead, np.minimum(ahead, goal_j))
    np.testing.assert_array_equal(b["high_actor_targets"], np.stack([e, want], 1))
    assert GoalBatchSampler(dataset, GoalBatchConfig.ogbench("gciql"), 8).sample().low_actor_goals is None


# ---------------------------------------------------------------------- configuration
def test_ogbench_defaults_per_method():
    mix = lambda c, p: tuple(getattr(c, f"{p}_{k}") for k in GOAL_KINDS)  # noqa: E731
    for method in ("gcivl", "gciql", "hiql"):
        assert mix(GoalBatchConfig.ogbench(method), "value") == (0.2, 0.5, 0.3)
    assert mix(GoalBatchConfig.ogbench("crl"), "value") == (0.0, 1.0, 0.0)
    assert mix(GoalBatchConfig.ogbench("qrl"), "value") == (0.0, 0.0, 1.0)
    for method in ("gcbc", "gcivl", "gciql", "qrl", "crl", "hiql"):
        navigate = GoalBatchConfig.ogbench(method)
        assert mix(navigate, "actor") == (0.0, 1.0, 0.0) and not navigate.actor_geometric
        stitch = GoalBatchConfig.ogbench(method, stitch=True)
        assert mix(stitch, "actor") == ((0.0, 1.0, 0.0) if method == "gcbc" else (0.0, 0.5, 0.5))
    assert GoalBatchConfig.ogbench("gciql").value_geometric and GoalBatchConfig.ogbench("gciql").discount == 0.99
    giant = GoalBatchConfig.for_dataset("hiql", "goal/pointmaze-giant/stitch-v0")
    assert giant.discount == 0.995 and giant.actor_random == 0.5 and giant.subgoal_steps == 25
    assert GoalBatchConfig.for_dataset("gcivl", "goal/pointmaze-medium/navigate-v0").actor_random == 0.0


@pytest.mark.parametrize("kwargs, words", [
    ({"value_current": 0.5}, "sum to 1"),
    ({"actor_future": -0.5, "actor_random": 1.5}, ">= 0"),
    ({"discount": 1.0}, "discount"),
    ({"subgoal_steps": -1}, "subgoal_steps"),
    ({"success_at": "previous"}, "success_at"),
])
def test_bad_configs_are_refused(kwargs, words):
    with pytest.raises(GoalBatchError, match=words):
        GoalBatchConfig(**kwargs)
    with pytest.raises(OffbenchError, match="unknown goal-conditioned method"):
        GoalBatchConfig.ogbench("td3")


def test_a_dataset_without_goal_observations_is_refused(tmp_path, toy_path):
    ds = read_dataset(toy_path)
    with pytest.raises(OffbenchError, match="Dict observations"):
        GoalBatchSampler(ds)
    with pytest.raises(GoalBatchError, match="batch_size"):
        GoalBatchSampler(goal_dataset(tmp_path / "g.hdf5", [5]), batch_size=0)


# ---------------------------------------------------------------------- reproducibility
def test_same_seed_same_batches_and_exact_resume_mid_chunk(dataset, tmp_path):
    config = GoalBatchConfig.ogbench("hiql", stitch=True)
    a = GoalBatchSampler(dataset, config, 32, seed=9, chunk_batches=4)
    for _ in range(6):  # into the second chunk
        a.sample()
    save_checkpoint(tmp_path / "ckpt", generators={"sampler": a.generator}, extra={"step": 6})
    expected = [a.sample() for _ in range(7)]  # crosses into the next chunk
    b = GoalBatchSampler(dataset, config, 32, seed=9, chunk_batches=4)
    load_checkpoint(tmp_path / "ckpt", generators={"sampler": b.generator})
    for want in expected:
        got = b.sample()
        for name, value in vars(want).items():
            if value is not None:
                assert torch.equal(value, getattr(got, name)), name
    c = GoalBatchSampler(dataset, config, 32, seed=10, chunk_batches=4)
    d = GoalBatchSampler(dataset, config, 32, seed=9, chunk_batches=4)
    assert not torch.equal(c.sample().steps, d.sample().steps)
