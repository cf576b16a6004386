"""TD3+BC (Fujimoto & Gu 2021, "A Minimalist Approach to Offline Reinforcement Learning").

TD3 (Fujimoto et al. 2018: twin critics, clipped double-Q targets, target policy smoothing,
delayed actor and target updates) with two changes: a behaviour-cloning term in the actor's
objective, and states normalised with the dataset's mean and standard deviation. The
actor maximises (the paper's eq. 3)

    pi = argmax_pi E_{(s,a)~D} [ lambda Q(s, pi(s)) - (pi(s) - a)^2 ],
    lambda = alpha / ( (1/N) sum_i |Q(s_i, pi(s_i))| )   (mean over the minibatch, no gradient)

so the Q term's scale is set by alpha alone, whatever the reward scale. Defaults are the
paper's (REFERENCE §4): alpha 2.5, policy delay 2, target noise 0.2 clipped at 0.5 (both in
units of half the action range, the paper's "max action"), tau 0.005, lr 3e-4, gamma 0.99,
2x256 networks, batch 256 (``TrainConfig``). Two details follow the authors' public
implementation, against which alpha = 2.5 was tuned: Q in lambda is the first critic's, and
the squared error is averaged over action dimensions as well as the batch. Continuous
actions only.
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
from offbench.nn import adam, DeterministicPolicy, ObservationEncoder, QEnsemble, soft_update


@dataclass
class TD3BCConfig:
    hidden: tuple[int, ...] = (256, 256)  # actor and both critics (paper: 2x256)
    actor_lr: float = 3e-4  # paper (Adam)
    critic_lr: float = 3e-4  # paper (Adam)
    gamma: float = 0.99  # paper
    tau: float = 0.005  # paper: Polyak rate of the target actor and critics
    alpha: float = 2.5  # paper: the one new hyperparameter, weight of the Q term via lambda
    policy_noise: float = 0.2  # paper: target smoothing noise std, x half the action range
    noise_clip: float = 0.5  # paper: the noise is clipped to +-0.5 x half the action range
    policy_delay: int = 2  # paper: the actor and targets are updated every 2nd critic update
    normalize_observations: bool = True  # paper: states normalised with the dataset's mean/std


class TD3BC(Algorithm):
    config_class = TD3BCConfig
    summary = "TD3+BC: TD3 whose actor also minimises (pi(s) - a)^2, the Q term scaled by alpha / mean|Q|"

    def __init__(self, observation_space, action_space, config: TD3BCConfig = TD3BCConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        if not isinstance(action_space, gym.spaces.Box):
            raise OffbenchError(f"TD3+BC needs continuous (Box) actions, not {action_space}; for discrete "
                                "actions use awr (CategoricalPolicy), bc or percent_bc")
        act_dim = int(np.prod(action_space.shape))
        self.encoder = ObservationEncoder(observation_space, config.normalize_observations)
        self.actor = DeterministicPolicy(self.encoder.dim, act_dim, config.hidden, action_space.low, action_space.high)
        self.critic = QEnsemble(self.encoder.dim, act_dim, members=2, hidden=config.hidden)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optim = adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optim = adam(self.critic.parameters(), lr=config.critic_lr)
        # both Polyak updates (actor and critics) as one fused op over these lists
        self._online_params = [*self.actor.parameters(), *self.critic.parameters()]
        self._target_params = [*self.actor_target.parameters(), *self.critic_target.parameters()]
        self._updates = 0  # critic updates so far; saved in the state_dict (get_extra_state)
        self._actor_metrics: dict[str, torch.Tensor] = {}  # of the latest actor update

    def prepare(self, dataset: Dataset) -> Dataset:
        self.encoder.fit(dataset.observations)
        return dataset

    def make_sampler(self, dataset: Dataset, batch_size: int, seed: int):
        return TransitionSampler(dataset, batch_size=batch_size, seed=seed, gamma=self.config.gamma,
                                 device=self.device)

    # ------------------------------------------------------------------ losses
    def critic_loss(self, batch: TransitionBatch, noise: torch.Tensor | None = None,
                    obs: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """TD3's clipped double-Q regression with target policy smoothing; returns (loss, Q [2, B]).
        ``noise``: the standard normal draw eps / sigma [B, A] (drawn from ``generator`` if None);
        ``obs``: the encoded observations, if already computed."""
        cfg = self.config
        obs = self.encoder(batch.observations) if obs is None else obs
        next_obs = self.encoder(batch.next_observations)
        scale = self.actor.action_scale
        with torch.no_grad():
            # a' = clip(pi_target(s') + clip(eps, -c, c), low, high), eps ~ N(0, sigma^2), both x half-range.
            if noise is None:
                noise = torch.randn(batch.actions.shape, generator=self.generator, device=scale.device)
            eps = noise * cfg.policy_noise
            next_action = self.actor_target(next_obs) + eps.clamp(-cfg.noise_clip, cfg.noise_clip) * scale
            next_action = next_action.clamp(self.actor.action_bias - scale, self.actor.action_bias + scale)
            # y = r + gamma (1 - terminated) min_j Q'_j(s', a'); discounts = gamma for 1-step batches.
            next_q = self.critic_target(next_obs, next_action).min(0).values
            target = batch.rewards + batch.discounts * (1.0 - batch.terminations) * next_q
        q = self.critic(obs, batch.actions)
        return ((q - target) ** 2).mean(1).sum(), q  # sum over the two critics of their MSE

    def actor_loss(self, batch: TransitionBatch, obs: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The paper's eq. 3 as a loss: -lambda Q_1(s, pi(s)) + (pi(s) - a)^2, lambda = alpha / mean|Q_1|."""
        obs = self.encoder(batch.observations) if obs is None else obs
        pi = self.actor(obs)
        q = self.critic(obs, pi)[0]
        lam = self.config.alpha / q.abs().mean().detach()
        bc = ((pi - batch.actions) ** 2).mean()
        return -lam * q.mean() + bc, {"lambda": lam, "bc_loss": bc.detach()}

    # ------------------------------------------------------------------ training
    compiled_parts = ("_critic_gradients", "_actor_gradients")

    def _critic_gradients(self, batch: TransitionBatch, noise: torch.Tensor):
        """Critic loss and backward: (encoded observations, loss, mean Q)."""
        obs = self.encoder(batch.observations)
        critic_loss, q = self.critic_loss(batch, noise, obs)
        critic_loss.backward()
        return obs, critic_loss.detach(), q.detach().mean()

    def _actor_gradients(self, batch: TransitionBatch, obs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Actor loss and backward (the critics' weights frozen by the caller): its metrics."""
        actor_loss, info = self.actor_loss(batch, obs)
        actor_loss.backward()
        return {"actor_loss": actor_loss.detach(), **info}

    def update(self, batch: TransitionBatch) -> dict[str, torch.Tensor]:
        """One critic step, and on every ``policy_delay``-th call the actor step and the Polyak
        updates. Metrics are 0-d tensors (no host read here; the training loop reads them)."""
        noise = torch.randn(batch.actions.shape, generator=self.generator, device=self.actor.action_scale.device)
        obs, critic_loss, q_mean = self._critic_gradients(batch, noise)
        self.critic_optim.step()
        self.critic_optim.zero_grad(set_to_none=True)

        # Delayed actor and target updates: on critic updates 1, 3, 5, ... for policy_delay 2 (the
        # authors' code starts at the 2nd; starting at the 1st lets every step report actor metrics).
        if self._updates % self.config.policy_delay == 0:
            self.critic.requires_grad_(False)  # the actor's gradient only; no critic weight gradients
            self._actor_metrics = self._actor_gradients(batch, obs)
            self.actor_optim.step()
            self.actor_optim.zero_grad(set_to_none=True)
            self.critic.requires_grad_(True)
            soft_update(self._target_params, self._online_params, self.config.tau)  # actor and critics at once
        self._updates += 1
        # Actor metrics repeat the latest actor update's, so per-interval averages are over actor updates.
        return {"critic_loss": critic_loss, "q_mean": q_mean, **self._actor_metrics}

    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor(self._updates)  # a resumed run keeps the policy-delay phase

    def set_extra_state(self, state: torch.Tensor) -> None:
        self._updates = int(state)

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        return self.actor(self.encoder(torch.as_tensor(np.asarray(observations), device=self.device))).cpu().numpy()

    def optimizers(self):
        return {"actor": self.actor_optim, "critic": self.critic_optim}
