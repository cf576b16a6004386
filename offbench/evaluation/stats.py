"""Aggregate statistics over runs and tasks, as in rliable (Agarwal et al., 2021, "Deep RL at the
Edge of the Statistical Precipice"), with reproducible stratified-bootstrap intervals.

Scores are arrays shaped ``[runs, tasks]`` per algorithm (a dict ``name -> array``, rliable's
``score_dict``). Definitions (REFERENCE §6, rliable ``metrics``):

* mean: mean over tasks of the per-task mean over runs;
* median: median over tasks of the per-task mean over runs (rliable's definition, not the
  median of the pooled scores);
* IQM: 25% trimmed mean of all pooled run x task scores (``scipy.stats.trim_mean(x, 0.25, axis=None)``);
* optimality gap: ``gamma - mean(min(x, gamma))`` (``gamma`` = 100 for normalised scores);
* probability of improvement P(X > Y): mean over tasks of the Mann-Whitney ``U / (n_x n_y)``,
  i.e. the fraction of run pairs where X beats Y, ties counting half;
* performance profile: fraction of run x task scores above ``tau`` ("score distribution"), or of
  per-task mean scores above ``tau`` ("average score distribution").

Intervals are stratified-bootstrap percentile intervals (95% by default): each replicate
resamples runs with replacement independently within each task, the statistic is recomputed,
and the interval is the ``(1 - size)/2`` and ``1 - (1 - size)/2`` percentiles (``np.percentile``,
linear) of the replicates. ``reps`` defaults to 2000, the number rliable's examples and
``create_performance_profile`` use (``get_interval_estimates`` itself defaults to 50000).

Randomness: rliable draws its bootstrap indices from numpy's *global* generator, so its own
``random_state`` does not make intervals reproducible. Here every function takes ``rng``: an int
seed or ``numpy.random.Generator`` (the default path, vectorised draws) or a
``numpy.random.RandomState``. With a ``RandomState`` the indices are drawn exactly as rliable /
arch draw them - per replicate, per algorithm in dict order, per score array in argument order,
``rs.choice(n_runs, (n_runs, n_tasks), replace=True)`` - so ``np.random.seed(s)`` before an
rliable call and ``rng=np.random.RandomState(s)`` here give the same intervals
(tests/test_stats.py checks this to 1e-12; they are bit-identical in practice).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence, Union

import numpy as np

DEFAULT_REPS = 2000
DEFAULT_GAMMA = 100.0
DEFAULT_SIZE = 0.95
DEFAULT_SEED = 0  # the bootstrap seed of `offbench report` and of the leaderboard
METRICS = ("iqm", "mean", "median", "optimality_gap")
METRIC_LABELS = {"iqm": "IQM", "mean": "Mean", "median": "Median", "optimality_gap": "Optimality gap"}

RngLike = Union[int, np.random.Generator, np.random.RandomState, None]


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap percentile interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


# ---------------------------------------------------------------------- point estimates
# Written exactly as rliable.metrics computes them, so point estimates agree bit for bit.
def aggregate_mean(scores: np.ndarray) -> float:
    return float(np.mean(np.mean(scores, axis=0), axis=0))


def aggregate_median(scores: np.ndarray) -> float:
    return float(np.median(np.mean(scores, axis=0), axis=0))


def aggregate_iqm(scores: np.ndarray) -> float:
    from scipy.stats import trim_mean

    return float(trim_mean(scores, proportiontocut=0.25, axis=None))


def aggregate_optimality_gap(scores: np.ndarray, gamma: float = DEFAULT_GAMMA) -> float:
    return float(gamma - np.mean(np.minimum(scores, gamma)))


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y): mean over tasks of U/(n_x n_y) (Mann-Whitney U; ties count half)."""
    return float(_batch_poi(np.asarray(scores_x, float)[None], np.asarray(scores_y, float)[None])[0])


# ---------------------------------------------------------------------- batched statistics
# The same statistics over a batch of bootstrap resamples shaped [reps, runs, tasks].
def _batch_mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1).mean(axis=-1)


def _batch_median(x: np.ndarray) -> np.ndarray:
    return np.median(x.mean(axis=1), axis=-1)


def _batch_iqm(x: np.ndarray) -> np.ndarray:
    from scipy.stats import trim_mean

    return trim_mean(x.reshape(x.shape[0], -1), proportiontocut=0.25, axis=1)


def _batch_optimality_gap(x: np.ndarray, gamma: float) -> np.ndarray:
    return gamma - np.minimum(x, gamma).reshape(x.shape[0], -1).mean(axis=1)


