"""TD3 with no behaviour constraint (Fujimoto, van Hoof & Meger 2018, "Addressing Function
Approximation Error in Actor-Critic Methods"), trained offline: ExORL's (Yarats et al. 2022)
offline learner, which beat constrained methods on diverse exploratory data.

The critics are TD3+BC's (``baselines/td3_bc.py``: twin critics, clipped double-Q targets with
target policy smoothing, delayed actor and target updates; the TD3 paper's Algorithm 1). The
actor maximises the first critic alone (the TD3 paper's deterministic policy gradient, eq. 1
of DDPG / Algorithm 1 line "update phi by the deterministic policy gradient"):

    pi = argmax_pi E_{s~D} [ Q_1(s, pi(s)) ]

with no (pi(s) - a)^2 term and no lambda: on data that does not cover pi's actions, nothing
stops Q_1 from extrapolating, which is what the comparison with TD3+BC, CQL and IQL measures.
Defaults are the TD3 paper's (policy delay 2, target noise 0.2 clipped at 0.5, tau 0.005,
gamma 0.99; Adam at 3e-4 and 2x256 networks as in its author's later code and ExORL) and,
as in ExORL, observations are used as they are (no normalisation). Continuous actions only.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from baselines.td3_bc import TD3BC
from offbench.data.sampling import TransitionBatch


@dataclass
class TD3Config:
    hidden: tuple[int, ...] = (256, 256)  # actor and both critics
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target actor and critics
    policy_noise: float = 0.2  # target smoothing noise std, x half the action range
    noise_clip: float = 0.5  # the noise is clipped to +-0.5 x half the action range
    policy_delay: int = 2  # the actor and targets are updated every 2nd critic update
    normalize_observations: bool = False  # ExORL: raw observations


class TD3(TD3BC):
    config_class = TD3Config
    summary = "TD3: twin clipped critics, target smoothing, delayed actor maximising Q alone (no behaviour term)"

    def actor_loss(self, batch: TransitionBatch, obs: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """-Q_1(s, pi(s)) averaged over the batch (TD3, Algorithm 1)."""
        obs = self.encoder(batch.observations) if obs is None else obs
        q = self.critic(obs, self.actor(obs))[0]
        return -q.mean(), {}
