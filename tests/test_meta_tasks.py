"""Meta-RL task families (issue 17): the task API and trials, each family's rules, and the exact
references checked against independent computations and published numbers."""
from __future__ import annotations

from fractions import Fraction

import gymnasium as gym
import numpy as np
import pytest

import offbench.envs.meta as meta
from offbench.envs.meta import MetaTrial, make_trial_env
from offbench.envs.meta.bandit_references import (RL2_TABLE1, RL2_TRIALS, TUNED, bayes_optimal_value, evaluate,
                                                  random_expected_total)
from offbench.envs.meta.bandits import BernoulliBanditEnv
from offbench.envs.meta.gittins import gittins_index, gittins_table
from offbench.envs.meta.gridnavi import GridNaviEnv, candidate_goals, move
from offbench.envs.meta.gridnavi_bayes import solve_bayes_optimal
from offbench.envs.meta.metrics import (adaptation_curve, bandit_bayes_regret, bayes_regret, cumulative_regret,
                                        gridnavi_bayes_regret, split_episodes)
from offbench.envs.meta.point_robot import PointRobotEnv, oracle_return
from offbench.envs.meta.sign_grid import SignGridEnv, SignGridLayout, solve_optimal
from offbench.errors import OffbenchError

LIGHT_IDS = [i for i in meta.ENV_IDS if "HalfCheetahVel" not in i]
FAMILY_IDS = [i for i in meta.ENV_IDS if not i.endswith("Oracle-v0")]  # the oracle's view draws a task per episode


