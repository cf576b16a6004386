"""The goal suite in the harness (issue 16, items 5 and 6): goal-conditioned evaluation (the 5 tasks,
termination at the goal, OGBench's success, per-episode outcomes and tasks kept), the goal protocols
and their resolution (`--protocol smoke` of suite goal is goal-smoke), the report's success-rate
labels and per-task table, and the leaderboard on goal entries (returns 0 or 1, success rates shown)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ogbench", reason="PointMaze needs `pip install --no-deps ogbench==1.2.2`")

import offbench.envs  # noqa: E402,F401
from baselines.goal import ALGORITHMS  # noqa: E402
from offbench.data.catalogue import get_card  # noqa: E402
from offbench.envs import pointmaze  # noqa: E402
from offbench.errors import OffbenchError  # noqa: E402
from offbench.evaluation.results import COLUMNS, SUCCESS_UNIT, success_scored  # noqa: E402
from offbench.protocol import load_protocol, protocol_for_suite  # noqa: E402

GOAL_DATASETS = ["goal/pointmaze-medium/stitch-val-v0", "goal/pointmaze-medium/navigate-val-v0"]


@pytest.fixture
def goal_names(monkeypatch):
    """The goal algorithms by name, whether or not ``offbench.algorithm.BUILTIN`` lists them yet."""
    from offbench.algorithm import BUILTIN

    for name, path in ALGORITHMS.items():
        if name not in BUILTIN:
            monkeypatch.setitem(BUILTIN, name, path)


def test_goal_algorithms_are_built_in():
    """``offbench train gcivl ...`` and the goal protocols name them: offbench.algorithm.BUILTIN must
    list baselines.goal.ALGORITHMS."""
    from offbench.algorithm import BUILTIN

    missing = {k: v for k, v in ALGORITHMS.items() if BUILTIN.get(k) != v}
    assert not missing, f"add to offbench.algorithm.BUILTIN: {missing}"


# ---------------------------------------------------------------------- evaluation
class Oracle:
    """An 'algorithm' whose deterministic policy is OGBench's noiseless oracle (it reaches most goals)."""

    training = False

    def __init__(self):
        self.act = pointmaze.oracle_policy(pointmaze.MazeGeometry.of("medium"))

    def eval(self):
        return self

    def train(self, mode=True):
        return self


class FakeDataset:
    def __init__(self, dataset_id):
        self.card = get_card(dataset_id)
        self.metadata = type("M", (), {"dataset_id": dataset_id, "env_id": self.card.env_id,
                                       "reference_scores": self.card.reference_scores})

    def normalized_score(self, returns):
        ref = self.card.reference_scores
        return 100 * (np.asarray(returns) - ref["random"]) / (ref["expert"] - ref["random"])


def test_evaluation_plays_the_five_tasks_and_keeps_each_episode_s_outcome():
    from offbench.train import evaluate

    seed = 1_000_003 + 50_000_000  # as fit's first evaluation of seed 1: not a multiple of 5
    row = evaluate(Oracle(), FakeDataset("goal/pointmaze-medium/navigate-v0"), 10, seed)
    assert row["task_ids"] == [1 + (seed + i) % 5 for i in range(10)]  # each task twice
    assert sorted(row["task_ids"]) == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # an episode ends at the goal with reward 1, so its return is its success
    assert row["successes"] == [int(r) for r in row["returns"]]
    assert all(length < 1000 for length, s in zip(row["lengths"], row["successes"]) if s)
    assert row["success_rate"] == pytest.approx(np.mean(row["successes"]))
    assert row["normalized_score"] == pytest.approx(100 * row["success_rate"])
    for task, rate in row["success_rate_per_task"].items():
        outcomes = [s for s, t in zip(row["successes"], row["task_ids"]) if t == int(task)]
        assert rate == pytest.approx(np.mean(outcomes))
    assert 0.5 < row["success_rate"]  # the oracle (91% over 250 episodes, the card)


def test_goal_cards_are_success_scored():
    for dataset in GOAL_DATASETS:
        assert success_scored(dataset)
    assert not success_scored("lite/pendulum/medium-v0") and not success_scored("no/such/dataset-v0")


