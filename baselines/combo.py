"""COMBO (Yu, Kumar, Rafailov, Rajeswaran, Levine and Finn 2021, "COMBO: Conservative Offline
Model-Based Policy Optimization").

The same dynamics ensemble, model rollouts and mixed batches as MOPO (``baselines.mopo.
ModelBasedSAC``), but no reward penalty: instead the critics are trained conservatively, pushed
down on state-actions from the model and up on the dataset's own (eq. 2):

    Q^{k+1} <- argmin_Q  beta * ( E_{s,a ~ rho}[Q(s, a)] - E_{s,a ~ D}[Q(s, a)] )
                         + 1/2 E_{s,a,s' ~ d_f}[ (Q(s, a) - B^pi Qbar^k(s, a))^2 ]

with rho(s, a) = d^pi_M(s) pi(a|s) (states visited by model rollouts of the policy, actions of
the policy) and d_f = f d + (1 - f) d_model the mixture of dataset and model transitions (f =
``real_ratio``). In a batch the first f B rows are dataset transitions (the "up" term uses their
state-actions) and the rest model transitions (the "down" term uses their states). Two
estimators of the "down" term E_rho[Q], for each critic j:

``regularizer = "logsumexp"`` (default; the soft-maximum form COMBO inherits from CQL(H)): at
each model state s, with N actions from each of two proposals, uniform on the action box
(log density -log vol) and the current pi(.|s),

    down_j(s) = logsumexp_k( Q_j(s, a_k) - log p(a_k) ) - log(2N)  ~=  log integral exp Q_j(s, a) da

``regularizer = "expectation"``: eq. 2 literally, the mean of Q_j over samples of rho: the model
transition's own action (drawn from the policy during the rollout) and N fresh actions of the
current pi(.|s), ``down_j(s) = mean(Q_j(s, a_model), Q_j(s, a_1..N))``.

Either way the regulariser is ``beta * sum_j (mean_s down_j(s) - mean_{(s,a) in D} Q_j(s, a))``
(:func:`combo_gap` gives the per-critic gap). The sampled actions carry no gradient to the actor;
all of them go through both critics in one batched call. The actor and temperature steps are
SAC's, on the mixed batch.

Defaults and sources: beta 1.0 (the paper tunes beta in {0.5, 1, 5} per dataset), real ratio 0.5
(REFERENCE §4), horizon 5 (the paper uses h in {1, 5}), 3x256 critics and actor with critic lr
3e-4 and actor lr 1e-4 (CQL's SAC backbone, which COMBO builds on), 10 sampled actions per
proposal (CQL), no entropy term in the critic target (as CQL). Not implemented: CQL's Lagrange
version of beta, and policy actions at next states in the regulariser. This module implements
its own regulariser and does not import ``baselines.cql``. Continuous actions only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from baselines.mopo import ModelBasedConfig, ModelBasedSAC
from offbench.errors import OffbenchError

REGULARIZERS = ("logsumexp", "expectation")


@dataclass
class COMBOConfig(ModelBasedConfig):
    hidden: tuple[int, ...] = (256, 256, 256)  # actor and critics (CQL's backbone)
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    backup_entropy: bool = False
    real_ratio: float = 0.5  # f: fraction of dataset transitions in each batch (REFERENCE §4)
    beta: float = 1.0  # conservatism weight of eq. 2
    num_sampled_actions: int = 10  # N per proposal
    regularizer: str = "logsumexp"  # or "expectation" (eq. 2 literally); see the module docstring


def combo_gap(q_down: torch.Tensor, q_data: torch.Tensor, log_proposal: torch.Tensor | None = None) -> torch.Tensor:
    """Per-critic gap ``mean_s down_j(s) - mean_D Q_j(s, a)``: ``[M]``.

    ``q_down`` [M, B, K]: Q of critic j at model state s and its K sampled actions;
    ``q_data`` [M, B']: Q at the dataset's state-actions. With ``log_proposal`` ([B, K] or
    [M, B, K], the log-density each action was drawn with), ``down_j(s)`` is the importance-
    sampled soft maximum ``logsumexp_k(Q - log p) - log K``; without, the plain mean over k.
    """
    if log_proposal is None:
        down = q_down.mean(-1)
    else:
        down = torch.logsumexp(q_down - log_proposal, dim=-1) - math.log(q_down.shape[-1])
    return down.mean(-1) - q_data.mean(-1)


class COMBO(ModelBasedSAC):
    config_class = COMBOConfig
    summary = "COMBO: SAC on real + model data, critics pushed down on model state-actions and up on the data's"

    def __init__(self, observation_space, action_space, config: COMBOConfig = COMBOConfig(), *, seed: int = 0):
        if config.regularizer not in REGULARIZERS:
            raise OffbenchError(f"COMBO regularizer must be one of {list(REGULARIZERS)}, got {config.regularizer!r}")
        if config.num_sampled_actions < 1:
            raise OffbenchError(f"COMBO num_sampled_actions must be >= 1, got {config.num_sampled_actions}")
        super().__init__(observation_space, action_space, config, seed=seed)

    def conservative_terms(self, obs: torch.Tensor, q: torch.Tensor, num_real: int
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(q_down [M, Bm, K], q_data [M, Br], log_proposal or None) for :func:`combo_gap`.

        ``obs`` are the batch's encoded observations (dataset rows first) and ``q`` [M, B] the
        critics at the batch's own actions.
        """
        n = self.config.num_sampled_actions
        model_obs = obs[num_real:]
        repeated = model_obs.repeat_interleave(n, dim=0)  # [Bm * N], N copies of each state in a row
        with torch.no_grad():
            policy_actions, policy_log_prob = self.actor(repeated, generator=self.generator)
        members, count = q.shape[0], len(model_obs)
        if self.config.regularizer == "expectation":
            q_policy = self.critic(repeated, policy_actions).view(members, count, n)
            return torch.cat([q[:, num_real:, None], q_policy], dim=-1), q[:, :num_real], None
        uniform = self.low + (self.high - self.low) * torch.rand(policy_actions.shape, generator=self.generator)
        q_sampled = self.critic(torch.cat([repeated, repeated]), torch.cat([uniform, policy_actions]))
        q_uniform, q_policy = q_sampled.view(members, 2, count, n).unbind(1)
        log_uniform = -torch.log(self.high - self.low).sum()
        log_proposal = torch.cat([log_uniform.expand(count, n), policy_log_prob.view(count, n)], dim=-1)
        return torch.cat([q_uniform, q_policy], dim=-1), q[:, :num_real], log_proposal

    def critic_loss(self, obs, actions, q, target, num_real):
        """1/2 E[(Q_j - y)^2] + beta * (E_rho[Q_j] - E_D[Q_j]), summed over critics (eq. 2)."""
        bellman, _ = super().critic_loss(obs, actions, q, target, num_real)
        if num_real >= len(obs):  # no model rows (only before the first rollout fills the buffer)
            return bellman, {"combo_gap": torch.zeros(())}
        q_down, q_data, log_proposal = self.conservative_terms(obs, q, num_real)
        gap = combo_gap(q_down, q_data, log_proposal)
        return bellman + self.config.beta * gap.sum(), {
            "bellman_loss": bellman.detach(), "combo_gap": gap.detach().mean(),
            "q_data": q_data.detach().mean(), "q_model": q[:, num_real:].detach().mean()}


__all__ = ["COMBO", "COMBOConfig", "combo_gap"]
