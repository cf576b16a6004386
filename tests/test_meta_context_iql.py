"""Context-conditioned IQL for offline meta-RL (baselines/meta/context_iql.py): task-grouped batches,
gradient routing (only the critics and the KL train the encoder), the online context the evaluation
policy builds, exact resume on the fit loop, and both action kinds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from baselines.meta.context_iql import ContextIQL, ContextIQLConfig, OnlineContextPolicy
from offbench.data.dataset import read_dataset
from offbench.data.meta_generation import write_meta_dataset
from offbench.data.task_batches import TaskBatchSampler
from offbench.errors import OffbenchError

TINY = {"hidden": [16], "latent_dim": 2, "tasks_per_batch": 2, "context_size": 4}


def _tiny(factory, family: str, behaviour: str, dataset_id: str, references: dict):
    """Three tasks x two episodes of a meta_tasks recipe."""
    recipe = dict(kind="meta_tasks", family=family, tasks=3, task_seed=0, episodes_per_task=2, behaviour=behaviour, seed=0)
    path = factory.mktemp("meta") / "data.hdf5"
    return read_dataset(write_meta_dataset(path, recipe, dataset_id=dataset_id, reference_scores=references))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return _tiny(tmp_path_factory, "offbench/GridNavi-v0", "mixed", "meta/gridnavi/mixed-v0",
                 {"random": -1.165, "expert": 11.07})


@pytest.fixture(scope="module")
def point(tmp_path_factory):
    return _tiny(tmp_path_factory, "offbench/PointRobot-v0", "expert", "meta/point-robot/expert-v0",
                 {"random": -21.36, "expert": -5.18})


def test_batches_keep_tasks_apart(grid):
    sampler = TaskBatchSampler(grid, tasks=3, batch_per_task=16, context_size=8, seed=0)
    batch = sampler.sample()
    goals = grid.extra("infos/task/goal")
    task_of_row = grid.extra("task_id")
    for t, task in enumerate(batch.task_ids.tolist()):
        goal = goals[np.flatnonzero(task_of_row == task)[0]]
        # every context row of task t comes from that task: its reward is +1 exactly at the goal cell
        ctx = batch.context[t].numpy()
        at_goal = np.all(ctx[:, -2:] == goal, axis=1)
        assert np.array_equal(ctx[:, 2 + 5] == 1.0, at_goal)


def test_the_actor_never_trains_the_encoder(grid):
    algo = ContextIQL(grid.observation_space, grid.action_space, ContextIQLConfig(**{**TINY, "hidden": (16,)}), seed=0)
    batch = algo.make_sampler(grid, 8, 0).sample()
    mean, var = algo.posterior(batch.context)
    algo.optim.zero_grad()
    x = torch.cat([batch.observations.reshape(-1, 2), torch.zeros(8, 2)], -1)
    (-algo.policy.log_prob(x, batch.actions.reshape(-1)).mean()).backward()
    assert all(p.grad is None for p in algo.encoder.parameters())
    before = [p.detach().clone() for p in algo.encoder.parameters()]
    algo.update(batch)
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.encoder.parameters()))  # via L_Q and the KL


def test_the_evaluation_policy_reads_its_own_transitions(grid):
    algo = ContextIQL(grid.observation_space, grid.action_space, ContextIQLConfig(**{**TINY, "hidden": (16,)}), seed=0)
    policy = algo.make_eval_policy()
    assert isinstance(policy, OnlineContextPolicy)
    policy.reset(0)
    obs = np.array([[0.0, 0.0]], np.float32)
    a0 = policy.act(obs, [0])
    policy.observe([0], np.array([-0.1]))
    policy.act(np.array([[1.0, 0.0]], np.float32), [0])
    row = policy.rows[0][0]
    assert np.allclose(row[:2], [0, 0]) and row[2 + int(a0[0])] == 1.0 and row[7] == pytest.approx(-0.1)
    assert np.allclose(row[8:], [1, 0])
    policy.reset(0)
    assert policy.rows[0] == []


@pytest.mark.parametrize("which", ["grid", "point"])
def test_a_killed_run_resumes_to_identical_parameters(which, grid, point, tmp_path):
    from offbench.train import TrainConfig
    from tests.conftest import kill_and_resume

    dataset = grid if which == "grid" else point
    config = TrainConfig(steps=12, batch_size=8, eval_every=12, eval_episodes=2, final_eval_episodes=2,
                         checkpoint_every=4, log_every=6)
    kill_and_resume("context_iql", dataset, TINY, config, tmp_path, kill_at=10, checkpoint_at=8)


def test_data_without_tasks_is_refused(grid):
    from dataclasses import replace

    from offbench.data.dataset import Dataset

    untasked = Dataset({k: v for k, v in grid.arrays.items() if k != "task_id"}, replace(grid.metadata, checksums={}))
    with pytest.raises(OffbenchError, match="no task_id"):
        TaskBatchSampler(untasked, tasks=2, batch_per_task=4, context_size=4)


def _recording(algo):
    """Wrap ``act_with`` to record the z of every step."""
    seen, act_with = [], algo.act_with

    def act(obs, z):
        seen.append(z.clone())
        return act_with(obs, z)
    algo.act_with = act
    return seen


def test_online_adaptation_carries_the_context_across_the_trial(grid):
    """Episode 1 starts from the prior's mean z = 0; the first step of episode 2 acts with the
    posterior mean of all 15 transitions of episode 1 (GridNavi episodes are 15 steps)."""
    import gymnasium as gym

    import offbench.envs.meta  # noqa: F401

    algo = ContextIQL(grid.observation_space, grid.action_space, ContextIQLConfig(**{**TINY, "hidden": (16,)}), seed=0)
    algo.eval()
    seen = _recording(algo)
    make_env = lambda: gym.make("offbench/GridNavi-v0", disable_env_checker=True)  # noqa: E731
    task = {"goal": np.array([4, 4])}
    returns = algo.adapt_and_evaluate(make_env, [task], 2, seed=5)
    assert returns.shape == (1, 2) and len(seen) == 30
    assert torch.equal(seen[0], torch.zeros(1, 2))
    # replay episode 1 to rebuild its context rows, then compare with the z of step 16
    env = make_env()
    obs, _ = env.reset(seed=5, options={"task": task})
    rows = []
    from offbench.data.task_batches import context_rows
    for t in range(15):
        z = algo.posterior_mean(np.stack(rows) if rows else None)
        action = ContextIQL.act_with(algo, np.asarray(obs)[None], z[None])[0]
        nxt, r, *_ = env.step(action)
        rows.append(context_rows(np.asarray(obs)[None], np.asarray(action)[None], np.array([r]), np.asarray(nxt)[None],
                                 algo.action_space)[0])
        obs = nxt
    assert torch.allclose(seen[15][0], algo.posterior_mean(np.stack(rows)))
    assert returns[0, 0] == pytest.approx(sum(row[7] for row in rows))


def test_offline_context_is_the_tasks_own_data_and_fixed(grid):
    from offbench.envs.meta.benchmarks import get_benchmark
    from offbench.evaluation.meta_adaptation import adaptation, dataset_tasks
    from offbench.envs.meta.gridnavi import GridNaviEnv

    ids, tasks = dataset_tasks(grid, 10)
    assert ids == [0, 1, 2]  # the tiny dataset's three tasks, rebuilt from infos/task/goal
    expected = GridNaviEnv().sample_tasks(3, 0)  # the recipe's task_seed
    assert [t["goal"].tolist() for t in tasks] == [np.asarray(t["goal"]).tolist() for t in expected]
    algo = ContextIQL(grid.observation_space, grid.action_space, ContextIQLConfig(**{**TINY, "hidden": (16,)}), seed=0)
    algo.eval()
    contexts = algo.offline_context(grid, 4, seed=1)
    assert all(len(c) == 4 for c in contexts.values())
    for task_id, rows in contexts.items():  # each task's rows come from that task's transitions
        own = grid.observations[grid.extra("task_id") == task_id]
        assert all((np.abs(own - row[:2]).sum(1) == 0).any() for row in rows)
    seen = _recording(algo)
    result = adaptation(algo, grid, "meta/gridnavi-v0", 2, context="offline", context_size=4, seed=1)
    assert result["trials"] == 2 and result["task_ids"] == [0, 1] and len(result["episode_returns"]) == 4
    assert len(seen) == 2 * 4 * 15
    assert all(torch.equal(z, seen[0]) for z in seen[:60]) and torch.equal(seen[0][0], algo.posterior_mean(contexts[0]))
    assert "normalized_score" not in result  # offline context: the card's per-episode references only
    assert result["episode_scores"] == pytest.approx(
        [100 * (r + 1.165) / (11.07 + 1.165) for r in result["episode_returns"]], abs=1e-3)
    online = adaptation(algo, grid, "meta/gridnavi-v0", 3, seed=7)
    bench = get_benchmark("meta/gridnavi-v0")
    assert online["normalized_score"] == pytest.approx(bench.normalise(online["trial_returns"], 3).mean())
    with pytest.raises(OffbenchError, match="meta/point-robot-v0 plays offbench/PointRobot-v0, but the run trained on "
                                            "meta/gridnavi/mixed-v0"):
        adaptation(algo, grid, "meta/point-robot-v0", 2)
    with pytest.raises(OffbenchError, match="not an offline meta-RL agent"):
        adaptation(object(), grid, "meta/gridnavi-v0", 2)


def test_eval_cli_reports_adaptation(grid, tmp_path, capsys):
    import json

    from offbench.cli import main

    path = tmp_path / "grid.hdf5"
    from offbench.data.meta_generation import write_meta_dataset
    write_meta_dataset(path, dict(kind="meta_tasks", family="offbench/GridNavi-v0", tasks=3, task_seed=0,
                                  episodes_per_task=2, behaviour="mixed", seed=0),
                       dataset_id="meta/gridnavi/mixed-v0", reference_scores={"random": -1.165, "expert": 11.07})
    run = tmp_path / "run"
    settings = sum((["--set", f"{k}={json.dumps(v)}"] for k, v in TINY.items()), [])
    assert main(["train", "context_iql", str(path), "--steps", "4", "--out", str(run), "--quiet", *settings,
                 "--set", "batch_size=8", "--set", "eval_every=4", "--set", "eval_episodes=1",
                 "--set", "final_eval_episodes=1"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--dataset", str(path), "--benchmark", "meta/gridnavi-v0", "--episodes", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 4 and out["context"] == "online" and out["trials"] == 2 and len(out["episode_returns"]) == 4
    assert main(["eval", str(run), "--dataset", str(path), "--context", "offline"]) == 2
    assert "--context and --context-size go with --benchmark" in capsys.readouterr().err


def test_the_training_loop_scores_a_meta_dataset_by_its_benchmark(grid):
    """On a meta/<family>/<name>-v0 dataset the loop's evaluation plays the family's benchmark: trial
    returns on its held-out tasks, normalised as the online meta runs are, the adaptation curve, and
    the offline-context score on the dataset's own tasks."""
    from offbench.envs.meta.benchmarks import benchmark_for_dataset, get_benchmark
    from offbench.evaluation.meta_adaptation import adaptation
    from offbench.train import evaluate

    assert benchmark_for_dataset("meta/gridnavi/mixed-v0") == "meta/gridnavi-v0"
    assert benchmark_for_dataset("meta/point-robot/expert-v0") == "meta/point-robot-v0"
    assert benchmark_for_dataset("meta/gridnavi-v0") is None and benchmark_for_dataset("lite/pendulum/expert-v0") is None
    assert benchmark_for_dataset("meta/unknown/mixed-v0") is None
    algo = ContextIQL(grid.observation_space, grid.action_space, ContextIQLConfig(**{**TINY, "hidden": (16,)}), seed=0)
    row = evaluate(algo, grid, 3, seed=11)
    benchmark = get_benchmark("meta/gridnavi-v0")
    episodes = np.array(row["episode_returns"])
    assert episodes.shape == (3, 4) and row["returns"] == pytest.approx(episodes.sum(1).tolist())
    assert row["normalized_scores"] == pytest.approx(benchmark.normalise(row["returns"], 3).tolist(), abs=1e-5)
    assert row["normalized_score"] == pytest.approx(np.mean(row["normalized_scores"]), abs=1e-5)
    online = adaptation(algo, grid, "meta/gridnavi-v0", 3, seed=11)  # the same trials as `offbench eval --benchmark`
    assert online["trial_returns"] == pytest.approx(row["returns"])
    offline = adaptation(algo, grid, "meta/gridnavi-v0", 3, context="offline", context_size=4, seed=11)
    assert row["offline_context_episode_returns"] == pytest.approx(offline["episode_returns"])
    per_episode = grid.normalized_score(np.array(offline["episode_returns"]))  # 3 tasks: mean over tasks and episodes
    assert row["offline_context_score"] == pytest.approx(per_episode.mean(), abs=1e-6)
    assert algo.training  # the loop's mode is restored