# ---------------------------------------------------------------------- protocols
def test_smoke_and_full_resolve_to_the_goal_variants():
    assert protocol_for_suite("goal", "smoke").name == "goal-smoke"
    assert protocol_for_suite("goal", "full").name == "goal-full"
    assert protocol_for_suite("goal").name == "goal"
    assert protocol_for_suite("goal", "goal-full").name == "goal-full"
    assert protocol_for_suite("lite", "smoke").name == "smoke"  # the other suites are unchanged
    assert protocol_for_suite("locomotion", "full").name == "full"
    assert protocol_for_suite("lite").name == "lite"
    with pytest.raises(OffbenchError, match="is for suite 'goal'"):
        protocol_for_suite("lite", "goal")


def test_goal_full_is_ogbench_s_protocol(goal_names):
    from offbench.algorithm import load_algorithm_class, make_config
    from offbench.leaderboard.validate import expected_schedule

    full = load_protocol("goal-full")
    assert full.suite == "goal" and full.seeds == list(range(8))
    assert set(full.algorithms) == set(ALGORITHMS)
    assert {d.split("/")[1] for d in full.datasets} == {f"pointmaze-{m}" for m in pointmaze.MAZES}
    assert {d.split("/")[2] for d in full.datasets} == {"navigate-v0", "stitch-v0"}
    assert (full.headline.kind, full.headline.n) == ("mean_last_n", 3)
    for algorithm in full.algorithms:
        cfg = full.train_config(algorithm, 0)
        assert (cfg.steps, cfg.batch_size, cfg.eval_episodes, cfg.final_eval_episodes) == (1_000_000, 1024, 250, 250)
        steps, slots = expected_schedule(full, algorithm, 0)
        assert [s.step for s in slots][-3:] == [800_000, 900_000, 1_000_000]  # the headline's evaluations
        config = make_config(load_algorithm_class(algorithm), full.settings(algorithm))
        assert config.hidden == (512, 512, 512) and config.lr == 3e-4  # OGBench's networks: the defaults
        assert config.layer_norm == (algorithm != "gcbc")


@pytest.mark.parametrize("name", ["goal", "goal-smoke"])
def test_goal_protocols_resolve_every_setting(goal_names, name):
    from offbench.algorithm import load_algorithm_class, make_config
    from offbench.protocol import check_runnable

    protocol = load_protocol(name)
    check_runnable(protocol)
    assert set(protocol.algorithms) == set(ALGORITHMS)
    for algorithm in protocol.algorithms:
        make_config(load_algorithm_class(algorithm), protocol.settings(algorithm))
        cfg = protocol.train_config(algorithm, 0)
        # every evaluation plays each of the 5 tasks equally often
        assert cfg.eval_episodes % 5 == 0 and cfg.final_eval_episodes % 5 == 0
    for dataset in protocol.datasets:
        assert success_scored(dataset)


# ---------------------------------------------------------------------- results and report
def goal_results(path: Path, outcomes: dict, *, steps=(100, 200), headline='kind = "mean_last_n"\nn = 2') -> Path:
    """A results directory of goal runs: ``outcomes[(algorithm, dataset, seed)]`` lists, per
    evaluation, the success (0/1) of each episode; episode i of an evaluation plays task 1 + i % 5."""
    path.mkdir(parents=True, exist_ok=True)
    algos = list(dict.fromkeys(k[0] for k in outcomes))
    datasets = list(dict.fromkeys(k[1] for k in outcomes))
    seeds = sorted({k[2] for k in outcomes})
    (path / "protocol.toml").write_text(
        f'name = "goal-synthetic"\nsuite = "goal"\ndescription = "test"\nseeds = {seeds}\n'
        f"datasets = {json.dumps(datasets)}\nalgorithms = {json.dumps(algos)}\n\n"
        f"[train]\nsteps = {steps[-1]}\neval_every = {steps[0]}\n\n[headline]\n{headline}\n")
    rows = []
    for (a, d, s), evaluations in outcomes.items():
        for step, flags in zip(steps, evaluations):
            tasks = [1 + i % 5 for i in range(len(flags))]
            rows.append({"algorithm": a, "dataset": d, "suite": "goal", "env_id": "offbench/pointmaze-medium-v0",
                         "seed": s, "step": step, "final": step == steps[-1], "episodes": len(flags), "eval_seed": 0,
                         "return_mean": float(np.mean(flags)), "return_stderr": 0.0,
                         "normalized_score": 100.0 * float(np.mean(flags)), "success_rate": float(np.mean(flags)),
                         "returns": json.dumps([float(f) for f in flags]),
                         "run_dir": f"runs/{a}/{d.replace('/', '__')}/seed{s}",
                         "successes": json.dumps(list(flags)), "task_ids": json.dumps(tasks)})
    pd.DataFrame.from_records(rows, columns=COLUMNS).to_csv(path / "results.csv", index=False)
    (path / "manifest.json").write_text(json.dumps({"suite": "goal", "protocol": "goal-synthetic", "runs": []}))
    return path


