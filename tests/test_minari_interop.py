"""offbench <-> Minari 0.5 conversion: real rollouts, Minari's own reader and writer, exact round trips."""
from __future__ import annotations

import json
import os
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from offbench.data import DatasetWriter, read_dataset
from offbench.data import minari_interop
from offbench.data.catalogue import cached_path
from offbench.data.minari_interop import default_dataset_id, export_to_minari, import_from_minari
from offbench.errors import OffbenchError

REFERENCE = {"random": -1231.122036, "expert": -160.319496, "random_policy": "uniform_random"}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("OFFBENCH_HOME", str(tmp_path / "offbench_home"))
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)


@pytest.fixture
def minari_root(tmp_path) -> Path:
    return tmp_path / "minari"


def _read_minari(monkeypatch, root: Path, minari_id: str):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return minari.load_dataset(minari_id)


# ---------------------------------------------------------------------- datasets built in the tests
def _pendulum_dataset(path: Path, episodes: int = 4):
    """A uniformly random policy in Pendulum-v1 with 50-step episodes (all truncated)."""
    env = gym.make("Pendulum-v1", max_episode_steps=50)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    log_prob = -float(np.sum(np.log(high - low)))  # density of the uniform policy
    with DatasetWriter(path, dataset_id="lite/pendulum/random-v0", env_id="Pendulum-v1",
                       observation_space=env.observation_space, action_space=env.action_space,
                       env_spec=json.loads(env.spec.to_json()), reference_scores=REFERENCE,
                       recipe={"kind": "rollout", "policy": "uniform_random"}) as writer:
        for episode in range(episodes):
            obs, _ = env.reset(seed=episode)
            observations, actions, rewards, term, trunc = [obs], [], [], [], []
            state = []  # Pendulum's simulator state [theta, theta_dot]
            done = False
            while not done:
                state.append(np.array(env.unwrapped.state))
                action = rng.uniform(low, high).astype(np.float32)
                obs, reward, terminated, truncated, _ = env.step(action)
                observations.append(obs)
                actions.append(action)
                rewards.append(reward)
                term.append(terminated)
                trunc.append(truncated)
                done = terminated or truncated
            state.append(np.array(env.unwrapped.state))
            writer.add_episode(observations=np.array(observations), actions=np.array(actions),
                               rewards=np.array(rewards), terminations=np.array(term),
                               truncations=np.array(trunc), behaviour_log_prob=np.full(len(rewards), log_prob),
                               sim_state={"state": np.array(state)})
    env.close()
    return read_dataset(path)


TOY_LENGTHS = [5, 3, 7, 1]
TOY_TERMINATED = [True, False, True, False]


def _toy_episode(rng, length: int, terminated: bool, obs_space: gym.Space):
    if isinstance(obs_space, gym.spaces.Dict):
        obs = {k: np.clip(rng.normal(size=(length + 1, *s.shape)), s.low, s.high).astype(np.float32)  # in the space
               for k, s in obs_space.spaces.items()}
    else:
        obs = rng.normal(size=(length + 1, *obs_space.shape)).astype(np.float32)
    term = np.zeros(length, bool)
    trunc = np.zeros(length, bool)
    (term if terminated else trunc)[-1] = True
    return obs, term, trunc


