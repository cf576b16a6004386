"""Issue 13, item 6: scores on D4RL's scale next to the datasets' own normalisation.

D4RL's reference returns belong to the task (offbench.evaluation.literature). A synthetic
locomotion results directory (hopper and walker2d, whose tasks D4RL has, plus a Pendulum dataset,
whose task it does not) goes through ``offbench report`` and, submitted as entries, through
``offbench leaderboard build``; both must show a labelled D4RL-normalised table with numbers
computed by hand from the returns, leave the headline on the datasets' own normalisation, and
agree with each other.
"""
from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import offbench.protocol
from offbench.data.catalogue import get_card
from offbench.evaluation import stats
from offbench.evaluation.literature import D4RL_REFERENCES, D4RL_TITLE, d4rl_reference
from offbench.evaluation.report import write_report

HOPPER, WALKER, PENDULUM = "locomotion/hopper/medium-v0", "locomotion/walker2d/medium-v0", "lite/pendulum/medium-v0"
DATASETS = [HOPPER, WALKER, PENDULUM]
ENV_IDS = {HOPPER: "Hopper-v5", WALKER: "Walker2d-v5", PENDULUM: "Pendulum-v1"}
PROTOCOL = f"""
name = "locotiny"
suite = "locomotion"
description = "a synthetic locomotion protocol"
seeds = [0, 1, 2]
datasets = {json.dumps(DATASETS)}
algorithms = ["bc", "iql"]

[train]
steps = 20
eval_every = 10
eval_episodes = 2
final_eval_episodes = 2

[headline]
kind = "mean_last_n"
n = 2
"""
# every episode return of (algorithm, dataset, seed) at steps 10 and 20: the headline (mean of the
# last two evaluations) is their mean
BASE = {HOPPER: 1000.0, WALKER: 2000.0, PENDULUM: -800.0}
GAIN = {"bc": 0.0, "iql": 300.0}


def returns_of(algorithm: str, dataset: str, seed: int, step: int) -> list[float]:
    level = BASE[dataset] + GAIN[algorithm] + 100.0 * seed + (10.0 if step == 20 else -10.0)
    return [level - 5.0, level + 5.0]


def headline_return(algorithm: str, dataset: str, seed: int) -> float:
    return BASE[dataset] + GAIN[algorithm] + 100.0 * seed


def write_results(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "protocol.toml").write_text(PROTOCOL)
    rows, runs = [], []
    for algorithm in GAIN:
        for dataset in DATASETS:
            ref = get_card(dataset).reference_scores
            for seed in (0, 1, 2):
                run_dir = f"runs/{algorithm}/{dataset.replace('/', '__')}/seed{seed}"
                for step in (10, 20):
                    returns = returns_of(algorithm, dataset, seed, step)
                    scores = [100 * (r - ref["random"]) / (ref["expert"] - ref["random"]) for r in returns]
                    rows.append({"algorithm": algorithm, "dataset": dataset, "suite": "locomotion",
                                 "env_id": ENV_IDS[dataset], "seed": seed, "step": step, "final": step == 20,
                                 "episodes": 2, "eval_seed": 50_000_000 + step, "return_mean": float(np.mean(returns)),
                                 "return_stderr": float(np.std(returns, ddof=1) / math.sqrt(2)),
                                 "normalized_score": float(np.mean(scores)), "success_rate": None,
                                 "returns": json.dumps(returns), "run_dir": run_dir})
                runs.append({"key": [algorithm, dataset, seed], "algorithm": algorithm, "dataset": dataset,
                             "seed": seed, "status": "finished", "error": None, "run_dir": run_dir})
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    (root / "manifest.json").write_text(json.dumps({
        "suite": "locomotion", "protocol": "locotiny", "algorithms": list(GAIN), "datasets": DATASETS,
        "seeds": [0, 1, 2], "backend": "local", "workers": 1, "git_commit": "a" * 40, "offbench_version": "0.1.0",
        "dataset_sha256": {d: get_card(d).sha256 for d in DATASETS}, "wall_time_seconds": 1.0,
        "run_seconds_total": 1.0, "runs": runs}))
    return root


