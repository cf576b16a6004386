"""OGBench's PointMaze in offbench: the environments, the task registry, the oracle and the
dataset recipe (tiny episode counts; the real cards are built with `offbench datasets build`)."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy.stats import norm

pytest.importorskip("ogbench", reason="PointMaze needs `pip install --no-deps ogbench==1.2.2`")

import offbench.envs  # noqa: E402,F401  (registers offbench/pointmaze-*)
from offbench.data.catalogue import get_card  # noqa: E402
from offbench.data.dataset import read_dataset  # noqa: E402
from offbench.data.goal_batches import GoalBatchConfig, GoalBatchSampler  # noqa: E402
from offbench.data.goal_generation import check_recipe, clipped_gaussian_log_prob, write_pointmaze  # noqa: E402
from offbench.envs import pointmaze  # noqa: E402
from offbench.envs.tasks import get_task, task_for_dataset  # noqa: E402
from offbench.errors import OffbenchError  # noqa: E402
from offbench.rollout import rollout  # noqa: E402
from tests.conftest import kill_and_resume  # noqa: E402

GEOMETRY = {}


def geometry(maze: str) -> pointmaze.MazeGeometry:
    if maze not in GEOMETRY:
        GEOMETRY[maze] = pointmaze.MazeGeometry.of(maze)
    return GEOMETRY[maze]


def flat(obs: dict) -> np.ndarray:
    """Gymnasium's flattening of the Dict observation: achieved_goal, desired_goal, observation."""
    return np.concatenate([obs["achieved_goal"], obs["desired_goal"], obs["observation"]])


# ---------------------------------------------------------------------- the environment
def test_a_task_builds_steps_and_reports_success_as_ogbench_computes_it():
    env = gym.make("offbench/pointmaze-medium-v0")
    assert env.spec.max_episode_steps == 1000
    obs, info = env.reset(seed=0, options={"task_id": 1})
    task = env.unwrapped.task_infos[0]
    assert info["task_id"] == 1
    # Start and goal: the task's cell centres jittered by U[-1, 1] per axis.
    assert np.abs(obs["observation"] - np.array(task["init_xy"])).max() <= 1.0
    assert np.abs(obs["desired_goal"] - np.array(task["goal_xy"])).max() <= 1.0
    np.testing.assert_array_equal(obs["observation"], obs["achieved_goal"])
    np.testing.assert_allclose(obs["desired_goal"], info["goal"], rtol=0, atol=1e-5)
    policy = pointmaze.oracle_policy(geometry("medium"), noise=0.5, seed=0)
    medium = get_task("pointmaze-medium")
    for step in range(1000):
        action = policy({k: v[None] for k, v in obs.items()})[0]
        obs, reward, terminated, truncated, info = env.step(action)
        # OGBench: success = ||xy - goal|| <= 1.0 after the physics step (info["xy"]), reward 1 then.
        distance = np.linalg.norm(info["xy"] - env.unwrapped.cur_goal_xy)
        assert info["success"] == float(distance <= 1.0) == reward
        assert terminated == bool(distance <= 1.0)  # the evaluation episode ends at the goal
        assert bool(pointmaze.success(obs["achieved_goal"], obs["desired_goal"])) == terminated
        assert bool(medium.is_terminal(None, None, flat(obs))) == terminated
        if terminated or truncated:
            break
    assert terminated and step < 999


def test_the_wrapper_leaves_ogbench_dynamics_unchanged():
    ours = gym.make("offbench/pointmaze-large-v0")
    theirs = gym.make("pointmaze-large-v0")
    rng = np.random.default_rng(0)
    np.random.seed(123)  # OGBench jitters with the global generator; ours with a private one seeded alike
    ob, info = theirs.reset(seed=123, options={"task_id": 2})
    obs, _ = ours.reset(seed=123, options={"task_id": 2})
    np.testing.assert_array_equal(obs["observation"], ob.astype(np.float32))
    np.testing.assert_array_equal(obs["desired_goal"], info["goal"].astype(np.float32))
    for _ in range(200):
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        ob, r1, *_ = theirs.step(action)
        obs, r2, *_ = ours.step(action)
        np.testing.assert_array_equal(obs["observation"], ob.astype(np.float32))
        assert r1 == r2