def same_task(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


# ---------------------------------------------------------------------- the task API
@pytest.mark.parametrize("env_id", meta.ENV_IDS)
def test_task_sampling_is_seeded_and_independent_of_the_env_state(env_id):
    env = gym.make(env_id).unwrapped
    first = env.sample_tasks(5, seed=3)
    env.reset(seed=11)
    env.step(env.action_space.sample())
    again = env.sample_tasks(5, seed=3)
    other = env.sample_tasks(5, seed=4)
    assert all(same_task(a, b) for a, b in zip(first, again))
    assert not all(same_task(a, b) for a, b in zip(first, other))
    assert len({repr(t) for t in first}) > 1  # five draws, not one task repeated


@pytest.mark.parametrize("env_id", FAMILY_IDS)
def test_the_task_is_recorded_with_every_reset_and_step_and_persists_across_episodes(env_id):
    env = gym.make(env_id).unwrapped
    task = env.sample_tasks(1, seed=0)[0]
    env.set_task(task)
    _, info = env.reset(seed=0)
    assert same_task(info["task"], task) and same_task(env.get_task(), task)
    for _ in range(3):
        _, _, _, _, info = env.step(env.action_space.sample())
        assert same_task(info["task"], task)
    _, info = env.reset()  # a second episode: same task
    assert same_task(info["task"], task)
    new = env.sample_tasks(1, seed=1)[0]
    _, info = env.reset(options={"task": new})
    assert same_task(info["task"], new)


@pytest.mark.parametrize("env_id, bad, message", [
    ("offbench/GridNavi-v0", {"goal": [1, 1]}, "not a candidate"),
    ("offbench/GridNavi-v0", {"goal": [1, 2, 3]}, "shape"),
    ("offbench/GridNavi-v0", {"target": [3, 3]}, "no 'goal'"),
    ("offbench/BernoulliBandit-v0", {"means": [0.5] * 9 + [1.5]}, "[0, 1]"),
    ("offbench/SignGrid-v0", {"goal": 4}, "0..3"),
    ("offbench/PointRobot-v0", {"goal": [np.nan, 0.0]}, "finite"),
    ("offbench/HalfCheetahVel-v0", {"velocity": 3.5}, "outside"),
])
def test_bad_tasks_are_refused_with_the_field_named(env_id, bad, message):
    env = gym.make(env_id).unwrapped
    with pytest.raises(OffbenchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        env.set_task(bad)


def test_bad_task_counts_and_seeds_are_refused():
    env = GridNaviEnv()
    for n, seed in ((0, 0), (2.5, 0), (True, 0), (3, -1), (3, "a")):
        with pytest.raises(OffbenchError):
            env.sample_tasks(n, seed)
    with pytest.raises(OffbenchError, match="reset"):
        GridNaviEnv().step(0)


def test_a_trial_is_several_episodes_of_one_task_then_a_new_task():
    env = make_trial_env("offbench/GridNavi-v0", 4)
    obs, info = env.reset(seed=5)
    task, rewards, done_flags, episodes = info["task"], [], [], []
    while True:
        obs, reward, terminated, truncated, info = env.step(2)  # walk right
        rewards.append(reward), done_flags.append(info["episode_done"]), episodes.append(info["episode"])
        assert same_task(info["task"], task)
        if terminated or truncated:
            break
    assert terminated and not truncated and len(rewards) == 60
    assert np.flatnonzero(done_flags).tolist() == [14, 29, 44, 59]
    # info["episode"]: the episode the returned observation belongs to (the next one after an end)
    assert episodes[:14] == [0] * 14 and episodes[14] == 1 and episodes[-1] == 3
    # inner episodes restart at (0, 0), so walking right earns the same in each of them
    np.testing.assert_allclose(split_episodes(rewards, done_flags), [sum(rewards[:15])] * 4)
    seen = {repr(env.reset()[1]["task"]["goal"].tolist()) for _ in range(30)}
    assert len(seen) > 5  # each trial draws a task
    again = make_trial_env("offbench/GridNavi-v0", 4)
    assert same_task(again.reset(seed=5)[1]["task"], task)  # seeded trials repeat


def test_a_trial_draws_from_a_given_task_list_and_refuses_bad_lists():
    tasks = [{"goal": [4, 4]}, {"goal": [2, 0]}]
    env = MetaTrial(GridNaviEnv(), 2, tasks=tasks)
    goals = {tuple(env.reset(seed=s)[1]["task"]["goal"].tolist()) for s in range(20)}
    assert goals == {(4, 4), (2, 0)}
    with pytest.raises(OffbenchError, match="not a candidate"):
        MetaTrial(GridNaviEnv(), 2, tasks=[{"goal": [0, 0]}])
    with pytest.raises(OffbenchError, match="meta-RL family"):
        MetaTrial(gym.make("CartPole-v1"), 2)


# ---------------------------------------------------------------------- bandits
def test_bandit_rewards_follow_the_arm_means_and_the_episode_has_n_pulls():
    env = BernoulliBanditEnv(arms=3, pulls=400)
    env.reset(seed=0, options={"task": {"means": [0.0, 1.0, 0.3]}})
    assert [env.step(0)[1] for _ in range(5)] == [0.0] * 5
    assert [env.step(1)[1] for _ in range(5)] == [1.0] * 5
    draws = [env.step(2) for _ in range(390)]
    wins = sum(d[1] for d in draws)
    assert 0.3 * 390 - 4 * np.sqrt(390 * 0.21) < wins < 0.3 * 390 + 4 * np.sqrt(390 * 0.21)
    assert not any(d[3] for d in draws[:-1]) and draws[-1][3]  # truncated exactly at pull 400


# The published table: Gittins indices of a Bernoulli arm under a uniform prior, as printed in
# Christian & Griffiths (2016), "Algorithms to Live By", ch. 2 (tables for discount 0.9 and
# 0.99, indexed by a wins-losses record, so w-l is Beta(w + 1, l + 1)): discount 0.9: 0-0
# 0.7029, 1-1 0.6346, 2-2 0.6010, 9-1 0.8695; discount 0.99: 0-0 0.8699. (Bernoulli/Beta index
# tables go back to Gittins 1979 and Gittins, Glazebrook & Weber 2011.)
@pytest.mark.parametrize("a, b, gamma, published", [
    (1, 1, 0.9, 0.7029), (2, 2, 0.9, 0.6346), (3, 3, 0.9, 0.6010), (10, 2, 0.9, 0.8695), (1, 1, 0.99, 0.8699)])
def test_gittins_indices_match_the_published_table(a, b, gamma, published):
    assert gittins_index(a, b, gamma, tol=1e-6) == pytest.approx(published, abs=5e-5)


def test_the_gittins_table_agrees_with_single_state_calibration_within_its_error_bounds():
    table = gittins_table(6, 0.9)
    for j in range(7):
        for i in range(j + 1):
            exact = gittins_index(1 + i, 1 + j - i, 0.9, tol=1e-8)
            assert abs(table.index[j, i] - exact) <= table.error[j, i] + 1e-8
    assert np.nanmax(table.error) < 1e-4
    # the index exceeds the posterior mean (the exploration bonus) and falls as evidence accumulates
    assert table.index[0, 0] > 0.5 and table.index[2, 1] < table.index[0, 0]
    with pytest.raises(OffbenchError, match="discount"):
        gittins_index(1, 1, 1.0)


def brute_force_bandit_value(arms: int, pulls: int) -> Fraction:
    """Expectimax over full histories: per-arm counts kept in arm order (no symmetry used)."""
    def value(counts: tuple, remaining: int) -> Fraction:
        if remaining == 0:
            return Fraction(0)
        best = None
        for i, (s, f) in enumerate(counts):
            p = Fraction(s + 1, s + f + 2)
            win = counts[:i] + ((s + 1, f),) + counts[i + 1:]
            lose = counts[:i] + ((s, f + 1),) + counts[i + 1:]
            v = p * (1 + value(win, remaining - 1)) + (1 - p) * value(lose, remaining - 1)
            best = v if best is None else max(best, v)
        return best
    return value(((0, 0),) * arms, pulls)


@pytest.mark.parametrize("arms, pulls", [(1, 3), (2, 2), (2, 5), (3, 4)])
def test_bandit_bayes_optimal_value_equals_brute_force_expectimax(arms, pulls):
    assert bayes_optimal_value(arms, pulls) == pytest.approx(float(brute_force_bandit_value(arms, pulls)), abs=1e-12)


def test_bandit_bayes_optimal_value_by_hand_and_its_limits():
    # k = 2, n = 2: pull one arm (1/2); stay after a win (2/3), switch after a loss (1/2).
    assert bayes_optimal_value(2, 2) == pytest.approx(0.5 + 0.5 * 2 / 3 + 0.5 * 0.5)
    # with n pulls at most n arms are ever tried, so any k >= n gives the same value
    assert bayes_optimal_value(10, 10) == pytest.approx(bayes_optimal_value(50, 10))
    with pytest.raises(OffbenchError, match="short horizons"):
        bayes_optimal_value(10, 100, max_states=10_000)


def within_monte_carlo(ours, paper: float, trials_paper: int = RL2_TRIALS) -> bool:
    """|ours - paper| within 3 combined standard errors (the paper's from our spread and its
    1000 trials) plus its rounding to 0.1."""
    se = np.sqrt(ours.stderr ** 2 + ours.totals.var(ddof=1) / trials_paper)
    return abs(ours.mean - paper) <= 3 * se + 0.05


@pytest.mark.parametrize("pulls, arms", [(10, 5), (100, 10)])
@pytest.mark.parametrize("strategy", ["random", "ucb1", "thompson", "gittins"])
def test_references_reproduce_rl2_table_1(pulls, arms, strategy):
    result = evaluate(strategy, arms, pulls, 2000, seed=0)
    assert within_monte_carlo(result, RL2_TABLE1[(pulls, arms)][strategy]), (result.mean, result.stderr)
    if pulls == 10:  # nothing beats the Bayes-optimal value in expectation
        assert result.mean <= bayes_optimal_value(arms, pulls) + 3 * result.stderr


def test_random_strategy_expectation_and_reference_parameters():
    assert random_expected_total(100) == 50.0
    result = evaluate("random", 10, 100, 2000, seed=1)
    assert abs(result.mean - 50.0) < 3 * result.stderr
    assert set(TUNED) == set(RL2_TABLE1)
    with pytest.raises(OffbenchError, match="unknown bandit strategy"):
        evaluate("exp3", 10, 100, 10, seed=0)
    with pytest.raises(OffbenchError, match="no tuned value"):
        evaluate("ucb1", 3, 7, 10, seed=0)


# ---------------------------------------------------------------------- GridNavi
def test_gridnavi_steps_follow_the_rules_for_every_cell_action_and_goal():
    env = GridNaviEnv()
    assert len(env.goals) == 21 and (0, 0) not in env.goals and (1, 1) not in env.goals
    for goal in [(4, 4), (2, 0), (0, 2)]:
        for x in range(5):
            for y in range(5):
                for a in range(5):
                    env.reset(options={"task": {"goal": goal}})
                    env._cell = (x, y)  # place the agent (the test's own access)
                    obs, reward, terminated, truncated, _ = env.step(a)
                    expected = move((x, y), a)
                    assert tuple(obs.astype(int)) == expected and not terminated and not truncated
                    assert reward == (1.0 if expected == goal else -0.1)


def test_gridnavi_known_goal_optimum_is_16_1_minus_1_1_d():
    env = GridNaviEnv()
    returns = []
    for goal in env.goals:
        env.reset(options={"task": {"goal": goal}})
        total, done = 0.0, False
        while not done:  # walk right, then up, then stay
            a = 2 if env._cell[0] < goal[0] else 1 if env._cell[1] < goal[1] else 0
            _, r, _, done, _ = env.step(a)
            total += r
        assert total == pytest.approx(16.1 - 1.1 * (goal[0] + goal[1]))
        returns.append(total)
    assert np.mean(returns) == pytest.approx(11.0714, abs=1e-4)  # REFERENCE section 8: 11.07


def brute_force_gridnavi(width: int, height: int, length: int, episodes: int) -> Fraction:
    """Exhaustive expectimax over action-observation histories, stepping the raw rules for
    every goal still consistent with the history (no belief structure, no closed forms)."""
    goals = candidate_goals(width, height)

    def value(e: int, t: int, cell, consistent: tuple) -> Fraction:
        if t == length:
            return value(e + 1, 0, (0, 0), consistent) if e + 1 < episodes else Fraction(0)
        best = None
        for a in range(5):
            nxt = move(cell, a, width, height)
            outcomes: dict[int, list] = {}
            for g in consistent:  # group the consistent goals by the reward they would give
                outcomes.setdefault(10 if nxt == g else -1, []).append(g)
            v = sum(Fraction(len(gs), len(consistent)) * (Fraction(r, 10) + value(e, t + 1, nxt, tuple(gs)))
                    for r, gs in outcomes.items())
            best = v if best is None else max(best, v)
        return best
    return value(0, 0, (0, 0), tuple(goals))


@pytest.mark.parametrize("width, height, length, episodes", [(3, 3, 3, 2), (3, 2, 2, 3), (3, 3, 6, 1), (4, 3, 3, 2)])
def test_gridnavi_bayes_dp_equals_brute_force_on_small_grids(width, height, length, episodes):
    solution = solve_bayes_optimal(width, height, length, episodes)
    assert solution.value == brute_force_gridnavi(width, height, length, episodes)


@pytest.fixture(scope="module")
def varibad_solution():
    return solve_bayes_optimal()  # 5x5, 15 steps x 4 episodes


def test_gridnavi_bayes_optimal_value_on_varibads_grid(varibad_solution):
    assert varibad_solution.value == Fraction(521, 14)  # 37.2142857...
    # all the search is paid for in the first episode; later episodes reach the known-goal optimum
    np.testing.assert_allclose(varibad_solution.episode_values, [4.0, 11.0714285714, 11.0714285714, 11.0714285714])


def test_the_bayes_optimal_plan_earns_its_value_in_the_environment(varibad_solution):
    sol = varibad_solution
    env = MetaTrial(GridNaviEnv(), 4)
    returns = []
    for goal, expected in zip(sol.goals, sol.returns):
        obs, info = env.reset(seed=0, options={"task": {"goal": goal}})
        found, total, step = None, 0.0, 0
        while True:
            cell = tuple(int(v) for v in obs)
            obs, reward, terminated, _, info = env.step(sol.action(info["episode"], step, cell, found))
            total += reward
            step = 0 if info["episode_done"] else step + 1
            if reward > 0 and found is None:  # +1: the agent stands on the goal
                found = tuple(int(v) for v in info.get("episode_final_observation", obs))
                assert found == goal
            if terminated:
                break
        assert total == pytest.approx(float(expected), abs=1e-9)
        returns.append(total)
    assert np.mean(returns) == pytest.approx(521 / 14, abs=1e-9)


# ---------------------------------------------------------------------- SignGrid
def test_signgrid_rules():
    env = SignGridEnv()
    obs, _ = env.reset(seed=0, options={"task": {"goal": 2}})
    assert obs.tolist() == [2, 2, 0, 0, 0, 0]
    env.step(3)
    obs, reward, terminated, _, _ = env.step(3)  # onto the sign at (2, 0)
    assert obs.tolist() == [2, 0, 0, 0, 1, 0] and reward == pytest.approx(-0.1) and not terminated
    obs, _, _, _, _ = env.step(2)  # off the sign: it shows nothing
    assert obs[2:].tolist() == [0, 0, 0, 0]
    obs, reward, terminated, _, _ = env.step(2)  # (4, 0) is goal 2
    assert reward == 1.0 and terminated
    env.reset(options={"task": {"goal": 2}})
    for a in (4, 4, 3, 3):  # to (0, 0), goal 0: the wrong corner
        _, reward, terminated, _, _ = env.step(a)
    assert reward == -1.0 and terminated
    env.reset()
    for _ in range(19):
        assert not env.step(0)[3]
    assert env.step(0)[3]  # truncated after 20 steps
    with pytest.raises(OffbenchError, match="distinct"):
        SignGridLayout(sign=(2, 2))


def brute_force_signgrid(lay: SignGridLayout, episodes: int) -> Fraction:
    """Expectimax over histories for SignGrid, grouping consistent goals by what they would show."""
    def value(e: int, t: int, cell, consistent: tuple) -> Fraction:
        if t == lay.episode_length:
            return value(e + 1, 0, lay.start, consistent) if e + 1 < episodes else Fraction(0)
        best = None
        for a in range(5):
            nxt = lay.move(cell, a)
            groups: dict[tuple, list] = {}
            for j in consistent:
                goal = lay.goals[j]
                reward = 10 if nxt == goal else -10 if nxt in lay.goals else -1
                seen = j if nxt == lay.sign else None
                groups.setdefault((reward, seen), []).append(j)
            v = Fraction(0)
            for (reward, _), js in groups.items():
                p = Fraction(len(js), len(consistent))
                if nxt in lay.goals:
                    future = value(e + 1, 0, lay.start, tuple(js)) if e + 1 < episodes else Fraction(0)
                else:
                    future = value(e, t + 1, nxt, tuple(js))
                v += p * (Fraction(reward, 10) + future)
            best = v if best is None else max(best, v)
        return best
    return value(0, 0, lay.start, tuple(range(len(lay.goals))))


def test_signgrid_optimum_equals_brute_force_on_a_small_layout():
    small = dict(width=3, height=3, start=(1, 1), sign=(1, 0), goals=((0, 2), (2, 2), (0, 0)), episode_length=3)
    lay = SignGridLayout(**small)
    for episodes in (1, 2):
        assert solve_optimal(episodes, **small).value == brute_force_signgrid(lay, episodes)


def test_signgrid_optimum_and_its_policy_in_the_environment():
    with_sign, without = solve_optimal(2), solve_optimal(2, use_sign=False)
    assert with_sign.value == Fraction(6, 5) and without.value == Fraction(-11, 10)
    assert solve_optimal(1).value == Fraction(1, 2) and solve_optimal(1, use_sign=False).value == Fraction(-4, 5)
    env = MetaTrial(SignGridEnv(), 2)
    totals = []
    for goal in range(4):
        obs, info = env.reset(seed=0, options={"task": {"goal": goal}})
        consistent, total, step = frozenset(range(4)), 0.0, 0
        while True:
            cell = (int(obs[0]), int(obs[1]))
            if obs[2:].any():
                consistent = frozenset([int(np.argmax(obs[2:]))])
            nxt = SignGridLayout().move(cell, action := with_sign.action(info["episode"], step, cell, consistent))
            obs, reward, terminated, _, info = env.step(action)
            if reward == -1.0:  # a wrong corner rules that goal out
                consistent = consistent - {SignGridLayout().goals.index(nxt)}
            total += reward
            step = 0 if info["episode_done"] else step + 1
            if terminated:
                break
        totals.append(total)
    assert np.mean(totals) == pytest.approx(1.2, abs=1e-9)


# ---------------------------------------------------------------------- point robot
def test_point_robot_dense_and_sparse_rules():
    dense = PointRobotEnv()
    obs, info = dense.reset(seed=3, options={"task": {"goal": [0.5, -0.5]}})
    assert np.all(np.abs(obs) <= 1) and not np.allclose(obs, 0)  # PEARL: a random start in [-1, 1]^2
    obs2, reward, _, _, info = dense.step([0.5, -0.02])  # x clipped to 0.1
    np.testing.assert_allclose(obs2, obs + np.array([0.1, -0.02], np.float32), atol=1e-6)
    assert reward == pytest.approx(-np.linalg.norm(obs2.astype(np.float64) - [0.5, -0.5]), abs=1e-6)
    sparse = PointRobotEnv(sparse=True)
    obs, _ = sparse.reset(seed=0, options={"task": {"goal": [0.0, 0.15]}})
    assert obs.tolist() == [0.0, 0.0]
    _, r_in, _, _, info = sparse.step([0.0, 0.0])  # distance 0.15 <= 0.2
    assert r_in == pytest.approx(0.85) and info["dense_reward"] == pytest.approx(-0.15)
    sparse.set_task({"goal": [0.0, 1.0]})
    sparse.reset()
    _, r_out, _, truncated, _ = sparse.step([0.0, 0.0])
    assert r_out == 0.0 and not truncated
    assert all(sparse.step([0, 0])[3] == (i == 18) for i in range(19))  # 20-step episodes
    goals = np.array([t["goal"] for t in sparse.sample_tasks(200, seed=0)])
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), 1.0)
    assert goals[:, 1].min() >= 0  # the upper half circle


