"""HalfCheetah without reward and its downstream tasks (offbench/envs/cheetah_tasks.py): each reward
against a hand-computed value; run-forward pays exactly Gymnasium's HalfCheetah-v5 reward; exploratory
data collected reward-free relabel to what each task's environment pays on the same actions, step by
step; the tasks are registered for relabelling and the data validate."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import offbench.envs  # noqa: F401 - registers the environments
from offbench.data.dataset import read_dataset
from offbench.data.explore_generation import collection_seeds, write_explore_dataset
from offbench.data.relabel import relabel_for_task
from offbench.envs.cheetah_tasks import TASKS, CheetahTaskReward, env_id
from offbench.envs.tasks import get_task, task_for_dataset
from offbench.errors import OffbenchError

DOWNSTREAM = ("run-forward", "run-backward", "jump")


def test_each_reward_against_a_hand_computed_value():
    """x moves 0.1 in dt = 0.05 s (v = 2 m/s), the torso rises to z' = 0.2, the action's squared norm is 0.5."""
    qpos = np.zeros((1, 9))
    next_qpos = np.zeros((1, 9))
    next_qpos[0, :2] = [0.1, 0.2]
    action = np.array([[0.5, -0.5, 0.0, 0.0, 0.0, 0.0]])
    paid = {task: TASKS[task].rewards(qpos, next_qpos, action)[0] for task in TASKS}
    assert paid["run-forward"] == pytest.approx(2.0 - 0.1 * 0.5)
    assert paid["run-backward"] == pytest.approx(-2.0 - 0.1 * 0.5)
    assert paid["jump"] == pytest.approx(2.0 - 0.1 * 0.5 + 15 * 0.2)
    assert paid["reward-free"] == 0.0
    next_qpos[0, 1] = -0.2  # below the initial height: no jump bonus
    assert TASKS["jump"].rewards(qpos, next_qpos, action)[0] == pytest.approx(2.0 - 0.05)
    assert TASKS["jump"].spec()["reward"].startswith("1 v - 0.1 |a|^2 + 15 max(z', 0)")
    assert TASKS["reward-free"].spec()["reward"].startswith("0,")


def test_run_forward_pays_gymnasiums_halfcheetah_reward_and_every_task_its_own():
    env = gym.make(env_id("run-forward"))
    reference = gym.make("HalfCheetah-v5", exclude_current_positions_from_observation=False)
    obs, _ = env.reset(seed=3)
    ref_obs, _ = reference.reset(seed=3)
    np.testing.assert_array_equal(obs, ref_obs)
    assert obs.shape == (18,) and env.spec.max_episode_steps == 200
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = rng.uniform(-1, 1, 6).astype(np.float32)
        obs, r, terminated, truncated, _ = env.step(a)
        ref_obs, ref_r, *_ = reference.step(a)
        np.testing.assert_array_equal(obs, ref_obs)
        assert r == pytest.approx(ref_r, abs=1e-5) and not terminated
    with pytest.raises(OffbenchError, match="unknown HalfCheetah task 'sprint'"):
        gym.make("offbench/halfcheetah-run-forward-v0", task="sprint")


def test_relabelled_reward_free_data_pay_what_each_task_environment_pays(tmp_path, monkeypatch):
    """Uniform random actions in the reward-free HalfCheetah, 250 steps (one 200-step episode and one cut
    at 50), relabelled for each task: the rewards are the task environment's own for the same resets and
    actions, step by step (the next state of an episode's last step is its stored final state)."""
    monkeypatch.setenv("OFFBENCH_HOME", str(tmp_path / "home"))
    recipe = {"kind": "explore", "env_id": env_id("reward-free"), "method": "random", "episodes": 0, "steps": 250,
              "seed": 4}
    ds = read_dataset(write_explore_dataset(tmp_path / "d.hdf5", recipe,
                                            dataset_id="explore/halfcheetah-reward-free/tiny-v0"), validate=True)
    np.testing.assert_array_equal(ds.episode_lengths, [200, 50])
    assert not ds.rewards.any() and {"sim_state/qpos", "sim_state/qvel"} <= set(ds.arrays)
    assert task_for_dataset("explore/halfcheetah-reward-free/random-v0").name == "halfcheetah-reward-free"
    _, _, resets = collection_seeds(4)
    for task in DOWNSTREAM:
        relabelled = relabel_for_task(ds, f"halfcheetah-{task}")
        paid = []
        env = gym.make(env_id(task))
        for k, (start, length) in enumerate(zip(ds.episode_starts, ds.episode_lengths)):
            env.reset(seed=resets + k)
            paid += [env.step(a)[1] for a in ds.actions[start:start + length]]
        np.testing.assert_allclose(relabelled.rewards, np.asarray(paid, np.float32), rtol=1e-6, atol=1e-5)
        assert relabelled.metadata.recipe["reward"]["kind"] == "halfcheetah_task"
        assert get_task(f"halfcheetah-{task}").env_id == env_id(task)
    jump, forward = (relabel_for_task(ds, f"halfcheetah-{t}").rewards for t in ("jump", "run-forward"))
    assert np.all(jump >= forward - 1e-6) and np.any(jump > forward)  # the bonus is never negative


def test_a_custom_weighting_is_a_plain_reward():
    reward = CheetahTaskReward(forward_weight=0.5, jump_weight=1.0, ctrl_cost=0.0)
    qpos, next_qpos = np.zeros((2, 9)), np.array([[0.05, 0.1] + [0.0] * 7, [-0.05, 0.0] + [0.0] * 7])
    np.testing.assert_allclose(reward.rewards(qpos, next_qpos, np.ones((2, 6))), [0.5 + 0.1, -0.5])


def test_datasets_relabel_writes_the_task_dataset_from_the_command_line(tmp_path, monkeypatch, capsys):
    from offbench.cli import main

    monkeypatch.setenv("OFFBENCH_HOME", str(tmp_path / "home"))
    recipe = {"kind": "explore", "env_id": env_id("reward-free"), "method": "random", "episodes": 0, "steps": 120,
              "seed": 1}
    source = write_explore_dataset(tmp_path / "d.hdf5", recipe, dataset_id="explore/halfcheetah-reward-free/tiny-v0")
    out = tmp_path / "jump.hdf5"
    assert main(["datasets", "relabel", str(source), "--task", "halfcheetah-jump", "--out", str(out)]) == 0
    assert "for halfcheetah-jump ->" in capsys.readouterr().out
    saved = read_dataset(out, validate=True)
    expected = relabel_for_task(read_dataset(source), "halfcheetah-jump").rewards
    np.testing.assert_array_equal(saved.rewards, expected)
    assert saved.metadata.env_id == env_id("jump")
    assert saved.metadata.dataset_id == "explore/halfcheetah-reward-free/tiny-v0+halfcheetah-jump"
    # user mistakes: a clear message, exit code 2, nothing written
    assert main(["datasets", "relabel", str(source), "--task", "halfcheetah-jump", "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert main(["datasets", "relabel", str(source), "--task", "hopper", "--out", str(tmp_path / "h.hdf5")]) == 2
    assert "task 'hopper' has no reward that offbench recomputes" in capsys.readouterr().err
    assert not (tmp_path / "h.hdf5").exists()
