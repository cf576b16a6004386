"""The skill-discovery suite in ``offbench report`` (issue 18): its metrics' tables and the figure of
the skills' trajectories.

A skills run's headline score is its coverage in cells (results.csv's ``normalized_score``, written
by ``offbench.skill_runs``), so the report's main table, aggregates, profiles and learning curves
treat it as they treat any score. This module adds, per environment and method:

- a table per further metric: the independent classifier's held-out accuracy (next to chance,
  1 / K), the I(S; Z) lower bound in nats (next to its ceiling log K) and the mean final distance
  from the start. A cell is each run's value by the protocol's headline rule, then mean ± standard
  error over seeds with a 95% bootstrap interval of the mean, as the main table's cells. Methods
  without skills (RND, uniform random actions) have no classifier: their cells are empty. These
  metrics are not aggregated over environments: accuracies and bounds of different K are on
  different scales;
- the trajectory figure: one panel per (environment, method), the x-y paths of the final
  evaluation's rollouts of the method's lowest complete seed (its ``rollouts.npz``), one colour per
  skill (the classifier's rollouts: every evaluation skill several times), or, without skills, the
  coverage rollouts in one colour; on a maze, over its walls.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

#: what the skills suite's headline score is
SKILL_UNIT = "coverage (cells)"
SKILL_SCORE = ("Coverage: the number of distinct 1 x 1 cells of the x-y plane (on HalfCheetah: 1 m/s bins of the "
               "x velocity) that the evaluation's rollouts visit "
               "(start included; METRA's state coverage), measured by code the agent never trains "
               "(offbench/evaluation/skills.py) on a fixed, seeded number of stochastic rollouts: rollout r plays "
               "categorical skill r mod K, or the r-th of as many skills drawn from a continuous prior. Higher is "
               "better; there is no reference to normalise by, so `data` does not apply and the aggregates' "
               "optimality gap (defined for normalised scores) means nothing here. IQM, mean and median are in "
               "cells, and a learning curve's slope (if shown below) in cells per 1,000 training episodes.")
#: (results.csv column, heading, reference column, digits, what it is)
METRICS = (
    ("classifier_accuracy", "Independent classifier: held-out accuracy", "classifier_chance", 2,
     "A logistic regression on quadratic features of the visited states, trained on half of the classifier's "
     "rollouts (N // K' of each of the K' evaluation skills) and tested on the other half, split by rollout; "
     "in brackets chance, 1 / K'."),
    ("mi_lower_bound", "I(S; Z) lower bound (nats)", "log_k", 2,
     "log K' + E[log q(z | s)] on the held-out states (Barber & Agakov's bound, DIAYN's objective), with q the "
     "independent classifier mixed with the uniform distribution (weight 0.05, fixed in advance; the bound holds "
     "for any q, and the mixture keeps a few confidently wrong states from dominating it); in brackets its "
     "ceiling log K'. It lies in [log 0.05, log K'] = [-3.0, log K']."),
    ("final_distance", "Mean final distance from the start", None, 1,
     "The mean over the coverage rollouts of the x-y distance between where a rollout ends and where it started."),
)
NO_SKILLS = "no skills"


def skill_tables(done, algorithms: list[str], datasets: list[str], headline, *, reps: int,
                 rng: Callable[..., Any]) -> dict:
    """``{"metrics": {column: {"title", "reference", "digits", "about", "cells": {dataset: {algorithm:
    cell or None}}}}, "trajectories": {dataset: {algorithm: {"seed", "file"}}}, "step_label"}``.
    ``done`` holds the complete runs' rows of results.csv; ``rng(*labels)`` gives each cell's
    bootstrap generator."""
    import numpy as np

    from offbench.evaluation import stats
    from offbench.protocol import headline_score

    metrics = {}
    for column, title, reference, digits, about in METRICS:
        cells: dict[str, dict[str, Any]] = {}
        for dataset in datasets:
            cells[dataset] = {}
            for algorithm in algorithms:
                rows = done[(done.algorithm == algorithm) & (done.dataset == dataset)]
                if column not in rows or rows.empty or rows[column].isna().all():
                    cells[dataset][algorithm] = None
                    continue
                seeds, values = [], []
                for run_seed, run in rows.sort_values("step").groupby("seed", sort=True):
                    seeds.append(int(run_seed))
                    values.append(headline_score(run[column].astype(float).tolist(), headline))
                est = stats.task_mean_intervals(np.asarray(values)[:, None], reps=reps,
                                                rng=rng("skill", column, algorithm, dataset))
                std = float(est["std"][0]) if math.isfinite(est["std"][0]) else None
                cells[dataset][algorithm] = {
                    "mean": float(est["mean"][0]), "stderr": None if std is None else std / math.sqrt(len(values)),
                    "low": float(est["low"][0]), "high": float(est["high"][0]), "n": len(values), "seeds": seeds,
                    "values": [float(v) for v in values],
                    "reference": None if reference is None else float(rows[reference].astype(float).mean())}
        metrics[column] = {"title": title, "reference": reference, "digits": digits, "about": about, "cells": cells}
    trajectories: dict[str, dict[str, dict]] = {}
    for dataset in datasets:
        for algorithm in algorithms:
            rows = done[(done.algorithm == algorithm) & (done.dataset == dataset)]
            if not rows.empty:
                first = rows.sort_values(["seed", "step"]).iloc[0]
                trajectories.setdefault(dataset, {})[algorithm] = {
                    "seed": int(first["seed"]), "file": str(Path(first["run_dir"]) / "rollouts.npz")}
    return {"metrics": metrics, "trajectories": trajectories, "step_label": "training episode"}


def _cell_text(cell: dict | None, digits: int, seeds: int, reference: str | None) -> str:
    if cell is None:
        return f"— ({NO_SKILLS})" if reference is not None else "—"
    text = f"{cell['mean']:.{digits}f}"
    if cell["stderr"] is not None:
        text += f" ± {cell['stderr']:.{digits}f}"
    text += f" [{cell['low']:.{digits}f}, {cell['high']:.{digits}f}]"
    if cell["reference"] is not None:
        text += f" ({'chance' if reference == 'classifier_chance' else 'log K'} {cell['reference']:.{digits}f})"
    if cell["n"] != seeds:
        text += f" (n={cell['n']})"
    return text


def markdown_lines(skills: dict, algorithms: list[str], seeds: int) -> list[str]:
    """One Markdown table per metric of :data:`METRICS` (environments x methods)."""
    lines = []
    for column, metric in skills["metrics"].items():
        lines += [f"## {metric['title']}", "", metric["about"] + " Cells: mean ± standard error over seeds "
                  "[95% bootstrap interval of the mean] of each run's value by the headline rule.", "",
                  "| environment | " + " | ".join(algorithms) + " |", "|---|" + "---|" * len(algorithms)]
        for dataset, row in metric["cells"].items():
            lines.append(f"| {dataset} | " + " | ".join(
                _cell_text(row.get(a), metric["digits"], seeds, metric["reference"]) for a in algorithms) + " |")
        lines.append("")
    return lines


def skill_colors(count: int) -> list:
    """``count`` distinct colours, one per skill: tab10 / tab20 while they last, else evenly spaced hues."""
    import matplotlib

    if count <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(count)]
    return [matplotlib.colormaps["hsv"](i / count) for i in range(count)]


def trajectory_figure(results_dir: str | Path, skills: dict, algorithm_colors: dict[str, str]):
    """The skills' trajectories (module docstring) as a matplotlib Figure; None when no run saved
    rollouts. One Line2D per rollout, coloured by its skill."""
    import numpy as np
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from offbench.envs.skill_environments import get_skill_environment, is_skill_environment

    panels = [(dataset, algorithm, info) for dataset, per in skills["trajectories"].items()
              for algorithm, info in per.items() if (Path(results_dir) / info["file"]).is_file()]
    if not panels:
        return None
    datasets = list(dict.fromkeys(d for d, _, _ in panels))
    ncols = max(sum(d == dataset for d, _, _ in panels) for dataset in datasets)
    fig = Figure(figsize=(3.2 * ncols, 3.4 * len(datasets) + 0.5), layout="constrained")
    axes = fig.subplots(len(datasets), ncols, squeeze=False)
    for row, dataset in enumerate(datasets):
        environment = get_skill_environment(dataset) if is_skill_environment(dataset) else None
        extent = environment.extent if environment is not None else None
        walls = environment.walls() if environment is not None else []
        names = environment.xy_names if environment is not None else ("x", "y")
        mine = [(a, info) for d, a, info in panels if d == dataset]
        for col in range(ncols):
            ax = axes[row, col]
            if col >= len(mine):
                ax.set_visible(False)
                continue
            algorithm, info = mine[col]
            with np.load(Path(results_dir) / info["file"], allow_pickle=False) as data:
                xy = list(data["xy"])
                if "classifier_observations" in data.files:
                    paths, labels = data["classifier_observations"][..., xy], data["classifier_labels"]
                    count = len(data["classifier_skills"])
                    colors = skill_colors(count)
                    what = f"{count} skills"
                else:
                    paths = data["coverage_observations"][..., xy]
                    labels, colors, what = np.zeros(len(paths), np.int64), [algorithm_colors[algorithm]], NO_SKILLS
            for x, y, width, height in walls:
                ax.add_patch(Rectangle((x, y), width, height, facecolor="0.8", edgecolor="none", zorder=0))
            for path, label in zip(paths, labels):
                ax.plot(path[:, 0], path[:, 1], color=colors[int(label)], lw=0.8, alpha=0.8)
            ax.scatter(paths[:, 0, 0], paths[:, 0, 1], color="black", s=12, zorder=3)
            if extent is not None:
                ax.set_xlim(-extent - 0.5, extent + 0.5)
                ax.set_ylim(-extent - 0.5, extent + 0.5)
            if extent is not None or walls:  # a plane or a maze: to scale; a runner's (x, z): stretched
                ax.set_aspect("equal")
            ax.set_title(f"{algorithm}: {what} (seed {info['seed']})", fontsize=9)
            ax.set_xlabel(f"{dataset}: {names[0]}", fontsize=8)
            ax.set_ylabel(names[1], fontsize=8)
    fig.suptitle("the skills' trajectories at the final evaluation, one colour per skill", fontsize=10)
    return fig
