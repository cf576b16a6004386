"""Off-policy estimators against exact truths: StitchGrid values by dynamic programming and a
one-step continuous bandit with a closed-form value (docs/off-policy-evaluation.md)."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from offbench.data.dataset import Dataset, DatasetMetadata
from offbench.envs.gridworld import (
    COLS, HORIZON, N_ACTIONS, N_STATES, EpsilonGreedyPolicy, StitchGridRoutePolicy, default_mdp, expected_return,
    finite_horizon_value, policy_evaluation, uniform_policy_table,
)
from offbench.errors import OffbenchError
from offbench.evaluation import ope

torch.set_num_threads(1)
MDP = default_mdp()
NEXT = MDP.P.argmax(axis=2)  # deterministic successor [S, A]
BEHAVIOUR = EpsilonGreedyPolicy(epsilon=0.5).action_probability_table()  # Markov, covers every action
TARGET = ope.TabularPolicy(EpsilonGreedyPolicy(epsilon=0.2).action_probability_table(), "eps0.2")
GOOD = ope.TabularPolicy(EpsilonGreedyPolicy(epsilon=0.1).action_probability_table(), "good")
BAD = ope.TabularPolicy(uniform_policy_table(), "bad")


# ---------------------------------------------------------------------- data
def table_behaviour(table):
    return lambda s, s0: table[s]


def route_behaviour(epsilon):
    routes = StitchGridRoutePolicy(epsilon=epsilon)
    a, b = routes.action_probability_table(0), routes.action_probability_table(6)
    return lambda s, s0: np.where((s0 < COLS)[:, None], a[s], b[s])


def sample_grid(behaviour, n_episodes: int, seed: int, *, one_hot: bool = False, log_probs: bool = True) -> Dataset:
    """StitchGrid episodes of a behaviour ``(states, start_states) -> probs [B, A]``, all episodes
    stepped at once with the MDP's own matrices (same dynamics as the env), as an in-memory Dataset."""
    rng = np.random.default_rng(seed)
    s0 = rng.choice(N_STATES, size=n_episodes, p=MDP.start)
    s, running = s0.copy(), np.ones(n_episodes, bool)
    S = np.zeros((n_episodes, HORIZON + 1), np.int64)
    A = np.zeros((n_episodes, HORIZON), np.int64)
    R, LP = np.zeros((n_episodes, HORIZON)), np.zeros((n_episodes, HORIZON))
    term = np.zeros((n_episodes, HORIZON), bool)
    lengths = np.full(n_episodes, HORIZON)
    S[:, 0] = s
    for t in range(HORIZON):
        probs = behaviour(s, s0)
        a = np.minimum((rng.random(n_episodes)[:, None] >= probs.cumsum(1)).sum(1), N_ACTIONS - 1)
        A[:, t], R[:, t], LP[:, t] = a, MDP.R[s, a], np.log(probs[np.arange(n_episodes), a])
        s2 = NEXT[s, a]
        term[:, t] = MDP.terminal[s2] & running
        S[:, t + 1] = np.where(running, s2, S[:, t])
        lengths[running & MDP.terminal[s2]] = t + 1
        running &= ~MDP.terminal[s2]
        s = np.where(running, s2, s)
    mask = np.arange(HORIZON)[None] < lengths[:, None]
    last = np.arange(n_episodes), lengths - 1
    trunc = np.zeros_like(term)
    trunc[last] = ~term[last]
    obs, final = S[:, :HORIZON][mask], S[np.arange(n_episodes), lengths]
    if one_hot:
        eye = np.eye(N_STATES, dtype=np.float32)
        obs, final = eye[obs], eye[final]
        space, env_id = gym.spaces.Box(0.0, 1.0, (N_STATES,), np.float32), "offbench/StitchGridOneHot-v0"
    else:
        space, env_id = gym.spaces.Discrete(N_STATES), "offbench/StitchGrid-v0"
    arrays = {"observations": obs, "actions": A[mask], "rewards": R[mask].astype(np.float32),
              "terminations": term[mask], "truncations": trunc[mask],
              "episodes/start": np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64),
              "episodes/length": lengths.astype(np.int64), "episodes/source": np.zeros(n_episodes, np.int32),
              "episodes/final/observations": final}
    if log_probs:
        arrays["behaviour_log_prob"] = LP[mask]
    meta = DatasetMetadata(dataset_id="lite/stitchgrid/ope-test-v0", env_id=env_id, observation_space=space,
                           action_space=gym.spaces.Discrete(N_ACTIONS))
    return Dataset(arrays, meta)


