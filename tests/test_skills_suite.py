"""The skill-discovery suite in the pipeline (issue 18, items 3 and 7): skill runs on the protocol
loop (``offbench/skill_runs.py``: metrics the agent never trains, exact resume), the ``skills`` and
``skills-smoke`` protocols, and ``offbench reproduce skills --protocol smoke`` then ``offbench report``
end to end, its numbers recomputed from the saved rollouts."""
from __future__ import annotations

import json

import numpy as np
import pytest

from offbench.errors import OffbenchError

ENV = "skills/point-plane-v0"
SMALL = {"hidden": [8], "batch_size": 8, "warmup_steps": 60, "buffer_size": 600}


def _config(**overrides):
    from offbench.train import TrainConfig

    return TrainConfig(**{"steps": 4, "eval_every": 2, "eval_episodes": 8, "final_eval_episodes": 8, "seed": 1,
                          **overrides})


def test_smoke_protocol_end_to_end_numbers_equal_the_saved_rollouts(tmp_path):
    """The CLI's reproduce and report on the smoke protocol (about 20 s): every method runs, and each
    final row of results.csv holds exactly the metrics offbench/evaluation/skills.py gives on the run's
    rollouts.npz; the report's tables and the trajectory figure (one colour per skill) follow."""
    import pandas as pd
    from matplotlib.colors import to_hex

    from offbench.cli import main
    from offbench.evaluation.colors import assign_colors
    from offbench.evaluation.skill_report import trajectory_figure
    from offbench.evaluation.skills import coverage, independent_classifier
    from offbench.skill_runs import EVAL_SEED, SKILL_METHODS

    out = tmp_path / "skills"
    assert main(["reproduce", "skills", "--protocol", "smoke", "--workers", "1", "--quiet", "--no-report",
                 "--out", str(out)]) == 0
    assert main(["report", str(out)]) == 0
    results = pd.read_csv(out / "results.csv")
    assert sorted(set(results.algorithm)) == sorted(SKILL_METHODS) and set(results.dataset) == {ENV}
    assert (results.normalized_score == results.coverage).all()  # the headline score is the coverage
    final = results[results.final]
    assert len(final) == 5 and (final.step == 4).all() and (final.episodes == 16).all()
    for _, row in final.iterrows():
        with np.load(out / row.run_dir / "rollouts.npz") as data:
            arrays = {k: data[k] for k in data.files}
        xy = list(arrays["xy"])
        observations = arrays["coverage_observations"]
        assert observations.shape == (16, 51, 2) and int(arrays["step"]) == 4
        assert row.coverage == coverage(observations[..., xy])
        distances = np.linalg.norm(observations[:, -1, xy] - observations[:, 0, xy], axis=-1).astype(np.float64)
        assert row.final_distance == pytest.approx(distances.mean(), rel=1e-12)
        assert row.return_mean == pytest.approx(row.final_distance, rel=1e-12)
        assert json.loads(row.returns) == pytest.approx(distances.tolist(), rel=1e-12)
        if row.algorithm in ("rnd", "random"):  # no skills: coverage only
            assert "classifier_observations" not in arrays and np.isnan(row.classifier_accuracy)
            continue
        states, labels = arrays["classifier_observations"], arrays["classifier_labels"]
        R, T1, d = states.shape
        assert R == 16 and labels.tolist() == np.repeat(np.arange(4), 4).tolist()  # 4 skills x 16 // 4
        measured = independent_classifier(states[:, 1:].reshape(-1, d), np.repeat(labels, T1 - 1),
                                          np.repeat(np.arange(R), T1 - 1), seed=EVAL_SEED)
        assert row.classifier_accuracy == pytest.approx(measured["accuracy"], rel=1e-12)
        assert row.mi_lower_bound == pytest.approx(measured["mi_lower_bound"], rel=1e-12)
        assert (row.classifier_chance, row.log_k) == pytest.approx((0.25, np.log(4)))
    # the report: coverage is the headline, a table per further metric, the figures
    report = json.loads((out / "report" / "report.json").read_text())
    table = (out / "report" / "table.md").read_text()
    assert report["score_label"] == "coverage (cells)" and "## Headline score: coverage (cells)" in table
    for heading in ("Independent classifier: held-out accuracy", "I(S; Z) lower bound (nats)",
                    "Mean final distance from the start"):
        assert f"## {heading}" in table
    assert "training episodes: 4; evaluation every 2 episodes" in table and "— (no skills)" in table
    cells = report["skills"]["metrics"]["classifier_accuracy"]["cells"][ENV]
    assert cells["rnd"] is None and cells["random"] is None
    diayn = final[final.algorithm == "diayn"].iloc[0]
    assert cells["diayn"]["mean"] == pytest.approx(diayn.classifier_accuracy) and cells["diayn"]["reference"] == 0.25
    assert report["cells"]["headline"][ENV]["metra"]["mean"] == final[final.algorithm == "metra"].coverage.iloc[0]
    for name in ("skill_trajectories.png", "learning_curves.png", "aggregate_metrics.png"):
        assert (out / "report" / name).stat().st_size > 1000
    figure = trajectory_figure(out, report["skills"], assign_colors(report["algorithms"]))
    for ax in figure.axes:
        if not ax.get_visible():
            continue
        algorithm = ax.get_title().split(":")[0]
        colours = {to_hex(line.get_color()) for line in ax.get_lines()}
        assert len(colours) == (1 if algorithm in ("rnd", "random") else 4), algorithm  # one colour per skill
        assert len(ax.get_lines()) == 16


