"""Reward-free exploratory datasets (offbench/data/explore_generation.py, recipe kind ``explore``) and the
point-plane goal tasks they are relabelled for: tiny recipes build, validate and rebuild bit for bit;
every step stores the skill its episode played, the exact behaviour log-density (checked against the
squashed Gaussian's and the box's density by hand) and the float64 state; relabelled rewards are the
goal's reward on the stored next states and what the goal environment pays; bad recipes name the card
and the field; the shipped cards are well formed and (slow) rebuild to their hashes."""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import offbench.envs  # noqa: F401 - registers the point plane and its goal variants
from offbench.data.dataset import Dataset, read_dataset
from offbench.data.explore_generation import (ExploreRecipe, build_from_card, collection_seeds, trained_behaviour,
                                              write_explore_dataset)
from offbench.data.relabel import RelabelError, relabel_for_task, relabel_task
from offbench.data.writer import DatasetWriter
from offbench.envs.point_plane import GOALS, GoalReward, goal_env_id
from offbench.envs.tasks import get_task, task_for_dataset
from offbench.errors import OffbenchError

SMALL = {"hidden": [16], "batch_size": 16, "warmup_steps": 60, "buffer_size": 1000}
METHODS = ("diayn", "dads", "metra", "rnd", "random")


def tiny(method: str, **overrides) -> dict:
    """3 training episodes (random: none), then 330 steps: six 50-step episodes and one cut at 30."""
    config = {**SMALL, **{"dads": {"alternatives": 4}, "diayn": {"skills": 3}}.get(method, {})}
    recipe = {"kind": "explore", "env_id": "offbench/PointPlane-v0", "method": method,
              "episodes": 0 if method == "random" else 3, "run": f"tiny-{method}", "steps": 330, "seed": 5,
              "config": config}
    return {**recipe, **overrides}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFBENCH_HOME", str(tmp_path / "home"))
    return tmp_path


def build(recipe: dict, path) -> object:
    return read_dataset(write_explore_dataset(path, recipe, dataset_id="explore/point-plane/tiny-v0"), validate=True)


# ---------------------------------------------------------------- building
@pytest.mark.parametrize("method", METHODS)
def test_tiny_recipe_builds_validates_and_rebuilds_bit_identically(method, home):
    first = build(tiny(method), home / "a.hdf5")
    assert (first.num_steps, first.num_episodes) == (330, 7)
    np.testing.assert_array_equal(first.episode_lengths, [50] * 6 + [30])
    assert not first.rewards.any() and first.rewards.dtype == np.float32  # reward-free
    assert not first.terminations.any()  # the plane never terminates; the time limit and the budget truncate
    ends = first.episode_starts + first.episode_lengths - 1
    np.testing.assert_array_equal(np.flatnonzero(first.truncations), ends)
    # the simulator state is the float64 position; the observation its float32 rounding
    state = first.arrays["sim_state/state"]
    assert state.dtype == np.float64 and np.array_equal(state.astype(np.float32), first.observations)
    assert np.array_equal(first.arrays["episodes/final/sim_state/state"].astype(np.float32),
                          first.arrays["episodes/final/observations"])
    assert np.isfinite(first.arrays["behaviour_log_prob"]).all()
    assert first.metadata.reference_scores is None and first.metadata.behaviour_policies[0]["training_episodes"] == (
        0 if method == "random" else 3)
    # the second build loads the finished run from its folder instead of training again: same bytes
    second = build(tiny(method), home / "b.hdf5")
    assert second.content_sha256() == first.content_sha256()
    assert (home / "a.hdf5").read_bytes() == (home / "b.hdf5").read_bytes()
    other = build(tiny(method, seed=6, run=f"tiny-{method}-6"), home / "c.hdf5")
    assert not np.array_equal(other.actions, first.actions)  # the seed matters