@pytest.mark.parametrize("sparse", [False, True])
def test_point_robot_oracle_is_the_closest_point_at_every_step(sparse):
    rng = np.random.default_rng(0)
    env = PointRobotEnv(sparse=sparse)
    for task in env.sample_tasks(5, seed=1):
        _, info = env.reset(seed=int(rng.integers(1000)), options={"task": task})
        start, goal = info["start"], task["goal"]
        greedy = [np.linalg.norm(start + np.clip(goal - start, -0.1 * t, 0.1 * t) - goal) for t in range(1, 21)]
        for _ in range(20):  # any policy is at least as far from the goal at every step
            pos = start.copy()
            for t in range(20):
                pos = pos + np.clip(rng.uniform(-0.15, 0.15, 2) + 0.05 * np.sign(goal - pos), -0.1, 0.1)
                assert np.linalg.norm(pos - goal) >= greedy[t] - 1e-12
        total = 0.0
        env.reset(options={"task": task})
        env._position = start.copy()  # same start as the oracle's
        for _ in range(20):
            total += env.step(np.clip(goal - env._position, -0.1, 0.1))[1]
        assert total == pytest.approx(oracle_return(goal, start, sparse=sparse), abs=1e-5)


# ---------------------------------------------------------------------- HalfCheetahVel
def test_cheetah_vel_reward_is_minus_velocity_error_minus_control_cost():
    env = gym.make("offbench/HalfCheetahVel-v0", episode_length=6).unwrapped
    assert gym.make("offbench/HalfCheetahVel-v0").unwrapped.episode_length == 200
    env.reset(seed=0, options={"task": {"velocity": 1.5}})
    rng = np.random.default_rng(0)
    for i in range(6):
        x_before = env.data.qpos[0]
        action = rng.uniform(-1, 1, 6)
        _, reward, terminated, truncated, info = env.step(action)
        velocity = (env.data.qpos[0] - x_before) / env.dt
        assert reward == pytest.approx(-abs(velocity - 1.5) - 0.05 * np.sum(action ** 2), abs=1e-9)
        assert not terminated and truncated == (i == 5)
    speeds = [t["velocity"] for t in env.sample_tasks(500, seed=0)]
    assert 0 <= min(speeds) < 0.1 and 2.9 < max(speeds) <= 3.0


