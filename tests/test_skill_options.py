"""Skills as a higher level's actions (offbench/envs/skill_options.py, issue 18 item 6): a step plays the chosen
skill's mean action for k steps of the goal task and pays their summed reward (so a high-level episode's return
is the goal task's return for the same steps); METRA's skills are scaled onto the unit circle; DIAYN's are a
Discrete space; methods without skills and unknown goals are refused by name; the equal-environment-steps
bookkeeping of scripts/skills_downstream.py."""
from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import offbench.envs  # noqa: F401 - registers the point plane, its goals and PointPlaneSkills
from baselines.skills.dads import DADSConfig, DADSTrainer
from baselines.skills.diayn import DIAYNConfig, DIAYNTrainer
from baselines.skills.metra import METRAConfig, METRATrainer
from baselines.skills.rnd import RNDConfig, RNDTrainer
from offbench.envs.point_plane import goal_env_id
from offbench.envs.skill_options import SkillOptionsEnv, make_point_plane_skills_env
from offbench.errors import OffbenchError

SMALL = dict(hidden=(16,), batch_size=16, warmup_steps=60, buffer_size=1000)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def plane():
    return gym.make("offbench/PointPlane-v0")


@pytest.mark.parametrize("k", [1, 5, 7])
def test_a_step_plays_the_skill_k_steps_and_pays_the_goal_tasks_rewards(k):
    trainer = DADSTrainer(plane, DADSConfig(**SMALL), seed=0)
    env = SkillOptionsEnv(gym.make(goal_env_id("right")), trainer, k)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    reference = gym.make(goal_env_id("right"))  # the same low-level actions, played by hand
    obs, _ = env.reset(seed=3)
    ref_obs, _ = reference.reset(seed=3)
    total, ref_total, steps, high = 0.0, 0.0, 0, 0
    done = False
    while not done:
        z = np.array([0.9, -0.2], np.float32)
        expected = 0.0
        for _ in range(min(k, 50 - steps)):
            ref_obs, r, *_ = reference.step(trainer.act(ref_obs, z, deterministic=True))
            expected += r
        obs, reward, terminated, truncated, info = env.step(z)
        np.testing.assert_array_equal(obs, ref_obs)
        assert reward == expected and info["env_steps"] == min(k, 50 - steps)
        steps, total, ref_total, high = steps + info["env_steps"], total + reward, ref_total + expected, high + 1
        done = terminated or truncated
    assert steps == 50 and high == -(-50 // k) and total == ref_total


def test_metra_skills_lie_on_the_unit_circle_and_diayn_skills_are_discrete():
    metra = SkillOptionsEnv(plane(), METRATrainer(plane, METRAConfig(**SMALL), seed=0), 5)
    np.testing.assert_allclose(metra.skill(np.array([0.3, 0.4])), [0.6, 0.8], rtol=1e-6)
    np.testing.assert_array_equal(metra.skill(np.zeros(2)), [1.0, 0.0])
    np.testing.assert_array_equal(metra.skill(np.array([3.0, 0.0])), [1.0, 0.0])  # clipped to the box first
    dads = SkillOptionsEnv(plane(), DADSTrainer(plane, DADSConfig(**SMALL), seed=0), 5)
    np.testing.assert_allclose(dads.skill(np.array([0.3, 0.4])), [0.3, 0.4], rtol=1e-6)  # DADS's box prior
    diayn = SkillOptionsEnv(plane(), DIAYNTrainer(plane, DIAYNConfig(**SMALL, skills=4), seed=0), 5)
    assert diayn.action_space == gym.spaces.Discrete(4) and diayn.skill(np.int64(2)) == 2


def test_methods_without_skills_goals_and_k_are_checked():
    with pytest.raises(OffbenchError, match="RNDTrainer has no skills to choose from"):
        SkillOptionsEnv(plane(), RNDTrainer(plane, RNDConfig(**SMALL), seed=0), 5)
    with pytest.raises(OffbenchError, match="a skill plays k >= 1 steps, got k=0"):
        SkillOptionsEnv(plane(), DADSTrainer(plane, DADSConfig(**SMALL), seed=0), 0)
    with pytest.raises(OffbenchError, match="unknown goal 'middle'"):
        make_point_plane_skills_env(goal="middle")
    with pytest.raises(OffbenchError, match="is not an exploratory dataset of the point plane"):
        make_point_plane_skills_env(skills="lite/pendulum/medium-v0")


def test_equal_environment_steps():
    from skills_downstream import env_steps_of, run_config

    assert env_steps_of(12, "flat", 5) == 12
    assert env_steps_of(10, "dads", 5) == 50 and env_steps_of(13, "dads", 5) == 65
    assert env_steps_of(8, "dads", 7) == 50 and env_steps_of(9, "dads", 7) == 57  # 8 steps an episode, the last of 1
    flat, high = run_config("bottom", "flat", 0, 30_000, 5), run_config("bottom", "metra", 0, 30_000, 5)
    assert (flat.steps, flat.warmup_steps, flat.eval_every) == (30_000, 5000, 2500)
    assert (high.steps, high.warmup_steps, high.eval_every) == (6000, 1000, 500)
    assert high.env_kwargs == {"goal": "bottom", "skills": "explore/point-plane/metra-v0", "k": 5}
