"""Shared fixtures: an isolated cache and catalogue, and small real datasets."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from offbench.data.writer import DatasetWriter

BOX_OBS = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
BOX_ACT = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own empty cache; the real ~/.cache/offbench is never touched."""
    home = tmp_path / "offbench_home"
    monkeypatch.setenv("OFFBENCH_HOME", str(home))
    monkeypatch.delenv("OFFBENCH_MIRRORS", raising=False)
    return home


def write_toy(path, lengths=(5, 3, 4), terminated=(False, True, False), *, seed=0, dataset_id="test/toy/toy-v0",
              extras=True, reference=(0.0, 10.0)):
    """A dataset whose observations encode (episode, step, 0) so every row can be checked."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, dataset_id=dataset_id, env_id="Toy-v0", observation_space=BOX_OBS,
                       action_space=BOX_ACT, reference_scores={"random": reference[0], "expert": reference[1]},
                       behaviour_policies=[{"name": "p0"}, {"name": "p1"}]) as w:
        for e, (T, term) in enumerate(zip(lengths, terminated)):
            obs = np.stack([np.full(T + 1, e), np.arange(T + 1), np.zeros(T + 1)], axis=1).astype(np.float32)
            ends = np.zeros(T, bool)
            ends[-1] = True
            w.add_episode(
                observations=obs, actions=rng.uniform(-1, 1, (T, 2)).astype(np.float32),
                rewards=rng.standard_normal(T).astype(np.float32),
                terminations=ends if term else np.zeros(T, bool), truncations=np.zeros(T, bool) if term else ends,
                **({"behaviour_log_prob": rng.standard_normal(T), "policy_id": e % 2,
                    "sim_state": {"qpos": rng.standard_normal((T + 1, 2))}} if extras else {}))
    return path


@pytest.fixture
def toy_path(tmp_path):
    return write_toy(tmp_path / "toy.hdf5")
