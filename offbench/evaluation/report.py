"""``offbench report``: tables, aggregate statistics and figures from a results directory.

``write_report(RESULTS_DIR)`` reads what ``offbench reproduce`` wrote (docs/evaluation.md) and
writes ``RESULTS_DIR/report/``: the baseline table (``table.md``/``.csv``/``.tex``: per dataset
mean ± standard error of the protocol's headline score over seeds (the leaderboard's per-dataset
cells, ``offbench.leaderboard``) with a 95% bootstrap interval, plus
per-suite mean and IQM rows), the best-over-training table as a labelled optimistic secondary,
``aggregates.csv`` and ``probability_of_improvement.csv`` (rliable statistics,
``offbench.evaluation.stats``), PNG figures, ``report.json`` (every number shown) and a README.

Scores are normalised with each dataset's own reference returns (its card's random and expert
returns). Where a dataset's task is one of D4RL's (``offbench.evaluation.literature``), the
report adds a second, labelled table of the same headline scores normalised with D4RL's
reference returns, for comparison with papers (``report.json``'s ``d4rl``; rows marked ``d4rl``
in ``table.csv``); it is never the headline.

Runs that failed or did not reach their final step are listed, never silently averaged: a
dataset enters the aggregates only when every aggregated algorithm finished it on every seed of
the protocol (rliable's statistics need the same tasks and runs), and the report names what was
dropped. Every bootstrap draws from its own generator, so numbers are reproducible and do not
change when another algorithm is added: a cell, curve, profile or pair from one seeded by
``(seed, what it is for)``; an aggregate (IQM, mean, median, optimality gap) from
``stats.aggregate_estimates`` seeded by ``seed`` alone, as the leaderboard does, so the same scores
give the same aggregate intervals in the report and on the board.
"""
from __future__ import annotations

import io
import json
import math
import warnings
import zlib
from pathlib import Path
from typing import Any

from offbench.errors import OffbenchError
from offbench.evaluation import settling
from offbench.evaluation.colors import assign_colors
from offbench.evaluation.literature import D4RL_SOURCE, D4RL_TITLE, OGBENCH_SOURCE, OGBENCH_TITLE, d4rl_reference, \
    ogbench_success
from offbench.evaluation.results import SUCCESS_UNIT, run_dataset_sha256, success_scored
from offbench.evaluation.exorl_report import exorl_comparison
from offbench.evaluation.exorl_report import markdown_lines as exorl_markdown_lines
from offbench.evaluation.meta_report import markdown_lines as meta_markdown_lines
from offbench.evaluation.meta_report import meta_tables
from offbench.evaluation.skill_report import SKILL_SCORE, SKILL_UNIT, skill_tables, trajectory_figure
from offbench.evaluation.skill_report import markdown_lines as skill_markdown_lines

FIGURES = {"learning_curves": "learning_curves.png", "aggregate_metrics": "aggregate_metrics.png",
           "performance_profiles": "performance_profiles.png",
           "probability_of_improvement": "probability_of_improvement.png",
           "skill_trajectories": "skill_trajectories.png"}
MISSING_CELL = "—"
PROFILE_POINTS = 101


# ---------------------------------------------------------------------- helpers
def _rng(seed: int, *labels: Any):
    """An independent generator per use: adding an algorithm leaves the others' intervals alone."""
    import numpy as np

    return np.random.default_rng([seed, *(zlib.crc32(str(label).encode()) for label in labels)])


