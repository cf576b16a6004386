"""Goal-conditioned behaviour cloning (GCBC): maximum likelihood of the data's actions given the
state and a goal the trajectory reaches later (Ghosh et al., "Learning to Reach Goals via Iterated
Supervised Learning" (GCSL), ICLR 2021, §3-4; Lynch et al., "Learning Latent Plans from Play",
CoRL 2019), as OGBench benchmarks it (Park et al., ICLR 2025, §6 and Appendix).

The loss, hindsight relabelling's supervised objective:

    L_pi = -E_{(s_t, a_t) ~ D, g ~ p_D(s_{t+k} | s_t)}[ log pi(a_t | s_t, g) ]

with g the achieved goal of a state of the same trajectory drawn uniformly from the future
(``GoalBatchSampler``'s actor goals; OGBench's GCBC uses future goals also on stitch data).
pi is OGBench's Gaussian actor with unit standard deviation, so the loss is the squared error to
the data's action up to a constant; ``act`` returns the mean, clipped to [-1, 1].

Defaults are OGBench's (REFERENCE §7, ``impls/agents/gcbc.py``): 3x512 GELU MLP without LayerNorm
(OGBench's actor has none), Adam at 3e-4, batch 1024 (``TrainConfig.batch_size``; the goal
protocols set it), constant std.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from offbench.goal import OGBENCH_HIDDEN, GaussianGoalActor, GoalAlgorithm
from offbench.nn import adam


@dataclass
class GCBCConfig:
    hidden: tuple[int, ...] = OGBENCH_HIDDEN  # OGBench: 3x512
    lr: float = 3e-4  # OGBench
    layer_norm: bool = False  # OGBench's actor MLP has no LayerNorm
    const_std: bool = True  # OGBench: sigma = 1
    discount: float | None = None  # only sets the sampler's goal mix; None: OGBench's (0.995 giant, else 0.99)


class GCBC(GoalAlgorithm):
    config_class = GCBCConfig
    summary = "GCBC: maximum likelihood of the data's actions given the state and a future state as goal"
    method = "gcbc"

    def __init__(self, observation_space, action_space, config: GCBCConfig = GCBCConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        self.actor = GaussianGoalActor(self.obs_dim + self.goal_dim, self.act_dim, config.hidden,
                                       layer_norm=config.layer_norm, const_std=config.const_std)
        self.optim = adam(self.parameters(), lr=config.lr)

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x = torch.cat([batch.observations, batch.actor_goals], -1)
        mean = self.actor.mean(x)
        log_prob = self.actor.log_prob(x, batch.actions, mean)
        actor_loss = -log_prob.mean()  # L_pi
        return actor_loss, {"actor_loss": actor_loss, "bc_mse": ((mean - batch.actions) ** 2).mean()}

    def policy(self, observations, goals):
        return self.actor.mean(torch.cat([observations, goals], -1))
