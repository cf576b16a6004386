"""Every number on the board, recomputed from an entry's raw per-episode returns.

A run's evaluation score is the mean normalised return of its episodes,
100 (return - random) / (expert - random) with the dataset's own reference returns (its card's
``reference_scores``), or the mean raw return for a dataset without them; its headline is the
protocol's rule (``offbench.protocol.headline_score``). A suite's aggregate is the IQM over
(seed, dataset) headline scores of the normalised datasets, with a stratified-bootstrap 95%
percentile interval (seeds resampled within each dataset), from
``offbench.evaluation.stats.aggregate_estimates`` with the seed and replicates of
``offbench report``'s default, so the board and the report give the same interval for the same
scores.

Datasets whose task D4RL also has (``offbench.evaluation.literature``) are scored a second time
with D4RL's reference returns instead (``EntryScores.d4rl``), for comparison with papers; the
ranking uses the dataset's own normalisation. Submitted aggregates are never read.

A ``meta``-suite run names a benchmark (``offbench.envs.meta.benchmarks``), and its returns are
trial returns on held-out tasks: an evaluation's score is the mean *normalised trial return*,
``MetaBenchmark.normalise`` with the references of that evaluation's held-out tasks, the very
function ``offbench.meta_runs`` scores its evaluation rows with (``normalized_score``, which
``offbench report`` aggregates), so the board and the report agree. An algorithm that a protocol
restricts to some of its datasets (``[overrides.X].datasets``, e.g. PEARL: continuous actions
only) is scored on those; its entry is not ``complete`` and the board does not rank it against
the entries that ran every dataset.

A ``skills``-suite run names a skill environment (``offbench.envs.skill_environments``), and its
score is not an average over episodes: an evaluation's score is its ``coverage``, the distinct cells
its seeded rollouts visit together (the value ``offbench.skill_runs`` writes into results.csv's
``normalized_score``, which ``offbench report`` aggregates), in cells, higher is better; a run's
headline is the protocol's rule over those, with a standard error of 0 (one number per evaluation,
so ``verify``'s interval is the seeds' range). Aggregates follow as for the other suites, and the
board ranks a skills protocol per environment (``offbench.leaderboard.build.make_groups``): cells of
different environments are not comparable. Beside it, ``EntryScores.classifier`` holds the
independent classifier's held-out accuracy by the same headline rule, with its chance 1 / K', for
methods with skills.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from offbench.evaluation.stats import DEFAULT_REPS, DEFAULT_SEED, DEFAULT_SIZE

BOOTSTRAP_REPS = DEFAULT_REPS
BOOTSTRAP_SEED = DEFAULT_SEED
CONFIDENCE = DEFAULT_SIZE
# The re-run check of ``verify`` widens the entry's seed range by this many headline standard errors.
VERIFY_STDERR_MULTIPLE = 2.0


def reference(card) -> tuple[float, float] | None:
    """The dataset's own ``(random, expert)`` returns from its card, or None where it has none."""
    ref = card.reference_scores or {}
    if ref.get("random") is None or ref.get("expert") is None or float(ref["expert"]) == float(ref["random"]):
        return None
    return float(ref["random"]), float(ref["expert"])


def skill_headline(evaluations: list[dict], key: str, headline) -> float | None:
    """The protocol's headline rule over a skills run's evaluations' measurement ``key``
    (``coverage``, ``classifier_accuracy``, ...), in step order; None where an evaluation lacks it."""
    from offbench.protocol import headline_score

    values = [ev.get(key) for ev in sorted(evaluations, key=lambda ev: ev["step"])]
    if not values or any(v is None for v in values):
        return None
    return float(headline_score([float(v) for v in values], headline))


def episode_scores(returns: list[float], source) -> list[float]:
    """Per-episode scores of one evaluation: normalised with the card's reference returns (raw
    returns without them), or, for a meta benchmark (``MetaBenchmark``), each trial's normalised
    trial return on the evaluation's ``len(returns)`` held-out tasks."""
    from offbench.envs.meta.benchmarks import MetaBenchmark

    if isinstance(source, MetaBenchmark):
        return [float(v) for v in source.normalise(returns, len(returns))]
    return normalise(returns, reference(source))