STITCH = GOAL_DATASETS[0]
OUTCOMES = {  # 10 episodes per evaluation: tasks 1..5 twice
    ("gcbc", STITCH, 0): [[1, 0, 0, 0, 0, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 1, 1, 0, 0, 0]],
    ("gcbc", STITCH, 1): [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 1, 1, 0, 0, 0, 1]],
    ("gcivl", STITCH, 0): [[1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1, 1, 1, 0, 1]],
    ("gcivl", STITCH, 1): [[1, 1, 1, 1, 0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]],
}


def test_report_shows_success_rates_and_the_rate_per_task(tmp_path):
    from offbench.evaluation.report import build_report, render_table_md

    report = build_report(goal_results(tmp_path / "r", OUTCOMES), reps=100)
    assert report["units"][STITCH] == SUCCESS_UNIT and report["score_label"] == SUCCESS_UNIT
    # headline = mean of the last 2 evaluations: gcbc seed 0: (20 + 40) / 2 = 30; seed 1: (0 + 40) / 2 = 20
    cell = report["cells"]["headline"][STITCH]["gcbc"]
    assert cell["scores"] == [30.0, 20.0] and cell["mean"] == 25.0
    assert report["behaviour"][STITCH] == 99.2  # the card's behaviour_success, not its step-at-goal return
    # per task, by the same rule: gcbc task 1 is (100 + 100) / 2 = 100 (seed 0), (0 + 100) / 2 = 50 (seed 1)
    tasks = report["per_task"][STITCH]
    assert tasks["tasks"] == [1, 2, 3, 4, 5]
    assert tasks["cells"]["gcbc"]["1"] == {"mean": 75.0, "stderr": pytest.approx(25.0), "n": 2}
    # gcbc task 2 (episodes 1 and 6): seed 0 (0 + 100) / 2 = 50, seed 1 (0 + 0) / 2 = 0
    assert tasks["cells"]["gcbc"]["2"]["mean"] == pytest.approx(25.0)
    # gcivl task 4 (episodes 3 and 8): seed 0 (100 + 0) / 2 = 50, seed 1 (100 + 100) / 2 = 100
    assert tasks["cells"]["gcivl"]["4"]["mean"] == pytest.approx(75.0)
    text = render_table_md(report)
    assert "## Headline score: success rate (%)" in text and "## Headline score (normalised" not in text
    assert "## Success rate per evaluation task (%)" in text
    assert f"| {STITCH} | 1 | 75.0 ± 25.0 |" in text


def test_older_results_without_task_columns_still_load(tmp_path):
    from offbench.evaluation.report import build_report

    path = goal_results(tmp_path / "r", OUTCOMES)
    table = pd.read_csv(path / "results.csv").drop(columns=["successes", "task_ids"])
    table.to_csv(path / "results.csv", index=False)
    report = build_report(path, reps=50)
    assert report["per_task"] == {} and report["cells"]["headline"][STITCH]["gcbc"]["mean"] == 25.0


# ---------------------------------------------------------------------- leaderboard
GOAL_PROTOCOL = """
name = "tinygoal"
suite = "goal"
description = "a one-dataset goal protocol"
seeds = [0, 1]
datasets = ["goal/pointmaze-medium/stitch-val-v0"]
algorithms = ["gcbc", "gcivl"]

[train]
steps = 200
eval_every = 100
eval_episodes = 10
final_eval_episodes = 10

[headline]
kind = "mean_last_n"
n = 2
"""