def _finite(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _fmt(x: float | None, digits: int = 1) -> str:
    return MISSING_CELL if x is None else f"{x:.{digits}f}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _suite_of(dataset: str, default: str) -> str:
    return dataset.split("/", 1)[0] if "/" in dataset else default


def combined_provenance(manifest: dict) -> dict:
    """A combined table's (``offbench combine``) commits and dataset builds: which algorithms' runs
    came from which commit, and the datasets whose file differs between algorithms."""
    commits: dict[str, set] = {}
    for run in manifest.get("runs", []):
        commits.setdefault(str(run.get("git_commit") or "unknown"), set()).add(str(run.get("algorithm")))
    return {"commits": {c: sorted(a) for c, a in sorted(commits.items())},
            "rebuilt_datasets": sorted(d for d, h in (manifest.get("dataset_sha256") or {}).items() if h is None)}


def _card_sha256(dataset: str) -> str | None:
    from offbench.data.catalogue import get_card

    try:
        return get_card(dataset).sha256
    except OffbenchError:
        return None


def trained_files(manifest: dict) -> dict[str, dict[str, set[str]]]:
    """``{dataset: {sha256: {algorithm, ...}}}``: the files the finished runs trained on (their
    SHA-256 per run in a combined table, else the manifest's) and which algorithms used each."""
    out: dict[str, dict[str, set[str]]] = {}
    for run in manifest.get("runs", []):
        digest = run_dataset_sha256(manifest, run)
        if run.get("status") == "finished" and run.get("dataset") and digest:
            out.setdefault(run["dataset"], {}).setdefault(digest, set()).add(str(run["algorithm"]))
    return out


def rebuilt_cells(manifest: dict) -> dict[str, list[str]]:
    """``{algorithm: [dataset, ...]}``: the datasets an algorithm's runs trained on a file other than the
    card's (its SHA-256 in the manifest, per run in a combined table, differs from the card's ``sha256``):
    local rebuilds, which on another CPU are not the card's bytes and may not be its distribution."""
    out: dict[str, list[str]] = {}
    for dataset, builds in trained_files(manifest).items():
        card = _card_sha256(dataset)
        for digest, algorithms in builds.items():
            for algorithm in algorithms if card and digest != card else ():
                out.setdefault(algorithm, []).append(dataset)
    return {a: sorted(set(d)) for a, d in sorted(out.items())}


def data_builds(manifest: dict, datasets: list[str], references: dict | None = None) -> dict[str, list[dict]]:
    """The `data` level of each build of a dataset that its runs trained on, for the datasets where a
    run trained on a file other than the card's: ``{dataset: [{"sha256", "card", "level",
    "algorithms"}, ...]}``, the card's file first. A rebuild's level is its mean episode return as the
    manifest's ``dataset_files`` records it (written by reproduce and combine), normalised like the
    card's (``references``: ``{dataset: (random, expert)}``, default the card's own); None where the
    file was not recorded. Goal datasets are left out: their level is the collecting policy's
    success rate, which does not depend on the file."""
    files, out = manifest.get("dataset_files") or {}, {}
    for dataset, builds in trained_files(manifest).items():
        card_hash = _card_sha256(dataset)
        if dataset not in datasets or not card_hash or set(builds) == {card_hash} or success_scored(dataset):
            continue
        reference, rows = (references or {}).get(dataset), []
        for digest in sorted(builds, key=lambda h: (h != card_hash, h)):
            mean = (files.get(digest) or {}).get("return_mean")
            level = (_behaviour_score(dataset, reference) if digest == card_hash else
                     None if mean is None else _behaviour_score(dataset, reference, mean=mean))
            rows.append({"sha256": digest, "card": digest == card_hash, "level": level,
                         "algorithms": sorted(builds[digest])})
        out[dataset] = rows
    return out


def _commit_text(manifest: dict) -> str:
    """The report's commit line: the commit, or for a combined table each commit and its algorithms."""
    combined = manifest.get("combined")
    if not combined:
        return manifest.get("git_commit") or "unknown"
    line = "combined (offbench combine) from runs at " + ", ".join(
        f"{c[:7]} ({', '.join(a)})" for c, a in combined["commits"].items())
    if combined["rebuilt_datasets"]:
        line += (f"; {len(combined['rebuilt_datasets'])} datasets were rebuilt between those runs (not bit for bit): "
                 "each algorithm's runs on a dataset share one build, recorded per run in manifest.json")
    return line


def _train_setting(protocol, algorithm: str, key: str):
    """A run's training setting: protocol ``[train]`` < overrides < TrainConfig's default."""
    values = {**protocol.train, **protocol.per_algorithm.get(algorithm, {}).get("train", {})}
    if key in values:
        return values[key]
    from dataclasses import MISSING, fields

    from offbench.train import TrainConfig

    default = {f.name: f.default for f in fields(TrainConfig)}.get(key, MISSING)
    return None if default is MISSING else default


def _is_true(values):
    return values.astype(str).str.strip().str.lower().isin(["true", "1", "1.0"])


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else "no error recorded"


# ---------------------------------------------------------------------- the numbers
def build_report(results_dir: str | Path, *, reps: int = 2000, seed: int = 0) -> dict:
    """Every number of the report as a JSON-ready dict (nothing is written)."""
    import numpy as np

    from offbench.evaluation import stats
    from offbench.evaluation.results import load_results, run_scores, score_matrix

    if reps < 1:
        raise OffbenchError(f"--reps must be a positive number of bootstrap replicates, got {reps}")
    if seed < 0:
        raise OffbenchError(f"--seed must be >= 0, got {seed}")
    results_dir = Path(results_dir)
    protocol, manifest, table = load_results(results_dir)
    table = table.copy()
    table["final"] = _is_true(table["final"])
    default_suite = protocol.suite
    algorithms = list(dict.fromkeys([*protocol.algorithms, *sorted(set(table["algorithm"]))]))
    datasets = list(dict.fromkeys([*protocol.datasets, *sorted(set(table["dataset"]))]))
    seeds = list(protocol.seeds)

    # -- which runs are complete (reached their final evaluation), and why the others are not
    runs = {}
    for (algorithm, dataset, run_seed), group in table.groupby(["algorithm", "dataset", "seed"], sort=True):
        runs[(algorithm, dataset, int(run_seed))] = {"complete": bool(group["final"].any()),
                                                     "last_step": int(group["step"].max())}
    statuses = {(r.get("algorithm"), r.get("dataset"), int(r.get("seed", -1))): r
                for r in manifest.get("runs", []) if isinstance(r, dict)}
    missing = []
    for algorithm in algorithms:
        for dataset in [d for d in datasets if d in protocol.datasets_for(algorithm)
                        or any(k[:2] == (algorithm, d) for k in runs)]:  # the runs the protocol plans
            for run_seed in sorted(set(seeds) | {k[2] for k in runs if k[:2] == (algorithm, dataset)}):
                key = (algorithm, dataset, run_seed)
                if runs.get(key, {}).get("complete"):
                    continue
                status = statuses.get(key, {})
                if status.get("status") == "failed":
                    reason = f"failed: {_first_line(status.get('error'))}"
                elif key in runs:
                    reason = (f"incomplete: last evaluation at step {runs[key]['last_step']} of "
                              f"{_train_setting(protocol, algorithm, 'steps')}")
                else:
                    reason = "not run"
                missing.append({"algorithm": algorithm, "dataset": dataset, "seed": run_seed, "reason": reason})

    # -- headline and best-over-training score of every complete run; a dataset without
    #    normalised scores is reported in raw returns and kept out of the aggregates
    complete_keys = {k for k, v in runs.items() if v["complete"]}
    if not complete_keys:  # nothing to score: say why, instead of failing on an empty table
        why = "; ".join(f"{m['algorithm']} {m['dataset']} seed {m['seed']}: {m['reason']}" for m in missing[:5])
        raise OffbenchError(f"{results_dir} has no finished runs to report ({why}{'; ...' if len(missing) > 5 else ''}); "
                            "see manifest.json and the failed runs' error.log, then rerun `offbench reproduce` (it resumes)")
    keep = [(a, d, int(s)) in complete_keys for a, d, s in zip(table["algorithm"], table["dataset"], table["seed"])]
    done = table[keep]
    units = {}
    for dataset in datasets:
        rows = done[done["dataset"] == dataset]
        units[dataset] = "normalized_score" if rows["normalized_score"].notna().any() or rows.empty else "return_mean"
    import pandas as pd

    parts = [run_scores(done[done["dataset"].isin([d for d in datasets if units[d] == unit])], protocol.headline,
                        score=unit) for unit in ("normalized_score", "return_mean")]
    scores = pd.concat([p for p in parts if not p.empty] or [parts[0]], ignore_index=True)

    def cells_for(frame, column: str, cell_datasets: list[str]) -> dict:
        cells: dict[str, dict[str, Any]] = {}
        for dataset in cell_datasets:
            cells[dataset] = {}
            for algorithm in algorithms:
                sub = frame[(frame.algorithm == algorithm) & (frame.dataset == dataset)].sort_values("seed")
                if sub.empty:
                    cells[dataset][algorithm] = None
                    continue
                values = sub[column].to_numpy(dtype=float)
                est = stats.task_mean_intervals(values[:, None], reps=reps, rng=_rng(seed, "cell", column, algorithm,
                                                                                      dataset))
                std = _finite(est["std"][0])
                cells[dataset][algorithm] = {
                    "mean": float(est["mean"][0]), "std": std,
                    "stderr": None if std is None else std / math.sqrt(int(est["n"])),
                    "low": float(est["low"][0]), "high": float(est["high"][0]), "n": int(est["n"]),
                    "seeds": [int(s) for s in sub["seed"]], "scores": [float(v) for v in values]}
        return cells

    cells = {"headline": cells_for(scores, "score", datasets), "best": cells_for(scores, "best", datasets)}

    # -- which datasets can be aggregated: normalised, and finished on every protocol seed by every
    #    aggregated algorithm (algorithms with no complete dataset at all are left out instead)
    notes = []
    normalised = [d for d in datasets if units[d] == "normalized_score"]
    raw = [d for d in datasets if units[d] != "normalized_score"]
    if raw:
        notes.append(f"reported in raw return (no normalised score), not aggregated: {', '.join(raw)}")

    def full(algorithm: str, dataset: str) -> bool:
        cell = cells["headline"][dataset][algorithm]
        return cell is not None and set(seeds) <= set(cell["seeds"])

    # an algorithm the protocol runs on some of its datasets only ([overrides.X].datasets) keeps its
    # cells but not a place in the aggregates, which would otherwise shrink to its datasets
    restricted = {a: protocol.datasets_for(a) for a in algorithms
                  if set(protocol.datasets_for(a)) != set(protocol.datasets)}
    aggregated_algorithms = [a for a in algorithms if a not in restricted and any(full(a, d) for d in normalised)]
    for algorithm in algorithms:
        if algorithm in restricted:
            notes.append(f"{algorithm}: shown with its cells, left out of the aggregates (the protocol runs it on "
                         f"{len(restricted[algorithm])} of {len(protocol.datasets)} datasets)")
        elif algorithm not in aggregated_algorithms:
            notes.append(f"{algorithm}: left out of the aggregates (no dataset finished on all {len(seeds)} seeds)")
    aggregate_datasets = [d for d in normalised if all(full(a, d) for a in aggregated_algorithms)]
    for dataset in normalised:
        if dataset not in aggregate_datasets:
            short = [f"{a} ({len(cells['headline'][dataset][a]['seeds']) if cells['headline'][dataset][a] else 0}"
                     f"/{len(seeds)} seeds)" for a in aggregated_algorithms if not full(a, dataset)]
            notes.append(f"{dataset}: dropped from the aggregates, incomplete for {', '.join(short)}")
    if not aggregated_algorithms or not aggregate_datasets:
        notes.append("no aggregate statistics: no dataset is complete for the algorithms")
        aggregate_datasets = []

    groups = _suite_groups(aggregate_datasets, default_suite)

    # rliable's [runs (seeds), tasks (datasets)] matrices, restricted to the protocol's seeds
    run_table = scores[scores.seed.isin(seeds)]

    def aggregates_for(frame, frame_groups: dict[str, list[str]]) -> dict:
        """``{group: {algorithm: {metric: estimate}}}`` of ``frame``'s ``score`` column."""
        out = {}
        for group, group_datasets in frame_groups.items():
            out[group] = {}
            for algorithm in aggregated_algorithms:
                est = stats.aggregate_estimates(score_matrix(frame, algorithm, group_datasets), reps=reps, seed=seed)
                out[group][algorithm] = {m: e.to_dict() for m, e in est.items()}
        return out

    aggregates = {"headline": aggregates_for(run_table, groups),
                  "best": aggregates_for(run_table.drop(columns=["score"]).rename(columns={"best": "score"}), groups)}

    # -- the same headline scores on D4RL's scale, for the datasets whose task D4RL has. The
    #    normalisation is linear in the return, so a run's D4RL score follows from its evaluations'
    #    mean returns by the same headline rule.
    references = {d: ref for d in datasets if (ref := d4rl_reference(d)) is not None}
    d4rl = None
    if references:
        d4rl_rows = done[done["dataset"].isin(list(references))].copy()
        d4rl_rows["d4rl_score"] = [references[d].normalise(r)
                                   for d, r in zip(d4rl_rows["dataset"], d4rl_rows["return_mean"])]
        d4rl_scores = run_scores(d4rl_rows, protocol.headline, score="d4rl_score")
        d4rl_datasets = [d for d in datasets if d in references]
        d4rl_aggregate = [d for d in aggregate_datasets if d in references]
        d4rl_groups = _suite_groups(d4rl_aggregate, default_suite)
        d4rl = {"label": D4RL_TITLE, "source": D4RL_SOURCE, "datasets": d4rl_datasets,
                "references": {d: _reference_record(d, references[d]) for d in d4rl_datasets},
                "behaviour": {d: _behaviour_score(d, (references[d].random, references[d].expert))
                              for d in d4rl_datasets},
                "behaviour_builds": data_builds(manifest, d4rl_datasets, {
                    d: (references[d].random, references[d].expert) for d in d4rl_datasets}),
                "cells": cells_for(d4rl_scores, "score", d4rl_datasets),
                "aggregate_datasets": d4rl_aggregate, "aggregate_groups": d4rl_groups,
                "aggregates": aggregates_for(d4rl_scores[d4rl_scores.seed.isin(seeds)], d4rl_groups)}

    score_dict = {a: score_matrix(run_table, a, aggregate_datasets) for a in aggregated_algorithms} \
        if aggregate_datasets else {}
    poi = []
    for x in score_dict:
        for y in score_dict:
            if x != y:
                e = stats.probability_of_improvement_interval(score_dict[x], score_dict[y], reps=reps,
                                                              rng=_rng(seed, "poi", x, y))
                poi.append({"algorithm_x": x, "algorithm_y": y, "probability": e.value, "low": e.low, "high": e.high})

    profiles = {}
    if score_dict:
        everything = np.concatenate([m.ravel() for m in score_dict.values()])
        lo, hi = min(0.0, math.floor(everything.min())), max(100.0, math.ceil(everything.max()))
        taus = np.linspace(lo, hi, PROFILE_POINTS)
        for algorithm, matrix in score_dict.items():
            p = stats.performance_profile({algorithm: matrix}, taus, reps=reps,
                                          rng=_rng(seed, "profile", algorithm))[algorithm]
            profiles[algorithm] = {k: [float(v) for v in p[k]] for k in ("profile", "low", "high")}
        profiles = {"taus": [float(t) for t in taus], "kind": "score distribution (fraction of runs x datasets "
                    "with score > tau)", "algorithms": profiles}

    # -- learning curves: mean and 95% bootstrap band over the complete seeds at each evaluation step
    curves: dict[str, dict[str, Any]] = {}
    for dataset in datasets:
        curves[dataset] = {}
        for algorithm in algorithms:
            rows = done[(done.algorithm == algorithm) & (done.dataset == dataset)]
            if rows.empty:
                continue
            wide = rows.pivot_table(index="seed", columns="step", values=units[dataset], aggfunc="mean")
            wide = wide.dropna(axis=1)  # steps every seed evaluated
            if wide.shape[1] == 0:
                continue
            est = stats.task_mean_intervals(wide.to_numpy(dtype=float), reps=reps,
                                            rng=_rng(seed, "curve", algorithm, dataset))
            curves[dataset][algorithm] = {"step": [int(s) for s in wide.columns],
                                          **{k: [float(v) for v in est[k]] for k in ("mean", "low", "high")},
                                          "n": int(est["n"])}

    # -- goal tasks: success rate per evaluation task (OGBench's 5 per maze), by the headline rule
    per_task = _per_task_success(done, [d for d in datasets if units[d] == "normalized_score" and success_scored(d)],
                                 algorithms, protocol.headline)

    # -- has each cell's curve settled? (slope over the last evaluations, evaluation/settling.py)
    slopes = settling.curve_slopes(done, units, window=max(settling.DEFAULT_WINDOW, protocol.headline.n),
                                   min_change={d: settling.MIN_CHANGE if units[d] == "normalized_score" else 0.0
                                               for d in datasets},
                                   swing_scale=_score_scales([d for d in datasets if units[d] == "normalized_score"
                                                              and not success_scored(d)]))

    steps = {a: _train_setting(protocol, a, "steps") for a in algorithms}
    # the skills suite: a table per skill metric and the rollouts to draw (offbench.evaluation.skill_report)
    skills = {"skills": skill_tables(done, algorithms, datasets, protocol.headline, reps=reps,
                                     rng=lambda *labels: _rng(seed, *labels))} if protocol.suite == "skills" else {}
    # the explore suite: each learner on exploratory data against the task's replay data (ExORL)
    rebuilt = rebuilt_cells(manifest)
    exorl = ({"exorl": exorl_comparison(cells["headline"], datasets, algorithms, rebuilt=rebuilt)}
             if protocol.suite == "explore" else {})
    # the meta suite: trial returns against the references, regret, adaptation curves (evaluation/meta_report.py)
    meta = {"meta": meta_tables(done, algorithms, datasets)} if protocol.suite in ("meta", "meta-offline") else {}
    return {
        "results_dir": str(results_dir),
        "protocol": {"name": protocol.name, "suite": protocol.suite, "description": protocol.description,
                     "headline": {"kind": protocol.headline.kind, "n": protocol.headline.n,
                                  "describe": protocol.headline.describe()},
                     "seeds": seeds, "steps": steps, "eval_every": _train_setting(protocol, algorithms[0], "eval_every")
                     if algorithms else None},
        "manifest": {"git_commit": manifest.get("git_commit"), "wall_time_seconds": manifest.get("wall_time_seconds"),
                     "offbench_version": manifest.get("offbench_version"), "backend": manifest.get("backend"),
                     **({"combined": combined_provenance(manifest)} if manifest.get("combined") else {})},
        "bootstrap": {"reps": reps, "seed": seed, "confidence": stats.DEFAULT_SIZE,
                      "method": "stratified bootstrap over seeds (within each dataset), percentile interval"},
        "algorithms": algorithms, "datasets": datasets,
        "eval_trials": {d: sorted({int(n) for n in done.loc[done["dataset"] == d, "episodes"]}) for d in datasets},
        "units": {d: (SKILL_UNIT if skills and units[d] == "normalized_score" else
                      META_UNIT if d in meta.get("meta", {}) and units[d] == "normalized_score" else
                      SUCCESS_UNIT if units[d] == "normalized_score" and success_scored(d) else
                      "normalised score" if units[d] == "normalized_score" else "return") for d in datasets},
        "score_label": _score_label([d for d in datasets if units[d] == "normalized_score"]),
        "per_task": per_task,
        "behaviour": {d: _behaviour_score(d) for d in datasets},  # the card's file; behaviour_builds: the files trained on
        "behaviour_builds": data_builds(manifest, datasets),
        "suites": {d: _suite_of(d, default_suite) for d in datasets},
        "cells": cells,
        "aggregate_datasets": aggregate_datasets, "aggregate_algorithms": aggregated_algorithms,
        "aggregate_groups": groups, "aggregates": aggregates,
        "optimality_gap_gamma": stats.DEFAULT_GAMMA,
        "probability_of_improvement": poi, "performance_profiles": profiles, "learning_curves": curves,
        "missing_runs": missing, "notes": notes, "d4rl": d4rl, "settling": slopes,
        "published": _published(datasets, algorithms), "rebuilt": rebuilt, **skills, **exorl, **meta,
    }


def _published(datasets: list[str], algorithms: list[str]) -> dict | None:
    """OGBench's Table 2 cells for the report's goal datasets and algorithms (None if it has none)."""
    cells = {d: {a: list(v) for a in algorithms if (v := ogbench_success(d, a)) is not None} for d in datasets}
    cells = {d: row for d, row in cells.items() if row}
    return {"label": OGBENCH_TITLE, "source": OGBENCH_SOURCE, "cells": cells} if cells else None


def _suite_groups(datasets: list[str], default_suite: str) -> dict[str, list[str]]:
    """The aggregate groups of ``datasets``: one per suite, plus ``all`` when there are several."""
    suites = list(dict.fromkeys(_suite_of(d, default_suite) for d in datasets))
    groups = {s: [d for d in datasets if _suite_of(d, default_suite) == s] for s in suites}
    if len(suites) > 1:
        groups["all"] = list(datasets)
    return groups


def _score_label(normalised: list[str]) -> str:
    """What the aggregate scores are: success rates when every normalised dataset is success-scored,
    normalised trial returns when every one is a meta-RL benchmark."""
    from offbench.envs.meta.benchmarks import benchmark_for_dataset, is_meta_benchmark
    from offbench.envs.skill_environments import is_skill_environment

    if normalised and all(is_meta_benchmark(d) or benchmark_for_dataset(d) for d in normalised):
        return META_UNIT
    if normalised and all(is_skill_environment(d) for d in normalised):
        return SKILL_UNIT
    return SUCCESS_UNIT if normalised and all(success_scored(d) for d in normalised) else "normalised score"


#: what a meta-RL benchmark's score is (offbench.envs.meta.benchmarks)
META_UNIT = "normalised trial return"
META_SCORE = ("Normalised trial return: 100 (trial return − random) / (reference − random) on held-out tasks, "
              "where `random` is the uniformly random policy's expected trial return and `reference` the "
              "benchmark's exact Bayes-optimal trial return, or the per-task oracle's (offbench/envs/meta/"
              "benchmarks.py): 0 = random, 100 = the best possible. `data` does not apply (no dataset).")
#: the same for offline meta-RL runs (a meta/<family>/<name>-v0 dataset played on its family's benchmark)
META_SCORE_OFFLINE = META_SCORE.replace(
    "`data` does not apply (no dataset).",
    "An offline run on a meta/<family>/<name>-v0 dataset plays its family's benchmark, meta/<family>-v0, "
    "with the context it collects itself (offbench/evaluation/meta_adaptation.py). `data`: the dataset's own "
    "mean episode return normalised with its card (0 = random, 100 = the task-aware expert; per episode, not "
    "per trial, so not on the same scale).")


def _meta_reference_lines(report: dict) -> list[str]:
    """The references of the meta section's tables (evaluation/meta_report.py), one row per benchmark."""
    lines = ["| benchmark | random | reference | kind |", "|---|---|---|---|"]
    for dataset, table in (report.get("meta") or {}).items():
        name = dataset if table["benchmark"] == dataset else f"{dataset} (on {table['benchmark']})"
        lines.append(f"| {name} | {table['random']:.3f} | {table['reference']:.3f} | {table['kind']} |")
    return lines + [""]


def _per_task_success(done, datasets: list[str], algorithms: list[str], headline) -> dict:
    """``{dataset: {"tasks": [...], "cells": {algorithm: {task: {mean, stderr, n}}}}}``: each run's
    success rate (%) on each evaluation task, by the protocol's headline rule over its evaluations,
    then mean and standard error over seeds. Only rows that recorded per-episode task ids count."""
    import numpy as np

    from offbench.protocol import headline_score

    out = {}
    for dataset in datasets:
        rows = done[(done["dataset"] == dataset) & done["task_ids"].notna() & done["successes"].notna()]
        if rows.empty:
            continue
        per_run: dict[str, dict[int, list[float]]] = {}
        tasks: set[int] = set()
        for (algorithm, _seed), group in rows.sort_values("step").groupby(["algorithm", "seed"], sort=True):
            series: dict[int, list[float]] = {}
            for ids_text, flags_text in zip(group["task_ids"], group["successes"]):
                ids, flags = np.asarray(json.loads(ids_text)), np.asarray(json.loads(flags_text), dtype=float)
                for task in sorted(set(ids.tolist())):
                    series.setdefault(int(task), []).append(100.0 * float(flags[ids == task].mean()))
            for task, values in series.items():
                tasks.add(task)
                per_run.setdefault(algorithm, {}).setdefault(task, []).append(headline_score(values, headline))
        cells = {}
        for algorithm in algorithms:
            cells[algorithm] = {}
            for task, values in sorted(per_run.get(algorithm, {}).items()):
                v = np.asarray(values)
                stderr = float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None
                cells[algorithm][str(task)] = {"mean": float(v.mean()), "stderr": stderr, "n": int(len(v))}
        out[dataset] = {"tasks": sorted(tasks), "cells": cells}
    return out


def _reference_record(dataset: str, ref) -> dict:
    """D4RL's reference returns of a dataset's task next to the dataset's own (its card's)."""
    from offbench.data.catalogue import get_card

    try:
        own = get_card(dataset).reference_scores or {}
    except OffbenchError:
        own = {}
    return {"task": ref.task, "d4rl_env_id": ref.literature_env_id, "d4rl_random": ref.random,
            "d4rl_expert": ref.expert, "dataset_random": own.get("random"), "dataset_expert": own.get("expert")}


# ---------------------------------------------------------------------- text renderings
OWN_NORMALISATION = ("Normalised score: 100 (return − random) / (expert − random), with the random and expert "
                     "returns of the dataset's own card (`reference_scores`).")


def _view(report: dict, kind: str) -> dict:
    """One table of the report: ``headline`` or ``best`` (each dataset's own normalisation), or
    ``d4rl`` (the headline scores on D4RL's scale): its datasets, cells, behaviour levels, units,
    normalisation and aggregates."""
    if kind == "d4rl":
        d4rl = report["d4rl"]
        return {"datasets": d4rl["datasets"], "cells": d4rl["cells"], "behaviour": d4rl["behaviour"],
                "behaviour_builds": d4rl.get("behaviour_builds") or {},
                "units": {d: "normalised score" for d in d4rl["datasets"]}, "normalisation": "d4rl",
                "groups": d4rl["aggregate_groups"], "aggregates": d4rl["aggregates"]}
    return {"datasets": report["datasets"], "cells": report["cells"][kind], "behaviour": report["behaviour"],
            "behaviour_builds": report.get("behaviour_builds") or {},
            "units": report["units"], "normalisation": "dataset", "groups": report["aggregate_groups"],
            "aggregates": report["aggregates"][kind], "score_label": report.get("score_label", "normalised score")}


def _header_lines(report: dict) -> list[str]:
    p, m = report["protocol"], report["manifest"]
    steps = p["steps"]
    common = max(set(steps.values()), key=list(steps.values()).count) if steps else None
    exceptions = ", ".join(f"{a}: {s}" for a, s in steps.items() if s != common)
    wall = m.get("wall_time_seconds")
    boot = report["bootstrap"]
    steps_noun, step_noun = (("training episodes", "episodes") if report.get("skills") else
                             ("outer updates", "updates") if p["suite"] == "meta" else ("gradient steps", "steps"))
    scored = ("success rate in %, over the evaluation tasks" if report.get("score_label") == SUCCESS_UNIT else
              "coverage in cells of the evaluation's rollouts" if report.get("score_label") == SKILL_UNIT else
              "trial return normalised between the random policy and the benchmark's reference"
              if report.get("score_label") == META_UNIT else
              "normalised with the dataset's own reference returns unless marked")
    lines = [f"Protocol `{p['name']}` (suite `{p['suite']}`). Headline score of a run: {p['headline']['describe']} "
             f"({scored}); never the best over training.",
             f"Seeds: {', '.join(str(s) for s in p['seeds'])} ({len(p['seeds'])} per dataset); {steps_noun}: "
             f"{common}{f' ({exceptions})' if exceptions else ''}; evaluation every {p['eval_every']} {step_noun}.",
             f"Git commit: {_commit_text(m)}; wall time: "
             f"{'unknown' if wall is None else f'{float(wall):.1f} s'}; offbench {m.get('offbench_version') or '?'}.",
             f"Cells: mean ± standard error over {len(p['seeds'])} seeds (sample std / √n; n marked where fewer) "
             f"[95% stratified-bootstrap percentile interval of the mean; "
             f"{boot['reps']} replicates, seed {boot['seed']}]. Aggregates (rliable, Agarwal et al. 2021) over "
             f"{_count(len(report['aggregate_datasets']), 'dataset')} complete for every algorithm."]
    for algorithm, rebuilt in (report.get("rebuilt") or {}).items():
        lines.append(f"{algorithm} trained on a local rebuild (not the card's file) of {_count(len(rebuilt), 'dataset')}: "
                     f"{', '.join(rebuilt)}. A rebuild on another CPU is a new draw of any trained agent in its recipe.")
    return lines


def _cell_text(cell: dict | None, seeds: int, *, interval: bool = True) -> str:
    if cell is None:
        return MISSING_CELL
    text = _fmt(cell["mean"]) + ("" if cell["stderr"] is None else f" ± {_fmt(cell['stderr'])}")
    if interval:
        text += f" [{_fmt(cell['low'])}, {_fmt(cell['high'])}]"
    if cell["n"] != seeds:
        text += f" (n={cell['n']})"
    return text


def _aggregate_rows(report: dict, view: dict) -> list[tuple[str, dict]]:
    """(label, {algorithm: estimate or None}) for the mean and IQM rows of every suite group."""
    rows = []
    for group, group_datasets in view["groups"].items():
        per_algo = view["aggregates"].get(group, {})
        for metric, label in (("mean", "Mean"), ("iqm", "IQM")):
            rows.append((f"{label} ({group}, {_count(len(group_datasets), 'dataset')})",
                         {a: per_algo.get(a, {}).get(metric) for a in report["algorithms"]}))
    return rows


def _estimate_text(e: dict | None) -> str:
    return MISSING_CELL if e is None else f"{_fmt(e['value'])} [{_fmt(e['low'])}, {_fmt(e['high'])}]"


def _score_scales(datasets: list[str]) -> dict[str, float]:
    """Normalised-score points per unit of return, ``100 / (expert - random)`` from each dataset's
    card (the datasets whose card has both references)."""
    from offbench.data.catalogue import get_card

    scales = {}
    for dataset in datasets:
        try:
            ref = get_card(dataset).reference_scores or {}
        except OffbenchError:
            continue
        if ref.get("random") is not None and ref.get("expert") is not None and ref["expert"] != ref["random"]:
            scales[dataset] = 100.0 / abs(float(ref["expert"]) - float(ref["random"]))
    return scales


def _behaviour_score(dataset_id: str, reference: tuple[float, float] | None = None, *,
                     mean: float | None = None) -> float | None:
    """The dataset's own mean episode return (from its catalogue card, or ``mean``: a rebuild's),
    normalised with ``reference = (random, expert)`` (default: the card's own): the level behaviour
    cloning would reach, the reference point of the literature's findings."""
    from offbench.data.catalogue import get_card

    try:
        card = get_card(dataset_id)
    except OffbenchError:
        return None
    mean, ref = (card.returns or {}).get("mean") if mean is None else mean, card.reference_scores or {}
    if reference is None and success_scored(dataset_id):
        # a goal dataset's returns count steps spent at goals, not successes: its level is the
        # success rate of the policy that collected it, measured on the evaluation tasks (card)
        rate = ref.get("behaviour_success")
        return None if rate is None else round(100.0 * float(rate), 1)
    if reference is None:
        if "random" not in ref or "expert" not in ref:
            return None
        reference = (ref["random"], ref["expert"])
    random, expert = reference
    if mean is None or expert == random:
        return None
    return round(100.0 * (float(mean) - random) / (expert - random), 1)


def _dataset_label(view: dict, dataset: str) -> str:
    return dataset + (" (return)" if view["units"][dataset] == "return" else "")


def _data_text(view: dict, dataset: str) -> str:
    """The `data` cell: the card's level, or where runs trained on rebuilds each build's level
    (``a / bʳ``; ʳ a local rebuild, ? a rebuild whose level was not recorded)."""
    builds = view.get("behaviour_builds", {}).get(dataset)
    if not builds:
        return _fmt(view["behaviour"].get(dataset))
    return " / ".join(("?" if b["level"] is None else _fmt(b["level"])) + ("" if b["card"] else "ʳ") for b in builds)


def _markdown_table(report: dict, view: dict, *, marks: dict | None = None) -> list[str]:
    """The per-dataset table; ``marks`` (the report's ``settling``) appends ↑ / ↓ to unsettled cells and
    ~ to unsteady ones."""
    algos, seeds = report["algorithms"], len(report["protocol"]["seeds"])
    lines = ["| dataset | data | " + " | ".join(algos) + " |", "|---|---|" + "---|" * len(algos)]
    for dataset in view["datasets"]:
        lines.append(f"| {_dataset_label(view, dataset)} | {_data_text(view, dataset)} | "
                     + " | ".join(_cell_text(view["cells"][dataset][a], seeds) + _marks_text(marks, dataset, a)
                                  for a in algos) + " |")
    for label, estimates in _aggregate_rows(report, view):
        lines.append(f"| **{label}** | | " + " | ".join(_estimate_text(estimates[a]) for a in algos) + " |")
    if marks:  # an aggregate over cells that are still moving ranks the budget, not the method
        counts = {a: sum(((marks.get(d, {}).get(a) or {}).get("verdict") in settling.MARKS) for d in view["datasets"])
                  for a in algos}
        scored = {a: sum(view["cells"][d][a] is not None for d in view["datasets"]) for a in algos}  # its cells only
        lines.append(f"| **cells not settled (↑ / ↓)** | | " + " | ".join(
            f"{counts[a]} of {scored[a]}" for a in algos) + " |")
        swinging = {a: sum(bool((marks.get(d, {}).get(a) or {}).get("unsteady")) for d in view["datasets"])
                    for a in algos}
        if any(swinging.values()):
            lines.append(f"| **cells unsteady (~)** | | " + " | ".join(
                f"{swinging[a]} of {scored[a]}" for a in algos) + " |")
    return lines


def _marks_text(marks: dict | None, dataset: str, algorithm: str) -> str:
    """A cell's marks from the report's ``settling``: ↑ / ↓ (still moving), ~ (unsteady)."""
    record = (marks or {}).get(dataset, {}).get(algorithm) or {}
    return settling.MARKS.get(record.get("verdict"), "") + (" ~" if record.get("unsteady") else "")


def _reference_value(x: float | None) -> str:
    return MISSING_CELL if x is None else repr(float(x))


def _d4rl_lines(report: dict) -> list[str]:
    """The D4RL-normalised table with the reference returns it uses, next to the datasets' own."""
    d4rl = report["d4rl"]
    lines = [f"## {D4RL_TITLE}", "",
             "The headline scores above, normalised with D4RL's reference returns instead of each dataset's own "
             f"({d4rl['source']}); `data` is the dataset's mean episode return on the same scale. Not a headline: "
             "offbench's tasks are Gymnasium's v5 MuJoCo tasks and its datasets its own, while D4RL measured these "
             "returns on Gym's v2 tasks under mujoco-py, so these are scores on D4RL's scale, not on D4RL's "
             "environments or datasets (docs/evaluation.md, \"Scores on D4RL's scale\").", "",
             "| task | D4RL's random | D4RL's expert | measured on | the datasets' own random "
             "| the datasets' own expert |",
             "|---|---|---|---|---|---|"]
    by_task: dict[str, list[dict]] = {}
    for dataset in d4rl["datasets"]:
        by_task.setdefault(d4rl["references"][dataset]["task"], []).append(d4rl["references"][dataset])
    for task, records in by_task.items():
        first = records[0]
        own = [(_reference_value(r["dataset_random"]), _reference_value(r["dataset_expert"])) for r in records]
        own_random, own_expert = own[0] if len(set(own)) == 1 else ("per dataset card", "per dataset card")
        lines.append(f"| {task} | {_reference_value(first['d4rl_random'])} | {_reference_value(first['d4rl_expert'])} "
                     f"| {first['d4rl_env_id']} | {own_random} | {own_expert} |")
    return lines + [""] + _markdown_table(report, _view(report, "d4rl")) + [""]


SUCCESS_SCORE = ("Success rate (%), OGBench's score: the share of evaluation episodes that reach the goal (within 1.0 "
                 "of it; the episode ends there, else after 1000 steps), over the maze's 5 evaluation tasks, "
                 "deterministic actor. It is the goal datasets' normalised score (their cards: random 0, expert 1). "
                 "`data`: the success rate of the policy that collected the dataset (its card's `behaviour_success`).")


def _per_task_lines(report: dict) -> list[str]:
    """The success rate per evaluation task, where the runs recorded which task each episode played."""
    per_task = report.get("per_task") or {}
    if not per_task:
        return []
    algos = report["algorithms"]
    lines = ["## Success rate per evaluation task (%)", "",
             f"Each run's success rate on each task by the headline rule ({report['protocol']['headline']['describe']}),"
             " then mean ± standard error over seeds.", "",
             "| dataset | task | " + " | ".join(algos) + " |", "|---|---|" + "---|" * len(algos)]
    for dataset, info in per_task.items():
        for task in info["tasks"]:
            cells = []
            for a in algos:
                cell = info["cells"].get(a, {}).get(str(task))
                cells.append(MISSING_CELL if cell is None else _fmt(cell["mean"]) + (
                    "" if cell["stderr"] is None else f" ± {_fmt(cell['stderr'])}"))
            lines.append(f"| {dataset} | {task} | " + " | ".join(cells) + " |")
    return lines + [""]


def _published_lines(report: dict) -> list[str]:
    """The literature's numbers for the same datasets and algorithms, side by side (mean ± std)."""
    published = report.get("published")
    if not published:
        return []
    algos = report["algorithms"]
    lines = [f"## {published['label']}", "", f"{published['source']}. Other budgets and network sizes than this "
             "protocol's: compare orderings and gaps, not the numbers one by one.", "",
             "| dataset | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for dataset, row in published["cells"].items():
        cells = [MISSING_CELL if a not in row else f"{row[a][0]:.0f} ± {row[a][1]:.0f}" for a in algos]
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    return lines + [""]


def render_table_md(report: dict) -> str:
    lines = [f"# Baseline table: protocol `{report['protocol']['name']}`", ""]
    lines += [f"{line}  " for line in _header_lines(report)] + [""]
    if report.get("score_label") == SUCCESS_UNIT:
        lines += ["## Headline score: success rate (%)", "", SUCCESS_SCORE, ""]
    elif report.get("score_label") == META_UNIT:
        offline = report["protocol"]["suite"] == "meta-offline"
        lines += [f"## Headline score: {META_UNIT}", "", META_SCORE_OFFLINE if offline else META_SCORE, ""]
        lines += _meta_reference_lines(report)
    elif report.get("score_label") == SKILL_UNIT:
        lines += [f"## Headline score: {SKILL_UNIT}", "", SKILL_SCORE, ""]
    else:
        lines += ["## Headline score (normalised with each dataset's own reference returns)", "",
                  f"{OWN_NORMALISATION} `data`: the dataset's own mean episode return, normalised (the behaviour "
                  "level)." + (" Where runs trained on a local rebuild instead of the card's file, `data` gives each "
                               "build's level, the card's first (`a / bʳ`; ʳ a rebuild, recorded by reproduce or "
                               "combine; ? a rebuild whose level was not recorded)." if report.get("behaviour_builds")
                               else "") + (f" Datasets marked {SUCCESS_UNIT}: {SUCCESS_SCORE}" if SUCCESS_UNIT in
                               report["units"].values() else ""), ""]
    lines += _markdown_table(report, _view(report, "headline"), marks=report.get("settling")) + [""]
    lines += settling.markdown_lines(report.get("settling") or {}, report["algorithms"], report["datasets"])
    if report.get("skills"):
        lines += skill_markdown_lines(report["skills"], report["algorithms"], len(report["protocol"]["seeds"]))
    lines += exorl_markdown_lines(report.get("exorl") or {})
    lines += meta_markdown_lines(report.get("meta") or {}, report["algorithms"])
    lines += _published_lines(report)
    lines += _per_task_lines(report)
    if report["notes"]:
        lines += ["Notes:", ""] + [f"- {n}" for n in report["notes"]] + [""]
    if report["missing_runs"]:
        lines += [f"Missing or incomplete runs ({len(report['missing_runs'])}), left out of every number above:", ""]
        lines += [f"- {r['algorithm']} / {r['dataset']} / seed {r['seed']}: {r['reason']}"
                  for r in report["missing_runs"]] + [""]
    if report["d4rl"]:
        lines += _d4rl_lines(report)
    lines += ["## Secondary (optimistic): best evaluation over training", "",
              "Not a headline: the maximum over all evaluations of a run picks the luckiest evaluation and "
              "overstates performance (CORL: by up to 20 points).", ""]
    lines += _markdown_table(report, _view(report, "best")) + [""]
    return "\n".join(lines)


def _table_frame(report: dict, *kinds: str):
    """The CSV of the tables ``kinds`` one after the other; ``normalisation`` says whose reference
    returns a row's scores use (``dataset``: the dataset's own, ``d4rl``: D4RL's; empty: raw return)."""
    import pandas as pd

    records = []
    for view in (_view(report, kind) for kind in kinds):
        for dataset in view["datasets"]:
            unit = view["units"][dataset]
            row: dict[str, Any] = {"row": "dataset", "dataset": dataset, "suite": report["suites"][dataset],
                                   "unit": unit,
                                   "normalisation": view["normalisation"] if unit != "return" else None}
            for a in report["algorithms"]:
                cell = view["cells"][dataset][a] or {}
                for key in ("mean", "std", "stderr", "low", "high", "n"):
                    row[f"{a}_{'ci_' + key if key in ('low', 'high') else key}"] = cell.get(key)
            records.append(row)
        for group, group_datasets in view["groups"].items():
            for metric in ("mean", "iqm"):
                row = {"row": metric, "dataset": f"{metric} over {_count(len(group_datasets), 'dataset')}",
                       "suite": group, "unit": view.get("score_label", "normalised score"),
                       "normalisation": view["normalisation"]}
                for a in report["algorithms"]:
                    e = view["aggregates"].get(group, {}).get(a, {}).get(metric) or {}
                    row.update({f"{a}_mean": e.get("value"), f"{a}_std": None, f"{a}_stderr": None,
                                f"{a}_ci_low": e.get("low"), f"{a}_ci_high": e.get("high"),
                                f"{a}_n": len(report["protocol"]["seeds"]) if e else None})
                records.append(row)
    frame = pd.DataFrame.from_records(records)
    for a in report["algorithms"]:
        frame[f"{a}_n"] = frame[f"{a}_n"].astype("Int64")
    return frame


def _tex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                       ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}")):
        text = text.replace(char, repl)
    return text


def render_table_tex(report: dict) -> str:
    algos, seeds = report["algorithms"], len(report["protocol"]["seeds"])
    p = report["protocol"]
    out = [f"% offbench report: {line}" for line in _header_lines(report)]

    def tabular(kind: str, caption: str) -> list[str]:
        view = _view(report, kind)
        lines = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{_tex_escape(caption)}}}",
                 r"\begin{tabular}{l" + "c" * len(algos) + "}", r"\toprule",
                 "Dataset & " + " & ".join(_tex_escape(a) for a in algos) + r" \\", r"\midrule"]
        for dataset in view["datasets"]:
            cells = []
            for a in algos:
                text = _cell_text(view["cells"][dataset][a], seeds, interval=False).replace(" ± ", r" $\pm$ ")
                cells.append(text.replace(MISSING_CELL, "--"))
            lines.append(f"{_tex_escape(_dataset_label(view, dataset))} & " + " & ".join(cells) + r" \\")
        agg = _aggregate_rows(report, view)
        if agg:
            lines.append(r"\midrule")
        for label, estimates in agg:
            lines.append(f"{_tex_escape(label)} & "
                         + " & ".join(_estimate_text(estimates[a]).replace(MISSING_CELL, "--") for a in algos) + r" \\")
        return lines + [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]

    out += tabular("headline", f"Protocol {p['name']}: {p['headline']['describe']} (mean +/- standard error over "
                   f"{seeds} seeds; aggregates with 95% bootstrap intervals), "
                   + ("success rate (%)." if report.get("score_label") == SUCCESS_UNIT else
                      f"{META_UNIT} (0 = random, 100 = the benchmark's reference)."
                      if report.get("score_label") == META_UNIT else f"{SKILL_UNIT}."
                      if report.get("score_label") == SKILL_UNIT else
                      "normalised with each dataset's own reference returns."))
    if report["d4rl"]:
        out += tabular("d4rl", f"Protocol {p['name']}, {D4RL_TITLE}: the same runs on D4RL's scale (not a headline; "
                       "Gymnasium v5 tasks and offbench's own datasets, not D4RL's).")
    out += tabular("best", f"Protocol {p['name']}, secondary and optimistic: best evaluation over training "
                   "(not a headline).")
    return "\n".join(out)