@pytest.mark.parametrize("algorithm, settings", [
    ("diayn", {"skills": 3}), ("metra", {"eval_skills": 2}), ("rnd", {}), ("random", {})])
def test_a_killed_skill_run_resumes_to_the_same_evaluations(tmp_path, algorithm, settings):
    from offbench.skill_runs import resume_point, train_skill_run
    from offbench.train import TrainingInterrupted

    settings = {**SMALL, **settings}
    straight = train_skill_run(algorithm, ENV, settings, _config(), tmp_path / "a")
    for stops in ([False, True], [False, False, True]):  # killed before and after the first evaluation
        calls = iter(stops)
        run = tmp_path / f"b{len(stops)}"
        with pytest.raises(TrainingInterrupted):
            train_skill_run(algorithm, ENV, settings, _config(), run, should_stop=lambda: next(calls, True))
        assert resume_point(run) == len(stops)  # the episode its checkpoint holds
        assert train_skill_run(algorithm, ENV, settings, _config(), run) == straight
        for name in ("evaluations.jsonl", "summary.json", "agent/metrics.jsonl"):
            assert (tmp_path / "a" / name).read_bytes() == (run / name).read_bytes(), name
        with np.load(tmp_path / "a" / "rollouts.npz") as a, np.load(run / "rollouts.npz") as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    rows = [json.loads(line) for line in (tmp_path / "a" / "evaluations.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and all(r["normalized_score"] == r["coverage"] for r in rows)
    assert ("classifier_accuracy" in rows[-1]) == (algorithm in ("diayn", "metra"))


def test_evaluation_rollouts_play_the_skills_the_docstring_names(tmp_path):
    from offbench.envs.skill_environments import get_skill_environment
    from offbench.skill_runs import evaluate_skills, method_config

    environment = get_skill_environment(ENV)
    diayn_class, diayn_config = method_config("diayn", {**SMALL, "skills": 3})
    _, arrays = evaluate_skills(diayn_class(environment.make, diayn_config), environment, 7)
    assert arrays["coverage_skills"].tolist() == [0, 1, 2, 0, 1, 2, 0]  # rollout r plays skill r mod K
    assert arrays["classifier_labels"].tolist() == [0, 0, 1, 1, 2, 2]  # 7 // 3 = 2 rollouts of each skill
    metra_class, metra_config = method_config("metra", {**SMALL, "eval_skills": 2})
    metrics, arrays = evaluate_skills(metra_class(environment.make, metra_config), environment, 5)
    assert len(np.unique(arrays["coverage_skills"], axis=0)) == 5  # 5 different continuous skills
    np.testing.assert_allclose(np.linalg.norm(arrays["coverage_skills"], axis=1), 1.0, rtol=1e-6)
    assert arrays["classifier_skills"].shape == (2, 2) and metrics["classifier_chance"] == 0.5


def test_halfcheetah_coverage_counts_velocity_bins(tmp_path):
    """On ``skills/halfcheetah-v0`` coverage counts distinct 1 m/s bins of the x velocity (observation index
    9, the x position kept at index 0), the final distance uses (x, z), and the saved rollouts recompute both."""
    from offbench.envs.skill_environments import get_skill_environment
    from offbench.skill_runs import evaluate_skills, method_config, metrics_from_rollouts

    environment = get_skill_environment("skills/halfcheetah-v0")
    assert environment.coverage_coordinates == (9,) and environment.xy == (0, 1)
    cls, config = method_config("diayn", {**SMALL, "skills": 2})
    metrics, arrays = evaluate_skills(cls(environment.make, config), environment, 4)
    observations = arrays["coverage_observations"]
    assert observations.shape == (4, 201, 18)  # 200-step episodes, the x position in the observation
    assert metrics["coverage"] == len(np.unique(np.floor(observations[..., 9]).astype(int)))
    x_z = observations[..., [0, 1]]
    assert metrics["final_distance"] == pytest.approx(
        float(np.linalg.norm(x_z[:, -1] - x_z[:, 0], axis=-1).astype(np.float64).mean()))
    np.savez(tmp_path / "rollouts.npz", **arrays)
    again = metrics_from_rollouts(tmp_path / "rollouts.npz")
    assert again["coverage"] == metrics["coverage"] and again["final_distance"] == pytest.approx(metrics["final_distance"])
    # files written before the coverage coordinates were saved count x-y cells
    old = {k: v for k, v in arrays.items() if k not in ("coverage_dims", "coverage_cell")}
    np.savez(tmp_path / "old.npz", **old)
    assert metrics_from_rollouts(tmp_path / "old.npz")["coverage"] == len(
        np.unique(np.floor(x_z.reshape(-1, 2)).astype(int), axis=0))


@pytest.mark.parametrize("call, match", [
    (lambda run, c: run("diayn", "skills/point-plain-v0", {}, c(), "x"),
     r"unknown skill environment 'skills/point-plain-v0' \(did you mean skills/point-plane-v0"),
    (lambda run, c: run("lsd", ENV, {}, c(), "x"), r"unknown skill-discovery method 'lsd'"),
    (lambda run, c: run("diayn", ENV, {"skils": 4}, c(), "x"), r"unknown diayn settings \['skils'\]: DIAYNConfig has"),
    (lambda run, c: run("diayn", ENV, {"skills": 1}, c(), "x"), r"DIAYN: skills must be >= 2 .*, got 1"),
    (lambda run, c: run("dads", ENV, {"alternatives": 0}, c(), "x"), r"DADS: alternatives must be >= 1, got 0"),
    (lambda run, c: run("diayn", ENV, {"skills": 5}, c(eval_episodes=10, final_eval_episodes=9), "x"),
     r"\[train\].final_eval_episodes = 9: DIAYN has 5 evaluation skills .* at least 10"),
    (lambda run, c: run("random", ENV, {}, c(eval_episodes=0), "x"), r"\[train\].eval_episodes = 0"),
    (lambda run, c: run("random", ENV, {}, c(eval_every=0), "x"), r"\[train\].eval_every = 0"),
])
def test_bad_skill_runs_are_refused_naming_what_is_wrong(tmp_path, monkeypatch, call, match):
    from offbench.skill_runs import train_skill_run

    monkeypatch.chdir(tmp_path)
    with pytest.raises(OffbenchError, match=match):
        call(train_skill_run, _config)
    assert not (tmp_path / "x").exists()  # refused before anything is written


def test_a_run_directory_of_other_settings_is_refused(tmp_path):
    from offbench.skill_runs import train_skill_run

    train_skill_run("random", ENV, {"buffer_size": 600}, _config(), tmp_path)
    with pytest.raises(OffbenchError, match="holds a skills run with other settings"):
        train_skill_run("random", ENV, {"buffer_size": 700}, _config(), tmp_path)


def test_protocols_of_the_skills_suite(tmp_path):
    from baselines.skills.registry import TRAINERS
    from offbench.protocol import check_runnable, load_protocol, protocol_for_suite
    from offbench.skill_runs import SKILL_METHODS

    assert list(TRAINERS) == list(SKILL_METHODS)
    table, smoke = protocol_for_suite("skills"), protocol_for_suite("skills", "smoke")
    assert (table.name, smoke.name) == ("skills", "skills-smoke")
    for protocol in (table, smoke):
        check_runnable(protocol)
        assert protocol.algorithms == list(SKILL_METHODS) and protocol.datasets == [ENV]
    assert table.seeds == [0, 1, 2] and table.train["steps"] == 150 and smoke.seeds == [0]
    path = tmp_path / "p.toml"
    text = (f'name = "x"\nsuite = "skills"\nseeds = [0]\ndatasets = ["{ENV}"]\nalgorithms = ["diayn"]\n'
            '[overrides.diayn]\nsettings = {{ skills = 4 }}\n')
    for bad, match in ((text.replace(ENV, "skills/nope-v0"), "unknown skill environment 'skills/nope-v0'"),
                       (text.replace('"diayn"]', '"diyan"]'), "unknown skill-discovery method 'diyan'"),
                       (text.replace("skills = 4", "skills = 1"), r"DIAYN: skills must be >= 2 .*, got 1")):
        path.write_text(bad.replace("{{", "{").replace("}}", "}"))
        with pytest.raises(OffbenchError, match=match):
            check_runnable(load_protocol(path))


def test_results_tables_of_other_suites_keep_their_columns(tmp_path):
    from offbench.evaluation.results import COLUMNS
    from offbench.reproduce import write_results_table

    row = {c: None for c in COLUMNS} | {"algorithm": "bc", "dataset": "d", "seed": 0, "step": 1}
    header = write_results_table(tmp_path, [{"rows": [row]}]).read_text().splitlines()[0]
    assert header.split(",") == COLUMNS


def test_a_classifier_trained_on_one_skill_is_the_constant_one():
    from offbench.evaluation.skills import independent_classifier

    # two rollouts of each of two skills, 3 states each; seed 0's split trains on rollouts of one skill
    states = np.arange(24, dtype=float).reshape(12, 2)
    skills, rollouts = np.repeat([0, 0, 1, 1], 3), np.repeat([0, 1, 2, 3], 3)
    for seed in range(50):
        test = np.isin(rollouts, np.random.default_rng(seed).choice(4, 2, replace=False))
        if len(np.unique(skills[~test])) == 1:
            break
    trained = np.unique(skills[~test])[0]
    share = float(np.mean(skills[test] == trained))
    result = independent_classifier(states, skills, rollouts, seed=seed)
    assert result["accuracy"] == share and share < 1
    # q = 0.95 q_clf + 0.05 / 2: log(0.975) where the constant classifier is right, log(0.025) elsewhere
    assert result["mi_lower_bound"] == pytest.approx(np.log(2) + share * np.log(0.975) + (1 - share) * np.log(0.025))
