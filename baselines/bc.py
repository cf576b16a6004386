"""Behaviour cloning and %BC.

BC maximises the likelihood of the dataset's actions: for continuous actions with a
deterministic policy and a fixed-variance Gaussian likelihood this is the mean squared error
||pi(s) - a||^2 (as in CORL and d3rlpy); for discrete actions the cross-entropy -log pi(a|s).

%BC runs BC on the best part of the data. Two definitions exist (REFERENCE §3), both named:
``top_episodes_by_count`` (CORL: the top X% of episodes by return, the default) and
``top_episodes_by_timesteps`` (Decision Transformer paper: best episodes holding X% of the steps).
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from offbench.algorithm import Algorithm
from offbench.data.compose import percent_bc
from offbench.data.dataset import Dataset
from offbench.nn import adam, CategoricalPolicy, DeterministicPolicy, ObservationEncoder


@dataclass
class BCConfig:
    hidden: tuple[int, ...] = (256, 256)
    lr: float = 3e-4  # CORL
    normalize_observations: bool = True


class BC(Algorithm):
    config_class = BCConfig
    summary = "behaviour cloning: maximum likelihood of the dataset's actions (MSE / cross-entropy)"

    def __init__(self, observation_space, action_space, config: BCConfig = BCConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        self.encoder = ObservationEncoder(observation_space, config.normalize_observations)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.policy = CategoricalPolicy(self.encoder.dim, int(action_space.n), config.hidden)
        else:
            self.policy = DeterministicPolicy(self.encoder.dim, int(np.prod(action_space.shape)), config.hidden,
                                              action_space.low, action_space.high)
        self.optim = adam(self.policy.parameters(), lr=config.lr)

    def prepare(self, dataset: Dataset) -> Dataset:
        self.encoder.fit(dataset.observations)
        return dataset

    def loss(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        features = self.encoder(obs)
        if self.discrete:
            return -self.policy.log_prob(features, actions).mean()
        return ((self.policy(features) - actions) ** 2).sum(-1).mean()

    compiled_parts = ("_gradients",)

    def _gradients(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The loss and its backward pass (what ``compile_update`` compiles)."""
        loss = self.loss(obs, actions)
        loss.backward()
        return loss.detach()

    def update(self, batch) -> dict[str, torch.Tensor]:
        loss = self._gradients(batch.observations, batch.actions)
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        return {"bc_loss": loss}  # a 0-d tensor: the training loop reads it when it logs

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        features = self.encoder(torch.as_tensor(np.asarray(observations), device=self.device))
        if self.discrete:
            return self.policy(features, deterministic=True)[0].cpu().numpy()
        return self.policy(features).cpu().numpy()

    def optimizers(self):
        return {"policy": self.optim}


@dataclass
class PercentBCConfig(BCConfig):
    fraction: float = 0.1
    definition: str = "top_episodes_by_count"  # or "top_episodes_by_timesteps"


class PercentBC(BC):
    config_class = PercentBCConfig
    summary = "%BC: behaviour cloning on the top fraction of episodes by return (definition named in the config)"

    def prepare(self, dataset: Dataset) -> Dataset:
        return super().prepare(percent_bc(dataset, self.config.fraction, self.config.definition))
