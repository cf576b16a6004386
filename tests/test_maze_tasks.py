"""PointMaze-medium's goal tasks for reward-free data (offbench/envs/maze_tasks.py): the reward against
hand-computed values; the goals are OGBench's evaluation goals that a 200-step episode reaches; the
scripted expert reaches them and random actions do not; reward-free maze data relabel to what each goal
environment pays on the same resets and actions, step by step."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("ogbench", reason="PointMaze needs `pip install --no-deps ogbench==1.2.2`")

import offbench.envs  # noqa: E402,F401 - registers the environments
from offbench.behaviour import make_policy  # noqa: E402
from offbench.data.dataset import read_dataset  # noqa: E402
from offbench.data.explore_generation import collection_seeds, write_explore_dataset  # noqa: E402
from offbench.data.relabel import relabel_for_task, relabel_task  # noqa: E402
from offbench.envs import maze_tasks, pointmaze  # noqa: E402
from offbench.envs.tasks import get_task, task_for_dataset  # noqa: E402
from offbench.errors import OffbenchError  # noqa: E402


def test_the_goal_reward_by_hand():
    reward = maze_tasks.GOALS["near"]
    assert reward.goal == (4.0, 12.0) and maze_tasks.GOALS["far"].goal == (0.0, 20.0)
    positions = np.array([[4.0, 12.0], [4.0, 13.0], [4.75, 12.0], [4.0, 13.25], [0.0, 0.0]])  # 0, 1, 0.75, 1.25, 12.6
    np.testing.assert_array_equal(reward.rewards(positions), [1.0, 1.0, 1.0, 0.0, 0.0])
    assert reward.spec()["kind"] == "pointmaze_goal" and reward.spec()["radius"] == 1.0


def test_the_goals_are_ogbench_evaluation_goals_within_reach():
    env = pointmaze.make_pointmaze_env("medium")
    tasks = env.unwrapped.task_infos
    geometry = pointmaze.MazeGeometry(env.unwrapped.maze_map)
    assert tuple(tasks[0]["init_ij"]) == maze_tasks.START_CELL
    assert tuple(tasks[2]["goal_ij"]) == maze_tasks.GOAL_CELLS["near"]
    assert tuple(tasks[3]["goal_ij"]) == maze_tasks.GOAL_CELLS["far"]
    distances = geometry.distance[maze_tasks.START_CELL]
    assert [distances[c] for c in maze_tasks.GOAL_CELLS.values()] == [4, 7]  # cells along the corridors


@pytest.mark.parametrize("goal, first_step", [("near", (40, 80)), ("far", (80, 120))])
def test_the_expert_reaches_each_goal_and_stays_random_actions_do_not(goal, first_step):
    env = gym.make(maze_tasks.env_id(goal))
    expert = make_policy("maze_goal", env)
    obs, _ = env.reset(seed=0)
    rewards = []
    for _ in range(300):
        obs, r, terminated, truncated, _ = env.step(expert.act(obs)[0])
        rewards.append(r)
        assert not terminated
        if truncated:
            break
    assert len(rewards) == 200
    first = rewards.index(1.0) + 1
    assert first_step[0] <= first <= first_step[1] and all(rewards[first - 1:])  # then stays on the goal
    random = make_policy("uniform_random", env)
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    assert sum(env.step(random.act(obs, rng)[0])[1] for _ in range(200)) == 0.0
    with pytest.raises(OffbenchError, match="maze_goal needs a maze goal task"):
        make_policy("maze_goal", gym.make("offbench/PointPlane-v0"))
    with pytest.raises(OffbenchError, match="unknown PointMaze-medium goal 'middle'"):
        gym.make("offbench/pointmaze-medium-goal-near-v0", goal="middle")


def test_relabelled_reward_free_maze_data_pay_what_each_goal_environment_pays(tmp_path, monkeypatch):
    """The scripted expert would be too easy: uniform random actions from the start never reach a goal. So
    the data are collected by random actions and the goal is moved next to the start (a reward with the same
    code), and the real goals are checked to pay 0 on them; both relabel exactly as the environment pays."""
    monkeypatch.setenv("OFFBENCH_HOME", str(tmp_path / "home"))
    recipe = {"kind": "explore", "env_id": "offbench/PointMazeRewardFree-v0", "method": "random", "episodes": 0,
              "steps": 260, "seed": 2, "env_kwargs": {"maze": "medium", "episode_length": 200}}
    ds = read_dataset(write_explore_dataset(tmp_path / "d.hdf5", recipe,
                                            dataset_id="explore/pointmaze-medium-reward-free/tiny-v0"), validate=True)
    np.testing.assert_array_equal(ds.episode_lengths, [200, 60])
    assert task_for_dataset("explore/pointmaze-medium-reward-free/random-v0").name == "pointmaze-medium-reward-free"
    _, _, resets = collection_seeds(2)
    near_start = maze_tasks.MazeGoalReward((0.5, 0.5))
    for name, reward in (("near", maze_tasks.GOALS["near"]), ("far", maze_tasks.GOALS["far"]), ("start", near_start)):
        relabelled = relabel_task(ds, reward, task_id=0) if name == "start" else relabel_for_task(ds, f"pointmaze-medium-goal-{name}")
        env = maze_tasks.MazeGoalEnv(pointmaze.make_reward_free_pointmaze("medium", 200), reward)
        paid = []
        for k, (start, length) in enumerate(zip(ds.episode_starts, ds.episode_lengths)):
            env.reset(seed=resets + k)
            paid += [env.step(a)[1] for a in ds.actions[start:start + length]]
        np.testing.assert_array_equal(relabelled.rewards, np.asarray(paid, np.float32))
        assert (relabelled.rewards.sum() > 0) == (name == "start"), name
    assert get_task("pointmaze-medium-goal-far").env_id == maze_tasks.env_id("far")