def d4rl(dataset: str, value: float) -> float:
    ref = d4rl_reference(dataset)
    return 100 * (value - ref.random) / (ref.expert - ref.random)


def own(dataset: str, value: float) -> float:
    ref = get_card(dataset).reference_scores
    return 100 * (value - ref["random"]) / (ref["expert"] - ref["random"])


@pytest.fixture
def results(tmp_path):
    return write_results(tmp_path / "results")


# ---------------------------------------------------------------------- the references
def test_d4rl_references_are_d4rls_constants_and_belong_to_tasks():
    # d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE (REFERENCE.md section 1)
    assert {t: (r.random, r.expert) for t, r in D4RL_REFERENCES.items()} == {
        "halfcheetah": (-280.178953, 12135.0), "hopper": (-20.272305, 3234.3), "walker2d": (1.629008, 4592.3)}
    for kind in ("random-v0", "medium-replay-v0", "expert-v0"):  # every dataset of a task: the task's references
        assert d4rl_reference(f"locomotion/hopper/{kind}") is D4RL_REFERENCES["hopper"]
    assert d4rl_reference("locomotion/halfcheetah/medium-v0").literature_env_id == "HalfCheetah-v2"
    assert d4rl_reference(PENDULUM) is None and d4rl_reference("lite/nosuchtask/medium-v0") is None
    hopper = D4RL_REFERENCES["hopper"]
    assert hopper.normalise(-20.272305) == 0.0 and hopper.normalise(3234.3) == pytest.approx(100.0)
    # the dataset's own expert (the card) is not D4RL's: the same return is a different score
    card = get_card(HOPPER).reference_scores
    assert card["expert"] == 2907.496 and hopper.normalise(card["expert"]) == pytest.approx(89.96, abs=0.01)


