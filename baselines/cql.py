"""Conservative Q-Learning (Kumar, Zhou, Tucker and Levine, "Conservative Q-Learning for Offline
Reinforcement Learning", NeurIPS 2020), the CQL(H) variant.

The critics minimise the Bellman error plus a term that pushes Q down on all actions (a soft
maximum) and up on the data's actions (eq. 4):

    min_Q  alpha * E_s[ log sum_a exp Q(s, a) - E_{a ~ D} Q(s, a) ]  +  1/2 E[(Q(s, a) - B Qbar(s, a))^2]

Continuous actions (SAC backbone: ``TanhGaussianPolicy`` actor, twin critics with target copies,
automatic entropy tuning towards -|A|). The log-sum-exp over a continuous action space is
estimated by importance sampling (appendix F): with N actions from each of three proposals,
uniform on the action box (density 1 / vol), pi(.|s) and pi(.|s'), all evaluated by Q at s,

    log sum_a exp Q(s, a)  ~=  log( 1/(3N) sum_i exp(Q(s, a_i) - log p(a_i)) )
                            =  logsumexp_i(Q(s, a_i) - log p(a_i)) - log(3N),

each action corrected by the log-density of the proposal it was drawn from. The constant
log(3N) does not change any gradient; it makes the estimate an estimate of the integral, so the
Lagrange gap below is measured on that scale (implementations that drop it shift the threshold
by log(3N) = 3.4 for N = 10). The logged ``cql_gap`` is this estimate minus Q(s, a_data): as the log of
a sample mean it is biased low (by 0.03 to 0.8 on the ExORL table's critics against the integral on a
grid, ``scripts/cql_critic_probe.py``). All 3N sampled actions and the data's action go through both
critics in **one** batched ``QEnsemble`` call on a [B * (3N + 1), ...] input.

Discrete actions: Q-learning with a double-Q target (the online critics choose a' = argmax of
their min, the target critics evaluate it, min over the twins) and the exact regulariser
alpha * (logsumexp_a Q(s, a) - Q(s, a_data)).

Lagrange version (``lagrange = True``, appendix F): alpha becomes a learned multiplier,
min_Q max_{alpha >= 0} alpha * (E[logsumexp - Q(s, a_data)] - target_action_gap) + TD, with
alpha = exp(log alpha) (initialised at ``alpha``) updated by gradient ascent on the gap's excess.

Defaults (REFERENCE §4, CORL's locomotion settings whose scores REFERENCE §3 lists): 3x256 critics
and actor, 10 sampled actions per proposal, alpha 10 (the CQL paper used 5.0 for its Gym runs),
critic lr 3e-4, actor lr 1e-4 (the CQL paper lowers the actor's lr below SAC's 3e-4), gamma 0.99,
tau 0.005, no entropy term in the backup. Not implemented: the max-backup variant and the
initial BC warm-up of the actor.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from offbench.algorithm import Algorithm
from offbench.errors import OffbenchError
from offbench.nn import adam, EnsembleMLP, ObservationEncoder, QEnsemble, TanhGaussianPolicy, soft_update


@dataclass
class CQLConfig:
    hidden: tuple[int, ...] = (256, 256, 256)  # critics and actor (CORL, REFERENCE §4)
    critic_lr: float = 3e-4
    actor_lr: float = 1e-4  # also the entropy temperature's lr
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    critics: int = 2
    alpha: float = 10.0  # weight of the CQL regulariser (fixed), or its initial value (Lagrange)
    num_sampled_actions: int = 10  # N per proposal: uniform, pi(.|s), pi(.|s')
    lagrange: bool = False  # learn alpha so that the gap E[logsumexp - Q_data] stays at target_action_gap
    target_action_gap: float = 10.0
    lagrange_lr: float = 3e-4
    backup_entropy: bool = False  # continuous: subtract alpha_ent log pi(a'|s') in the target (SAC) or not
    target_entropy: float | None = None  # None: -|A|
    init_entropy_alpha: float = 1.0
    normalize_observations: bool = True


class CQL(Algorithm):
    config_class = CQLConfig
    summary = "CQL(H): SAC / Q-learning with the conservative log-sum-exp regulariser (optional Lagrange alpha)"

    def __init__(self, observation_space, action_space, config: CQLConfig = CQLConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        self.encoder = ObservationEncoder(observation_space, config.normalize_observations)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        obs_dim, hidden = self.encoder.dim, config.hidden
        if self.discrete:
            self.critic = EnsembleMLP(config.critics, obs_dim, int(action_space.n), hidden)  # [critics, B, A]
        else:
            act_dim = int(np.prod(action_space.shape))
            self.critic = QEnsemble(obs_dim, act_dim, config.critics, hidden)
            self.actor = TanhGaussianPolicy(obs_dim, act_dim, hidden, action_space.low, action_space.high)
            self.log_entropy_alpha = nn.Parameter(torch.tensor(math.log(config.init_entropy_alpha)))
            self.target_entropy = -float(act_dim) if config.target_entropy is None else config.target_entropy
            if not (np.all(np.isfinite(action_space.low)) and np.all(np.isfinite(action_space.high))):
                raise OffbenchError("CQL needs a bounded action box (uniform proposals, tanh policy); got "
                                    f"{action_space}")
            low, high = (torch.as_tensor(b, dtype=torch.float32) for b in (action_space.low, action_space.high))
            self.register_buffer("action_low", low)
            self.register_buffer("action_high", high)
            self.uniform_log_density = -float(torch.log(high - low).sum())
            self.actor_optim = adam(self.actor.parameters(), lr=config.actor_lr)
            self.entropy_optim = adam([self.log_entropy_alpha], lr=config.actor_lr)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self._critic_params, self._target_params = list(self.critic.parameters()), list(self.critic_target.parameters())
        self.critic_optim = adam(self.critic.parameters(), lr=config.critic_lr)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.alpha)), requires_grad=config.lagrange)
        if config.lagrange:
            self.lagrange_optim = adam([self.log_alpha], lr=config.lagrange_lr)

    def prepare(self, dataset):
        self.encoder.fit(dataset.observations)
        return dataset

    # ------------------------------------------------------------------ the regulariser
    def draw_noise(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Every random draw of one continuous update, in the order the update uses them: the
        standard normal for a' ~ pi(.|s') [B, A], the uniform proposals in [0, 1) [B, N, A], the
        standard normals of the policy proposals at s and s' [2B, N, A], and the standard normal
        of the actor step's a ~ pi(.|s) [B, A]."""
        n, act_dim, device, g = self.config.num_sampled_actions, len(self.action_low), self.action_low.device, \
            self.generator
        return {"next": torch.randn((batch_size, act_dim), generator=g, device=device),
                "uniform": torch.rand((batch_size, n, act_dim), generator=g, device=device),
                "proposal": torch.randn((2 * batch_size, n, act_dim), generator=g, device=device),
                "actor": torch.randn((batch_size, act_dim), generator=g, device=device)}

    @torch.no_grad()
    def sample_actions(self, obs: torch.Tensor, next_obs: torch.Tensor, noise: dict[str, torch.Tensor] | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3N proposal actions per state and their log-densities: [B, 3N, A] and [B, 3N].

        Order along the sample axis: N uniform, N from pi(.|s), N from pi(.|s'). ``noise``: the
        ``draw_noise`` draws to use (drawn from ``generator`` here if None)."""
        n, batch = self.config.num_sampled_actions, len(obs)
        low, high = self.action_low, self.action_high
        unit = noise["uniform"] if noise is not None else \
            torch.rand((batch, n, len(low)), generator=self.generator, device=low.device)
        uniform = low + (high - low) * unit
        mean, log_std = self.actor.distribution(torch.cat([obs, next_obs]))  # [2B, A] each
        mean, log_std = mean.unsqueeze(1).expand(-1, n, -1), log_std.unsqueeze(1).expand(-1, n, -1)
        normal = noise["proposal"] if noise is not None else \
            torch.randn(mean.shape, generator=self.generator, device=mean.device)
        u = mean + log_std.exp() * normal
        policy_actions, policy_log_prob = self.actor._squash(u, mean, log_std)  # [2B, N, A], [2B, N]
        actions = torch.cat([uniform, policy_actions[:batch], policy_actions[batch:]], dim=1)
        log_density = torch.cat([torch.full((batch, n), self.uniform_log_density, device=low.device),
                                 policy_log_prob[:batch], policy_log_prob[batch:]], dim=1)
        return actions, log_density

    @staticmethod
    def importance_sampled_logsumexp(q_sampled: torch.Tensor, log_density: torch.Tensor) -> torch.Tensor:
        """Appendix F's estimate of log integral exp Q(s, a) da from M proposal samples:
        logsumexp_i(Q(s, a_i) - log p(a_i)) - log M. ``q_sampled`` [critics, B, M], ``log_density`` [B, M]."""
        return torch.logsumexp(q_sampled - log_density, dim=-1) - math.log(q_sampled.shape[-1])

    def critic_loss(self, batch, obs: torch.Tensor, next_obs: torch.Tensor,
                    noise: dict[str, torch.Tensor] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Eq. (4): 1/2 TD error + alpha * gap, gap = logsumexp_a Q(s, a) - Q(s, a_data) (per critic).

        Returns the loss, the per-critic gaps [critics] (for the Lagrange step) and metrics.
        ``noise``: the ``draw_noise`` draws (continuous actions; drawn from ``generator`` if None)."""
        cfg = self.config
        not_done = 1.0 - batch.terminations
        with torch.no_grad():
            if self.discrete:
                q_next = self.critic(next_obs)  # [critics, B, A]
                best = q_next.min(0).values.argmax(-1)  # double-Q: the online critics choose a'
                q_next_target = self.critic_target(next_obs)
                next_v = q_next_target.gather(-1, best.view(1, -1, 1).expand(q_next_target.shape[0], -1, 1))
                next_v = next_v.squeeze(-1).min(0).values
            else:
                if noise is None:
                    next_action, next_log_prob = self.actor(next_obs, generator=self.generator)
                else:
                    next_action, next_log_prob = self.actor(next_obs, noise=noise["next"])
                next_v = self.critic_target(next_obs, next_action).min(0).values
                if cfg.backup_entropy:
                    next_v = next_v - self.log_entropy_alpha.exp() * next_log_prob
                sampled, log_density = self.sample_actions(obs, next_obs) if noise is None else \
                    self.sample_actions(obs, next_obs, noise)
            target = batch.rewards + cfg.gamma * not_done * next_v

        if self.discrete:
            q_all = self.critic(obs)  # [critics, B, A]
            index = batch.actions.long().view(1, -1, 1).expand(q_all.shape[0], -1, 1)
            q_data = q_all.gather(-1, index).squeeze(-1)  # [critics, B]
            logsumexp = torch.logsumexp(q_all, dim=-1)
        else:
            m = sampled.shape[1]
            # The data's action and the 3N proposals in ONE batched call: [B * (3N + 1), obs + act].
            actions = torch.cat([batch.actions.unsqueeze(1), sampled], dim=1)  # [B, 3N + 1, A]
            obs_rep = obs.unsqueeze(1).expand(-1, m + 1, -1)
            q_all = self.critic(obs_rep.reshape(-1, obs.shape[-1]), actions.reshape(-1, actions.shape[-1]))
            q_all = q_all.view(q_all.shape[0], len(obs), m + 1)  # [critics, B, 3N + 1]
            q_data = q_all[..., 0]
            logsumexp = self.importance_sampled_logsumexp(q_all[..., 1:], log_density)

        td_loss = 0.5 * ((q_data - target) ** 2).mean(1).sum()
        gap = (logsumexp - q_data).mean(1)  # [critics]
        alpha = self.log_alpha.exp().detach()
        loss = td_loss + alpha * gap.sum()
        info = {"td_loss": td_loss, "cql_gap": gap.mean(), "cql_alpha": alpha, "q_data_mean": q_data.mean(),
                "logsumexp_mean": logsumexp.mean()}
        return loss, gap.detach(), info

    def lagrange_loss(self, gap: torch.Tensor) -> torch.Tensor:
        """Gradient ascent on alpha * (gap - target_action_gap) = descent on its negative:
        alpha grows while the gap exceeds the target and shrinks below it."""
        return -(self.log_alpha.exp() * (gap - self.config.target_action_gap)).mean()

    # ------------------------------------------------------------------ one step
    compiled_parts = ("_critic_gradients", "_actor_gradients")

    def _critic_gradients(self, batch, noise: dict[str, torch.Tensor] | None):
        """Critic loss and backward: (encoded observations, per-critic gaps, metrics)."""
        obs, next_obs = self.encoder(batch.observations), self.encoder(batch.next_observations)
        critic_loss, gap, info = self.critic_loss(batch, obs, next_obs, noise)
        critic_loss.backward()
        return obs, gap, {k: v.detach() for k, v in info.items()}

    def _actor_gradients(self, obs: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """SAC's actor and temperature losses, one backward (they reach disjoint parameters; the
        critics' weights are frozen by the caller): their metrics."""
        entropy_alpha = self.log_entropy_alpha.exp().detach()
        action, log_prob = self.actor(obs, noise=noise)
        q_new = self.critic(obs, action).min(0).values  # the gradient flows through Q(s, .) to the action only
        actor_loss = (entropy_alpha * log_prob - q_new).mean()
        entropy_loss = -(self.log_entropy_alpha * (log_prob.detach() + self.target_entropy)).mean()
        (actor_loss + entropy_loss).backward()
        return {"actor_loss": actor_loss.detach(), "entropy_alpha": entropy_alpha, "entropy": -log_prob.detach().mean()}

    def update(self, batch) -> dict[str, torch.Tensor]:
        """Critic step (and the Lagrange step), then the actor and temperature steps, then the
        Polyak update. Metrics are 0-d tensors (no host read here; the training loop reads them)."""
        cfg = self.config
        noise = None if self.discrete else self.draw_noise(len(batch.rewards))
        obs, gap, info = self._critic_gradients(batch, noise)
        self.critic_optim.step()
        self.critic_optim.zero_grad(set_to_none=True)
        if cfg.lagrange:
            alpha_loss = self.lagrange_loss(gap)
            alpha_loss.backward()
            self.lagrange_optim.step()
            self.lagrange_optim.zero_grad(set_to_none=True)

        if not self.discrete:  # SAC's actor and temperature steps
            self.critic.requires_grad_(False)
            info.update(self._actor_gradients(obs, noise["actor"]))
            self.critic.requires_grad_(True)
            self.actor_optim.step()
            self.actor_optim.zero_grad(set_to_none=True)
            self.entropy_optim.step()
            self.entropy_optim.zero_grad(set_to_none=True)

        soft_update(self._target_params, self._critic_params, cfg.tau)
        return info

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        features = self.encoder(torch.as_tensor(np.asarray(observations), device=self.device))
        if self.discrete:
            return self.critic(features).min(0).values.argmax(-1).cpu().numpy()
        return self.actor(features, deterministic=True)[0].cpu().numpy()

    def optimizers(self):
        optims = {"critic": self.critic_optim}
        if not self.discrete:
            optims.update(actor=self.actor_optim, entropy=self.entropy_optim)
        if self.config.lagrange:
            optims["lagrange"] = self.lagrange_optim
        return optims
