"""Goal-conditioned implicit V-learning (GCIVL): IQL's expectile regression on a value V(s, g)
alone, with no Q function, and a policy extracted by advantage-weighted regression on
V(s', g) - V(s, g). The value loss is the action-free IQL of HIQL (Park, Ghosh, Eysenbach and
Levine, "HIQL: Offline Goal-Conditioned RL with Latent States as Actions", NeurIPS 2023, §4.1);
OGBench (Park et al., ICLR 2025) benchmarks it, with a flat policy, as GCIVL.

The losses (r = 0 at the goal, -1 elsewhere; m = 0 at the goal, 1 elsewhere; ``GoalBatch``):

- value, HIQL §4.1 (IQL eq. 5 without actions), for each of two value networks V_j:
      L_V = sum_j E[ |tau - 1(A < 0)| (r + gamma m Vbar_j(s', g) - V_j(s, g))^2 ],
      A = r + gamma m min_j Vbar_j(s', g) - (Vbar_1(s, g) + Vbar_2(s, g)) / 2,
  with Vbar the Polyak-averaged targets and g a value goal (current state 0.2, geometric future
  0.5, random 0.3): the side of the expectile is chosen by the targets' advantage, as OGBench does;
- policy, advantage-weighted regression (Peng et al. 2019, eq. 7 of IQL):
      L_pi = -E[ min(exp(alpha (V(s', g) - V(s, g))), 100) log pi(a | s, g) ],
  V = (V_1 + V_2) / 2 of the online networks (no gradient), g an actor goal. The one-step value
  difference stands in for the advantage because there is no Q.

Defaults are OGBench's for PointMaze (REFERENCE §7, ``impls/agents/gcivl.py`` and
``hyperparameters.sh``): 3x512 GELU MLPs, LayerNorm in the value networks, Adam 3e-4, expectile
0.9, AWR temperature alpha = 10, tau 0.005, discount 0.99 (0.995 on giant), batch 1024.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from offbench.goal import (MAX_AWR_WEIGHT, OGBENCH_HIDDEN, GaussianGoalActor, GoalAlgorithm, awr_weights,
                           expectile_loss, goal_ensemble)
from offbench.nn import adam


@dataclass
class GCIVLConfig:
    hidden: tuple[int, ...] = OGBENCH_HIDDEN  # OGBench: 3x512, actor and value
    lr: float = 3e-4  # OGBench
    layer_norm: bool = True  # OGBench: LayerNorm in the value networks (never in the actor)
    expectile: float = 0.9  # OGBench's GCIVL
    alpha: float = 10.0  # AWR inverse temperature; OGBench's PointMaze setting
    tau: float = 0.005  # Polyak rate of the target values
    discount: float | None = None  # None: OGBench's, 0.995 on the giant maze, else 0.99
    const_std: bool = True  # OGBench: the actor's sigma is 1


class GCIVL(GoalAlgorithm):
    config_class = GCIVLConfig
    summary = "GCIVL: expectile regression of V(s, g) (action-free IQL), AWR on V(s', g) - V(s, g)"
    method = "gcivl"

    def __init__(self, observation_space, action_space, config: GCIVLConfig = GCIVLConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        self.value = goal_ensemble(2, self.obs_dim + self.goal_dim, 1, config.hidden, layer_norm=config.layer_norm)
        self.target_value = copy.deepcopy(self.value).requires_grad_(False)
        self.actor = GaussianGoalActor(self.obs_dim + self.goal_dim, self.act_dim, config.hidden,
                                       const_std=config.const_std)
        self.optim = adam(self.parameters(), lr=config.lr)
        self._pairs = [(list(self.target_value.parameters()), list(self.value.parameters()))]

    def target_pairs(self):
        return self._pairs

    def values(self, net, observations, goals) -> torch.Tensor:
        """V_j(s, g) of both members: [2, B]."""
        return net(torch.cat([observations, goals], -1)).squeeze(-1)

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        obs, next_obs, g = batch.observations, batch.next_observations, batch.value_goals
        r, m = batch.rewards, batch.masks

        # value: L_V
        with torch.no_grad():
            both = self.values(self.target_value, torch.cat([next_obs, obs]), torch.cat([g, g]))
            next_v_t, v_t = both[:, : len(obs)], both[:, len(obs):]
            adv = r + self.discount * m * next_v_t.min(0).values - v_t.mean(0)
            q = r + self.discount * m * next_v_t  # [2, B], one target per member
        v = self.values(self.value, obs, g)
        value_loss = expectile_loss(adv, q - v, cfg.expectile).mean(1).sum()

        # policy: L_pi
        with torch.no_grad():
            ga = batch.actor_goals
            both = self.values(self.value, torch.cat([obs, next_obs]), torch.cat([ga, ga])).mean(0)
            advantage = both[len(obs):] - both[: len(obs)]
            weights = awr_weights(advantage, cfg.alpha)
        log_prob = self.actor.log_prob(torch.cat([obs, ga], -1), batch.actions)
        actor_loss = -(weights * log_prob).mean()

        info = {"value_loss": value_loss, "actor_loss": actor_loss, "v_mean": v.mean(), "adv_mean": advantage.mean(),
                "weight_mean": weights.mean(), "weight_clipped": (weights >= MAX_AWR_WEIGHT).float().mean()}
        return value_loss + actor_loss, info

    def policy(self, observations, goals):
        return self.actor.mean(torch.cat([observations, goals], -1))