# ---------------------------------------------------------------------- the report
def test_report_adds_a_labelled_d4rl_table(results, tmp_path):
    report = write_report(results, tmp_path / "out", reps=200, seed=3, figures=False)
    d4 = report["d4rl"]
    assert d4["label"] == D4RL_TITLE and d4["datasets"] == [HOPPER, WALKER]  # not Pendulum: D4RL has no such task
    assert d4["aggregate_groups"] == {"locomotion": [HOPPER, WALKER]}
    assert report["aggregate_groups"] == {"locomotion": [HOPPER, WALKER], "lite": [PENDULUM], "all": DATASETS}
    assert d4["references"][HOPPER] == {"task": "hopper", "d4rl_env_id": "Hopper-v2", "d4rl_random": -20.272305,
                                        "d4rl_expert": 3234.3, "dataset_random": 16.668839, "dataset_expert": 2907.496}
    for dataset in (HOPPER, WALKER):
        for algorithm in GAIN:
            expected = [headline_return(algorithm, dataset, s) for s in (0, 1, 2)]
            cell, own_cell = d4["cells"][dataset][algorithm], report["cells"]["headline"][dataset][algorithm]
            assert cell["scores"] == pytest.approx([d4rl(dataset, r) for r in expected], abs=1e-9)
            assert own_cell["scores"] == pytest.approx([own(dataset, r) for r in expected], abs=1e-9)
            # the same resamples: the D4RL interval is the own interval mapped to D4RL's scale
            to_d4rl = lambda x: d4rl(dataset, get_card(dataset).reference_scores["random"] + x / 100 * (  # noqa: E731
                get_card(dataset).reference_scores["expert"] - get_card(dataset).reference_scores["random"]))
            assert cell["low"] == pytest.approx(to_d4rl(own_cell["low"]), abs=1e-9)
            assert cell["high"] == pytest.approx(to_d4rl(own_cell["high"]), abs=1e-9)
    # hopper: iql's seed-0 headline return is 1300 -> 100 (1300 + 20.272305) / 3254.572305 = 40.5667
    assert d4["cells"][HOPPER]["iql"]["scores"][0] == pytest.approx(40.5667, abs=1e-4)
    assert report["cells"]["headline"][HOPPER]["iql"]["scores"][0] == pytest.approx(44.3932, abs=1e-4)
    assert d4["behaviour"][HOPPER] == round(d4rl(HOPPER, get_card(HOPPER).returns["mean"]), 1) == 25.5
    # aggregates on D4RL's scale: stats.aggregate_estimates of the D4RL matrix with the report's seed
    for algorithm in GAIN:
        matrix = np.array([[d4rl(d, headline_return(algorithm, d, s)) for d in (HOPPER, WALKER)] for s in (0, 1, 2)])
        expected = stats.aggregate_estimates(matrix, reps=200, seed=3)
        got = d4["aggregates"]["locomotion"][algorithm]
        for metric, estimate in expected.items():
            assert got[metric] == pytest.approx(estimate.to_dict(), abs=1e-9)

    out = tmp_path / "out"
    table_md = (out / "table.md").read_text()
    headline_at = table_md.index("## Headline score (normalised with each dataset's own reference returns)")
    d4rl_at = table_md.index(f"## {D4RL_TITLE}")
    assert headline_at < d4rl_at < table_md.index("## Secondary (optimistic)")
    d4rl_part = table_md[d4rl_at:table_md.index("## Secondary (optimistic)")]
    assert "| hopper | -20.272305 | 3234.3 | Hopper-v2 | 16.668839 | 2907.496 |" in d4rl_part
    assert "| walker2d | 1.629008 | 4592.3 | Walker2d-v2 | 1.770024 | 4184.271 |" in d4rl_part
    assert PENDULUM not in d4rl_part and "Gymnasium's v5" in d4rl_part
    iqm = d4["aggregates"]["locomotion"]["iql"]["iqm"]
    assert f"{iqm['value']:.1f} [{iqm['low']:.1f}, {iqm['high']:.1f}]" in d4rl_part
    assert "**IQM (locomotion, 2 datasets)**" in d4rl_part

    csv = pd.read_csv(out / "table.csv")
    assert list(csv.columns[:5]) == ["row", "dataset", "suite", "unit", "normalisation"]
    assert list(csv.normalisation) == ["dataset"] * 3 + ["dataset"] * 6 + ["d4rl"] * 2 + ["d4rl"] * 2
    row = csv[(csv.normalisation == "d4rl") & (csv.dataset == HOPPER)].iloc[0]
    assert row["iql_mean"] == pytest.approx(d4["cells"][HOPPER]["iql"]["mean"])
    aggregates = pd.read_csv(out / "aggregates.csv")
    assert set(aggregates.score) == {"headline", "best_over_training (optimistic)", "headline, D4RL-normalised"}
    d4rl_iqm = aggregates[(aggregates.score == "headline, D4RL-normalised") & (aggregates.algorithm == "iql")
                          & (aggregates.metric == "iqm")].iloc[0]
    assert (d4rl_iqm["value"], d4rl_iqm["ci_low"], d4rl_iqm["ci_high"], d4rl_iqm["datasets"]) == pytest.approx(
        (iqm["value"], iqm["low"], iqm["high"], 2))
    assert D4RL_TITLE in (out / "table.tex").read_text().replace("\\", "")
    readme = (out / "README.md").read_text()
    assert f"### {D4RL_TITLE}" in readme and f"## Aggregate metrics ({D4RL_TITLE})" in readme
    assert json.loads((out / "report.json").read_text())["d4rl"]["datasets"] == [HOPPER, WALKER]


