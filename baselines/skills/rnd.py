r"""RND: "Exploration by Random Network Distillation" (Burda, Edwards, Storkey & Klimov, ICLR 2019),
driving SAC without skills: an exploration baseline that collects reward-free data.

A target network f: S -> R^k is initialised at random and never trained; a predictor f_hat is
trained to match it on the states the agent visits,

    L(theta) = E[ ||f_hat(x'; theta) - f(x')||^2 ]          (mean over the k features),

so its error is large on states unlike those seen before. The intrinsic reward of a transition is
that error at the next state, divided by a running estimate of the standard deviation of the
*intrinsic returns* (the paper's reward normalisation),

    r_i = ||f_hat(x') - f(x')||^2 / sigma_R,    R_t = gamma_I R_{t-1} + e_t   (non-episodic),

where e_t is the error at collection time and sigma_R the running standard deviation of the R_t
(:func:`normalised_intrinsic_reward`, :class:`RunningMeanStd`). Both networks see observations
whitened by their running mean and standard deviation and clipped to [-5, 5] (the paper's
observation normalisation); the statistics start from the uniform warm-up steps (the paper
initialises them by stepping a random agent). The reward is computed when a batch is sampled,
with the predictor before its step on that batch.

Defaults and their sources (the paper, Table of hyperparameters): gamma_I = 0.99, Adam 1e-4 for
the predictor, observation clip 5. The paper's networks are convolutional with 512 output
features and a predictor deeper than its target (PPO on Atari); here MLPs of the shared hidden
widths, the predictor with one more hidden layer, 64 features; SAC's temperature fixed at 0.1 like
the skill methods'. The paper trains the predictor on a random 25% of each batch (many parallel
environments); here on all of it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from offbench.errors import OffbenchError
from offbench.nn import mlp
from offbench.skill_loop import SkillLoopConfig, SkillSpace, SkillTrainer


@dataclass
class RNDConfig(SkillLoopConfig):
    features: int = 64  # k
    predictor_lr: float = 1e-4
    intrinsic_gamma: float = 0.99  # gamma_I of the returns whose deviation normalises the reward
    obs_clip: float = 5.0

    def check(self, name: str) -> None:
        super().check(name)
        if int(self.features) < 1:
            raise OffbenchError(f"{name}: features must be >= 1, got {self.features}")
        if not self.predictor_lr > 0 or not self.obs_clip > 0:
            raise OffbenchError(f"{name}: predictor_lr and obs_clip must be > 0, "
                                f"got {self.predictor_lr}, {self.obs_clip}")
        if not 0 <= self.intrinsic_gamma < 1:
            raise OffbenchError(f"{name}: intrinsic_gamma must be in [0, 1), got {self.intrinsic_gamma}")


class RunningMeanStd:
    """Running mean and variance over batches (Chan et al.'s parallel update), JSON-serialisable."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean, self.var, self.count = np.zeros(shape), np.ones(shape), 1e-4

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64)
        b_mean, b_var, b_count = batch.mean(0), batch.var(0), len(batch)
        delta, total = b_mean - self.mean, self.count + b_count
        self.mean = self.mean + delta * b_count / total
        self.var = (self.var * self.count + b_var * b_count + delta ** 2 * self.count * b_count / total) / total
        self.count = total

    def state(self) -> dict:
        return {"mean": np.asarray(self.mean).tolist(), "var": np.asarray(self.var).tolist(), "count": self.count}

    def load(self, state: dict) -> None:
        self.mean, self.var, self.count = np.asarray(state["mean"]), np.asarray(state["var"]), state["count"]


def normalised_intrinsic_reward(error: torch.Tensor, return_var: float) -> torch.Tensor:
    """The prediction error divided by the running standard deviation of the intrinsic returns."""
    return error / float(np.sqrt(return_var + 1e-8))


class RNDTrainer(SkillTrainer):
    name = "RND"

    def __init__(self, make_env, config: RNDConfig = RNDConfig(), seed: int = 0):
        super().__init__(make_env, config, seed)

    def make_skill_space(self) -> SkillSpace:
        return SkillSpace("none", 0)

    def build(self) -> None:
        cfg, hidden = self.config, tuple(self.config.hidden)
        self.target = mlp(self.obs_dim, cfg.features, hidden).requires_grad_(False)
        self.predictor = mlp(self.obs_dim, cfg.features, hidden + (hidden[-1],))
        self.predictor_optim = torch.optim.Adam(self.predictor.parameters(), lr=cfg.predictor_lr)
        self.obs_stats, self.return_stats = RunningMeanStd((self.obs_dim,)), RunningMeanStd()
        self.intrinsic_return = 0.0

    def networks(self) -> dict[str, nn.Module]:
        return {"rnd_target": self.target, "rnd_predictor": self.predictor}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"rnd_predictor": self.predictor_optim}

    def prediction_error(self, obs: torch.Tensor) -> torch.Tensor:
        """||f_hat(x) - f(x)||^2 averaged over features, x the whitened, clipped observation [B]."""
        mean = torch.as_tensor(self.obs_stats.mean, dtype=torch.float32)
        std = torch.as_tensor(np.sqrt(self.obs_stats.var), dtype=torch.float32)
        x = torch.clamp((obs - mean) / (std + 1e-8), -self.config.obs_clip, self.config.obs_clip)
        return ((self.predictor(x) - self.target(x)) ** 2).mean(-1)

    def observe(self, obs: np.ndarray, next_obs: np.ndarray) -> None:
        self.obs_stats.update(next_obs.reshape(1, -1))
        with torch.no_grad():
            error = self.prediction_error(torch.as_tensor(next_obs).reshape(1, -1)).item()
        self.intrinsic_return = self.config.intrinsic_gamma * self.intrinsic_return + error
        self.return_stats.update(np.array([self.intrinsic_return]))

    def extra_state(self) -> dict:
        return {"obs_stats": self.obs_stats.state(), "return_stats": self.return_stats.state(),
                "intrinsic_return": self.intrinsic_return}

    def load_extra_state(self, state: dict) -> None:
        self.obs_stats.load(state["obs_stats"])
        self.return_stats.load(state["return_stats"])
        self.intrinsic_return = state["intrinsic_return"]

    def intrinsic_update(self, batch):
        error = self.prediction_error(batch["next_obs"])
        loss = error.mean()  # L(theta)
        self.predictor_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.predictor_optim.step()
        reward = normalised_intrinsic_reward(error.detach(), float(self.return_stats.var))
        return reward, {"predictor_loss": loss.item(), "intrinsic_reward": reward.mean().item()}
