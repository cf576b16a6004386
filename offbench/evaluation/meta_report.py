"""The meta-RL suite in ``offbench report`` (issue 17): trial returns beside the references, regret,
the adaptation curve, and the published numbers.

The report's headline cells are normalised trial returns (0 = random, 100 = the benchmark's
reference; ``offbench.envs.meta.benchmarks``). This module adds, per benchmark and algorithm, from
each complete run's final evaluation (results.csv's ``final`` row: ``final_eval_episodes`` held-out
trials, the same tasks for every run):

- the trial return, beside the random policy's and the reference's expected trial returns on those
  tasks, and the regret: reference − trial return (against an exact Bayes-optimal reference, the
  Bayes regret, never negative in expectation; against the per-task oracle, the price of not being
  told the task);
- the adaptation curve: the mean return of episode k = 1 .. K of the trial (``episode_returns``);
- where a paper reports the same benchmark, its numbers (the bandit: Duan et al. 2016, Table 1).

Each run's value is its mean over trials; a cell is the mean over seeds ± the standard error
(sample standard deviation / √n).
"""
from __future__ import annotations

import json
from typing import Any


def _final_values(done, algorithm: str, dataset: str, column: str) -> list:
    """Per seed (sorted), the value of ``column`` in the run's final evaluation, where it has one."""
    if column not in done.columns:
        return []
    rows = done[(done["algorithm"] == algorithm) & (done["dataset"] == dataset)]
    values = [group.sort_values("step").iloc[-1][column] for _, group in rows.groupby("seed", sort=True)]
    return [v for v in values if isinstance(v, str) and v or isinstance(v, float) and v == v]


def _runs_final_episodes(done, algorithm: str, dataset: str) -> list:
    """Per seed, the final evaluation's per-episode returns ``[trials, K]`` (numpy)."""
    import numpy as np

    return [np.asarray(json.loads(v), dtype=np.float64) for v in _final_values(done, algorithm, dataset, "episode_returns")]


def _runs_final_offline_context(done, algorithm: str, dataset: str) -> list[float]:
    """Per seed, the final evaluation's ``offline_context_score`` (offline meta-RL runs only)."""
    return [float(v) for v in _final_values(done, algorithm, dataset, "offline_context_score")]


def _mean_stderr(values) -> list:
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    stderr = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
    return [float(values.mean()), stderr, int(len(values))]


def published(dataset: str) -> dict[str, float] | None:
    """A paper's numbers for this benchmark: Duan et al. 2016 Table 1 for a bandit benchmark whose
    (pulls, arms) it lists, else None."""
    from offbench.envs.meta.bandit_references import RL2_TABLE1
    from offbench.envs.meta.benchmarks import get_benchmark

    kwargs = get_benchmark(dataset).env_kwargs
    if "arms" in kwargs and "pulls" in kwargs:
        return RL2_TABLE1.get((int(kwargs["pulls"]), int(kwargs["arms"])))
    return None


