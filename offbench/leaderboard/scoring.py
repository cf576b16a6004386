"""Every number on the board, recomputed from an entry's raw per-episode returns.

A run's evaluation score is the mean D4RL-normalised return (catalogue reference scores) of its
episodes, or the mean raw return for a task without reference scores; its headline is the
protocol's rule (``offbench.protocol.headline_score``). A suite's aggregate is the IQM over
(seed, dataset) headline scores of the normalised datasets, with a stratified-bootstrap 95%
percentile interval (seeds resampled within each dataset, fixed seed, so builds are reproducible),
both from ``offbench.evaluation.stats``.
Submitted aggregates are never read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BOOTSTRAP_REPS = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
# The re-run check of ``verify`` widens the entry's seed range by this many headline standard errors.
VERIFY_STDERR_MULTIPLE = 2.0


def reference(card) -> tuple[float, float] | None:
    ref = card.reference_scores or {}
    if ref.get("random") is None or ref.get("expert") is None or float(ref["expert"]) == float(ref["random"]):
        return None
    return float(ref["random"]), float(ref["expert"])


def episode_scores(returns: list[float], card) -> list[float]:
    """Per-episode normalised scores (100 (r - random) / (expert - random)), or raw returns."""
    ref = reference(card)
    if ref is None:
        return [float(r) for r in returns]
    lo, hi = ref
    return [100.0 * (float(r) - lo) / (hi - lo) for r in returns]


def _mean_stderr(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def run_headline(evaluations: list[dict], card, headline) -> tuple[float, float]:
    """``(headline score, its standard error)`` of one run; the standard error is that of the mean
    of the headline evaluations' means (independent episodes)."""
    from offbench.protocol import headline_score

    ordered = sorted(evaluations, key=lambda ev: ev["step"])
    stats = [_mean_stderr(episode_scores(ev["returns"], card)) for ev in ordered]
    score = headline_score([m for m, _ in stats], headline)
    used = stats[-1:] if headline.kind == "last" else stats[-headline.n:]
    stderr = math.sqrt(sum(se * se for _, se in used)) / len(used)
    return score, stderr


@dataclass
class DatasetScores:
    dataset: str
    normalized: bool
    seeds: list[int]
    scores: list[float]  # headline per seed, in seed order
    stderrs: list[float]
    final_success: float | None = None  # mean success rate of final evaluations, where defined

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores)

    @property
    def stderr(self) -> float:
        return _mean_stderr(self.scores)[1]

    def interval(self) -> tuple[float, float]:
        """The range a re-run's headline must fall in (``verify``): min..max over seeds, widened by
        ``VERIFY_STDERR_MULTIPLE`` times the largest per-seed headline standard error."""
        widen = VERIFY_STDERR_MULTIPLE * max(self.stderrs)
        return min(self.scores) - widen, max(self.scores) + widen


@dataclass
class EntryScores:
    name: str
    suite: str
    protocol: str
    headline: str
    datasets: dict[str, DatasetScores] = field(default_factory=dict)
    iqm: float | None = None
    ci: tuple[float, float] | None = None
    mean: float | None = None
    runs: int = 0


def score_entry(entry: dict[str, Any], protocol) -> EntryScores:
    """Recompute an (already validated) entry's per-dataset and aggregate scores."""
    from offbench.data.catalogue import get_card

    result = EntryScores(name=entry["name"], suite=entry["suite"], protocol=protocol.name,
                         headline=protocol.headline.describe(), runs=len(entry["runs"]))
    for dataset in protocol.datasets:
        card = get_card(dataset)
        runs = sorted((r for r in entry["runs"] if r["dataset"] == dataset), key=lambda r: r["seed"])
        pairs = [run_headline(r["evaluations"], card, protocol.headline) for r in runs]
        finals = [max(r["evaluations"], key=lambda ev: ev["step"]) for r in runs]
        rates = [ev.get("success_rate") if ev.get("success_rate") is not None else
                 (sum(ev["success"]) / len(ev["success"]) if ev.get("success") else None) for ev in finals]
        rates = [r for r in rates if r is not None]
        result.datasets[dataset] = DatasetScores(
            dataset=dataset, normalized=reference(card) is not None, seeds=[r["seed"] for r in runs],
            scores=[p[0] for p in pairs], stderrs=[p[1] for p in pairs],
            final_success=sum(rates) / len(rates) if len(rates) == len(runs) and rates else None)
    normalized = [d for d in result.datasets.values() if d.normalized]
    if normalized:
        matrix = np.array([d.scores for d in normalized], dtype=float).T  # [seeds, datasets]
        result.iqm = iqm(matrix)
        result.ci = bootstrap_ci(matrix)
        result.mean = float(matrix.mean())
    return result


# ---------------------------------------------------------------------- statistics
# The package's rliable-equivalent statistics (offbench.evaluation.stats), with a fixed seed per
# entry so an entry's interval does not depend on which other entries are on the board.
def iqm(matrix) -> float:
    """Interquartile mean over every (run, task) score (25% trimmed from each end; rliable's IQM)."""
    from offbench.evaluation.stats import aggregate_iqm

    return aggregate_iqm(np.asarray(matrix, dtype=float))


def bootstrap_ci(matrix, *, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED,
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Stratified-bootstrap percentile interval of the IQM (runs resampled within each task)."""
    from offbench.evaluation.stats import interval_estimates

    estimate = interval_estimates({"entry": np.asarray(matrix, dtype=float)}, ["iqm"], reps=reps, rng=seed,
                                  size=confidence)["entry"]["iqm"]
    return estimate.low, estimate.high
