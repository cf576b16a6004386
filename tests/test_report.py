"""``offbench report`` on small synthetic results directories with known numbers (plus one real
smoke protocol, marked slow): table cells, headline rules, rliable-equal aggregates, figures,
report.json, missing runs and determinism."""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from offbench.cli.report import register
from offbench.errors import OffbenchError
from offbench.evaluation import report as report_module
from offbench.evaluation import stats
from offbench.evaluation.report import write_report
from offbench.evaluation.results import COLUMNS

MEDIUM, EXPERT = "lite/pendulum/medium-v0", "lite/pendulum/expert-v0"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_results(path: Path, curves: dict, *, seeds=(0, 1, 2), headline='kind = "last"', steps=300,
                 eval_every=100, manifest_runs=(), normalised=True) -> Path:
    """A results directory: ``curves[(algorithm, dataset, seed)]`` lists the normalised score of each
    evaluation (at eval_every, 2 eval_every, ...); a run is complete when it reaches ``steps``."""
    path.mkdir(parents=True, exist_ok=True)
    algos = list(dict.fromkeys(k[0] for k in curves))
    datasets = list(dict.fromkeys(k[1] for k in curves))
    (path / "protocol.toml").write_text(
        f'name = "synthetic"\nsuite = "lite"\ndescription = "test"\nseeds = {list(seeds)}\n'
        f"datasets = {json.dumps(datasets)}\nalgorithms = {json.dumps(algos)}\n\n"
        f"[train]\nsteps = {steps}\neval_every = {eval_every}\n\n[headline]\n{headline}\n")
    rows = []
    for (a, d, s), values in curves.items():
        for i, v in enumerate(values):
            step = eval_every * (i + 1)
            rows.append({"algorithm": a, "dataset": d, "suite": "lite", "env_id": "Pendulum-v1", "seed": s,
                         "step": step, "final": step == steps, "episodes": 2, "eval_seed": 1000,
                         "return_mean": 10 * v, "return_stderr": 0.0,
                         "normalized_score": v if normalised else None, "success_rate": None,
                         "returns": json.dumps([10 * v, 10 * v]), "run_dir": f"runs/{a}/{d.replace('/', '__')}/seed{s}"})
    pd.DataFrame.from_records(rows, columns=COLUMNS).to_csv(path / "results.csv", index=False)
    (path / "manifest.json").write_text(json.dumps({
        "suite": "lite", "protocol": "synthetic", "git_commit": "abc1234", "wall_time_seconds": 12.5,
        "offbench_version": "0.1.0", "runs": list(manifest_runs)}))
    return path


# bc and iql on two datasets, three seeds, evaluations at steps 100, 200, 300 (final)
CURVES = {
    ("bc", MEDIUM, 0): [5.0, 10.0, 10.0], ("bc", MEDIUM, 1): [15.0, 30.0, 20.0], ("bc", MEDIUM, 2): [1.0, 20.0, 30.0],
    ("bc", EXPERT, 0): [40.0, 50.0, 60.0], ("bc", EXPERT, 1): [40.0, 50.0, 70.0], ("bc", EXPERT, 2): [40.0, 50.0, 80.0],
    ("iql", MEDIUM, 0): [30.0, 40.0, 50.0], ("iql", MEDIUM, 1): [30.0, 60.0, 40.0],
    ("iql", MEDIUM, 2): [30.0, 50.0, 60.0],
    ("iql", EXPERT, 0): [90.0, 100.0, 110.0], ("iql", EXPERT, 1): [80.0, 90.0, 100.0],
    ("iql", EXPERT, 2): [70.0, 95.0, 105.0],
}


@pytest.fixture
def results(tmp_path):
    return make_results(tmp_path / "results", CURVES)


def _cell(report, algorithm, dataset, kind="headline"):
    return report["cells"][kind][dataset][algorithm]


