"""Uniform random actions: the simplest exploration baseline for reward-free data (ExORL's and
URLB's "random" collector), with the skill trainers' surface -- ``fit`` (episodes into a replay
buffer saved as ``.npz``, checkpoints, exact resume) and ``skill_rollouts`` -- so data sets and
metrics treat it like the learned methods. It learns nothing: every action, in training and in
rollouts, is drawn uniformly from the action box (rollouts from a stream seeded by their ``seed``);
its behaviour log-probability is the box's log-density.
``skill_rollouts(per_skill, seed)`` plays ``per_skill`` episodes of its single, empty skill.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from offbench.skill_loop import SkillLoopConfig, SkillSpace, SkillTrainer


class UniformRandomCollector(SkillTrainer):
    name = "uniform random"
    learns = False

    def __init__(self, make_env, config: SkillLoopConfig = SkillLoopConfig(), seed: int = 0):
        super().__init__(make_env, config, seed)
        self.rollout_rng = np.random.default_rng(seed)

    def make_skill_space(self) -> SkillSpace:
        return SkillSpace("none", 0)

    def make_agent(self):
        return None

    def act_with_log_prob(self, obs: np.ndarray, skill, deterministic: bool = False) -> tuple[np.ndarray, float]:
        """A uniform action from the box and its density, -sum(log(high - low)) (every action alike)."""
        space = self.env.action_space
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        return self.rollout_rng.uniform(space.low, space.high).astype(np.float32), float(-np.log(high - low).sum())

    @contextmanager
    def rollout_streams(self, seed: int) -> Iterator[None]:
        stream, self.rollout_rng = self.rollout_rng, np.random.default_rng(seed)
        try:
            yield
        finally:
            self.rollout_rng = stream
