"""The slope over a run's last evaluations, and the verdict that marks a cell still moving."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from offbench.evaluation import settling


def _table(curves: dict[tuple[str, str, int], list[float]], every: int = 1000) -> pd.DataFrame:
    rows = []
    for (algorithm, dataset, seed), scores in curves.items():
        for i, score in enumerate(scores):
            rows.append({"algorithm": algorithm, "dataset": dataset, "seed": seed, "step": every * (i + 1),
                         "final": i == len(scores) - 1, "normalized_score": score})
    return pd.DataFrame(rows)


def test_ols_slope_matches_numpy_polyfit():
    rng = np.random.default_rng(0)
    x, y = np.arange(5) * 2000.0, rng.normal(size=5)
    assert settling.ols_slope(x, y) == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-12)


def test_slopes_are_points_per_thousand_steps_over_the_last_window():
    # seed 0 climbs 1 point per 1k steps after a flat start, seed 1 climbs 3: only the last 4 count
    table = _table({("iql", "d", 0): [50, 50, 50, 51, 52, 53, 54], ("iql", "d", 1): [0, 0, 0, 3, 6, 9, 12]})
    r = settling.curve_slopes(table, "normalized_score", window=4)["d"]["iql"]
    assert r["slope"] == pytest.approx(2.0) and r["stderr"] == pytest.approx(1.0)  # slopes 1 and 3: SE √2/√2
    assert (r["from_step"], r["to_step"], r["seeds"]) == (4000, 7000, 2)
    assert r["verdict"] == "settled"  # 2.0 is exactly 2 SE from zero: not more than 2 SE


def test_verdicts():
    steady = {("a", "d", s): [10 + 5 * i + s for i in range(4)] for s in range(3)}  # +5 per 1k, no spread
    flat = {("b", "d", s): [40 + (i % 2) * (s - 1) for i in range(4)] for s in range(3)}  # noise around 40
    tiny = {("c", "d", s): [40 + 0.1 * i + 0.01 * s * i for i in range(4)] for s in range(3)}  # steady but 0.3 pts
    falling = {("e", "d", s): [80 - 4 * i - 0.5 * s * i for i in range(4)] for s in range(3)}
    one_seed = {("f", "d", 0): [0, 10, 20, 30]}
    slopes = settling.curve_slopes(_table({**steady, **flat, **tiny, **falling, **one_seed}), "normalized_score")
    verdicts = {a: r["verdict"] for a, r in slopes["d"].items()}
    assert verdicts == {"a": "climbing", "b": "settled", "c": "settled", "e": "falling", "f": "unjudged"}
    assert [a for _, a, _ in settling.unsettled(slopes)] == ["a", "e"]
    text = "\n".join(settling.markdown_lines(slopes, ["a", "b", "e"], ["d"]))
    assert "+5.0 ± 0.0 ↑" in text and "↓" in text and "2 of 5 cells have not settled" in text


def test_the_shipped_lite_table_marks_its_unsettled_cells():
    """The committed lite table (budgets from learning curves): IQL on pendulum-medium-replay, still climbing at
    8k in the first table, has settled at 24k; CQL there is still climbing at 10k, AWAC falling at 16k (its critic
    diverges), BC on reacher-medium flat; 14 of the 81 cells with slopes are marked."""
    from pathlib import Path

    from offbench.evaluation.results import load_results

    _, _, table = load_results(Path(__file__).resolve().parents[1] / "leaderboard" / "lite")
    slopes = settling.curve_slopes(table, "normalized_score")
    assert slopes["lite/pendulum/medium-replay-v0"]["iql"]["verdict"] == "settled"
    assert slopes["lite/pendulum/medium-replay-v0"]["cql"]["verdict"] == "climbing"
    assert slopes["lite/pendulum/medium-replay-v0"]["awac"]["verdict"] == "falling"
    assert slopes["lite/reacher/medium-v0"]["bc"]["verdict"] == "settled"
    verdicts = [cell["verdict"] for row in slopes.values() for cell in row.values() if cell.get("verdict")]
    assert sum(v != "settled" for v in verdicts) == 14


def test_a_curve_that_swings_beyond_its_evaluation_noise_is_unsteady():
    """No trend, yet not steady: a policy that solves the task at one evaluation and fails at the next.
    The swing (RMS around the seed's line) is judged against the evaluations' own standard errors, in
    score points (``return_stderr`` x the dataset's scale), where the caller gives a scale."""
    x = np.arange(1, 5) * 1000.0
    for y in ([0.0, 98.0, 0.0, 98.0], [98.0, 0.0, 0.0, 98.0]):
        fit = np.polyval(np.polyfit(x, y, 1), x)
        assert settling.swing(x, y) == pytest.approx(np.sqrt(np.mean((np.array(y) - fit) ** 2)))
    assert settling.swing(x, [98.0, 0.0, 0.0, 98.0]) == pytest.approx(49.0)  # flat line at 49: no trend
    curves = {("a", "d", s): [98, 0, 0, 98] for s in range(3)}  # swings, evaluated without noise
    curves |= {("b", "d", s): [98, 0, 0, 98] for s in range(3)}  # swings as much as its evaluations scatter
    curves |= {("c", "d", s): [40, 44, 40, 44] for s in range(3)}  # swings, by less than 10 points
    table = _table(curves)
    table["return_stderr"] = np.where(table["algorithm"] == "b", 50.0, 0.0)  # returns; 1 point per unit below
    slopes = settling.curve_slopes(table, "normalized_score", swing_scale={"d": 1.0})["d"]
    assert slopes["a"]["swing"] == pytest.approx(49.0) and slopes["a"]["noise"] == 0.0
    assert [slopes[a]["unsteady"] for a in "abc"] == [True, False, False]
    assert slopes["a"]["verdict"] == "settled"  # the slope test alone passes it
    unjudged = settling.curve_slopes(table, "normalized_score")["d"]["a"]  # no scale: swing shown, not judged
    assert unjudged["noise"] is None and not unjudged["unsteady"]
    assert [a for _, a, _ in settling.unsteady({"d": slopes})] == ["a"]
    text = "\n".join(settling.markdown_lines({"d": slopes}, ["a", "b", "c"], ["d"]))
    assert "~ (swing 49.0, noise 0.0)" in text and "~ unsteady (1 of 3 cells)" in text