def test_table_cells_are_mean_and_standard_error_over_seeds(results, tmp_path):
    report = write_report(results, tmp_path / "out", reps=200, seed=0, figures=False)
    table_md = (tmp_path / "out" / "table.md").read_text()
    # hand computation: last evaluations of bc on medium are 10, 20, 30 -> 20.0 +- 10.0 / sqrt(3) (std 10.0)
    cell = _cell(report, "bc", MEDIUM)
    assert cell["scores"] == [10.0, 20.0, 30.0] and cell["mean"] == 20.0 and cell["std"] == pytest.approx(10.0)
    assert cell["stderr"] == pytest.approx(10.0 / np.sqrt(3))
    assert 10.0 <= cell["low"] <= 20.0 <= cell["high"] <= 30.0
    assert f"| {MEDIUM} | 37.0 | 20.0 ± 5.8 [{cell['low']:.1f}, {cell['high']:.1f}] | 50.0 ± 5.8 [" in table_md
    assert "Cells: mean ± standard error over 3 seeds" in table_md
    # slopes over the 3 evaluations: bc climbs on expert only (+150 ± 29 per 1k steps; medium's
    # +65 ± 40 is within 2 SE), iql on both; the aggregate rows say how many cells still move
    assert "| **cells not settled (↑ / ↓)** | | 1 of 2 | 2 of 2 |" in table_md
    assert report["behaviour"][MEDIUM] == 37.0  # the card's mean episode return, normalised
    iql = _cell(report, "iql", EXPERT)
    assert iql["mean"] == pytest.approx(105.0) and iql["std"] == pytest.approx(np.std([110, 100, 105], ddof=1))
    # best over training is only in the labelled secondary table
    best = _cell(report, "bc", MEDIUM, "best")
    assert best["scores"] == [10.0, 30.0, 30.0]
    assert "Secondary (optimistic): best evaluation over training" in table_md
    assert table_md.index("## Headline score") < table_md.index("Secondary (optimistic)")
    # the header states the protocol, the headline rule, seeds, steps, commit and wall time
    for text in ("Protocol `synthetic`", "last evaluation", "Seeds: 0, 1, 2", "gradient steps: 300",
                 "abc1234", "12.5 s"):
        assert text in table_md
    csv = pd.read_csv(tmp_path / "out" / "table.csv")
    row = csv[(csv.row == "dataset") & (csv.dataset == MEDIUM)].iloc[0]
    assert row["bc_mean"] == 20.0 and row["bc_std"] == pytest.approx(10.0) and row["bc_n"] == 3
    assert row["bc_stderr"] == pytest.approx(10.0 / np.sqrt(3))
    assert row["bc_ci_low"] == pytest.approx(cell["low"]) and row["bc_ci_high"] == pytest.approx(cell["high"])
    assert set(csv.row) == {"dataset", "mean", "iqm"}
    # no task here is one of D4RL's: no D4RL-normalised table; every row uses the datasets' own references
    assert report["d4rl"] is None and "D4RL" not in table_md and set(csv.normalisation) == {"dataset"}
    tex = (tmp_path / "out" / "table.tex").read_text()
    assert r"20.0 $\pm$ 5.8" in tex and r"\toprule" in tex and "lite/pendulum/medium-v0" in tex


def test_headline_rule_changes_the_table(tmp_path):
    last = write_report(make_results(tmp_path / "last", CURVES), reps=50, figures=False)
    mean2 = write_report(make_results(tmp_path / "mean2", CURVES, headline='kind = "mean_last_n"\nn = 2'),
                         reps=50, figures=False)
    # bc on medium: last = 10, 20, 30; mean of the last two = 10, 25, 25
    assert _cell(last, "bc", MEDIUM)["scores"] == [10.0, 20.0, 30.0]
    assert _cell(mean2, "bc", MEDIUM)["scores"] == [10.0, 25.0, 25.0]
    assert _cell(mean2, "bc", MEDIUM)["mean"] == pytest.approx(20.0)
    assert _cell(mean2, "iql", EXPERT)["mean"] == pytest.approx(np.mean([105, 95, 100]))
    text = (tmp_path / "mean2" / "report" / "table.md").read_text()
    assert "mean of the last 2 evaluations" in text and "100.0 ± 2.9" in text
    assert "105.0 ± 2.9" in (tmp_path / "last" / "report" / "table.md").read_text()