def meta_tables(done, algorithms: list[str], datasets: list[str]) -> dict:
    """``{dataset: {"benchmark", "random", "reference", "kind", "trials", "published", "cells": {algorithm: cell}}}``
    for every dataset that is a meta benchmark, or an offline meta-RL dataset evaluated on one
    (``benchmark_for_dataset``)
    (``trials``: the most common final trial count, whose references the table states; None when no
    run finished, and then the references are one held-out task's);
    a cell is ``{"trial_return", "regret", "episodes": [[mean, stderr, n] per episode k],
    "offline_context_score"}`` (each ``[mean, stderr, n]`` over seeds; the last None except for offline
    meta-RL runs), or None where no run of that algorithm finished there."""
    import numpy as np

    from offbench.envs.meta.benchmarks import benchmark_for_dataset, get_benchmark, is_meta_benchmark
    from offbench.envs.meta.metrics import adaptation_curve, bayes_regret

    out: dict[str, Any] = {}
    for dataset in datasets:
        benchmark_id = dataset if is_meta_benchmark(dataset) else benchmark_for_dataset(dataset)
        if benchmark_id is None:
            continue
        benchmark = get_benchmark(benchmark_id)
        cells = {}
        per_algorithm = {a: _runs_final_episodes(done, a, dataset) for a in algorithms}
        counts = [len(r) for runs in per_algorithm.values() for r in runs]
        # the references are expectations over the evaluated tasks (the first n of one seeded draw): the
        # table states the most common final trial count's, and a run scored on another count is held
        # against its own
        n_trials = max(set(counts), key=counts.count) if counts else None
        random, reference = benchmark.references(n_trials or 1)  # nothing finished yet: one task's
        for algorithm, runs in per_algorithm.items():
            if not runs:
                cells[algorithm] = None
                continue
            totals = [r.sum(1).mean() for r in runs]
            regrets = [bayes_regret(r, benchmark.references(len(r))[1]).mean for r in runs]
            episodes = np.stack([adaptation_curve(r)[0] for r in runs])  # [seeds, K]
            offline = _runs_final_offline_context(done, algorithm, dataset)
            cells[algorithm] = {"trial_return": _mean_stderr(totals),
                                "regret": _mean_stderr(regrets),
                                "episodes": [_mean_stderr(episodes[:, k]) for k in range(episodes.shape[1])],
                                "offline_context_score": _mean_stderr(offline) if offline else None}
        out[dataset] = {"benchmark": benchmark_id, "random": random, "reference": reference,
                        "kind": benchmark.reference_kind, "trials": n_trials, "episodes_per_trial": benchmark.episodes,
                        "published": published(benchmark_id), "cells": cells}
    return out


def _fmt(cell: list | None, digits: int) -> str:
    if cell is None:
        return "–"
    mean, stderr, n = cell
    return f"{mean:.{digits}f}" + (f" ± {stderr:.{digits}f}" if stderr is not None else "") + \
        ("" if n >= 3 else f" (n={n})")


def markdown_lines(tables: dict, algorithms: list[str]) -> list[str]:
    """The section of the report's README (nothing when the report has no meta benchmark)."""
    if not tables:
        return []
    lines = ["## Meta-RL: trial returns, regret and adaptation", "",
             "From each run's final evaluation (the held-out trials of the references below): mean over seeds "
             "± standard error. Regret = reference − trial return. Episode k: the mean return of the trial's "
             "k-th episode (the adaptation curve; MAML's episode k is played after k − 1 inner steps, "
             "docs/meta-rl.md).", ""]
    for dataset, table in tables.items():
        if table["trials"] is None:
            continue
        digits = 2 if abs(table["reference"]) < 100 else 1
        title = dataset if table["benchmark"] == dataset else f"{dataset} (played on {table['benchmark']})"
        lines += [f"### {title}", "",
                  f"{table['trials']} held-out trials of {table['episodes_per_trial']} episode(s). Random "
                  f"{table['random']:.3f}, reference ({table['kind']}) {table['reference']:.3f} per trial.", ""]
        k = table["episodes_per_trial"]
        offline = any(c and c.get("offline_context_score") for c in table["cells"].values())
        header = ["algorithm", "trial return", "regret"] + ([f"episode {i + 1}" for i in range(k)] if k > 1 else []) \
            + (["offline context (% of expert)"] if offline else [])
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for algorithm in algorithms:
            cell = table["cells"].get(algorithm)
            if cell is None:
                continue
            row = [algorithm, _fmt(cell["trial_return"], digits), _fmt(cell["regret"], digits)]
            if k > 1:
                row += [_fmt(e, digits) for e in cell["episodes"]]
            if offline:
                row.append(_fmt(cell.get("offline_context_score"), 1))
            lines.append("| " + " | ".join(row) + " |")
        if table["published"]:
            paper = ", ".join(f"{name} {value}" for name, value in table["published"].items())
            lines += ["", f"Published (Duan et al. 2016, Table 1, total reward over 1,000 instances): {paper}."]
        if offline:
            lines += ["", "Offline context: the same agent on the dataset's own tasks, its context `context_size` of each "
                          "task's offline transitions (as many as it trained with), fixed for the trial; the mean per-episode score, "
                          "0 = random, 100 = the task-aware expert (the dataset card's references)."]
        lines.append("")
    return lines
