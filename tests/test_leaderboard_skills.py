"""The leaderboard on the skill-discovery suite (issue 18, item 7): the five built-in methods'
entries (leaderboard/entries/offbench-skills-*.json, made from leaderboard/skills/), validated
(coverage no larger than the rollouts or the plane allow, classifier numbers consistent with the
method's K', the fixed evaluation seed), scored to results.csv's numbers, ranked per environment by
coverage with the classifier's accuracy beside it, escaped, and re-run by ``verify``."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from offbench.evaluation.skill_report import SKILL_UNIT
from offbench.leaderboard.schema import EntryError
from offbench.skill_runs import EVAL_SEED, SKILL_METHODS

REPO = Path(__file__).resolve().parents[1]
ENTRIES = REPO / "leaderboard" / "entries"
RESULTS = REPO / "leaderboard" / "skills"
ENV = "skills/point-plane-v0"
RANKED = ["metra", "dads", "diayn", "rnd", "random"]  # by coverage on the committed table
K = {"diayn": 10, "dads": 8, "metra": 8}  # evaluation skills at the methods' defaults: DIAYN's 10, eval_skills 8


def cli(argv: list[str]) -> int:
    from offbench.cli import main

    return main(argv)


def entry_of(algo: str, folder: Path = ENTRIES) -> dict:
    return json.loads((folder / f"offbench-skills-{algo}.json").read_text())


def results_table():
    import pandas as pd

    return pd.read_csv(RESULTS / "results.csv")


@pytest.fixture(scope="module")
def shipped_board(tmp_path_factory) -> Path:
    """The board built from the shipped entries (every suite), in a temporary folder."""
    from offbench.leaderboard.build import build_board

    out = tmp_path_factory.mktemp("shipped") / "board"
    shutil.copytree(ENTRIES, out / "entries")
    build_board(out / "entries", out)
    return out


@pytest.fixture
def board(tmp_path) -> Path:
    """A board folder holding the five skills entries only (a test may change them)."""
    folder = tmp_path / "board"
    (folder / "entries").mkdir(parents=True)
    for algo in SKILL_METHODS:
        shutil.copy(ENTRIES / f"offbench-skills-{algo}.json", folder / "entries")
    return folder


def _write(tmp_path: Path, entry: dict) -> Path:
    path = tmp_path / "incoming" / f"{entry['name']}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(entry))
    return path


def _rejected(tmp_path, capsys, entry: dict, field: str, *needles: str) -> str:
    path = _write(tmp_path, entry)
    assert cli(["leaderboard", "validate", str(path), "--entries", str(tmp_path / "incoming")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and f"[{field}]" in err and "what to do:" in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


# ---------------------------------------------------------------------- the environments' bounds
def test_declared_time_limits_are_the_environments():
    """``SkillEnvironment.max_episode_steps`` (what the coverage bound uses) is the made environment's
    time limit: the point plane truncates after exactly 50 steps, HalfCheetah after 200."""
    from offbench.envs.skill_environments import SKILL_ENVIRONMENTS, get_skill_environment

    assert {e: env.max_episode_steps for e, env in SKILL_ENVIRONMENTS.items()} == {
        "skills/point-plane-v0": 50, "skills/pointmaze-medium-v0": 200, "skills/halfcheetah-v0": 200}
    env = get_skill_environment(ENV).make()
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        steps += 1
    assert steps == 50
    assert get_skill_environment("skills/halfcheetah-v0").make().spec.max_episode_steps == 200
    assert get_skill_environment("skills/pointmaze-medium-v0").env_kwargs["episode_length"] == 200


def test_coverage_bound_is_the_rollouts_or_the_plane():
    """N rollouts of T steps visit at most N (T + 1) cells; the point plane [-10, 10]^2 holds 21 x 21
    = 441 cells of 1 x 1 (a grid over the whole plane, edges included, covers exactly that many)."""
    from offbench.envs.skill_environments import get_skill_environment
    from offbench.evaluation.skills import coverage
    from offbench.leaderboard.validate import coverage_bound

    plane = get_skill_environment(ENV)
    grid = np.stack(np.meshgrid(np.linspace(-10, 10, 201), np.linspace(-10, 10, 201)), -1).astype(np.float32)
    assert coverage(grid) == 441
    assert coverage_bound(plane, 40) == (441, "the plane [-10, 10]^2 holds 21^2 cells of width 1")
    assert coverage_bound(plane, 2) == (102, "2 rollouts of at most 50 steps visit at most 2 x 51 cells")
    for other in ("skills/halfcheetah-v0", "skills/pointmaze-medium-v0"):  # no bounded plane declared
        assert coverage_bound(get_skill_environment(other), 40)[0] == 40 * 201


def test_evaluation_skill_counts_are_the_trainers():
    """K' from a method's settings alone equals what a built trainer's evaluation plays."""
    from offbench.envs.skill_environments import get_skill_environment
    from offbench.leaderboard.validate import evaluation_skill_count
    from offbench.skill_runs import method_config

    small = {"hidden": [8], "batch_size": 8, "warmup_steps": 60, "buffer_size": 600}
    for algo, settings in (("diayn", {}), ("diayn", {"skills": 4}), ("dads", {}), ("dads", {"eval_skills": 5}),
                           ("metra", {}), ("metra", {"discrete": True, "skill_dim": 6}), ("rnd", {}), ("random", {})):
        trainer_class, config = method_config(algo, {**small, **settings})
        trainer = trainer_class(get_skill_environment(ENV).make, config, seed=0)
        space = trainer.skill_space
        played = None if space.prior == "none" else len(space.spread(config.eval_skills, EVAL_SEED + 1))
        assert evaluation_skill_count(algo, settings) == played, (algo, settings)
    assert [evaluation_skill_count(a, {}) for a in ("diayn", "dads", "metra")] == [K["diayn"], K["dads"], K["metra"]]


