r"""Offline meta-RL: IQL conditioned on a task inferred from context ("offline PEARL with a
context-conditioned IQL", issue 17), trained on per-task offline data (``meta/<family>/...``).

The inference network is PEARL's (Rakelly et al. 2019, eq. 2; ``baselines/meta/pearl.py``): each
context transition (s, a, r, s') of a task gives a Gaussian factor, q(z | c) is their product,
and z ~ q(z | c) is drawn with the reparameterisation trick. The agent is IQL (Kostrikov et al.
2022, ``baselines/iql.py``) on the augmented state (s, z), its three losses as in that paper:

    L_V  = E[ L2^tau(min_j Qbar_j(s, a, zbar) - V(s, zbar)) ]                           (eq. 5)
    L_Q  = sum_j E[ (r + gamma (1 - d) V(s', zbar) - Q_j(s, a, z))^2 ]                     (eq. 6)
    L_pi = -E[ min(exp(beta (min_j Qbar_j(s, a, zbar) - V(s, zbar))), 100) log pi(a | s, zbar) ] (eq. 7)
    L    = L_V + L_Q + L_pi + kl_weight E[ KL(q(z | c) || N(0, I)) ]

zbar = stopgrad(z): as in PEARL, the encoder learns from the critics' Bellman error and the KL
term only. A meta-batch holds ``tasks_per_batch`` tasks, each with its own RL batch and an
independently drawn context batch from the same task's data (``offbench.data.task_batches``).

Evaluation (``make_eval_policy``, the protocol loop's single episodes): the policy acts with z =
the posterior mean of the transitions it has itself collected so far in the episode (the prior's
mean, 0, before the first), i.e. the context comes from its own exploration, online: the setting
where offline-trained encoders meet a context distribution they were not trained on (the known
difficulty of offline meta-RL; BOReL, MACAW). ``adapt_and_evaluate`` plays whole trials of a
meta benchmark, with that context carried across the trial's episodes or fixed from a task's
offline transitions (``offline_context``); ``offbench.evaluation.meta_adaptation`` reports them.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from baselines.meta.pearl import kl_to_standard_normal, product_of_gaussians
from offbench.algorithm import Algorithm
from offbench.data.dataset import Dataset
from offbench.data.task_batches import TaskBatch, TaskBatchSampler, context_rows
from offbench.errors import OffbenchError
from offbench.goal import expectile_loss
from offbench.nn import CategoricalPolicy, EnsembleMLP, GaussianPolicy, QEnsemble, adam, mlp, soft_update


@dataclass
class ContextIQLConfig:
    hidden: tuple[int, ...] = (128, 128)
    latent_dim: int = 5  # PEARL's
    kl_weight: float = 0.1  # PEARL's beta
    tasks_per_batch: int = 8  # the batch size is split over these tasks
    context_size: int = 32  # context transitions per task
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    expectile: float = 0.7  # IQL
    beta: float = 3.0  # IQL
    max_weight: float = 100.0


class ContextIQL(Algorithm):
    config_class = ContextIQLConfig
    summary = "context-conditioned IQL: PEARL's product-of-Gaussians task encoder + IQL on (s, z), offline"

    def __init__(self, observation_space: gym.Space, action_space: gym.Space,
                 config: ContextIQLConfig = ContextIQLConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        if not isinstance(observation_space, gym.spaces.Box):
            raise OffbenchError("ContextIQL takes Box observations")
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        d = int(np.prod(observation_space.shape))
        a = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        x, h = d + config.latent_dim, tuple(config.hidden)
        self.encoder = mlp(2 * d + a + 1, 2 * config.latent_dim, h)
        if self.discrete:
            self.q = EnsembleMLP(2, x, a, h)  # [2, N, A]
            self.policy = CategoricalPolicy(x, a, h)
        else:
            self.q = QEnsemble(x, a, 2, h)
            self.policy = GaussianPolicy(x, a, h, action_space.low, action_space.high)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.value = mlp(x, 1, h)
        self.optim = adam(self.parameters(), lr=config.lr)

    def make_sampler(self, dataset: Dataset, batch_size: int, seed: int):
        cfg = self.config
        return TaskBatchSampler(dataset, tasks=cfg.tasks_per_batch, batch_per_task=max(1, batch_size // cfg.tasks_per_batch),
                                context_size=cfg.context_size, seed=seed, device=self.device)

    # ------------------------------------------------------------------ the networks on (s, z)
    def posterior(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, raw = self.encoder(context).chunk(2, -1)
        return product_of_gaussians(mu, nn.functional.softplus(raw))

    def q_values(self, net, x: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q_j(x, a) [2, N]."""
        if self.discrete:
            return net(x).gather(-1, actions.long().reshape(1, -1, 1).expand(2, -1, 1)).squeeze(-1)
        return net(x, actions)

    # ------------------------------------------------------------------ the losses (module docstring)
    def update(self, batch: TaskBatch) -> dict[str, torch.Tensor]:
        cfg = self.config
        T, B = batch.rewards.shape
        mean, var = self.posterior(batch.context)
        z = mean + var.sqrt() * torch.randn(mean.shape, generator=self.generator, device=mean.device)
        zs = z[:, None, :].expand(T, B, -1).reshape(T * B, -1)
        s = batch.observations.reshape(T * B, -1)
        s2 = batch.next_observations.reshape(T * B, -1)
        a = batch.actions.reshape(T * B, *batch.actions.shape[2:])
        r, done = batch.rewards.reshape(-1), batch.terminations.reshape(-1)
        x, x_bar, x2_bar = torch.cat([s, zs], -1), torch.cat([s, zs.detach()], -1), torch.cat([s2, zs.detach()], -1)

        with torch.no_grad():
            q_target = self.q_values(self.q_target, x_bar, a).min(0).values
            next_v = self.value(x2_bar).squeeze(-1)
        v = self.value(x_bar).squeeze(-1)
        value_loss = expectile_loss(q_target - v, q_target - v, cfg.expectile).mean()  # eq. (5)
        td_target = r + cfg.gamma * (1.0 - done) * next_v
        q_loss = ((self.q_values(self.q, x, a) - td_target) ** 2).mean(1).sum()  # eq. (6), z with gradient
        weights = torch.exp(cfg.beta * (q_target - v.detach())).clamp(max=cfg.max_weight)
        actor_loss = -(weights * self.policy.log_prob(x_bar, a)).mean()  # eq. (7)
        kl = kl_to_standard_normal(mean, var).mean()
        loss = value_loss + q_loss + actor_loss + cfg.kl_weight * kl
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        soft_update(self.q_target, self.q, cfg.tau)
        return {"value_loss": value_loss.detach(), "q_loss": q_loss.detach(), "actor_loss": actor_loss.detach(),
                "kl": kl.detach(), "weight_mean": weights.mean()}

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act_with(self, observations: np.ndarray, z: torch.Tensor) -> np.ndarray:
        """Deterministic actions for a batch of observations and task latents [N, latent]."""
        x = torch.cat([torch.as_tensor(np.asarray(observations), dtype=torch.float32, device=self.device)
                       .reshape(len(z), -1), z], -1)
        if self.discrete:
            return self.policy.net(x).argmax(-1).cpu().numpy()
        return self.policy(x, deterministic=True)[0].cpu().numpy()

    @torch.no_grad()
    def posterior_mean(self, rows: np.ndarray | None) -> torch.Tensor:
        """The posterior mean of z for context rows ``[N, ctx]`` (the prior's, 0, for none)."""
        if rows is None or len(rows) == 0:
            return torch.zeros(self.config.latent_dim, device=self.device)
        return self.posterior(torch.as_tensor(rows, device=self.device)[None])[0][0]

    def offline_context(self, dataset: Dataset, size: int, seed: int) -> dict[int, np.ndarray]:
        """``size`` context rows of every task of ``dataset`` ``{task_id: [size, ctx]}``, drawn with ``seed``."""
        ids = np.unique(dataset.extra("task_id"))
        rng = np.random.default_rng(seed)
        out = {}
        for task_id in ids.tolist():
            rows = np.flatnonzero(dataset.extra("task_id") == task_id)
            pick = rng.choice(rows, min(size, len(rows)), replace=False)
            out[int(task_id)] = context_rows(dataset.observations[pick], dataset.actions[pick], dataset.rewards[pick],
                                             dataset.next_observations[pick], self.action_space)
        return out

    @torch.no_grad()
    def adapt_and_evaluate(self, make_env, tasks: list[dict], episodes: int, seed: int,
                           contexts: list[np.ndarray] | None = None) -> np.ndarray:
        """Per-episode returns ``[tasks, episodes]`` of trials of ``episodes`` episodes on each task
        (few-shot adaptation; the surface of ``PEARLTrainer.adapt_and_evaluate``), deterministic actions.

        Online context (``contexts`` None): before every step, z = the posterior mean of all the
        transitions the policy has collected in this trial so far, across its episodes (0, the
        prior's mean, at the trial's start), so episode k shows the return after k - 1 episodes of
        its own exploration. Offline context: ``contexts[i]`` are rows of task i's offline data
        (:meth:`offline_context`), z is their posterior mean, fixed for the whole trial."""
        env = make_env()
        out = np.zeros((len(tasks), episodes))
        try:
            for i, task in enumerate(tasks):
                rows: list[np.ndarray] = []
                fixed = None if contexts is None else self.posterior_mean(contexts[i])
                for e in range(episodes):
                    obs, _ = env.reset(seed=seed + 1000 * i + e, options={"task": task})
                    done, total = False, 0.0
                    while not done:
                        z = fixed if fixed is not None else self.posterior_mean(np.stack(rows) if rows else None)
                        action = self.act_with(np.asarray(obs)[None], z[None])[0]
                        next_obs, reward, terminated, truncated, _ = env.step(action)
                        rows.append(context_rows(np.asarray(obs)[None], np.asarray(action)[None], np.array([reward]),
                                                 np.asarray(next_obs)[None], self.action_space)[0])
                        total += float(reward)
                        obs, done = next_obs, terminated or truncated
                    out[i, e] = total
        finally:
            env.close()
        return out

    def act(self, observations: np.ndarray) -> np.ndarray:
        """With the prior's mean z (no context); evaluation uses :meth:`make_eval_policy`."""
        return self.act_with(observations, torch.zeros(len(observations), self.config.latent_dim, device=self.device))

    def make_eval_policy(self) -> "OnlineContextPolicy":
        return OnlineContextPolicy(self)

    def optimizers(self):
        return {"context_iql": self.optim}