def _batch_poi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Counting pairs equals scipy's U = R_x - n_x(n_x+1)/2 exactly (both are half-integers).
    a, b = x[:, :, None, :], y[:, None, :, :]
    wins = (a > b).sum(axis=(1, 2)) + 0.5 * (a == b).sum(axis=(1, 2))
    return (wins / (x.shape[1] * y.shape[1])).mean(axis=-1)


def _batch_metrics(x: np.ndarray, metrics: Sequence[str], gamma: float) -> np.ndarray:
    """[reps, len(metrics)]."""
    funcs: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "iqm": _batch_iqm, "mean": _batch_mean, "median": _batch_median,
        "optimality_gap": lambda v: _batch_optimality_gap(v, gamma)}
    unknown = [m for m in metrics if m not in funcs]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; use {list(funcs)}")
    return np.stack([funcs[m](x) for m in metrics], axis=1)


def point_metrics(scores: np.ndarray, metrics: Sequence[str] = METRICS, gamma: float = DEFAULT_GAMMA) -> dict:
    scalar = {"iqm": aggregate_iqm, "mean": aggregate_mean, "median": aggregate_median,
              "optimality_gap": lambda s: aggregate_optimality_gap(s, gamma)}
    return {m: scalar[m](scores) for m in metrics}


# ---------------------------------------------------------------------- the bootstrap
def make_rng(rng: RngLike = 0) -> np.random.Generator | np.random.RandomState:
    """A Generator from a seed (None means seed 0: reports must be reproducible), or the given
    Generator / RandomState itself."""
    if isinstance(rng, (np.random.Generator, np.random.RandomState)):
        return rng
    return np.random.default_rng(0 if rng is None else int(rng))


def bootstrap_indices(shapes: Sequence[tuple[int, int]], reps: int,
                      rng: np.random.Generator | np.random.RandomState) -> list[np.ndarray]:
    """Run indices ``[reps, runs, tasks]`` for each score array of shape ``(runs, tasks)``: each
    replicate resamples runs with replacement independently within every task (stratified).

    A RandomState draws them as rliable's ``StratifiedBootstrap`` / ``StratifiedIndependentBootstrap``
    do from the global generator: replicate by replicate, array by array, ``choice(runs, shape)``.
    """
    if reps < 1:
        raise ValueError("reps must be >= 1")
    shapes = [(int(r), int(t)) for r, t in shapes]
    if isinstance(rng, np.random.RandomState):
        out = [np.empty((reps, r, t), dtype=np.int64) for r, t in shapes]
        for i in range(reps):
            for k, (r, t) in enumerate(shapes):
                out[k][i] = rng.choice(r, (r, t), replace=True)
        return out
    return [rng.integers(0, r, size=(reps, r, t)) for r, t in shapes]