def test_tasks_cycle_with_the_seed_and_bad_task_ids_are_refused():
    env = gym.make("offbench/pointmaze-giant-v0")
    assert [env.reset(seed=s)[1]["task_id"] for s in range(10, 20)] == [1, 2, 3, 4, 5] * 2
    assert gym.make("offbench/pointmaze-giant-v0", task_id=4).reset(seed=0)[1]["task_id"] == 4
    with pytest.raises(OffbenchError, match="task_id must be one of 1..5"):
        env.reset(seed=0, options={"task_id": 6})
    with pytest.raises(OffbenchError, match="task_id"):
        gym.make("offbench/pointmaze-giant-v0", task_id=0)


def test_episodes_are_reproducible_and_the_global_generator_is_untouched():
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    runs = []
    for _ in range(2):
        env = gym.make("offbench/pointmaze-teleport-v0")  # the maze that draws inside step()
        obs, _ = env.reset(seed=5)
        positions = [obs["observation"]]
        for _ in range(400):
            obs, *_ = env.step(np.array([1.0, -0.2], np.float32))
            positions.append(obs["observation"])
        runs.append(np.array(positions))
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_pointmaze_never_imports_dm_control():
    code = ("import sys; sys.modules['dm_control'] = None\n"  # any import of it would now fail
            "import gymnasium as gym, numpy as np, offbench.envs\n"
            "for maze in ('medium', 'large', 'giant', 'teleport'):\n"
            "    env = gym.make(f'offbench/pointmaze-{maze}-v0'); env.reset(seed=0)\n"
            "    env.step(np.zeros(2, np.float32))\n"
            "assert sys.modules['dm_control'] is None\n"
            "import mujoco; print(mujoco.__version__)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == importlib.metadata.version("mujoco")


def test_a_missing_ogbench_is_explained(monkeypatch):
    real = importlib.import_module

    def without_ogbench(name, *args, **kwargs):
        if name.startswith("ogbench"):
            raise ImportError("No module named 'ogbench'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", without_ogbench)
    with pytest.raises(OffbenchError, match=r"pip install --no-deps ogbench==1\.2\.2"):
        pointmaze.require_ogbench()


def test_registry_and_rollout_take_the_tasks_like_any_other():
    for maze in pointmaze.MAZES:
        task = task_for_dataset(f"goal/pointmaze-{maze}/navigate-v0")
        assert task is get_task(f"pointmaze-{maze}-v0") is get_task(pointmaze.env_id(maze))
        assert task.suites == ("goal",) and task.max_episode_steps == 1000
    result = rollout(pointmaze.oracle_policy(geometry("medium"), noise=0.5, seed=1), "offbench/pointmaze-medium-v0",
                     10, seed=0, parallel=5)
    assert result.success is not None and result.success.mean() >= 0.8
    np.testing.assert_array_equal(result.success, result.terminated)
    np.testing.assert_array_equal(result.returns, result.success.astype(float))  # reward 1 at the goal only


# ---------------------------------------------------------------------- the oracle
@pytest.mark.parametrize("maze", pointmaze.MAZES)
def test_the_oracle_is_ogbench_s_to_the_last_bit(maze):
    g = geometry(maze)
    env = pointmaze.make_pointmaze_env(maze)
    ogbench_env = env.unwrapped
    rng = np.random.default_rng(0)
    for _ in range(300):
        cell, goal_cell = (g.free_cells[i] for i in rng.integers(len(g.free_cells), size=2))
        xy = np.array(ogbench_env.ij_to_xy(cell)) + rng.uniform(-1.9, 1.9, 2)
        goal = np.array(ogbench_env.ij_to_xy(goal_cell)) + rng.uniform(-1, 1, 2)
        subgoal, _ = ogbench_env.get_oracle_subgoal(xy, goal)
        direction = (subgoal - xy) / (np.linalg.norm(subgoal - xy) + 1e-6)
        np.testing.assert_array_equal(g.oracle_direction(xy, goal), direction)
    batch = rng.uniform(-1, 1, (50, 2)) + np.array(ogbench_env.ij_to_xy(g.free_cells[0]))
    goals = np.repeat(np.array(ogbench_env.ij_to_xy(g.free_cells[-1]))[None], 50, 0)
    np.testing.assert_allclose(g.oracle_direction(batch, goals),
                               np.stack([g.oracle_direction(x, y) for x, y in zip(batch, goals)]), atol=1e-12)


def test_clipped_gaussian_log_prob_is_mass_at_the_bounds_and_density_inside():
    mean = np.array([[0.3, -0.9]])
    std = 0.5
    inside = clipped_gaussian_log_prob(np.array([[0.1, -0.2]]), mean, std)
    np.testing.assert_allclose(inside, norm.logpdf(0.1, 0.3, std) + norm.logpdf(-0.2, -0.9, std))
    at_bounds = clipped_gaussian_log_prob(np.array([[1.0, -1.0]]), mean, std)
    np.testing.assert_allclose(at_bounds, np.log(norm.sf(1.0, 0.3, std)) + np.log(norm.cdf(-1.0, -0.9, std)))
    # The measure integrates to one: density on (-1, 1) plus the two point masses.
    grid = np.linspace(np.nextafter(-1, 0), np.nextafter(1, 0), 200_001)  # inside the bounds
    density = np.exp(clipped_gaussian_log_prob(np.stack([grid, np.zeros_like(grid)], 1), np.array([[0.3, 0.0]]), std)
                     - norm.logpdf(0.0, 0.0, std))
    total = np.trapezoid(density, grid) + norm.sf(1.0, 0.3, std) + norm.cdf(-1.0, 0.3, std)
    assert abs(total - 1.0) < 1e-6


# ---------------------------------------------------------------------- the recipe
RECIPE = dict(kind="ogbench_pointmaze", maze="medium", dataset_type="navigate", episodes=3, first_episode=0,
              max_episode_steps=150, noise=0.5, seed=0, ogbench_version="1.2.2")


@pytest.fixture(scope="module")
def navigate(tmp_path_factory):
    path = tmp_path_factory.mktemp("nav") / "nav.hdf5"
    return read_dataset(write_pointmaze(path, RECIPE, dataset_id="goal/pointmaze-medium/navigate-v0",
                                        reference_scores={"random": 0.0, "expert": 1.0}))


def test_generated_episodes_follow_ogbench_s_recipe(navigate):
    ds = navigate
    assert ds.num_episodes == 3 and ds.num_steps == 3 * 150
    assert ds.metadata.env_id == "offbench/pointmaze-medium-v0"
    assert not ds.terminations.any() and ds.truncations.sum() == 3  # truncated at the time limit only
    g = geometry("medium")
    for e in range(3):
        ep = ds.episode(e)
        obs = ep.observations
        assert len(obs["observation"]) == 151  # T + 1 observations
        np.testing.assert_array_equal(obs["observation"], obs["achieved_goal"])
        np.testing.assert_array_equal(obs["observation"], ep.sim_state["qpos"].astype(np.float32))
        success = ep.extras["infos/success"]
        np.testing.assert_array_equal(ep.rewards, success.astype(np.float32))
        reached = np.linalg.norm(ep.sim_state["qpos"][1:] - obs["desired_goal"][:-1], axis=1) <= 1.0 + 1e-5
        np.testing.assert_array_equal(success, reached)
        # navigate: the goal changes exactly after the steps that reach it, to a vertex cell.
        changed = (obs["desired_goal"][1:] != obs["desired_goal"][:-1]).any(axis=1)
        np.testing.assert_array_equal(changed, success)
        cells = {tuple(c) for c in g.cell_of(obs["desired_goal"])}
        assert cells <= set(g.vertex_cells)
        # The stored log-probability is the clipped Gaussian's, recomputable from the stored data.
        mean = np.stack([g.oracle_direction(x, y) for x, y in zip(ep.sim_state["qpos"][:-1], obs["desired_goal"][:-1])])
        np.testing.assert_allclose(ep.extras["behaviour_log_prob"], clipped_gaussian_log_prob(ep.actions, mean, 0.5),
                                   rtol=0, atol=1e-9)
    assert ds.arrays["infos/success"].any()
    clipped = np.abs(ds.actions) == 1.0
    assert clipped.any() and (~clipped).any()
    assert ds.validate() is None


def test_stitch_goals_are_four_cells_away_and_fixed(tmp_path):
    recipe = {**RECIPE, "dataset_type": "stitch", "episodes": 4, "max_episode_steps": 30}
    ds = read_dataset(write_pointmaze(tmp_path / "s.hdf5", recipe, dataset_id="goal/pointmaze-medium/stitch-v0"))
    g = geometry("medium")
    for ep in ds.episodes():
        goals = ep.observations["desired_goal"]
        assert (goals == goals[0]).all()
        start, goal = (tuple(c) for c in g.cell_of(np.stack([ep.sim_state["qpos"][0], goals[0]])))
        assert g.distance[goal][start] == 4


def test_episodes_depend_on_their_index_only(navigate, tmp_path):
    one = {**RECIPE, "episodes": 1, "first_episode": 2}
    ds = read_dataset(write_pointmaze(tmp_path / "one.hdf5", one, dataset_id="goal/pointmaze-medium/navigate-val-v0"))
    ep, ref = ds.episode(0), navigate.episode(2)
    for key in ("observation", "desired_goal"):
        np.testing.assert_array_equal(ep.observations[key], ref.observations[key])
    np.testing.assert_array_equal(ep.actions, ref.actions)
    again = read_dataset(write_pointmaze(tmp_path / "again.hdf5", RECIPE,
                                         dataset_id="goal/pointmaze-medium/navigate-v0"))
    assert again.content_sha256() == navigate.content_sha256()


def test_bad_recipes_are_refused():
    with pytest.raises(OffbenchError, match="lacks"):
        check_recipe({"maze": "medium"}, "card")
    with pytest.raises(OffbenchError, match="maze"):
        check_recipe({**RECIPE, "maze": "tiny"}, "card")
    with pytest.raises(OffbenchError, match="noise must be > 0"):
        check_recipe({**RECIPE, "noise": 0}, "card")
    with pytest.raises(OffbenchError, match="ogbench 9.9"):
        write_pointmaze("/nonexistent/x.hdf5", {**RECIPE, "ogbench_version": "9.9"}, dataset_id="goal/x/y-v0")


def test_the_shipped_cards_describe_ogbench_s_datasets():
    for maze in pointmaze.MAZES:
        sizes = {"navigate": (500, 2001) if maze == "giant" else (1000, 1001), "stitch": (5000, 201)}
        for kind, (episodes, steps) in sizes.items():
            train = get_card(f"goal/pointmaze-{maze}/{kind}-v0")
            val = get_card(f"goal/pointmaze-{maze}/{kind}-val-v0")
            for card in (train, val):
                r = check_recipe(card.recipe, card.id)
                assert (r["maze"], r["dataset_type"], r["max_episode_steps"], r["noise"]) == (maze, kind, steps, 0.5)
                assert card.env_id == pointmaze.env_id(maze)
                assert card.reference_scores["random"] == 0.0 and card.reference_scores["expert"] == 1.0
            assert (train.recipe["first_episode"], train.recipe["episodes"]) == (0, episodes)
            assert (val.recipe["first_episode"], val.recipe["episodes"]) == (episodes, episodes // 10)


# ---------------------------------------------------------------------- training on the suite
class TinyGCBC(torch.nn.Module):
    """The smallest goal-conditioned learner: a linear policy a = tanh(W [s, g]) fitted to the
    data's actions with actor goals from GoalBatchSampler (OGBench's GCBC mix)."""

    summary = "test-only linear goal-conditioned behaviour cloning"

    @dataclass
    class Config:
        lr: float = 1e-2

    config_class = Config

    def __init__(self, observation_space, action_space, config, *, seed=0):
        super().__init__()
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)
        self.net = torch.nn.Linear(4, 2)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)

    def prepare(self, dataset):
        return dataset

    def make_sampler(self, dataset, batch_size, seed):
        return GoalBatchSampler(dataset, GoalBatchConfig.ogbench("gcbc"), batch_size, seed=seed, chunk_batches=3)

    def update(self, batch):
        predicted = torch.tanh(self.net(torch.cat([batch.observations, batch.actor_goals], 1)))
        loss = ((predicted - batch.actions) ** 2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}

    @torch.no_grad()
    def act(self, observations):
        x = torch.as_tensor(np.concatenate([observations["observation"], observations["desired_goal"]], 1))
        return torch.tanh(self.net(x)).numpy()

    def optimizers(self):
        return {"actor": self.optimizer}


