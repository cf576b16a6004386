r"""METRA: "Scalable Unsupervised RL with Metric-Aware Abstraction" (Park, Rybkin & Levine,
ICLR 2024; arXiv:2310.08887).

Mutual-information skills (DIAYN, DADS) need only be *distinguishable*, which a policy can achieve
without travelling far. METRA instead learns a representation phi: S -> R^D in which one
environment step moves at most a unit distance (phi is 1-Lipschitz in the temporal distance) and
asks each skill z to travel as far as possible along z in that space. Its constrained objective
(the Wasserstein-dependency objective written as a telescoping sum of steps):

    sup_{pi, phi}  E_{p(tau, z)}[ sum_t (phi(s_{t+1}) - phi(s_t))^T z ]
    s.t.  ||phi(s) - phi(s')||_2 <= 1   for all adjacent (s, s')

Practical implementation (the paper's dual gradient descent): with a Lagrange multiplier
lambda >= 0 and a slack epsilon > 0, phi maximises and lambda minimises the Lagrangian

    E[ (phi(s') - phi(s))^T z + lambda * min(epsilon, 1 - ||phi(s) - phi(s')||_2^2) ]

over replayed transitions (:func:`metra_constraint` is the min(...) term; the phi loss in
``intrinsic_update`` is minus this expectation with lambda held fixed), and the skill policy is
SAC on the intrinsic reward

    r(s, z, s') = (phi(s') - phi(s))^T z                       (:func:`metra_reward`).

lambda is parameterised as exp(log lambda) and log lambda takes Adam steps on
``log_lambda * E[min(...)]`` (the released code's update, ``seohongpark/METRA``,
``iod/metra.py``): while the constraint holds with room to spare (the term is positive) lambda
shrinks, while it is violated lambda grows. The paper's norm is the squared Euclidean norm;
the released code averages the squared differences over the D coordinates instead (a
D-times looser constraint); this module follows the paper.

Skills: continuous, z ~ N(0, I_D) scaled to unit length (``unit`` prior; the paper's state-based
2-D skills), or ``discrete``: one-hot for the policy and, in the reward, the zero-centred one-hot
z - 1/K scaled by K / (K - 1) (1 on the skill's axis, -1/(K-1) on the others; the code's).
phi takes one Adam step, then lambda, then the reward is computed with the updated phi and SAC
takes its step (the code's order).

Defaults and their sources (``tests/main.py`` of the released code, the paper's settings): D = 2;
epsilon = 1e-3 (``dual_slack``); lambda starts at 30 (``dual_lam``); Adam 1e-4 for phi, lambda
(``dual_lr`` = ``common_lr``), actor and critics; SAC's temperature starts at 0.01 and is tuned
towards an entropy of -|A| / 2 (``alpha``, ``sac_target_coef``); discount 0.99. The paper's networks
are 2x1024 with batches of 256 (``model_master_dim``, ``trans_minibatch_size``); here 2x128 and
128, like DIAYN and DADS, for the CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from offbench.errors import OffbenchError
from offbench.nn import mlp
from offbench.skill_loop import SkillLoopConfig, SkillSpace, SkillTrainer


@dataclass
class METRAConfig(SkillLoopConfig):
    lr: float = 1e-4  # actor, critics (the paper's common learning rate)
    alpha: float = 0.01  # SAC's initial temperature ...
    alpha_lr: float = 1e-4  # ... tuned towards -|A| / 2 unless target_entropy says otherwise
    skill_dim: int = 2  # D (continuous) or K (discrete)
    discrete: bool = False
    epsilon: float = 1e-3  # the constraint's slack
    dual_init: float = 30.0  # lambda's starting value
    dual_lr: float = 1e-4
    phi_lr: float = 1e-4

    def check(self, name: str) -> None:
        super().check(name)
        if int(self.skill_dim) < (2 if self.discrete else 1):
            raise OffbenchError(f"{name}: skill_dim must be >= {2 if self.discrete else 1} for "
                                f"{'discrete' if self.discrete else 'continuous'} skills, got {self.skill_dim}")
        for field in ("epsilon", "dual_init", "dual_lr", "phi_lr"):
            if not getattr(self, field) > 0:
                raise OffbenchError(f"{name}: {field} must be > 0, got {getattr(self, field)}")


def metra_reward(phi_s: torch.Tensor, phi_next: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """r(s, z, s') = (phi(s') - phi(s))^T z, per row: [B, D] x3 -> [B]."""
    return ((phi_next - phi_s) * z).sum(-1)


def metra_constraint(phi_s: torch.Tensor, phi_next: torch.Tensor, epsilon: float) -> torch.Tensor:
    """min(epsilon, 1 - ||phi(s) - phi(s')||_2^2) [B]: positive while a step moves phi less than 1."""
    return torch.clamp(1.0 - ((phi_s - phi_next) ** 2).sum(-1), max=epsilon)


def centred_one_hot(skills: torch.Tensor, k: int) -> torch.Tensor:
    """Discrete skills' reward directions: (one_hot(z) - 1/K) * K / (K - 1)."""
    one_hot = torch.nn.functional.one_hot(skills.long(), k).float()
    return (one_hot - 1.0 / k) * k / (k - 1)


class DualVariable(nn.Module):
    def __init__(self, initial: float):
        super().__init__()
        self.log_lambda = nn.Parameter(torch.tensor(math.log(initial)))


class METRATrainer(SkillTrainer):
    name = "METRA"

    def __init__(self, make_env, config: METRAConfig = METRAConfig(), seed: int = 0):
        super().__init__(make_env, config, seed)

    def make_skill_space(self) -> SkillSpace:
        return SkillSpace("categorical" if self.config.discrete else "unit", self.config.skill_dim)

    def target_entropy(self) -> float:
        return -self.act_dim / 2.0 if self.config.target_entropy is None else self.config.target_entropy

    def build(self) -> None:
        cfg = self.config
        self.phi = mlp(self.obs_dim, cfg.skill_dim, tuple(cfg.hidden))
        self.dual = DualVariable(cfg.dual_init)
        self.phi_optim = torch.optim.Adam(self.phi.parameters(), lr=cfg.phi_lr)
        self.dual_optim = torch.optim.Adam(self.dual.parameters(), lr=cfg.dual_lr)

    def networks(self) -> dict[str, nn.Module]:
        return {"phi": self.phi, "dual": self.dual}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"phi": self.phi_optim, "dual": self.dual_optim}

    def reward_directions(self, skills: torch.Tensor) -> torch.Tensor:
        return centred_one_hot(skills, self.config.skill_dim) if self.config.discrete else skills

    def intrinsic_update(self, batch):
        z = self.reward_directions(batch["skills"])
        phi_s, phi_next = self.phi(batch["obs"]), self.phi(batch["next_obs"])
        constraint = metra_constraint(phi_s, phi_next, self.config.epsilon)
        lam = self.dual.log_lambda.exp()
        phi_loss = -(metra_reward(phi_s, phi_next, z) + lam.detach() * constraint).mean()  # the Lagrangian, over phi
        self.phi_optim.zero_grad(set_to_none=True)
        phi_loss.backward()
        self.phi_optim.step()
        dual_loss = self.dual.log_lambda * constraint.detach().mean()  # ... and over lambda
        self.dual_optim.zero_grad(set_to_none=True)
        dual_loss.backward()
        self.dual_optim.step()
        with torch.no_grad():
            phi_s, phi_next = self.phi(batch["obs"]), self.phi(batch["next_obs"])
            reward = metra_reward(phi_s, phi_next, z)
            step = torch.linalg.vector_norm(phi_next - phi_s, dim=-1)
        return reward, {"phi_loss": phi_loss.item(), "intrinsic_reward": reward.mean().item(),
                        "lambda": float(np.exp(self.dual.log_lambda.item())), "phi_step": step.mean().item(),
                        "constraint": constraint.mean().item()}