def test_training_resumes_into_the_same_dataset(home):
    """A build whose training was stopped after 1 of 3 episodes resumes it and writes the same data."""
    straight = build(tiny("metra"), home / "a.hdf5")
    recipe = tiny("metra", run="tiny-metra-killed")
    short = ExploreRecipe.parse({**recipe, "episodes": 1}, "test")
    trained_behaviour(short, "test")  # a run folder holding 1 episode, as a build killed early leaves it
    assert build(recipe, home / "b.hdf5").content_sha256() == straight.content_sha256()


@pytest.mark.parametrize("method", ["diayn", "dads", "metra"])
def test_each_step_stores_the_skill_its_episode_played(method, home):
    recipe = tiny(method)
    ds = build(recipe, home / "a.hdf5")
    skills = ds.arrays["infos/skill"]
    trainer = trained_behaviour(ExploreRecipe.parse(recipe, "test"), "test")
    space = trainer.skill_space
    # one skill per episode, drawn in order from the collection's skill stream
    action_seed, skill_seed, reset_seed = collection_seeds(recipe["seed"])
    rng = np.random.default_rng(skill_seed)
    drawn = [space.sample(rng) for _ in range(ds.num_episodes)]
    for e, z in enumerate(drawn):
        rows = slice(ds.episode_starts[e], ds.episode_starts[e] + ds.episode_lengths[e])
        np.testing.assert_array_equal(skills[rows], np.broadcast_to(np.asarray(z, skills.dtype), skills[rows].shape))
    if method == "diayn":
        assert skills.dtype == np.int64 and set(np.unique(skills)) <= {0, 1, 2}
    else:
        assert skills.dtype == np.float32 and skills.shape == (330, 2)
        norms = np.linalg.norm(skills, axis=1)
        assert np.allclose(norms, 1, atol=1e-6) if method == "metra" else np.abs(skills).max() <= 1
    # replaying the stored skill under the collection's action noise gives the stored actions exactly;
    # another skill does not
    with trainer.rollout_streams(action_seed):
        replay = [trainer.play_episode(skills[ds.episode_starts[e]], reset_seed + e)["actions"] for e in range(2)]
    np.testing.assert_array_equal(np.concatenate(replay), ds.actions[:100])
    wrong = (skills[0] + 1) % 3 if method == "diayn" else -skills[0]
    with trainer.rollout_streams(action_seed):
        assert not np.array_equal(trainer.play_episode(wrong, reset_seed)["actions"], ds.actions[:50])


@pytest.mark.parametrize("method", ["diayn", "dads", "metra", "rnd"])
def test_behaviour_log_probs_are_the_squashed_gaussian_density(method, home):
    """log pi(a | s, z) = sum_i [log N(u_i; mu_i, sigma_i) - log(1 - tanh(u_i)^2)], u = atanh(a) (SAC's
    change of variables; the box is [-1, 1], scale 1), recomputed in float64 from the actor's mean and
    log-std for rows whose actions are not saturated."""
    recipe = tiny(method)
    ds = build(recipe, home / "a.hdf5")
    trainer = trained_behaviour(ExploreRecipe.parse(recipe, "test"), "test")
    skills = ds.arrays["infos/skill"] if "infos/skill" in ds.arrays else np.zeros((ds.num_steps, 0), np.float32)
    rows = [r for r in (0, 1, 17, 49, 50, 123, 301) if np.abs(ds.actions[r]).max() < 0.99]
    assert len(rows) >= 4
    with torch.no_grad():
        mean, log_std = trainer.sac.actor.distribution(torch.as_tensor(trainer.augment(ds.observations[rows],
                                                                                           skills[rows])))
    mean, std = mean.double().numpy(), log_std.double().exp().numpy()
    a = ds.actions[rows].astype(np.float64)
    u = np.arctanh(a)
    by_hand = (-0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi) - np.log(1 - a ** 2)).sum(1)
    np.testing.assert_allclose(ds.arrays["behaviour_log_prob"][rows], by_hand, atol=2e-3)


