"""Goal-conditioned IQL (GCIQL): Implicit Q-Learning (Kostrikov, Nair and Levine, ICLR 2022) on
goal-conditioned V(s, g) and Q(s, a, g), with OGBench's DDPG+BC policy extraction (Park et al.,
"OGBench", ICLR 2025, §6 and Appendix; Fujimoto and Gu, "A Minimalist Approach to Offline RL",
NeurIPS 2021).

The losses (r = 0 at the goal, -1 elsewhere; m = 0 at the goal, 1 elsewhere; g a value goal:
current state 0.2, geometric future 0.5, random 0.3):

- value, IQL eq. (5):   L_V = E[ |tau - 1(u < 0)| u^2 ],  u = min_j Qbar_j(s, a, g) - V(s, g);
- critics, IQL eq. (6): L_Q = sum_j E[ (r + gamma m V(s', g) - Q_j(s, a, g))^2 ], V(s', g) without gradient;
- policy, DDPG+BC (TD3+BC eq. 3 with the log-likelihood as its BC term), g an actor goal:
      L_pi = -E[ Q(s, mu(s, g), g) ] / stopgrad(E|Q|) - alpha E[ log pi(a | s, g) ],
  Q = min_j Q_j of the online critics at the actor's mean action clipped to [-1, 1] (gradient to
  the actor only).

Defaults are OGBench's for PointMaze (REFERENCE §7, ``impls/agents/gciql.py`` and
``hyperparameters.sh``): 3x512 GELU MLPs, LayerNorm in V and Q, Adam 3e-4, expectile 0.9,
alpha = 0.003 (OGBench's PointMaze value; its default elsewhere is 0.3), tau 0.005, two critics,
discount 0.99 (0.995 on giant), batch 1024.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from offbench.goal import OGBENCH_HIDDEN, GaussianGoalActor, GoalAlgorithm, ddpg_bc_loss, expectile_loss, goal_ensemble
from offbench.nn import adam


@dataclass
class GCIQLConfig:
    hidden: tuple[int, ...] = OGBENCH_HIDDEN  # OGBench: 3x512 for actor, V and Q
    lr: float = 3e-4  # OGBench
    layer_norm: bool = True  # OGBench: LayerNorm in V and Q (never in the actor)
    expectile: float = 0.9  # OGBench's GCIQL
    alpha: float = 0.003  # BC weight of DDPG+BC; OGBench's PointMaze setting
    tau: float = 0.005  # Polyak rate of the target critics
    discount: float | None = None  # None: OGBench's, 0.995 on the giant maze, else 0.99
    const_std: bool = True  # OGBench: the actor's sigma is 1


class GCIQL(GoalAlgorithm):
    config_class = GCIQLConfig
    summary = "GCIQL: IQL's expectile V(s, g) and TD Q(s, a, g), DDPG+BC policy extraction"
    method = "gciql"

    def __init__(self, observation_space, action_space, config: GCIQLConfig = GCIQLConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        d, g, a = self.obs_dim, self.goal_dim, self.act_dim
        self.value = goal_ensemble(1, d + g, 1, config.hidden, layer_norm=config.layer_norm)
        self.critic = goal_ensemble(2, d + g + a, 1, config.hidden, layer_norm=config.layer_norm)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor = GaussianGoalActor(d + g, a, config.hidden, const_std=config.const_std)
        self.optim = adam(self.parameters(), lr=config.lr)
        self._pairs = [(list(self.target_critic.parameters()), list(self.critic.parameters()))]

    def target_pairs(self):
        return self._pairs

    def q_values(self, net, observations, goals, actions) -> torch.Tensor:
        """Q_j(s, a, g) of both critics: [2, B]."""
        return net(torch.cat([observations, goals, actions], -1)).squeeze(-1)

    def v_value(self, observations, goals) -> torch.Tensor:
        return self.value(torch.cat([observations, goals], -1))[0, :, 0]

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        obs, g, actions = batch.observations, batch.value_goals, batch.actions

        # value: L_V, IQL eq. (5)
        with torch.no_grad():
            q_t = self.q_values(self.target_critic, obs, g, actions).min(0).values
        v = self.v_value(obs, g)
        value_loss = expectile_loss(q_t - v, q_t - v, cfg.expectile).mean()

        # critics: L_Q, IQL eq. (6)
        with torch.no_grad():
            target = batch.rewards + self.discount * batch.masks * self.v_value(batch.next_observations, g)
        q = self.q_values(self.critic, obs, g, actions)
        critic_loss = ((q - target) ** 2).mean(1).sum()

        # policy: DDPG+BC
        ga = batch.actor_goals
        x = torch.cat([obs, ga], -1)
        mean = self.actor.mean(x)
        q_pi = self.q_values(self.critic.requires_grad_(False), obs, ga, mean.clamp(-1.0, 1.0)).min(0).values
        self.critic.requires_grad_(True)
        log_prob = self.actor.log_prob(x, actions, mean)
        actor_loss = ddpg_bc_loss(q_pi, log_prob, cfg.alpha)

        info = {"value_loss": value_loss, "critic_loss": critic_loss, "actor_loss": actor_loss, "v_mean": v.mean(),
                "q_mean": q.mean(), "q_pi_mean": q_pi.mean(), "bc_log_prob": log_prob.mean()}
        return value_loss + critic_loss + actor_loss, info

    def policy(self, observations, goals):
        return self.actor.mean(torch.cat([observations, goals], -1))
