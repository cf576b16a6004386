"""The ExORL comparison in an ``explore``-suite report.

ExORL (Yarats et al. 2022, "Don't Change the Algorithm, Change the Data: Exploratory Data for
Offline Reinforcement Learning") trains offline learners on reward-free exploratory data relabelled
for a task, and compares them with the same learners on data collected for that task. The explore
suite's datasets are ``explore/<task>/<source>-v0``: every source but :data:`REPLAY_SOURCE` is
exploratory (DIAYN, DADS, METRA, RND, uniform random actions, relabelled for ``<task>``);
``sac-replay`` is the replay buffer of a SAC agent trained on the task, at the same size.

For every task and learner, :func:`exorl_comparison` sets the learner's headline score (the
report's per-dataset cell: mean and standard error over seeds) on each exploratory dataset beside
its score on the replay data, with the best exploratory source and its difference from the replay
score in points. ExORL's finding, in these terms: a positive difference for TD3 (about 2x the
replay score on Walker).
"""
from __future__ import annotations

from typing import Any

REPLAY_SOURCE = "sac-replay"


def split_explore_id(dataset_id: str) -> tuple[str, str] | None:
    """``(task, source)`` of ``explore/<task>/<source>-v<N>``, or None for any other id."""
    parts = dataset_id.split("/")
    if len(parts) != 3 or parts[0] != "explore" or "-v" not in parts[2]:
        return None
    return parts[1], parts[2].rsplit("-v", 1)[0]


def exorl_comparison(cells: dict[str, dict[str, Any]], datasets: list[str], algorithms: list[str], *,
                     rebuilt: dict[str, list[str]] | None = None) -> dict:
    """``{task: {"replay": id or None, "sources": [...], "rows": {algorithm: row}}}`` from the report's
    headline cells (``cells[dataset][algorithm]``: ``{"mean", "stderr", "n", ...}`` or None).

    A row: ``replay`` and ``sources`` (``{source: [mean, stderr, n]}``, None where the run is
    missing), ``best_source`` (the exploratory source with the highest mean), ``best_minus_replay``
    (points) and ``sources_above_replay`` (how many exploratory sources score above the replay
    data's mean); the last three need the replay cell and at least one exploratory cell. ``rebuilt``
    (``{algorithm: [dataset, ...]}``, :func:`offbench.evaluation.report.rebuilt_cells`): the cells
    trained on a local rebuild instead of the card's file, listed per row as ``rebuilt_sources``."""
    tasks: dict[str, dict[str, str]] = {}
    for dataset in datasets:
        split = split_explore_id(dataset)
        if split is not None:
            tasks.setdefault(split[0], {})[split[1]] = dataset
    out = {}
    for task, by_source in tasks.items():
        sources = [s for s in by_source if s != REPLAY_SOURCE]
        replay_id = by_source.get(REPLAY_SOURCE)
        rows = {}
        for algorithm in algorithms:
            def cell(dataset_id):
                value = (cells.get(dataset_id) or {}).get(algorithm) if dataset_id else None
                return None if value is None else [value["mean"], value.get("stderr"), value.get("n")]

            replay = cell(replay_id)
            scored = {s: cell(by_source[s]) for s in sources}
            present = {s: v for s, v in scored.items() if v is not None}
            row: dict[str, Any] = {"replay": replay, "sources": scored, "best_source": None,
                                   "best_minus_replay": None, "sources_above_replay": None,
                                   "rebuilt_sources": [s for s, d in by_source.items()
                                                       if d in (rebuilt or {}).get(algorithm, [])]}
            if present:
                best = max(present, key=lambda s: present[s][0])
                row["best_source"] = best
                if replay is not None:
                    row["best_minus_replay"] = present[best][0] - replay[0]
                    row["sources_above_replay"] = sum(v[0] > replay[0] for v in present.values())
            rows[algorithm] = row
        out[task] = {"replay": replay_id, "sources": sources, "rows": rows}
    return out


def _fmt(value) -> str:
    if value is None:
        return "—"
    mean, stderr, _n = value
    return f"{mean:.1f}" + ("" if stderr is None else f" ± {stderr:.1f}")


def markdown_lines(comparison: dict) -> list[str]:
    """The report's ExORL section: one table per task."""
    if not comparison:
        return []
    lines = ["## The ExORL comparison: exploratory data against the task's own replay data", "",
             "Each learner's headline score (mean ± standard error over seeds) on each reward-free exploratory "
             "dataset relabelled for the task, and on the replay buffer of a SAC agent trained on the task (same "
             "size). *best − replay*: the best exploratory source's score minus the replay score, in points; "
             "*above*: how many exploratory sources beat the replay data. ExORL's finding is a positive "
             "difference for TD3.", ""]
    if any(row.get("rebuilt_sources") for entry in comparison.values() for row in entry["rows"].values()):
        lines += ["ʳ: trained on a local rebuild of that dataset, not the card's file. A rebuild on another CPU "
                  "trains the exploration and SAC agents of its recipe again, so it is another draw of the data: "
                  "compare such a cell with the same learner's other cells, not with another learner's cell on "
                  "the card's file.", ""]
    for task, entry in comparison.items():
        sources = entry["sources"]
        lines += [f"**{task}**", ""]
        if entry["replay"] is None:
            lines += [f"No `{REPLAY_SOURCE}` dataset for this task in this run: exploratory scores only.", ""]
        header = ["learner", *sources, REPLAY_SOURCE, "best exploratory", "best − replay", "above"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for algorithm, row in entry["rows"].items():
            diff = row["best_minus_replay"]
            above = row["sources_above_replay"]
            mark = lambda source: " ʳ" if source in row.get("rebuilt_sources", []) else ""  # noqa: E731
            lines.append("| " + " | ".join([
                algorithm, *(_fmt(row["sources"][s]) + mark(s) for s in sources),
                _fmt(row["replay"]) + mark(REPLAY_SOURCE),
                row["best_source"] or "—", "—" if diff is None else f"{diff:+.1f}",
                "—" if above is None else f"{above} of {sum(v is not None for v in row['sources'].values())}"]) + " |")
        lines.append("")
    return lines