def test_uniform_log_probs_are_the_box_density(home):
    ds = build(tiny("random"), home / "a.hdf5")
    np.testing.assert_array_equal(ds.arrays["behaviour_log_prob"], np.full(330, -math.log(4.0)))  # 1 / (2 x 2)
    assert "infos/skill" not in ds.arrays and np.abs(ds.actions).max() <= 1
    # uniform on the box: means near 0, standard deviations near 1/sqrt(3)
    assert np.abs(ds.actions.mean(0)).max() < 0.1 and np.abs(ds.actions.std(0) - 1 / math.sqrt(3)).max() < 0.05


# ---------------------------------------------------------------- relabelling for the goal tasks
def test_goal_tasks_are_registered_with_their_rewards():
    assert len(GOALS) == 8 and GOALS["top-right"] == (9.0, 9.0) and GOALS["left"] == (-9.0, 0.0)
    for name, goal in GOALS.items():
        task = get_task(f"point-plane-goal-{name}")
        assert task.env_id == goal_env_id(name) and get_task(task.env_id) is task
        assert task.relabel_reward == GoalReward(goal, 1.0)
        assert task.reward_bounds == (0.0, 1.0) and task.return_bounds() == (0.0, 50.0)
        assert "explore" in task.suites
    base = task_for_dataset("explore/point-plane/metra-v0")
    assert base.name == "point-plane" and base.return_bounds() == (0.0, 0.0) and base.relabel_reward is None


def test_relabelled_rewards_are_the_goal_reward_of_the_stored_next_states(home):
    ds = build(tiny("random", steps=600), home / "a.hdf5")
    reward = GoalReward((2.0, 1.0), 1.0)
    relabelled = relabel_task(ds, reward, task_id=3)
    # by hand on a few rows: the next state is the following row inside an episode, the final state at its end
    states, finals = ds.arrays["sim_state/state"], ds.arrays["episodes/final/sim_state/state"]
    end0 = ds.episode_lengths[0] - 1
    for row, next_state in ((0, states[1]), (7, states[8]), (end0, finals[0]), (ds.num_steps - 1, finals[-1])):
        expected = 1.0 if math.dist(next_state, (2.0, 1.0)) <= 1.0 else 0.0
        assert relabelled.rewards[row] == expected, row
    # and on every row
    next_states = ds.states_with_finals("sim_state/state")[ds.next_index]
    hits = np.linalg.norm(next_states - np.array([2.0, 1.0]), axis=1) <= 1.0
    np.testing.assert_array_equal(relabelled.rewards, hits.astype(np.float32))
    assert 0 < hits.sum() < ds.num_steps  # random walks from the origin pass near (2, 1), not always
    assert relabelled.arrays["task_id"].tolist() == [3] * ds.num_steps
    np.testing.assert_array_equal(relabelled.terminations, ds.terminations)  # the goal tasks never terminate
    saved = read_dataset(relabelled.save(home / "relabelled.hdf5"), validate=True)
    np.testing.assert_array_equal(saved.rewards, relabelled.rewards)


def test_relabel_for_task_pays_what_the_goal_environment_pays(tmp_path):
    """An episode steered at (9, 9) along the diagonal: at (9, 9) after step 9 the top-right goal pays 1;
    at (8, 8) and (10, 10) (the corner, where clipping holds it) it is 1.41 away and pays 0."""
    env = gym.make("offbench/PointPlane-v0")
    obs, _ = env.reset(seed=0)
    observations, states = [obs], [env.unwrapped.state]
    actions = np.ones((50, 2), np.float32)
    for a in actions:
        obs, *_ = env.step(a)
        observations.append(obs)
        states.append(env.unwrapped.state)
    with DatasetWriter(tmp_path / "d.hdf5", dataset_id="explore/point-plane/diagonal-v0",
                       env_id="offbench/PointPlane-v0", observation_space=env.observation_space,
                       action_space=env.action_space) as writer:
        writer.add_episode(observations=np.stack(observations), actions=actions, rewards=np.zeros(50, np.float32),
                           terminations=np.zeros(50, bool), truncations=np.arange(50) == 49,
                           sim_state={"state": np.stack(states)})
    ds = read_dataset(tmp_path / "d.hdf5")
    relabelled = relabel_for_task(ds, "point-plane-goal-top-right", task_id=1)
    assert relabelled.rewards.tolist() == [0.0] * 8 + [1.0] + [0.0] * 41
    assert relabelled.metadata.dataset_id == "explore/point-plane/diagonal-v0+point-plane-goal-top-right"
    assert relabelled.metadata.recipe["reward"]["goal"] == [9.0, 9.0]
    for name in GOALS:  # every goal: the relabelled rewards are the goal environment's own, step by step
        goal_env = gym.make(goal_env_id(name))
        goal_env.reset(seed=0)
        paid = [goal_env.step(a)[1] for a in actions]
        np.testing.assert_array_equal(relabel_for_task(ds, f"point-plane-goal-{name}").rewards, paid)
    assert relabel_for_task(ds, "point-plane-goal-bottom-left").rewards.sum() == 0


