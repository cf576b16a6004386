"""Hierarchical implicit Q-learning (HIQL): one goal-conditioned value V(s, g), learned by
action-free IQL, extracts two policies: a high-level policy that proposes a subgoal k steps
ahead as a latent state, and a low-level policy that reaches it (Park, Ghosh, Eysenbach and
Levine, "HIQL: Offline Goal-Conditioned RL with Latent States as Actions", NeurIPS 2023, §4),
with OGBench's settings (Park et al., ICLR 2025).

Networks: the goal representation phi(s, g) = sqrt(rep_dim) u / ||u||, u = MLP([s, g]) (rep_dim
10, length-normalised; HIQL §4.3); two value networks V_j(s, g) = MLP_j([s, phi(s, g)]) and their
Polyak targets (phi included); the low-level actor pi_l(a | s, phi(s, w)) and the high-level actor
pi_h(z | s, g), both OGBench Gaussians with unit std (pi_h's "action" is a representation z).

The losses (r = 0 at the goal, -1 elsewhere; m = 0 at the goal, 1 elsewhere):

- value, HIQL §4.1 (action-free IQL), as GCIVL's, g a value goal (current 0.2, geometric future
  0.5, random 0.3):
      L_V = sum_j E[ |tau - 1(A < 0)| (r + gamma m Vbar_j(s', g) - V_j(s, g))^2 ],
      A = r + gamma m min_j Vbar_j(s', g) - (Vbar_1(s, g) + Vbar_2(s, g)) / 2;
- low-level policy, HIQL §4.2, w = s_{t+k} the state k = 25 steps ahead (capped at the episode end):
      L_l = -E[ min(exp(beta_l (V(s', w) - V(s, w))), 100) log pi_l(a | s, stopgrad phi(s, w)) ];
- high-level policy, HIQL §4.2, g an actor goal and s_{t+k} the state k steps ahead on the way
  to it (``GoalBatch.high_actor_targets``):
      L_h = -E[ min(exp(beta_h (V(s_{t+k}, g) - V(s, g))), 100) log pi_h(phi(s, s_{t+k}) | s, g) ],
  V = (V_1 + V_2) / 2 of the online networks and the target representation without gradient.

phi learns from L_V only (OGBench's ``low_actor_rep_grad=False``). Acting: z = mean of pi_h,
length-normalised, then the mean of pi_l(. | s, z), clipped to [-1, 1].

Defaults are OGBench's (REFERENCE §7, ``impls/agents/hiql.py`` and ``hyperparameters.sh``): 3x512
GELU MLPs, LayerNorm in phi and V, Adam 3e-4, expectile 0.7, beta_h = beta_l = 3, subgoal steps
25 (the sampler's), rep_dim 10, tau 0.005, discount 0.99 (0.995 on giant), batch 1024.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from offbench.errors import OffbenchError
from offbench.goal import (MAX_AWR_WEIGHT, OGBENCH_HIDDEN, GaussianGoalActor, GoalAlgorithm, awr_weights,
                           expectile_loss, goal_ensemble, goal_mlp)
from offbench.nn import adam


@dataclass
class HIQLConfig:
    hidden: tuple[int, ...] = OGBENCH_HIDDEN  # OGBench: 3x512 for phi, V and both actors
    lr: float = 3e-4  # OGBench
    layer_norm: bool = True  # OGBench: LayerNorm in phi and V (never in the actors)
    expectile: float = 0.7  # OGBench's HIQL
    high_alpha: float = 3.0  # beta_h, AWR inverse temperature of the high-level policy (OGBench)
    low_alpha: float = 3.0  # beta_l, of the low-level policy (OGBench)
    rep_dim: int = 10  # size of phi(s, g) (OGBench)
    tau: float = 0.005  # Polyak rate of the target value
    discount: float | None = None  # None: OGBench's, 0.995 on the giant maze, else 0.99
    const_std: bool = True  # OGBench: both actors' sigma is 1


class GoalRepresentation(nn.Module):
    """phi(s, g) = sqrt(rep_dim) u / ||u||, u = MLP([s, g]) (HIQL §4.3, OGBench's length normalisation)."""

    def __init__(self, in_dim: int, rep_dim: int, hidden, layer_norm: bool):
        super().__init__()
        self.net = goal_mlp(in_dim, rep_dim, hidden, layer_norm=layer_norm)
        self.rep_dim = rep_dim

    def forward(self, observations: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        return normalise(self.net(torch.cat([observations, goals], -1)))


def normalise(z: torch.Tensor) -> torch.Tensor:
    """z scaled to length sqrt(dim)."""
    return z / torch.linalg.vector_norm(z, dim=-1, keepdim=True).clamp(min=1e-12) * math.sqrt(z.shape[-1])


class GoalValue(nn.Module):
    """V_j(s, g) = MLP_j([s, phi(s, g)]) for two members: [2, B]."""

    def __init__(self, obs_dim: int, goal_dim: int, config: HIQLConfig):
        super().__init__()
        self.rep = GoalRepresentation(obs_dim + goal_dim, config.rep_dim, config.hidden, config.layer_norm)
        self.value = goal_ensemble(2, obs_dim + config.rep_dim, 1, config.hidden, layer_norm=config.layer_norm)

    def forward(self, observations: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:
        return self.value(torch.cat([observations, self.rep(observations, goals)], -1)).squeeze(-1)


class HIQL(GoalAlgorithm):
    config_class = HIQLConfig
    summary = "HIQL: action-free IQL value; high-level policy over latent subgoals, low-level policy to reach them"
    method = "hiql"

    def __init__(self, observation_space, action_space, config: HIQLConfig = HIQLConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        if config.rep_dim < 1:
            raise OffbenchError(f"rep_dim must be >= 1, got {config.rep_dim}")
        self.value = GoalValue(self.obs_dim, self.goal_dim, config)
        self.target_value = copy.deepcopy(self.value).requires_grad_(False)
        self.low_actor = GaussianGoalActor(self.obs_dim + config.rep_dim, self.act_dim, config.hidden,
                                           const_std=config.const_std)
        self.high_actor = GaussianGoalActor(self.obs_dim + self.goal_dim, config.rep_dim, config.hidden,
                                            const_std=config.const_std)
        self.optim = adam(self.parameters(), lr=config.lr)
        self._pairs = [(list(self.target_value.parameters()), list(self.value.parameters()))]

    def target_pairs(self):
        return self._pairs

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        obs, next_obs, g = batch.observations, batch.next_observations, batch.value_goals
        r, m = batch.rewards, batch.masks
        n = len(obs)

        # value: L_V (as GCIVL's)
        with torch.no_grad():
            both = self.target_value(torch.cat([next_obs, obs]), torch.cat([g, g]))
            next_v_t, v_t = both[:, :n], both[:, n:]
            adv = r + self.discount * m * next_v_t.min(0).values - v_t.mean(0)
            q = r + self.discount * m * next_v_t
        v = self.value(obs, g)
        value_loss = expectile_loss(adv, q - v, cfg.expectile).mean(1).sum()

        with torch.no_grad():
            # advantages of both levels from the online value, in one pass:
            # V(s, w), V(s', w) for the low level; V(s, g), V(s_{t+k}, g) for the high level
            w, ga, target = batch.low_actor_goals, batch.actor_goals, batch.high_actor_targets
            vals = self.value(torch.cat([obs, next_obs, obs, target]), torch.cat([w, w, ga, ga])).mean(0)
            low_adv = vals[n: 2 * n] - vals[:n]
            high_adv = vals[3 * n:] - vals[2 * n: 3 * n]
            low_weights = awr_weights(low_adv, cfg.low_alpha)
            high_weights = awr_weights(high_adv, cfg.high_alpha)
            reps = self.value.rep(torch.cat([obs, obs]), torch.cat([w, target]))
            subgoal_rep, target_rep = reps[:n], reps[n:]

        # low-level policy: L_l
        low_log_prob = self.low_actor.log_prob(torch.cat([obs, subgoal_rep], -1), batch.actions)
        low_actor_loss = -(low_weights * low_log_prob).mean()

        # high-level policy: L_h
        high_log_prob = self.high_actor.log_prob(torch.cat([obs, ga], -1), target_rep)
        high_actor_loss = -(high_weights * high_log_prob).mean()

        info = {"value_loss": value_loss, "low_actor_loss": low_actor_loss, "high_actor_loss": high_actor_loss,
                "v_mean": v.mean(), "low_adv_mean": low_adv.mean(), "high_adv_mean": high_adv.mean(),
                "low_weight_clipped": (low_weights >= MAX_AWR_WEIGHT).float().mean(),
                "high_weight_clipped": (high_weights >= MAX_AWR_WEIGHT).float().mean()}
        return value_loss + low_actor_loss + high_actor_loss, info

    def policy(self, observations, goals):
        z = normalise(self.high_actor.mean(torch.cat([observations, goals], -1)))
        return self.low_actor.mean(torch.cat([observations, z], -1))