def empirical_start(ds: Dataset) -> np.ndarray:
    starts = ope.tabular_states(ds)[0][ds.episode_starts]
    return np.bincount(starts, minlength=N_STATES) / ds.num_episodes


def truth(policy: ope.TabularPolicy, gamma: float = 1.0) -> float:
    return expected_return(policy.table, HORIZON, gamma)


def stationary_truth(policy: ope.TabularPolicy, gamma: float) -> float:
    V, _ = policy_evaluation(MDP.P, MDP.R, gamma, MDP.terminal, policy.table)
    return float(MDP.start @ V)


def test_sampler_is_a_valid_dataset_with_the_exact_behaviour_value():
    ds = sample_grid(table_behaviour(BEHAVIOUR), 20000, 0)
    ds.validate(check_checksums=False)
    returns = ds.episode_returns(1.0)
    exact = expected_return(BEHAVIOUR, HORIZON, 1.0)
    assert abs(returns.mean() - exact) < 4 * returns.std() / np.sqrt(len(returns))
    # The stored log-probabilities are the behaviour's, exactly.
    states = ds.observations
    np.testing.assert_allclose(ds.extra("behaviour_log_prob"), np.log(BEHAVIOUR[states, ds.actions]), atol=1e-12)


# ---------------------------------------------------------------------- tabular exactness
def test_tabular_fqe_and_dualdice_equal_dynamic_programming():
    ds = sample_grid(table_behaviour(BEHAVIOUR), 2000, 1)
    start = empirical_start(ds)
    for gamma in (1.0, 0.99):
        est = ope.tabular_fqe(ds, TARGET, gamma=gamma, horizon=HORIZON)
        exact = expected_return(TARGET.table, HORIZON, gamma, start_distribution=start)
        # rewards are stored as float32 (-0.1 is not exact), hence 1e-7 rather than 1e-12
        assert est.value == pytest.approx(exact, abs=1e-7)
        V, Q = finite_horizon_value(MDP.P, MDP.R, MDP.terminal, TARGET.table, HORIZON, gamma)
        covered = est.model.covered
        np.testing.assert_allclose(est.model.table[:HORIZON][:, covered], Q[:, covered], atol=1e-6)
        assert est.details["max_policy_mass_on_unseen_actions"] == 0.0
    # Stationary FQE (truncations bootstrapped through) is the infinite-horizon policy evaluation...
    V, _ = policy_evaluation(MDP.P, MDP.R, 0.99, MDP.terminal, TARGET.table)
    stationary = ope.tabular_fqe(ds, TARGET, gamma=0.99)
    assert stationary.value == pytest.approx(start @ V, abs=1e-7)
    # ...and DualDICE's tabular saddle point is the same number, reached through occupancy ratios.
    dual = ope.dualdice(ds, TARGET, gamma=0.99)
    assert dual.estimator == "dualdice_tabular"
    assert dual.value == pytest.approx(stationary.value, abs=1e-9)
    # The alive occupancy mass: (1 - gamma) E[sum_t gamma^t 1{t < T}] (< 1: the goal absorbs).
    assert 0.0 < dual.details["mean_ratio"] < 0.05
    with pytest.raises(OffbenchError, match="gamma must satisfy 0 <= gamma < 1"):
        ope.dualdice(ds, TARGET, gamma=1.0)
    with pytest.raises(OffbenchError, match="singular"):
        ope.tabular_fqe(ds, ope.TabularPolicy(np.eye(N_ACTIONS)[np.zeros(N_STATES, int)]), gamma=1.0)


# ---------------------------------------------------------------------- importance sampling
def _replicates(estimate, n_datasets: int, n_episodes: int, seed: int, behaviour=None) -> np.ndarray:
    behaviour = behaviour or table_behaviour(BEHAVIOUR)
    return np.array([estimate(sample_grid(behaviour, n_episodes, seed + i)) for i in range(n_datasets)])


