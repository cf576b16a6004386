"""Contrastive RL (CRL): a critic f(s, a, g) = phi(s, a)^T psi(g) trained by binary noise-contrastive
estimation to tell a future state of the same trajectory from other goals, whose optimum is the
log ratio of the discounted future-state occupancy of pi_D to the goals' marginal, so it ranks
actions as a goal-conditioned Q function does (Eysenbach, Zhang, Levine and Salakhutdinov,
"Contrastive Learning as Goal-Conditioned Reinforcement Learning", NeurIPS 2022, §4); the policy is
extracted by DDPG+BC, as OGBench benchmarks it (Park et al., ICLR 2025, Appendix).

The losses, on a batch of B transitions with value goals g_i drawn from each one's discounted
future (geometric offsets, p = 1 - gamma; CRL's goal mix is all future):

- critic, CRL's NCE-binary objective (§4), for each of two critics (phi_e, psi_e):
      f_e(i, j) = phi_e(s_i, a_i)^T psi_e(g_j) / sqrt(latent_dim),
      L_f = -mean_{e, i, j}[ 1(i = j) log sigma(f_e(i, j)) + 1(i != j) log(1 - sigma(f_e(i, j))) ],
  the other B - 1 goals of the batch serving as each transition's negatives;
- policy, DDPG+BC with Q = min_e f_e(s, mu(s, g), g) at the actor's mean action clipped to
  [-1, 1] (critic without gradient), g an actor goal:
      L_pi = -E[ Q ] / stopgrad(E|Q|) - alpha E[ log pi(a | s, g) ].

Defaults are OGBench's for PointMaze (REFERENCE §7, ``impls/agents/crl.py`` and
``hyperparameters.sh``): 3x512 GELU MLPs, LayerNorm in phi and psi, latent 512, two critics,
alpha = 0.03 (OGBench's PointMaze value; its default elsewhere is 0.1), Adam 3e-4, batch 1024,
discount 0.99 (0.995 on giant) for the goals' geometric offsets. No target networks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from offbench.goal import OGBENCH_HIDDEN, GaussianGoalActor, GoalAlgorithm, ddpg_bc_loss, goal_ensemble
from offbench.nn import adam


@dataclass
class CRLConfig:
    hidden: tuple[int, ...] = OGBENCH_HIDDEN  # OGBench: 3x512 for phi, psi and the actor
    lr: float = 3e-4  # OGBench
    layer_norm: bool = True  # OGBench: LayerNorm in phi and psi (never in the actor)
    latent_dim: int = 512  # OGBench
    alpha: float = 0.03  # BC weight of DDPG+BC; OGBench's PointMaze setting
    discount: float | None = None  # sets the geometric goal offsets; None: OGBench's (0.995 giant, else 0.99)
    const_std: bool = True  # OGBench: the actor's sigma is 1


class CRL(GoalAlgorithm):
    config_class = CRLConfig
    summary = "CRL: contrastive critic phi(s, a)^T psi(g) (binary NCE over future states), DDPG+BC policy"
    method = "crl"

    def __init__(self, observation_space, action_space, config: CRLConfig = CRLConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        d, g, a = self.obs_dim, self.goal_dim, self.act_dim
        self.phi = goal_ensemble(2, d + a, config.latent_dim, config.hidden, layer_norm=config.layer_norm)
        self.psi = goal_ensemble(2, g, config.latent_dim, config.hidden, layer_norm=config.layer_norm)
        self.actor = GaussianGoalActor(d + g, a, config.hidden, const_std=config.const_std)
        self.optim = adam(self.parameters(), lr=config.lr)

    def logits(self, observations, actions, goals, *, pairwise: bool) -> torch.Tensor:
        """f_e: [2, B, B] for every (transition i, goal j) pair, or [2, B] for matched pairs."""
        phi = self.phi(torch.cat([observations, actions], -1))  # [2, B, latent]
        psi = self.psi(goals)
        scale = 1.0 / math.sqrt(self.config.latent_dim)
        if pairwise:
            return torch.einsum("eik,ejk->eij", phi, psi) * scale
        return (phi * psi).sum(-1) * scale

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.config
        obs = batch.observations

        # critic: NCE-binary
        logits = self.logits(obs, batch.actions, batch.value_goals, pairwise=True)
        eye = torch.eye(len(obs), device=logits.device).expand_as(logits)
        critic_loss = F.binary_cross_entropy_with_logits(logits, eye)
        with torch.no_grad():
            diagonal = logits.diagonal(dim1=1, dim2=2)
            accuracy = (logits.argmax(-1) == torch.arange(len(obs), device=logits.device)).float().mean()

        # policy: DDPG+BC on the critic
        ga = batch.actor_goals
        x = torch.cat([obs, ga], -1)
        mean = self.actor.mean(x)
        for net in (self.phi, self.psi):
            net.requires_grad_(False)
        q = self.logits(obs, mean.clamp(-1.0, 1.0), ga, pairwise=False).min(0).values
        for net in (self.phi, self.psi):
            net.requires_grad_(True)
        log_prob = self.actor.log_prob(x, batch.actions, mean)
        actor_loss = ddpg_bc_loss(q, log_prob, cfg.alpha)

        info = {"critic_loss": critic_loss, "actor_loss": actor_loss, "logits_pos": diagonal.mean(),
                "logits_mean": logits.detach().mean(), "categorical_accuracy": accuracy, "q_mean": q.mean()}
        return critic_loss + actor_loss, info

    def policy(self, observations, goals):
        return self.actor.mean(torch.cat([observations, goals], -1))