def is_normalised(source) -> bool:
    """Are ``source``'s scores normalised (aggregated on the board)? A meta benchmark always has
    its references; a card needs its random and expert returns. A skill environment's coverage has
    no reference, but it is the suite's score (in cells) and aggregated as ``offbench report`` does."""
    from offbench.envs.meta.benchmarks import MetaBenchmark
    from offbench.envs.skill_environments import SkillEnvironment

    return isinstance(source, (MetaBenchmark, SkillEnvironment)) or reference(source) is not None


def normalise(returns: list[float], ref: tuple[float, float] | None) -> list[float]:
    """100 (r - random) / (expert - random) for each return r with ``ref = (random, expert)``;
    the raw returns where ``ref`` is None."""
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


def run_headline(evaluations: list[dict], source, headline) -> tuple[float, float]:
    """``(headline score, its standard error)`` of one run, scored by :func:`episode_scores` (a
    card or a meta benchmark); the standard error is that of the mean of the headline evaluations'
    means (independent episodes). A skills run (``source`` a ``SkillEnvironment``) scores its
    evaluations' coverage (:func:`skill_headline`), one number per evaluation: standard error 0."""
    from offbench.envs.skill_environments import SkillEnvironment

    if isinstance(source, SkillEnvironment):
        return skill_headline(evaluations, "coverage", headline), 0.0
    return headline_of(evaluations, lambda returns: episode_scores(returns, source), headline)


def reference_headline(evaluations: list[dict], ref: tuple[float, float] | None, headline) -> tuple[float, float]:
    """``run_headline`` with the reference returns ``ref = (random, expert)`` given (None: raw)."""
    return headline_of(evaluations, lambda returns: normalise(returns, ref), headline)


def headline_of(evaluations: list[dict], scores, headline) -> tuple[float, float]:
    """``(headline score, its standard error)`` of one run whose evaluation's per-episode scores
    are ``scores(returns)``."""
    from offbench.protocol import headline_score

    ordered = sorted(evaluations, key=lambda ev: ev["step"])
    stats = [_mean_stderr(scores(ev["returns"])) for ev in ordered]
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
class ClassifierScores:
    """A skills entry's independent-classifier accuracy on one environment: each seed's value by the
    protocol's headline rule, and chance (1 / K', from the final evaluations). Shown, never ranked."""

    dataset: str
    seeds: list[int]
    accuracies: list[float]  # headline rule per seed, in seed order
    chance: float

    @property
    def mean(self) -> float:
        return sum(self.accuracies) / len(self.accuracies)

    @property
    def stderr(self) -> float:
        return _mean_stderr(self.accuracies)[1]


@dataclass
class D4RLScores:
    """An entry's headline scores normalised with D4RL's reference returns instead of the
    datasets' own (``offbench.evaluation.literature``), for comparison with papers: the datasets
    whose task D4RL has, aggregated as the entry's own scores are. Never used for ranking."""

    datasets: dict[str, DatasetScores]
    iqm: float
    ci: tuple[float, float]
    mean: float


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
    d4rl: D4RLScores | None = None  # None where no dataset's task has D4RL reference returns
    #: the entry ran every dataset of the protocol; False for an algorithm the protocol restricts to
    #: some of them (``[overrides.X].datasets``): its aggregate is over those only, and it is not ranked
    complete: bool = True
    #: skills suite: the independent classifier's accuracy per environment (methods with skills only)
    classifier: dict[str, ClassifierScores] = field(default_factory=dict)


