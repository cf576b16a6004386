"""Implicit Q-Learning (Kostrikov, Nair and Levine, "Offline Reinforcement Learning with Implicit
Q-Learning", ICLR 2022).

IQL never evaluates an action the dataset does not contain. Three losses, one per network:

- eq. (5), value: expectile regression of V(s) on the target critics' min_j Qbar_j(s, a) at the
  data's actions, L_V = E[ L2^tau(min_j Qbar_j(s, a) - V(s)) ] with L2^tau(u) = |tau - 1(u < 0)| u^2;
  an upper expectile (tau = 0.7) approximates max over in-support actions;
- eq. (6), critics: TD on the value of the next state, L_Q = E[ (r + gamma (1 - d) V(s') - Q_j(s, a))^2 ]
  for both twins (d = termination; time-limit truncations bootstrap);
- eq. (7), policy extraction by advantage-weighted regression,
  L_pi = -E[ min(exp(beta (min_j Qbar_j(s, a) - V(s))), 100) log pi(a | s) ].

The three losses touch disjoint parameters (targets are detached), so they are summed and
taken in one backward pass and one Adam step: the concurrent form of the paper's Algorithm 1.

Continuous actions: ``offbench.nn.GaussianPolicy``, a diagonal Gaussian with a **state-independent**
log-std (one learned parameter per action dimension) whose **mean is squashed by tanh** into the
action bounds; the distribution itself is not squashed (no tanh change of variables), so the
dataset's actions get their plain Gaussian log-density. ``act`` returns the mean.
Discrete actions: Q is a [B, A] head per critic (``EnsembleMLP``), the policy a
``CategoricalPolicy``; ``act`` returns its most probable action.

Defaults are the paper's locomotion settings (REFERENCE §4): expectile 0.7, beta 3.0, weights
clipped at 100, 2x256 MLPs, lr 3e-4, batch 256 (``TrainConfig``), gamma 0.99, tau 0.005, twin Q
with the min, rewards scaled by 1000 / (max episode return - min episode return).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from offbench.algorithm import Algorithm
from offbench.data.dataset import Dataset
from offbench.errors import OffbenchError
from offbench.nn import (adam, CategoricalPolicy, EnsembleMLP, GaussianPolicy, ObservationEncoder, QEnsemble, mlp,
                         soft_update)

REWARD_SCALINGS = ("return_range", "none")


@dataclass
class IQLConfig:
    hidden: tuple[int, ...] = (256, 256)  # all three networks (paper: 2x256)
    lr: float = 3e-4  # actor, critics and value (paper)
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    expectile: float = 0.7  # tau of eq. (5); paper: 0.7 locomotion, 0.9 AntMaze
    beta: float = 3.0  # inverse temperature of eq. (7); paper: 3.0 locomotion, 10.0 AntMaze
    max_weight: float = 100.0  # exp(beta A) is clipped at this (paper)
    critics: int = 2  # twin Q, the min is used in eqs. (5) and (7)
    # "return_range": r * return_range_target / (max episode return - min episode return), the
    # paper's locomotion normalisation (REFERENCE §4); "none": rewards as stored (use it for
    # sparse-goal or already well-scaled rewards). The factor is fitted in ``prepare`` and kept as
    # the buffer ``reward_scale``, so a resumed or reloaded run uses exactly the same one.
    reward_scaling: str = "return_range"
    return_range_target: float = 1000.0
    # >0: the actor's learning rate follows a cosine decay to 0 over this many updates (the IQL
    # authors decay the actor lr this way over their 1M steps); 0: constant.
    actor_cosine_steps: int = 0
    normalize_observations: bool = True


class IQL(Algorithm):
    config_class = IQLConfig
    summary = "IQL: expectile value regression, TD critics on V(s'), advantage-weighted policy extraction"

    def __init__(self, observation_space, action_space, config: IQLConfig = IQLConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        if config.reward_scaling not in REWARD_SCALINGS:
            raise OffbenchError(f"unknown reward_scaling {config.reward_scaling!r}; choose one of {REWARD_SCALINGS}")
        self.encoder = ObservationEncoder(observation_space, config.normalize_observations)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        obs_dim, hidden = self.encoder.dim, config.hidden
        if self.discrete:
            n = int(action_space.n)
            self.critic = EnsembleMLP(config.critics, obs_dim, n, hidden)  # [critics, B, A]
            self.policy = CategoricalPolicy(obs_dim, n, hidden)
        else:
            act_dim = int(np.prod(action_space.shape))
            self.critic = QEnsemble(obs_dim, act_dim, config.critics, hidden)  # [critics, B]
            self.policy = GaussianPolicy(obs_dim, act_dim, hidden, action_space.low, action_space.high)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self._critic_params, self._target_params = list(self.critic.parameters()), list(self.critic_target.parameters())
        self.value = mlp(obs_dim, 1, hidden)
        self.register_buffer("reward_scale", torch.tensor(1.0))
        self.register_buffer("updates", torch.tensor(0, dtype=torch.int64))
        # ``updates`` on the host, for the actor's cosine schedule without reading the buffer back
        # every step; None until first needed, and again after a state dict is loaded.
        self._host_updates: int | None = None
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_host_updates", None))
        self.optim = adam([
            {"params": self.value.parameters(), "name": "value"},
            {"params": self.critic.parameters(), "name": "critic"},
            {"params": self.policy.parameters(), "name": "actor"},
        ], lr=config.lr)

    # ------------------------------------------------------------------ data
    def prepare(self, dataset: Dataset) -> Dataset:
        self.encoder.fit(dataset.observations)
        if self.config.reward_scaling == "none":
            return dataset
        returns = dataset.episode_returns(1.0)
        spread = float(returns.max() - returns.min())
        self.reward_scale.fill_(self.config.return_range_target / spread if spread > 0 else 1.0)
        return scale_rewards(dataset, float(self.reward_scale))

    # ------------------------------------------------------------------ networks
    def q_values(self, critic: nn.Module, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_j(s, a) of every critic at the given actions: [critics, B]."""
        if self.discrete:
            q = critic(features)  # [critics, B, A]
            return q.gather(-1, actions.long().view(1, -1, 1).expand(q.shape[0], -1, 1)).squeeze(-1)
        return critic(features, actions)

    # ------------------------------------------------------------------ the losses
    @staticmethod
    def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
        """Eq. (5)'s L2^tau(u) = |tau - 1(u < 0)| u^2 averaged, with u = Q - V."""
        weight = torch.where(diff < 0, 1.0 - expectile, expectile)
        return (weight * diff.pow(2)).mean()

    def advantage_weights(self, advantage: torch.Tensor) -> torch.Tensor:
        """Eq. (7)'s exp(beta A), clipped at ``max_weight``."""
        return torch.exp(self.config.beta * advantage).clamp(max=self.config.max_weight)

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """L_V (eq. 5) + L_Q (eq. 6) + L_pi (eq. 7); each term reaches only its own network."""
        cfg = self.config
        obs, next_obs = self.encoder(batch.observations), self.encoder(batch.next_observations)
        reward = batch.rewards
        with torch.no_grad():
            q_target = self.q_values(self.critic_target, obs, batch.actions).min(0).values  # [B]
        v_both = self.value(torch.cat([obs, next_obs])).squeeze(-1)  # one forward for V(s) and V(s')
        v, v_next = v_both[: len(obs)], v_both[len(obs):].detach()

        value_loss = self.expectile_loss(q_target - v, cfg.expectile)  # eq. (5)

        td_target = reward + cfg.gamma * (1.0 - batch.terminations) * v_next
        q = self.q_values(self.critic, obs, batch.actions)  # [critics, B]
        critic_loss = ((q - td_target) ** 2).mean(1).sum()  # eq. (6), summed over the twins

        advantage = q_target - v.detach()
        weights = self.advantage_weights(advantage)
        actor_loss = -(weights * self.policy.log_prob(obs, batch.actions)).mean()  # eq. (7)

        info = {"value_loss": value_loss, "critic_loss": critic_loss, "actor_loss": actor_loss,
                "v_mean": v.mean(), "q_mean": q.mean(), "advantage_mean": advantage.mean(),
                "weight_mean": weights.mean(), "weight_clipped": (weights >= cfg.max_weight).float().mean()}
        return value_loss + critic_loss + actor_loss, info

    def update(self, batch) -> dict[str, torch.Tensor]:
        """One step of all three losses. Metrics are 0-d tensors (no host read here)."""
        if self.config.actor_cosine_steps > 0:
            if self._host_updates is None:
                self._host_updates = int(self.updates)  # once per run or resume, not per step
            progress = min(self._host_updates, self.config.actor_cosine_steps) / self.config.actor_cosine_steps
            self.optim.param_groups[2]["lr"] = self.config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
        info = self._gradients(batch)
        self.optim.step()
        self.optim.zero_grad(set_to_none=True)
        soft_update(self._target_params, self._critic_params, self.config.tau)
        self.updates += 1
        if self._host_updates is not None:
            self._host_updates += 1
        return info

    compiled_parts = ("_gradients",)

    def _gradients(self, batch) -> dict[str, torch.Tensor]:
        """The three losses and one backward pass (what ``compile_update`` compiles): the metrics."""
        total, info = self.loss(batch)
        total.backward()
        return {k: v.detach() for k, v in info.items()}

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        features = self.encoder(torch.as_tensor(np.asarray(observations), device=self.device))
        return self.policy(features, deterministic=True)[0].cpu().numpy()

    def optimizers(self):
        return {"iql": self.optim}


def scale_rewards(dataset: Dataset, scale: float) -> Dataset:
    """The same dataset with every reward multiplied by ``scale`` (other arrays shared, not copied)."""
    rewards = (dataset.rewards.astype(np.float64) * scale).astype(dataset.rewards.dtype)
    return Dataset({**dataset.arrays, "rewards": rewards}, replace(dataset.metadata, checksums={}))
