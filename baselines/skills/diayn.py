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

``DIAYNTrainer.fit`` runs episodes (one skill each) with SAC updates after every step, checkpoints
every ``checkpoint_every`` episodes (the replay buffer as ``.npz`` arrays, never pickled) and resumes
exactly; ``skill_rollouts`` plays every skill for the metrics of ``offbench.evaluation.skills``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from baselines.online.sac import SAC, SACConfig
from offbench.checkpoint import load_checkpoint, save_checkpoint
from offbench.errors import OffbenchError
from offbench.nn import mlp, seed_everything
from offbench.resumable import resumable_loop


@dataclass
class DIAYNConfig:
    skills: int = 10
    hidden: tuple[int, ...] = (128, 128)
    lr: float = 3e-4
    alpha: float = 0.1  # SAC's temperature, fixed (DIAYN)
    gamma: float = 0.99
    batch_size: int = 128
    warmup_steps: int = 1000  # uniform actions before the first update
    buffer_size: int = 200_000
    threads: int = 1


def pseudo_reward(log_q: torch.Tensor, skills: torch.Tensor, k: int) -> torch.Tensor:
    """Eq. (3): log q(z | s') - log p(z), with ``log_q`` [B, K] the discriminator's log-softmax."""
    return log_q.gather(1, skills.long().unsqueeze(1)).squeeze(1) + float(np.log(k))


