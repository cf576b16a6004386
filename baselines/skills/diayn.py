r"""DIAYN: "Diversity is All You Need: Learning Skills without a Reward Function" (Eysenbach, Gupta,
Ibarz & Levine, ICLR 2019; course notes §16.1).

Skills z are categorical, z ~ p(z) = Uniform{1..K}, drawn once per episode. A discriminator
q_phi(z | s) learns to tell the skill from the state it reached, and the skill-conditioned policy
pi(a | s, z) is SAC (Haarnoja et al. 2018; ``baselines/online/sac.py``) on the pseudo-reward

    r_z(s, a, s') = log q_phi(z | s') - log p(z)                                   (eq. 3)

which makes the policy maximise a lower bound on I(S; Z) - I(A; Z | S) + H(A | S) (eq. 1-2):
states should say which skill produced them, and each skill acts as randomly as it can. The
discriminator is a classifier trained by cross-entropy on the replayed (s', z):

    L_phi = -E[log q_phi(z | s')]

The reward is computed when a batch is sampled, with the current discriminator (the paper's
implementation). SAC's temperature is fixed at alpha = 0.1 (the paper's setting; ``alpha_lr = 0``).
The policy and critics see (s, one-hot z). Defaults: K = 10 skills on 2-D tasks (the paper uses 50
on MuJoCo tasks and fewer for 2-D navigation), 2x128 networks, Adam 3e-4, batch 128, 1,000 steps
of uniform actions first.

The episodes, the replay buffer, checkpoints with exact resume (``fit``) and ``skill_rollouts``
are the shared skill loop's (``offbench.skill_loop.SkillTrainer``); this module holds the
discriminator, its loss and the reward.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from offbench.errors import OffbenchError
from offbench.nn import mlp
from offbench.skill_loop import SkillLoopConfig, SkillSpace, SkillTrainer


@dataclass
class DIAYNConfig(SkillLoopConfig):
    skills: int = 10  # K; SAC's temperature: the shared alpha = 0.1, fixed (DIAYN)

    def check(self, name: str) -> None:
        super().check(name)
        if int(self.skills) < 2:
            raise OffbenchError(f"{name}: skills must be >= 2 (one skill has nothing to tell apart), got {self.skills}")


def pseudo_reward(log_q: torch.Tensor, skills: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. (3): log q(z | s') - log p(z), with ``log_q`` [B, K] the discriminator's log-softmax."""
    return log_q.gather(1, skills.long().unsqueeze(1)).squeeze(1) + float(np.log(k))


class DIAYNTrainer(SkillTrainer):
    name = "DIAYN"

    def __init__(self, make_env, config: DIAYNConfig = DIAYNConfig(), seed: int = 0):
        super().__init__(make_env, config, seed)

    def make_skill_space(self) -> SkillSpace:
        return SkillSpace("categorical", self.config.skills)

    def build(self) -> None:
        self.discriminator = mlp(self.obs_dim, self.config.skills, tuple(self.config.hidden))
        self.disc_optim = torch.optim.Adam(self.discriminator.parameters(), lr=self.config.lr)

    def networks(self) -> dict[str, nn.Module]:
        return {"discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"discriminator": self.disc_optim}

    def intrinsic_update(self, batch):
        log_q = F.log_softmax(self.discriminator(batch["next_obs"]), -1)
        disc_loss = F.nll_loss(log_q, batch["skills"])  # L_phi
        self.disc_optim.zero_grad(set_to_none=True)
        disc_loss.backward()
        self.disc_optim.step()
        reward = pseudo_reward(log_q.detach(), batch["skills"], self.config.skills)  # eq. (3), this batch's q
        return reward, {"discriminator_loss": disc_loss.item(), "pseudo_reward": reward.mean().item(),
                        "discriminator_accuracy": (log_q.argmax(1) == batch["skills"]).float().mean().item()}
