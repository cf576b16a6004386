"""StitchGrid: the MDP arrays, the env, the exact solvers, the behaviour policies, the stitching
property of its medium data, and its catalogue cards."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import offbench  # noqa: F401  (registers the Gymnasium ids)
from offbench.behaviour import UniformRandomPolicy, make_policy
from offbench.data.catalogue import get_card
from offbench.data.dataset import read_dataset
from offbench.data.recipes import build_dataset
from offbench.envs.gridworld import (
    ACTION_NAMES, GOAL, HORIZON, N_ACTIONS, N_STATES, NE, ROUTE_A, ROUTE_B, S1, S3, S5, S7, S9, SE, STAY,
    EpsilonGreedyPolicy, StitchGridEnv, StitchGridRoutePolicy, default_mdp, expected_return, finite_horizon_value,
    next_cell, policy_evaluation, stitch_grid_mdp, uniform_policy_table, value_iteration)
from offbench.errors import OffbenchError

MDP = default_mdp()
CARD_IDS = [f"lite/stitchgrid/{n}-v0" for n in ("random", "medium", "expert", "medium-replay", "medium-expert")]


def greedy_path(actions: np.ndarray, start: int, horizon: int = HORIZON) -> list[int]:
    """Cells visited by a deterministic action table from ``start`` until the goal or the time limit."""
    path = [start]
    while len(path) <= horizon and path[-1] != GOAL:
        path.append(next_cell(path[-1], actions[path[-1]]))
    return path


def one_hot_table(actions: np.ndarray) -> np.ndarray:
    return np.eye(N_ACTIONS)[actions]


# ---------------------------------------------------------------------- MDP and env
def test_matrices_are_a_deterministic_mdp_with_an_absorbing_goal():
    P, R = MDP.P, MDP.R
    assert P.shape == (9, 9, 9) and R.shape == (9, 9)
    np.testing.assert_allclose(P.sum(axis=2), 1.0, atol=0)
    assert set(np.unique(P)) == {0.0, 1.0}  # deterministic
    assert np.flatnonzero(MDP.terminal).tolist() == [S9]
    assert np.all(P[S9, :, S9] == 1.0) and np.all(R[S9] == 0.0)  # absorbing, worthless
    # Walls keep you in place: N and NW from s1, and NE from s2 (off the grid in the row only).
    assert P[S1, 1, S1] == 1.0 and P[S1, 8, S1] == 1.0 and P[1, NE, 1] == 1.0
    # +1 exactly on the moves that enter the goal, -0.1 on every other move.
    enters_goal = P[:, :, S9].astype(bool) & ~MDP.terminal[:, None]
    assert enters_goal.sum() == 3  # s5 SE, s6 S, s8 E
    assert np.all(R[enters_goal] == 1.0) and np.all(R[~enters_goal & ~MDP.terminal[:, None]] == -0.1)
    np.testing.assert_allclose(MDP.start, [2 / 3, 0, 0, 0, 0, 0, 1 / 3, 0, 0])
    with pytest.raises(ValueError):  # the shared arrays are read-only
        MDP.P[0, 0, 0] = 0.5


@pytest.mark.parametrize("one_hot", [False, True])
def test_env_step_agrees_with_P_and_R_for_every_state_action(one_hot):
    env = StitchGridEnv(one_hot=one_hot)
    decode = (lambda o: int(np.argmax(o))) if one_hot else int
    for s in range(N_STATES):
        for a in range(N_ACTIONS):
            obs, _ = env.reset(seed=0, options={"state": s})
            assert decode(obs) == s
            obs, reward, terminated, truncated, _ = env.step(a)
            assert env.observation_space.contains(obs)
            assert decode(obs) == int(np.argmax(env.transition_matrix[s, a])), (s, ACTION_NAMES[a])
            assert reward == env.reward_matrix[s, a]
            assert terminated == (decode(obs) in env.terminal_states.tolist())
            assert truncated is False
    assert env.gamma == 0.99 and env.max_episode_steps == 10
    assert env.terminal_states.tolist() == [S9]


def test_time_limit_truncates_and_the_goal_terminates():
    env = StitchGridEnv()
    env.reset(options={"state": S1})
    flags = [env.step(STAY)[2:4] for _ in range(HORIZON)]
    assert flags[:-1] == [(False, False)] * (HORIZON - 1) and flags[-1] == (False, True)
    np.testing.assert_array_equal(env.state, [S1, S1, HORIZON])  # [cell, start cell, steps]
    env.reset(options={"state": S1})
    assert env.step(SE)[1:4] == (-0.1, False, False)
    assert env.step(SE)[1:4] == (1.0, True, False)
    # A shorter horizon through the registered id's kwargs.
    short = gym.make("offbench/StitchGrid-v0", horizon=3)
    short.reset(seed=0)
    assert [short.step(STAY)[3] for _ in range(3)] == [False, False, True]


def test_registered_ids_seeding_and_start_distribution():
    env = gym.make("offbench/StitchGrid-v0")
    hot = gym.make("offbench/StitchGridOneHot-v0")
    assert env.observation_space == gym.spaces.Discrete(9) and env.action_space == gym.spaces.Discrete(9)
    assert hot.observation_space.shape == (9,) and hot.observation_space.dtype == np.float32
    assert env.spec.kwargs == {"one_hot": False, "horizon": 10}
    starts = [env.reset(seed=i)[0] for i in range(3000)]
    assert starts == [env.reset(seed=i)[0] for i in range(3000)]  # seeded: reproducible
    assert set(starts) == {S1, S7}
    share = np.mean(np.asarray(starts) == S1)
    assert abs(share - 2 / 3) < 4 * np.sqrt(2 / 9 / 3000)
    obs, _ = hot.reset(seed=5)
    assert obs.sum() == 1.0 and int(np.argmax(obs)) == env.reset(seed=5)[0]


# ---------------------------------------------------------------------- exact solvers
def test_value_iteration_is_consistent_with_exact_policy_evaluation():
    V, Q, greedy = value_iteration(MDP.P, MDP.R, MDP.gamma, MDP.terminal)
    V_pe, Q_pe = policy_evaluation(MDP.P, MDP.R, MDP.gamma, MDP.terminal, one_hot_table(greedy))
    np.testing.assert_allclose(V_pe, V, atol=1e-9)
    np.testing.assert_allclose(Q_pe, Q, atol=1e-9)
    # Known values: one step from the goal is worth +1, two steps -0.1 + 0.99.
    np.testing.assert_allclose(V, [0.89, 0.89, 0.89, 0.89, 1, 1, 0.89, 1, 0], atol=1e-9)
    # The optimum from s1 goes through the shared middle state; from s7 the tie goes to s5 too.
    assert greedy_path(greedy, S1) == [S1, S5, S9]
    assert greedy_path(greedy, S7) == [S7, S5, S9]
    # Passing terminal states as indices gives the same answer; gamma = 1 is refused.
    assert np.array_equal(value_iteration(MDP.P, MDP.R, MDP.gamma, [S9])[2], greedy)
    with pytest.raises(OffbenchError, match="gamma"):
        value_iteration(MDP.P, MDP.R, 1.0, MDP.terminal)
    # The uniform policy: policy evaluation satisfies the Bellman equation.
    U = uniform_policy_table()
    V_u, Q_u = policy_evaluation(MDP.P, MDP.R, MDP.gamma, MDP.terminal, U)
    np.testing.assert_allclose(V_u, np.where(MDP.terminal, 0, (U * (MDP.R + MDP.gamma * MDP.P @ V_u)).sum(1)),
                               atol=1e-12)


def test_finite_horizon_values_and_reference_returns():
    _, _, greedy = value_iteration(MDP.P, MDP.R, MDP.gamma, MDP.terminal)
    # The finite-horizon optimum (a max at every step) equals the stationary greedy policy's return.
    V_opt, _ = finite_horizon_value(MDP.P, MDP.R, MDP.terminal, None, HORIZON, 1.0)
    assert MDP.start @ V_opt[0] == pytest.approx(0.9, abs=1e-12)
    assert expected_return(one_hot_table(greedy), HORIZON, 1.0) == pytest.approx(0.9, abs=1e-12)
    # Time-dependent tables are accepted and give the same answer as the stationary one.
    stacked = np.broadcast_to(uniform_policy_table(), (HORIZON, N_STATES, N_ACTIONS))
    assert expected_return(stacked) == expected_return(uniform_policy_table())
    # Staying put for the whole episode costs exactly 10 * 0.1 (undiscounted) and the
    # discounted geometric sum with gamma = 0.99.
    stay = one_hot_table(np.full(N_STATES, STAY))
    assert expected_return(stay) == pytest.approx(-1.0, abs=1e-12)
    assert expected_return(stay, gamma=0.99) == pytest.approx(-0.1 * (1 - 0.99**10) / 0.01, abs=1e-12)
    # Horizon 1: nobody reaches the goal in one step from s1 or s7.
    assert expected_return(one_hot_table(greedy), horizon=1) == pytest.approx(-0.1, abs=1e-12)


def test_route_a_without_noise_never_reaches_the_goal():
    assert greedy_path(ROUTE_A, S1) == [S1, S5] + [S3] * 9  # waits at s3 until the time limit
    assert greedy_path(ROUTE_B, S7) == [S7, S5, S9]
    assert S5 in greedy_path(ROUTE_A, S1) and S5 in greedy_path(ROUTE_B, S7)  # the shared state
    # Exactly: with reward = 1[goal] only, the time-limited value is the success probability.
    success = stitch_grid_mdp(step_cost=0.0)
    routes = StitchGridRoutePolicy(epsilon=0.0)
    assert routes.deterministic
    V_a, _ = finite_horizon_value(success.P, success.R, success.terminal, routes.action_probability_table(S1),
                                  HORIZON)
    V_b, _ = finite_horizon_value(success.P, success.R, success.terminal, routes.action_probability_table(S7),
                                  HORIZON)
    assert V_a[0, S1] == 0.0 and V_b[0, S7] == 1.0
    # With 10% noise route A succeeds rarely (1.34%), route B almost surely.
    noisy = StitchGridRoutePolicy(epsilon=0.1)
    assert expected_return(noisy, mdp=success, start_distribution=np.eye(9)[S1]) == pytest.approx(
        0.013377285112, abs=1e-10)
    assert expected_return(noisy, mdp=success, start_distribution=np.eye(9)[S7]) > 0.99999


def _rollout_returns(env, policy, episodes: int, seed: int, gamma: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty(episodes)
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        total, discount, done = 0.0, 1.0, False
        while not done:
            action, _ = policy.act(obs, rng)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += discount * reward
            discount *= gamma
            done = terminated or truncated
        out[i] = total
    return out


@pytest.mark.parametrize("kind,gamma", [("uniform_random", 1.0), ("stitchgrid_routes", 1.0),
                                        ("stitchgrid_optimal", 1.0), ("stitchgrid_routes", 0.99)])
def test_expected_return_matches_monte_carlo_rollouts(kind, gamma):
    env = gym.make("offbench/StitchGrid-v0")
    policy = make_policy({"kind": kind, "epsilon": 0.3} if kind != "uniform_random" else kind, env)
    exact = expected_return(uniform_policy_table() if kind == "uniform_random" else policy, HORIZON, gamma)
    returns = _rollout_returns(env, policy, episodes=3000, seed=123, gamma=gamma)
    stderr = returns.std(ddof=1) / np.sqrt(len(returns))
    assert abs(returns.mean() - exact) < 4 * stderr, (kind, returns.mean(), exact, stderr)
    assert 0 < stderr < 0.02  # a tight interval: the policies' exact values differ by far more


# ---------------------------------------------------------------------- behaviour policies
@pytest.mark.parametrize("kind", ["stitchgrid_routes", "stitchgrid_optimal"])
def test_log_probs_are_exact_and_frequencies_match(kind):
    env = gym.make("offbench/StitchGrid-v0")
    policy = make_policy({"kind": kind, "epsilon": 0.2}, env)
    assert policy.name == kind and not policy.deterministic and policy.epsilon == 0.2
    rng = np.random.default_rng(7)
    n = 6000
    for start in (S1, S7):
        env.reset(seed=0, options={"state": start})
        probs = policy.action_probabilities(S5)
        assert probs.shape == (N_ACTIONS,) and probs.sum() == pytest.approx(1.0, abs=1e-12)
        draws = [policy.act(S5, rng) for _ in range(n)]
        actions = np.array([a for a, _ in draws])
        for a, log_prob in draws[:200]:
            assert log_prob == pytest.approx(np.log(probs[a]), abs=1e-12)
        freq = np.bincount(actions, minlength=N_ACTIONS) / n
        assert np.all(np.abs(freq - probs) < 5 * np.sqrt(probs * (1 - probs) / n)), (freq, probs)
        # At s5 the preferred action carries 1 - eps + eps/9, the others eps/9.
        best = {"stitchgrid_routes": NE if start == S1 else SE, "stitchgrid_optimal": SE}[kind]
        assert probs[best] == pytest.approx(0.8 + 0.2 / 9) and np.sum(np.isclose(probs, 0.2 / 9)) == 8
    # One-hot observations give the same distribution as integer ones.
    assert np.array_equal(policy.action_probabilities(np.eye(9, dtype=np.float32)[S5], start_state=S1),
                          policy.action_probabilities(S5, start_state=S1))


def test_make_policy_specs_and_errors():
    env = gym.make("offbench/StitchGrid-v0")
    assert isinstance(make_policy("stitchgrid_routes", env), StitchGridRoutePolicy)
    assert make_policy("stitchgrid_optimal", env).epsilon == 0.1  # default epsilon
    assert isinstance(make_policy({"kind": "stitchgrid_optimal", "epsilon": 0.0}, env), EpsilonGreedyPolicy)
    assert isinstance(make_policy("uniform_random", env), UniformRandomPolicy)
    with pytest.raises(OffbenchError, match="takes only 'epsilon'"):
        make_policy({"kind": "stitchgrid_routes", "eps": 0.1}, env)
    with pytest.raises(OffbenchError, match=r"epsilon must be in \[0, 1\]"):
        make_policy({"kind": "stitchgrid_routes", "epsilon": 1.5}, env)
    with pytest.raises(OffbenchError, match="only works in offbench/StitchGrid"):
        make_policy("stitchgrid_routes", gym.make("CartPole-v1"))
    with pytest.raises(OffbenchError, match="depends on the episode's start state"):
        StitchGridRoutePolicy(epsilon=0.1).action_probabilities(S5)


# ---------------------------------------------------------------------- the stitching property
def _transitions(ds):
    return (ds.observations.astype(np.int64), ds.actions.astype(np.int64), ds.rewards.astype(np.float64),
            ds.next_observations.astype(np.int64), ds.terminations.astype(bool))


def tabular_fitted_q_iteration(ds, gamma: float, iterations: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Exact fitted Q iteration on the dataset alone: repeated Bellman backups over its transitions.

    Each backup sets Q(s, a) to the mean over the data's (s, a) transitions of
    r + gamma (1 - terminated) max_{a' seen at s'} Q(s', a'); pairs the data never tried stay
    at -inf (they are never chosen). Truncated steps bootstrap (they are not terminal).
    """
    s, a, r, s2, term = _transitions(ds)
    flat = s * N_ACTIONS + a
    counts = np.bincount(flat, minlength=N_STATES * N_ACTIONS).reshape(N_STATES, N_ACTIONS)
    seen = counts > 0
    Q = np.where(seen, 0.0, -np.inf)
    for _ in range(iterations):
        V = np.where(seen.any(axis=1), Q.max(axis=1), 0.0)
        target = r + gamma * (~term) * V[s2]
        sums = np.bincount(flat, weights=target, minlength=N_STATES * N_ACTIONS).reshape(N_STATES, N_ACTIONS)
        Q = np.where(seen, sums / np.maximum(counts, 1), -np.inf)
    return Q, seen