def test_is_and_pdis_are_unbiased():
    exact = truth(TARGET)  # 0.84278
    values = _replicates(lambda d: [ope.importance_sampling(d, TARGET, v).value for v in ("is", "pdis")],
                         300, 50, seed=1000)
    mean, se = values.mean(0), values.std(0, ddof=1) / np.sqrt(len(values))
    assert np.all(np.abs(mean - exact) < 4 * se), (mean, se, exact)
    # A tight interval: far narrower than the gap to the behaviour's own value (0.654).
    assert np.all(4 * se < 0.5 * abs(expected_return(BEHAVIOUR) - exact)), se


def test_wis_is_biased_but_consistent():
    exact = truth(TARGET)
    # One episode per dataset: WIS returns that episode's return whatever its weight, i.e. the
    # behaviour's value, not the target's (maximal bias).
    single = _replicates(lambda d: ope.importance_sampling(d, TARGET, "wis").value, 2000, 1, seed=5000)
    assert abs(single.mean() - expected_return(BEHAVIOUR)) < 0.05
    assert exact - single.mean() > 0.15
    # The error shrinks with data: mean absolute error at 20 vs 2000 episodes.
    small = _replicates(lambda d: ope.importance_sampling(d, TARGET, "wis").value, 100, 20, seed=7000)
    large = _replicates(lambda d: ope.importance_sampling(d, TARGET, "wis").value, 20, 2000, seed=9000)
    assert np.mean(np.abs(large - exact)) < 0.25 * np.mean(np.abs(small - exact))
    assert np.mean(np.abs(large - exact)) < 0.01
    # Weighted per-decision as well.
    wpdis = _replicates(lambda d: ope.importance_sampling(d, TARGET, "wpdis").value, 20, 2000, seed=9000)
    assert np.mean(np.abs(wpdis - exact)) < 0.02


class ZeroQ:
    def q(self, observations, actions, timesteps):
        return np.zeros(len(actions))

    def v(self, observations, timesteps):
        return np.zeros(len(timesteps))


def test_doubly_robust_is_unbiased_with_lower_variance_than_is():
    exact = truth(TARGET)
    # The model: exact time-indexed FQE on a separate small dataset (so it is independent of the
    # evaluation data, and imperfect: pairs it never saw have Q = 0).
    q_model = ope.tabular_fqe(sample_grid(table_behaviour(BEHAVIOUR), 30, 123), TARGET, horizon=HORIZON).model
    assert (~q_model.covered).sum() > 10

    def estimates(d):
        return [ope.importance_sampling(d, TARGET, "is").value, ope.importance_sampling(d, TARGET, "pdis").value,
                ope.doubly_robust(d, TARGET, q_function=q_model).value,
                ope.doubly_robust(d, TARGET, q_function=q_model, weighted=True).value]

    values = _replicates(estimates, 300, 50, seed=20000)
    mean, sd = values.mean(0), values.std(0, ddof=1)
    is_sd, pdis_sd, dr_sd, wdr_sd = sd
    assert abs(mean[2] - exact) < 4 * dr_sd / np.sqrt(len(values))  # DR keeps IS's unbiasedness
    assert dr_sd < 0.5 * pdis_sd and dr_sd < 0.5 * is_sd
    assert wdr_sd < 0.5 * is_sd
    # With Q = 0 the control variate vanishes: DR is exactly PDIS.
    d = sample_grid(table_behaviour(BEHAVIOUR), 50, 1)
    assert ope.doubly_robust(d, TARGET, q_function=ZeroQ()).value == pytest.approx(
        ope.importance_sampling(d, TARGET, "pdis").value, abs=1e-12)
    # Default model: FQE on the same data (exact tabular, time-indexed); in a deterministic MDP
    # the corrections then cancel and DR equals FQE.
    dr = ope.doubly_robust(d, TARGET)
    assert dr.details["q_model"] == "fqe_tabular" and dr.value == pytest.approx(dr.details["fqe_value"], abs=1e-9)


