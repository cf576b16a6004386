"""Quasimetric RL (QRL): the optimal cost-to-go between states is a quasimetric, learned by pushing
the distances of random state pairs apart subject to one-step distances of at most one (Wang,
Torralba, Isola and Zhang, "Optimal Goal-Reaching Reinforcement Learning via Quasimetric
Learning", ICML 2023, §3-4), with an Interval Quasimetric Embedding (IQE; Wang and Isola 2022)
and, as OGBench benchmarks it (Park et al., ICLR 2025, Appendix), a latent dynamics model and a
DDPG+BC policy.

d(s, g) = IQE(phi(s), phi(g)) (``offbench.goal.iqe``; 64 components of 8 latents, maxmean
reduction with a learned mix). With s' the next state and g a random dataset state (QRL's value
goals are all random):

- value, QRL's constrained objective (§4) by a Lagrangian with multiplier lambda >= 0:
      max E[ d(s, g) ]  s.t.  E[ relu(d(s, s') - 1)^2 ] <= eps,
  written as OGBench's shaped losses
      L_d = E[ 100 softplus(5 - d(s, g) / 100) ] + stopgrad(lambda) E[ relu(d(s, s') - 1)^2 ],
      L_lambda = lambda (eps - stopgrad(E[ relu(d(s, s') - 1)^2 ])),  lambda = exp(log lambda);
  the softplus saturates the push once a pair is hundreds of steps apart;
- latent dynamics (for the policy): z' = phi(s) + f([phi(s), a]),
      L_f = E[ d(phi(s'), z') + d(z', phi(s')) ] / 2  (gradient also to phi);
- policy, DDPG+BC with Q(s, a, g) = -d(phi(s) + f([phi(s), a]), phi(g)) at the actor's mean
  action clipped to [-1, 1], g an actor goal (phi, f and the IQE mix without gradient):
      L_pi = -E[ Q ] / stopgrad(E|Q|) - alpha E[ log pi(a | s, g) ].

The goal is a state (PointMaze: the position), so phi takes states and goals alike.

Defaults are OGBench's for PointMaze (REFERENCE §7, ``impls/agents/qrl.py`` and
``hyperparameters.sh``): 3x512 GELU MLPs, LayerNorm in phi and f, latent 512 (IQE components of
8), eps = 0.05, alpha = 0.0003 (OGBench's PointMaze value; its default elsewhere is 0.003),
lambda initialised at 1, Adam 3e-4 for everything, batch 1024. The discount only sets the
sampler's geometric goals, which QRL does not use.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from offbench.errors import OffbenchError
from offbench.goal import OGBENCH_HIDDEN, GaussianGoalActor, GoalAlgorithm, ddpg_bc_loss, goal_mlp, iqe
from offbench.nn import adam


@dataclass
class QRLConfig:
    hidden: tuple[int, ...] = OGBENCH_HIDDEN  # OGBench: 3x512 for phi, dynamics and actor
    lr: float = 3e-4  # OGBench
    layer_norm: bool = True  # OGBench: LayerNorm in phi and the dynamics (never in the actor)
    latent_dim: int = 512  # OGBench's PointMaze setting
    dim_per_component: int = 8  # OGBench's IQE components
    eps: float = 0.05  # bound on the squared one-step excess; OGBench's PointMaze setting
    alpha: float = 0.0003  # BC weight of DDPG+BC; OGBench's PointMaze setting
    discount: float | None = None  # unused by the losses; None: OGBench's (0.995 giant, else 0.99)
    const_std: bool = True  # OGBench: the actor's sigma is 1


class QRL(GoalAlgorithm):
    config_class = QRLConfig
    summary = "QRL: quasimetric (IQE) distances, maximised over random pairs, one-step distances <= 1"
    method = "qrl"

    def __init__(self, observation_space, action_space, config: QRLConfig = QRLConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        if self.goal_dim != self.obs_dim:
            raise OffbenchError("QRL's goals are states: the achieved goal must be the observation "
                                f"(sizes {self.goal_dim} and {self.obs_dim})")
        if config.latent_dim % config.dim_per_component:
            raise OffbenchError(f"latent_dim {config.latent_dim} is not a multiple of dim_per_component "
                                f"{config.dim_per_component}")
        self.phi = goal_mlp(self.obs_dim, config.latent_dim, config.hidden, layer_norm=config.layer_norm)
        self.iqe_mix = nn.Parameter(torch.zeros(()))  # maxmean's mix = sigmoid(0) = 0.5 at first
        self.dynamics = goal_mlp(config.latent_dim + self.act_dim, config.latent_dim, config.hidden,
                                 layer_norm=config.layer_norm)
        self.log_lam = nn.Parameter(torch.zeros(()))  # lambda = 1 at first
        self.actor = GaussianGoalActor(self.obs_dim + self.goal_dim, self.act_dim, config.hidden,
                                       const_std=config.const_std)
        self.optim = adam(self.parameters(), lr=config.lr)

    def distance(self, z_from: torch.Tensor, z_to: torch.Tensor, mix: torch.Tensor | None = None) -> torch.Tensor:
        """d between latents [B, latent_dim] -> [B]."""
        mix = torch.sigmoid(self.iqe_mix) if mix is None else mix
        return iqe(z_from, z_to, self.config.dim_per_component, mix)

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        n = len(batch.observations)
        z = self.phi(torch.cat([batch.observations, batch.next_observations, batch.value_goals]))
        z_s, z_next, z_g = z[:n], z[n: 2 * n], z[2 * n:]

        # value: the Lagrangian of QRL's constrained objective
        d_neg = self.distance(z_s, z_g)
        d_pos = self.distance(z_s, z_next)
        push = (100 * nn.functional.softplus(5 - d_neg / 100)).mean()
        excess = (torch.relu(d_pos - 1) ** 2).mean()
        lam = self.log_lam.exp()
        value_loss = push + lam.detach() * excess
        lam_loss = lam * (cfg.eps - excess.detach())

        # latent dynamics
        z_pred = z_s + self.dynamics(torch.cat([z_s, batch.actions], -1))
        dynamics_loss = (self.distance(z_next, z_pred) + self.distance(z_pred, z_next)).mean() / 2

        # policy: DDPG+BC through the model, Q(s, a, g) = -d(z', phi(g))
        ga = batch.actor_goals
        x = torch.cat([batch.observations, ga], -1)
        mean = self.actor.mean(x)
        with torch.no_grad():
            z_obs, z_goal = z_s.detach(), self.phi(ga)
        frozen = [self.dynamics.requires_grad_(False)]
        q = -self.distance(z_obs + self.dynamics(torch.cat([z_obs, mean.clamp(-1.0, 1.0)], -1)), z_goal,
                           torch.sigmoid(self.iqe_mix).detach())
        for module in frozen:
            module.requires_grad_(True)
        log_prob = self.actor.log_prob(x, batch.actions, mean)
        actor_loss = ddpg_bc_loss(q, log_prob, cfg.alpha)

        info = {"value_loss": value_loss, "lambda": lam.detach(), "d_neg_mean": d_neg.mean(), "d_pos_mean": d_pos.mean(),
                "one_step_excess": excess, "dynamics_loss": dynamics_loss, "actor_loss": actor_loss, "q_mean": q.mean()}
        return value_loss + lam_loss + dynamics_loss + actor_loss, info

    def policy(self, observations, goals):
        return self.actor.mean(torch.cat([observations, goals], -1))