def test_medium_data_needs_stitching_q_learning_stitches_and_bc_does_not():
    ds = read_dataset(build_dataset("lite/stitchgrid/medium-v0", progress=False), validate=True)
    s, a, r, s2, term = _transitions(ds)
    assert np.all(s2 == np.array([next_cell(x, y) for x, y in zip(s, a)]))  # deterministic data
    # The data: s1-start episodes (route A) almost never reach s9; s7-start (route B) nearly always do.
    first = s[ds.episode_starts]
    success = ds.terminations[ds.episode_starts + ds.episode_lengths - 1]
    assert set(first.tolist()) == {S1, S7}
    assert success[first == S1].mean() < 0.05 and success[first == S7].mean() > 0.9
    counts = np.bincount(s * N_ACTIONS + a, minlength=81).reshape(9, 9)
    assert counts[S1, SE] > 500 and counts[S5, SE] > 300  # both halves of the stitched path are covered

    # Tabular BC: the most frequent action per state. At s5 route A (2/3 of the starts) wins clearly.
    bc = counts.argmax(axis=1)
    assert counts[S5, NE] > 1.5 * counts[S5, SE]
    bc_path = greedy_path(bc, S1)
    assert bc_path[:3] == [S1, S5, S3] and S9 not in bc_path
    assert S9 not in greedy_path(bc, S7)  # BC sends s7 starts to s3 too

    # Offline Q-learning on the same transitions joins s1 -> s5 (route A) and s5 -> s9 (route B).
    Q, seen = tabular_fitted_q_iteration(ds, gamma=0.99)
    q_path = greedy_path(Q.argmax(axis=1), S1)
    assert q_path == [S1, S5, S9]
    assert greedy_path(Q.argmax(axis=1), S7)[-1] == S9
    # On the actions the data covers, the deterministic data gives the true optimal Q (float32 rewards).
    _, Q_star, _ = value_iteration(MDP.P, MDP.R, MDP.gamma, MDP.terminal)
    assert Q[S1, SE] == pytest.approx(Q_star[S1, SE], abs=1e-6) == 0.89
    # Exact returns of the two greedy policies (undiscounted, with the time limit).
    assert expected_return(one_hot_table(bc)) == pytest.approx(-1.0, abs=1e-12)
    assert expected_return(one_hot_table(Q.argmax(axis=1))) == pytest.approx(0.9, abs=1e-12)


