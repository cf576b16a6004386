"""The offline training loop: exact resume, run directory contents, the plug-in protocol, BC."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import torch

from offbench import load_dataset
from offbench.cli import main
from offbench.data.recipes import build_dataset
from offbench.train import TrainConfig, build_algorithm, train_run
from tests.conftest import kill_and_resume


@pytest.fixture
def grid_expert(monkeypatch):
    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    build_dataset("lite/stitchgrid/expert-v0", progress=False)
    return load_dataset("lite/stitchgrid/expert-v0")


SMALL = TrainConfig(steps=60, batch_size=32, eval_every=30, eval_episodes=2, final_eval_episodes=2,
                    checkpoint_every=20, log_every=10)


def test_resume_after_kill_gives_identical_parameters(pendulum, tmp_path):
    kill_and_resume("bc", pendulum, {"hidden": [16, 16]}, SMALL, tmp_path, kill_at=47, checkpoint_at=40)
    for name in ("metrics.jsonl", "evaluations.jsonl"):
        steps_a = [json.loads(r)["step"] for r in (tmp_path / "a" / name).read_text().splitlines()]
        steps_b = [json.loads(r)["step"] for r in (tmp_path / "b" / name).read_text().splitlines()]
        assert steps_a == steps_b  # rows after the checkpoint were dropped and written again


def test_run_directory_and_cli(pendulum, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "bc", "t/pendulum/random-v0", "--steps", "40", "--seed", "2", "--out", str(out), "--quiet",
                 "--set", "eval_every=20", "--set", "eval_episodes=3", "--set", "final_eval_episodes=4",
                 "--set", "hidden=[8,8]", "--set", "batch_size=16", "--set", "log_every=20"]) == 0
    printed = json.loads(capsys.readouterr().out)
    config = json.loads((out / "config.json").read_text())
    assert config["algorithm"] == "bc" and config["algorithm_config"]["hidden"] == [8, 8]
    assert config["train"]["seed"] == 2 and config["dataset"]["id"] == "t/pendulum/random-v0"
    evals = [json.loads(r) for r in (out / "evaluations.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [20, 40] and [len(e["returns"]) for e in evals] == [3, 4]
    ref = load_dataset("t/pendulum/random-v0").normalized_score(evals[-1]["returns"])
    np.testing.assert_allclose(evals[-1]["normalized_scores"], ref, rtol=1e-6)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["score"] == pytest.approx(np.mean(ref)) == printed["score"]
    assert summary["headline"] == "last evaluation"
    assert main(["eval", str(out), "--episodes", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 40
    assert main(["train", "bc", "t/pendulum/random-v0", "--out", str(out), "--quiet", "--set", "nope=1"]) == 2
    assert "unknown BC settings ['nope']" in capsys.readouterr().err
    assert main(["train", "nosuchalgo", "t/pendulum/random-v0", "--quiet"]) == 2


def test_bc_loss_by_hand(pendulum):
    bc = build_algorithm("bc", pendulum, {"normalize_observations": False}, seed=0)
    obs = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5]])
    actions = torch.tensor([[1.0], [-2.0]])
    predicted = bc.policy(obs)
    expected = ((predicted - actions) ** 2).sum(-1).mean()
    assert bc.loss(obs, actions).item() == pytest.approx(expected.item())
    # Pendulum's torque bound 2 scales the tanh output.
    assert torch.all(predicted.abs() <= 2.0)


def test_bc_learns_the_gridworld_expert(grid_expert, tmp_path):
    summary = train_run("bc", grid_expert, {"hidden": [32, 32], "lr": 3e-3},
                        TrainConfig(steps=400, batch_size=64, eval_every=400, eval_episodes=20,
                                    final_eval_episodes=20, checkpoint_every=400, log_every=100),
                        tmp_path / "bc", progress=False)
    # The optimum is 0.9 (normalised 100); the random policy scores 0.
    assert summary["score"] > 95


PLUGIN = '''
from dataclasses import dataclass
import numpy as np, torch
from offbench.algorithm import Algorithm

@dataclass
class ConstantConfig:
    value: float = 0.5

class Constant(Algorithm):
    """An outside algorithm: learns the mean action."""
    config_class = ConstantConfig
    summary = "plug-in test"

    def __init__(self, observation_space, action_space, config, *, seed=0):
        super().__init__(observation_space, action_space, config, seed=seed)
        self.mean = torch.nn.Parameter(torch.full(action_space.shape, config.value))
        self.optim = torch.optim.SGD([self.mean], lr=0.5)

    def update(self, batch):
        loss = ((self.mean - batch.actions) ** 2).mean()
        self.optim.zero_grad(); loss.backward(); self.optim.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def act(self, observations):
        return np.repeat(self.mean.numpy()[None], len(observations), 0)

    def optimizers(self):
        return {"sgd": self.optim}
'''


def test_outside_algorithm_plugs_in_by_import_path(pendulum, tmp_path, monkeypatch, capsys):
    (tmp_path / "plugpkg").mkdir()
    (tmp_path / "plugpkg" / "__init__.py").write_text("")
    (tmp_path / "plugpkg" / "algo.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "plug"
    assert main(["train", "plugpkg.algo:Constant", "t/pendulum/random-v0", "--steps", "50", "--out", str(out),
                 "--quiet", "--set", "value=1.5", "--set", "eval_every=50", "--set", "eval_episodes=2"]) == 0
    from offbench.checkpoint import load_checkpoint
    from plugpkg.algo import Constant, ConstantConfig
    algo = Constant(pendulum.observation_space, pendulum.action_space, ConstantConfig())
    load_checkpoint(out / "checkpoint", modules={"algorithm": algo})
    # Uniform random actions on [-2, 2] have mean 0: the learned constant moved from 1.5 to near 0.
    assert abs(algo.mean.item()) < 0.3
    assert main(["train", "plugpkg.algo:Missing", "t/pendulum/random-v0", "--quiet"]) == 2
    assert "has no class 'Missing'" in capsys.readouterr().err


def test_per_dataset_overrides_apply_before_set(grid_expert, tmp_path):
    from offbench.algorithm import dataset_overrides
    assert dataset_overrides("bc", "lite/stitchgrid/expert-v0") == {"hidden": [64, 64]}
    assert dataset_overrides("bc", "lite/pendulum/random-v0") == {}
    assert dataset_overrides("plugpkg.algo:Constant", "lite/stitchgrid/expert-v0") == {}
    train_run("bc", grid_expert, {"lr": 1e-3}, TrainConfig(steps=5, eval_every=5, eval_episodes=1,
                                                            final_eval_episodes=1, checkpoint_every=5, log_every=5),
              tmp_path / "o", progress=False)
    config = json.loads((tmp_path / "o" / "config.json").read_text())
    assert config["algorithm_config"]["hidden"] == [64, 64] and config["algorithm_config"]["lr"] == 1e-3