# ---------------------------------------------------------------------- the shipped entries
def test_shipped_entries_are_the_committed_table():
    """Each shipped entry is what ``scripts/make_baseline_entries.py leaderboard/skills --prefix
    offbench-skills-`` writes from the committed results.csv, manifest.json and protocol.toml."""
    from offbench.leaderboard.submit import entry_from_results
    from offbench.leaderboard.validate import validate_file

    table = results_table()
    for algo in SKILL_METHODS:
        entry, protocol = validate_file(ENTRIES / f"offbench-skills-{algo}.json", check_unique=False)
        made = entry_from_results(RESULTS, name=f"offbench-skills-{algo}", algorithm=algo, display_name=algo.upper(),
                                  authors=["offbench maintainers"], selection="offline")
        assert entry == made
        assert entry["suite"] == "skills" and protocol.name == "skills" and entry["config"] == {}
        assert sorted(r["seed"] for r in entry["runs"]) == [0, 1, 2]
        for run in entry["runs"]:
            assert run["dataset"] == ENV and run["dataset_sha256"] is None and run["gradient_steps"] == 150
            assert [(ev["step"], ev["episodes"], ev["eval_seed"]) for ev in run["evaluations"]] == [
                (step, 40, EVAL_SEED) for step in (25, 50, 75, 100, 125, 150)]
            rows = table[(table.algorithm == algo) & (table.seed == run["seed"])].sort_values("step")
            assert [ev["coverage"] for ev in run["evaluations"]] == rows.coverage.tolist()
            assert [ev["returns"] for ev in run["evaluations"]] == [json.loads(r) for r in rows.returns]
            final = run["evaluations"][-1]
            if algo in K:
                assert final["classifier_chance"] == pytest.approx(1 / K[algo])
                assert final["log_k"] == pytest.approx(math.log(K[algo]))
            else:
                assert all(final[key] is None for key in ("classifier_accuracy", "classifier_chance",
                                                          "mi_lower_bound", "log_k"))


