"""Offline meta-RL datasets (offbench/data/meta_generation.py): they validate, record each step's
task, round-trip through the file, rebuild identically, and store exact behaviour log-probabilities."""
from __future__ import annotations

import numpy as np
import pytest

from offbench.data.dataset import read_dataset
from offbench.data.meta_generation import check_recipe, generate_episode, make_env, training_tasks, write_meta_dataset
from offbench.errors import OffbenchError

GRID = dict(kind="meta_tasks", family="offbench/GridNavi-v0", tasks=4, task_seed=0, episodes_per_task=3,
            behaviour="mixed", epsilon=0.1, seed=0)
POINT = dict(kind="meta_tasks", family="offbench/PointRobot-v0", tasks=3, task_seed=1, episodes_per_task=2,
             behaviour="expert", noise=0.02, seed=0)


@pytest.mark.parametrize("recipe", [GRID, POINT])
def test_datasets_validate_round_trip_and_rebuild_identically(recipe, tmp_path):
    a = read_dataset(write_meta_dataset(tmp_path / "a.hdf5", recipe, dataset_id="meta/x/y-v0"), validate=True)
    b = read_dataset(write_meta_dataset(tmp_path / "b.hdf5", recipe, dataset_id="meta/x/y-v0"), validate=True)
    assert a.content_sha256() == b.content_sha256()
    tasks = training_tasks(recipe)
    r = check_recipe(recipe, "test")
    env = make_env(r)
    starts = a.episode_starts if hasattr(a, "episode_starts") else None
    episode = generate_episode(env, tasks[1], 1, 0, r)  # the first episode of task 1, regenerated
    rows = np.flatnonzero(a.arrays["task_id"] == 1)
    first = rows[: len(episode["actions"])]
    assert np.array_equal(a.arrays["actions"][first], episode["actions"])
    assert np.array_equal(a.arrays["behaviour_log_prob"][first], episode["behaviour_log_prob"])
    # every step carries its task's parameters
    goals = np.stack([np.asarray(t["goal"], np.float64) for t in tasks])
    assert np.array_equal(a.arrays["infos/task/goal"].astype(np.float64), goals[a.arrays["task_id"]])
    assert a.num_episodes == r["tasks"] * r["episodes_per_task"]
    assert starts is None or len(starts) == a.num_episodes


def test_discrete_log_probabilities_are_the_epsilon_mixture(tmp_path):
    ds = read_dataset(write_meta_dataset(tmp_path / "g.hdf5", {**GRID, "behaviour": "expert"}, dataset_id="meta/x/y-v0"))
    logp = ds.arrays["behaviour_log_prob"]
    # an expert step's action is the expert's (prob 0.9 + 0.02) or another one (prob 0.02)
    assert set(np.round(np.exp(logp), 9)) <= {0.92, 0.02}
    random = read_dataset(write_meta_dataset(tmp_path / "r.hdf5", {**GRID, "behaviour": "random"}, dataset_id="meta/x/y-v0"))
    assert np.allclose(random.arrays["behaviour_log_prob"], -np.log(5))


def test_bad_recipes_name_the_key():
    with pytest.raises(OffbenchError, match="lacks"):
        check_recipe({"kind": "meta_tasks", "family": "offbench/GridNavi-v0"}, "card.toml")
    with pytest.raises(OffbenchError, match="behaviour 'greedy'"):
        check_recipe({**GRID, "behaviour": "greedy"}, "card.toml")
    with pytest.raises(OffbenchError, match="epsilon must be in"):
        check_recipe({**GRID, "epsilon": 0.0}, "card.toml")


def test_the_shipped_meta_cards_build_to_their_hashes(tmp_path):
    from offbench.data.catalogue import get_card, list_cards
    from offbench.data.recipes import build_dataset

    cards = [c for c in list_cards() if c.suite == "meta"]
    assert {c.id for c in cards} >= {"meta/gridnavi/expert-v0", "meta/point-robot/mixed-v0"}
    card = get_card("meta/gridnavi/random-v0")
    built = read_dataset(build_dataset(card.id, out=tmp_path / "g.hdf5", progress=False, strict=True))
    assert built.content_sha256() == card.content_sha256 and built.num_steps == card.size["steps"]