def test_aggregates_equal_rliable(results, tmp_path, monkeypatch):
    """With every bootstrap drawn from RandomState(seed) (as rliable does after np.random.seed),
    the report's aggregates are rliable's, points and intervals."""
    metrics = pytest.importorskip("rliable.metrics")
    rly = pytest.importorskip("rliable.library")
    monkeypatch.setattr(report_module, "_rng", lambda seed, *labels: np.random.RandomState(seed))
    # the aggregates draw from stats.make_rng(seed) (shared with the leaderboard): a RandomState too
    make_rng = stats.make_rng
    monkeypatch.setattr(stats, "make_rng", lambda rng=0: make_rng(
        np.random.RandomState(rng) if isinstance(rng, int) else rng))
    report = write_report(results, tmp_path / "out", reps=200, seed=11, figures=False)
    assert report["aggregate_datasets"] == [MEDIUM, EXPERT]
    state = np.random.get_state()
    try:
        for algorithm in ("bc", "iql"):
            matrix = np.array([[CURVES[(algorithm, d, s)][-1] for d in (MEDIUM, EXPERT)] for s in (0, 1, 2)])
            np.random.seed(11)
            func = lambda x: np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x),  # noqa: E731
                                       metrics.aggregate_median(x), metrics.aggregate_optimality_gap(x, 100.0)])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                points, intervals = rly.get_interval_estimates({algorithm: matrix}, func, reps=200)
            got = report["aggregates"]["headline"]["lite"][algorithm]
            for k, metric in enumerate(("iqm", "mean", "median", "optimality_gap")):
                assert got[metric]["value"] == pytest.approx(points[algorithm][k], abs=1e-12)
                assert got[metric]["low"] == pytest.approx(intervals[algorithm][0, k], abs=1e-12)
                assert got[metric]["high"] == pytest.approx(intervals[algorithm][1, k], abs=1e-12)
        bc = np.array([[CURVES[("bc", d, s)][-1] for d in (MEDIUM, EXPERT)] for s in (0, 1, 2)])
        iql = np.array([[CURVES[("iql", d, s)][-1] for d in (MEDIUM, EXPERT)] for s in (0, 1, 2)])
        poi = {(r["algorithm_x"], r["algorithm_y"]): r for r in report["probability_of_improvement"]}
        assert poi[("iql", "bc")]["probability"] == pytest.approx(metrics.probability_of_improvement(iql, bc))
        assert poi[("iql", "bc")]["probability"] == 1.0 and poi[("bc", "iql")]["probability"] == 0.0
    finally:
        np.random.set_state(state)
    aggregates = pd.read_csv(tmp_path / "out" / "aggregates.csv")
    row = aggregates[(aggregates.score == "headline") & (aggregates.algorithm == "bc") & (aggregates.metric == "iqm")]
    assert row["value"].item() == pytest.approx(stats.aggregate_iqm(bc))
    assert (tmp_path / "out" / "probability_of_improvement.csv").read_text().startswith(
        "algorithm_x,algorithm_y,probability,ci_low,ci_high\n")


