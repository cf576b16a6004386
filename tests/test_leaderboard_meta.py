"""The leaderboard on the meta-RL suite (issue 17): entries built from a real `offbench reproduce meta
--protocol smoke` run, validated (trial returns possible for each benchmark), scored with the
report's normalisation (``MetaBenchmark.normalise``), ranked and rendered as "normalised trial
return", and re-run by ``verify``."""
from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import offbench.envs.meta  # noqa: F401  (registers the ids)
from offbench.envs.meta.benchmarks import BENCHMARKS, EVAL_TASK_SEED, get_benchmark
from offbench.evaluation.report import META_UNIT
from offbench.leaderboard.schema import EntryError

REPO = Path(__file__).resolve().parents[1]
RANKED = ("rl2", "maml")  # meta-smoke runs these on all five benchmarks
RESTRICTED = {"pearl": ["meta/cheetah-vel-v0", "meta/point-robot-v0"], "dream": ["meta/signgrid-v0"]}  # [overrides.X].datasets
TRIALS = 5  # meta-smoke's final_eval_episodes: held-out tasks per evaluation


def cli(argv: list[str]) -> int:
    from offbench.cli import main

    return main(argv)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """`offbench reproduce meta --protocol smoke` (about 10 s on 2 busy cores), in its own cache."""
    root = tmp_path_factory.mktemp("meta")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OFFBENCH_HOME", str(root / "home"))
        mp.delenv("OFFBENCH_MIRRORS", raising=False)
        assert cli(["reproduce", "meta", "--protocol", "smoke", "--workers", "1", "--quiet",
                    "--out", str(root / "results")]) == 0
    return root / "results"


@pytest.fixture(scope="module")
def baseline_board(smoke, tmp_path_factory) -> Path:
    """The board ``scripts/make_baseline_entries.py`` writes from the smoke run (entries, README, site)."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_baseline_entries
    finally:
        sys.path.remove(str(REPO / "scripts"))
    board = tmp_path_factory.mktemp("board")
    assert make_baseline_entries.main([str(smoke), "--out", str(board), "--prefix", "offbench-meta-"]) == 0
    return board


@pytest.fixture
def board(baseline_board, tmp_path) -> Path:
    """A copy of the baseline board a test may change."""
    return Path(shutil.copytree(baseline_board, tmp_path / "board"))


def entry_of(board: Path, algo: str) -> dict:
    return json.loads((board / "entries" / f"offbench-meta-{algo}.json").read_text())


def results_table(smoke: Path):
    import pandas as pd

    return pd.read_csv(smoke / "results.csv")


# ---------------------------------------------------------------------- benchmarks' return bounds
def test_benchmark_reward_bounds_are_the_environments():
    """The bounds the board checks trial returns against are the families' own constants and time limits."""
    import gymnasium as gym

    from offbench.envs.meta import cheetah_vel, gridnavi, point_robot, sign_grid

    expected = {
        # minus a speed error and a control cost, 2 episodes of 200 steps
        "meta/cheetah-vel-v0": ((-math.inf, 0.0), cheetah_vel.EPISODE_LENGTH, (-math.inf, 0.0)),
        "meta/bandit-k5-n10-v0": ((0.0, 1.0), 10, (0.0, 10.0)),  # a pull pays 0 or 1, 10 pulls, 1 episode
        "meta/gridnavi-v0": ((gridnavi.STEP_REWARD, gridnavi.GOAL_REWARD), gridnavi.EPISODE_LENGTH, (-6.0, 60.0)),
        "meta/point-robot-v0": ((-math.inf, 0.0), point_robot.EPISODE_LENGTH, (-math.inf, 0.0)),
        # SignGrid: one rewarded step at most (entering the goal ends the episode), 2 episodes of 20 steps
        "meta/signgrid-v0": ((sign_grid.WRONG_TENTHS / 10, sign_grid.GOAL_TENTHS / 10), 20, (-40.0, 2.0)),
    }
    assert sorted(expected) == sorted(BENCHMARKS)
    for benchmark_id, (reward_bounds, steps, trial) in expected.items():
        benchmark = get_benchmark(benchmark_id)
        assert benchmark.reward_bounds == reward_bounds and benchmark.max_episode_steps == steps
        assert benchmark.trial_return_bounds() == pytest.approx(trial)
        env = gym.make(benchmark.env_id, disable_env_checker=True, **benchmark.env_kwargs).unwrapped
        limit = getattr(env, "pulls", None) or getattr(env, "episode_length", None) or env.layout.episode_length
        assert limit == steps, benchmark_id