def test_cheetah_vel_oracle_observes_the_task_and_draws_one_per_episode_from_its_seeded_stream():
    """offbench/HalfCheetahVelOracle-v0: the family's dynamics and reward, the target velocity as
    the 18th observation, a new task at every reset from np_random (so the same seed gives the
    same tasks, and restoring np_random's state, as an online run's resume does, repeats them),
    and a task given in options honoured."""
    oracle = gym.make("offbench/HalfCheetahVelOracle-v0", episode_length=5).unwrapped
    plain = gym.make("offbench/HalfCheetahVel-v0", episode_length=5).unwrapped
    assert oracle.observation_space.shape == (18,)
    obs, info = oracle.reset(seed=4)
    tasks = [info["task"]["velocity"]]
    assert obs[-1] == tasks[0]
    state = oracle.np_random.bit_generator.state
    for _ in range(2):
        obs, info = oracle.reset()
        tasks.append(info["task"]["velocity"])
        assert obs[-1] == tasks[-1]
    assert len(set(tasks)) == 3
    oracle.np_random.bit_generator.state = state  # a resume restores the stream: the same next task
    assert oracle.reset()[1]["task"]["velocity"] == tasks[1]
    twin = gym.make("offbench/HalfCheetahVelOracle-v0").unwrapped
    assert twin.reset(seed=4)[1]["task"]["velocity"] == tasks[0]
    # a given task: the plain family's observations (plus the velocity) and rewards, step for step
    obs, _ = oracle.reset(seed=0, options={"task": {"velocity": 2.5}})
    ref, _ = plain.reset(seed=0, options={"task": {"velocity": 2.5}})
    np.testing.assert_array_equal(obs, np.append(ref, 2.5))
    for action in np.random.default_rng(0).uniform(-1, 1, (5, 6)):
        obs, reward, _, truncated, _ = oracle.step(action)
        ref, ref_reward, _, ref_truncated, _ = plain.step(action)
        np.testing.assert_array_equal(obs[:-1], ref)
        assert reward == ref_reward and truncated == ref_truncated
    with pytest.raises(OffbenchError, match="oracle"):
        gym.make("offbench/HalfCheetahVelOracle-v0", oracle="yes")