def test_train_takes_a_pointmaze_dataset_and_resumes_exactly(navigate, tmp_path):
    from offbench.train import TrainConfig

    config = TrainConfig(steps=12, batch_size=32, eval_every=6, eval_episodes=2, final_eval_episodes=2,
                         checkpoint_every=4, log_every=6)
    # Killed at step 10, resumed from step 8: the middle of the sampler's third chunk of 3 batches.
    kill_and_resume("tests.test_pointmaze:TinyGCBC", navigate, {}, config, tmp_path, kill_at=10, checkpoint_at=8)
    rows = [json.loads(r) for r in (tmp_path / "a" / "evaluations.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [6, 12]
    for row in rows:  # scored on offbench/pointmaze-medium-v0: success is the return, 0..1, score 0..100
        assert "success_rate" in row and set(row["returns"]) <= {0.0, 1.0}
        assert row["normalized_score"] == 100 * row["success_rate"]


# ---------------------------------------------------------------------- the reward-free maze of the skills suite
def test_the_reward_free_maze_for_skill_discovery():
    """``skills/pointmaze-medium-v0``: the observation is the position alone, the reward 0, nothing terminates
    (not even at OGBench's goal), episodes are truncated after ``episode_length`` steps and start in task 1's
    start cell; a step moves at most 0.2 per axis, as OGBench's point does."""
    from offbench.envs.skill_environments import get_skill_environment

    env = get_skill_environment("skills/pointmaze-medium-v0").make()
    assert env.observation_space.shape == (2,) and env.action_space.shape == (2,)
    for seed in range(3):
        obs, _ = env.reset(seed=seed)
        assert np.all(np.abs(obs) <= 1.0)  # task 1 starts at the centre (0, 0) of cell (1, 1), jittered by U[-1, 1]
    steps, rewards, previous = 0, [], obs
    while True:
        obs, reward, terminated, truncated, _ = env.step(np.array([1.0, 0.0], np.float32))
        assert not terminated and np.all(np.abs(obs - previous) <= 0.2 + 1e-5)
        previous, steps = obs, steps + 1
        rewards.append(reward)
        if truncated:
            break
    assert steps == 200 and set(rewards) == {0.0}
    np.testing.assert_allclose(env.get_wrapper_attr("state"), obs, atol=1e-6)
    short = gym.make("offbench/PointMazeRewardFree-v0", maze="medium", episode_length=3)
    short.reset(seed=0)
    assert [short.step(np.zeros(2, np.float32))[3] for _ in range(3)] == [False, False, True]
    with pytest.raises(OffbenchError, match="episode_length must be >= 1"):
        gym.make("offbench/PointMazeRewardFree-v0", episode_length=0)


def test_maze_walls_are_the_maps_wall_cells():
    """``maze_walls`` turns OGBench's map into 4 x 4 rectangles at the wall cells' centres: as many as the
    map's ones, none covering a free cell's centre, every free centre inside the walls' bounding box; the
    skills suite's maze hands them to its figures, the plane has none."""
    from offbench.envs.skill_environments import get_skill_environment

    walls = pointmaze.maze_walls("medium")
    maze_map = geometry("medium").maze_map
    assert len(walls) == int(maze_map.sum()) and {w[2:] for w in walls} == {(4.0, 4.0)}
    free = pointmaze.MazeGeometry.centre(np.argwhere(maze_map == 0))

    def inside(x, y):
        return any(x0 < x < x0 + w and y0 < y < y0 + h for x0, y0, w, h in walls)

    assert not any(inside(x, y) for x, y in free)
    assert all(inside(x, y) for x, y in pointmaze.MazeGeometry.centre(np.argwhere(maze_map == 1)))
    assert min(w[0] for w in walls) < free[:, 0].min() and max(w[1] + 4 for w in walls) > free[:, 1].max()
    assert get_skill_environment("skills/pointmaze-medium-v0").walls() == walls
    assert get_skill_environment("skills/point-plane-v0").walls() == []
