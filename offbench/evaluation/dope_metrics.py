r"""DOPE metrics (Fu et al., ICLR 2021; REFERENCE §5): score OPE estimates of a policy set
against the policies' true values, plus expected online performance (Kurenkov &
Kolesnikov 2022).

For one task with a policy set of n policies, true values v_i and estimates \hat v_i:

- normalisation: x -> (x - min_i v_i) / (max_i v_i - min_i v_i), the same affine map for
  true values and estimates (true values land in [0, 1]); normalised estimates are clipped
  above at 2 so that one wild estimate cannot dominate a mean;
- absolute error: mean_i |clip(norm(\hat v_i)) - norm(v_i)|;
- Spearman rank correlation between \hat v and v (ties get average ranks);
- regret@k: (best true value - best true value among the k policies with the highest
  estimates) / best true value, computed on NORMALISED values, where the best true value is
  1: regret@k = (max v - max_{i in top-k(\hat v)} v_i) / (max v - min v). This is
  REFERENCE §5's formula applied after §5's normalisation, and DOPE's (which reports
  regret on normalised values). ``normalise=False`` gives the raw formula.
- bootstrap over policies (1000 resamples with replacement, seeded): 95% percentile
  intervals of any metric;
- expected online performance: E[max of k] = sum_i v_(i) [(i/n)^k - ((i-1)/n)^k], the
  expected best true value among k policies drawn uniformly WITH replacement (v_(i) sorted
  ascending).

Edge cases (each defined so that no division by zero or surprise NaN happens):

- all true values equal: the spread is 0, so normalisation uses a scale of 1 (values are
  only shifted by the common value: absolute error is then in raw units) and regret@k is
  0 (every choice is a best choice);
- constant estimates (or constant true values): Spearman's correlation is undefined; it
  is returned as NaN, explicitly (bootstrap intervals ignore such resamples and report how
  many there were);
- ties among estimates: the top k are taken in order of decreasing estimate, ties by
  policy index (a stable sort);
- k larger than the number of policies: the top k are all policies, so regret@k = 0;
  E[max of k] is well-defined for every k >= 1 (draws are with replacement).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from offbench.errors import OffbenchError

ESTIMATE_CLIP = 2.0
BOOTSTRAP_RESAMPLES = 1000


def _values(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise OffbenchError(f"{name} is empty: the metrics need at least one policy")
    if not np.all(np.isfinite(arr)):
        raise OffbenchError(f"{name} has non-finite values at positions {np.flatnonzero(~np.isfinite(arr)).tolist()}")
    return arr


def _pair(true_values, estimates) -> tuple[np.ndarray, np.ndarray]:
    true = _values(true_values, "true_values")
    est = _values(estimates, "estimates")
    if true.shape != est.shape:
        raise OffbenchError(f"true_values has {true.size} policies but estimates has {est.size}")
    return true, est


def _check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise OffbenchError(f"k must be a positive integer, got {k!r}")
    return int(k)


def normalisation(true_values) -> tuple[float, float]:
    """(offset, scale) of DOPE's normalisation: (min v, max v - min v), or scale 1 when all true
    values are equal (see the module docstring)."""
    true = _values(true_values, "true_values")
    lo, spread = float(true.min()), float(true.max() - true.min())
    return lo, spread if spread > 0 else 1.0


def normalise(values, true_values, *, clip_max: float | None = None) -> np.ndarray:
    """``(values - min v) / (max v - min v)`` with the true values' range; optionally clipped above."""
    lo, scale = normalisation(true_values)
    out = (np.asarray(values, dtype=np.float64) - lo) / scale
    return out if clip_max is None else np.minimum(out, clip_max)


def absolute_error(true_values, estimates, *, clip_max: float = ESTIMATE_CLIP) -> float:
    """Mean over policies of |clip(normalised estimate, max 2) - normalised true value|."""
    true, est = _pair(true_values, estimates)
    return float(np.mean(np.abs(normalise(est, true, clip_max=clip_max) - normalise(true, true))))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied values sharing the mean of their ranks (scipy's 'average')."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    ranks = np.empty(len(x))
    starts = np.flatnonzero(np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]]))
    ends = np.concatenate([starts[1:], [len(x)]])
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = 0.5 * (s + 1 + e)
    return ranks


def spearman(true_values, estimates) -> float:
    """Spearman's rank correlation (Pearson correlation of average ranks).

    NaN when either side is constant (including a single policy): a rank correlation with
    no ranking is undefined, and 0 would wrongly read as "no better than chance".
    """
    true, est = _pair(true_values, estimates)
    rt, re = _average_ranks(true), _average_ranks(est)
    rt, re = rt - rt.mean(), re - re.mean()
    denom = float(np.sqrt(np.sum(rt**2) * np.sum(re**2)))
    if denom == 0.0:
        return float("nan")
    return float(np.clip(np.sum(rt * re) / denom, -1.0, 1.0))