def _toy_dataset(path: Path, *, dict_obs: bool = False):
    """Hand-made data in an unregistered env: terminations, two sources, every optional array."""
    if dict_obs:
        obs_space = gym.spaces.Dict({
            "observation": gym.spaces.Box(-np.inf, np.inf, (4,), np.float32),
            "achieved_goal": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "desired_goal": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
        })
    else:
        obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    rng = np.random.default_rng(1)
    with DatasetWriter(path, dataset_id="toy/reach/mixed-v1", env_id="OffbenchToyReach-v0",
                       observation_space=obs_space, action_space=act_space,
                       behaviour_policies=[{"name": "a"}, {"name": "b"}],
                       sources=[{"dataset_id": "toy/reach/a-v0"}, {"dataset_id": "toy/reach/b-v0"}],
                       description="hand-made") as writer:
        for e, (length, terminated) in enumerate(zip(TOY_LENGTHS, TOY_TERMINATED)):
            obs, term, trunc = _toy_episode(rng, length, terminated, obs_space)
            writer.add_episode(
                observations=obs, actions=rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                rewards=rng.normal(size=length), terminations=term, truncations=trunc,
                behaviour_log_prob=rng.normal(size=length), policy_id=np.full(length, e % 2),
                task_id=np.arange(length), sim_state={"qpos": rng.normal(size=(length + 1, 2))},
                # 'task_id' as an info clashes with the optional array of that name on purpose.
                infos={"success": rng.random(length) > 0.5, "cost": rng.normal(size=(length, 2)),
                       "task_id": np.arange(length) * 10},
                source=e % 2)
    return read_dataset(path)


def _cartpole_dataset(path: Path):
    """Discrete actions: a random policy in CartPole-v1 (terminations and truncations)."""
    env = gym.make("CartPole-v1", max_episode_steps=15)
    rng = np.random.default_rng(2)
    with DatasetWriter(path, dataset_id="lite/cartpole/random-v0", env_id="CartPole-v1",
                       observation_space=env.observation_space, action_space=env.action_space,
                       env_spec=json.loads(env.spec.to_json())) as writer:
        for episode in range(6):
            obs, _ = env.reset(seed=episode)
            observations, actions, rewards, term, trunc = [obs], [], [], [], []
            done = False
            while not done:
                action = int(rng.integers(2))
                obs, reward, terminated, truncated, _ = env.step(action)
                observations.append(obs)
                actions.append(action)
                rewards.append(reward)
                term.append(terminated)
                trunc.append(truncated)
                done = terminated or truncated
            writer.add_episode(observations=np.array(observations), actions=np.array(actions),
                               rewards=np.array(rewards), terminations=np.array(term), truncations=np.array(trunc),
                               behaviour_log_prob=np.full(len(rewards), np.log(0.5)))
    env.close()
    return read_dataset(path)


# ---------------------------------------------------------------------- assertions
def _assert_same_arrays(a, b):
    assert sorted(a.arrays) == sorted(b.arrays)
    for path in a.arrays:
        assert a.arrays[path].dtype == b.arrays[path].dtype, path
        np.testing.assert_array_equal(a.arrays[path], b.arrays[path], err_msg=path)


def _assert_minari_matches(minari_ds, ds):
    assert minari_ds.total_episodes == ds.num_episodes
    assert minari_ds.total_steps == ds.num_steps
    assert minari_ds.observation_space == ds.observation_space
    assert minari_ds.action_space == ds.action_space
    for ours, theirs in zip(ds.episodes(), minari_ds.iterate_episodes()):
        if isinstance(ours.observations, dict):
            assert sorted(theirs.observations) == sorted(ours.observations)
            for key in ours.observations:
                np.testing.assert_array_equal(theirs.observations[key], ours.observations[key])
        else:
            assert len(theirs.observations) == ours.length + 1
            np.testing.assert_array_equal(theirs.observations, ours.observations)
        np.testing.assert_array_equal(theirs.actions, ours.actions)
        np.testing.assert_array_equal(theirs.rewards, ours.rewards)
        np.testing.assert_array_equal(theirs.terminations, ours.terminations)
        np.testing.assert_array_equal(theirs.truncations, ours.truncations)


