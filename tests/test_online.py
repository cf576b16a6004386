"""SAC and the online loop: learning on Pendulum (slow), exact resume after a kill, buffer contents."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from offbench.cli import main
from offbench.online import OnlineConfig, OnlineRun
from tests.conftest import Killed


def small_config(**kw):
    base = dict(env_id="Pendulum-v1", algo="sac", steps=600, seed=3, warmup_steps=250, batch_size=64,
                eval_every=300, eval_episodes=2, snapshot_every=300, checkpoint_every=200,
                agent={"hidden": (32, 32)})
    base.update(kw)
    return OnlineConfig(**base)


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    straight = OnlineRun(small_config(), tmp_path / "straight")
    straight.train(progress=False)

    def kill_at(step):
        if step == 470:  # after the checkpoint at the episode end at step 400
            raise Killed

    with pytest.raises(Killed):
        OnlineRun(small_config(), tmp_path / "killed").train(progress=False, on_step=kill_at)
    assert json.loads((tmp_path / "killed" / "state.json").read_text())["step"] == 400
    resumed = OnlineRun(small_config(), tmp_path / "killed")
    resumed.train(progress=False)

    a = straight.agent.state_dict()
    b = resumed.agent.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    for key in straight.buffer.arrays:
        np.testing.assert_array_equal(straight.buffer.arrays[key], resumed.buffer.arrays[key], err_msg=key)
    assert straight.curve == [{**r, "wall_time": straight.curve[i]["wall_time"]} for i, r in enumerate(resumed.curve)]


def test_buffer_records_exact_transitions(tmp_path):
    run = OnlineRun(small_config(steps=450), tmp_path / "run")
    run.train(progress=False)
    buf = run.buffer.arrays
    n = run.buffer.size
    assert n == 450
    # Pendulum episodes are 200 steps: ends at 199 and 399 are time limits; 449 is the budget cut.
    ends = np.flatnonzero(buf["truncations"][:n])
    assert ends.tolist() == [199, 399, 449] and not buf["terminations"][:n].any()
    inner = np.setdiff1d(np.arange(n - 1), ends)
    np.testing.assert_array_equal(buf["next_observations"][inner], buf["observations"][inner + 1])
    # Observations agree with the stored simulator state [theta, theta_dot].
    th, thdot = buf["sim_state/state"][:n].T
    np.testing.assert_allclose(buf["observations"][:n], np.stack([np.cos(th), np.sin(th), thdot], 1), atol=1e-6)
    # Warm-up actions are uniform on [-2, 2] with log-density log(1/4); later ones are the policy's.
    np.testing.assert_allclose(buf["behaviour_log_prob"][:250], np.log(0.25))
    assert not np.allclose(buf["behaviour_log_prob"][250:n], np.log(0.25))


def test_policy_log_probs_are_exact(tmp_path):
    """The log-probability returned with each action is the density of that action under the
    squashed Gaussian that drew it (what the dataset stores for importance sampling)."""
    run = OnlineRun(small_config(steps=300), tmp_path / "run")
    run.train(progress=False)
    obs = run.buffer.arrays["observations"][:200]
    actions, log_probs = run.agent.act(obs)
    recomputed = run.agent.actor.log_prob(torch.as_tensor(obs), torch.as_tensor(actions)).detach().double().numpy()
    inside = np.abs(actions[:, 0]) < 1.99  # atanh is ill-conditioned at the bounds
    assert inside.mean() > 0.5
    np.testing.assert_allclose(recomputed[inside], log_probs[inside], rtol=1e-4, atol=1e-4)
    # Monte-Carlo check of normalisation: E_a~pi[1 / pi(a)] over the action interval equals its width 4.
    many = np.repeat(obs[:1], 20000, axis=0)
    _, lp = run.agent.act(many)
    assert abs(np.mean(np.exp(-lp)) - 4.0) < 0.4


def test_cli_train_writes_run_directory(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["online", "train", "sac", "--env", "Pendulum-v1", "--steps", "400", "--seed", "1", "--out", str(out),
            "--quiet", "--set", "warmup_steps=200", "--set", "eval_every=200", "--set", "eval_episodes=2",
            "--set", "hidden=[32,32]", "--set", "batch_size=32"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 400
    config = json.loads((out / "config.json").read_text())
    assert config["agent"]["hidden"] == [32, 32] and config["online"]["warmup_steps"] == 200
    weights = load_file(str(out / "snapshots" / "policy-000000400.safetensors"))
    assert weights["net.0.weight"].shape == (32, 3)
    assert (out / "curve.csv").read_text().count("\n") == 3  # header + 2 evaluations
    assert main(args) == 0  # finished run: resuming does nothing
    assert main(args[:-2] + ["--set", "unknown_key=1"]) == 2


@pytest.mark.slow
def test_sac_learns_pendulum(tmp_path):
    cfg = OnlineConfig(env_id="Pendulum-v1", algo="sac", steps=6000, seed=0, warmup_steps=1000,
                       eval_every=6000, eval_episodes=10, snapshot_every=6000, checkpoint_every=6000)
    run = OnlineRun(cfg, tmp_path / "run")
    run.train(progress=False)
    assert run.curve[-1]["return_deterministic"] > -400  # random is about -1200, solved about -150
