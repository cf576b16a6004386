"""Shared fixtures: an isolated cache and catalogue, small real datasets, and the kill-and-resume
check every offline algorithm must pass."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

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


@pytest.fixture
def pendulum(tmp_path, monkeypatch):
    """A 1000-step uniform-random Pendulum dataset built from a real card (5 episodes)."""
    from offbench import load_dataset
    from offbench.data.recipes import build_dataset
    from tests.test_catalogue_cli import CARD

    root = tmp_path / "cat"
    (root / "t" / "pendulum").mkdir(parents=True)
    (root / "t" / "pendulum" / "random-v0.toml").write_text(CARD.format(
        id="t/pendulum/random-v0", recipe='kind = "rollout"\nenv_id = "Pendulum-v1"\npolicy = "uniform_random"\n'
                                          'steps = 1000\nseed = 0'))
    monkeypatch.setenv("OFFBENCH_CATALOGUE", str(root))
    build_dataset("t/pendulum/random-v0", progress=False)
    return load_dataset("t/pendulum/random-v0")


class Killed(Exception):
    """Raised from a training hook to stand in for a killed process."""


def kill_and_resume(name: str, dataset, settings: dict, config, root, *, kill_at: int, checkpoint_at: int,
                    run_info: dict | None = None):
    """Train ``name`` straight through into ``root/a``; train it again into ``root/b``, killed at
    step ``kill_at`` and resumed from its checkpoint (which must be at ``checkpoint_at``). Assert
    both end with bit-identical parameters and evaluation returns; return (straight, resumed)."""
    from offbench.train import build_algorithm, fit, train_run

    straight = build_algorithm(name, dataset, settings, seed=config.seed)
    fit(straight, dataset, config, root / "a", progress=False)

    def kill(step):
        if step == kill_at:
            raise Killed

    with pytest.raises(Killed):
        train_run(name, dataset, settings, config, root / "b", progress=False, on_step=kill)
    assert json.loads((root / "b" / "checkpoint.json").read_text())["step"] == checkpoint_at
    resumed = build_algorithm(name, dataset, settings, seed=config.seed)
    fit(resumed, dataset, config, root / "b", progress=False, **({"run_info": run_info} if run_info else {}))
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)
    evals = [[json.loads(r)["returns"] for r in (root / d / "evaluations.jsonl").read_text().splitlines()]
             for d in ("a", "b")]
    assert evals[0] == evals[1]
    return straight, resumed