def test_cloned_behaviour_agrees_with_stored_log_probs():
    ds = sample_grid(table_behaviour(BEHAVIOUR), 3000, 3)
    cloned = ope.clone_behaviour(ds)
    visited = np.unique(ds.observations)
    assert np.max(np.abs(cloned.table[visited] - BEHAVIOUR[visited])) < 0.06
    for variant in ("pdis", "wpdis"):
        stored = ope.importance_sampling(ds, TARGET, variant, behaviour="stored")
        clone = ope.importance_sampling(ds, TARGET, variant, behaviour="cloned")
        assert stored.details["behaviour"] == "stored" and clone.details["behaviour"] == "cloned"
        assert abs(stored.value - clone.value) < 0.03
        assert abs(clone.value - truth(TARGET)) < 0.03
    # Without stored log-probs "auto" clones (and says so); "stored" is an error naming the array.
    bare = sample_grid(table_behaviour(BEHAVIOUR), 200, 4, log_probs=False)
    assert ope.importance_sampling(bare, TARGET, "is").details["behaviour"] == "cloned"
    with pytest.raises(OffbenchError, match="behaviour_log_prob"):
        ope.importance_sampling(bare, TARGET, "is", behaviour="stored")


def test_stored_log_probs_handle_a_behaviour_that_is_not_markov_in_the_observation():
    # The route behaviour depends on the start cell, which the observation does not show: the
    # stored log-probs are exact, a behaviour cloned on observations is not.
    ds = sample_grid(route_behaviour(0.5), 20000, 6)
    exact = truth(TARGET)
    stored = ope.importance_sampling(ds, TARGET, "pdis")
    cloned = ope.importance_sampling(ds, TARGET, "pdis", behaviour="cloned")
    assert abs(stored.value - exact) < 4 * stored.details["stderr"]
    assert abs(cloned.value - exact) > 4 * stored.details["stderr"]


def test_log_ratio_clipping_and_errors():
    ds = sample_grid(route_behaviour(0.3), 300, 8)
    free = ope.importance_sampling(ds, TARGET, "is")
    dope = ope.importance_sampling(ds, TARGET, "is", log_ratio_clip=ope.DOPE_LOG_RATIO_CLIP)
    assert free.details["log_ratio_clip"] is None and free.details["clipped_fraction"] == 0.0
    assert free.details["max_log_ratio"] > 2.0  # this data has log-ratios above DOPE's cap...
    assert dope.details["max_log_ratio"] == 2.0 and 0.0 < dope.details["clipped_fraction"] < 0.05
    assert dope.value != free.value
    assert 0 < free.details["ess"] < 300
    with pytest.raises(OffbenchError, match="unknown importance-sampling variant"):
        ope.importance_sampling(ds, TARGET, "wdr")
    with pytest.raises(OffbenchError, match="low < high"):
        ope.importance_sampling(ds, TARGET, "is", log_ratio_clip=(2.0, -6.0))
    # A target that never takes a logged action: IS is 0, the weighted forms undefined (NaN, said so).
    never = ope.TabularPolicy(np.eye(N_ACTIONS)[np.full(N_STATES, 8)])  # always NW
    d = sample_grid(table_behaviour(EpsilonGreedyPolicy(epsilon=0.0).action_probability_table()), 10, 0,
                    log_probs=False)
    assert ope.importance_sampling(d, never, "is", behaviour=np.zeros(d.num_steps)).value == 0.0
    wis = ope.importance_sampling(d, never, "wis", behaviour=np.zeros(d.num_steps))
    assert np.isnan(wis.value) and "zero" in wis.details["undefined"]


# ---------------------------------------------------------------------- neural and model-based, small data
@pytest.fixture(scope="module")
def one_hot_data() -> Dataset:
    return sample_grid(table_behaviour(BEHAVIOUR), 500, 1, one_hot=True)


def test_neural_fqe_ranks_and_matches_the_truth(one_hot_data):
    gamma = 0.9
    good = ope.fqe(one_hot_data, GOOD, method="neural", gamma=gamma, steps=2000, hidden=(64, 64), tau=0.05)
    bad = ope.fqe(one_hot_data, BAD, method="neural", gamma=gamma, steps=2000, hidden=(64, 64), tau=0.05)
    # Stationary FQE targets the infinite-horizon value (0.7562 and -0.5768).
    assert good.value == pytest.approx(stationary_truth(GOOD, gamma), abs=0.02)
    assert bad.value == pytest.approx(stationary_truth(BAD, gamma), abs=0.03)
    assert good.estimator == "fqe_neural" and good.value > bad.value


