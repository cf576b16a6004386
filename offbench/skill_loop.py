r"""The loop every online skill-discovery method shares (issue 18; ``baselines/skills/``: DIAYN, DADS,
METRA, RND and uniform-random data collection; course notes §16).

A :class:`SkillTrainer` runs episodes. Each episode draws one skill z from the prior of its
:class:`SkillSpace` (categorical, continuous, or none), acts with a skill-conditioned SAC
(Haarnoja et al. 2018; the ``"sac"`` of ``baselines.online.registry``) on the augmented
observation (s, z) -- z one-hot for categorical skills, the vector itself for continuous ones --
stores every transition in a replay buffer of numpy arrays, and after ``warmup_steps`` uniform
steps makes one update per environment step:

1. a batch of ``batch_size`` transitions is drawn uniformly from the buffer;
2. the method's :meth:`SkillTrainer.intrinsic_update` takes one step on its own model (a
   discriminator, a skill-dynamics model, a representation, a predictor) and returns the
   intrinsic reward of the batch -- the one place a method's loss and reward live;
3. SAC takes one step on that reward.

A subclass supplies only ``make_skill_space``, ``build`` (its networks and optimisers),
``intrinsic_update`` and, where it keeps running statistics, ``observe`` / ``extra_state`` /
``load_extra_state``. The loop owns the rest: episodes, the buffer, :meth:`fit` with checkpoints
(networks, optimisers, SAC's generator, the numpy stream, the buffer as ``.npz`` -- never a
pickle) and exact resume through :func:`offbench.resumable.resumable_loop`, and
:meth:`skill_rollouts` for the metrics of ``offbench.evaluation.skills``.

Randomness: everything in training draws from ``self.rng`` (numpy; skills, warm-up actions,
batch indices, a method's own samples) or SAC's own torch generator; the networks are
initialised after ``seed_everything(seed)`` in a fixed order (SAC, then the method's ``build``).
So a seed fixes a run, and a run stopped at a checkpoint and resumed gives the rows and
parameters of the uninterrupted one.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from offbench.checkpoint import load_checkpoint, save_checkpoint
from offbench.errors import OffbenchError
from offbench.nn import seed_everything
from offbench.resumable import resumable_loop

PRIORS = ("categorical", "uniform", "gaussian", "unit", "none")


@dataclass(frozen=True)
class SkillSpace:
    """Where skills live and their prior p(z).

    - ``categorical``: z ~ Uniform{0..dim-1}, stored as an index, shown to the policy one-hot;
    - ``uniform``: z ~ Uniform[-1, 1]^dim (DADS);
    - ``gaussian``: z ~ N(0, I_dim);
    - ``unit``: z ~ N(0, I_dim) scaled to unit length, i.e. uniform on the sphere (METRA);
    - ``none``: no skills (``dim`` 0; exploration methods such as RND).
    """

    prior: str
    dim: int

    def __post_init__(self):
        if self.prior not in PRIORS:
            raise OffbenchError(f"unknown skill prior {self.prior!r}; known: {', '.join(PRIORS)}")
        if self.prior == "none" and self.dim != 0:
            raise OffbenchError(f"a skill space without skills has dim 0, got {self.dim}")
        if self.prior == "categorical" and self.dim < 2:
            raise OffbenchError(f"categorical skills need at least 2 skills, got {self.dim}")
        if self.prior not in ("none", "categorical") and self.dim < 1:
            raise OffbenchError(f"continuous skills need dim >= 1, got {self.dim}")

    @property
    def categorical(self) -> bool:
        return self.prior == "categorical"

    def sample(self, rng: np.random.Generator) -> int | np.ndarray:
        """One skill: an ``int`` index (categorical) or a float32 vector [dim]."""
        if self.categorical:
            return int(rng.integers(self.dim))
        return self.sample_many(rng, ())

    def sample_many(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Skills of the given batch ``shape``: indices [*shape] or vectors [*shape, dim] (float32)."""
        if self.categorical:
            return rng.integers(self.dim, size=shape)
        if self.prior == "uniform":
            return rng.uniform(-1.0, 1.0, (*shape, self.dim)).astype(np.float32)
        if self.prior == "none":
            return np.zeros((*shape, 0), np.float32)
        z = rng.standard_normal((*shape, self.dim))
        if self.prior == "unit":
            z = z / np.linalg.norm(z, axis=-1, keepdims=True)
        return z.astype(np.float32)

    def spread(self, count: int, seed: int) -> np.ndarray:
        """``count`` skills spread over the prior's support, so that a classifier's task does not hang
        on a lucky draw: every categorical skill; in 2-D, ``count`` evenly spaced unit directions
        (``unit``, ``gaussian``: angles 2 pi k / count) or, for ``uniform`` on the square, the same
        directions pushed out to the square's boundary; otherwise :meth:`evaluation_skills`' draw."""
        if self.categorical or self.prior == "none" or self.dim != 2:
            return self.evaluation_skills(count, seed)
        angles = 2.0 * np.pi * np.arange(count) / count
        z = np.stack([np.cos(angles), np.sin(angles)], 1)
        if self.prior == "uniform":
            z = z / np.abs(z).max(1, keepdims=True)
        return z.astype(np.float32)

    def vectors(self, skills: np.ndarray) -> np.ndarray:
        """What the policy sees of skills [B] (indices) or [B, dim]: float32 [B, dim]."""
        skills = np.asarray(skills)
        if self.categorical:
            return np.eye(self.dim, dtype=np.float32)[skills]
        return skills.astype(np.float32, copy=False).reshape(len(skills), self.dim)

    def buffer_column(self, n: int) -> np.ndarray:
        return np.zeros(n, np.int64) if self.categorical else np.zeros((n, self.dim), np.float32)

    def evaluation_skills(self, count: int, seed: int) -> np.ndarray:
        """The skills :meth:`SkillTrainer.skill_rollouts` plays: every categorical skill; ``count``
        draws from a continuous prior (a stream of their own, seeded by ``seed``); one empty skill."""
        if self.categorical:
            return np.arange(self.dim)
        if self.prior == "none":
            return np.zeros((1, 0), np.float32)
        return self.sample_many(np.random.default_rng(seed), (count,))


