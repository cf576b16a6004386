"""Tests of offbench.data.relabel: hindsight goal relabelling and task reward relabelling.

Synthetic goal datasets store achieved_goal = [episode, j] for state s_j, so a goal's value
says which state it came from independently of the row arithmetic under test.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from offbench.data.dataset import Dataset, read_dataset
from offbench.data.relabel import (
    GOAL_STRATEGIES,
    GoalSampler,
    RelabelError,
    TransitionView,
    env_compute_reward,
    halfcheetah_velocity_reward,
    index_reward,
    pendulum_target_angle_reward,
    relabel_dataset,
    relabel_task,
    state_positions,
    state_rows,
    threshold_reward,
)
from offbench.data.writer import DatasetWriter

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOX = dict(low=-np.inf, high=np.inf, dtype=np.float32)


# ---------------------------------------------------------------------- helpers
def write_goal_dataset(path: Path, lengths, terminated=None, seed: int = 0) -> Dataset:
    """Episodes with achieved_goal(s_j) = [e, j] and stored desired_goal [1000 + e, -1]."""
    rng = np.random.default_rng(seed)
    terminated = terminated or [False] * len(lengths)
    obs_space = gym.spaces.Dict({
        "observation": gym.spaces.Box(shape=(3,), **BOX),
        "achieved_goal": gym.spaces.Box(shape=(2,), **BOX),
        "desired_goal": gym.spaces.Box(shape=(2,), **BOX),
    })
    act_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    with DatasetWriter(path, dataset_id="test/goals/synthetic-v0", env_id="Synthetic-v0",
                       observation_space=obs_space, action_space=act_space, recipe={"kind": "synthetic"}) as w:
        for e, (length, term_flag) in enumerate(zip(lengths, terminated)):
            j = np.arange(length + 1)
            term = np.zeros(length, bool)
            trunc = np.zeros(length, bool)
            (term if term_flag else trunc)[-1] = True
            w.add_episode(
                observations={
                    "observation": rng.normal(size=(length + 1, 3)),
                    "achieved_goal": np.stack([np.full(length + 1, e), j], axis=1),
                    "desired_goal": np.tile([1000.0 + e, -1.0], (length + 1, 1)),
                },
                actions=rng.uniform(-1, 1, (length, 2)), rewards=rng.normal(size=length),
                terminations=term, truncations=trunc)
    return read_dataset(path)


def goal_dataset(lengths, terminated=None, seed: int = 0) -> Dataset:
    with tempfile.TemporaryDirectory() as tmp:
        return write_goal_dataset(Path(tmp) / "goals.h5", lengths, terminated, seed)


def next_achieved_by_loop(ds: Dataset, steps: np.ndarray) -> np.ndarray:
    """achieved_goal of s_{t+1}, read episode by episode (independent of next_index)."""
    out = []
    for step in steps:
        e = int(np.searchsorted(ds.episode_starts, step, side="right") - 1)
        t = int(step - ds.episode_starts[e])
        out.append(ds.episode(e).observations["achieved_goal"][t + 1])
    return np.array(out)


episode_shapes = st.lists(st.tuples(st.integers(1, 12), st.booleans()), min_size=1, max_size=6)


def allowed_range(strategy: str, t: np.ndarray, length: np.ndarray):
    """Inclusive [lo, hi] of the goal state index j for each sample, per the documented rule."""
    return {
        "future": (t + 1, length),
        "future_inclusive": (t, length),
        "geometric": (t + 1, length),
        "final": (length, length),
        "episode": (np.zeros_like(t), length),
        "current": (t, t),
    }[strategy]


def check_goal_origins(ds: Dataset, steps, goals, rows, codes, names):
    """Every goal is the achieved_goal of a state its strategy allows."""
    n, e_count = ds.num_steps, ds.num_episodes
    ep = ds.episode_of_step[steps]
    t = steps - ds.episode_starts[ep]
    length = ds.episode_lengths[ep]
    for code, name in enumerate(names):
        sel = codes == code
        if not sel.any():
            continue
        g, r = goals[sel], rows[sel]
        if name == "original":
            assert (r == -1).all()
            np.testing.assert_array_equal(g, ds.arrays["observations/desired_goal"][steps[sel]])
            continue
        # Decoded from the goal value itself: [episode, j].
        g_ep, g_j = g[:, 0].astype(int), g[:, 1].astype(int)
        np.testing.assert_array_equal(ds.states_with_finals("observations/achieved_goal")[r], g)
        np.testing.assert_array_equal(state_rows(ds, g_ep, g_j), r)
        np.testing.assert_array_equal(np.stack(state_positions(ds, r)), np.stack([g_ep, g_j]))
        if name == "random":
            assert ((r >= 0) & (r < n + e_count)).all()
            assert ((g_ep >= 0) & (g_ep < e_count)).all()
            assert ((g_j >= 0) & (g_j <= ds.episode_lengths[g_ep])).all()
            continue
        np.testing.assert_array_equal(g_ep, ep[sel])  # same episode
        lo, hi = allowed_range(name, t[sel], length[sel])
        assert (g_j >= lo).all() and (g_j <= hi).all(), name


# ---------------------------------------------------------------------- goal origins
@FAST
@given(shapes=episode_shapes, strategy=st.sampled_from(GOAL_STRATEGIES), seed=st.integers(0, 2**31),
       gamma=st.sampled_from([0.0, 0.5, 0.9, 0.99]))
def test_each_strategy_draws_goals_from_its_allowed_states(shapes, strategy, seed, gamma):
    ds = goal_dataset([s[0] for s in shapes], [s[1] for s in shapes])
    sampler = GoalSampler(ds, {strategy: 1.0}, gamma=gamma, seed=seed)
    steps = np.tile(np.arange(ds.num_steps), 5)
    s = sampler.sample(steps)
    assert s.goals.shape == (len(steps), 2) and s.goal_rows.dtype == np.int64
    check_goal_origins(ds, steps, s.goals, s.goal_rows, s.strategy, s.strategy_names)
    goals, rows = sampler.sample_goals(steps)
    check_goal_origins(ds, steps, goals, rows, np.zeros(len(steps), int), (strategy,))


def test_future_reaches_both_ends_of_its_range():
    ds = goal_dataset([4])
    steps = np.repeat(np.arange(4), 400)
    for name, lo_off in (("future", 1), ("future_inclusive", 0)):
        goals, _ = GoalSampler(ds, {name: 1.0}, seed=1).sample_goals(steps)
        j = goals[:, 1].astype(int)
        for t in range(4):
            assert set(np.unique(j[steps == t])) == set(range(t + lo_off, 5)), (name, t)
    goals, _ = GoalSampler(ds, {"episode": 1.0}, seed=1).sample_goals(steps)
    assert set(np.unique(goals[:, 1])) == {0, 1, 2, 3, 4}
    # 'random' covers every state row of the dataset, final observations included.
    two = goal_dataset([3, 2])
    _, rows = GoalSampler(two, {"random": 1.0}, seed=1).sample_goals(np.zeros(2000, int))
    assert set(rows.tolist()) == set(range(two.num_steps + two.num_episodes))
    counts = np.bincount(rows) / len(rows)
    np.testing.assert_allclose(counts, 1 / 7, atol=0.04)


@settings(max_examples=15, deadline=None)
@given(weights=st.lists(st.floats(0.1, 1.0), min_size=2, max_size=5), seed=st.integers(0, 2**31),
       chosen=st.permutations(GOAL_STRATEGIES))
def test_strategy_proportions_match(weights, seed, chosen):
    ds = goal_dataset([7, 3, 12], [True, False, False])
    strategies = dict(zip(chosen[:len(weights)], weights))
    sampler = GoalSampler(ds, strategies, gamma=0.8, seed=seed)
    steps = np.random.default_rng(seed).integers(0, ds.num_steps, 20000)
    s = sampler.sample(steps)
    expected = np.array(weights) / sum(weights)
    observed = np.bincount(s.strategy, minlength=len(weights)) / len(steps)
    assert s.strategy_names == tuple(strategies)
    # 0.025 is about 7 standard errors at 20000 samples.
    np.testing.assert_allclose(observed, expected, atol=0.025)
    check_goal_origins(ds, steps, s.goals, s.goal_rows, s.strategy, s.strategy_names)


def test_geometric_offsets_have_mean_one_over_one_minus_gamma():
    ds = goal_dataset([5000])
    steps = np.random.default_rng(0).integers(0, 1000, 40000)
    for gamma in (0.9, 0.99):
        goals, _ = GoalSampler(ds, {"geometric": 1.0}, gamma=gamma, seed=3).sample_goals(steps)
        k = goals[:, 1].astype(int) - steps
        mean, sem = 1 / (1 - gamma), np.sqrt(gamma) / (1 - gamma) / np.sqrt(len(k))
        assert k.min() == 1 and goals[:, 1].max() < 5000  # never clipped this far from the end
        assert abs(k.mean() - mean) < 5 * sem, (gamma, k.mean())
        assert abs(np.mean(k == 1) - (1 - gamma)) < 0.01
    # At the episode's end the offset is clipped to the final state.
    goals, _ = GoalSampler(ds, {"geometric": 1.0}, gamma=0.99, seed=3).sample_goals(np.full(100, 4999))
    assert (goals[:, 1] == 5000).all()


# ---------------------------------------------------------------------- rewards and masks
@FAST
@given(shapes=episode_shapes, seed=st.integers(0, 2**31), threshold=st.sampled_from([0.0, 0.5, 1.0, 2.5]),
       terminate=st.booleans())
def test_relabelled_reward_is_reward_fn_of_next_achieved_goal(shapes, seed, threshold, terminate):
    ds = goal_dataset([s[0] for s in shapes], [s[1] for s in shapes], seed=seed % 7)
    sampler = GoalSampler(ds, {"future": 0.4, "random": 0.2, "current": 0.2, "original": 0.2},
                          reward_fn=threshold_reward(threshold), terminate_on_success=terminate, seed=seed)
    steps = np.random.default_rng(seed).integers(0, ds.num_steps, 64)
    b = sampler.relabel(steps)
    next_ag = next_achieved_by_loop(ds, steps)
    success = np.linalg.norm(next_ag - b.goals, axis=1) <= threshold
    np.testing.assert_array_equal(b.success, success)
    np.testing.assert_array_equal(b.rewards, np.where(success, 0.0, -1.0).astype(np.float32))
    assert b.rewards.dtype == np.float32
    np.testing.assert_array_equal(b.next_observations["achieved_goal"], next_ag)
    np.testing.assert_array_equal(b.next_observations["desired_goal"], b.observations["desired_goal"])
    np.testing.assert_array_equal(b.observations["observation"], ds.arrays["observations/observation"][steps])
    np.testing.assert_array_equal(b.actions, ds.actions[steps])
    np.testing.assert_array_equal(b.truncations, ds.truncations[steps])
    stored = ds.terminations[steps]
    np.testing.assert_array_equal(b.terminations, (stored | success) if terminate else stored)
    check_goal_origins(ds, steps, b.goals, b.goal_rows, b.strategy, b.strategy_names)


@FAST
@given(shapes=episode_shapes, seed=st.integers(0, 2**31))
def test_same_seed_same_goals(shapes, seed):
    ds = goal_dataset([s[0] for s in shapes], [s[1] for s in shapes])
    strategies = {"geometric": 0.5, "random": 0.3, "current": 0.2}
    steps = np.arange(ds.num_steps).repeat(3)
    a = GoalSampler(ds, strategies, seed=seed).sample(steps)
    b = GoalSampler(ds, strategies, seed=seed).sample(steps)
    np.testing.assert_array_equal(a.goals, b.goals)
    np.testing.assert_array_equal(a.goal_rows, b.goal_rows)
    np.testing.assert_array_equal(a.strategy, b.strategy)


def test_different_seeds_differ():
    ds = goal_dataset([10, 10])
    steps = np.arange(20).repeat(10)
    a = GoalSampler(ds, {"random": 1.0}, seed=0).sample_goals(steps)[1]
    b = GoalSampler(ds, {"random": 1.0}, seed=1).sample_goals(steps)[1]
    assert (a != b).mean() > 0.8  # 22 rows: agreement by chance is about 1/22


def test_index_reward_matches_state_identity():
    ds = goal_dataset([6, 4], [True, False])
    steps = np.arange(ds.num_steps)
    # OGBench's convention: a 'current' goal is always a success (mask 0).
    b = GoalSampler(ds, {"current": 1.0}, reward_fn=index_reward(match="current"), terminate_on_success=True,
                    seed=0).relabel(steps)
    assert b.success.all() and (b.rewards == 0).all() and b.terminations.all()
    # offbench's default compares with s_{t+1}: a 'current' goal is never reached by the next state.
    b = GoalSampler(ds, {"current": 1.0}, reward_fn=index_reward(), seed=0).relabel(steps)
    assert not b.success.any() and (b.rewards == -1).all()
    # 'future' goals succeed exactly when j == t + 1, including the final state at the last step.
    steps = np.tile(steps, 50)
    b = GoalSampler(ds, {"future": 1.0}, reward_fn=index_reward(), seed=0).relabel(steps)
    t = steps - ds.episode_starts[ds.episode_of_step[steps]]
    expected = b.goals[:, 1].astype(int) == t + 1
    np.testing.assert_array_equal(b.success, expected)
    np.testing.assert_array_equal(b.rewards, expected.astype(np.float32) - 1)
    last = np.isin(steps, [5, 9])
    assert b.success[last].all() and 0.1 < b.success[~last].mean() < 0.6
    with pytest.raises(RelabelError, match="original"):
        GoalSampler(ds, {"original": 1.0}, reward_fn=index_reward()).relabel(steps)


class _GoalEnv:
    """Stand-in for a Gymnasium-Robotics goal env (gymnasium_robotics is not installed)."""

    def __init__(self):
        self.infos_seen = []

    @property
    def unwrapped(self):
        return self

    def compute_reward(self, achieved_goal, desired_goal, info):
        self.infos_seen.append(info)
        d = np.linalg.norm(achieved_goal - desired_goal, axis=-1)
        return -(d > 1.5).astype(np.float32)


def test_env_compute_reward_wraps_compute_reward():
    ds = goal_dataset([8, 5])
    env = _GoalEnv()
    steps = np.arange(ds.num_steps).repeat(4)
    b_env = GoalSampler(ds, {"episode": 1.0}, reward_fn=env_compute_reward(env), seed=5).relabel(steps)
    b_thr = GoalSampler(ds, {"episode": 1.0}, reward_fn=threshold_reward(1.5), seed=5).relabel(steps)
    np.testing.assert_array_equal(b_env.rewards, b_thr.rewards)
    np.testing.assert_array_equal(b_env.success, b_thr.success)
    assert 0 < b_env.success.mean() < 1 and env.infos_seen == [None]  # one vectorised call
    env_compute_reward(env, pass_infos=True)(np.zeros((3, 2)), np.ones((3, 2)))
    assert env.infos_seen[-1] == [{}, {}, {}]
    pendulum = gym.make("Pendulum-v1")
    with pytest.raises(RelabelError, match="no compute_reward"):
        env_compute_reward(pendulum)
    pendulum.close()


# ---------------------------------------------------------------------- materialised relabelling
def expected_piece_ends(ds: Dataset, goals: np.ndarray, terminations: np.ndarray) -> set[int]:
    ends = set((ds.episode_starts + ds.episode_lengths - 1).tolist())
    ends |= {t for t in range(ds.num_steps - 1) if (goals[t] != goals[t + 1]).any()}
    return ends | set(np.flatnonzero(terminations).tolist())


@FAST
@given(shapes=episode_shapes, seed=st.integers(0, 2**31), threshold=st.sampled_from([0.0, 1.0, 2.0]),
       terminate=st.booleans(), mix=st.sampled_from([
           {"future": 1.0}, {"final": 1.0}, {"original": 1.0},
           {"future": 0.3, "final": 0.3, "random": 0.2, "original": 0.2}]))
def test_relabel_dataset_keeps_transitions_exact_and_episodes_valid(shapes, seed, threshold, terminate, mix):
    ds = goal_dataset([s[0] for s in shapes], [s[1] for s in shapes])
    rel = relabel_dataset(ds, mix, reward_fn=threshold_reward(threshold), seed=seed,
                          terminate_on_success=terminate)
    rel.validate(check_checksums=False)
    assert rel.num_steps == ds.num_steps
    for path in ("observations/observation", "observations/achieved_goal", "actions"):
        np.testing.assert_array_equal(rel.arrays[path], ds.arrays[path])
    # The point of re-segmenting: each step's next state is the parent's, under the step's own goal.
    goals = rel.observations["desired_goal"]
    np.testing.assert_array_equal(rel.next_observations["desired_goal"], goals)
    np.testing.assert_array_equal(rel.next_observations["achieved_goal"], ds.next_observations["achieved_goal"])
    np.testing.assert_array_equal(rel.next_observations["observation"], ds.next_observations["observation"])
    next_ag = next_achieved_by_loop(ds, np.arange(ds.num_steps))
    success = np.linalg.norm(next_ag - goals, axis=1) <= threshold
    np.testing.assert_array_equal(rel.extra("infos/success"), success)
    np.testing.assert_array_equal(rel.rewards, np.where(success, 0, -1).astype(np.float32))
    expected_term = (ds.terminations | success) if terminate else ds.terminations
    np.testing.assert_array_equal(rel.terminations, expected_term)
    ends = rel.episode_starts + rel.episode_lengths - 1
    assert set(ends.tolist()) == expected_piece_ends(ds, goals, expected_term)
    np.testing.assert_array_equal(rel.truncations[ends], ~expected_term[ends] | ds.truncations[ends])
    # Goals are the parent's states (or its stored desired goals) per the recorded rows.
    rows = rel.extra("infos/goal_row")
    ag_all = ds.states_with_finals("observations/achieved_goal")
    np.testing.assert_array_equal(goals[rows >= 0], ag_all[rows[rows >= 0]])
    np.testing.assert_array_equal(goals[rows < 0], ds.arrays["observations/desired_goal"][rows < 0])
    recipe = rel.metadata.recipe
    assert recipe["seed"] == seed and recipe["parent"] == ds.metadata.dataset_id
    assert recipe["strategies"] == pytest.approx({k: v / sum(mix.values()) for k, v in mix.items()})
    assert recipe["reward"] == {"kind": "threshold", "distance_threshold": threshold, "sparse_values": [0.0, -1.0]}


def test_relabel_dataset_final_goal_keeps_episodes_or_splits_at_success(tmp_path):
    ds = write_goal_dataset(tmp_path / "g.h5", [6, 3], [False, True])
    rel = relabel_dataset(ds, {"final": 1.0}, reward_fn=threshold_reward(0.0), seed=0)
    np.testing.assert_array_equal(rel.episode_lengths, ds.episode_lengths)
    np.testing.assert_array_equal(rel.final_observations["desired_goal"], [[0, 6], [1, 3]])
    np.testing.assert_array_equal(rel.rewards, [-1, -1, -1, -1, -1, 0, -1, -1, 0])
    np.testing.assert_array_equal(rel.terminations, ds.terminations)
    # Threshold 2 around the final goal: s_{t+1} with j >= T - 2 succeeds, so episode 0 is cut
    # (terminated) after steps 3 and 4; no step is dropped.
    rel = relabel_dataset(ds, {"final": 1.0}, reward_fn=threshold_reward(2.0), seed=0, terminate_on_success=True,
                          dataset_id="test/goals/final-v0")
    rel.validate(check_checksums=False)
    np.testing.assert_array_equal(rel.episode_lengths, [4, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(rel.terminations, [0, 0, 0, 1, 1, 1, 1, 1, 1])
    # Episode 0's stored time-limit truncation is kept beside its new termination.
    np.testing.assert_array_equal(np.flatnonzero(rel.truncations), [5])
    np.testing.assert_array_equal(rel.final_observations["achieved_goal"], [[0, 4], [0, 5], [0, 6], [1, 1], [1, 2],
                                                                             [1, 3]])
    np.testing.assert_array_equal(rel.final_observations["desired_goal"], [[0, 6]] * 3 + [[1, 3]] * 3)
    # It saves and reads back with checksums.
    rel.save(tmp_path / "rel.h5")
    back = read_dataset(tmp_path / "rel.h5", validate=True)
    assert back.metadata.dataset_id == "test/goals/final-v0"
    assert back.metadata.recipe["terminate_on_success"] is True
    for path, arr in rel.arrays.items():
        np.testing.assert_array_equal(back.arrays[path], arr)


# ---------------------------------------------------------------------- task relabelling, real envs
def rollout_dataset(path: Path, env_id: str, episodes: int, steps: int, sim_state) -> tuple[Dataset, dict]:
    """Random-action rollouts written with the writer; also returns float64 env rewards and infos."""
    env = gym.make(env_id, max_episode_steps=steps)
    env.action_space.seed(0)
    raw_rewards, x_velocity = [], []
    with DatasetWriter(path, dataset_id=f"test/{env_id}/random-v0", env_id=env_id,
                       observation_space=env.observation_space, action_space=env.action_space) as w:
        for ep in range(episodes):
            obs, _ = env.reset(seed=ep)
            o, a, r, term, trunc, sims, xv = [obs], [], [], [], [], [sim_state(env)], []
            done = False
            while not done:
                act = env.action_space.sample()
                obs, rew, te, tr, info = env.step(act)
                o.append(obs), a.append(act), r.append(rew), term.append(te), trunc.append(tr)
                sims.append(sim_state(env)), xv.append(info.get("x_velocity", np.nan))
                done = te or tr
            sim = {k: np.array([s[k] for s in sims]) for k in sims[0]}
            infos = {"x_velocity": np.array(xv)} if env_id.startswith("HalfCheetah") else None
            w.add_episode(observations=np.array(o), actions=np.array(a), rewards=np.array(r),
                          terminations=np.array(term), truncations=np.array(trunc), sim_state=sim, infos=infos)
            raw_rewards += r
            x_velocity += xv
    dt = getattr(env.unwrapped, "dt", None)
    env.close()
    return read_dataset(path), {"rewards": np.array(raw_rewards, np.float64), "x_velocity": np.array(x_velocity),
                                "dt": dt}


def test_pendulum_target_angle_reward_reproduces_pendulum(tmp_path):
    ds, raw = rollout_dataset(tmp_path / "pendulum.h5", "Pendulum-v1", 2, 100,
                              lambda env: {"state": np.array(env.unwrapped.state, np.float64)})
    rel = relabel_task(ds, pendulum_target_angle_reward(0.0), task_id=3)
    rel.validate(check_checksums=False)
    # Target 0 is Pendulum-v1's own reward; only the float32 observations separate them.
    np.testing.assert_allclose(rel.rewards, ds.rewards, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rel.rewards, raw["rewards"], rtol=1e-6, atol=1e-6)
    assert (rel.extra("task_id") == 3).all() and rel.extra("task_id").dtype == np.int32
    assert rel.metadata.recipe["task_id"] == 3
    assert rel.metadata.recipe["reward"] == {"kind": "pendulum_target_angle", "target_angle": 0.0, "max_torque": 2.0}
    np.testing.assert_array_equal(rel.terminations, ds.terminations)
    np.testing.assert_array_equal(rel.episode_lengths, [100, 100])
    # Target pi against the true simulator angle (float64), computed independently here.
    theta, thetadot = ds.arrays["sim_state/state"][:, 0], ds.arrays["sim_state/state"][:, 1]
    u = np.clip(ds.actions[:, 0].astype(np.float64), -2, 2)
    wrapped = np.mod(theta - np.pi + np.pi, 2 * np.pi) - np.pi
    expected = -(wrapped**2 + 0.1 * thetadot**2 + 0.001 * u**2)
    rel_pi = relabel_task(ds, pendulum_target_angle_reward(np.pi), task_id=4)
    np.testing.assert_allclose(rel_pi.rewards, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(rel_pi.rewards - rel.rewards).max() > 1.0  # a genuinely different task


def test_halfcheetah_velocity_reward_from_stored_qpos(tmp_path):
    ds, raw = rollout_dataset(tmp_path / "cheetah.h5", "HalfCheetah-v5", 2, 40,
                              lambda env: {"qpos": env.unwrapped.data.qpos.copy(),
                                           "qvel": env.unwrapped.data.qvel.copy()})
    assert raw["dt"] == pytest.approx(0.05)  # the default dt is HalfCheetah-v5's
    view = TransitionView(ds)
    velocity = halfcheetah_velocity_reward(1.0).velocity(view)
    # Including the last step of each (truncated) episode, whose next qpos is the final state.
    np.testing.assert_allclose(velocity, raw["x_velocity"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(velocity, ds.extra("infos/x_velocity"), rtol=0, atol=1e-9)
    # With an unreachable target velocity, -|v - 1000| = v - 1000: HalfCheetah-v5's reward
    # (forward weight 1, ctrl cost 0.1) shifted by -1000.
    far = halfcheetah_velocity_reward(1000.0, ctrl_cost=0.1)(view)
    np.testing.assert_allclose(far + 1000.0, raw["rewards"], rtol=0, atol=1e-6)
    rel = relabel_task(ds, halfcheetah_velocity_reward(1.5), task_id=7, dataset_id="test/cheetah/vel1.5-v0")
    rel.validate(check_checksums=False)
    a2 = np.sum(ds.actions.astype(np.float64) ** 2, axis=1)
    np.testing.assert_allclose(rel.rewards, -np.abs(raw["x_velocity"] - 1.5) - 0.05 * a2, rtol=1e-6, atol=1e-5)
    assert (rel.extra("task_id") == 7).all() and rel.metadata.dataset_id == "test/cheetah/vel1.5-v0"
    assert rel.metadata.recipe["reward"]["goal_velocity"] == 1.5
    # Pendulum data has no qpos: the error names what is missing.
    with pytest.raises(RelabelError, match="sim_state/qpos"):
        relabel_task(goal_dataset([3]), halfcheetah_velocity_reward(1.0), task_id=0)


def test_relabel_task_terminations_split_episodes():
    ds = goal_dataset([5, 4], [False, True])
    new_term = np.zeros(9, bool)
    new_term[2] = True  # inside episode 0; episode 1's stored termination is dropped

    rel = relabel_task(ds, lambda v: v.next_observations["achieved_goal"][:, 1].astype(float), task_id=1,
                       terminations_fn=lambda v: new_term)
    rel.validate(check_checksums=False)
    np.testing.assert_array_equal(rel.episode_lengths, [3, 2, 4])
    np.testing.assert_array_equal(rel.terminations, new_term)
    np.testing.assert_array_equal(np.flatnonzero(rel.truncations), [4, 8])
    np.testing.assert_array_equal(rel.final_observations["achieved_goal"], [[0, 3], [0, 5], [1, 4]])
    np.testing.assert_array_equal(rel.rewards, [1, 2, 3, 4, 5, 1, 2, 3, 4])
    np.testing.assert_array_equal(rel.episode_sources, [0, 0, 0])


# ---------------------------------------------------------------------- errors
def test_clear_errors():
    ds = goal_dataset([4])
    with pytest.raises(RelabelError, match="unknown goal strategies"):
        GoalSampler(ds, {"futur": 1.0})
    with pytest.raises(RelabelError, match="not all 0"):
        GoalSampler(ds, {"future": 0.0})
    with pytest.raises(RelabelError, match="gamma"):
        GoalSampler(ds, {"geometric": 1.0}, gamma=1.0)
    with pytest.raises(RelabelError, match="reward_fn"):
        GoalSampler(ds, {"future": 1.0}).relabel(np.arange(4))
    with pytest.raises(RelabelError, match=r"step indices"):
        GoalSampler(ds, {"future": 1.0}).sample_goals(np.array([4]))
    with pytest.raises(RelabelError, match="returned"):
        GoalSampler(ds, {"future": 1.0}, reward_fn=lambda a, d: (np.zeros(1), np.zeros(1))).relabel(np.arange(4))
    with tempfile.TemporaryDirectory() as tmp:
        plain, _ = rollout_dataset(Path(tmp) / "p.h5", "Pendulum-v1", 1, 5, lambda env: {})
    with pytest.raises(RelabelError, match="achieved_goal"):
        GoalSampler(plain, {"future": 1.0})