# ---------------------------------------------------------------------- 1. export
def test_export_pendulum_rollout_reads_back_with_minari(tmp_path, minari_root, monkeypatch):
    ds = _pendulum_dataset(tmp_path / "pendulum.hdf5")
    assert ds.num_episodes == 4 and ds.num_steps == 200 and ds.truncations.sum() == 4

    minari_id = export_to_minari(ds, minari_root=minari_root)

    assert minari_id == "lite/pendulum/random-v0"
    assert "MINARI_DATASETS_PATH" not in os.environ  # restored after the call
    mds = _read_minari(monkeypatch, minari_root, minari_id)
    _assert_minari_matches(mds, ds)
    meta = mds.storage.metadata
    assert meta["ref_min_score"] == REFERENCE["random"]
    assert meta["ref_max_score"] == REFERENCE["expert"]
    assert mds.env_spec.id == "Pendulum-v1" and mds.env_spec.max_episode_steps == 50
    assert meta["minari_version"] == minari.__version__
    # behaviour_log_prob: T rows padded to T+1 by repeating the last; sim_state kept at T+1.
    ep = mds[2]
    ours = ds.episode(2)
    np.testing.assert_array_equal(ep.infos["behaviour_log_prob"][:-1], ours.extras["behaviour_log_prob"])
    assert ep.infos["behaviour_log_prob"][-1] == ours.extras["behaviour_log_prob"][-1]
    np.testing.assert_array_equal(ep.infos["sim_state"]["state"], ours.sim_state["state"])
    assert ep.infos["sim_state"]["state"].shape == (51, 2)


def test_export_handmade_dataset_with_terminations(tmp_path, minari_root, monkeypatch):
    ds = _toy_dataset(tmp_path / "toy.hdf5")
    minari_id = export_to_minari(str(tmp_path / "toy.hdf5"), "toy/exported-v3", minari_root=minari_root)

    mds = _read_minari(monkeypatch, minari_root, minari_id)
    _assert_minari_matches(mds, ds)
    assert [bool(ep.terminations[-1]) for ep in mds] == TOY_TERMINATED
    assert mds.env_spec is None  # unregistered env: spaces only
    assert "ref_min_score" not in mds.storage.metadata  # no reference scores recorded
    ep, ours = mds[0], ds.episode(0)
    # Step infos follow Minari's convention: row t+1 is step t, row 0 repeats row 1.
    np.testing.assert_array_equal(ep.infos["success"][1:], ours.extras["infos/success"])
    np.testing.assert_array_equal(ep.infos["cost"][0], ep.infos["cost"][1])
    np.testing.assert_array_equal(ep.infos["policy_id"][:-1], ours.extras["policy_id"])
    # The clashing info went under infos/infos/, the real task_id kept its own name.
    np.testing.assert_array_equal(ep.infos["infos"]["task_id"][1:], np.arange(5) * 10)
    np.testing.assert_array_equal(ep.infos["task_id"][:-1], np.arange(5))
    sources = list(mds.storage.get_episode_metadata(range(4)))
    assert [int(m["offbench_source"]) for m in sources] == [0, 1, 0, 1]


# ---------------------------------------------------------------------- 2. import
def _minari_buffers(rng):
    """Lists per step, as a collector would build them: terminated, truncated, open-ended."""
    buffers, ends = [], [(4, "terminated"), (6, "truncated"), (3, "open")]
    for length, end in ends:
        buffers.append(EpisodeBuffer(
            observations=[rng.normal(size=4).astype(np.float32) for _ in range(length + 1)],
            actions=[rng.uniform(-1, 1, 2).astype(np.float32) for _ in range(length)],
            rewards=[float(r) for r in rng.normal(size=length)],
            terminations=[end == "terminated" and t == length - 1 for t in range(length)],
            truncations=[end == "truncated" and t == length - 1 for t in range(length)],
            infos={"success": [bool(t % 2) for t in range(length + 1)],
                   "msg": [f"step {t}" for t in range(length + 1)]},
        ))
    return buffers