@dataclass
class SkillLoopConfig:
    """What every skill trainer shares. SAC: ``hidden`` layers for actor and critics, Adam ``lr``,
    temperature ``alpha`` (fixed while ``alpha_lr`` is 0, tuned towards ``target_entropy`` --
    None: -|A| -- otherwise)."""

    hidden: tuple[int, ...] = (128, 128)
    lr: float = 3e-4
    alpha: float = 0.1
    alpha_lr: float = 0.0
    target_entropy: float | None = None
    gamma: float = 0.99
    batch_size: int = 128
    warmup_steps: int = 1000  # uniform actions before the first update
    buffer_size: int = 200_000
    eval_skills: int = 8  # continuous skills: how many skill_rollouts plays unless told
    threads: int = 1

    def check(self, name: str) -> None:
        """Raise :class:`OffbenchError` naming the first setting that cannot work."""
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise OffbenchError(f"{name}: hidden must list at least one layer width >= 1, got {self.hidden}")
        for field in ("lr", "alpha"):
            if not getattr(self, field) > 0:
                raise OffbenchError(f"{name}: {field} must be > 0, got {getattr(self, field)}")
        if self.alpha_lr < 0:
            raise OffbenchError(f"{name}: alpha_lr must be >= 0 (0 keeps alpha fixed), got {self.alpha_lr}")
        if not 0 <= self.gamma < 1:
            raise OffbenchError(f"{name}: gamma must be in [0, 1), got {self.gamma}")
        for field in ("batch_size", "buffer_size", "eval_skills", "threads"):
            if int(getattr(self, field)) < 1:
                raise OffbenchError(f"{name}: {field} must be >= 1, got {getattr(self, field)}")
        if self.warmup_steps < 0:
            raise OffbenchError(f"{name}: warmup_steps must be >= 0, got {self.warmup_steps}")


