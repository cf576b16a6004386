"""The meta-RL suite in the pipeline (issue 17): benchmarks and their references, meta runs on the
protocol loop (resume, evaluation rows), and `offbench reproduce meta --protocol smoke` end to end."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import offbench.envs.meta  # noqa: F401
from offbench.envs.meta.benchmarks import (BENCHMARKS, EVAL_TASK_SEED, eval_tasks, get_benchmark,
                                           gridnavi_random_return)
from offbench.errors import OffbenchError


def test_gridnavi_random_reference_equals_simulation():
    """The exact Markov-chain value against 5,000 simulated random trials of 4 episodes."""
    exact = gridnavi_random_return(4)
    env = gym.make("offbench/GridNavi-v0", disable_env_checker=True)
    rng = np.random.default_rng(0)
    totals = []
    for i, task in enumerate(env.unwrapped.sample_tasks(5000, 0)):  # goals from the prior, one per trial
        env.reset(seed=i, options={"task": task})
        total = 0.0
        for _ in range(4):
            env.reset()
            done = False
            while not done:
                _, r, te, tr, _ = env.step(int(rng.integers(5)))
                total += r
                done = te or tr
        totals.append(total)
    totals = np.array(totals)
    assert abs(totals.mean() - exact) < 4 * totals.std() / np.sqrt(len(totals)), (totals.mean(), exact)


def test_references_and_normalisation():
    bandit = get_benchmark("meta/bandit-k5-n10-v0")
    random, reference = bandit.references(10)
    assert random == 5.0 and reference == pytest.approx(6.659988, abs=1e-6)
    assert bandit.normalise([5.0, reference], 10) == pytest.approx([0.0, 100.0])
    grid = get_benchmark("meta/gridnavi-v0")
    assert grid.references(10)[1] == pytest.approx(521 / 14)
    sign = get_benchmark("meta/signgrid-v0")
    assert sign.references(5) == pytest.approx((-3.382522, 1.2), abs=1e-6)  # random: simulated -3.374 +- 0.018
    point = get_benchmark("meta/point-robot-v0")
    random, oracle = point.references(20)
    assert random < oracle < 0  # dense rewards are negative distances; the oracle walks straight to the goal


def test_held_out_tasks_are_seeded_and_fixed():
    for benchmark in BENCHMARKS.values():
        a, b = eval_tasks(benchmark, 5), eval_tasks(benchmark, 5)
        assert json.dumps(a, default=lambda v: np.asarray(v).tolist()) == json.dumps(b, default=lambda v: np.asarray(v).tolist())
    assert EVAL_TASK_SEED == 1_000_000


def test_unknown_benchmarks_and_algorithms_are_refused(tmp_path):
    from offbench.meta_runs import train_meta_run
    from offbench.train import TrainConfig

    with pytest.raises(OffbenchError, match="unknown meta benchmark"):
        get_benchmark("meta/gridnavy-v0")
    with pytest.raises(OffbenchError, match="unknown meta-RL algorithm"):
        train_meta_run("varibad", "meta/gridnavi-v0", {}, TrainConfig(steps=1), tmp_path)
    with pytest.raises(OffbenchError, match="unknown RL² settings"):
        train_meta_run("rl2", "meta/gridnavi-v0", {"gru_size": 3}, TrainConfig(steps=1), tmp_path / "x")


@pytest.mark.parametrize("algorithm, benchmark_id, settings", [
    ("rl2", "meta/bandit-k5-n10-v0", {"num_envs": 2, "minibatches": 2, "gru_hidden": 8, "hidden": [8]}),
    ("maml", "meta/bandit-k5-n10-v0", {"hidden": [8], "meta_batch": 2, "episodes_per_task": 2, "outer_epochs": 1}),
    ("pearl", "meta/point-robot-v0", {"hidden": [8], "train_tasks": 3, "tasks_per_iteration": 2,
                                      "updates_per_iteration": 2, "meta_batch": 2, "batch_size": 8, "context_batch": 4}),
])
def test_a_killed_meta_run_resumes_to_the_same_evaluations(algorithm, benchmark_id, settings, tmp_path):
    from offbench.meta_runs import train_meta_run
    from offbench.train import TrainConfig, TrainingInterrupted

    config = TrainConfig(steps=3, eval_every=1, eval_episodes=3, final_eval_episodes=4, seed=2)
    straight = train_meta_run(algorithm, benchmark_id, settings, config, tmp_path / "a")
    calls = iter([False, True])
    with pytest.raises(TrainingInterrupted):
        train_meta_run(algorithm, benchmark_id, settings, config, tmp_path / "b", should_stop=lambda: next(calls, True))
    resumed = train_meta_run(algorithm, benchmark_id, settings, config, tmp_path / "b")
    assert straight == resumed
    a = (tmp_path / "a" / "evaluations.jsonl").read_text()
    assert a == (tmp_path / "b" / "evaluations.jsonl").read_text()
    rows = [json.loads(line) for line in a.splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["episodes"] == 4
    assert np.allclose(np.sum(rows[-1]["episode_returns"], 1), rows[-1]["returns"])


def test_reproduce_meta_smoke_runs_every_meta_algorithm(tmp_path, capsys):
    from offbench.cli import main

    out = tmp_path / "meta"
    assert main(["reproduce", "meta", "--protocol", "smoke", "--workers", "1", "--quiet", "--out", str(out)]) == 0
    table = (out / "report" / "table.md").read_text()
    assert "normalised trial return" in table and "| meta/bandit-k5-n10-v0 | 5.000 | 6.660 | Bayes-optimal |" in table
    import pandas as pd

    results = pd.read_csv(out / "results.csv")
    runs = set(zip(results.algorithm, results.dataset))
    assert {a for a, _ in runs} == {"rl2", "maml", "pearl", "dream"}
    assert {d for a, d in runs if a == "pearl"} == {"meta/cheetah-vel-v0", "meta/point-robot-v0"}  # [overrides.pearl]
    assert {d for a, d in runs if a == "dream"} == {"meta/signgrid-v0"}
    assert len(runs) == 13 and results.episode_returns.notna().all()
    assert "not run" not in table  # a dataset an algorithm is not planned on is not a missing run
    # the meta section (offbench/evaluation/meta_report.py) recomputes every cell from results.csv
    report = json.loads((out / "report" / "report.json").read_text())
    # PEARL and DREAM run on one benchmark each: shown, not aggregated, and no benchmark is dropped for them
    assert report["aggregate_algorithms"] == ["rl2", "maml"] and len(report["aggregate_datasets"]) == 5
    assert "pearl: shown with its cells, left out of the aggregates (the protocol runs it on 2 of 5 datasets)" in table
    meta = report["meta"]
    final = results[results.final.astype(str) == "True"]
    for (algorithm, dataset), rows in final.groupby(["algorithm", "dataset"]):
        episodes = np.array(json.loads(rows.episode_returns.iloc[0]))  # one seed: [trials, K]
        table_ = meta[dataset]
        cell = table_["cells"][algorithm]
        assert table_["trials"] == len(episodes) == 5
        assert cell["trial_return"][0] == pytest.approx(episodes.sum(1).mean())
        assert cell["regret"][0] == pytest.approx(table_["reference"] - episodes.sum(1).mean())
        assert [e[0] for e in cell["episodes"]] == pytest.approx(episodes.mean(0).tolist())
        assert (table_["random"], table_["reference"]) == pytest.approx(get_benchmark(dataset).references(5))
    assert meta["meta/bandit-k5-n10-v0"]["published"]["rl2"] == 6.7  # Duan et al. 2016, Table 1 (n = 10, k = 5)
    assert meta["meta/gridnavi-v0"]["published"] is None and meta["meta/signgrid-v0"]["cells"]["pearl"] is None
    assert "## Meta-RL: trial returns, regret and adaptation" in table and "| rl2 | " in table


def test_an_algorithm_may_be_restricted_to_some_datasets(tmp_path):
    from offbench.protocol import load_protocol

    base = (tmp_path / "p.toml")
    text = ('name = "x"\nsuite = "meta"\nseeds = [0]\ndatasets = ["meta/gridnavi-v0"]\nalgorithms = ["rl2"]\n'
            '[overrides.rl2]\ndatasets = ["meta/nope-v0"]\n')
    base.write_text(text)
    with pytest.raises(OffbenchError, match=r"\[overrides.rl2\].datasets must be a non-empty list"):
        load_protocol(base)
    base.write_text(text.replace("meta/nope-v0", "meta/gridnavi-v0"))
    protocol = load_protocol(base)
    assert protocol.datasets_for("rl2") == ["meta/gridnavi-v0"] and protocol.datasets_for("maml") == ["meta/gridnavi-v0"]


def test_the_meta_table_protocol_is_the_suites_default_and_runnable():
    from offbench.protocol import check_runnable, load_protocol, protocol_for_suite

    table = protocol_for_suite("meta")
    assert table.name == "meta" and protocol_for_suite("meta", "smoke").name == "meta-smoke"
    check_runnable(table)  # every algorithm's settings are valid for its benchmarks
    assert table.seeds == [0, 1, 2] and table.algorithms == ["rl2", "maml", "pearl", "dream"]
    assert table.datasets_for("pearl") == ["meta/point-robot-v0"]
    assert table.datasets_for("dream") == ["meta/signgrid-v0"]
    assert table.datasets_for("rl2") == sorted(set(BENCHMARKS) - {"meta/cheetah-vel-v0"})  # its own protocol
    assert table.train["final_eval_episodes"] == 200
    cheetah = load_protocol("meta-cheetah")
    check_runnable(cheetah)
    assert cheetah.suite == "meta" and cheetah.datasets == ["meta/cheetah-vel-v0"] and cheetah.seeds == [0, 1, 2]
    assert cheetah.algorithms == ["rl2", "maml", "pearl"] and cheetah.train["final_eval_episodes"] == 200


def test_meta_report_holds_each_run_against_the_references_of_its_own_trials():
    import pandas as pd

    from offbench.evaluation.meta_report import meta_tables

    bench = get_benchmark("meta/point-robot-v0")  # references depend on the held-out tasks: Monte Carlo over them
    rows = []
    for algorithm, trials, seeds in (("rl2", 5, (0, 1, 2)), ("maml", 3, (0,))):
        for seed in seeds:
            episodes = np.full((trials, 2), -10.0 - seed)
            rows.append({"algorithm": algorithm, "dataset": bench.benchmark_id, "seed": seed, "step": 10,
                         "episode_returns": json.dumps(episodes.tolist())})
    table = meta_tables(pd.DataFrame(rows), ["rl2", "maml", "pearl"], [bench.benchmark_id])[bench.benchmark_id]
    assert table["trials"] == 5 and (table["random"], table["reference"]) == pytest.approx(bench.references(5))
    rl2, maml = table["cells"]["rl2"], table["cells"]["maml"]
    assert rl2["trial_return"][:3] == pytest.approx([-22.0, np.std([-20, -22, -24], ddof=1) / np.sqrt(3), 3])
    assert rl2["regret"][0] == pytest.approx(bench.references(5)[1] + 22.0)
    assert maml["regret"] == [pytest.approx(bench.references(3)[1] + 20.0), None, 1]  # its own 3 trials' reference
    assert [e[0] for e in rl2["episodes"]] == pytest.approx([-11.0, -11.0]) and table["cells"]["pearl"] is None
