"""offbench.evaluation.stats against rliable itself: point estimates to 1e-12, and intervals,
profiles and probability of improvement from the same bootstrap index stream (rliable draws
from numpy's global generator; we draw the same stream from a RandomState)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from offbench.evaluation import stats

rly = pytest.importorskip("rliable.library")
metrics = pytest.importorskip("rliable.metrics")

TOL = 1e-12


def _score_dict():
    rng = np.random.default_rng(1)
    return {"a": rng.normal(50, 20, (5, 7)),
            "b": rng.normal(60, 30, (5, 7)).round(0),  # ties
            "c": rng.normal(95, 10, (10, 7))}  # more runs (>= 8: numpy's pairwise summation kicks in), scores > gamma


def _rliable_aggregates(x):
    return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x), metrics.aggregate_median(x),
                     metrics.aggregate_optimality_gap(x, 100.0)])


@pytest.fixture(autouse=True)
def _keep_global_rng():
    """The rliable calls seed numpy's global generator; leave it as we found it."""
    state = np.random.get_state()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield
    np.random.set_state(state)


def test_point_estimates_equal_rliable():
    for scores in _score_dict().values():
        expected = _rliable_aggregates(scores)
        got = stats.point_metrics(scores)
        for k, metric in enumerate(stats.METRICS):
            assert abs(got[metric] - expected[k]) <= TOL, metric
        assert stats.aggregate_iqm(scores) == pytest.approx(metrics.aggregate_iqm(scores), abs=TOL)
        assert stats.aggregate_optimality_gap(scores, 1.0) == pytest.approx(
            metrics.aggregate_optimality_gap(scores, 1.0), abs=TOL)


def test_iqm_is_the_25_percent_trimmed_mean_of_pooled_scores():
    scores = np.arange(8.0).reshape(2, 4)  # pooled 0..7: drop 0,1 and 6,7
    assert stats.aggregate_iqm(scores) == 3.5
    assert stats.aggregate_median(np.array([[0.0, 10, 20], [2, 10, 40]])) == 10.0  # median of task means 1, 10, 30
    assert stats.aggregate_optimality_gap(np.array([[50.0, 150.0]])) == 25.0  # 100 - mean(50, 100)


def test_intervals_equal_rliable_given_the_same_index_stream():
    score_dict = _score_dict()
    np.random.seed(3)
    points, intervals = rly.get_interval_estimates(score_dict, _rliable_aggregates, reps=300)
    ours = stats.interval_estimates(score_dict, reps=300, rng=np.random.RandomState(3))
    for name in score_dict:
        for k, metric in enumerate(stats.METRICS):
            e = ours[name][metric]
            assert abs(e.value - points[name][k]) <= TOL
            assert abs(e.low - intervals[name][0, k]) <= TOL
            assert abs(e.high - intervals[name][1, k]) <= TOL
            assert e.low <= e.high


def test_probability_of_improvement_equals_rliable():
    sd = _score_dict()
    x, y = sd["a"], sd["b"]
    tied = np.array([[1.0, 2.0], [1.0, 3.0], [2.0, 3.0]])
    pairs = [(x, y), (y, x), (x, x), (sd["b"], sd["c"]), (tied, tied[::-1]), (tied, tied + (tied > 1))]
    for a, b in pairs:
        assert abs(stats.probability_of_improvement(a, b) - metrics.probability_of_improvement(a, b)) <= TOL
    # P(X > Y) + P(Y > X) = 1 (ties count half)
    assert stats.probability_of_improvement(x, y) + stats.probability_of_improvement(y, x) == pytest.approx(1.0)

    rliable_pairs = {"a,b": [x, y], "b,c": [sd["b"], sd["c"]]}
    np.random.seed(7)
    points, intervals = rly.get_interval_estimates(
        rliable_pairs, lambda u, v: metrics.probability_of_improvement(u, v), reps=150)
    rs = np.random.RandomState(7)
    for key, (u, v) in rliable_pairs.items():
        e = stats.probability_of_improvement_interval(u, v, reps=150, rng=rs)
        assert abs(e.value - points[key]) <= TOL
        assert abs(e.low - intervals[key].ravel()[0]) <= TOL
        assert abs(e.high - intervals[key].ravel()[1]) <= TOL