def test_import_minari_dataset(minari_root, monkeypatch, tmp_path):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(minari_root))
    rng = np.random.default_rng(3)
    buffers = _minari_buffers(rng)
    with pytest.warns(UserWarning):  # Minari nags about missing author etc.
        mds = minari.create_dataset_from_buffers(
            "Toy/mixed-v1", buffers, observation_space=gym.spaces.Box(-5, 5, (4,), np.float32),
            action_space=gym.spaces.Box(-1, 1, (2,), np.float32))
    mds.storage.update_metadata({"ref_min_score": -10.0, "ref_max_score": 5.0})
    monkeypatch.delenv("MINARI_DATASETS_PATH")

    with pytest.warns(UserWarning) as record:
        path = import_from_minari("Toy/mixed-v1", minari_root=minari_root)

    messages = " | ".join(str(w.message) for w in record)
    assert "1 of 3 episodes" in messages and "marked truncated" in messages
    assert "msg" in messages
    assert path == cached_path("minari/toy/mixed-v1")
    ds = read_dataset(path, validate=True)
    assert ds.metadata.dataset_id == "minari/toy/mixed-v1"
    assert ds.metadata.recipe == {"kind": "minari_import", "minari_id": "Toy/mixed-v1",
                                  "minari_version": minari.__version__}
    assert ds.metadata.reference_scores == {"random": -10.0, "expert": 5.0}
    assert ds.metadata.sources == [{"dataset_id": "minari/toy/mixed-v1", "minari_id": "Toy/mixed-v1"}]
    assert ds.observation_space == gym.spaces.Box(-5, 5, (4,), np.float32)
    np.testing.assert_array_equal(ds.episode_lengths, [4, 6, 3])
    expected_term = [[False] * 3 + [True], [False] * 6, [False] * 3]
    expected_trunc = [[False] * 4, [False] * 5 + [True], [False] * 2 + [True]]
    for e, buffer in enumerate(buffers):
        ep = ds.episode(e)
        np.testing.assert_array_equal(ep.terminations, expected_term[e])
        np.testing.assert_array_equal(ep.truncations, expected_trunc[e])
        np.testing.assert_array_equal(ep.observations, np.array(buffer.observations))
        np.testing.assert_array_equal(ep.actions, np.array(buffer.actions))
        np.testing.assert_array_equal(ep.rewards, np.array(buffer.rewards, dtype=np.float32))
        # Next observation at the last step is Minari's final observation.
        last = int(ds.episode_starts[e] + ds.episode_lengths[e] - 1)
        np.testing.assert_array_equal(ds.next_observations[last], buffer.observations[-1])
        # Minari's row 0 is the reset info; offbench keeps the T step infos.
        np.testing.assert_array_equal(ep.extras["infos/success"], buffer.infos["success"][1:])
    assert "infos/msg" not in ds.arrays


def test_default_dataset_id_mapping():
    assert default_dataset_id("lite/pendulum/random-v0") == "lite/pendulum/random-v0"
    assert default_dataset_id("D4RL/door/human-v2") == "minari/d4rl_door/human-v2"
    assert default_dataset_id("mujoco/Hopper/Expert_Run-v0") == "minari/mujoco_hopper/expert_run-v0"
    assert default_dataset_id("cartpole-v4", env_id="CartPole-v1") == "minari/cartpole_v1/cartpole-v4"


# ---------------------------------------------------------------------- 3. export -> import
@pytest.mark.parametrize("builder", [_pendulum_dataset, _toy_dataset])
def test_export_then_import_gives_back_every_array(builder, tmp_path, minari_root, monkeypatch):
    # Small batches, so later episodes go through Minari's update_dataset_from_buffer too.
    monkeypatch.setattr(minari_interop, "EXPORT_BATCH_STEPS", 6)
    original = builder(tmp_path / "original.hdf5")
    minari_id = export_to_minari(original, minari_root=minari_root)
    path = import_from_minari(minari_id, out=tmp_path / "back.hdf5", minari_root=minari_root)

    back = read_dataset(path, validate=True)
    _assert_same_arrays(back, original)
    for key in ("observation_space", "action_space", "env_id", "env_spec", "behaviour_policies",
                "sources", "reference_scores", "description"):
        assert getattr(back.metadata, key) == getattr(original.metadata, key), key
    assert back.metadata.dataset_id == original.metadata.dataset_id
    assert back.metadata.recipe["kind"] == "minari_import"


