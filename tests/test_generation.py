"""Dataset generation from trained behaviour policies, end to end at a small size:
online SAC run -> exported behaviour checkpoints -> rollout / replay / mix recipes -> datasets."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from offbench import load_dataset
from offbench.behaviour import CheckpointPolicy
from offbench.cli import main
from offbench.data.catalogue import cached_path, offbench_home
from offbench.errors import OffbenchError

STEPS = 600


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny SAC run on Pendulum shared by the tests of this module."""
    out = tmp_path_factory.mktemp("run") / "pendulum-sac-s0"
    assert main(["online", "train", "sac", "--env", "Pendulum-v1", "--steps", str(STEPS), "--seed", "0",
                 "--out", str(out), "--quiet", "--set", "warmup_steps=200", "--set", "eval_every=200",
                 "--set", "eval_episodes=2", "--set", "snapshot_every=200", "--set", "checkpoint_every=200",
                 "--set", "hidden=[32,32]", "--set", "batch_size=32"]) == 0
    return out


@pytest.fixture
def generation_catalogue(tmp_path, monkeypatch, trained_run):
    root = tmp_path / "catalogue"
    monkeypatch.setenv("OFFBENCH_CATALOGUE", str(root))
    runs = offbench_home() / "runs" / "behaviour"
    runs.mkdir(parents=True)
    (runs / trained_run.name).symlink_to(trained_run)
    for name, step in (("random", 0), ("medium", 200), ("expert", 600)):
        assert main(["online", "export-policy", str(trained_run), "--step", str(step), "--name", name,
                     "--dest", str(root / "policies" / "pendulum" / f"{name}.safetensors"), "--episodes", "3"]) == 0
    online = json.loads((trained_run / "config.json").read_text())["online"]

    def card(name, recipe):
        path = root / "gen" / "pendulum" / f"{name}-v0.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f'id = "gen/pendulum/{name}-v0"\nenv_id = "Pendulum-v1"\ndescription = "test"\n'
                        f'[recipe]\n{recipe}\n[reference_scores]\nrandom = -1200.0\nexpert = -150.0\n')

    for name in ("medium", "expert"):
        sha = json.loads((root / "policies" / "pendulum" / f"{name}.json").read_text())["sha256"]
        card(name, f'kind = "rollout"\nenv_id = "Pendulum-v1"\nsteps = 500\nseed = 7\nnum_envs = 3\n'
                   f'policy = {{ kind = "checkpoint", path = "policies/pendulum/{name}.safetensors", sha256 = "{sha}" }}')
    online_toml = ", ".join(f"{k} = {json.dumps(v)}" for k, v in online.items() if k not in ("env_kwargs", "agent"))
    card("medium-replay", f'kind = "replay"\nenv_id = "Pendulum-v1"\nrun = "{trained_run.name}"\nupto = 300\n'
                          f'online = {{ {online_toml}, agent = {{ hidden = [32, 32] }} }}')
    card("medium-expert", 'kind = "mix"\nsources = ["gen/pendulum/medium-v0", "gen/pendulum/expert-v0"]')
    return root


def test_exported_policy_sidecar(generation_catalogue):
    info = json.loads((generation_catalogue / "policies" / "pendulum" / "medium.json").read_text())
    assert info["module"] == "TanhGaussianPolicy" and info["step"] == 200 and info["hidden"] == [32, 32]
    assert info["returns"]["episodes"] == 3 and info["returns"]["mean"] == info["returns"]["stochastic"]["mean"]
    policy = CheckpointPolicy(generation_catalogue / "policies" / "pendulum" / "medium.safetensors",
                              sha256=info["sha256"])
    assert policy.sha256 == info["sha256"]
    with pytest.raises(OffbenchError, match="recipe expects"):
        CheckpointPolicy(generation_catalogue / "policies" / "pendulum" / "medium.safetensors", sha256="0" * 64)
    # The sidecar is data: a module name outside the allow-list is refused, never imported.
    sidecar = generation_catalogue / "policies" / "pendulum" / "medium.json"
    sidecar.write_text(json.dumps({**info, "module": "os.system"}))
    with pytest.raises(OffbenchError, match="unknown policy module 'os.system'; known: QNetwork, TanhGaussianPolicy"):
        CheckpointPolicy(generation_catalogue / "policies" / "pendulum" / "medium.safetensors")
    sidecar.write_text(json.dumps(info))


