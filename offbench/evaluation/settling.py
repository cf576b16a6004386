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

A curve can also have no trend and still not be steady: a policy that solves the task at one
evaluation and fails it at the next. The *swing* of a seed is the root mean square of its
evaluations around its least-squares line over the window; its *noise* the root mean square of
those evaluations' own standard errors (the spread of their episodes, over the square root of
their number), in the same points. Where the caller gives a dataset's scale (score points per unit
of return: ``100 / (expert - random)`` for a score normalised by reference returns), a cell is
``unsteady`` when its mean swing over seeds is at least ``SWING_MIN`` points and more than
``SWING_RATIO`` times its mean noise: the policy itself changes from one evaluation to the next by
more than its evaluation can explain, so its headline (the last evaluations) is one sample of a
swinging curve. Such a cell keeps its slope verdict; the report marks it ``~``.
"""
from __future__ import annotations

import numpy as np

DEFAULT_WINDOW = 4  # evaluations
Z = 2.0  # standard errors
MIN_CHANGE = 2.0  # points of normalised score (or success %) across the window
SWING_MIN = 10.0  # points: a smaller swing is not flagged, whatever its cause
SWING_RATIO = 2.0  # times the evaluations' own noise
MARKS = {"climbing": " ↑", "falling": " ↓"}  # a cell's mark for a verdict that is still moving


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


def swing(steps: np.ndarray, scores: np.ndarray) -> float:
    """Root mean square of ``scores`` around their least-squares line against ``steps``."""
    x, y = np.asarray(steps, dtype=float), np.asarray(scores, dtype=float)
    slope = ols_slope(x, y)
    residuals = y - (y.mean() + slope * (x - x.mean()))
    return float(np.sqrt(np.mean(residuals ** 2)))


def curve_slopes(table, score: str | dict[str, str], *, window: int = DEFAULT_WINDOW,
                 min_change: float | dict[str, float] = MIN_CHANGE,
                 swing_scale: dict[str, float] | None = None) -> dict[str, dict[str, dict]]:
    """``{dataset: {algorithm: {"slope", "stderr", "seeds", "window", "from_step", "to_step", "verdict",
    "swing", "noise", "unsteady"}}}``.

    ``table`` is a results frame (``offbench.evaluation.results``) of finished runs; ``score`` the
    column to fit (``normalized_score`` or ``return_mean``), or a ``{dataset: column}`` mapping;
    ``min_change`` the smallest change across the window that counts, or a per-dataset mapping
    (0 judges by significance alone, e.g. for raw returns). Slopes are in score units per 1,000
    steps. Runs with fewer than 3 evaluations are skipped. ``swing_scale``: ``{dataset: score
    points per unit of return}`` for the datasets whose swing is judged against the evaluations'
    noise (``return_stderr`` times the scale; module docstring); elsewhere ``noise`` is None and
    ``unsteady`` False.
    """
    out: dict[str, dict[str, dict]] = {}
    for (dataset, algorithm), rows in table.groupby(["dataset", "algorithm"], sort=True):
        column = score[dataset] if isinstance(score, dict) else score
        scale = (swing_scale or {}).get(dataset)
        slopes, spans, swings, noises = [], [], [], []
        for _, run in rows.groupby("seed"):
            run = run.sort_values(["step", "final"]).drop_duplicates("step", keep="last").tail(window)
            if len(run) < 3 or run[column].isna().any():
                continue
            steps, scores = run["step"].to_numpy(), run[column].to_numpy()
            slopes.append(1000.0 * ols_slope(steps, scores))
            spans.append((int(run["step"].iloc[0]), int(run["step"].iloc[-1])))
            swings.append(swing(steps, scores))
            if scale is not None and "return_stderr" in run and not run["return_stderr"].isna().any():
                noises.append(float(np.sqrt(np.mean((run["return_stderr"].to_numpy(float) * scale) ** 2))))
        if not slopes:
            continue
        mean = float(np.mean(slopes))
        stderr = float(np.std(slopes, ddof=1) / np.sqrt(len(slopes))) if len(slopes) > 1 else None
        first, last = min(s for s, _ in spans), max(e for _, e in spans)
        change = min_change[dataset] if isinstance(min_change, dict) else min_change
        swung = float(np.mean(swings))
        noise = float(np.mean(noises)) if noises and len(noises) == len(swings) else None
        out.setdefault(dataset, {})[algorithm] = {
            "slope": mean, "stderr": stderr, "seeds": len(slopes), "window": window,
            "from_step": first, "to_step": last, "verdict": verdict(mean, stderr, last - first, change),
            "swing": swung, "noise": noise,
            "unsteady": noise is not None and swung >= SWING_MIN and swung > SWING_RATIO * noise}
    return out


def unsettled(slopes: dict[str, dict[str, dict]]) -> list[tuple[str, str, dict]]:
    """The (dataset, algorithm, record) cells whose curve is still climbing or falling."""
    return [(d, a, r) for d, cells in sorted(slopes.items()) for a, r in sorted(cells.items())
            if r["verdict"] in ("climbing", "falling")]


def unsteady(slopes: dict[str, dict[str, dict]]) -> list[tuple[str, str, dict]]:
    """The (dataset, algorithm, record) cells whose evaluations swing beyond their noise (``~``)."""
    return [(d, a, r) for d, cells in sorted(slopes.items()) for a, r in sorted(cells.items()) if r.get("unsteady")]


def markdown_lines(slopes: dict[str, dict[str, dict]], algorithms: list[str], datasets: list[str],
                   label=lambda a: a) -> list[str]:
    """A Markdown table of slopes (points per 1k steps ± SE over seeds), verdicts marked ↑ / ↓, and
    unsteady cells marked ``~`` with their swing and noise."""
    if not slopes:
        return []
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
            swung = f" ~ (swing {r['swing']:.1f}, noise {r['noise']:.1f})" if r.get("unsteady") else ""
            cells.append(f"{r['slope']:+.1f}{se}{MARKS.get(r['verdict'], '')}{swung}")
        lines.append(f"| {dataset} | " + " | ".join(cells) + " |")
    flagged, swinging = unsettled(slopes), unsteady(slopes)
    total = sum(len(c) for c in slopes.values())
    lines += ["", "–: fewer than 3 evaluations per run, no slope.",
              "", f"{len(flagged)} of {total} cells have not settled." if flagged
              else "Every cell has settled by this test.", ""]
    if swinging:
        lines += [f"~ unsteady ({len(swinging)} of {total} cells): no trend is needed for a curve to move. A seed's "
                  "*swing* is the root mean square of its evaluations around its line over the window, its *noise* "
                  "that of the evaluations' own standard errors; a cell whose mean swing is at least "
                  f"{SWING_MIN:g} points and more than {SWING_RATIO:g} times its noise has a policy that changes from "
                  "one evaluation to the next, and its headline is one sample of that swing: read its interval, "
                  "not its mean.", ""]
    return lines