# ---------------------------------------------------------------------- the board
@pytest.fixture
def board(tmp_path, results, monkeypatch):
    """A board of the synthetic results' bc and iql, submitted through the CLI under protocol locotiny."""
    from offbench.cli import main

    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "locotiny.toml").write_text(PROTOCOL)
    monkeypatch.setattr(offbench.protocol, "PROTOCOL_DIR", folder)
    board = tmp_path / "board"
    (board / "entries").mkdir(parents=True)
    for algorithm in GAIN:
        assert main(["leaderboard", "submit", str(results), "--name", f"loco-{algorithm}", "--algo", algorithm,
                     "--authors", "<b>team</b>", "--out", str(board / "entries" / f"loco-{algorithm}.json")]) == 0
    assert main(["leaderboard", "build", "--out", str(board)]) == 0
    return board


def test_board_adds_a_labelled_d4rl_section_that_agrees_with_the_report(board, results, tmp_path):
    from offbench.leaderboard.build import load_entries, make_groups

    (group,) = make_groups(load_entries(board / "entries"))
    assert [entry["name"] for entry, _ in group.rows] == ["loco-iql", "loco-bc"]  # ranked by the own IQM
    assert group.d4rl_datasets == [HOPPER, WALKER]
    report = write_report(results, tmp_path / "report", figures=False)  # default reps and seed, as the board
    for entry, scores in group.rows:
        algorithm = entry["algorithm"]["import_path"]
        for dataset in (HOPPER, WALKER):
            expected = [d4rl(dataset, headline_return(algorithm, dataset, s)) for s in (0, 1, 2)]
            assert scores.d4rl.datasets[dataset].scores == pytest.approx(expected, abs=1e-9)
        assert PENDULUM not in scores.d4rl.datasets
        # the same scores give the same numbers on the board and in the report, intervals included
        d4 = report["d4rl"]["aggregates"]["locomotion"][algorithm]["iqm"]
        assert (scores.d4rl.iqm, *scores.d4rl.ci) == pytest.approx((d4["value"], d4["low"], d4["high"]), abs=1e-9)
        own_iqm = report["aggregates"]["headline"]["all"][algorithm]["iqm"]
        assert (scores.iqm, *scores.ci) == pytest.approx((own_iqm["value"], own_iqm["low"], own_iqm["high"]), abs=1e-9)

    readme = (board / "README.md").read_text()
    section = readme[readme.index(f"### {D4RL_TITLE}"):]
    assert readme.index("| rank | entry |") < readme.index(f"### {D4RL_TITLE}")  # the ranked table comes first
    assert "| hopper | -20.272305 | 3234.3 | Hopper-v2 |" in section
    iql = group.rows[0][1].d4rl
    assert f"| 1 | loco-iql | {iql.iqm:.1f} [{iql.ci[0]:.1f}, {iql.ci[1]:.1f}] | {iql.mean:.1f} |" in section
    hopper = iql.datasets[HOPPER]
    assert f"| {HOPPER} | {hopper.mean:.1f} ± {hopper.stderr:.1f} |" in section
    assert PENDULUM not in section
    index = (board / "site" / "index.html").read_text()
    assert f'<h3 id="d4rl-locomotion--locotiny">{html.escape(D4RL_TITLE)}</h3>' in index
    assert 'id="d4rl-board-locomotion--locotiny"' in index and 'id="d4rl-datasets-locomotion--locotiny"' in index
    assert "<b>team</b>" not in index and "&lt;b&gt;team&lt;/b&gt;" in index


def test_a_board_without_d4rl_tasks_has_no_d4rl_section():
    """The shipped lite board: no task of it is one of D4RL's."""
    from offbench.leaderboard.build import load_entries, make_groups
    from offbench.leaderboard.site import render_index, render_readme

    groups = make_groups(load_entries(Path(__file__).resolve().parents[1] / "leaderboard" / "entries"))
    assert all(scores.d4rl is None for group in groups for _, scores in group.rows)
    assert "D4RL" not in render_readme(groups, {}) and "D4RL" not in render_index(groups, {})