def _aggregates_frame(report: dict):
    import pandas as pd

    kinds = [("headline", "headline"), ("best", "best_over_training (optimistic)")]
    if report["d4rl"]:
        kinds.append(("d4rl", "headline, D4RL-normalised"))
    records = []
    for kind, label in kinds:
        view = _view(report, kind)
        for group, per_algo in view["aggregates"].items():
            for algorithm, metrics in per_algo.items():
                for metric, e in metrics.items():
                    records.append({"score": label, "suite": group, "algorithm": algorithm, "metric": metric,
                                    "value": e["value"], "ci_low": e["low"], "ci_high": e["high"],
                                    "datasets": len(view["groups"][group]),
                                    "seeds": len(report["protocol"]["seeds"])})
    return pd.DataFrame.from_records(records, columns=["score", "suite", "algorithm", "metric", "value", "ci_low",
                                                       "ci_high", "datasets", "seeds"])


def _aggregate_metrics_lines(report: dict, kind: str, title: str) -> list[str]:
    """The README's table of every aggregate metric with its interval, per suite group and algorithm."""
    aggregates = _view(report, kind)["aggregates"]
    if not aggregates:
        return []
    lines = ["", f"## {title}", "", "| suite | algorithm | IQM | mean | median | optimality gap |",
             "|---|---|---|---|---|---|"]
    for group, per_algo in aggregates.items():
        for algorithm, m in per_algo.items():
            lines.append(f"| {group} | {algorithm} | " + " | ".join(
                _estimate_text(m[k]) for k in ("iqm", "mean", "median", "optimality_gap")) + " |")
    return lines


