"""Skills as a higher level's actions (issue 18, item 6; course notes §16.3, "using skills for
hierarchical control"): a Gymnasium environment whose action picks a skill of a trained
skill-discovery agent, which then acts for ``k`` steps of the underlying environment.

``offbench/PointPlaneSkills-v0`` wraps a point-plane goal task (``goal``: a key of
``offbench.envs.point_plane.GOALS``) with the skills of an exploratory dataset's behaviour run
(``skills``: an ``explore/point-plane/<method>-v0`` id; the run is trained, or loaded, exactly as
building that dataset does, ``offbench.data.explore_generation.trained_behaviour``):

- **action**: the skill. Continuous skill spaces are a box [-1, 1]^dim (DADS's prior is uniform
  there; METRA's skills are unit vectors, so a nonzero action is scaled to length 1, and the zero
  vector becomes (1, 0, ...)); DIAYN's categorical skills are ``Discrete(K)``;
- **step**: the skill's policy plays ``k`` steps with its mean action (or fewer, if the episode
  ends); the reward is the sum of the ``k`` rewards, so an episode's return is the goal task's
  return for the same underlying steps, and ``info["env_steps"]`` says how many there were;
- **observation**: the underlying one (the position); episodes end when the underlying one does
  (50 steps: 10 high-level steps at ``k`` = 5).

So SAC (continuous skills) or DQN (DIAYN) trained by ``offbench online train`` on this environment
is the "high-level policy that picks skills every k steps" of issue 18, and its environment steps
are ``k`` times its own (``scripts/skills_downstream.py`` compares it with flat SAC at equal
environment steps).
"""
from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from offbench.errors import OffbenchError


class SkillOptionsEnv(gym.Env):
    """``env``'s steps, ``k`` at a time, chosen by ``trainer``'s skill-conditioned policy."""

    metadata = {"render_modes": []}

    def __init__(self, env: gym.Env, trainer: Any, k: int):
        if int(k) < 1:
            raise OffbenchError(f"a skill plays k >= 1 steps, got k={k}")
        self.env, self.trainer, self.k = env, trainer, int(k)
        space = trainer.skill_space
        if space.prior == "none":
            raise OffbenchError(f"{trainer.__class__.__name__} has no skills to choose from (an exploration "
                                "method); use DIAYN, DADS or METRA")
        self.unit = space.prior == "unit"
        self.action_space = (gym.spaces.Discrete(space.dim) if space.categorical
                             else gym.spaces.Box(-1.0, 1.0, (space.dim,), np.float32))
        self.observation_space = env.observation_space
        self._obs = None

    def skill(self, action) -> int | np.ndarray:
        """The trainer's skill for a high-level action (an index, or a vector on the skill prior's support)."""
        if isinstance(self.action_space, gym.spaces.Discrete):
            return int(action)
        z = np.clip(np.asarray(action, np.float32).reshape(-1), -1.0, 1.0)
        if self.unit:
            norm = float(np.linalg.norm(z))
            z = z / norm if norm > 1e-6 else np.eye(len(z), dtype=np.float32)[0]
        return z.astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._obs, info = self.env.reset(seed=seed, options=options)
        return self._obs, info

    def step(self, action):
        z, total, terminated, truncated, steps, info = self.skill(action), 0.0, False, False, 0, {}
        while steps < self.k and not (terminated or truncated):
            low_level = self.trainer.act(self._obs, z, deterministic=True)
            self._obs, reward, terminated, truncated, info = self.env.step(low_level)
            total += float(reward)
            steps += 1
        return self._obs, total, terminated, truncated, {**info, "env_steps": steps}


def make_point_plane_skills_env(goal: str = "top-right", skills: str = "explore/point-plane/dads-v0",
                                k: int = 5) -> SkillOptionsEnv:
    """The registered ``offbench/PointPlaneSkills-v0``: goal task ``goal`` with the skills of ``skills``'s run."""
    from offbench.cpu import torch_threads
    from offbench.data.catalogue import get_card
    from offbench.data.explore_generation import ExploreRecipe, trained_behaviour
    from offbench.envs.point_plane import GOALS, goal_env_id

    if goal not in GOALS:
        raise OffbenchError(f"PointPlaneSkills: unknown goal {goal!r}; known: {', '.join(GOALS)}")
    card = get_card(skills)
    if card.recipe.get("kind") != "explore" or card.env_id != "offbench/PointPlane-v0":
        raise OffbenchError(f"PointPlaneSkills: skills={skills!r} is not an exploratory dataset of the point plane "
                            "(explore/point-plane/<method>-v0)")
    recipe = ExploreRecipe.parse(card.recipe, str(card.path))
    with torch_threads(1):
        trainer = trained_behaviour(recipe, str(card.path))
    return SkillOptionsEnv(gym.make(goal_env_id(goal)), trainer, k)