def resample(scores: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``scores[indices[b, i, j], j]`` for every replicate b: shape ``[reps, runs, tasks]``."""
    return scores[indices, np.arange(scores.shape[1])]


def percentile_interval(replicates: np.ndarray, size: float = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper percentile bounds over axis 0, computed as arch's ``conf_int`` does."""
    if not 0.0 < size < 1.0:
        raise ValueError("size must be strictly between 0 and 1")
    alpha = (1.0 - size) / 2
    low, high = np.percentile(replicates, [100 * alpha, 100 * (1.0 - alpha)], axis=0)
    return low, high


def _as_scores(scores) -> np.ndarray:
    array = np.asarray(scores, dtype=float)
    if array.ndim != 2 or 0 in array.shape:
        raise ValueError(f"scores must be a non-empty [runs, tasks] array, got shape {array.shape}")
    return array


def interval_estimates(score_dict: Mapping[str, np.ndarray], metrics: Sequence[str] = METRICS, *,
                       reps: int = DEFAULT_REPS, rng: RngLike = 0, size: float = DEFAULT_SIZE,
                       gamma: float = DEFAULT_GAMMA) -> dict[str, dict[str, Estimate]]:
    """``{algorithm: {metric: Estimate}}``; all metrics of an algorithm share its resamples (as
    rliable does with one ``func`` returning every metric)."""
    rng = make_rng(rng)
    out = {}
    for name, scores in score_dict.items():
        scores = _as_scores(scores)
        (idx,) = bootstrap_indices([scores.shape], reps, rng)
        replicates = _batch_metrics(resample(scores, idx), metrics, gamma)
        low, high = percentile_interval(replicates, size)
        points = point_metrics(scores, metrics, gamma)
        out[name] = {m: Estimate(points[m], float(low[k]), float(high[k])) for k, m in enumerate(metrics)}
    return out


def aggregate_estimates(scores, metrics: Sequence[str] = METRICS, *, reps: int = DEFAULT_REPS,
                        seed: RngLike = DEFAULT_SEED, size: float = DEFAULT_SIZE,
                        gamma: float = DEFAULT_GAMMA) -> dict[str, Estimate]:
    """``{metric: Estimate}`` of one ``[runs, tasks]`` score matrix, its bootstrap drawn from a
    generator made from ``seed`` alone (``make_rng(seed)``), never from a label.

    ``offbench report`` and the leaderboard both compute their aggregates here, so the same
    scores with the same ``reps`` and ``seed`` give the same intervals in both, and an
    algorithm's interval does not depend on the other algorithms. The resamples do not depend on
    ``metrics`` either: asking for ``["iqm"]`` gives the IQM interval of asking for all four.
    """
    return interval_estimates({"scores": scores}, metrics, reps=reps, rng=make_rng(seed), size=size,
                              gamma=gamma)["scores"]


def task_mean_intervals(scores: np.ndarray, *, reps: int = DEFAULT_REPS, rng: RngLike = 0,
                        size: float = DEFAULT_SIZE) -> dict[str, np.ndarray]:
    """Per task (column): mean and sample std (ddof=1; NaN for one run) over runs and the bootstrap
    interval of the mean. Columns may be datasets or, for learning curves, evaluation steps."""
    scores = _as_scores(scores)
    rng = make_rng(rng)
    (idx,) = bootstrap_indices([scores.shape], reps, rng)
    low, high = percentile_interval(resample(scores, idx).mean(axis=1), size)
    std = scores.std(axis=0, ddof=1) if scores.shape[0] > 1 else np.full(scores.shape[1], np.nan)
    return {"mean": scores.mean(axis=0), "std": std, "low": low, "high": high, "n": scores.shape[0]}


def probability_of_improvement_interval(scores_x: np.ndarray, scores_y: np.ndarray, *, reps: int = DEFAULT_REPS,
                                        rng: RngLike = 0, size: float = DEFAULT_SIZE) -> Estimate:
    """P(X > Y) with a stratified bootstrap interval; X's and Y's runs are resampled independently
    (rliable's ``StratifiedIndependentBootstrap``), so the run counts may differ."""
    x, y = _as_scores(scores_x), _as_scores(scores_y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X and Y must share their tasks: {x.shape[1]} vs {y.shape[1]} columns")
    ix, iy = bootstrap_indices([x.shape, y.shape], reps, make_rng(rng))
    low, high = percentile_interval(_batch_poi(resample(x, ix), resample(y, iy)), size)
    return Estimate(probability_of_improvement(x, y), float(low), float(high))


def probability_of_improvement_matrix(score_dict: Mapping[str, np.ndarray], *, reps: int = DEFAULT_REPS,
                                      rng: RngLike = 0, size: float = DEFAULT_SIZE) -> dict[tuple[str, str], Estimate]:
    """``{(x, y): P(x > y)}`` for every ordered pair of distinct algorithms, in dict order (row
    by row), each pair with its own resamples drawn in that order."""
    rng = make_rng(rng)
    names = list(score_dict)
    return {(x, y): probability_of_improvement_interval(score_dict[x], score_dict[y], reps=reps, rng=rng, size=size)
            for x in names for y in names if x != y}


def performance_profile(score_dict: Mapping[str, np.ndarray], taus: Sequence[float] | np.ndarray, *,
                        kind: str = "score", reps: int = DEFAULT_REPS, rng: RngLike = 0,
                        size: float = DEFAULT_SIZE) -> dict[str, dict[str, np.ndarray]]:
    """``{algorithm: {"profile", "low", "high"}}`` at each ``tau``: the fraction of run x task
    scores > tau (``kind="score"``, rliable's default score distribution) or of per-task mean
    scores > tau (``kind="average"``), with stratified-bootstrap bands."""
    if kind not in ("score", "average"):
        raise ValueError("kind must be 'score' or 'average'")
    taus = np.asarray(taus, dtype=float)
    rng = make_rng(rng)

    def profile(x: np.ndarray) -> np.ndarray:  # x: [reps, runs, tasks] -> [reps, len(taus)]
        values = x.reshape(x.shape[0], -1) if kind == "score" else x.mean(axis=1)
        return np.stack([(values > tau).mean(axis=1) for tau in taus], axis=1)

    out = {}
    for name, scores in score_dict.items():
        scores = _as_scores(scores)
        (idx,) = bootstrap_indices([scores.shape], reps, rng)
        low, high = percentile_interval(profile(resample(scores, idx)), size)
        out[name] = {"profile": profile(scores[None])[0], "low": low, "high": high}
    return out