@pytest.mark.parametrize("kind", ["score", "average"])
def test_performance_profiles_equal_rliable(kind):
    score_dict = _score_dict()
    taus = np.linspace(0, 120, 25)
    np.random.seed(5)
    profiles, bands = rly.create_performance_profile(score_dict, taus, reps=200,
                                                     use_score_distribution=kind == "score")
    ours = stats.performance_profile(score_dict, taus, kind=kind, reps=200, rng=np.random.RandomState(5))
    for name in score_dict:
        np.testing.assert_allclose(ours[name]["profile"], profiles[name], rtol=0, atol=TOL)
        np.testing.assert_allclose(ours[name]["low"], bands[name][0], rtol=0, atol=TOL)
        np.testing.assert_allclose(ours[name]["high"], bands[name][1], rtol=0, atol=TOL)
    # hand check: fraction of run x task scores above tau
    s = np.array([[0.0, 50.0], [100.0, 20.0]])
    p = stats.performance_profile({"s": s}, [10.0, 60.0], reps=10)["s"]["profile"]
    np.testing.assert_array_equal(p, [0.75, 0.25])


def test_seeded_generator_is_reproducible():
    score_dict = _score_dict()
    first = stats.interval_estimates(score_dict, reps=500, rng=4)
    again = stats.interval_estimates(score_dict, reps=500, rng=np.random.default_rng(4))
    other = stats.interval_estimates(score_dict, reps=500, rng=5)
    assert first == again
    assert first != other
    # the global generator is neither used nor disturbed
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    stats.interval_estimates(score_dict, reps=50, rng=1)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_generator_and_rliable_intervals_agree_statistically():
    """Different index streams, same distribution: many replicates give close intervals."""
    scores = _score_dict()["a"]
    ours = stats.interval_estimates({"a": scores}, ["mean"], reps=20000, rng=0)["a"]["mean"]
    theirs = stats.interval_estimates({"a": scores}, ["mean"], reps=20000, rng=np.random.RandomState(0))["a"]["mean"]
    width = theirs.high - theirs.low
    assert abs(ours.low - theirs.low) < 0.05 * width and abs(ours.high - theirs.high) < 0.05 * width


def test_bootstrap_is_stratified_within_tasks():
    scores = np.array([[0.0, 100.0], [1.0, 101.0], [2.0, 102.0]])
    (idx,) = stats.bootstrap_indices([scores.shape], 64, np.random.default_rng(0))
    res = stats.resample(scores, idx)
    assert res.shape == (64, 3, 2)
    assert set(np.unique(res[:, :, 0])) <= {0.0, 1.0, 2.0}
    assert set(np.unique(res[:, :, 1])) <= {100.0, 101.0, 102.0}


def test_task_mean_intervals_and_matrix():
    scores = np.array([[10.0, 1.0], [20.0, 1.0], [30.0, 1.0]])
    est = stats.task_mean_intervals(scores, reps=200, rng=0)
    np.testing.assert_allclose(est["mean"], [20.0, 1.0])
    np.testing.assert_allclose(est["std"], [10.0, 0.0])  # sample std, ddof=1
    assert 10.0 <= est["low"][0] <= 20.0 <= est["high"][0] <= 30.0
    assert est["low"][1] == est["high"][1] == 1.0
    assert np.isnan(stats.task_mean_intervals(scores[:1], reps=10)["std"]).all()

    matrix = stats.probability_of_improvement_matrix(_score_dict(), reps=50, rng=0)
    assert set(matrix) == {(x, y) for x in "abc" for y in "abc" if x != y}
    for (x, y), e in matrix.items():
        assert e.value + matrix[(y, x)].value == pytest.approx(1.0)
        assert 0.0 <= e.low <= e.high <= 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="runs, tasks"):
        stats.interval_estimates({"a": np.ones(3)})
    with pytest.raises(ValueError, match="share their tasks"):
        stats.probability_of_improvement_interval(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="unknown metrics"):
        stats.interval_estimates({"a": np.ones((2, 2))}, ["mode"])
    with pytest.raises(ValueError, match="reps"):
        stats.interval_estimates({"a": np.ones((2, 2))}, reps=0)