def render_readme(report: dict, table_md: str, figures: dict[str, str]) -> str:
    lines = [f"# offbench report: protocol `{report['protocol']['name']}`", "",
             "Generated by `offbench report` from the results directory (see docs/evaluation.md). Every number "
             "below is also in `report.json`; tables in `table.md`, `table.csv` (secondary: "
             "`table_best_over_training.csv`) and `table.tex`; statistics in `aggregates.csv` and "
             "`probability_of_improvement.csv`."
             + (" The D4RL-normalised table is `report.json`'s `d4rl` and the `table.csv` rows whose normalisation "
                "is `d4rl`." if report["d4rl"] else ""), ""]
    lines += [line.replace("# Baseline table", "## Baseline table", 1) if line.startswith("# ") else
              (line.replace("## ", "### ", 1) if line.startswith("## ") else line) for line in table_md.splitlines()]
    lines += _aggregate_metrics_lines(report, "headline", "Aggregate metrics (headline score)")
    if report["aggregates"]["headline"]:
        lines += ["", f"Optimality gap with gamma = {report['optimality_gap_gamma']:g}; median = median over datasets "
                  "of the per-dataset mean (rliable's definition)."]
    if report["d4rl"]:
        lines += _aggregate_metrics_lines(report, "d4rl", f"Aggregate metrics ({D4RL_TITLE})")
    if report["probability_of_improvement"]:
        lines += ["", "## Probability of improvement P(X > Y)", "", "| X | Y | P(X > Y) |", "|---|---|---|"]
        lines += [f"| {r['algorithm_x']} | {r['algorithm_y']} | {r['probability']:.2f} "
                  f"[{r['low']:.2f}, {r['high']:.2f}] |" for r in report["probability_of_improvement"]]
    if figures:
        lines += ["", "## Figures", ""]
        for name, file in figures.items():
            lines += [f"![{name.replace('_', ' ')}]({file})", ""]
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------- figures
def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def render_figures(report: dict) -> dict[str, bytes]:
    """Draw the figures that have data: ``{figure name: PNG bytes}``, saved as ``FIGURES[name]``."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    import numpy as np
    import seaborn as sns
    from matplotlib.figure import Figure

    colors = assign_colors(report["algorithms"])  # the leaderboard's colours too
    drawn: dict[str, bytes] = {}
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9), warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # seaborn 0.13 calls cmap.set_bad
        # learning curves: one panel per dataset
        panels = [d for d in report["datasets"] if report["learning_curves"].get(d)]
        if panels:
            ncols = min(3, len(panels))
            nrows = math.ceil(len(panels) / ncols)
            fig = Figure(figsize=(4.2 * ncols, 3.2 * nrows + 0.6), layout="constrained")
            axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
            for ax, dataset in zip(axes, panels):
                for algorithm, c in report["learning_curves"][dataset].items():
                    ax.plot(c["step"], c["mean"], color=colors[algorithm], label=algorithm, marker="o", ms=3)
                    ax.fill_between(c["step"], c["low"], c["high"], color=colors[algorithm], alpha=0.2, lw=0)
                ax.set_title(dataset, fontsize=9)
                ax.set_xlabel((report.get("skills") or {}).get("step_label", "outer update" if report["protocol"]["suite"]
                                                                == "meta" else "gradient step"))
                ax.set_ylabel(report["units"][dataset])
            for ax in axes[len(panels):]:
                ax.set_visible(False)
            seen: dict[str, Any] = {}  # every panel's algorithms (some run on some datasets only)
            for ax in axes[:len(panels)]:
                for handle, label in zip(*ax.get_legend_handles_labels()):
                    seen.setdefault(label, handle)
            labels = [a for a in report["algorithms"] if a in seen]
            handles = [seen[a] for a in labels]
            fig.legend(handles, labels, loc="outside upper center", ncol=min(len(labels), 6), frameon=False,
                       title="mean and 95% bootstrap band over seeds", title_fontsize=9)
            drawn["learning_curves"] = _png(fig)

        aggregates = report["aggregates"]["headline"]
        group = "all" if "all" in aggregates else next(iter(aggregates), None)
        if group is not None:
            algos = list(aggregates[group])
            fig = Figure(figsize=(3.2 * 4, 0.5 * len(algos) + 1.6), layout="constrained")
            axes = fig.subplots(1, 4, sharey=True)
            for ax, metric in zip(axes, ("iqm", "mean", "median", "optimality_gap")):
                for y, algorithm in enumerate(algos):
                    e = aggregates[group][algorithm][metric]
                    ax.barh(y, e["high"] - e["low"], left=e["low"], height=0.6, color=colors[algorithm], alpha=0.75)
                    ax.vlines(e["value"], y - 0.3, y + 0.3, color="black", lw=1.5)
                ax.set_title({"iqm": "IQM", "mean": "Mean", "median": "Median",
                              "optimality_gap": "Optimality gap"}[metric])
                ax.set_xlabel(report.get("score_label", "normalised score"))
            axes[0].set_yticks(range(len(algos)), algos)
            axes[0].invert_yaxis()  # first algorithm on top, as in the table
            fig.suptitle(f"aggregates over {_count(len(report['aggregate_groups'][group]), 'dataset')}, "
                         "95% stratified-bootstrap intervals", fontsize=10)
            drawn["aggregate_metrics"] = _png(fig)

        profiles = report["performance_profiles"]
        if profiles:
            fig = Figure(figsize=(5.5, 3.8), layout="constrained")
            ax = fig.subplots()
            taus = np.asarray(profiles["taus"])
            for algorithm, p in profiles["algorithms"].items():
                ax.plot(taus, p["profile"], color=colors[algorithm], label=algorithm)
                ax.fill_between(taus, p["low"], p["high"], color=colors[algorithm], alpha=0.2, lw=0)
            ax.set_xlabel(report.get("score_label", "normalised score") + r" $\tau$")
            ax.set_ylabel(r"fraction of runs with score $> \tau$")
            ax.set_title("performance profiles (95% bootstrap bands)", fontsize=10)
            ax.legend(frameon=False)
            drawn["performance_profiles"] = _png(fig)

        poi = report["probability_of_improvement"]
        if poi:
            algos = report["aggregate_algorithms"]
            matrix = np.full((len(algos), len(algos)), np.nan)
            for r in poi:
                matrix[algos.index(r["algorithm_x"]), algos.index(r["algorithm_y"])] = r["probability"]
            size = 1.0 + 0.8 * len(algos)
            fig = Figure(figsize=(size + 1.2, size), layout="constrained")
            ax = fig.subplots()
            sns.heatmap(matrix, ax=ax, annot=True, fmt=".2f", vmin=0, vmax=1, center=0.5, cmap="RdBu_r",
                        xticklabels=algos, yticklabels=algos, square=True, cbar_kws={"label": "P(row > column)"})
            ax.grid(False)
            ax.tick_params(axis="y", labelrotation=0)
            ax.set_xlabel("Y")
            ax.set_ylabel("X")
            ax.set_title("probability of improvement P(X > Y)", fontsize=10)
            drawn["probability_of_improvement"] = _png(fig)

        if report.get("skills"):  # the skills' trajectories, from the runs' saved rollouts
            fig = trajectory_figure(report["results_dir"], report["skills"], colors)
            if fig is not None:
                drawn["skill_trajectories"] = _png(fig)
    return drawn


# ---------------------------------------------------------------------- the report directory
def _json_ready(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def write_report(results_dir: str | Path, out_dir: str | Path | None = None, *, reps: int = 2000, seed: int = 0,
                 figures: bool = True) -> dict:
    """Write the report of ``results_dir`` into ``out_dir`` (default ``results_dir/report``) and
    return its ``report.json`` content (plus ``out_dir`` and ``files``)."""
    import pandas as pd

    from offbench.atomic import write_atomic

    report = build_report(results_dir, reps=reps, seed=seed)
    out = Path(out_dir) if out_dir is not None else Path(results_dir) / "report"
    # everything is rendered before anything is written, so a failure leaves an earlier report as it was
    table_md = render_table_md(report)
    pngs = render_figures(report) if figures else {}
    report["figures"] = {name: FIGURES[name] for name in pngs}
    poi = pd.DataFrame.from_records(report["probability_of_improvement"],
                                    columns=["algorithm_x", "algorithm_y", "probability", "low", "high"])
    files: dict[str, str | bytes] = {
        "table.md": table_md,
        "table.csv": _table_frame(report, "headline", *(["d4rl"] if report["d4rl"] else [])).to_csv(index=False),
        "table_best_over_training.csv": _table_frame(report, "best").to_csv(index=False),
        "table.tex": render_table_tex(report), "aggregates.csv": _aggregates_frame(report).to_csv(index=False),
        "probability_of_improvement.csv": poi.rename(columns={"low": "ci_low", "high": "ci_high"}).to_csv(index=False),
        "README.md": render_readme(report, table_md, report["figures"]),
        **{FIGURES[name]: data for name, data in pngs.items()}}
    report["files"] = sorted([*files, "report.json"])
    files["report.json"] = json.dumps(_json_ready(report), indent=2, sort_keys=True) + "\n"
    for name, data in files.items():  # each file atomically: readers see the old or the new one
        write_atomic(out / name, data)
    return {**_json_ready(report), "out_dir": str(out)}