def top_k(estimates, k: int) -> np.ndarray:
    """Indices of the k highest estimates (ties by index; all policies when k >= n)."""
    est = _values(estimates, "estimates")
    return np.argsort(-est, kind="stable")[: _check_k(k)]


def regret_at_k(true_values, estimates, k: int, *, normalise: bool = True) -> float:
    """DOPE regret@k: (best true - best true among the estimator's top k) / best true.

    ``normalise=True`` (DOPE): on normalised values, i.e. divided by (max v - min v); 0 when
    all true values are equal. ``normalise=False``: the raw ratio, divided by |max v|
    (an error when the best true value is 0).
    """
    true, est = _pair(true_values, estimates)
    gap = float(true.max() - true[top_k(est, k)].max())
    if normalise:
        spread = float(true.max() - true.min())
        return gap / spread if spread > 0 else 0.0
    best = float(true.max())
    if best == 0.0:
        raise OffbenchError("regret_at_k(normalise=False) divides by the best true value, which is 0; "
                            "use normalise=True")
    return gap / abs(best)


def expected_max_of_k(values, k: int | Sequence[int]) -> float | np.ndarray:
    """Expected online performance (Kurenkov & Kolesnikov 2022):
    E[max of k] = sum_i v_(i) [(i/n)^k - ((i-1)/n)^k], v_(1) <= ... <= v_(n).

    ``k`` may be a sequence (the whole curve, an array). k = 1 gives the mean; k -> inf the max.
    """
    v = np.sort(_values(values, "values"))
    n = len(v)
    i = np.arange(1, n + 1)

    def one(kk: int) -> float:
        kk = _check_k(kk)
        return float(np.sum(v * ((i / n) ** kk - ((i - 1) / n) ** kk)))

    if np.ndim(k) == 0:
        return one(k)
    return np.array([one(kk) for kk in k])


@dataclass
class Interval:
    """A point value with a bootstrap percentile interval."""

    value: float
    low: float
    high: float
    undefined_resamples: int = 0  # resamples where the metric was NaN (e.g. a constant resample)


def bootstrap(metric: Callable[[np.ndarray, np.ndarray], float], true_values, estimates, *,
              resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap over policies: resample the (true, estimate) pairs with
    replacement ``resamples`` times (numpy Generator seeded with ``seed``), apply ``metric``
    and take the (1 - confidence)/2 and (1 + confidence)/2 percentiles of the defined results."""
    true, est = _pair(true_values, estimates)
    if not 0.0 < confidence < 1.0:
        raise OffbenchError(f"confidence must be in (0, 1), got {confidence}")
    if int(resamples) < 1:
        raise OffbenchError(f"resamples must be at least 1, got {resamples}")
    rng = np.random.default_rng(seed)
    rows = rng.integers(len(true), size=(int(resamples), len(true)))
    stats = np.array([metric(true[r], est[r]) for r in rows], dtype=np.float64)
    defined = stats[np.isfinite(stats)]
    point = float(metric(true, est))
    if defined.size == 0:
        return Interval(point, float("nan"), float("nan"), int(resamples))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(defined, [alpha, 1.0 - alpha])
    return Interval(point, float(low), float(high), int(stats.size - defined.size))


@dataclass
class DOPEReport:
    """All DOPE metrics of one estimator on one task, each with its bootstrap interval."""

    absolute_error: Interval
    spearman: Interval
    regret: dict[int, Interval] = field(default_factory=dict)

    def as_dict(self) -> dict:
        out = {"absolute_error": vars(self.absolute_error), "spearman": vars(self.spearman)}
        out.update({f"regret@{k}": vars(v) for k, v in self.regret.items()})
        return out


def dope_report(true_values, estimates, *, ks: Sequence[int] = (1, 5), resamples: int = BOOTSTRAP_RESAMPLES,
                confidence: float = 0.95, seed: int = 0) -> DOPEReport:
    """Absolute error, Spearman and regret@k (k in ``ks``), each with a bootstrap interval over policies."""
    true, est = _pair(true_values, estimates)
    kw = dict(resamples=resamples, confidence=confidence, seed=seed)
    return DOPEReport(
        absolute_error=bootstrap(absolute_error, true, est, **kw),
        spearman=bootstrap(spearman, true, est, **kw),
        regret={int(k): bootstrap(lambda t, e, k=k: regret_at_k(t, e, k), true, est, **kw) for k in ks})


__all__ = ["DOPEReport", "ESTIMATE_CLIP", "Interval", "absolute_error", "bootstrap", "dope_report",
           "expected_max_of_k", "normalisation", "normalise", "regret_at_k", "spearman", "top_k"]