class OnlineContextPolicy:
    """An ``offbench.rollout.EpisodicPolicy``: z = the posterior mean of the episode's own
    transitions so far, per environment slot."""

    def __init__(self, algorithm: ContextIQL):
        self.algorithm = algorithm
        self.rows: dict[int, list[np.ndarray]] = {}
        self.last: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.pending: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}

    def reset(self, slot: int) -> None:
        self.rows[slot] = []
        self.last.pop(slot, None)
        self.pending.pop(slot, None)

    def act(self, observations: np.ndarray, slots: list[int]) -> np.ndarray:
        space = self.algorithm.action_space
        for obs, slot in zip(observations, slots):  # the transition that led here is now complete
            if slot in self.pending:
                s, a, r = self.pending.pop(slot)
                self.rows.setdefault(slot, []).append(context_rows(s[None], np.asarray(a)[None], np.array([r]),
                                                                   np.asarray(obs)[None], space)[0])
        z = torch.stack([self.algorithm.posterior_mean(np.stack(self.rows[s]) if self.rows.get(s) else None)
                         for s in slots])
        actions = self.algorithm.act_with(observations, z)
        for obs, action, slot in zip(observations, actions, slots):
            self.last[slot] = (np.asarray(obs), action)
        return actions

    def observe(self, slots: list[int], rewards: np.ndarray) -> None:
        for slot, reward in zip(slots, rewards):
            s, a = self.last.pop(slot)
            self.pending[slot] = (s, a, float(reward))