def test_neural_fqe_targets_stay_in_the_reward_range_and_scaling_keeps_the_answer(one_hot_data):
    gamma = 0.9
    # Every target is clipped to [r_min, r_max] / (1 - gamma) (0 included: a terminal value):
    # no policy's value lies outside, whatever Q extrapolates to off the data.
    est = ope.fqe(one_hot_data, GOOD, method="neural", gamma=gamma, steps=300, hidden=(64, 64), tau=0.05)
    low, high = est.details["target_range"]
    r = one_hot_data.rewards
    assert (low, high) == pytest.approx((min(r.min(), 0) / (1 - gamma), max(r.max(), 0) / (1 - gamma)))
    assert est.details["value_scale"] == pytest.approx(max(abs(r.mean()), r.std()) / (1 - gamma))
    # Scaling changes the parametrisation, not the fixed point: both converge to the same value.
    plain = ope.fqe(one_hot_data, GOOD, method="neural", gamma=gamma, steps=2000, hidden=(64, 64), tau=0.05,
                    value_scaling=False, clip_targets=False)
    scaled = ope.fqe(one_hot_data, GOOD, method="neural", gamma=gamma, steps=2000, hidden=(64, 64), tau=0.05)
    assert plain.details["value_scale"] == 1.0 and plain.details["target_range"] == [-np.inf, np.inf]
    assert scaled.value == pytest.approx(plain.value, abs=0.03)


def test_dualdice_neural_ranks_and_is_near_the_truth(one_hot_data):
    gamma = 0.9
    kw = dict(method="neural", gamma=gamma, steps=3000, nu_lr=3e-4, zeta_lr=3e-3, hidden=(32,))
    good, bad = ope.dualdice(one_hot_data, GOOD, **kw), ope.dualdice(one_hot_data, BAD, **kw)
    assert good.value > bad.value
    assert good.value == pytest.approx(stationary_truth(GOOD, gamma), abs=0.05)  # 0.756
    # The uniform policy's occupancy is far from the data's: a looser tolerance (measured -0.39 vs -0.58).
    assert bad.value == pytest.approx(stationary_truth(BAD, gamma), abs=0.3)


def test_model_based_ranks_and_is_near_the_truth(one_hot_data):
    gamma = 0.9
    kw = dict(gamma=gamma, ensemble_kwargs=dict(members=3, elites=2, hidden=(64, 64)), num_rollouts=1000)
    good, bad = ope.model_based(one_hot_data, GOOD, **kw), ope.model_based(one_hot_data, BAD, **kw)
    assert good.details["task"] == "stitchgrid" and good.details["horizon"] == HORIZON
    # Rollouts of the time-limited episode: compare with the finite-horizon truth (0.756 and -0.454).
    assert good.value > bad.value
    assert good.value == pytest.approx(truth(GOOD, gamma), abs=0.1)
    assert bad.value == pytest.approx(truth(BAD, gamma), abs=0.15)
    assert good.details["terminated_fraction"] > 0.95  # the good policy reaches the goal
    with pytest.raises(OffbenchError, match="Box observations"):
        ope.model_based(sample_grid(table_behaviour(BEHAVIOUR), 10, 0), GOOD)


# ---------------------------------------------------------------------- continuous actions: a one-step bandit
class GaussianTarget:
    """pi(a | s) = N(k s, std^2) on a 1-D action."""

    def __init__(self, k: float, std: float):
        self.k, self.std = k, std

    def log_prob(self, obs, act):
        mean = self.k * np.asarray(obs)[:, 0]
        a = np.asarray(act)[:, 0]
        return -0.5 * ((a - mean) / self.std) ** 2 - np.log(self.std) - 0.5 * np.log(2 * np.pi)

    def sample(self, obs, rng):
        mean = self.k * np.asarray(obs)[:, 0]
        return (mean + self.std * rng.standard_normal(len(mean)))[:, None].astype(np.float32)

    def value(self) -> float:
        # r = -(a - s)^2, s ~ U(-1, 1): E[((k - 1) s)^2] + std^2 = (k - 1)^2 / 3 + std^2
        return -((self.k - 1.0) ** 2 / 3.0 + self.std**2)


def bandit(n: int, seed: int, behaviour=GaussianTarget(0.0, 0.5)) -> Dataset:
    rng = np.random.default_rng(seed)
    s = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    a = behaviour.sample(s, rng)
    arrays = {"observations": s, "actions": a, "rewards": (-(a[:, 0] - s[:, 0]) ** 2).astype(np.float32),
              "terminations": np.ones(n, bool), "truncations": np.zeros(n, bool),
              "episodes/start": np.arange(n, dtype=np.int64), "episodes/length": np.ones(n, np.int64),
              "episodes/source": np.zeros(n, np.int32),
              "episodes/final/observations": rng.uniform(-1, 1, (n, 1)).astype(np.float32),
              "behaviour_log_prob": behaviour.log_prob(s, a)}
    meta = DatasetMetadata("test/bandit/gauss-v0", "Bandit-v0", gym.spaces.Box(-1, 1, (1,), np.float32),
                           gym.spaces.Box(-3, 3, (1,), np.float32))
    return Dataset(arrays, meta)


