"""The task registry (offbench.envs.tasks): lookups, make(), and termination functions that
agree exactly with each environment's own ``terminated`` flag."""
from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch

from offbench.envs import tasks as T
from offbench.envs.tasks import TASKS, Task, get_task, task_for_dataset
from offbench.errors import OffbenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CARDS = Path(__file__).resolve().parents[1] / "datasets"


def rollout(env: gym.Env, episodes: int, seed: int):
    """Random-action episodes: (observations, actions, next_observations, terminated) per step."""
    env.action_space.seed(seed)
    obs, act, nxt, term = [], [], [], []
    for ep in range(episodes):
        o, _ = env.reset(seed=seed + ep)
        done = False
        while not done:
            a = env.action_space.sample()
            o2, _, terminated, truncated, _ = env.step(a)
            obs.append(o), act.append(a), nxt.append(o2), term.append(terminated)
            o, done = o2, terminated or truncated
    env.close()
    return np.asarray(obs), np.asarray(act), np.asarray(nxt), np.asarray(term, dtype=bool)


def assert_agrees(task: Task, obs, act, nxt, term):
    """is_terminal equals the env's flag on every step, for NumPy and torch, batched and one by one."""
    got = task.is_terminal(obs, act, nxt)
    assert isinstance(got, np.ndarray) and got.dtype == bool and got.shape == term.shape
    bad = np.flatnonzero(got != term)
    assert bad.size == 0, f"{task.name}: disagrees with the env on steps {bad[:10]} of {term.size}"

    got_t = task.is_terminal(torch.from_numpy(obs), torch.from_numpy(act), torch.from_numpy(nxt))
    assert isinstance(got_t, torch.Tensor) and got_t.dtype == torch.bool
    assert torch.equal(got_t, torch.from_numpy(term))

    # One transition at a time: every terminal step and the step before it.
    ends = np.flatnonzero(term)
    for i in np.unique(np.concatenate([ends, ends - 1, [0]]).clip(0)):
        assert bool(task.is_terminal(obs[i], act[i], nxt[i])) == term[i]


# name -> (episodes, make() overrides, fewest terminations the rollout must show)
ROLLOUTS = {
    "hopper": (60, {}, 60),             # random actions topple Hopper in ~20 steps
    "walker2d": (60, {}, 60),
    "invdoublependulum": (150, {}, 150),  # and the double pendulum in ~6
    "halfcheetah": (2, {"max_episode_steps": 200}, 0),
    "reacher": (4, {}, 0),              # 50-step time limit
    "pendulum": (2, {}, 0),             # 200-step time limit
}


@pytest.mark.parametrize("name", list(ROLLOUTS))
def test_termination_matches_env_on_every_step(name):
    episodes, overrides, min_terminations = ROLLOUTS[name]
    task = TASKS[name]
    obs, act, nxt, term = rollout(task.make(**overrides), episodes, seed=1000)
    assert term.sum() >= min_terminations
    if min_terminations == 0:
        assert not term.any()
    assert_agrees(task, obs, act, nxt, term)


@pytest.mark.parametrize("env_id", ["offbench/StitchGrid-v0", "offbench/StitchGridOneHot-v0"])
def test_stitchgrid_termination_matches_env(env_id):
    task = get_task(env_id)
    assert task.name == "stitchgrid"
    obs, act, nxt, term = rollout(gym.make(env_id), 300, seed=7)
    assert 20 <= term.sum() < 300  # some episodes reach the goal, some time out
    assert_agrees(task, obs, act, nxt, term)


# ---------------------------------------------------------------------- pushed starts: the height tests
# Random actions topple Hopper and Walker2d: their rollouts above end on the torso angle only.
# To see the env end an episode on the height, start from states that fall low (bent legs,
# moving down) or fly high, take one random-action step, and compare with its own flag.
PUSHED = {  # case -> (task, qpos index -> (low, high), (vz low, vz high), which observation shows the cause)
    "hopper falls low": ("hopper", {1: (0.70, 0.74), 3: (-1.2, -0.5), 4: (-1.5, -0.5)}, (-3, -1),
                         lambda o: o[:, 0] <= 0.7),
    "walker2d falls low": ("walker2d", {1: (0.80, 0.84), 3: (-1.2, -0.5), 4: (-1.5, -0.5), 6: (-1.2, -0.5),
                                        7: (-1.5, -0.5)}, (-3, -1), lambda o: o[:, 0] <= 0.8),
    "walker2d flies high": ("walker2d", {1: (1.96, 2.0)}, (1, 3), lambda o: o[:, 0] >= 2.0),
}


