"""Soft Actor-Critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications").

Twin Q critics with target networks, a tanh-squashed Gaussian actor, and automatic entropy
tuning towards a target entropy of -|A|. Hyperparameters follow REFERENCE §4 (2x256, lr 3e-4,
batch 256, tau 0.005, one update per env step after a random warm-up).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from offbench.nn import ForeachAdam, QEnsemble, TanhGaussianPolicy, soft_update


@dataclass
class SACConfig:
    hidden: tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    init_alpha: float = 1.0
    target_entropy: float | None = None  # None: -|A| (the paper's heuristic)
    critics: int = 2  # twin Q (clipped double-Q)
    compile: bool = False  # torch.compile the update's gradient parts (SAC.compile_update; opt-in, other rounding)


class SAC(nn.Module):
    """``act`` for rollouts, ``update`` for one gradient step on a batch of transitions."""

    config_class = SACConfig

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.spaces.Box,
                 config: SACConfig = SACConfig(), seed: int = 0):
        super().__init__()
        self.config = config
        obs_dim, act_dim = int(np.prod(observation_space.shape)), int(np.prod(action_space.shape))
        self.actor = TanhGaussianPolicy(obs_dim, act_dim, config.hidden, action_space.low, action_space.high)
        self.critic = QEnsemble(obs_dim, act_dim, config.critics, config.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(config.init_alpha))))
        self.target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy
        # Adam's numbers with less Python (ForeachAdam); the fused kernel of offbench.nn.adam rounds
        # differently and would change the bits of every dataset a SAC run generates
        self.actor_optim = ForeachAdam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optim = ForeachAdam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_optim = ForeachAdam([self.log_alpha], lr=config.alpha_lr)
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())
        self.generator = torch.Generator().manual_seed(seed)  # action noise, never the global RNG
        if config.compile:
            self.compile_update()

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, *, deterministic: bool = False, step: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Actions and their exact log-probabilities under the squashed Gaussian, for a batch."""
        action, log_prob = self.actor(torch.as_tensor(obs, dtype=torch.float32), deterministic, self.generator)
        return action.numpy(), log_prob.numpy().astype(np.float64)

    # ------------------------------------------------------------------ learning
    def _critic_gradients(self, obs, action, reward, next_obs, terminated, alpha, next_noise):
        """Critic loss (eq. 5-6) and its backward: regress every Q_j on
        r + gamma (1 - d) (min_j Qbar_j(s', a') - alpha log pi(a'|s')), a' drawn with ``next_noise``."""
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_obs, noise=next_noise)
            next_q = self.critic_target(next_obs, next_action).min(0).values
            target = reward + self.config.gamma * (1.0 - terminated) * (next_q - alpha * next_log_prob)
        q = self.critic(obs, action)
        critic_loss = 0.5 * ((q - target) ** 2).mean(1).sum()
        critic_loss.backward()
        return critic_loss.detach(), q.detach().mean()

    def _actor_gradients(self, obs, alpha, noise):
        """Actor loss (eq. 7, reparameterised: alpha log pi(a~|s) - min_j Q_j(s, a~), a~ drawn with
        ``noise``) and its backward, called with the critic frozen (``update``)."""
        new_action, log_prob = self.actor(obs, noise=noise)
        q_new = self.critic(obs, new_action).min(0).values
        actor_loss = (alpha * log_prob - q_new).mean()
        actor_loss.backward()
        return actor_loss.detach(), log_prob.detach()

    #: the gradient parts ``compile_update`` compiles (the draws, optimiser steps and Polyak update stay eager)
    compiled_parts = ("_critic_gradients", "_actor_gradients")

    def compile_update(self) -> "SAC":
        """Compile the gradient parts with ``torch.compile`` (``offbench.algorithm.compile_step``: one
        graph each, static shapes), as the offline baselines' ``compile_update`` does. Opt-in
        (``offbench online train sac --set compile=true``): the compiled graphs round differently
        from the eager path, and the datasets offbench generates with SAC are built eagerly."""
        from offbench.algorithm import compile_step

        for name in self.compiled_parts:
            setattr(self, name, compile_step(getattr(self, name), options={"cpp_wrapper": True}))
        return self

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs, action, reward = batch["observations"], batch["actions"], batch["rewards"]
        next_obs, terminated = batch["next_observations"], batch["terminations"]
        alpha = self.log_alpha.exp().detach()
        # the draws, in the order the steps use them: a' ~ pi(.|s'), then a~ ~ pi(.|s)
        next_noise = torch.randn(action.shape, generator=self.generator, dtype=obs.dtype)
        critic_loss, q_mean = self._critic_gradients(obs, action, reward, next_obs, terminated, alpha, next_noise)
        self.critic_optim.step()
        self.critic_optim.zero_grad(set_to_none=True)

        noise = torch.randn(action.shape, generator=self.generator, dtype=obs.dtype)
        # The critic is frozen for the actor's loss: its weights get no gradient (a third of the backward
        # pass saved; the critic's own step was already taken), the actions still do.
        self.critic.requires_grad_(False)
        try:
            actor_loss, log_prob = self._actor_gradients(obs, alpha, noise)
        finally:
            self.critic.requires_grad_(True)
        self.actor_optim.step()
        self.actor_optim.zero_grad(set_to_none=True)

        # Temperature (eq. 18): minimise -alpha (log pi(a|s) + target entropy).
        alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy)).mean()
        self.alpha_optim.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optim.step()

        soft_update(self._target_params, self._critic_params, self.config.tau)
        # 0-d tensors: reading them back to the host costs a synchronisation per metric on a GPU,
        # and most callers never read them (the online loop does not log per-update metrics)
        return {"critic_loss": critic_loss, "actor_loss": actor_loss, "alpha": alpha, "q_mean": q_mean,
                "entropy": -log_prob.mean()}

    # ------------------------------------------------------------------ persistence
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optim, "critic": self.critic_optim, "alpha": self.alpha_optim}

    def policy_module(self) -> nn.Module:
        """The part that is a behaviour policy (committed under datasets/policies/)."""
        return self.actor
