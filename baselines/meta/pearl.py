r"""PEARL: off-policy meta-RL with probabilistic context variables (Rakelly, Zhou, Quillen, Finn &
Levine, "Efficient Off-Policy Meta-Reinforcement Learning via Probabilistic Context Variables",
ICML 2019; course notes §14.1, posterior sampling).

A task is inferred as a latent z from a *context* c = {(s_j, a_j, r_j, s'_j)} of the task's
transitions, and the agent is SAC (Haarnoja et al. 2018) on the augmented state (s, z).

- Inference network (section 4.1, eq. 2 and Appendix A): each transition is mapped independently
  to a Gaussian factor Psi_phi(z | c_j) = N(mu_j, diag sigma_j^2), and the posterior is their
  product, permutation-invariant:

      q_phi(z | c) ∝ prod_j Psi_phi(z | c_j),   sigma^2 = 1 / sum_j sigma_j^-2,
      mu = sigma^2 sum_j mu_j / sigma_j^2;

  with no context, q is the prior N(0, I).
- Losses (section 4.2, eqs. 3 and Algorithm 1), per task i of a meta-batch, z ~ q_phi(z | c^i)
  reparameterised:

      L_critic = E[(Q_k(s, a, z) - (r + gamma (1 - d) (min_k Qbar_k(s', a', z) - alpha log pi(a'|s', z))))^2]
      L_KL     = beta KL(q_phi(z | c^i) || N(0, I))
      L_actor  = E[alpha log pi(a~ | s, zbar) - min_k Q_k(s, a~, zbar)],   zbar = stopgrad(z)
      L_alpha  = -alpha (log pi(a~ | s, zbar) + target entropy)

  The encoder learns from the critic's Bellman error and the KL term only ("we train the
  inference network using gradients from the Bellman update", section 4.2); the actor sees z
  detached. PEARL's original SAC kept a state-value network V(s, z) and a fixed reward scale;
  this module uses SAC's later twin-Q form with target critics and a learned temperature (the
  one ``baselines/online/sac.py`` uses), a deliberate modernisation.
- Data (Algorithm 1): a fixed set of ``train_tasks`` training tasks, one replay buffer each.
  Every iteration, for ``tasks_per_iteration`` training tasks: ``prior_episodes`` episodes with
  z ~ N(0, I) and ``posterior_episodes`` with z ~ q(z | c) from the context just collected. The
  context batch is drawn from the task's most recent transitions (``context_window``), as PEARL
  samples encoder context from recent, on-policy-ish data.
- Adaptation at test time (section 4.3, posterior sampling): the first episode of a trial acts
  with z ~ N(0, I); after each episode the posterior is recomputed from all of the trial's
  transitions and a new z is drawn. Episode k's return is the adaptation curve.

Defaults: PEARL's point-robot settings where they apply (latent 5, beta = 0.1 written as
``kl_weight``, 3x300 networks, lr 3e-4, batch 256 per task, context batch 100, discount 0.99),
scaled down for a CPU in the ``meta`` protocol.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from offbench.checkpoint import load_checkpoint, save_checkpoint
from offbench.cpu import torch_threads
from offbench.errors import OffbenchError
from offbench.nn import QEnsemble, TanhGaussianPolicy, mlp, seed_everything, soft_update
from offbench.resumable import resumable_loop


@dataclass
class PEARLConfig:
    latent_dim: int = 5  # PEARL, point robot
    hidden: tuple[int, ...] = (300, 300, 300)  # PEARL: 3x300 for policy, critics and encoder
    kl_weight: float = 0.1  # beta (PEARL's kl_lambda)
    reward_scale: float = 1.0  # rewards are multiplied by this in the critic's target (rlkit's point robot: 100, with alpha fixed at 1)
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    batch_size: int = 256  # RL transitions per task in a meta-batch
    context_batch: int = 100  # context transitions per task (PEARL's embedding_batch_size)
    context_window: int = 400  # the encoder's context comes from this many latest transitions of a task
    meta_batch: int = 16  # tasks per gradient step (PEARL: 16 on point robot)
    train_tasks: int = 40  # the fixed training task set (PEARL: 40 on sparse point robot)
    tasks_per_iteration: int = 5  # tasks whose data is collected per iteration
    prior_episodes: int = 1
    posterior_episodes: int = 1
    updates_per_iteration: int = 100
    init_alpha: float = 1.0
    threads: int = 1


def product_of_gaussians(mu: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. (2)'s posterior from factors ``mu, var`` [..., N, d]: (mean, variance) [..., d]."""
    var = var.clamp(min=1e-7)
    posterior_var = 1.0 / (1.0 / var).sum(-2)
    return posterior_var * (mu / var).sum(-2), posterior_var


