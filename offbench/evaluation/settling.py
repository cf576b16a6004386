"""Has a learning curve stopped moving? The slope over a run's last evaluations.

A table's headline (the last evaluation, or the mean of the last few) only means something if
training has settled by then; a cell whose curve is still climbing ranks the budget, not the
method. For each (algorithm, dataset) this module fits, per seed, an ordinary least-squares line
to the score against the step over the last ``window`` evaluations, and reports the mean slope
over seeds in points per 1,000 steps with its standard error over seeds. A cell is

- ``climbing`` if the mean slope is positive, more than ``Z`` standard errors from zero, and
  moves the score by at least ``min_change`` points across the window (a steady drift of a
  tenth of a point is settled for any reader of the table),
- ``falling`` likewise for a negative slope,
- ``settled`` otherwise; a cell with one seed has no standard error, so its slope is reported
  but not judged (``unjudged``).

The test is deliberately simple and says what it is: with 3 seeds and 4 evaluations it detects
steady trends, not slow drifts, so the slope itself is always printed next to the verdict.
"""
from __future__ import annotations

import numpy as np

DEFAULT_WINDOW = 4  # evaluations
Z = 2.0  # standard errors
MIN_CHANGE = 2.0  # points of normalised score (or success %) across the window


def ols_slope(steps: np.ndarray, scores: np.ndarray) -> float:
    """The least-squares slope of ``scores`` against ``steps`` (score units per step)."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray(scores, dtype=float)
    x = x - x.mean()
    return float((x * (y - y.mean())).sum() / (x * x).sum())


def verdict(mean: float, stderr: float | None, span_steps: int, min_change: float = MIN_CHANGE) -> str:
    """``mean``/``stderr``: slope per 1,000 steps over seeds; ``span_steps``: the window's length."""
    if stderr is None or not np.isfinite(stderr):
        return "unjudged"
    if abs(mean) > Z * stderr and abs(mean) * span_steps / 1000.0 >= min_change:
        return "climbing" if mean > 0 else "falling"
    return "settled"


def curve_slopes(table, score: str | dict[str, str], *, window: int = DEFAULT_WINDOW,
                 min_change: float | dict[str, float] = MIN_CHANGE) -> dict[str, dict[str, dict]]:
    """``{dataset: {algorithm: {"slope", "stderr", "seeds", "window", "from_step", "to_step", "verdict"}}}``.

    ``table`` is a results frame (``offbench.evaluation.results``) of finished runs; ``score`` the
    column to fit (``normalized_score`` or ``return_mean``), or a ``{dataset: column}`` mapping;
    ``min_change`` the smallest change across the window that counts, or a per-dataset mapping
    (0 judges by significance alone, e.g. for raw returns). Slopes are in score units per 1,000
    steps. Runs with fewer than 3 evaluations are skipped.
    """
    out: dict[str, dict[str, dict]] = {}
    for (dataset, algorithm), rows in table.groupby(["dataset", "algorithm"], sort=True):
        column = score[dataset] if isinstance(score, dict) else score
        slopes, spans = [], []
        for _, run in rows.groupby("seed"):
            run = run.sort_values(["step", "final"]).drop_duplicates("step", keep="last").tail(window)
            if len(run) < 3 or run[column].isna().any():
                continue
            slopes.append(1000.0 * ols_slope(run["step"].to_numpy(), run[column].to_numpy()))
            spans.append((int(run["step"].iloc[0]), int(run["step"].iloc[-1])))
        if not slopes:
            continue
        mean = float(np.mean(slopes))
        stderr = float(np.std(slopes, ddof=1) / np.sqrt(len(slopes))) if len(slopes) > 1 else None
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        change = min_change[dataset] if isinstance(min_change, dict) else min_change
        out.setdefault(dataset, {})[algorithm] = {
            "slope": mean, "stderr": stderr, "seeds": len(slopes), "window": window,
            "from_step": first, "to_step": last, "verdict": verdict(mean, stderr, last - first, change)}
    return out


def unsettled(slopes: dict[str, dict[str, dict]]) -> list[tuple[str, str, dict]]:
    """The (dataset, algorithm, record) cells whose curve is still climbing or falling."""
    return [(d, a, r) for d, cells in sorted(slopes.items()) for a, r in sorted(cells.items())
            if r["verdict"] in ("climbing", "falling")]


def markdown_lines(slopes: dict[str, dict[str, dict]], algorithms: list[str], datasets: list[str],
                   label=lambda a: a) -> list[str]:
    """A Markdown table of slopes (points per 1k steps ± SE over seeds), verdicts marked ↑ / ↓."""
    if not slopes:
        return []
    marks = {"climbing": " ↑", "falling": " ↓"}
    window = next(iter(next(iter(slopes.values())).values()))["window"]
    lines = ["## Have the learning curves settled?", "",
             f"Slope of the score over each run's last {window} evaluations (least squares per seed; mean ± "
             f"standard error over seeds, in points per 1,000 steps). ↑ still climbing, ↓ still falling: the slope "
             f"is more than {Z:g} standard errors from zero and moves the score by {MIN_CHANGE:g} points or more "
             "across the window, so that cell's headline depends on the budget.", "",
             "| dataset | " + " | ".join(label(a) for a in algorithms) + " |",
             "|---|" + "---|" * len(algorithms)]
    for dataset in datasets:
        cells = []
        for algorithm in algorithms:
            r = slopes.get(dataset, {}).get(algorithm)
            if r is None:
                cells.append("–")
                continue
            se = "" if r["stderr"] is None else f" ± {r['stderr']:.1f}"
            cells.append(f"{r['slope']:+.1f}{se}{marks.get(r['verdict'], '')}")
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    flagged = unsettled(slopes)
    lines += ["", "–: fewer than 3 evaluations per run, no slope.",
              "", f"{len(flagged)} of {sum(len(c) for c in slopes.values())} cells have not settled." if flagged
              else "Every cell has settled by this test.", ""]
    return lines