class SkillTrainer:
    """The shared skill loop; see the module docstring. Subclasses set ``name`` and implement the hooks."""

    name = "skill trainer"
    learns = True  # False: uniform actions throughout and no updates (the random collector)

    def __init__(self, make_env: Callable[[], gym.Env], config: SkillLoopConfig, seed: int = 0):
        config.check(self.name)
        self.make_env, self.config, self.seed = make_env, config, int(seed)
        self.env = make_env()
        if not isinstance(self.env.action_space, gym.spaces.Box):
            raise OffbenchError(f"{self.name} here takes Box actions (SAC); this environment's are "
                                f"{self.env.action_space}")
        self.obs_dim = int(np.prod(self.env.observation_space.shape))
        self.act_dim = int(np.prod(self.env.action_space.shape))
        self.skill_space = self.make_skill_space()
        seed_everything(self.seed)
        self.sac = self.make_agent()
        self.build()
        n = config.buffer_size
        self.buffer = {"obs": np.zeros((n, self.obs_dim), np.float32),
                       "next_obs": np.zeros((n, self.obs_dim), np.float32),
                       "actions": np.zeros((n, self.act_dim), np.float32),
                       "skills": self.skill_space.buffer_column(n),
                       "terminations": np.zeros(n, np.float32)}
        self.size, self.steps, self.episodes = 0, 0, 0
        self.rng = np.random.default_rng(self.seed)

    # ---------------------------------------------------------------- hooks for the methods
    def make_skill_space(self) -> SkillSpace:
        raise NotImplementedError

    def build(self) -> None:
        """Create the method's networks and optimisers (after SAC, so initialisation is seeded)."""

    def networks(self) -> dict[str, nn.Module]:
        """The method's modules, saved in checkpoints."""
        return {}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}

    def intrinsic_update(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """One step on the method's model with ``batch`` (``obs``, ``next_obs``, ``actions``,
        ``skills``, ``terminations``); return the batch's intrinsic reward [B] and statistics."""
        raise NotImplementedError

    def observe(self, obs: np.ndarray, next_obs: np.ndarray) -> None:
        """Called after every environment step of training (running statistics)."""

    def extra_state(self) -> dict[str, Any]:
        """JSON state beyond networks and optimisers (running statistics), for checkpoints."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def target_entropy(self) -> float | None:
        return self.config.target_entropy

    def make_agent(self):
        """SAC over the augmented observation (s, z), looked up by name as ``offbench.online`` does."""
        from baselines.online.registry import ALGORITHMS

        sac_class, cfg = ALGORITHMS["sac"], self.config
        augmented = gym.spaces.Box(-np.inf, np.inf, (self.obs_dim + self.skill_space.dim,), np.float32)
        sac_config = sac_class.config_class(hidden=tuple(cfg.hidden), actor_lr=cfg.lr, critic_lr=cfg.lr,
                                            alpha_lr=cfg.alpha_lr, init_alpha=cfg.alpha, gamma=cfg.gamma,
                                            target_entropy=self.target_entropy())
        return sac_class(augmented, self.env.action_space, sac_config, seed=self.seed)

    # ---------------------------------------------------------------- acting
    def augment(self, obs: np.ndarray, skills: np.ndarray) -> np.ndarray:
        """(s, z) rows for the policy and critics: observations [B, d] beside ``skill_space.vectors``."""
        obs = np.asarray(obs, np.float32).reshape(len(skills), -1)
        return np.concatenate([obs, self.skill_space.vectors(skills)], 1)

    def act_with_log_prob(self, obs: np.ndarray, skill, deterministic: bool = False) -> tuple[np.ndarray, float]:
        """One action for ``obs`` under ``skill`` and its exact log-density under the policy that drew it
        (SAC's tanh-squashed Gaussian on (s, z); with ``deterministic`` the mean action, whose value is
        the density at the mean, not a behaviour probability)."""
        actions, log_probs = self.sac.act(self.augment(obs, np.array([skill])), deterministic=deterministic)
        return actions[0], float(log_probs[0])

    def act(self, obs: np.ndarray, skill, deterministic: bool = False) -> np.ndarray:
        return self.act_with_log_prob(obs, skill, deterministic)[0]

    @contextmanager
    def rollout_streams(self, seed: int) -> Iterator[None]:
        """Evaluation rollouts draw their action noise from a stream seeded by ``seed``; training's is kept."""
        stream, self.sac.generator = self.sac.generator, torch.Generator().manual_seed(seed)
        try:
            yield
        finally:
            self.sac.generator = stream

    # ---------------------------------------------------------------- one episode and its updates
    def iterate(self) -> dict:
        cfg, space = self.config, self.env.action_space
        skill = self.skill_space.sample(self.rng)
        obs, _ = self.env.reset(seed=self.seed * 1_000_003 + self.episodes)
        done, stats = False, []
        while not done:
            if self.steps < cfg.warmup_steps or not self.learns:
                action = self.rng.uniform(space.low, space.high).astype(np.float32)
            else:
                action = self.act(obs, skill)
            next_obs, _, terminated, truncated, _ = self.env.step(action)
            i = self.size % cfg.buffer_size
            for key, value in (("obs", obs), ("next_obs", next_obs), ("actions", action), ("skills", skill),
                               ("terminations", float(terminated))):
                self.buffer[key][i] = value
            self.size, self.steps = self.size + 1, self.steps + 1
            self.observe(np.asarray(obs, np.float32), np.asarray(next_obs, np.float32))
            obs, done = next_obs, terminated or truncated
            if self.learns and self.steps >= cfg.warmup_steps:
                stats.append(self.update())
        self.episodes += 1
        row: dict[str, Any] = {"iteration": self.episodes, "steps": self.steps}
        if self.skill_space.prior != "none":
            row["skill"] = skill if self.skill_space.categorical else [float(x) for x in skill]
        if stats:
            row.update({k: float(np.mean([s[k] for s in stats])) for k in stats[0]})
        return row

    def update(self) -> dict[str, float]:
        cfg = self.config
        idx = self.rng.integers(0, min(self.size, cfg.buffer_size), cfg.batch_size)
        batch = {k: torch.as_tensor(v[idx]) for k, v in self.buffer.items()}
        reward, stats = self.intrinsic_update(batch)
        skills = batch["skills"].numpy()
        sac_stats = self.sac.update({
            "observations": torch.as_tensor(self.augment(batch["obs"].numpy(), skills)),
            "next_observations": torch.as_tensor(self.augment(batch["next_obs"].numpy(), skills)),
            "actions": batch["actions"], "rewards": reward, "terminations": batch["terminations"]})
        return {**stats, "critic_loss": float(sac_stats["critic_loss"])}

    # ---------------------------------------------------------------- playing skills
    @torch.no_grad()
    def play_episode(self, skill, reset_seed: int, deterministic: bool = False, max_steps: int | None = None,
                     state: Callable[[gym.Env], dict[str, np.ndarray]] | None = None) -> dict[str, Any]:
        """One episode of ``skill`` from ``env.reset(seed=reset_seed)``, drawing actions from the current
        streams (inside :meth:`rollout_streams` for seeded ones; training's otherwise), stopped after
        ``max_steps`` steps if it runs that long. Returns ``observations`` [T+1, d], ``actions`` [T, a],
        ``log_probs`` [T] (float64, :meth:`act_with_log_prob`), ``terminations`` and ``truncations``
        [T] (as the environment returned them) and, with ``state``, ``states``: ``state(env)`` after the
        reset and after every step, stacked per key [T+1, ...]."""
        obs, _ = self.env.reset(seed=reset_seed)
        observations, actions, log_probs, terminations, truncations = [obs], [], [], [], []
        states = [state(self.env)] if state is not None else []
        done = False
        while not done and (max_steps is None or len(actions) < max_steps):
            action, log_prob = self.act_with_log_prob(obs, skill, deterministic)
            obs, _, terminated, truncated, _ = self.env.step(action)
            for column, value in ((observations, obs), (actions, action), (log_probs, log_prob),
                                  (terminations, terminated), (truncations, truncated)):
                column.append(value)
            if state is not None:
                states.append(state(self.env))
            done = terminated or truncated
        episode = {"observations": np.asarray(observations), "actions": np.asarray(actions),
                   "log_probs": np.asarray(log_probs, np.float64), "terminations": np.asarray(terminations, bool),
                   "truncations": np.asarray(truncations, bool)}
        if state is not None:
            episode["states"] = {k: np.stack([s[k] for s in states]) for k in states[0]}
        return episode

    # ---------------------------------------------------------------- skills for the metrics
    @torch.no_grad()
    def skill_rollouts(self, per_skill: int, seed: int, deterministic: bool = False,
                       skills: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``per_skill`` episodes of every skill of ``skills`` (default
        ``skill_space.evaluation_skills(config.eval_skills, seed)``): ``positions`` [R, T+1, d] (the
        observations), ``skills`` [R] (each rollout's skill index, the classifier's label) and
        ``skill_vectors`` [R, dim]. Seeded; the training streams are left untouched."""
        if int(per_skill) < 1:
            raise OffbenchError(f"skill_rollouts: per_skill must be >= 1, got {per_skill}")
        if skills is None:
            skills = self.skill_space.evaluation_skills(self.config.eval_skills, seed)
        with self.rollout_streams(seed):
            paths, labels = [], []
            for index, z in enumerate(skills):
                for e in range(per_skill):
                    paths.append(self.play_episode(z, seed + 1000 * index + e, deterministic)["observations"])
                    labels.append(index)
        labels = np.asarray(labels)
        return {"positions": np.stack(paths), "skills": labels,
                "skill_vectors": self.skill_space.vectors(np.asarray(skills))[labels]}

    # ---------------------------------------------------------------- checkpoints and the loop
    def checkpointed(self):
        modules = {"sac": self.sac} if self.sac is not None else {}
        optimizers = {f"sac_{k}": v for k, v in self.sac.optimizers().items()} if self.sac is not None else {}
        generators = {"sac": self.sac.generator} if self.sac is not None else {}
        return {**modules, **self.networks()}, {**optimizers, **self.optimizers()}, generators

    def save(self, stem: Path) -> None:
        tmp = stem.with_name(f".{stem.name}.npz.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **{k: v[: min(self.size, self.config.buffer_size)] for k, v in self.buffer.items()})
        tmp.replace(stem.with_suffix(".npz"))
        modules, optimizers, generators = self.checkpointed()
        save_checkpoint(stem, modules=modules, optimizers=optimizers, generators=generators,
                        extra={"size": self.size, "steps": self.steps, "episodes": self.episodes,
                               "numpy_rng": self.rng.bit_generator.state, "config": asdict(self.config),
                               "method": self.name, "state": self.extra_state()})

    def load(self, stem: Path) -> None:
        modules, optimizers, generators = self.checkpointed()
        meta = load_checkpoint(stem, modules=modules, optimizers=optimizers, generators=generators)
        if meta["config"] != json.loads(json.dumps(asdict(self.config))):
            raise OffbenchError(f"{stem.parent} holds a {meta.get('method', self.name)} run with other settings; "
                                "use another folder")
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
            for key in self.buffer:
                self.buffer[key][: len(data[key])] = data[key]
        self.size, self.steps, self.episodes = meta["size"], meta["steps"], meta["episodes"]
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.load_extra_state(meta.get("state", {}))

    def fit(self, episodes: int, out: str | Path, on_iteration: Callable[[dict], None] | None = None,
            checkpoint_every: int = 10) -> list[dict]:
        """Run to ``episodes`` episodes in ``out`` (resuming what it holds); returns the metrics rows."""
        if int(episodes) < 0 or int(checkpoint_every) < 1:
            raise OffbenchError(f"{self.name}: episodes must be >= 0 and checkpoint_every >= 1, "
                                f"got {episodes} and {checkpoint_every}")
        torch.set_num_threads(self.config.threads)
        return resumable_loop(out, int(episodes), load=self.load, save=self.save, current=lambda: self.episodes,
                              step=self.iterate, on_iteration=on_iteration, checkpoint_every=int(checkpoint_every))