def kl_to_standard_normal(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag var) || N(0, I)) summed over the latent dimensions [...]."""
    return 0.5 * (var + mean ** 2 - 1.0 - var.log()).sum(-1)


class PEARL(nn.Module):
    """PEARL for a meta-RL family with Box observations and actions (module docstring)."""

    config_class = PEARLConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: PEARLConfig = PEARLConfig(),
                 seed: int = 0):
        super().__init__()
        if not (isinstance(observation_space, gym.spaces.Box) and isinstance(action_space, gym.spaces.Box)):
            raise OffbenchError("PEARL here takes Box observations and actions (point robot, cheetah)")
        self.config, self.seed = config, int(seed)
        self.obs_dim, self.act_dim = int(np.prod(observation_space.shape)), int(np.prod(action_space.shape))
        d, a, z = self.obs_dim, self.act_dim, config.latent_dim
        seed_everything(seed)
        self.encoder = mlp(2 * d + a + 1, 2 * z, tuple(config.hidden))  # (s, a, r, s') -> (mu_j, sigma_j^2 pre-softplus)
        self.actor = TanhGaussianPolicy(d + z, a, tuple(config.hidden), action_space.low, action_space.high)
        self.critic = QEnsemble(d + z, a, 2, tuple(config.hidden))
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(config.init_alpha))))
        # SAC's heuristic -|A| is for actions in [-1, 1]^|A|; on a box of half-widths w_i the same
        # policy has entropy sum log w_i higher or lower (the point robot's steps are in [-0.1, 0.1]^2,
        # whose uniform entropy, -3.2, is below -|A| = -2: that target would raise alpha for ever)
        self.target_entropy = -float(a) + float(np.log((action_space.high - action_space.low) / 2).sum())
        self.critic_optim = torch.optim.Adam([*self.critic.parameters(), *self.encoder.parameters()], lr=config.lr)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=config.lr)
        self.alpha_optim = torch.optim.Adam([self.log_alpha], lr=config.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.action_space = action_space

    # ------------------------------------------------------------------ inference (eq. 2)
    def posterior(self, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, variance) of q(z | c) for ``context`` [T, N, 2d + a + 1] (T tasks), or the prior."""
        if context is None or context.shape[-2] == 0:
            shape = (1 if context is None else context.shape[0], self.config.latent_dim)
            return torch.zeros(shape), torch.ones(shape)
        mu, raw = self.encoder(context).chunk(2, -1)
        return product_of_gaussians(mu, nn.functional.softplus(raw))  # sigma_j^2 = softplus(.), as PEARL

    def sample_z(self, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        return mean + var.sqrt() * torch.randn(mean.shape, generator=self.generator)

    # ------------------------------------------------------------------ losses (section 4.2)
    def update(self, context: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on a meta-batch: ``context`` [T, C, ctx], ``batch`` fields [T, B, ...]."""
        cfg = self.config
        T, B = batch["observations"].shape[:2]
        mean, var = self.posterior(context)
        z = self.sample_z(mean, var)  # [T, latent], reparameterised: the critic's loss trains the encoder
        zs = z[:, None, :].expand(T, B, -1).reshape(T * B, -1)
        flat = {k: v.reshape(T * B, *v.shape[2:]) for k, v in batch.items()}
        s, a, r, s2, done = flat["observations"], flat["actions"], flat["rewards"], flat["next_observations"], flat["terminations"]
        alpha = self.log_alpha.exp().detach()

        with torch.no_grad():
            zbar = zs.detach()
            a2, logp2 = self.actor(torch.cat([s2, zbar], -1), generator=self.generator)
            q_next = self.critic_target(torch.cat([s2, zbar], -1), a2).min(0).values
            target = cfg.reward_scale * r + cfg.gamma * (1.0 - done) * (q_next - alpha * logp2)
        q = self.critic(torch.cat([s, zs], -1), a)
        critic_loss = ((q - target) ** 2).mean(1).sum()
        kl = kl_to_standard_normal(mean, var).mean()
        self.critic_optim.zero_grad(set_to_none=True)
        (critic_loss + cfg.kl_weight * kl).backward()
        self.critic_optim.step()

        x = torch.cat([s, zs.detach()], -1)
        new_a, logp = self.actor(x, generator=self.generator)
        self.critic.requires_grad_(False)
        q_new = self.critic(x, new_a).min(0).values
        self.critic.requires_grad_(True)
        actor_loss = (alpha * logp - q_new).mean()
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optim.step()

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_optim.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optim.step()
        soft_update(self.critic_target, self.critic, cfg.tau)
        return {"critic_loss": critic_loss.item(), "kl": kl.item(), "actor_loss": actor_loss.item(),
                "alpha": alpha.item()}

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def act(self, obs: np.ndarray, z: torch.Tensor, deterministic: bool = False) -> np.ndarray:
        x = torch.cat([torch.as_tensor(np.asarray(obs), dtype=torch.float32).reshape(1, -1), z.reshape(1, -1)], -1)
        action, _ = self.actor(x, deterministic, self.generator)
        return action[0].numpy()


def transition_row(obs, action, reward, next_obs) -> np.ndarray:
    """A context / replay row: [s, a, r, s'] (float32)."""
    return np.concatenate([np.asarray(obs, np.float32).ravel(), np.asarray(action, np.float32).ravel(),
                           [np.float32(reward)], np.asarray(next_obs, np.float32).ravel()])


class PEARLTrainer:
    """Algorithm 1 on a family (``make_env``): per-task replay buffers, data collection with prior
    and posterior z, meta-batch updates; ``fit`` checkpoints every iteration and resumes exactly
    (buffers as ``.npz`` arrays, never pickled), ``adapt_and_evaluate`` plays trials with posterior
    sampling."""

    def __init__(self, make_env: Callable[[], gym.Env], config: PEARLConfig = PEARLConfig(), seed: int = 0):
        self.make_env, self.config, self.seed = make_env, config, int(seed)
        self.env = make_env()
        self.agent = PEARL(self.env.observation_space, self.env.action_space, config, seed)
        self.tasks = self.env.unwrapped.sample_tasks(config.train_tasks, seed * 7919 + 17)
        self.buffers: list[list[np.ndarray]] = [[] for _ in self.tasks]
        self.rng = np.random.default_rng(seed)
        self.iteration, self.episodes = 0, 0
        d, a = self.agent.obs_dim, self.agent.act_dim
        self._split = (d, d + a, d + a + 1)

    # ---------------------------------------------------------------- data
    def play(self, task: dict, z_from: Callable[[list], torch.Tensor], deterministic: bool = False,
             episodes: int = 1, seed: int | None = None, context: list | None = None) -> tuple[list, list[float]]:
        """``episodes`` episodes on ``task``; before each, z = ``z_from(context so far)``. Returns the
        transitions and each episode's return."""
        rows, returns = list(context or []), []
        for e in range(episodes):
            z = z_from(rows)
            obs, _ = self.env.reset(seed=seed + e if seed is not None else self._episode_seed(), options={"task": task})
            done, total = False, 0.0
            while not done:
                action = self.agent.act(obs, z, deterministic)
                next_obs, reward, terminated, truncated, _ = self.env.step(action)
                rows.append(transition_row(obs, action, reward, next_obs))
                total += float(reward)
                obs, done = next_obs, terminated or truncated
            returns.append(total)
        return rows[len(context or []):], returns

    def _episode_seed(self) -> int:
        self.episodes += 1
        return self.seed * 1_000_003 + self.episodes

    def _posterior_z(self, rows: list) -> torch.Tensor:
        context = None if not rows else torch.as_tensor(np.stack(rows))[None]
        with torch.no_grad():
            return self.agent.sample_z(*self.agent.posterior(context))[0]

    def _prior_z(self, rows: list) -> torch.Tensor:
        return self._posterior_z([])

    def collect(self) -> None:
        cfg = self.config
        for i in self.rng.choice(len(self.tasks), cfg.tasks_per_iteration, replace=False):
            rows, _ = self.play(self.tasks[i], self._prior_z, episodes=cfg.prior_episodes)
            self.buffers[i].extend(rows)
            if cfg.posterior_episodes:
                recent = self.buffers[i][-cfg.context_window:]
                z_rows = [recent[j] for j in self.rng.choice(len(recent), min(cfg.context_batch, len(recent)),
                                                             replace=False)]
                rows, _ = self.play(self.tasks[i], lambda _: self._posterior_z(z_rows), episodes=cfg.posterior_episodes)
                self.buffers[i].extend(rows)

    def _batch(self, task: int, size: int, recent: bool) -> np.ndarray:
        rows = self.buffers[task][-self.config.context_window:] if recent else self.buffers[task]
        return np.stack([rows[j] for j in self.rng.integers(0, len(rows), size)])

    def train_step(self) -> dict:
        cfg = self.config
        filled = [i for i, b in enumerate(self.buffers) if b]
        tasks = self.rng.choice(filled, min(cfg.meta_batch, len(filled)), replace=False)
        context = torch.as_tensor(np.stack([self._batch(i, cfg.context_batch, True) for i in tasks]))
        rl = torch.as_tensor(np.stack([self._batch(i, cfg.batch_size, False) for i in tasks]))
        d, da, dar = self._split
        batch = {"observations": rl[..., :d], "actions": rl[..., d:da], "rewards": rl[..., da],
                 "next_observations": rl[..., dar:], "terminations": torch.zeros(rl.shape[:2])}
        return self.agent.update(context, batch)

    # ---------------------------------------------------------------- training with exact resume
    def _save(self, stem: Path) -> None:
        arrays = {f"task{i}": np.stack(b) if b else np.zeros((0, self._split[2] + self.agent.obs_dim), np.float32)
                  for i, b in enumerate(self.buffers)}
        tmp = stem.with_name(f".{stem.name}.npz.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        tmp.replace(stem.with_suffix(".npz"))
        save_checkpoint(stem, modules={"pearl": self.agent},
                        optimizers={"critic": self.agent.critic_optim, "actor": self.agent.actor_optim,
                                    "alpha": self.agent.alpha_optim},
                        generators={"pearl": self.agent.generator},
                        extra={"iteration": self.iteration, "episodes": self.episodes,
                               "numpy_rng": self.rng.bit_generator.state, "config": asdict(self.config)})

    def _load(self, stem: Path) -> None:
        meta = load_checkpoint(stem, modules={"pearl": self.agent},
                               optimizers={"critic": self.agent.critic_optim, "actor": self.agent.actor_optim,
                                           "alpha": self.agent.alpha_optim},
                               generators={"pearl": self.agent.generator})
        if meta["config"] != json.loads(json.dumps(asdict(self.config))):
            raise OffbenchError(f"{stem.parent} holds a PEARL run with other settings; use another folder")
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
            self.buffers = [list(data[f"task{i}"]) for i in range(len(self.tasks))]
        self.iteration, self.episodes = meta["iteration"], meta["episodes"]
        self.rng.bit_generator.state = meta["numpy_rng"]

    def iterate(self) -> dict:
        """One iteration of Algorithm 1: collect, then ``updates_per_iteration`` meta-batch steps."""
        self.collect()
        stats = [self.train_step() for _ in range(self.config.updates_per_iteration)]
        self.iteration += 1
        return {"iteration": self.iteration, "transitions": int(sum(len(b) for b in self.buffers)),
                **{k: float(np.mean([s[k] for s in stats])) for k in stats[0]}}

    def fit(self, iterations: int, out: str | Path, on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
        with torch_threads(self.config.threads):  # restored after: no thread count left behind
            return resumable_loop(out, iterations, load=self._load, save=self._save, current=lambda: self.iteration,
                                  step=self.iterate, on_iteration=on_iteration)

    def adapt_and_evaluate(self, tasks: list[dict], episodes: int, seed: int) -> np.ndarray:
        """Per-episode returns [tasks, episodes] of trials with posterior sampling (section 4.3),
        deterministic actions, seeded (the training streams are left untouched)."""
        with torch_threads(self.config.threads):  # the run's own thread count, whatever the caller's
            stream, self.agent.generator = self.agent.generator, torch.Generator().manual_seed(seed)
            try:
                out = np.zeros((len(tasks), episodes))
                for i, task in enumerate(tasks):
                    context: list = []
                    for e in range(episodes):
                        rows, returns = self.play(task, self._posterior_z, deterministic=True, seed=seed + 1000 * i + e,
                                                  context=context)
                        context = context + rows
                        out[i, e] = returns[0]
                return out
            finally:
                self.agent.generator = stream
