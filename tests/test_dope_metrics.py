"""DOPE metrics against hand-computed small examples, and their edge cases."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from offbench.errors import OffbenchError
from offbench.evaluation import dope_metrics as dm

TRUE = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # worst 1, best 5, spread 4
EST = np.array([1.0, 3.0, 2.0, 13.0, 5.0])


def test_normalised_absolute_error_by_hand():
    # normalised true [0, .25, .5, .75, 1]; estimates [0, .5, .25, 3 -> clipped 2, 1]
    np.testing.assert_allclose(dm.normalise(EST, TRUE, clip_max=2.0), [0, 0.5, 0.25, 2.0, 1.0])
    # |errors| = [0, .25, .25, 1.25, 0] -> mean 0.35
    assert dm.absolute_error(TRUE, EST) == pytest.approx(0.35)
    assert dm.absolute_error(TRUE, EST, clip_max=np.inf) == pytest.approx((0.25 + 0.25 + 2.25) / 5)
    assert dm.absolute_error(TRUE, TRUE) == 0.0


def test_spearman_by_hand_and_against_scipy():
    # ranks of EST: [1, 3, 2, 5, 4]; sum d^2 = 4; rho = 1 - 6 * 4 / (5 * 24) = 0.8
    assert dm.spearman(TRUE, EST) == pytest.approx(0.8)
    assert dm.spearman(TRUE, -TRUE) == pytest.approx(-1.0)
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    for _ in range(20):
        t, e = rng.integers(0, 4, 8).astype(float), rng.normal(size=8)  # ties in the true values
        assert dm.spearman(t, e) == pytest.approx(spearmanr(t, e).statistic, abs=1e-12)


def test_regret_at_k_by_hand():
    # top-1 by estimate is policy 3 (true 4): regret = (5 - 4) / (5 - 1) normalised, (5 - 4) / 5 raw
    assert dm.regret_at_k(TRUE, EST, 1) == pytest.approx(0.25)
    assert dm.regret_at_k(TRUE, EST, 1, normalise=False) == pytest.approx(0.2)
    # top-2 adds policy 4 (true 5): no regret
    assert dm.regret_at_k(TRUE, EST, 2) == 0.0
    # the worst possible pick: regret 1 (normalised)
    assert dm.regret_at_k(TRUE, -TRUE, 1) == pytest.approx(1.0)
    assert dm.regret_at_k(TRUE, -TRUE, 4) == pytest.approx(0.25)
    # k >= number of policies: every policy is in the top k
    assert dm.regret_at_k(TRUE, -TRUE, 5) == 0.0 and dm.regret_at_k(TRUE, -TRUE, 50) == 0.0
    # ties among estimates go to the lower index
    assert list(dm.top_k([1.0, 2.0, 2.0, 0.0], 2)) == [1, 2]
    with pytest.raises(OffbenchError, match="k must be a positive integer"):
        dm.regret_at_k(TRUE, EST, 0)
    with pytest.raises(OffbenchError, match="best true value, which is 0"):
        dm.regret_at_k([-1.0, 0.0], [1.0, 0.0], 1, normalise=False)


def test_expected_max_of_k_formula_and_brute_force():
    assert dm.expected_max_of_k(TRUE, 1) == pytest.approx(3.0)  # the mean
    assert dm.expected_max_of_k(TRUE, 2) == pytest.approx(95 / 25)  # (1 + 6 + 15 + 28 + 45) / 25
    values = np.array([0.3, -1.0, 2.5, 0.3])
    for k in (1, 2, 3):  # every ordered k-tuple drawn with replacement, equally likely
        brute = np.mean([max(c) for c in itertools.product(values, repeat=k)])
        assert dm.expected_max_of_k(values, k) == pytest.approx(brute)
    curve = dm.expected_max_of_k(values, [1, 2, 10, 1000])
    assert np.all(np.diff(curve) >= 0) and curve[-1] == pytest.approx(2.5)  # k > n is fine: -> the max
    with pytest.raises(OffbenchError, match="k must be a positive integer"):
        dm.expected_max_of_k(values, 0)


def test_edge_cases_equal_true_values_and_constant_estimates():
    equal = np.array([2.0, 2.0, 2.0])
    # Zero spread: scale 1 (a shift only), regret 0, Spearman undefined -> NaN, never a division by zero.
    assert dm.normalisation(equal) == (2.0, 1.0)
    with np.errstate(all="raise"):
        assert dm.absolute_error(equal, [1.0, 2.0, 3.0]) == pytest.approx(2 / 3)
        assert dm.regret_at_k(equal, [1.0, 2.0, 3.0], 1) == 0.0
        assert np.isnan(dm.spearman(equal, [1.0, 2.0, 3.0]))
        # Constant predictions: Spearman undefined (NaN, explicitly); other metrics defined.
        assert np.isnan(dm.spearman(TRUE, np.full(5, 7.0)))
        assert dm.regret_at_k(TRUE, np.full(5, 7.0), 1) == 1.0  # ties -> index 0, the worst policy
        assert np.isnan(dm.spearman([1.0], [2.0]))  # one policy
    with pytest.raises(OffbenchError, match="true_values has 5 policies but estimates has 2"):
        dm.absolute_error(TRUE, [1.0, 2.0])
    with pytest.raises(OffbenchError, match="non-finite"):
        dm.spearman(TRUE, [1.0, np.nan, 1.0, 1.0, 1.0])


def test_bootstrap_intervals_are_seeded_and_cover_the_point():
    rng = np.random.default_rng(1)
    true = rng.normal(size=11)  # DOPE's policy sets have 11 policies per domain
    est = true + 0.5 * rng.normal(size=11)
    a = dm.bootstrap(dm.spearman, true, est, seed=3)
    b = dm.bootstrap(dm.spearman, true, est, seed=3)
    c = dm.bootstrap(dm.spearman, true, est, seed=4)
    assert (a.low, a.high) == (b.low, b.high) and (a.low, a.high) != (c.low, c.high)
    assert a.low <= a.value <= a.high and -1.0 <= a.low and a.high <= 1.0
    # A perfect estimator: Spearman 1 on every resample where it is defined; the rare resample
    # that repeats one policy 11 times is undefined and counted, not averaged in.
    perfect = dm.bootstrap(dm.spearman, true, true, seed=0)
    assert perfect.value == perfect.low == perfect.high == pytest.approx(1.0)
    tiny = dm.bootstrap(dm.spearman, [1.0, 2.0], [1.0, 2.0], resamples=1000, seed=0)
    assert 400 < tiny.undefined_resamples < 600  # P(both draws equal) = 1/2
    report = dm.dope_report(true, est, seed=0)
    assert set(report.as_dict()) == {"absolute_error", "spearman", "regret@1", "regret@5"}
    assert report.regret[5].low >= 0.0 and report.regret[1].value == dm.regret_at_k(true, est, 1)
    with pytest.raises(OffbenchError, match="confidence"):
        dm.bootstrap(dm.spearman, true, est, confidence=95)