def test_scores_are_results_csv_recomputed_by_hand():
    """Per seed, the headline is the final evaluation's coverage (protocol `skills`: the last
    evaluation); the IQM of 3 seeds trims nothing (25% of 3 rounds down to 0), so it is their mean;
    the interval is `offbench report`'s (leaderboard/skills/report/aggregates.csv). The classifier's
    accuracy is the mean over seeds of the final accuracies, chance 1 / K'."""
    import pandas as pd

    from offbench.leaderboard.scoring import score_entry
    from offbench.leaderboard.validate import validate_file

    table = results_table()
    final = table[table.step == 150]
    aggregates = pd.read_csv(RESULTS / "report" / "aggregates.csv")
    for algo in SKILL_METHODS:
        entry, protocol = validate_file(ENTRIES / f"offbench-skills-{algo}.json", check_unique=False)
        scores = score_entry(entry, protocol)
        rows = final[final.algorithm == algo].sort_values("seed")
        coverage = [float(c) for c in rows.coverage]
        ds = scores.datasets[ENV]
        assert ds.seeds == [0, 1, 2] and ds.scores == coverage and ds.stderrs == [0.0, 0.0, 0.0]
        assert ds.mean == pytest.approx(sum(coverage) / 3)
        assert ds.stderr == pytest.approx(np.std(coverage, ddof=1) / math.sqrt(3))
        assert scores.iqm == pytest.approx(sum(coverage) / 3) and scores.mean == pytest.approx(sum(coverage) / 3)
        report = aggregates[(aggregates.score == "headline") & (aggregates.algorithm == algo)
                            & (aggregates.metric == "iqm")].iloc[0]
        assert (scores.iqm, *scores.ci) == pytest.approx((report.value, report.ci_low, report.ci_high))
        if algo in K:
            classifier = scores.classifier[ENV]
            assert classifier.accuracies == rows.classifier_accuracy.tolist()
            assert classifier.mean == pytest.approx(rows.classifier_accuracy.mean())
            assert classifier.chance == pytest.approx(1 / K[algo])
        else:
            assert scores.classifier == {}
    by_hand = {a: final[final.algorithm == a].coverage.mean() for a in SKILL_METHODS}
    assert sorted(by_hand, key=lambda a: -by_hand[a]) == RANKED
    assert round(by_hand["metra"], 1) == 278.7 and by_hand["random"] == 158.0


# ---------------------------------------------------------------------- the board
def test_board_ranks_the_five_methods_in_a_skills_section(shipped_board):
    from offbench.leaderboard.build import load_entries, make_groups

    groups = make_groups(load_entries(shipped_board / "entries"))
    skills = {g.key: g for g in groups if g.suite == "skills"}  # one group per protocol and environment
    assert sorted(skills) == ["skills--skills--point-plane-v0", "skills--skills-cheetah--halfcheetah-v0",
                              "skills--skills-maze--pointmaze-medium-v0"]
    maze = skills["skills--skills-maze--pointmaze-medium-v0"]
    assert [entry["algorithm"]["import_path"] for entry, _ in maze.rows][0] == "metra" and maze.ranks == [1, 2, 3, 4, 5]
    cheetah = skills["skills--skills-cheetah--halfcheetah-v0"]  # DADS ties random actions' 6 velocity bins
    assert [entry["algorithm"]["import_path"] for entry, _ in cheetah.rows] == ["diayn", "metra", "rnd", "dads", "random"]
    assert cheetah.ranks == [1, 2, 3, 4, 4]
    group = skills["skills--skills--point-plane-v0"]
    assert group.datasets == [ENV] and group.skills
    assert group.score_label == SKILL_UNIT == "coverage (cells)" and group.item == "environment"
    assert [entry["algorithm"]["import_path"] for entry, _ in group.rows] == RANKED
    assert group.ranks == [1, 2, 3, 4, 5] and all(s.complete for _, s in group.rows)
    readme = (shipped_board / "README.md").read_text()
    section = readme[readme.index("## Suite `skills`"):]
    section = section[:section.index("## Suite", 3)]  # the plane's section; the maze's follows
    assert section.startswith("## Suite `skills`, protocol `skills`, environment `skills/point-plane-v0`\n")
    assert "Headline: last evaluation; score: coverage (cells); 3 seeds x 1 environment." in section
    assert "| rank | entry | method | IQM [95% CI] | mean | classifier accuracy (chance) |" in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[:2] for row in rows] == [[f"| {i}", f"offbench-skills-{a}"]
                                                      for i, a in enumerate(RANKED, 1)]
    assert rows[0].startswith("| 1 | offbench-skills-metra | METRA | 278.7 [260.0, 291.0] | 278.7 | "
                              "0.68 ± 0.02 (chance 0.12) |")
    assert "| 3 | offbench-skills-diayn | DIAYN | 188.3 [186.0, 190.0] | 188.3 | 0.74 ± 0.00 (chance 0.10) |" \
        in section
    assert "| 5 | offbench-skills-random | RANDOM (reference) | 158.0 [158.0, 158.0] | 158.0 | - (no skills) |" \
        in section
    assert "Reference: offbench-skills-random (uniform random actions" in section
    assert "| skills/point-plane-v0 | 278.7 ± 9.5 | 226.0 ± 5.5 | 188.3 ± 1.2 | 162.3 ± 8.5 | 158.0 ± 0.0 |" \
        in section
    index = (shipped_board / "site" / "index.html").read_text()
    assert '<section id="group-skills--skills--point-plane-v0">' in index
    assert "<h2>Suite skills, protocol skills, environment skills/point-plane-v0</h2>" in index
    assert '<th scope="col" data-type="number">classifier accuracy</th>' in index
    assert '<tr data-order="5" data-entry="offbench-skills-random"><td data-sort="5" class="num">5</td>' in index
    figures = sorted(p.name for p in (shipped_board / "site" / "figures").glob("skills--*"))
    assert figures == ["skills--skills--point-plane-v0-datasets.svg", "skills--skills--point-plane-v0-iqm.svg",
                       "skills--skills-cheetah--halfcheetah-v0-datasets.svg", "skills--skills-cheetah--halfcheetah-v0-iqm.svg",
                       "skills--skills-maze--pointmaze-medium-v0-datasets.svg",
                       "skills--skills-maze--pointmaze-medium-v0-iqm.svg"]
    assert "IQM coverage (cells)" in (shipped_board / "site" / "figures" / figures[1]).read_text()