@pytest.mark.parametrize("case", list(PUSHED))
def test_height_terminations_match_env(case):
    name, qpos_ranges, vz_range, cause = PUSHED[case]
    task = TASKS[name]
    env = task.make()
    env.action_space.seed(0)
    u, rng = env.unwrapped, np.random.default_rng(0)
    obs, act, nxt, term = [], [], [], []
    for i in range(40):
        env.reset(seed=i)
        qpos, qvel = u.data.qpos.copy(), u.data.qvel.copy()
        for j, (lo, hi) in qpos_ranges.items():
            qpos[j] = rng.uniform(lo, hi)
        qvel[1] = rng.uniform(*vz_range)
        u.set_state(qpos, qvel)
        obs.append(u._get_obs())
        act.append(env.action_space.sample())
        o2, _, terminated, _, _ = env.step(act[-1])
        nxt.append(o2), term.append(terminated)
    env.close()
    obs, act, nxt, term = np.asarray(obs), np.asarray(act), np.asarray(nxt), np.asarray(term)
    assert (term & cause(nxt)).sum() >= 5  # the height, not only the angle, ended these
    assert (~term).sum() >= 5
    assert_agrees(task, obs, act, nxt, term)


# ---------------------------------------------------------------------- edges of the health ranges
def _health_cases(env, cases):
    """Put the env in each (qpos changes) state; return (observations, env says terminated)."""
    u = env.unwrapped
    obs, term = [], []
    for changes in cases:
        qpos = u.init_qpos.copy()
        for i, v in changes.items():
            qpos[i] = v
        u.set_state(qpos, u.init_qvel.copy())
        obs.append(u._get_obs())
        term.append(not u.is_healthy)
    return np.asarray(obs), np.asarray(term)


def test_hopper_boundaries_match_env():
    env = TASKS["hopper"].make()
    env.reset(seed=0)
    u = env.unwrapped
    assert u._healthy_z_range == T.HOPPER_HEALTHY_Z_RANGE
    assert u._healthy_angle_range == T.HOPPER_HEALTHY_ANGLE_RANGE
    assert u._healthy_state_range == T.HOPPER_HEALTHY_STATE_RANGE
    eps = 1e-9
    # qpos[1] = z, qpos[2] = torso angle, qpos[3:6] = joints (all in state_vector()[2:]).
    cases = [{}, {1: 0.7}, {1: 0.7 + eps}, {1: 0.7 - eps}, {2: 0.2}, {2: -0.2}, {2: 0.2 - eps},
             {2: -0.2 + eps}, {3: 100.0}, {4: -100.0}, {5: 100.0 - eps}, {1: 5.0}]
    obs, term = _health_cases(env, cases)
    assert term.sum() == 6 and not term[0]
    zeros = np.zeros((len(obs), 3))
    np.testing.assert_array_equal(TASKS["hopper"].is_terminal(obs, zeros, obs), term)
    env.close()


def test_hopper_velocity_range_and_its_limit():
    hopper = TASKS["hopper"]
    obs = np.zeros((4, 11))
    obs[:, 0] = 1.25                       # healthy height, upright, still
    obs[1, 5] = 100.0                      # an (unclipped, model-predicted) velocity at the bound
    obs[2, 10] = -150.0
    obs[3, 7] = 99.0
    np.testing.assert_array_equal(hopper.is_terminal(obs, None, obs), [False, True, True, False])
    # The documented limit: the env clips velocities to +-10 in the observation but tests the
    # unclipped ones, so a true velocity beyond 100 ends the episode invisibly.
    env = hopper.make()
    env.reset(seed=0)
    u = env.unwrapped
    qvel = u.init_qvel.copy()
    qvel[3] = 150.0
    u.set_state(u.init_qpos.copy(), qvel)
    assert not u.is_healthy and not hopper.is_terminal(None, None, u._get_obs())
    env.close()


def test_walker2d_boundaries_match_env():
    env = TASKS["walker2d"].make()
    env.reset(seed=0)
    u = env.unwrapped
    assert u._healthy_z_range == T.WALKER2D_HEALTHY_Z_RANGE
    assert u._healthy_angle_range == T.WALKER2D_HEALTHY_ANGLE_RANGE
    eps = 1e-9
    cases = [{}, {1: 0.8}, {1: 0.8 + eps}, {1: 2.0}, {1: 2.0 - eps}, {1: 2.5}, {2: 1.0},
             {2: -1.0}, {2: 1.0 - eps}, {2: -1.0 + eps}, {3: 50.0}]   # no joint-range test in v5
    obs, term = _health_cases(env, cases)
    assert term.sum() == 5 and not term[0]
    np.testing.assert_array_equal(TASKS["walker2d"].is_terminal(obs, None, obs), term)
    env.close()


def test_nan_observations_terminate_like_the_env():
    # Gymnasium tests `min < x < max`, which NaN fails: a NaN state is unhealthy.
    for name, dim in (("hopper", 11), ("walker2d", 17)):
        obs = np.zeros((2, dim))
        obs[:, 0] = 1.25
        obs[1, 0] = np.nan
        np.testing.assert_array_equal(TASKS[name].is_terminal(obs, None, obs), [False, True])