# ---------------------------------------------------------------------- cards
def test_cards_build_validate_and_record_exact_reference_scores():
    _, _, greedy = value_iteration(MDP.P, MDP.R, MDP.gamma, MDP.terminal)
    random_ref = expected_return(uniform_policy_table(), HORIZON, 1.0)
    expert_ref = expected_return(one_hot_table(greedy), HORIZON, 1.0)
    assert random_ref == pytest.approx(-0.653039277311, abs=1e-11)
    for dataset_id in CARD_IDS:
        card = get_card(dataset_id)
        # The cards store the values computed here; another CPU's BLAS may round the last bit
        # differently (CI computed 0.8999999999999999 for the 0.9 in the cards).
        assert card.reference_scores["random"] == pytest.approx(random_ref, abs=1e-12)
        assert card.reference_scores["expert"] == pytest.approx(expert_ref, abs=1e-12)
        # build_dataset also checks the file's content hash against the card's.
        ds = read_dataset(build_dataset(dataset_id, progress=False))
        ds.validate()
        assert ds.num_steps == card.size["steps"] and ds.num_episodes == card.size["episodes"]
        assert ds.episode_returns().mean() == pytest.approx(card.returns["mean"], abs=1e-9)
        assert ds.metadata.reference_scores == card.reference_scores
        assert ds.metadata.env_id == "offbench/StitchGrid-v0" and ds.observations.dtype == np.int64
        assert "behaviour_log_prob" in ds.arrays and "sim_state/state" in ds.arrays
        # sim_state/state = [cell, start cell, steps]: it agrees with the observations.
        assert np.array_equal(ds.sim_state["state"][:, 0].astype(np.int64), ds.observations)
    # The descriptions quote the behaviours' exact expected returns.
    assert f"{StitchGridRoutePolicy(epsilon=0.1).expected_return():.6f}" == "-0.358669"
    assert "-0.358669" in get_card("lite/stitchgrid/medium-v0").description
    expert_return = f"{EpsilonGreedyPolicy(epsilon=0.1).expected_return():.6f}"
    assert expert_return == "0.874544" and expert_return in get_card("lite/stitchgrid/expert-v0").description
    medium = read_dataset(build_dataset("lite/stitchgrid/medium-v0", progress=False))
    # The stored log-probs are exactly the route policy's, recomputed from (cell, start cell).
    routes = StitchGridRoutePolicy(epsilon=0.1)
    cell, start = (medium.sim_state["state"][:, i].astype(np.int64) for i in (0, 1))
    expected = [np.log(routes.action_probabilities(c, start_state=s0)[act])
                for c, s0, act in zip(cell, start, medium.actions)]
    np.testing.assert_allclose(medium.extra("behaviour_log_prob"), expected, atol=1e-12)
    mixed = read_dataset(build_dataset("lite/stitchgrid/medium-expert-v0", progress=False))
    assert mixed.num_steps == 20_000
    assert [p["name"] for p in mixed.metadata.behaviour_policies] == ["stitchgrid_routes", "stitchgrid_optimal"]
    replay = read_dataset(build_dataset("lite/stitchgrid/medium-replay-v0", progress=False))
    sources = {src["mixed_from"] for src in replay.metadata.sources}
    assert sources == {"lite/stitchgrid/random-v0", "lite/stitchgrid/medium-v0"}
    # Half the steps from each source (whole episodes, so slightly over 5,000 each).
    steps_per_source = np.bincount(replay.episode_sources, weights=replay.episode_lengths)
    assert np.all((steps_per_source >= 5000) & (steps_per_source < 5010))