def test_the_other_suites_sections_do_not_change(shipped_board, tmp_path):
    """The goal and lite sections, and their figures, are byte for byte what a board without the
    skills entries shows."""
    from offbench.leaderboard.build import build_board

    other = tmp_path / "other"
    (other / "entries").mkdir(parents=True)
    for path in ENTRIES.glob("*.json"):
        if not path.name.startswith("offbench-skills-"):
            shutil.copy(path, other / "entries")
    build_board(other / "entries", other)
    without, full = (other / "README.md").read_text(), (shipped_board / "README.md").read_text()
    start = without.index("## Suite `goal`")
    assert full[full.index("## Suite `goal`"):full.index("## Suite `skills`")].rstrip("\n") == \
        without[start:].rstrip("\n")
    for figure in (other / "site" / "figures").iterdir():
        assert figure.read_bytes() == (shipped_board / "site" / "figures" / figure.name).read_bytes()


def test_html_in_names_and_authors_is_escaped(board):
    entry = entry_of("rnd", board / "entries")
    entry["algorithm"]["name"] = "<script>alert(1)</script>"
    entry["authors"] = ["Ada & <b>Bob</b>", "<img src=x onerror=alert(2)>"]
    (board / "entries" / "offbench-skills-rnd.json").write_text(json.dumps(entry))
    assert cli(["leaderboard", "build", "--out", str(board)]) == 0
    readme = (board / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith("| 4 | offbench-skills-rnd |"))
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in row and "Ada &amp; &lt;b&gt;Bob&lt;/b&gt;" in row
    assert "<script>" not in readme and "<b>" not in readme and "<img" not in readme
    index = (board / "site" / "index.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index and "Ada &amp; &lt;b&gt;Bob&lt;/b&gt;" in index
    assert "&lt;img src=x onerror=alert(2)&gt;" in index and "<img src=x" not in index
    assert index.count("<script>") == 1  # the page's own sorting script only


# ---------------------------------------------------------------------- rejections
def _final(entry: dict) -> dict:
    return entry["runs"][0]["evaluations"][-1]


@pytest.mark.parametrize("algo, change, field, needle", [
    ("diayn", lambda e: _final(e).update(coverage=442), "runs[0].evaluations[5].coverage",
     "implausible coverage for skills/point-plane-v0 seed 0 (run runs[0], evaluation at step 150): a coverage lies "
     "in [1, 441] cells"),
    ("diayn", lambda e: _final(e).update(coverage=0), "runs[0].evaluations[5].coverage", "the start's cell"),
    ("diayn", lambda e: _final(e).update(coverage=None), "runs[0].evaluations[5].coverage", "required"),
    ("diayn", lambda e: _final(e).update(coverage=188.5), "runs[0].evaluations[5].coverage", "must be an integer"),
    ("diayn", lambda e: _final(e).update(coverage=-3), "runs[0].evaluations[5].coverage", "must lie in [0,"),
    ("diayn", lambda e: _final(e).update(eval_seed=7), "runs[0].evaluations[5].eval_seed", f"= {EVAL_SEED}"),
    ("diayn", lambda e: _final(e).update(eval_seed=None), "runs[0].evaluations[5].eval_seed", f"= {EVAL_SEED}"),
    ("diayn", lambda e: _final(e).update(classifier_accuracy=1.2), "runs[0].evaluations[5].classifier_accuracy",
     "an accuracy lies in [0, 1]"),
    ("diayn", lambda e: _final(e).update(classifier_accuracy=None), "runs[0].evaluations[5].classifier_accuracy",
     "required for a skills run of diayn"),
    ("diayn", lambda e: _final(e).update(classifier_chance=0.125), "runs[0].evaluations[5].classifier_chance",
     "K' = 10 evaluation skills"),
    ("diayn", lambda e: _final(e).update(log_k=2.0), "runs[0].evaluations[5].log_k", "log K' = 2.30259"),
    ("diayn", lambda e: _final(e).update(mi_lower_bound=2.5), "runs[0].evaluations[5].mi_lower_bound",
     "implausible I(S; Z) bound"),
    ("diayn", lambda e: _final(e).update(mi_lower_bound=-3.5), "runs[0].evaluations[5].mi_lower_bound",
     "[log 0.05, log K']"),
    ("diayn", lambda e: _final(e).update(final_distance=99.0), "runs[0].evaluations[5].final_distance",
     "is not the mean of the evaluation's returns"),
    ("diayn", lambda e: _final(e)["returns"].__setitem__(3, -0.5), "runs[0].evaluations[5].returns[3]",
     "implausible final distance for skills/point-plane-v0 seed 0"),
    ("diayn", lambda e: _final(e)["returns"].__setitem__(3, 30.0), "runs[0].evaluations[5].returns[3]",
     "the diagonal of the plane"),
    ("diayn", lambda e: _final(e).update(success_rate=0.5), "runs[0].evaluations[5].success_rate", "no task"),
    ("diayn", lambda e: e["runs"][0].update(dataset_sha256="0" * 64), "runs[0].dataset_sha256", "must be null"),
    ("diayn", lambda e: e["runs"][0].update(dataset="skills/point-plain-v0"), "runs[0].dataset",
     "unknown skill environment id"),
    ("diayn", lambda e: e["runs"][0].update(gradient_steps=100), "runs[0].gradient_steps", "150 training episodes"),
    ("diayn", lambda e: e["runs"].pop(), "runs", "1 missing"),
    ("diayn", lambda e: e.update(config={"skills": 20}), "runs[0].evaluations[0].classifier_chance",
     "K' = 20 evaluation skills"),
    ("diayn", lambda e: e.update(config={"skill": 4}), "config", "not settings of skill method 'diayn'"),
    ("dads", lambda e: e.update(config={"eval_skills": 4}), "runs[0].evaluations[0].classifier_chance",
     "1 / 4 = 0.25"),
    ("random", lambda e: _final(e).update(classifier_accuracy=0.5), "runs[0].evaluations[5].classifier_accuracy",
     "random has no skills"),
    ("rnd", lambda e: _final(e).update(log_k=1.0), "runs[0].evaluations[5].log_k", "rnd has no skills"),
])
def test_bad_skills_entries_are_rejected(tmp_path, capsys, algo, change, field, needle):
    entry = entry_of(algo)
    entry["name"] = f"changed-{algo}"
    entry["runs"].sort(key=lambda r: r["seed"])
    change(entry)
    _rejected(tmp_path, capsys, entry, field, needle)


def test_an_impossible_coverage_stops_the_build(board, capsys):
    """No rollouts reach more cells than the plane holds: the build refuses the entry and writes nothing."""
    assert cli(["leaderboard", "build", "--out", str(board)]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in sorted(board.rglob("*")) if p.is_file()}
    entry = entry_of("metra", board / "entries")
    entry["runs"][1]["evaluations"][2]["coverage"] = 500
    (board / "entries" / "offbench-skills-metra.json").write_text(json.dumps(entry))
    assert cli(["leaderboard", "build", "--out", str(board)]) == 2
    err = capsys.readouterr().err
    assert "[runs[1].evaluations[2].coverage]" in err and "(got 500)" in err and "holds 21^2 cells" in err
    assert (board / "README.md").read_bytes() == before[board / "README.md"]


@pytest.mark.parametrize("import_path, needle", [
    ("iql", "is a skill-discovery protocol"),            # a lite algorithm under the skills suite
    ("mypkg.algo:MySkills", "is a skill-discovery protocol"),
    ("rl2", "is a skill-discovery protocol"),           # a meta-RL trainer under the skills suite
])
def test_other_algorithms_are_refused_under_the_skills_suite(tmp_path, capsys, import_path, needle):
    entry = entry_of("diayn")
    entry["name"] = "not-a-skill-method"
    entry["algorithm"]["import_path"] = import_path
    _rejected(tmp_path, capsys, entry, "algorithm.import_path", needle, f"(got {import_path!r})")


def test_a_skill_method_is_refused_under_the_lite_suite(tmp_path, capsys):
    entry = json.loads((ENTRIES / "offbench-bc.json").read_text())
    entry["name"] = "diayn-on-lite"
    entry["algorithm"]["import_path"] = "diayn"
    _rejected(tmp_path, capsys, entry, "algorithm.import_path",
              "'diayn' is a skill-discovery method: it runs on skills-suite protocols only, not on 'lite'-suite "
              "protocol 'lite'", "(got 'diayn')")
    from offbench.leaderboard.validate import validate_entry
    from offbench.protocol import load_protocol

    for algo in SKILL_METHODS:
        with pytest.raises(EntryError, match=f"'{algo}' is a skill-discovery method"):
            validate_entry({"protocol": {"name": "smoke"}, "suite": load_protocol("smoke").suite,
                            "algorithm": {"import_path": algo}, "runs": []}, "x.json")


def test_skill_measurements_are_refused_outside_the_skills_suite(tmp_path, capsys):
    entry = json.loads((ENTRIES / "offbench-bc.json").read_text())
    entry["name"] = "bc-with-coverage"
    entry["runs"][0]["evaluations"][0]["coverage"] = 12
    _rejected(tmp_path, capsys, entry, "runs[0].evaluations[0].coverage", "a skills-suite measurement",
              "'lite'-suite protocol")


# ---------------------------------------------------------------------- verify
def test_verify_re_runs_a_skills_entry(capsys):
    """verify re-runs one of uniform random's runs (150 episodes, a few seconds) with offbench's own
    skill loop at the fixed evaluation seed, and gets the entry's coverage exactly."""
    assert cli(["leaderboard", "verify", str(ENTRIES / "offbench-skills-random.json"), "--seeds", "1", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "offbench's built-in skill-discovery method 'random'" in out and "nothing the entry names is imported" in out
    line = next(line for line in out.splitlines() if line.startswith(f"ok   {ENV} seed "))
    assert "re-run 158.00, entry 158.00, interval [158.00, 158.00]" in line
    assert "verified: every re-run lies in the entry's interval" in out


@pytest.mark.slow
def test_smoke_entry_end_to_end(tmp_path, capsys):
    """`offbench reproduce skills --protocol smoke` for DIAYN, then submit, validate and verify: the
    re-run's coverage and classifier accuracy are the entry's."""
    results = tmp_path / "results"
    assert cli(["reproduce", "skills", "--protocol", "smoke", "--algos", "diayn", "--workers", "1", "--quiet",
                "--no-report", "--out", str(results)]) == 0
    path = tmp_path / "entries" / "smoke-diayn.json"
    path.parent.mkdir()
    assert cli(["leaderboard", "submit", str(results), "--name", "smoke-diayn", "--out", str(path)]) == 0
    assert cli(["leaderboard", "validate", str(path), "--entries", str(path.parent)]) == 0
    entry = json.loads(path.read_text())
    assert entry["protocol"]["name"] == "skills-smoke" and entry["config"]["skills"] == 4
    assert _final(entry)["classifier_chance"] == 0.25
    capsys.readouterr()
    assert cli(["leaderboard", "verify", str(path), "--seeds", "1", "--yes"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith(f"ok   {ENV} seed 0"))
    rerun, entry_score = line.split("re-run ")[1].split(", entry ")
    assert float(rerun) == float(entry_score.split(",")[0])
    accuracy = next(line for line in out.splitlines() if "classifier accuracy: re-run" in line)
    shown = accuracy.split("re-run ")[1]
    assert shown.split(", entry ")[0] == shown.split(", entry ")[1].split(" (chance")[0]
