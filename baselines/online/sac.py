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

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, *, deterministic: bool = False, step: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Actions and their exact log-probabilities under the squashed Gaussian, for a batch."""
        action, log_prob = self.actor(torch.as_tensor(obs, dtype=torch.float32), deterministic, self.generator)
        return action.numpy(), log_prob.numpy().astype(np.float64)

    # ------------------------------------------------------------------ learning
    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.config
        obs, action, reward = batch["observations"], batch["actions"], batch["rewards"]
        next_obs, terminated = batch["next_observations"], batch["terminations"]
        alpha = self.log_alpha.exp().detach()

        # Critic (eq. 5-6): regress every Q_j on r + gamma (1 - d) (min_j Qbar_j(s', a') - alpha log pi(a'|s')).
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_obs, generator=self.generator)
            next_q = self.critic_target(next_obs, next_action).min(0).values
            target = reward + cfg.gamma * (1.0 - terminated) * (next_q - alpha * next_log_prob)
        q = self.critic(obs, action)
        critic_loss = 0.5 * ((q - target) ** 2).mean(1).sum()
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optim.step()

        # Actor (eq. 7, reparameterised): minimise alpha log pi(a~|s) - min_j Q_j(s, a~).
        # The critic is frozen for this loss: its weights get no gradient (a third of the backward
        # pass saved; the critic's own step above had already been taken), the actions still do.
        new_action, log_prob = self.actor(obs, generator=self.generator)
        self.critic.requires_grad_(False)
        q_new = self.critic(obs, new_action).min(0).values
        self.critic.requires_grad_(True)
        actor_loss = (alpha * log_prob - q_new).mean()
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optim.step()

        # Temperature (eq. 18): minimise -alpha (log pi(a|s) + target entropy).
        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_optim.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optim.step()

        soft_update(self._target_params, self._critic_params, cfg.tau)
        # 0-d tensors: reading them back to the host costs a synchronisation per metric on a GPU,
        # and most callers never read them (the online loop does not log per-update metrics)
        return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "alpha": alpha,
                "q_mean": q.detach().mean(), "entropy": -log_prob.detach().mean()}

    # ------------------------------------------------------------------ persistence
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optim, "critic": self.critic_optim, "alpha": self.alpha_optim}

    def policy_module(self) -> nn.Module:
        """The part that is a behaviour policy (committed under datasets/policies/)."""
        return self.actor