def test_the_board_takes_goal_entries_and_shows_success_rates(tmp_path, monkeypatch, goal_names):
    import offbench.protocol
    from offbench.cli import main
    from offbench.leaderboard.schema import EntryError
    from offbench.leaderboard.validate import plausible_range, validate_file

    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "tinygoal.toml").write_text(GOAL_PROTOCOL)
    monkeypatch.setattr(offbench.protocol, "PROTOCOL_DIR", folder)
    results = goal_results(tmp_path / "results", OUTCOMES)
    (results / "protocol.toml").write_text(GOAL_PROTOCOL)
    runs = [{"algorithm": a, "dataset": d, "seed": s, "status": "finished", "key": [a, d, s]} for a, d, s in OUTCOMES]
    (results / "manifest.json").write_text(json.dumps({
        "suite": "goal", "protocol": "tinygoal", "algorithms": ["gcbc", "gcivl"], "datasets": [STITCH],
        "seeds": [0, 1], "backend": "local", "workers": 1, "git_commit": "a" * 40, "offbench_version": "0.1.0",
        "dataset_sha256": {STITCH: get_card(STITCH).sha256}, "runs": runs}))
    for (a, d, s), evaluations in OUTCOMES.items():  # the run directories' per-episode success flags
        run = results / f"runs/{a}/{d.replace('/', '__')}/seed{s}"
        run.mkdir(parents=True)
        (run / "evaluations.jsonl").write_text("".join(json.dumps({"step": step, "successes": flags}) + "\n"
                                                       for step, flags in zip((100, 200), evaluations)))
    board = tmp_path / "board"
    (board / "entries").mkdir(parents=True)
    for algo in ("gcbc", "gcivl"):
        assert main(["leaderboard", "submit", str(results), "--name", f"offbench-{algo}", "--algo", algo,
                     "--out", str(board / "entries" / f"offbench-{algo}.json")]) == 0
    entry = json.loads((board / "entries" / "offbench-gcbc.json").read_text())
    assert entry["suite"] == "goal" and entry["runs"][0]["evaluations"][0]["success"][0] is True
    assert main(["leaderboard", "build", "--out", str(board)]) == 0
    readme = (board / "README.md").read_text()
    assert f"score: {SUCCESS_UNIT}" in readme
    # headline success rates (%), mean ± standard error over 2 seeds: gcivl (100 + 80) / 2 and (80 + 100) / 2,
    # gcbc (20 + 40) / 2 and (0 + 40) / 2; ranked by IQM, gcivl first
    assert "| goal/pointmaze-medium/stitch-val-v0 | 90.0 ± 0.0 | 25.0 ± 5.0 |" in readme
    assert f"IQM {SUCCESS_UNIT}" in (board / "site" / "figures" / "goal--tinygoal-iqm.svg").read_text()

    # an evaluation episode of a goal task returns 0 or 1: the episode ends at the goal
    card = get_card(STITCH)
    accepted = plausible_range(card)
    assert accepted.contains(0.0) and accepted.contains(1.0) and not accepted.contains(2.0)
    entry["runs"][0]["evaluations"][0]["returns"][0] = 7.0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(entry))
    with pytest.raises(EntryError, match="implausible return"):
        validate_file(bad, check_unique=False)


def test_pointmaze_returns_are_bounded_by_one_success():
    from offbench.envs.tasks import get_task

    for maze in pointmaze.MAZES:
        assert get_task(f"pointmaze-{maze}").return_bounds() == (0.0, 1.0)
    assert get_task("pendulum").return_bounds()[1] == 0.0 and math.isinf(get_task("reacher").return_bounds()[0])


@pytest.mark.slow
def test_reproduce_goal_smoke_runs_all_six_and_reports_success_rates(tmp_path, goal_names):
    """The issue's done-when: `offbench reproduce goal --protocol smoke` (the dataset is built first)."""
    from offbench.cli import main

    out = tmp_path / "smoke"
    assert main(["reproduce", "goal", "--protocol", "smoke", "--out", str(out), "--workers", "1", "--quiet"]) == 0
    table = pd.read_csv(out / "results.csv")
    assert set(table["algorithm"]) == set(ALGORITHMS) and len(table) == 12  # 6 algorithms x 2 seeds, one evaluation
    for row in table.itertuples():
        assert json.loads(row.task_ids) == [1 + (row.eval_seed + i) % 5 for i in range(5)]
        assert json.loads(row.successes) == [int(r) for r in json.loads(row.returns)]
        assert row.normalized_score == pytest.approx(100 * row.success_rate)
    text = (out / "report" / "table.md").read_text()
    assert "Protocol `goal-smoke`" in text and "## Headline score: success rate (%)" in text
    assert "## Success rate per evaluation task (%)" in text