# ---------------------------------------------------------------------- entries from a real meta run
def test_baseline_entries_from_a_meta_run(smoke, baseline_board):
    from offbench.leaderboard.validate import validate_file

    table = results_table(smoke)
    names = sorted(p.name for p in (baseline_board / "entries").glob("*.json"))
    assert names == [f"offbench-meta-{a}.json" for a in ("dream", "maml", "pearl", "rl2")]
    for algo in ("rl2", "maml", "pearl", "dream"):
        entry, protocol = validate_file(baseline_board / "entries" / f"offbench-meta-{algo}.json", check_unique=False)
        assert entry["suite"] == "meta" and protocol.name == "meta-smoke" and entry["algorithm"]["import_path"] == algo
        assert entry["config"] == protocol.settings(algo)
        expected = RESTRICTED.get(algo, sorted(BENCHMARKS))
        assert sorted(r["dataset"] for r in entry["runs"]) == expected
        for run in entry["runs"]:
            assert run["dataset_sha256"] is None and "content_sha256" not in run  # benchmarks have no file
            assert run["gradient_steps"] == 2 and run["settings"] == protocol.settings(algo)
            (ev,) = run["evaluations"]
            assert (ev["step"], ev["episodes"], ev["eval_seed"]) == (2, TRIALS, EVAL_TASK_SEED)
            row = table[(table.algorithm == algo) & (table.dataset == run["dataset"])].iloc[0]
            assert ev["returns"] == json.loads(row.returns)  # raw trial returns, as results.csv has them


def test_submit_builds_the_same_entry_from_a_meta_run(smoke, baseline_board, tmp_path, capsys):
    out = tmp_path / "entries" / "my-rl2.json"
    out.parent.mkdir()
    assert cli(["leaderboard", "submit", str(smoke), "--name", "my-rl2", "--algo", "rl2", "--out", str(out)]) == 0
    mine, script = json.loads(out.read_text()), entry_of(baseline_board, "rl2")
    assert mine["runs"] == script["runs"] and len(mine["runs"]) == 5
    assert cli(["leaderboard", "validate", str(out), "--entries", str(out.parent)]) == 0
    assert "valid entry 'my-rl2' (5 runs, protocol 'meta-smoke', suite 'meta')" in capsys.readouterr().out


def test_board_scores_meta_runs_as_the_report_does(smoke, baseline_board):
    """Every per-benchmark score equals results.csv's normalized_score (what `offbench report`
    aggregates: MetaBenchmark.normalise on the evaluation's held-out tasks); the ranked entries are
    ordered by the IQM of their five benchmark scores; the restricted ones are not ranked."""
    from offbench.leaderboard.build import load_entries, make_groups

    table = results_table(smoke)
    (group,) = make_groups(load_entries(baseline_board / "entries"))
    assert group.suite == "meta" and group.score_label == META_UNIT == "normalised trial return"
    iqms = {}
    for entry, scores in group.rows:
        algo = entry["algorithm"]["import_path"]
        for dataset, ds in scores.datasets.items():
            row = table[(table.algorithm == algo) & (table.dataset == dataset)].iloc[0]
            returns = json.loads(row.returns)
            assert ds.scores == [pytest.approx(row.normalized_score, abs=1e-4)]
            assert ds.scores[0] == pytest.approx(get_benchmark(dataset).normalise(returns, TRIALS).mean(), abs=1e-9)
        middle = sorted(ds.scores[0] for ds in scores.datasets.values())
        iqms[algo] = float(np.mean(middle[1:4])) if len(middle) == 5 else float(np.mean(middle))  # IQM of 5: the middle three
        assert scores.iqm == pytest.approx(iqms[algo]) and scores.complete == (algo in RANKED)
    order = [entry["algorithm"]["import_path"] for entry, _ in group.rows]
    assert order[:2] == sorted(RANKED, key=lambda a: -iqms[a]) and sorted(order[2:]) == sorted(RESTRICTED)
    assert group.ranks == [1, 2, None, None]