# ---------------------------------------------------------------------- 4. Dict observations
def test_dict_observation_round_trip(tmp_path, minari_root, monkeypatch):
    original = _toy_dataset(tmp_path / "goal.hdf5", dict_obs=True)
    minari_id = export_to_minari(original, "toy/goal/reach-v0", minari_root=minari_root)
    path = import_from_minari(minari_id, minari_root=minari_root)

    assert path == cached_path("toy/goal/reach-v0")
    back = read_dataset(path, validate=True)
    _assert_same_arrays(back, original)
    assert back.observation_space == original.observation_space
    assert sorted(k for k in back.arrays if k.startswith("observations/")) == [
        "observations/achieved_goal", "observations/desired_goal", "observations/observation"]
    mds = _read_minari(monkeypatch, minari_root, minari_id)
    _assert_minari_matches(mds, original)


# ---------------------------------------------------------------------- 5. Discrete actions
def test_discrete_action_round_trip(tmp_path, minari_root, monkeypatch):
    original = _cartpole_dataset(tmp_path / "cartpole.hdf5")
    assert original.terminations.any() and original.truncations.any()
    minari_id = export_to_minari(original, minari_root=minari_root)
    back = read_dataset(import_from_minari(minari_id, out=tmp_path / "back.hdf5", minari_root=minari_root))

    _assert_same_arrays(back, original)
    assert back.action_space == gym.spaces.Discrete(2)
    assert back.actions.dtype == np.int64
    mds = _read_minari(monkeypatch, minari_root, minari_id)
    assert mds.action_space == gym.spaces.Discrete(2)
    assert mds.env_spec.id == "CartPole-v1" and mds.env_spec.max_episode_steps == 15
    _assert_minari_matches(mds, original)


# ---------------------------------------------------------------------- 6. errors
def test_existing_minari_dataset_needs_overwrite(tmp_path, minari_root, monkeypatch):
    toy = _toy_dataset(tmp_path / "toy.hdf5")
    export_to_minari(toy, "toy/same-v0", minari_root=minari_root)
    with pytest.raises(OffbenchError, match=r"already exists.*overwrite=True"):
        export_to_minari(toy, "toy/same-v0", minari_root=minari_root)

    smaller = toy.select_episodes([2, 0], dataset_id="toy/reach/smaller-v0")
    export_to_minari(smaller, "toy/same-v0", minari_root=minari_root, overwrite=True)
    mds = _read_minari(monkeypatch, minari_root, "toy/same-v0")
    assert mds.total_episodes == 2 and mds.total_steps == 12


def test_unknown_minari_id_is_named(minari_root):
    with pytest.raises(OffbenchError) as info:
        import_from_minari("nowhere/missing-v0", minari_root=minari_root)
    assert "nowhere/missing-v0" in str(info.value)
    assert str(minari_root) in str(info.value)
    with pytest.raises(OffbenchError, match="not a Minari dataset id"):
        import_from_minari("bad id!", minari_root=minari_root)
    assert not (minari_root / "nowhere").exists()


def test_export_rejects_minari_ids_minari_cannot_create(tmp_path, minari_root):
    toy = _toy_dataset(tmp_path / "toy.hdf5")
    with pytest.raises(OffbenchError, match="no version"):
        export_to_minari(toy, "toy/unversioned", minari_root=minari_root)
    with pytest.raises(OffbenchError, match="not a Minari dataset id"):
        export_to_minari(toy, "toy/has.dot-v0", minari_root=minari_root)


def test_failed_export_leaves_no_minari_dataset(tmp_path, minari_root, monkeypatch):
    toy = _toy_dataset(tmp_path / "toy.hdf5")
    monkeypatch.setattr(minari_interop, "EXPORT_BATCH_STEPS", 4)
    calls = []

    def failing_buffer(dataset, index, layout):
        calls.append(index)
        if index == 2:
            raise RuntimeError("disk full")
        return real_buffer(dataset, index, layout)

    real_buffer = minari_interop._episode_buffer
    monkeypatch.setattr(minari_interop, "_episode_buffer", failing_buffer)
    with pytest.raises(RuntimeError, match="disk full"):
        export_to_minari(toy, "toy/broken-v0", minari_root=minari_root)
    assert calls == [0, 1, 2]  # the first batch was written before the failure
    assert not (minari_root / "toy" / "broken-v0").exists()
