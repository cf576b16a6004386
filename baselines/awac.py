"""AWAC (Nair et al. 2020, "AWAC: Accelerating Online Reinforcement Learning with Offline Datasets").

An off-policy actor-critic whose actor step is a weighted maximum likelihood on the data's
own actions (the paper's Algorithm 1):

    critic:  Q_j(s, a) -> y = r + gamma (1 - terminated) min_j Q'_j(s', a'),  a' ~ pi(.|s')
             (TD evaluation of the current policy; twin critics and Polyak targets)
    actor:   theta = argmax_theta E_{(s,a)~D} [ log pi_theta(a|s) exp(A(s, a) / lambda) ],
             A(s, a) = Q(s, a) - E_{a'~pi(.|s)} Q(s, a'),  Q = min_j Q_j

The weighting is the closed-form solution of policy improvement under a KL constraint to the
data's policy, projected onto the parametric policy. E_{a'~pi} Q is estimated with
``value_samples`` policy samples (1 by default). The weights exp(A / lambda) are clipped at
``max_weight`` = 100 (CORL's AWAC and IQL's clip, REFERENCE §4) so that one large advantage
cannot dominate a batch.

Policy: the shared ``GaussianPolicy`` (tanh-bounded mean, state-independent std, an
unsquashed Gaussian on the action). The actor's whole loss is the log-likelihood of the
dataset's actions, and data often sits exactly on the action bounds (saturated controllers,
uniform-random data): this density is finite there, while the tanh-squashed
``TanhGaussianPolicy`` must invert tanh at +-1 and its log-density (with the change-of-variables
term) is dominated by the clipping constant. Sampled actions are clipped into the bounds.
Defaults (REFERENCE §4, CORL): lambda 1, 2x256 networks, Adam 3e-4, gamma 0.99, tau 0.005.
Continuous actions only.
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
from offbench.nn import adam, GaussianPolicy, ObservationEncoder, QEnsemble, soft_update


@dataclass
class AWACConfig:
    hidden: tuple[int, ...] = (256, 256)  # actor and critics (REFERENCE §4; CORL uses 4x256 on some tasks)
    actor_lr: float = 3e-4  # CORL
    critic_lr: float = 3e-4  # CORL
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics (CORL)
    temperature: float = 1.0  # lambda of the paper (REFERENCE §4, CORL)
    max_weight: float = 100.0  # exp(A / lambda) clipped here (CORL's AWAC; IQL clips at 100 too)
    value_samples: int = 1  # policy samples a' estimating E_{a'~pi} Q(s, a') in the advantage
    normalize_observations: bool = True  # offbench convention (as BC): dataset mean/std


class AWAC(Algorithm):
    config_class = AWACConfig
    summary = "AWAC: TD critic of the policy; actor maximises log pi(a|s) exp((Q(s,a) - E_pi Q(s,.)) / lambda)"

    def __init__(self, observation_space, action_space, config: AWACConfig = AWACConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        if not isinstance(action_space, gym.spaces.Box):
            raise OffbenchError(f"AWAC needs continuous (Box) actions, not {action_space}; for discrete "
                                "actions use awr (CategoricalPolicy), bc or percent_bc")
        act_dim = int(np.prod(action_space.shape))
        self.encoder = ObservationEncoder(observation_space, config.normalize_observations)
        self.actor = GaussianPolicy(self.encoder.dim, act_dim, config.hidden, action_space.low, action_space.high)
        self.critic = QEnsemble(self.encoder.dim, act_dim, members=2, hidden=config.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self._critic_params, self._target_params = list(self.critic.parameters()), list(self.critic_target.parameters())
        self.actor_optim = adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optim = adam(self.critic.parameters(), lr=config.critic_lr)

    def prepare(self, dataset: Dataset) -> Dataset:
        self.encoder.fit(dataset.observations)
        return dataset

    def make_sampler(self, dataset: Dataset, batch_size: int, seed: int):
        return TransitionSampler(dataset, batch_size=batch_size, seed=seed, gamma=self.config.gamma,
                                 device=self.device)

    # ------------------------------------------------------------------ losses
    def critic_loss(self, batch: TransitionBatch, obs: torch.Tensor | None = None,
                    next_obs: torch.Tensor | None = None, noise: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Regress both critics on y = r + gamma (1 - terminated) min_j Q'_j(s', a'), a' ~ pi(.|s').
        ``obs``/``next_obs``: the encoded observations, if already computed; ``noise``: the standard
        normal draw for a' [B, A] (drawn from ``generator`` if None)."""
        obs = self.encoder(batch.observations) if obs is None else obs
        next_obs = self.encoder(batch.next_observations) if next_obs is None else next_obs
        with torch.no_grad():
            next_action, _ = self.actor.sample(*self.actor.mean_std(next_obs), generator=self.generator,
                                               with_log_prob=False, noise=noise)
            next_q = self.critic_target(next_obs, next_action).min(0).values
            target = batch.rewards + batch.discounts * (1.0 - batch.terminations) * next_q
        q = self.critic(obs, batch.actions)
        return ((q - target) ** 2).mean(1).sum(), q

    @torch.no_grad()
    def advantage_weights(self, obs: torch.Tensor, actions: torch.Tensor, mean_std=None,
                          noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(min(exp(A / lambda), max_weight), A) with A = Q(s, a) - mean_k Q(s, a'_k), a'_k ~ pi(.|s).
        ``mean_std``: the policy's (mean, std) at ``obs``, if already computed; ``noise``: the
        standard normal draw for the a'_k [k B, A] (drawn from ``generator`` if None)."""
        k = self.config.value_samples
        q = self.critic(obs, actions).min(0).values
        mean, std = self.actor.mean_std(obs) if mean_std is None else (mean_std[0].detach(), mean_std[1].detach())
        repeated = obs.repeat(k, 1)
        sampled, _ = self.actor.sample(mean.repeat(k, 1), std, generator=self.generator, with_log_prob=False,
                                       noise=noise)
        value = self.critic(repeated, sampled).min(0).values.view(k, -1).mean(0)
        advantage = q - value
        return (advantage / self.config.temperature).exp().clamp(max=self.config.max_weight), advantage

    def actor_loss(self, batch: TransitionBatch, obs: torch.Tensor | None = None,
                   noise: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Algorithm 1's actor step as a loss: -E_D[ log pi(a|s) min(exp(A(s, a) / lambda), max_weight) ].

        One policy forward at s serves both the sampled a'_k (detached) and log pi(a|s)."""
        obs = self.encoder(batch.observations) if obs is None else obs
        mean, std = self.actor.mean_std(obs)
        weights, advantage = self.advantage_weights(obs, batch.actions, (mean, std), noise)
        log_prob = self.actor.gaussian_log_prob(mean, std, batch.actions)
        return -(weights * log_prob).mean(), {"advantage_mean": advantage.mean(), "weight_mean": weights.mean(),
                                              "log_prob": log_prob.detach().mean()}

    # ------------------------------------------------------------------ training
    compiled_parts = ("_critic_gradients", "_actor_gradients")

    def _critic_gradients(self, batch: TransitionBatch, noise: torch.Tensor):
        """Critic loss and backward: (encoded observations, loss, mean Q)."""
        obs, next_obs = self.encoder(batch.observations), self.encoder(batch.next_observations)
        critic_loss, q = self.critic_loss(batch, obs, next_obs, noise)
        critic_loss.backward()
        return obs, critic_loss.detach(), q.detach().mean()

    def _actor_gradients(self, batch: TransitionBatch, obs: torch.Tensor, noise: torch.Tensor
                         ) -> dict[str, torch.Tensor]:
        """Actor loss and backward: its metrics."""
        actor_loss, info = self.actor_loss(batch, obs, noise)
        actor_loss.backward()
        return {"actor_loss": actor_loss.detach(), **info}

    def update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        """Critic step, actor step, Polyak update. Metrics are 0-d tensors (no host read here)."""
        shape, device = batch.actions.shape, self.actor.action_scale.device
        # the draws in the order the steps use them: a' ~ pi(.|s'), then the k a'_k ~ pi(.|s)
        next_noise = torch.randn(shape, generator=self.generator, device=device)
        value_noise = torch.randn((shape[0] * self.config.value_samples, *shape[1:]), generator=self.generator,
                                  device=device)
        obs, critic_loss, q_mean = self._critic_gradients(batch, next_noise)
        self.critic_optim.step()
        self.critic_optim.zero_grad(set_to_none=True)

        info = self._actor_gradients(batch, obs, value_noise)
        self.actor_optim.step()
        self.actor_optim.zero_grad(set_to_none=True)

        soft_update(self._target_params, self._critic_params, self.config.tau)
        return {"critic_loss": critic_loss, "actor_loss": info.pop("actor_loss"), "q_mean": q_mean, **info}

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """The Gaussian's mean (deterministic evaluation)."""
        features = self.encoder(torch.as_tensor(np.asarray(observations), device=self.device))
        return self.actor(features, deterministic=True)[0].cpu().numpy()

    def optimizers(self):
        return {"actor": self.actor_optim, "critic": self.critic_optim}
