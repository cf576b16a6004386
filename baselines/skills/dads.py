r"""DADS: "Dynamics-Aware Unsupervised Discovery of Skills" (Sharma, Gu, Levine, Kumar & Hausman,
ICLR 2020; course notes §16.2).

DADS maximises the mutual information between the skill and the *transition* it causes,

    I(s'; z | s) = H(s' | s) - H(s' | s, z),

so that skills are diverse (high H(s' | s)) and predictable (low H(s' | s, z)). A skill-dynamics
model q_phi(s' | s, z) is trained by maximum likelihood on the replayed transitions,

    J(phi) = E[log q_phi(s' | s, z)]                          (the skill dynamics' loss is -J),

and the skill-conditioned SAC policy receives the variational lower bound's reward, with the
marginal q(s' | s) estimated by L skills drawn from the prior. offbench uses the form of the
authors' released code (``google-research/dads``, ``dads_agent.py``), which counts z itself among
the L + 1 samples of the marginal (REFERENCE.md §8):

    r_z(s, a, s') = log(L + 1) - log( 1 + sum_{i=1..L} exp(log q_phi(s' | s, z_i) - log q_phi(s' | s, z)) ),
    z_i ~ p(z)                                                                      (:func:`dads_reward`)

It is the paper's log [q(s'|s,z) / ((1/(L+1)) (q(s'|s,z) + sum_i q(s'|s,z_i)))]: 0 when the
alternatives explain s' as well as z does, at most log(L + 1) when none of them does (the paper's
text, without z in the denominator, is unbounded above).

The skill dynamics, as in the paper and its released code (``google-research/dads``,
``unsupervised_skill_learning/skill_dynamics.py``): it predicts the change Delta = s' - s; the
input state and Delta are normalised by batch normalisation (running statistics when the reward
is computed); q(Delta | s, z) is a mixture of ``components`` = 4 Gaussians ("mixture of experts")
with mixture weights and means from the network and the variance fixed at 1 (in normalised
units). ``dynamics_dims`` restricts what the skill dynamics sees and predicts to some observation
coordinates (the paper's x-y prior, ``reduced_observation`` in the code); on PointPlane the
observation already is x-y.

Skills are continuous, z ~ Uniform[-1, 1]^D with D = 2 (the paper's 2-D skills on its locomotion
tasks, ``skill_type=cont_uniform``). Each update: one maximum-likelihood step on the batch, then
the reward of that batch with the updated model and L fresh prior samples per transition (the
code recomputes rewards after its skill-dynamics steps), then one SAC step. Unlike the paper's
on-policy DADS (and like off-DADS, Sharma et al. 2020) transitions come from the shared replay
buffer, without off-DADS's importance weights.

Defaults and their sources: L = ``alternatives`` = 100 (the released configs' ``random_skills``,
REFERENCE.md §8); 4 mixture
components, fixed variance, normalised data, Adam 3e-4 for the skill dynamics and the agent, SAC
entropy coefficient 0.1 fixed (``configs/template_config.txt``: ``num_components=4``,
``fix_variance=1``, ``normalize_data=1``, ``skill_dynamics_lr=3e-4``, ``agent_lr=3e-4``,
``agent_entropy=0.1``); the paper's networks are 2x512 with batches of 256
(``hidden_layer_size=512``, ``skill_dyn_batch_size=256``, ``agent_batch_size=256``); here 2x128
and 128, like DIAYN, for the CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from offbench.errors import OffbenchError
from offbench.nn import mlp
from offbench.skill_loop import SkillLoopConfig, SkillSpace, SkillTrainer


@dataclass
class DADSConfig(SkillLoopConfig):
    skill_dim: int = 2  # D
    prior: str = "uniform"  # Uniform[-1, 1]^D (the paper's); "gaussian": N(0, I)
    alternatives: int = 100  # L, prior samples in the reward's denominator (the released code's)
    components: int = 4  # mixture of experts
    dynamics_lr: float = 3e-4
    dynamics_dims: tuple[int, ...] | None = None  # the x-y prior: e.g. (0, 1); None = every coordinate

    def check(self, name: str) -> None:
        super().check(name)
        if self.prior not in ("uniform", "gaussian"):
            raise OffbenchError(f"{name}: prior must be 'uniform' or 'gaussian' (continuous skills), "
                                f"got {self.prior!r}")
        for field in ("skill_dim", "alternatives", "components"):
            if int(getattr(self, field)) < 1:
                raise OffbenchError(f"{name}: {field} must be >= 1, got {getattr(self, field)}")
        if int(self.batch_size) < 2:
            raise OffbenchError(f"{name}: batch_size must be >= 2 (the skill dynamics batch-normalises), "
                                f"got {self.batch_size}")
        if not self.dynamics_lr > 0:
            raise OffbenchError(f"{name}: dynamics_lr must be > 0, got {self.dynamics_lr}")
        dims = self.dynamics_dims
        if dims is not None and (not dims or len(set(dims)) != len(dims)):
            raise OffbenchError(f"{name}: dynamics_dims lists distinct observation coordinates, got {dims}")


def dads_reward(log_q: torch.Tensor, log_q_alternatives: torch.Tensor) -> torch.Tensor:
    """r = log(L + 1) - log(1 + sum_i exp(log q(s'|s,z_i) - log q(s'|s,z))) (module docstring);
    ``log_q`` [B], ``log_q_alternatives`` [L, B]."""
    L = log_q_alternatives.shape[0]
    ratios = torch.cat([torch.zeros_like(log_q)[None], log_q_alternatives - log_q], 0)  # [L + 1, B], z first
    return math.log(L + 1) - torch.logsumexp(ratios, 0)


class SkillDynamics(nn.Module):
    """q_phi(s' | s, z) as a density over the normalised Delta = s' - s: a mixture of ``components``
    unit-variance Gaussians whose weights and means depend on (normalised s, z)."""

    def __init__(self, obs_dim: int, skill_dim: int, hidden: tuple[int, ...], components: int):
        super().__init__()
        self.dim, self.components = obs_dim, components
        # TF's batch-norm momentum 0.99 is torch's 0.01; no learned scale or shift (the code's)
        self.input_norm = nn.BatchNorm1d(obs_dim, affine=False, momentum=0.01)
        self.target_norm = nn.BatchNorm1d(obs_dim, affine=False, momentum=0.01)
        self.body = nn.Sequential(mlp(obs_dim + skill_dim, hidden[-1], hidden[:-1]), nn.ReLU())
        self.logits = nn.Linear(hidden[-1], components)
        self.means = nn.Linear(hidden[-1], components * obs_dim)

    def log_prob(self, obs: torch.Tensor, skills: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """log q(s' | s, z) [B] (in normalised units: the constant Jacobian cancels in the reward)."""
        delta = self.target_norm(next_obs - obs)
        h = self.body(torch.cat([self.input_norm(obs), skills], -1))
        means = self.means(h).view(-1, self.components, self.dim)
        log_normal = -0.5 * ((delta.unsqueeze(1) - means) ** 2).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
        return torch.logsumexp(torch.log_softmax(self.logits(h), -1) + log_normal, -1)


class DADSTrainer(SkillTrainer):
    name = "DADS"

    def __init__(self, make_env, config: DADSConfig = DADSConfig(), seed: int = 0):
        super().__init__(make_env, config, seed)

    def make_skill_space(self) -> SkillSpace:
        return SkillSpace(self.config.prior, self.config.skill_dim)

    def build(self) -> None:
        cfg = self.config
        dims = list(range(self.obs_dim)) if cfg.dynamics_dims is None else [int(d) for d in cfg.dynamics_dims]
        if min(dims) < 0 or max(dims) >= self.obs_dim:
            raise OffbenchError(f"DADS: dynamics_dims {cfg.dynamics_dims} are not coordinates of a "
                                f"{self.obs_dim}-dimensional observation")
        self.dims = torch.as_tensor(dims)
        self.dynamics = SkillDynamics(len(dims), cfg.skill_dim, tuple(cfg.hidden), cfg.components)
        self.dynamics_optim = torch.optim.Adam(self.dynamics.parameters(), lr=cfg.dynamics_lr)

    def networks(self) -> dict[str, nn.Module]:
        return {"skill_dynamics": self.dynamics}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"skill_dynamics": self.dynamics_optim}

    def intrinsic_update(self, batch):
        cfg = self.config
        obs, next_obs = batch["obs"][:, self.dims], batch["next_obs"][:, self.dims]
        skills = batch["skills"]
        self.dynamics.train()
        loss = -self.dynamics.log_prob(obs, skills, next_obs).mean()  # maximum likelihood: -J(phi)
        self.dynamics_optim.zero_grad(set_to_none=True)
        loss.backward()
        self.dynamics_optim.step()
        self.dynamics.eval()
        with torch.no_grad():
            B, L = len(obs), cfg.alternatives
            log_q = self.dynamics.log_prob(obs, skills, next_obs)
            alternatives = torch.as_tensor(self.skill_space.sample_many(self.rng, (L * B,)))  # z_i ~ p(z)
            log_q_alt = self.dynamics.log_prob(obs.repeat(L, 1), alternatives, next_obs.repeat(L, 1)).view(L, B)
            reward = dads_reward(log_q, log_q_alt)
        return reward, {"dynamics_loss": loss.item(), "intrinsic_reward": reward.mean().item(),
                        "log_q": log_q.mean().item()}