def test_reproduce_meta_offline_smoke_reports_trials_and_offline_context(tmp_path, capsys):
    import json

    import pandas as pd

    from offbench.cli import main
    from offbench.envs.meta.benchmarks import get_benchmark

    out = tmp_path / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OFFBENCH_HOME", str(tmp_path / "home"))
        mp.delenv("OFFBENCH_MIRRORS", raising=False)
        assert main(["reproduce", "meta-offline", "--protocol", "smoke", "--workers", "1", "--quiet",
                     "--out", str(out)]) == 0
    results = pd.read_csv(out / "results.csv")
    assert set(results.dataset) == {"meta/gridnavi/mixed-v0", "meta/point-robot/mixed-v0"}
    assert (results.suite == "meta-offline").all() and results.offline_context_score.notna().all()
    for _, row in results.iterrows():
        benchmark = get_benchmark(row.dataset.replace("/mixed-v0", "-v0"))
        returns = json.loads(row.returns)
        assert row.normalized_score == pytest.approx(benchmark.normalise(returns, len(returns)).mean(), abs=1e-6)
        assert np.array(json.loads(row.episode_returns)).shape == (3, benchmark.episodes)
    table = (out / "report" / "table.md").read_text()
    assert "## Headline score: normalised trial return" in table
    assert "### meta/gridnavi/mixed-v0 (played on meta/gridnavi-v0)" in table
    assert "offline context (% of expert)" in table and "gradient steps: 20" in table
    # the board scores offline entries by the datasets' references, not by trials: it refuses the suite
    capsys.readouterr()
    assert main(["leaderboard", "submit", str(out), "--name", "mine", "--algo", "context_iql",
                 "--out", str(tmp_path / "mine.json")]) != 0
    assert "suite meta-offline) is not on the board yet" in capsys.readouterr().err
    assert not (tmp_path / "mine.json").exists()


def test_a_meta_offline_protocol_refuses_other_datasets(tmp_path):
    from offbench.protocol import check_runnable, load_protocol

    text = (Path(__file__).resolve().parents[1] / "offbench" / "protocols" / "meta-offline-smoke.toml").read_text()
    path = tmp_path / "p.toml"
    path.write_text(text.replace('"meta/point-robot/mixed-v0"', '"lite/pendulum/expert-v0"'))
    with pytest.raises(OffbenchError, match="'lite/pendulum/expert-v0' is not an offline meta-RL dataset"):
        check_runnable(load_protocol(path))