class DIAYNTrainer:
    def __init__(self, make_env: Callable[[], gym.Env], config: DIAYNConfig = DIAYNConfig(), seed: int = 0):
        self.make_env, self.config, self.seed = make_env, config, int(seed)
        self.env = make_env()
        if not isinstance(self.env.action_space, gym.spaces.Box):
            raise OffbenchError("DIAYN here takes Box actions (SAC)")
        space = self.env.observation_space
        self.obs_dim, k = int(np.prod(space.shape)), config.skills
        augmented = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim + k,), np.float32)
        seed_everything(seed)
        self.sac = SAC(augmented, self.env.action_space,
                       SACConfig(hidden=tuple(config.hidden), actor_lr=config.lr, critic_lr=config.lr, alpha_lr=0.0,
                                 init_alpha=config.alpha, gamma=config.gamma), seed=seed)
        self.discriminator = mlp(self.obs_dim, k, tuple(config.hidden))
        self.disc_optim = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr)
        n, a = config.buffer_size, int(np.prod(self.env.action_space.shape))
        self.buffer = {"obs": np.zeros((n, self.obs_dim), np.float32), "next_obs": np.zeros((n, self.obs_dim), np.float32),
                       "actions": np.zeros((n, a), np.float32), "skills": np.zeros(n, np.int64),
                       "terminations": np.zeros(n, np.float32)}
        self.size, self.steps, self.episodes = 0, 0, 0
        self.rng = np.random.default_rng(seed)

    def augment(self, obs: np.ndarray, skills: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32).reshape(len(skills), -1)
        return np.concatenate([obs, np.eye(self.config.skills, dtype=np.float32)[skills]], 1)

    # ---------------------------------------------------------------- one episode and its updates
    def iterate(self) -> dict:
        cfg = self.config
        skill = int(self.rng.integers(cfg.skills))
        obs, _ = self.env.reset(seed=self.seed * 1_000_003 + self.episodes)
        done, stats = False, []
        while not done:
            if self.steps < cfg.warmup_steps:
                action = self.rng.uniform(self.env.action_space.low, self.env.action_space.high).astype(np.float32)
            else:
                action = self.sac.act(self.augment(obs, np.array([skill])), deterministic=False)[0][0]
            next_obs, _, terminated, truncated, _ = self.env.step(action)
            i = self.size % cfg.buffer_size
            for key, value in (("obs", obs), ("next_obs", next_obs), ("actions", action), ("skills", skill),
                               ("terminations", float(terminated))):
                self.buffer[key][i] = value
            self.size, self.steps = self.size + 1, self.steps + 1
            obs, done = next_obs, terminated or truncated
            if self.steps >= cfg.warmup_steps:
                stats.append(self.update())
        self.episodes += 1
        row = {"iteration": self.episodes, "steps": self.steps, "skill": skill}
        if stats:
            row.update({k: float(np.mean([s[k] for s in stats])) for k in stats[0]})
        return row

    def update(self) -> dict[str, float]:
        cfg = self.config
        idx = self.rng.integers(0, min(self.size, cfg.buffer_size), cfg.batch_size)
        b = {k: torch.as_tensor(v[idx]) for k, v in self.buffer.items()}
        log_q = F.log_softmax(self.discriminator(b["next_obs"]), -1)
        disc_loss = F.nll_loss(log_q, b["skills"])  # L_phi
        self.disc_optim.zero_grad(set_to_none=True)
        disc_loss.backward()
        self.disc_optim.step()
        reward = pseudo_reward(log_q.detach(), b["skills"], cfg.skills)  # eq. (3), the current discriminator
        skills = b["skills"].numpy()
        sac_stats = self.sac.update({
            "observations": torch.as_tensor(self.augment(b["obs"].numpy(), skills)),
            "next_observations": torch.as_tensor(self.augment(b["next_obs"].numpy(), skills)),
            "actions": b["actions"], "rewards": reward, "terminations": b["terminations"]})
        return {"discriminator_loss": disc_loss.item(), "pseudo_reward": reward.mean().item(),
                "discriminator_accuracy": (log_q.argmax(1) == b["skills"]).float().mean().item(),
                "critic_loss": sac_stats["critic_loss"]}

    # ---------------------------------------------------------------- skills for the metrics
    @torch.no_grad()
    def skill_rollouts(self, per_skill: int, seed: int, deterministic: bool = False) -> dict[str, np.ndarray]:
        """``per_skill`` episodes of every skill: ``positions`` [R, T+1, d], ``skills`` [R] (seeded; the
        training streams are left untouched)."""
        stream, self.sac.generator = self.sac.generator, torch.Generator().manual_seed(seed)
        try:
            paths, skills = [], []
            for z in range(self.config.skills):
                for e in range(per_skill):
                    obs, _ = self.env.reset(seed=seed + 1000 * z + e)
                    path, done = [obs], False
                    while not done:
                        action = self.sac.act(self.augment(obs, np.array([z])), deterministic=deterministic)[0][0]
                        obs, _, terminated, truncated, _ = self.env.step(action)
                        path.append(obs)
                        done = terminated or truncated
                    paths.append(np.asarray(path))
                    skills.append(z)
            return {"positions": np.stack(paths), "skills": np.asarray(skills)}
        finally:
            self.sac.generator = stream

    # ---------------------------------------------------------------- checkpoints and the loop
    def _modules(self):
        return ({"sac": self.sac, "discriminator": self.discriminator},
                {**{f"sac_{k}": v for k, v in self.sac.optimizers().items()}, "discriminator": self.disc_optim},
                {"sac": self.sac.generator})

    def _save(self, stem: Path) -> None:
        tmp = stem.with_name(f".{stem.name}.npz.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **{k: v[: min(self.size, self.config.buffer_size)] for k, v in self.buffer.items()})
        tmp.replace(stem.with_suffix(".npz"))
        modules, optimizers, generators = self._modules()
        save_checkpoint(stem, modules=modules, optimizers=optimizers, generators=generators,
                        extra={"size": self.size, "steps": self.steps, "episodes": self.episodes,
                               "numpy_rng": self.rng.bit_generator.state, "config": asdict(self.config)})

    def _load(self, stem: Path) -> None:
        modules, optimizers, generators = self._modules()
        meta = load_checkpoint(stem, modules=modules, optimizers=optimizers, generators=generators)
        if meta["config"] != json.loads(json.dumps(asdict(self.config))):
            raise OffbenchError(f"{stem.parent} holds a DIAYN run with other settings; use another folder")
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
            for key in self.buffer:
                self.buffer[key][: len(data[key])] = data[key]
        self.size, self.steps, self.episodes = meta["size"], meta["steps"], meta["episodes"]
        self.rng.bit_generator.state = meta["numpy_rng"]

    def fit(self, episodes: int, out: str | Path, on_iteration: Callable[[dict], None] | None = None,
            checkpoint_every: int = 10) -> list[dict]:
        torch.set_num_threads(self.config.threads)
        return resumable_loop(out, episodes, load=self._load, save=self._save, current=lambda: self.episodes,
                              step=self.iterate, on_iteration=on_iteration, checkpoint_every=checkpoint_every)