def test_relabelling_needs_a_task_reward_and_the_stored_state(home):
    ds = build(tiny("random", steps=60), home / "a.hdf5")
    with pytest.raises(RelabelError, match="'hopper' has no reward .* tasks that have one: halfcheetah-jump, .*point-plane-goal-bottom"):
        relabel_for_task(ds, "hopper")
    stateless = Dataset({k: v for k, v in ds.arrays.items() if "sim_state" not in k}, ds.metadata)
    with pytest.raises(RelabelError, match="needs sim_state/state"):
        relabel_for_task(stateless, "point-plane-goal-top")


# ---------------------------------------------------------------- bad recipes
@pytest.mark.parametrize("change,match", [
    ({"steps": None}, r"card.toml: explore recipe lacks \['steps'\]"),
    ({"stpes": 10}, r"card.toml: explore recipe has unknown fields \['stpes'\]"),
    ({"method": "diyan"}, r"card.toml: recipe.method 'diyan' is not one of \['dads', 'diayn'"),
    ({"steps": 0}, r"card.toml: recipe.steps must be an integer >= 1, got 0"),
    ({"episodes": -1}, r"card.toml: recipe.episodes must be an integer >= 0, got -1"),
    ({"seed": 1.5}, r"card.toml: recipe.seed must be an integer >= 0, got 1.5"),
    ({"run": None}, r"card.toml: recipe.run is needed to train 3 episodes"),
    ({"run": "../elsewhere"}, r"card.toml: recipe.run must be a plain folder name .* got '../elsewhere'"),
    ({"config": {"alternative": 4}}, r"card.toml: recipe.config has settings \['alternative'\] that DADSConfig"),
    ({"config": {"lr": -1.0}}, r"card.toml: recipe.config \(dads\): lr must be > 0, got -1.0"),
    ({"config": {"alternatives": 0}}, r"card.toml: recipe.config \(dads\): alternatives must be >= 1, got 0"),
    ({"config": [1]}, r"card.toml: recipe.config must be a table, got \[1\]"),
    ({"kind": "rollout"}, r"card.toml: recipe.kind is 'rollout', not 'explore'"),
])
def test_bad_recipes_name_the_card_and_the_field(change, match):
    recipe = {k: v for k, v in {**tiny("dads"), **change}.items() if v is not None}
    with pytest.raises(OffbenchError, match=match):
        ExploreRecipe.parse(recipe, "card.toml")


def test_a_run_folder_with_a_longer_run_is_refused(home):
    trained_behaviour(ExploreRecipe.parse(tiny("metra", episodes=4), "test"), "test")
    with pytest.raises(OffbenchError, match="holds 4 training episodes, not the recipe's 3; give recipe.run another"):
        build(tiny("metra"), home / "a.hdf5")


def test_cards_must_match_their_recipe(home):
    from offbench.data.catalogue import DatasetCard

    card = DatasetCard(id="explore/point-plane/tiny-v0", env_id="offbench/PointRobot-v0", description="",
                       recipe=tiny("random"), path=home / "tiny-v0.toml")
    with pytest.raises(OffbenchError, match="tiny-v0.toml: env_id 'offbench/PointRobot-v0' must be the recipe's"):
        build_from_card(card, home / "x.hdf5", False)
    card.env_id, card.reference_scores = "offbench/PointPlane-v0", {"random": 0.0, "expert": 1.0}
    with pytest.raises(OffbenchError, match="tiny-v0.toml: reward-free data has no reference scores"):
        build_from_card(card, home / "x.hdf5", False)
    assert not (home / "x.hdf5").exists()