def test_board_labels_the_meta_table_and_escapes_it(board):
    entry = entry_of(board, "pearl")
    entry["algorithm"]["name"] = "<script>alert(1)</script>"
    entry["authors"] = ["Ada & <b>Bob</b>"]
    (board / "entries" / "offbench-meta-pearl.json").write_text(json.dumps(entry))
    assert cli(["leaderboard", "build", "--out", str(board)]) == 0
    readme = (board / "README.md").read_text()
    assert "## Suite `meta`, protocol `meta-smoke`" in readme
    assert f"score: {META_UNIT}; 1 seeds x 5 benchmarks." in readme
    assert "| meta/bandit-k5-n10-v0 | 5.000 | 6.660 | Bayes-optimal |" in readme  # the references, as the report
    assert "| meta/gridnavi-v0 | -4.662 | 37.214 | Bayes-optimal |" in readme
    assert "| benchmark | offbench-meta-" in readme  # the per-benchmark table
    assert "Not ranked: offbench-meta-pearl (2 of 5 benchmarks), offbench-meta-dream (1 of 5 benchmarks)" in readme
    pearl_row = next(line for line in readme.splitlines() if line.startswith("| - | offbench-meta-pearl |"))
    assert "&lt;script&gt;alert\\(1\\)&lt;/script&gt;" in pearl_row and "<script>" not in readme
    # pearl ran the point robot only: '-' in the other benchmarks' cells
    bandit = next(line for line in readme.splitlines() if line.startswith("| meta/bandit-k5-n10-v0 | ")
                  and "±" not in line and line.count("|") == 6)
    assert bandit.split(" | ")[3:] == ["-", "- |"]
    index = (board / "site" / "index.html").read_text()
    assert f"score: {META_UNIT};" in index and "<th scope=\"col\">benchmark</th>" in index
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index and "Ada &amp; &lt;b&gt;Bob&lt;/b&gt;" in index
    assert index.count("<script>") == 1  # the page's own sorting script only
    figure = (board / "site" / "figures" / "meta--meta-smoke-iqm.svg").read_text()
    assert f"IQM {META_UNIT}" in figure and "offbench-meta-pearl" not in figure  # unranked: not in the IQM figure


def test_an_entry_at_the_references_ranks_first_with_100(board):
    """Trial returns equal to each benchmark's reference (on the evaluation's 5 held-out tasks)
    score exactly 100 everywhere, so that entry ranks first, above the real runs."""
    entry = entry_of(board, "rl2")
    entry["name"] = "at-the-reference"
    for run in entry["runs"]:
        reference = get_benchmark(run["dataset"]).references(TRIALS)[1]
        for ev in run["evaluations"]:
            ev["returns"] = [reference] * ev["episodes"]
    (board / "entries" / "at-the-reference.json").write_text(json.dumps(entry))
    assert cli(["leaderboard", "validate", str(board / "entries" / "at-the-reference.json"),
                "--entries", str(board / "entries")]) == 0
    assert cli(["leaderboard", "build", "--out", str(board)]) == 0
    readme = (board / "README.md").read_text()
    assert "| 1 | at-the-reference | RL2 | 100.0 [100.0, 100.0] | 100.0 |" in readme
    assert "| 2 | offbench-meta-" in readme and "| 3 | offbench-meta-" in readme and "| 4 |" not in readme


# ---------------------------------------------------------------------- rejections
def _write(tmp_path: Path, entry: dict) -> Path:
    path = tmp_path / "incoming" / f"{entry['name']}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(entry))
    return path


def _run(entry: dict, dataset: str) -> tuple[int, dict]:
    return next((i, r) for i, r in enumerate(entry["runs"]) if r["dataset"] == dataset)


@pytest.mark.parametrize("dataset, value", [
    ("meta/gridnavi-v0", 61.0),          # above 4 episodes x 15 steps x +1
    ("meta/gridnavi-v0", -6.5),          # below 60 steps x -0.1
    ("meta/bandit-k5-n10-v0", 48.19),    # a normalised score submitted as a return: 10 pulls pay at most 10
    ("meta/signgrid-v0", 2.5),           # at most +1 an episode (entering the goal ends it)
    ("meta/point-robot-v0", 0.5),        # minus a distance: never positive
    ("meta/point-robot-v0", -400.0),     # far below the random policy (10 spans of random..oracle)
])
def test_an_implausible_trial_return_is_rejected(board, tmp_path, capsys, dataset, value):
    entry = entry_of(board, "rl2")
    i, run = _run(entry, dataset)
    run["evaluations"][0]["returns"][2] = value
    path = _write(tmp_path, entry)
    assert cli(["leaderboard", "validate", str(path), "--entries", str(board / "entries")]) == 2
    err = capsys.readouterr().err
    field = f"[runs[{i}].evaluations[0].returns[2]]"
    assert str(path) in err and field in err and f"implausible trial return for {dataset} seed 0" in err, err
    assert f"(run runs[{i}]" in err and f"(got {value!r})" in err and "Traceback" not in err
    # inside the board, the build fails and writes nothing
    before = (board / "README.md").read_bytes()
    inside = board / "entries" / f"{entry['name']}.json"
    inside.write_text(json.dumps(entry))
    assert cli(["leaderboard", "build", "--out", str(board)]) == 2
    assert field in capsys.readouterr().err and (board / "README.md").read_bytes() == before