def test_figures_readme_and_report_json(results):
    out = write_report(results, reps=100, seed=0)  # default out dir: RESULTS_DIR/report
    report_dir = results / "report"
    assert out["out_dir"] == str(report_dir)
    for name in ("learning_curves", "aggregate_metrics", "performance_profiles", "probability_of_improvement"):
        data = (report_dir / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name
    readme = (report_dir / "README.md").read_text()
    assert "![learning curves](learning_curves.png)" in readme and "| lite/pendulum/medium-v0 | 37.0 | 20.0 ± 5.8" in readme
    saved = json.loads((report_dir / "report.json").read_text())
    assert saved["cells"]["headline"][MEDIUM]["bc"]["mean"] == 20.0
    assert saved["protocol"]["headline"] == {"kind": "last", "n": 1, "describe": "last evaluation"}
    assert saved["manifest"]["git_commit"] == "abc1234"
    assert saved["bootstrap"]["reps"] == 100
    assert set(saved["aggregates"]["headline"]["lite"]["bc"]) == {"iqm", "mean", "median", "optimality_gap"}
    assert len(saved["performance_profiles"]["taus"]) == len(
        saved["performance_profiles"]["algorithms"]["iql"]["profile"])
    curve = saved["learning_curves"][MEDIUM]["bc"]
    assert curve["step"] == [100, 200, 300] and curve["mean"] == pytest.approx([7.0, 20.0, 20.0])
    assert saved["missing_runs"] == [] and saved["notes"] == []
    assert set(saved["files"]) >= {"table.md", "table.csv", "table.tex", "aggregates.csv", "report.json",
                                   "probability_of_improvement.csv", "README.md", "learning_curves.png"}


def test_same_seed_gives_identical_files(results, tmp_path):
    write_report(results, tmp_path / "one", reps=300, seed=3, figures=False)
    write_report(results, tmp_path / "two", reps=300, seed=3, figures=False)
    for name in ("table.md", "table.csv", "table.tex", "aggregates.csv", "probability_of_improvement.csv",
                 "table_best_over_training.csv", "report.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_failed_and_incomplete_runs_are_reported_not_averaged(tmp_path):
    curves = dict(CURVES)
    del curves[("iql", EXPERT, 2)]  # failed
    curves[("iql", MEDIUM, 1)] = [30.0, 60.0]  # stopped at step 200 of 300
    results = make_results(tmp_path / "results", curves, manifest_runs=[
        {"key": ["iql", EXPERT, 2], "algorithm": "iql", "dataset": EXPERT, "seed": 2, "status": "failed",
         "error": "RuntimeError: out of memory\nTraceback ..."}])
    report = write_report(results, reps=100, figures=False)
    missing = {(r["algorithm"], r["dataset"], r["seed"]): r["reason"] for r in report["missing_runs"]}
    assert missing == {("iql", EXPERT, 2): "failed: RuntimeError: out of memory",
                       ("iql", MEDIUM, 1): "incomplete: last evaluation at step 200 of 300"}
    # the incomplete run's step-200 score is not a headline
    assert _cell(report, "iql", MEDIUM)["scores"] == [50.0, 60.0]
    # iql finished no dataset on every seed: the aggregates leave it out (and say so) rather than
    # average unequal seeds; bc keeps both datasets
    assert report["aggregate_algorithms"] == ["bc"] and report["aggregate_datasets"] == [MEDIUM, EXPERT]
    assert set(report["aggregates"]["headline"]["lite"]) == {"bc"} and report["probability_of_improvement"] == []
    assert "iql: left out of the aggregates (no dataset finished on all 3 seeds)" in report["notes"]
    table_md = (results / "report" / "table.md").read_text()
    assert "55.0 ± 5.0" in table_md and "(n=2)" in table_md
    assert "Missing or incomplete runs (2)" in table_md and "failed: RuntimeError: out of memory" in table_md

    # iql complete on one dataset: the aggregates compare both algorithms on that dataset only
    curves[("iql", MEDIUM, 1)] = CURVES[("iql", MEDIUM, 1)]
    report = write_report(make_results(tmp_path / "partial", curves), reps=100, figures=False)
    assert report["aggregate_datasets"] == [MEDIUM]
    assert report["aggregates"]["headline"]["lite"]["bc"]["mean"]["value"] == 20.0
    assert f"{EXPERT}: dropped from the aggregates, incomplete for iql (2/3 seeds)" in report["notes"]
    assert "Mean (lite, 1 dataset)" in (tmp_path / "partial" / "report" / "table.md").read_text()


def test_algorithm_without_any_complete_run_and_raw_returns(tmp_path):
    curves = {**CURVES, ("cql", MEDIUM, 0): [1.0], ("cql", EXPERT, 0): [1.0]}
    report = write_report(make_results(tmp_path / "r", curves), reps=50, figures=False)
    assert report["aggregate_algorithms"] == ["bc", "iql"] and report["aggregate_datasets"] == [MEDIUM, EXPERT]
    assert any(n.startswith("cql: left out of the aggregates") for n in report["notes"])
    assert sum(r["algorithm"] == "cql" for r in report["missing_runs"]) == 6

    raw = write_report(make_results(tmp_path / "raw", CURVES, normalised=False), reps=50, figures=True)
    assert raw["units"][MEDIUM] == "return" and _cell(raw, "bc", MEDIUM)["mean"] == 200.0
    assert raw["aggregate_datasets"] == [] and "(return)" in (tmp_path / "raw" / "report" / "table.md").read_text()
    assert raw["figures"] == {"learning_curves": "learning_curves.png"}


def test_per_suite_and_overall_aggregates(tmp_path):
    other = "mini/grid/x-v0"
    curves = {**CURVES, **{(a, other, s): v for (a, d, s), v in CURVES.items() if d == MEDIUM}}
    report = write_report(make_results(tmp_path / "r", curves), reps=50, figures=False)
    assert report["aggregate_groups"] == {"lite": [MEDIUM, EXPERT], "mini": [other], "all": [MEDIUM, EXPERT, other]}
    assert report["aggregates"]["headline"]["all"]["bc"]["mean"]["value"] == pytest.approx((20 + 70 + 20) / 3)
    assert report["aggregates"]["headline"]["mini"]["iql"]["iqm"]["value"] == pytest.approx(50.0)
    table_md = (tmp_path / "r" / "report" / "table.md").read_text()
    assert "**IQM (all, 3 datasets)**" in table_md and "**Mean (mini, 1 dataset)**" in table_md


def test_bad_input(tmp_path, results):
    with pytest.raises(OffbenchError, match="manifest.json is missing"):
        (tmp_path / "empty").mkdir()
        (tmp_path / "empty" / "protocol.toml").write_text((results / "protocol.toml").read_text())
        write_report(tmp_path / "empty")
    with pytest.raises(OffbenchError, match="protocol.toml is missing"):
        write_report(tmp_path / "nowhere")
    with pytest.raises(OffbenchError, match="reps"):
        write_report(results, reps=0)


def test_cli(results, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="offbench")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(results), "--out", str(tmp_path / "cli"), "--reps", "50",
                              "--seed", "2", "--no-figures"])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "| lite/pendulum/medium-v0 | 37.0 | 20.0 ± 5.8" in printed and str(tmp_path / "cli") in printed
    assert not list((tmp_path / "cli").glob("*.png"))
    assert json.loads((tmp_path / "cli" / "report.json").read_text())["bootstrap"]["seed"] == 2


@pytest.mark.slow
def test_report_of_a_real_smoke_reproduction(tmp_path):
    from offbench.cli import main

    out = tmp_path / "smoke"
    assert main(["reproduce", "lite", "--protocol", "smoke", "--out", str(out), "--no-report"]) == 0
    report = write_report(out, reps=200)
    assert report["missing_runs"] == []
    assert report["aggregate_algorithms"] == ["bc", "iql"]
    for algorithm in ("bc", "iql"):
        cell = report["cells"]["headline"]["lite/pendulum/medium-replay-v0"][algorithm]
        assert cell["n"] == 2 and np.isfinite(cell["mean"])
    assert (out / "report" / "learning_curves.png").read_bytes().startswith(PNG_MAGIC)
