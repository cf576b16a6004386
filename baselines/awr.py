"""AWR (Peng et al. 2019, "Advantage-Weighted Regression: Simple and Scalable Off-Policy RL").

Two supervised regressions on the dataset (the paper's Algorithm 1, lines 5-6):

    value:   V = argmin_V E_{(s,a)~D} [ (R_{s,a} - V(s))^2 ]
    policy:  pi = argmax_pi E_{(s,a)~D} [ log pi(a|s) min(exp((R_{s,a} - V(s)) / beta), w_max) ]

The paper's return R_{s,a} is the data's own return from (s, a) (TD(lambda) in its
experiments). Two named targets (``value_target``):

- ``"monte_carlo"``: R = the discounted return-to-go of the dataset episode, sum_k gamma^k r_{t+k}
  (``TransitionSampler`` extra ``returns_to_go`` with this gamma). At a *truncated* episode end
  (time limit, data cut) the rewards after the cut are missing, so R is biased low, most at
  the last steps (a single reward at the final step) -- on Pendulum, whose episodes all end at
  the 200-step limit, R then depends on the time left, which V(s) cannot see. Terminated
  episodes are exact.
- ``"td"``: R = r + gamma (1 - terminated) V'(s'), TD(0) with a Polyak-averaged target V'. It
  bootstraps at truncations (``next_observations`` holds the final observation) and so has no
  truncation bias, at the price of the usual bootstrapping bias. The advantage is then the TD
  error r + gamma V'(s') - V(s).

Both regressions take one gradient step per batch together (the paper alternates many value
steps and then many policy steps per batch of new data); the advantage uses V before its step.
Defaults: temperature beta = 1 and weight clip w_max = 20 (the paper's hyperparameters), gamma
0.99, 2x256 networks; Adam at 3e-4 for both networks like offbench's other baselines (the paper
trains with SGD with momentum). beta is in reward units, so rescale rewards or beta for tasks with
large returns. Continuous actions: the shared ``GaussianPolicy`` (a finite log-likelihood also
for dataset actions on the bounds, see ``baselines/awac.py``); discrete: ``CategoricalPolicy``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from offbench.algorithm import Algorithm
from offbench.data.dataset import Dataset
from offbench.data.sampling import TransitionBatch, TransitionSampler
from offbench.errors import OffbenchError
from offbench.nn import adam, CategoricalPolicy, GaussianPolicy, ObservationEncoder, mlp, soft_update

VALUE_TARGETS = ("monte_carlo", "td")


@dataclass
class AWRConfig:
    hidden: tuple[int, ...] = (256, 256)  # policy and value networks
    actor_lr: float = 3e-4  # Adam (offbench convention; the paper uses SGD with momentum)
    value_lr: float = 3e-4
    gamma: float = 0.99
    temperature: float = 1.0  # beta of the paper
    max_weight: float = 20.0  # w_max of the paper: exp(A / beta) is clipped here
    value_target: str = "monte_carlo"  # or "td" (see the module docstring)
    tau: float = 0.005  # Polyak rate of the target V (value_target="td" only)
    normalize_observations: bool = True  # offbench convention (as BC): dataset mean/std


class AWR(Algorithm):
    config_class = AWRConfig
    summary = "AWR: V regressed on returns (Monte-Carlo or TD); policy maximises log pi(a|s) exp((R - V(s)) / beta)"

    def __init__(self, observation_space, action_space, config: AWRConfig = AWRConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        if config.value_target not in VALUE_TARGETS:
            raise OffbenchError(f"AWR value_target must be one of {VALUE_TARGETS}, not {config.value_target!r}")
        self.encoder = ObservationEncoder(observation_space, config.normalize_observations)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.actor = CategoricalPolicy(self.encoder.dim, int(action_space.n), config.hidden)
        else:
            self.actor = GaussianPolicy(self.encoder.dim, int(np.prod(action_space.shape)), config.hidden,
                                        action_space.low, action_space.high)
        self.value = mlp(self.encoder.dim, 1, config.hidden)
        if config.value_target == "td":
            self.target_value = copy.deepcopy(self.value).requires_grad_(False)
        self.actor_optim = adam(self.actor.parameters(), lr=config.actor_lr)
        self.value_optim = adam(self.value.parameters(), lr=config.value_lr)

    def prepare(self, dataset: Dataset) -> Dataset:
        self.encoder.fit(dataset.observations)
        return dataset

    def make_sampler(self, dataset: Dataset, batch_size: int, seed: int):
        extras = ("returns_to_go",) if self.config.value_target == "monte_carlo" else ()
        return TransitionSampler(dataset, batch_size=batch_size, seed=seed, gamma=self.config.gamma, extras=extras)

    # ------------------------------------------------------------------ losses
    @torch.no_grad()
    def returns(self, batch: TransitionBatch) -> torch.Tensor:
        """R_{s,a}: the Monte-Carlo return-to-go, or the TD(0) target r + gamma (1 - terminated) V'(s')."""
        if self.config.value_target == "monte_carlo":
            return batch.extras["returns_to_go"]
        next_v = self.target_value(self.encoder(batch.next_observations)).squeeze(-1)
        return batch.rewards + batch.discounts * (1.0 - batch.terminations) * next_v

    def loss(self, batch: TransitionBatch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Algorithm 1, lines 5-6: (value loss, policy loss, metrics)."""
        obs = self.encoder(batch.observations)
        target = self.returns(batch)
        v = self.value(obs).squeeze(-1)
        value_loss = ((target - v) ** 2).mean()
        advantage = target - v.detach()
        weights = (advantage / self.config.temperature).exp().clamp(max=self.config.max_weight)
        log_prob = self.actor.log_prob(obs, batch.actions)
        policy_loss = -(weights * log_prob).mean()
        return value_loss, policy_loss, {"advantage_mean": advantage.mean(), "weight_mean": weights.mean(),
                                         "log_prob": log_prob.detach().mean(), "v_mean": v.detach().mean()}

    # ------------------------------------------------------------------ training
    def update(self, batch: TransitionBatch) -> dict[str, float]:
        value_loss, policy_loss, info = self.loss(batch)
        self.value_optim.zero_grad(set_to_none=True)
        self.actor_optim.zero_grad(set_to_none=True)
        (value_loss + policy_loss).backward()  # the two networks share no parameters
        self.value_optim.step()
        self.actor_optim.step()
        if self.config.value_target == "td":
            soft_update(self.target_value, self.value, self.config.tau)
        return {"value_loss": value_loss.item(), "policy_loss": policy_loss.item(),
                **{k: v.item() for k, v in info.items()}}

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """The most likely action (categorical) or the Gaussian's mean."""
        features = self.encoder(torch.as_tensor(np.asarray(observations)))
        return self.actor(features, deterministic=True)[0].numpy()

    def optimizers(self):
        return {"actor": self.actor_optim, "value": self.value_optim}