def test_the_accepted_ranges_of_the_benchmarks():
    from offbench.leaderboard.validate import SPANS_BELOW, plausible_range

    for benchmark_id, low, high in (("meta/bandit-k5-n10-v0", 0.0, 10.0), ("meta/gridnavi-v0", -6.0, 60.0),
                                    ("meta/signgrid-v0", -40.0, 2.0)):
        accepted = plausible_range(get_benchmark(benchmark_id), TRIALS)
        assert (accepted.low, accepted.high) == pytest.approx((low, high))
        assert accepted.contains(low) and accepted.contains(high) and not accepted.contains(high + 0.01)
    point = get_benchmark("meta/point-robot-v0")
    random, oracle = point.references(TRIALS)
    accepted = plausible_range(point, TRIALS)
    assert accepted.high == 0.0 and accepted.low == pytest.approx(random - SPANS_BELOW * (oracle - random))
    assert accepted.low < -2 * 20 * 4 * math.sqrt(2)  # walking away from the goal at full speed stays inside
    assert "below: 10 spans under the benchmark's random and reference trial returns" in accepted.reason


@pytest.mark.parametrize("change, field, needle", [
    (lambda e: e["runs"][0].update(dataset_sha256="0" * 64), "runs[0].dataset_sha256", "must be null"),
    (lambda e: e["runs"][0]["evaluations"][0].update(eval_seed=7), "runs[0].evaluations[0].eval_seed",
     f"sample_tasks(n, {EVAL_TASK_SEED})"),
    (lambda e: e["runs"].pop(), "runs", "1 missing: meta/signgrid-v0 seed 0"),
    (lambda e: e["runs"][0].update(dataset="meta/gridnavy-v0"), "runs[0].dataset", "unknown meta benchmark id"),
    (lambda e: e["runs"][0].update(gradient_steps=3), "runs[0].gradient_steps", "2 outer updates"),
    (lambda e: e["algorithm"].update(import_path="bc"), "algorithm.import_path", "meta-RL protocol"),
    (lambda e: e["algorithm"].update(import_path="mypkg.algo:MyMeta"), "algorithm.import_path", "meta-RL protocol"),
])
def test_bad_meta_entries_are_rejected(board, tmp_path, capsys, change, field, needle):
    entry = entry_of(board, "rl2")
    entry["runs"].sort(key=lambda r: r["dataset"])  # signgrid last
    change(entry)
    path = _write(tmp_path, entry)
    assert cli(["leaderboard", "validate", str(path), "--entries", str(board / "entries")]) == 2
    err = capsys.readouterr().err
    assert f"[{field}]" in err and needle in err and "what to do:" in err, err


def test_a_restricted_algorithm_runs_only_its_benchmarks(board, tmp_path, capsys):
    """PEARL runs the point robot and HalfCheetahVel only ([overrides.pearl].datasets): a run elsewhere
    is refused, and its two runs are all the protocol asks of it."""
    entry = entry_of(board, "pearl")
    extra = json.loads(json.dumps(entry["runs"][0]))
    extra["dataset"] = "meta/gridnavi-v0"
    entry["runs"].append(extra)
    path = _write(tmp_path, entry)
    assert cli(["leaderboard", "validate", str(path), "--entries", str(board / "entries")]) == 2
    err = capsys.readouterr().err
    assert "[runs[2].dataset]" in err and "runs pearl on ['meta/cheetah-vel-v0', 'meta/point-robot-v0'] only" in err


def test_a_meta_algorithm_is_refused_on_an_offline_protocol():
    from offbench.leaderboard.validate import validate_entry
    from offbench.protocol import load_protocol

    entry = {"protocol": {"name": "smoke"}, "suite": load_protocol("smoke").suite,
             "algorithm": {"import_path": "rl2"}, "runs": []}
    with pytest.raises(EntryError, match="'rl2' is an online meta-RL algorithm: it runs on meta-suite protocols"):
        validate_entry(entry, "x.json")


# ---------------------------------------------------------------------- verify
def test_verify_re_runs_a_meta_entry(board, capsys):
    """verify re-runs PEARL's point-robot run with offbench's own trainer and gets the entry's score."""
    path = board / "entries" / "offbench-meta-pearl.json"
    assert cli(["leaderboard", "verify", str(path), "--seeds", "1", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "offbench's built-in meta-RL trainer 'pearl'" in out and "nothing the entry names is imported" in out
    line = next(line for line in out.splitlines() if line.startswith("ok   meta/point-robot-v0 seed 0"))
    rerun, entry_score = line.split("re-run ")[1].split(", entry ")
    assert float(rerun) == float(entry_score.split(",")[0])  # the same seeded run: the same score