# ---------------------------------------------------------------------- InvertedDoublePendulum geometry
def test_inverted_double_pendulum_geometry_is_the_model():
    env = TASKS["invdoublependulum"].make()
    m = env.unwrapped.model
    assert np.array_equal(m.body("cart").pos, [0, 0, 0]) and np.array_equal(m.body("pole").pos, [0, 0, 0])
    assert np.array_equal(m.jnt_axis[m.joint("slider").id], [1, 0, 0])  # the cart moves along x only
    assert m.body("pole2").pos[2] == T.IDP_POLE_LENGTH and m.site("tip").pos[2] == T.IDP_POLE2_LENGTH
    for joint in ("hinge", "hinge2"):
        assert np.array_equal(m.jnt_axis[m.joint(joint).id], [0, 1, 0])
        assert np.array_equal(m.jnt_pos[m.joint(joint).id], [0, 0, 0])

    # The formula from sin/cos in the observation is the tip height of the observed state.
    rng = np.random.default_rng(0)
    data = mujoco.MjData(m)
    obs, heights = [], []
    for _ in range(500):
        data.qpos[:] = [rng.uniform(-1, 1), *rng.uniform(-np.pi, np.pi, 2)]
        mujoco.mj_kinematics(m, data)
        heights.append(data.site_xpos[m.site("tip").id][2])
        obs.append(np.concatenate([data.qpos[:1], np.sin(data.qpos[1:]), np.cos(data.qpos[1:]), np.zeros(4)]))
    obs, heights = np.asarray(obs), np.asarray(heights)
    s1, s2, c1, c2 = obs[:, 1], obs[:, 2], obs[:, 3], obs[:, 4]
    y = T.IDP_HINGE_HEIGHT + T.IDP_POLE_LENGTH * c1 + T.IDP_POLE2_LENGTH * (c1 * c2 - s1 * s2)
    np.testing.assert_allclose(y, heights, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(TASKS["invdoublependulum"].is_terminal(obs, None, obs), heights <= 1)
    env.close()


# ---------------------------------------------------------------------- lookups and make()
def test_get_task_by_name_and_env_id():
    for name, task in TASKS.items():
        assert get_task(name) is task and get_task(task.env_id) is task and task.name == name
    assert get_task("offbench/StitchGridOneHot-v0") is TASKS["stitchgrid"]
    assert {n for n, t in TASKS.items() if "locomotion" in t.suites} == {"hopper", "halfcheetah", "walker2d"}
    assert {n for n, t in TASKS.items() if "lite" in t.suites} == {
        "pendulum", "invdoublependulum", "reacher", "stitchgrid"}


@pytest.mark.parametrize("bad", ["hoper", "Hopper-v4", "", "ant"])
def test_get_task_unknown_lists_the_known(bad):
    with pytest.raises(OffbenchError) as err:
        get_task(bad)
    for name, task in TASKS.items():
        assert name in str(err.value) and task.env_id in str(err.value)
    if bad == "hoper":
        assert "did you mean 'hopper'" in str(err.value)


def test_task_for_dataset():
    assert task_for_dataset("locomotion/hopper/medium-v0") is TASKS["hopper"]
    assert task_for_dataset("lite/stitchgrid/medium-replay-v0") is TASKS["stitchgrid"]
    assert task_for_dataset("lite/invdoublependulum/random-v0") is TASKS["invdoublependulum"]
    with pytest.raises(OffbenchError, match="unknown task 'ant'.*hopper"):
        task_for_dataset("locomotion/ant/medium-v0")
    with pytest.raises(OffbenchError, match="not 'lite'"):
        task_for_dataset("lite/hopper/medium-v0")
    for bad in ("hopper", "locomotion/hopper", "/hopper/x-v0"):
        with pytest.raises(OffbenchError, match="is not a dataset id"):
            task_for_dataset(bad)


def test_every_catalogue_card_names_its_task():
    cards = sorted(CARDS.rglob("*.toml"))
    assert cards
    for path in cards:
        card = tomllib.loads(path.read_text())
        task = task_for_dataset(card["id"])
        assert card["env_id"] in (task.env_id, *task.other_env_ids), path


@pytest.mark.parametrize("name", list(TASKS))
def test_make_returns_the_task_env(name):
    task = TASKS[name]
    env = task.make()
    assert env.spec.id == task.env_id
    if task.observation_dim is not None:
        assert gym.spaces.flatdim(env.observation_space) == task.observation_dim  # Dict spaces: flattened
    env.close()
    env = task.make(max_episode_steps=3)  # overrides reach gym.make
    assert env.spec.max_episode_steps == 3
    env.close()


def test_task_is_frozen_and_checks_shapes():
    task = TASKS["hopper"]
    with pytest.raises(TypeError):
        task.env_kwargs["x"] = 1
    with pytest.raises(Exception):
        task.name = "other"
    hash(task)
    with pytest.raises(OffbenchError, match=r"\[\.\.\., 11\]"):
        task.is_terminal(None, None, np.zeros((4, 12)))  # e.g. an observation that keeps x
    assert task.is_terminal(None, None, np.zeros((2, 5, 11))).shape == (2, 5)
    assert TASKS["halfcheetah"].is_terminal(None, None, torch.zeros(3, 17)).shape == (3,)