def score_entry(entry: dict[str, Any], protocol) -> EntryScores:
    """Recompute an (already validated) entry's per-dataset and aggregate scores, over the
    datasets the protocol runs its algorithm on (``Protocol.datasets_for``)."""
    from offbench.evaluation.literature import d4rl_reference
    from offbench.leaderboard.validate import run_source

    planned = protocol.datasets_for(entry["algorithm"]["import_path"])
    result = EntryScores(name=entry["name"], suite=entry["suite"], protocol=protocol.name,
                         headline=protocol.headline.describe(), runs=len(entry["runs"]),
                         complete=len(planned) == len(protocol.datasets))
    d4rl: dict[str, DatasetScores] = {}
    for dataset in planned:
        card = run_source(protocol, dataset)
        runs = sorted((r for r in entry["runs"] if r["dataset"] == dataset), key=lambda r: r["seed"])
        seeds = [r["seed"] for r in runs]
        pairs = [run_headline(r["evaluations"], card, protocol.headline) for r in runs]
        finals = [max(r["evaluations"], key=lambda ev: ev["step"]) for r in runs]
        rates = [ev.get("success_rate") if ev.get("success_rate") is not None else
                 (sum(ev["success"]) / len(ev["success"]) if ev.get("success") else None) for ev in finals]
        rates = [r for r in rates if r is not None]
        result.datasets[dataset] = DatasetScores(
            dataset=dataset, normalized=is_normalised(card), seeds=seeds,
            scores=[p[0] for p in pairs], stderrs=[p[1] for p in pairs],
            final_success=sum(rates) / len(rates) if len(rates) == len(runs) and rates else None)
        accuracies = [skill_headline(r["evaluations"], "classifier_accuracy", protocol.headline) for r in runs]
        if runs and all(a is not None for a in accuracies):  # a skills method with skills
            chances = [float(ev["classifier_chance"]) for ev in finals]
            result.classifier[dataset] = ClassifierScores(dataset=dataset, seeds=seeds, accuracies=accuracies,
                                                          chance=sum(chances) / len(chances))
        ref = d4rl_reference(dataset) if protocol.suite != "skills" else None  # coverage: not a return
        if ref is not None:
            pairs = [reference_headline(r["evaluations"], (ref.random, ref.expert), protocol.headline) for r in runs]
            d4rl[dataset] = DatasetScores(dataset=dataset, normalized=True, seeds=seeds,
                                          scores=[p[0] for p in pairs], stderrs=[p[1] for p in pairs])
    normalized = [d for d in result.datasets.values() if d.normalized]
    if normalized:
        result.iqm, result.ci, result.mean = aggregate(normalized)
    if d4rl:
        result.d4rl = D4RLScores(d4rl, *aggregate(list(d4rl.values())))
    return result


# ---------------------------------------------------------------------- statistics
# The package's rliable-equivalent statistics (offbench.evaluation.stats), with a fixed seed per
# entry so an entry's interval does not depend on which other entries are on the board.
def aggregate(datasets: list[DatasetScores]) -> tuple[float, tuple[float, float], float]:
    """``(IQM, its 95% interval, mean)`` over the (seed, dataset) headline scores of ``datasets``."""
    matrix = np.array([d.scores for d in datasets], dtype=float).T  # [seeds, datasets]
    return iqm(matrix), bootstrap_ci(matrix), float(matrix.mean())


def iqm(matrix) -> float:
    """Interquartile mean over every (run, task) score (25% trimmed from each end; rliable's IQM)."""
    from offbench.evaluation.stats import aggregate_iqm

    return aggregate_iqm(np.asarray(matrix, dtype=float))


def bootstrap_ci(matrix, *, reps: int = BOOTSTRAP_REPS, seed: int = BOOTSTRAP_SEED,
                 confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Stratified-bootstrap percentile interval of the IQM (runs resampled within each task),
    drawn as ``offbench report`` draws its aggregate intervals (``stats.aggregate_estimates``)."""
    from offbench.evaluation.stats import aggregate_estimates

    estimate = aggregate_estimates(np.asarray(matrix, dtype=float), ["iqm"], reps=reps, seed=seed,
                                   size=confidence)["iqm"]
    return estimate.low, estimate.high