def test_continuous_estimators_on_a_bandit_with_a_closed_form_value():
    ds = bandit(2000, 0)
    ds.validate(check_checksums=False)
    good, bad = GaussianTarget(0.5, 0.1), GaussianTarget(-0.5, 0.1)  # values -0.0933 and -0.76
    for policy in (good, bad):
        exact = policy.value()
        stored = ope.importance_sampling(ds, policy, "wis")
        cloned = ope.importance_sampling(ds, policy, "wis", behaviour="cloned")  # a Gaussian network
        assert stored.value == pytest.approx(exact, abs=0.03) and cloned.value == pytest.approx(exact, abs=0.05)
        fqe = ope.fqe(ds, policy, gamma=0.9, steps=1500, hidden=(64, 64), tau=0.05)
        assert fqe.estimator == "fqe_neural" and fqe.value == pytest.approx(exact, abs=0.03)
        dr = ope.doubly_robust(ds, policy, gamma=0.9, q_function=fqe.model)
        assert dr.value == pytest.approx(exact, abs=0.03)
    dual_good = ope.dualdice(ds, good, gamma=0.9, steps=2000, nu_lr=3e-4, zeta_lr=3e-3, hidden=(32,))
    dual_bad = ope.dualdice(ds, bad, gamma=0.9, steps=2000, nu_lr=3e-4, zeta_lr=3e-3, hidden=(32,))
    assert dual_good.value > dual_bad.value  # ranks them; the peaked ratio makes the good value rough


# ---------------------------------------------------------------------- adapters
def test_algorithm_policy_reads_trained_baselines():
    from baselines.bc import BC, BCConfig
    from baselines.iql import IQL, IQLConfig
    from baselines.td3_bc import TD3BC, TD3BCConfig

    ds = sample_grid(table_behaviour(BEHAVIOUR), 2000, 0, one_hot=True)  # covers every pair of s1..s8
    bc = BC(ds.observation_space, ds.action_space, BCConfig(hidden=(16,)))
    bc.prepare(ds)
    policy = ope.AlgorithmPolicy(bc)
    probs = policy.probabilities(ds.observations[:5])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    np.testing.assert_allclose(policy.log_prob(ds.observations[:5], ds.actions[:5]),
                               np.log(probs[np.arange(5), ds.actions[:5]]), atol=1e-6)
    assert ope.tabular_fqe(ds, policy, horizon=HORIZON).value == pytest.approx(
        expected_return(policy.probabilities(np.eye(N_STATES, dtype=np.float32)), HORIZON,
                        start_distribution=empirical_start(ds)), abs=1e-6)

    box = bandit(64, 0)
    iql = IQL(box.observation_space, box.action_space, IQLConfig(hidden=(16,)))
    iql.prepare(box)
    wrapped = ope.AlgorithmPolicy(iql)
    with torch.no_grad():
        expected = iql.policy.log_prob(iql.encoder(torch.as_tensor(box.observations)),
                                       torch.as_tensor(box.actions)).double().numpy()
    np.testing.assert_allclose(wrapped.log_prob(box.observations, box.actions), expected, atol=1e-6)
    assert wrapped.sample(box.observations, np.random.default_rng(0)).shape == (64, 1)

    td3 = TD3BC(box.observation_space, box.action_space, TD3BCConfig(hidden=(16,)))
    td3.prepare(box)
    narrow = ope.AlgorithmPolicy(td3, deterministic_std=0.1)
    mean = td3.act(box.observations)
    std = 0.1 * 3.0  # deterministic_std times the action scale (box is [-3, 3])
    want = (-0.5 * ((box.actions - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(1)
    np.testing.assert_allclose(narrow.log_prob(box.observations, box.actions), want, atol=1e-5)
    with pytest.raises(OffbenchError, match="deterministic_std"):
        ope.AlgorithmPolicy(td3, deterministic_std=0.0)
