"""The ExORL comparison's parts (issue 18, item 5): TD3 with no behaviour term (loss by hand, registered,
critics shared with TD3+BC), the point plane's scripted goal expert, the ``relabel`` recipe that turns a
reward-free dataset into a goal task's dataset (rewards = the task's reward on the stored states, the task's
env and reference scores, a bad card names itself) and the shipped cards of those datasets."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import offbench.envs  # noqa: F401 - registers the point plane and its goal variants
from baselines.td3 import TD3, TD3Config
from baselines.td3_bc import TD3BC
from offbench.algorithm import load_algorithm_class
from offbench.behaviour import make_policy
from offbench.data.catalogue import DatasetCard, list_cards
from offbench.data.collect import measure_returns
from offbench.data.dataset import read_dataset
from offbench.data.explore_generation import write_explore_dataset
from offbench.data.recipes import build_dataset
from offbench.envs.point_plane import GOALS, goal_env_id
from offbench.errors import OffbenchError
from tests.test_awr_awac_td3bc import ACT, OBS, batch, set_critics, set_linear


# ---------------------------------------------------------------- TD3
def test_td3_actor_loss_is_minus_the_first_critic_by_hand():
    algo = TD3(OBS, ACT, TD3Config(hidden=()))
    set_linear(algo.actor.net[0], [0.0], [math.atanh(0.5)])  # pi(s) = 0.5 for every s
    set_critics(algo.critic, algo.critic_target)  # Q1(s, a) = 2 s + 3 a + 1
    loss, info = algo.actor_loss(batch(obs=[1.0, -3.0], actions=[0.5, -0.5]))
    # Q1(s, 0.5) = [4.5, -3.5]: the loss is -mean = -0.5, whatever the dataset's actions were
    assert loss.item() == pytest.approx(-0.5) and info == {}
    assert loss.item() == algo.actor_loss(batch(obs=[1.0, -3.0], actions=[-1.0, 1.0]))[0].item()


def test_td3_is_registered_and_shares_td3bc_critics():
    assert load_algorithm_class("td3") is TD3 and issubclass(TD3, TD3BC)
    assert not TD3Config().normalize_observations and not hasattr(TD3Config(), "alpha")
    algo = TD3(OBS, ACT, TD3Config(hidden=(8, 8)), seed=0)
    b = batch(obs=[1.0, -3.0], actions=[0.5, -0.5], rewards=[1.0, 0.0], next_obs=[0.5, 0.0])
    metrics = algo.update(b)
    assert set(metrics) == {"critic_loss", "q_mean", "actor_loss"}


# ---------------------------------------------------------------- the scripted goal expert
def test_the_goal_controller_is_optimal_on_the_plane():
    """From the origin at most 1 per axis per step: (9, 9) is reached after step 9 and held, so 42 of 50
    steps pay; an edge goal such as (0, -9) is within 1 after step 8, so 43 pay."""
    for name, expected in (("top-right", 42.0), ("bottom", 43.0), ("left", 43.0)):
        env = gym.make(goal_env_id(name))
        returns = measure_returns(env, make_policy("point_plane_goal", env), episodes=2, seed=0)
        assert returns.tolist() == [expected, expected], name
    with pytest.raises(OffbenchError, match="point_plane_goal needs a goal-reaching point plane"):
        make_policy("point_plane_goal", gym.make("offbench/PointPlane-v0"))


# ---------------------------------------------------------------- the relabel recipe
@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    """A catalogue holding a tiny reward-free dataset and its relabelled copy for the bottom goal."""
    monkeypatch.setenv("OFFBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OFFBENCH_CATALOGUE", str(tmp_path / "cards"))
    recipe = {"kind": "explore", "env_id": "offbench/PointPlane-v0", "method": "random", "episodes": 0,
              "steps": 20000, "seed": 3}
    source = DatasetCard(id="explore/point-plane/tiny-v0", env_id="offbench/PointPlane-v0", description="tiny",
                         recipe=recipe)
    (tmp_path / "cards" / "explore" / "point-plane").mkdir(parents=True)
    source.save(tmp_path / "cards" / "explore" / "point-plane" / "tiny-v0.toml")
    relabelled = DatasetCard(id="explore/point-plane-goal-bottom/tiny-v0", env_id=goal_env_id("bottom"),
                             description="tiny, relabelled", reference_scores={"random": 0.0, "expert": 43.0},
                             recipe={"kind": "relabel", "source": source.id, "task": "point-plane-goal-bottom"})
    (tmp_path / "cards" / "explore" / "point-plane-goal-bottom").mkdir(parents=True)
    relabelled.save(tmp_path / "cards" / "explore" / "point-plane-goal-bottom" / "tiny-v0.toml")
    return tmp_path


def test_a_relabel_card_builds_the_task_rewards_env_and_references(catalogue):
    built = read_dataset(build_dataset("explore/point-plane-goal-bottom/tiny-v0", progress=False), validate=True)
    source = read_dataset(catalogue / "home" / "datasets" / "explore" / "point-plane" / "tiny-v0.hdf5")
    next_states = source.states_with_finals("sim_state/state")[source.next_index]
    hits = np.linalg.norm(next_states - np.array(GOALS["bottom"]), axis=1) <= 1.0
    np.testing.assert_array_equal(built.rewards, hits.astype(np.float32))
    assert hits.sum() > 0 and not source.rewards.any()  # random walks reach the bottom edge now and then
    np.testing.assert_array_equal(built.observations, source.observations)
    np.testing.assert_array_equal(built.actions, source.actions)
    np.testing.assert_array_equal(built.truncations, source.truncations)
    m = built.metadata
    assert (m.dataset_id, m.env_id) == ("explore/point-plane-goal-bottom/tiny-v0", goal_env_id("bottom"))
    assert m.reference_scores == {"random": 0.0, "expert": 43.0}
    assert m.recipe["kind"] == "relabel" and m.recipe["reward"]["goal"] == [0.0, -9.0]
    assert m.recipe["source_recipe"]["method"] == "random"
    assert built.normalized_score(np.array([43.0]))[0] == pytest.approx(100.0)


def test_a_relabel_card_in_the_wrong_env_names_the_card(catalogue):
    path = catalogue / "cards" / "explore" / "point-plane-goal-bottom" / "tiny-v0.toml"
    path.write_text(path.read_text().replace(goal_env_id("bottom"), goal_env_id("top")))
    with pytest.raises(OffbenchError, match=r"tiny-v0.toml: env_id 'offbench/point-plane-goal-top-v0' is not the env "
                                            r"of task 'point-plane-goal-bottom'"):
        build_dataset("explore/point-plane-goal-bottom/tiny-v0", progress=False)
    path.write_text(path.read_text().replace('task = "point-plane-goal-bottom"\n', ""))
    with pytest.raises(OffbenchError, match="tiny-v0.toml: relabel recipe lacks 'task'"):
        build_dataset("explore/point-plane-goal-bottom/tiny-v0", progress=False)


# ---------------------------------------------------------------- the shipped cards
def test_the_shipped_exorl_cards(monkeypatch):
    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    cards = {c.id: c for c in list_cards() if c.id.startswith("explore/point-plane-goal-")}
    tasks = sorted({c.env_name for c in cards.values()})
    assert tasks == ["point-plane-goal-bottom", "point-plane-goal-top-right"]
    for task in tasks:
        goal = task.removeprefix("point-plane-goal-")
        expert = 42.0 if goal == "top-right" else 43.0
        for name in ("diayn", "dads", "metra", "rnd", "random", "sac-replay"):
            card = cards[f"explore/{task}/{name}-v0"]
            assert card.env_id == goal_env_id(goal)
            assert card.reference_scores["expert"] == expert and card.reference_scores["random"] < 0.1
            if name == "sac-replay":  # task-specific data at the exploratory datasets' size
                assert card.recipe["kind"] == "replay" and card.recipe["upto"] == 100_000
                assert card.recipe["online"]["env_id"] == card.env_id and card.recipe["online"]["algo"] == "sac"
            else:
                assert card.recipe == {"kind": "relabel", "source": f"explore/point-plane/{name}-v0", "task": task}
            if card.size:  # built and recorded
                assert card.size["steps"] == 100_000 and len(card.content_sha256) == 64


# ---------------------------------------------------------------- end to end from the command line
def test_the_explore_smoke_protocol_end_to_end(tmp_path, monkeypatch):
    """`offbench reproduce explore --protocol smoke` from an empty home: it builds the reward-free random
    dataset, relabels it for the bottom goal, trains the four learners and reports them; every evaluation
    is scored with the card's reference returns (0.01 random, 43 expert) and the goal environment."""
    import json

    import pandas as pd

    from offbench.cli import main

    monkeypatch.setenv("OFFBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    out = tmp_path / "explore"
    assert main(["reproduce", "explore", "--protocol", "smoke", "--workers", "1", "--quiet", "--out", str(out)]) == 0
    results = pd.read_csv(out / "results.csv")
    assert sorted(set(results.algorithm)) == ["cql", "iql", "td3", "td3_bc"]
    assert set(results.dataset) == {"explore/point-plane-goal-bottom/random-v0"}
    assert set(results.env_id) == {goal_env_id("bottom")}
    for _, row in results.iterrows():
        returns = np.array(json.loads(row.returns))
        assert np.all((returns >= 0) & (returns <= 50))  # steps spent within 1 of the goal, of 50
        assert row.normalized_score == pytest.approx(100 * (returns.mean() - 0.01) / (43.0 - 0.01))
    assert (tmp_path / "home" / "datasets" / "explore" / "point-plane-goal-bottom" / "random-v0.hdf5").is_file()
    table = (out / "report" / "table.md").read_text()
    assert "| explore/point-plane-goal-bottom/random-v0 |" in table and "td3_bc" in table
    readme = (out / "report" / "README.md").read_text()
    assert "## The ExORL comparison" in readme and "No `sac-replay` dataset for this task" in readme
    report = json.loads((out / "report" / "report.json").read_text())
    assert set(report["exorl"]) == {"point-plane-goal-bottom"}
    # the manifest records the level of the file the runs trained on (the report's `data` for a rebuild)
    manifest = json.loads((out / "manifest.json").read_text())
    digest = manifest["dataset_sha256"]["explore/point-plane-goal-bottom/random-v0"]
    data = read_dataset(tmp_path / "home" / "datasets" / "explore" / "point-plane-goal-bottom" / "random-v0.hdf5")
    assert manifest["dataset_files"] == {digest: {"dataset": "explore/point-plane-goal-bottom/random-v0",
                                                  "episodes": data.num_episodes,
                                                  "return_mean": pytest.approx(float(data.episode_returns().mean()))}}


def test_the_exorl_comparison_sets_each_learner_beside_its_replay_score():
    """offbench.evaluation.exorl_report: per task and learner, the exploratory sources' scores, the replay
    score, the best source, its difference in points and how many sources beat the replay data."""
    from offbench.evaluation.exorl_report import exorl_comparison, markdown_lines, split_explore_id

    assert split_explore_id("explore/point-plane-goal-bottom/sac-replay-v0") == ("point-plane-goal-bottom", "sac-replay")
    assert split_explore_id("lite/pendulum/medium-v0") is None
    cell = lambda mean, se=1.0: {"mean": mean, "stderr": se, "n": 3}  # noqa: E731
    ids = {s: f"explore/goal-a/{s}-v0" for s in ("rnd", "metra", "sac-replay")}
    cells = {ids["rnd"]: {"td3": cell(98.0), "iql": cell(10.0)}, ids["metra"]: {"td3": cell(60.0), "iql": None},
             ids["sac-replay"]: {"td3": cell(40.0), "iql": cell(30.0)}, "lite/pendulum/medium-v0": {"td3": cell(5.0)}}
    comparison = exorl_comparison(cells, [*ids.values(), "lite/pendulum/medium-v0"], ["td3", "iql"])
    assert list(comparison) == ["goal-a"] and comparison["goal-a"]["sources"] == ["rnd", "metra"]
    td3, iql = comparison["goal-a"]["rows"]["td3"], comparison["goal-a"]["rows"]["iql"]
    assert td3["best_source"] == "rnd" and td3["best_minus_replay"] == 58.0 and td3["sources_above_replay"] == 2
    assert iql["best_source"] == "rnd" and iql["best_minus_replay"] == -20.0 and iql["sources_above_replay"] == 0
    assert iql["sources"]["metra"] is None
    text = "\n".join(markdown_lines(comparison))
    assert "| td3 | 98.0 ± 1.0 | 60.0 ± 1.0 | 40.0 ± 1.0 | rnd | +58.0 | 2 of 2 |" in text
    assert "| iql | 10.0 ± 1.0 | — | 30.0 ± 1.0 | rnd | -20.0 | 0 of 1 |" in text


def test_cells_trained_on_a_rebuild_are_marked(monkeypatch):
    """A cell whose runs trained on a file other than the card's (a local rebuild: the manifest's hash,
    per run in a combined table, is not the card's sha256) is named in the report and marked ʳ."""
    from offbench.data import catalogue
    from offbench.evaluation.exorl_report import exorl_comparison, markdown_lines
    from offbench.evaluation.report import rebuilt_cells

    ids = {s: f"explore/goal-a/{s}-v0" for s in ("rnd", "sac-replay")}
    card_sha = {ids["rnd"]: "a" * 64, ids["sac-replay"]: "b" * 64}
    monkeypatch.setattr(catalogue, "get_card", lambda d: DatasetCard(id=d, env_id="x", description="", recipe={},
                                                                  files={"sha256": card_sha[d]}))
    runs = [{"algorithm": "td3", "dataset": d, "seed": 0, "status": "finished"} for d in ids.values()]
    runs += [{"algorithm": "iql", "dataset": ids["rnd"], "seed": 0, "status": "finished", "dataset_sha256": "a" * 64},
             {"algorithm": "iql", "dataset": ids["sac-replay"], "seed": 0, "status": "finished",
              "dataset_sha256": "c" * 64},  # a rebuild, recorded per run (offbench combine)
             {"algorithm": "iql", "dataset": ids["rnd"], "seed": 1, "status": "failed", "dataset_sha256": "d" * 64}]
    manifest = {"dataset_sha256": {ids["rnd"]: "a" * 64, ids["sac-replay"]: None}, "runs": runs}
    assert rebuilt_cells(manifest) == {"iql": [ids["sac-replay"]]}  # td3's sac-replay run has no hash: unknown
    cell = {"mean": 50.0, "stderr": 1.0, "n": 1}
    comparison = exorl_comparison({d: {"td3": cell, "iql": cell} for d in ids.values()}, list(ids.values()),
                                  ["td3", "iql"], rebuilt=rebuilt_cells(manifest))
    text = "\n".join(markdown_lines(comparison))
    assert "| iql | 50.0 ± 1.0 | 50.0 ± 1.0 ʳ | rnd | +0.0 | 0 of 1 |" in text
    assert "| td3 | 50.0 ± 1.0 | 50.0 ± 1.0 | rnd |" in text and "ʳ: trained on a local rebuild" in text


def test_the_data_column_gives_the_level_of_each_build_trained_on(monkeypatch):
    """`data` is the card's level while every run trained on the card's file; where some trained on a
    rebuild it lists each build's level (the card's first, ʳ a rebuild, ? one whose level the manifest's
    ``dataset_files`` does not record), each normalised with the card's random and expert returns."""
    from offbench.data import catalogue
    from offbench.evaluation.report import _data_text, data_builds

    ids = {s: f"explore/goal-a/{s}-v0" for s in ("rnd", "metra", "sac-replay")}
    monkeypatch.setattr(catalogue, "get_card", lambda d: DatasetCard(
        id=d, env_id="x", description="", recipe={}, files={"sha256": "a" * 64}, returns={"mean": 1.0},
        reference_scores={"random": 0.0, "expert": 40.0}))
    run = lambda algo, d, digest, status="finished": {  # noqa: E731
        "algorithm": algo, "dataset": ids[d], "seed": 0, "status": status, "dataset_sha256": digest}
    manifest = {"runs": [run("td3", "rnd", "a" * 64), run("iql", "rnd", "a" * 64),
                         run("td3", "sac-replay", "a" * 64), run("iql", "sac-replay", "b" * 64),
                         run("cql", "sac-replay", "b" * 64), run("td3", "metra", "c" * 64),
                         run("iql", "metra", "d" * 64, "failed")],
                "dataset_files": {"b" * 64: {"dataset": ids["sac-replay"], "episodes": 10, "return_mean": 30.0}}}
    builds = data_builds(manifest, list(ids.values()))
    assert set(builds) == {ids["sac-replay"], ids["metra"]}  # rnd: every run on the card's file
    assert builds[ids["sac-replay"]] == [{"sha256": "a" * 64, "card": True, "level": 2.5, "algorithms": ["td3"]},
                                         {"sha256": "b" * 64, "card": False, "level": 75.0,
                                          "algorithms": ["cql", "iql"]}]
    assert builds[ids["metra"]] == [{"sha256": "c" * 64, "card": False, "level": None, "algorithms": ["td3"]}]
    view = {"behaviour": {d: 2.5 for d in ids.values()}, "behaviour_builds": builds}
    assert [_data_text(view, ids[s]) for s in ("rnd", "sac-replay", "metra")] == ["2.5", "2.5 / 75.0ʳ", "?ʳ"]