def test_checkpoint_rollout_is_exact_and_deterministic(generation_catalogue):
    assert main(["datasets", "build", "gen/pendulum/medium-v0", "--quiet"]) == 0
    first = cached_path("gen/pendulum/medium-v0").read_bytes()
    ds = load_dataset("gen/pendulum/medium-v0", validate=True)
    assert ds.num_steps == 500
    ends = ds.episode_starts + ds.episode_lengths - 1
    assert ds.truncations[ends].all() and not ds.terminations.any()
    # 3 envs in lockstep: 166 rounds (498 steps), then the last 2 steps on envs 0 and 1; the
    # budget cuts all three 200-step episodes, written in env order.
    assert ds.episode_lengths.tolist() == [167, 167, 166]
    # Stored log-probs are the density of the stored actions under the checkpoint that took them.
    policy = CheckpointPolicy(generation_catalogue / "policies" / "pendulum" / "medium.safetensors")
    obs, act = torch.as_tensor(ds.observations), torch.as_tensor(ds.actions)
    recomputed = policy.network.log_prob(obs, act).detach().double().numpy()
    inside = np.abs(ds.actions[:, 0]) < 1.99
    np.testing.assert_allclose(recomputed[inside], ds.extra("behaviour_log_prob")[inside], atol=2e-4)
    assert ds.metadata.behaviour_policies[0]["checkpoint_sha256"] == policy.sha256
    # qpos-like simulator state is stored with exact finals.
    assert ds.arrays["episodes/final/sim_state/state"].shape == (3, 2)
    assert main(["datasets", "build", "gen/pendulum/medium-v0", "--quiet", "--force"]) == 0
    assert cached_path("gen/pendulum/medium-v0").read_bytes() == first  # bit-identical rebuild


def test_replay_recipe_matches_the_run_buffer(generation_catalogue, trained_run):
    assert main(["datasets", "build", "gen/pendulum/medium-replay-v0", "--quiet"]) == 0
    ds = load_dataset("gen/pendulum/medium-replay-v0", validate=True)
    assert ds.num_steps == 300 and ds.episode_lengths.tolist() == [200, 100]
    assert ds.truncations[299] and not ds.terminations.any()  # the cut at upto is a truncation
    from offbench.online import read_replay_rows
    rows = read_replay_rows(trained_run / "buffer", 300)
    np.testing.assert_array_equal(ds.observations, rows["observations"])
    np.testing.assert_array_equal(ds.next_observations, rows["next_observations"])
    np.testing.assert_array_equal(ds.extra("behaviour_log_prob"), rows["behaviour_log_prob"])
    np.testing.assert_allclose(ds.extra("behaviour_log_prob")[:200], np.log(0.25))  # warm-up: uniform


def test_replay_recipe_retrains_a_missing_run(generation_catalogue, trained_run):
    """Without the run on this machine the recipe retrains it; the online loop is deterministic."""
    (offbench_home() / "runs" / "behaviour" / trained_run.name).unlink()
    assert main(["datasets", "build", "gen/pendulum/medium-replay-v0", "--quiet"]) == 0
    from offbench.online import read_replay_rows
    rows = read_replay_rows(trained_run / "buffer", 300)
    ds = load_dataset("gen/pendulum/medium-replay-v0")
    np.testing.assert_array_equal(ds.actions, rows["actions"])


def test_replay_recipe_resumes_a_run_that_stopped_early(generation_catalogue, trained_run):
    """A behaviour run interrupted before ``upto`` (a killed build) is resumed to ``upto``, not refused."""
    from offbench.online import OnlineConfig, OnlineRun, read_replay_rows, saved_replay_rows
    link = offbench_home() / "runs" / "behaviour" / trained_run.name
    link.unlink()
    online = json.loads((trained_run / "config.json").read_text())["online"]
    OnlineRun(OnlineConfig(**{**online, "steps": 200}), link).train(progress=False)
    assert saved_replay_rows(link / "buffer") == 200
    assert main(["datasets", "build", "gen/pendulum/medium-replay-v0", "--quiet"]) == 0
    assert saved_replay_rows(link / "buffer") >= 300
    ds = load_dataset("gen/pendulum/medium-replay-v0")
    np.testing.assert_array_equal(ds.actions, read_replay_rows(trained_run / "buffer", 300)["actions"])


def test_medium_expert_mix(generation_catalogue):
    assert main(["datasets", "build", "gen/pendulum/medium-expert-v0", "--quiet"]) == 0
    ds = load_dataset("gen/pendulum/medium-expert-v0", validate=True)
    assert ds.num_steps == 1000
    assert [p["name"] for p in ds.metadata.behaviour_policies] == ["medium", "expert"]
    assert np.bincount(ds.extra("policy_id")).tolist() == [500, 500]