# ---------------------------------------------------------------- the shipped cards
def shipped_cards(monkeypatch):
    from offbench.data.catalogue import list_cards

    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    return {c.id: c for c in list_cards() if c.id.startswith("explore/point-plane/")}  # the reward-free ones


def test_the_shipped_cards_are_well_formed(monkeypatch):
    cards = shipped_cards(monkeypatch)
    assert sorted(cards) == [f"explore/point-plane/{m}-v0" for m in sorted(METHODS)]
    for card in cards.values():
        recipe = ExploreRecipe.parse(card.recipe, str(card.path))
        assert card.id == f"explore/point-plane/{recipe.method}-v0" and card.env_id == recipe.env_id
        assert recipe.steps == card.size["steps"] == 100_000 and card.size["episodes"] == 2_000
        assert (recipe.episodes == 0) == (recipe.method == "random") and recipe.seed == 0
        assert recipe.run in (None, f"explore-point-plane-{recipe.method}-s0")
        assert not card.reference_scores and card.returns == {"mean": 0.0, "std": 0.0, "min": 0.0, "max": 0.0}
        assert len(card.sha256) == 64 and len(card.content_sha256) == 64
        assert task_for_dataset(card.id).name == "point-plane"
        assert "No reference scores" in card.description and "100,000 steps in 2,000 episodes" in card.description
        assert recipe.method == "random" or f"trained for {recipe.episodes} episodes" in card.description


@pytest.mark.slow
@pytest.mark.parametrize("method", ["random", "metra"])
def test_a_shipped_card_rebuilds_to_its_hash(method, monkeypatch, tmp_path):
    """From an empty home: METRA trains its 150 episodes again (about a minute of CPU) and collects 100,000
    steps; the content must be the card's bit for bit on this machine (``strict``)."""
    from offbench.data.recipes import build_dataset

    card = shipped_cards(monkeypatch)[f"explore/point-plane/{method}-v0"]
    monkeypatch.setenv("OFFBENCH_HOME", str(tmp_path))
    torch.set_num_threads(1)
    built = read_dataset(build_dataset(card.id, out=tmp_path / "d.hdf5", progress=False, strict=True))
    assert built.content_sha256() == card.content_sha256 and built.num_steps == card.size["steps"]


def test_the_maze_and_cheetah_cards_train_with_their_skills_protocols_settings(monkeypatch):
    """explore/{pointmaze-medium,halfcheetah}-reward-free/*: each method trained for its skills protocol's
    budget with that protocol's settings (so the data's agent is the table's seed 0), 100,000 steps; the maze's
    goal relabellings carry references with random below the scripted expert."""
    from offbench.data.catalogue import list_cards
    from offbench.protocol import load_protocol

    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    cards = {c.id: c for c in list_cards()}
    for folder, protocol in (("pointmaze-medium-reward-free", "skills-maze"), ("halfcheetah-reward-free", "skills-cheetah")):
        p = load_protocol(protocol)
        for method in METHODS:
            card = cards[f"explore/{folder}/{method}-v0"]
            recipe = ExploreRecipe.parse(card.recipe, card.id)
            assert recipe.episodes == (0 if method == "random" else p.train["steps"]) and recipe.steps == 100_000
            assert dict(recipe.config) == dict(p.settings(method)), card.id
            assert card.env_id == recipe.env_id and not card.reference_scores
    for goal in ("near", "far"):
        for method in METHODS:
            card = cards[f"explore/pointmaze-medium-goal-{goal}/{method}-v0"]
            assert card.recipe == {"kind": "relabel", "source": f"explore/pointmaze-medium-reward-free/{method}-v0",
                                   "task": f"pointmaze-medium-goal-{goal}"}
            assert card.reference_scores["random"] < card.reference_scores["expert"]