# ---------------------------------------------------------------------- metrics
def test_split_episodes_and_adaptation_curve():
    rewards = [1, 2, 3, -1, 0.5, 0.5]
    done = [False, False, True, True, False, True]
    np.testing.assert_allclose(split_episodes(rewards, done), [6.0, -1.0, 1.0])
    with pytest.raises(OffbenchError, match="incomplete"):
        split_episodes([1, 2], [True, False])
    mean, stderr = adaptation_curve([[1.0, 3.0], [3.0, 5.0]])
    np.testing.assert_allclose(mean, [2.0, 4.0])
    np.testing.assert_allclose(stderr, [1.0, 1.0])


def test_regret_against_exact_bayes_values():
    regret = bayes_regret([[1.0, 2.0], [0.0, 1.0]], 4.0)
    np.testing.assert_allclose(regret.per_trial, [1.0, 3.0])
    assert regret.mean == 2.0
    np.testing.assert_allclose(cumulative_regret([[1.0, 2.0]], [2.0, 2.0]), [[1.0, 1.0]])
    small = gridnavi_bayes_regret([[0.5, 0.5]], width=3, height=3, episode_length=3)  # V* = 69/50
    assert small.reference == pytest.approx(1.38) and small.mean == pytest.approx(0.38)
    bandit = bandit_bayes_regret([1.0, 2.0], arms=2, pulls=2)  # V* = 13/12
    np.testing.assert_allclose(bandit.per_trial, [13 / 12 - 1, 13 / 12 - 2])
    with pytest.raises(OffbenchError):
        bandit_bayes_regret(np.zeros((2, 3)), arms=2, pulls=2)
