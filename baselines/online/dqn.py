r"""Deep Q-Network (Mnih et al. 2015) with the double Q-learning target (van Hasselt et al. 2016).

The agent learns action values ``Q(s, a; theta)`` for a discrete action set from transitions
drawn uniformly out of the replay buffer (the online loop in :mod:`offbench.online`), and
acts epsilon-greedily on them.

Learning target
    DQN (Mnih et al. 2015, "Human-level control through deep reinforcement learning",
    Nature 518, eq. 2 / Algorithm 1) regresses ``Q(s, a; theta)`` on
    ``y = r + gamma * max_a' Q(s', a'; theta^-)`` with a periodically copied target network
    ``theta^-``. Double DQN (van Hasselt, Guez & Silver 2016, "Deep Reinforcement Learning
    with Double Q-learning", AAAI, eq. 4) selects the next action with the online network
    and evaluates it with the target network, which removes most of max's overestimation::

        y = r + gamma * (1 - terminated) * Q(s', argmax_a' Q(s', a'; theta); theta^-)

    ``terminated`` is the MDP's own end (the value after it is 0). A time-limit truncation is
    not a termination: the loop's buffer keeps the two apart and truncated rows bootstrap
    from ``s'``, which is the correct target for the time-unaware value being learned.
    ``double_q=False`` gives Mnih et al.'s max target instead.

Loss
    The Huber loss (smooth L1 with threshold 1) of ``Q(s, a; theta) - y``, averaged over
    the batch: the loss form of Mnih et al.'s clipping of the TD error to [-1, 1]. Gradients
    are clipped to a global norm of 10 before the optimiser step. The whole loss lives in
    :meth:`DQN.td_loss`.

Target network
    Every ``target_update_every`` gradient steps, ``theta^- <- tau theta + (1 - tau) theta^-``.
    The default ``tau = 1`` is Mnih et al.'s hard copy; ``target_update_every = 1`` with a
    small ``tau`` gives Polyak averaging instead. The count of gradient steps is a buffer of
    the module, so it is checkpointed with the weights and a resumed run copies the target
    at the same steps as an uninterrupted one.

Behaviour (what goes into datasets)
    ``epsilon(t)`` falls linearly from ``epsilon_start`` to ``epsilon_end`` over the first
    ``epsilon_decay_steps`` environment steps (counted from step 0, warm-up included, as in
    Mnih et al.) and stays at ``epsilon_end``. With probability ``epsilon`` the action is
    uniform over the |A| actions, otherwise the greedy one (lowest index on ties), so the
    exact probability of the action taken is
    ``pi(a | s) = (1 - epsilon) 1[a = argmax Q(s, .)] + epsilon / |A|``,
    and :meth:`DQN.act` returns its log. The saved policy module is the Q-network alone: the
    behaviour policy is the epsilon-greedy policy *of* it, so a dataset recipe that collects
    with a DQN snapshot must record the epsilon it used (``QNetwork.epsilon_greedy`` takes
    it as an argument); the snapshot's weights do not determine it.

Observations
    ``Discrete(n)`` observations (integer states, e.g. ``offbench/StitchGrid-v0``) are one-hot
    encoded inside the network, so the buffer keeps compact int64 states; ``Box`` observations
    are flattened and used as they are.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from offbench.errors import OffbenchError
from offbench.nn import mlp, soft_update


@dataclass
class DQNConfig:
    hidden: tuple[int, ...] = (256, 256)  # () gives a linear Q (tabular with one-hot states)
    # Adam at 2.5e-4: Mnih et al. 2015's learning rate (theirs with RMSProp). Measured here (CartPole-v1,
    # 64x64, target copy every 500, 3 seeds): greedy return >= 195 by 5k env steps on 3/3 seeds with
    # 2.5e-4, on 2/3 within 15k with 1e-4 (a common Adam setting); both solve StitchGrid in 1.5k steps.
    lr: float = 2.5e-4
    gamma: float = 0.99
    # Target network: every `target_update_every` gradient steps, lerp it towards the online network
    # by `tau`. Default: a hard copy (tau = 1) every 1000 gradient steps (Mnih et al. used 10k steps
    # for 50M-frame Atari runs; 1000 suits runs of 1e4-1e5 steps).
    target_update_every: int = 1000
    tau: float = 1.0
    double_q: bool = True  # van Hasselt et al. 2016's target; False: Mnih et al. 2015's max target
    # Epsilon-greedy exploration, linear in env steps from step 0 (Mnih et al. 2015 annealed 1.0 -> 0.1
    # over the first 1M of 50M frames; 0.05 keeps the final behaviour closer to greedy).
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 10_000
    huber_delta: float = 1.0  # Huber threshold: 1 is the TD-error clip of Mnih et al. 2015 (= smooth L1)
    max_grad_norm: float = 10.0  # global gradient-norm clip (Stable-Baselines3's DQN default)
    # None: automatic (one-hot inside the network iff the observation space is Discrete).
    one_hot_observations: bool | None = None


class QNetwork(nn.Module):
    """``Q(s, .)`` for all |A| actions: an :func:`offbench.nn.mlp` over the (one-hot) observation.

    With ``n_states`` set, observations are integer states [B] one-hot encoded to ``n_states``
    features; otherwise they are [B, ...] arrays flattened to ``obs_dim`` features.
    This is the module saved as the behaviour-policy snapshot.
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (256, 256),
                 n_states: int | None = None):
        super().__init__()
        self.obs_dim, self.n_actions, self.n_states = obs_dim, n_actions, n_states
        self.net = mlp(obs_dim, n_actions, hidden)

    def encode(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        """The network input [B, obs_dim] float32 for a batch of raw observations."""
        obs = torch.as_tensor(obs)
        if self.n_states is not None:  # integer states [B]; F.one_hot rejects out-of-range ones
            return F.one_hot(obs.reshape(obs.shape[0]).long(), self.n_states).float()
        return obs.reshape(obs.shape[0], -1).float()

    def forward(self, obs: torch.Tensor | np.ndarray) -> torch.Tensor:
        return self.net(self.encode(obs))

    @torch.no_grad()
    def epsilon_greedy(self, obs: torch.Tensor | np.ndarray, epsilon: float,
                       generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample epsilon-greedy actions [B] (int64) and their exact log-probabilities [B] (float64).

        Every call draws exactly B uniforms and B random actions from ``generator``, whatever
        epsilon is, so the generator's stream does not depend on the network's values.
        """
        if not 0.0 <= epsilon <= 1.0:
            raise OffbenchError(f"epsilon must be in [0, 1], got {epsilon}")
        greedy = self(obs).argmax(-1)  # torch.argmax returns the first maximal index on ties
        batch = greedy.shape[0]
        explore = torch.rand(batch, generator=generator, dtype=torch.float64) < epsilon
        random_actions = torch.randint(self.n_actions, (batch,), generator=generator)
        actions = torch.where(explore, random_actions, greedy)
        # pi(a|s) = (1 - eps) 1[a = greedy] + eps / |A|, in float64: these feed importance weights.
        p_greedy = (1.0 - epsilon) + epsilon / self.n_actions
        p_other = epsilon / self.n_actions
        probs = torch.where(actions == greedy, torch.tensor(p_greedy, dtype=torch.float64),
                            torch.tensor(p_other, dtype=torch.float64))
        return actions, probs.log()


class DQN(nn.Module):
    """``act`` for rollouts, ``update`` for one gradient step on a batch of transitions."""

    config_class = DQNConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: DQNConfig = DQNConfig(),
                 seed: int = 0):
        super().__init__()
        if not isinstance(action_space, gym.spaces.Discrete):
            raise OffbenchError(f"DQN needs a Discrete action space, got {action_space}; use sac for Box actions")
        if action_space.start != 0:
            raise OffbenchError(f"DQN needs actions numbered from 0, got Discrete(start={action_space.start})")
        discrete_obs = isinstance(observation_space, gym.spaces.Discrete)
        if not discrete_obs and not isinstance(observation_space, gym.spaces.Box):
            raise OffbenchError(f"DQN supports Discrete or Box observations, got {observation_space}")
        one_hot = discrete_obs if config.one_hot_observations is None else bool(config.one_hot_observations)
        if one_hot != discrete_obs:
            raise OffbenchError(f"one_hot_observations={config.one_hot_observations} does not fit the observation "
                                f"space {observation_space}: one-hot encoding applies exactly to Discrete "
                                "observations (leave it unset for automatic)")
        if discrete_obs and observation_space.start != 0:
            raise OffbenchError(f"DQN needs states numbered from 0, got Discrete(start={observation_space.start})")
        if (config.epsilon_decay_steps < 0 or config.target_update_every < 1 or not 0.0 < config.tau <= 1.0
                or not config.huber_delta > 0):
            raise OffbenchError("DQN needs epsilon_decay_steps >= 0, target_update_every >= 1, 0 < tau <= 1 "
                                "and huber_delta > 0")
        for name in ("epsilon_start", "epsilon_end"):
            if not 0.0 <= getattr(config, name) <= 1.0:
                raise OffbenchError(f"{name} must be in [0, 1], got {getattr(config, name)}")
        self.config = config
        self.one_hot = one_hot
        self.n_actions = int(action_space.n)
        obs_dim = int(observation_space.n) if one_hot else int(np.prod(observation_space.shape))
        self.q = QNetwork(obs_dim, self.n_actions, tuple(config.hidden), int(observation_space.n) if one_hot else None)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        # Gradient steps taken: a buffer so that checkpoints carry it and resumed runs update the
        # target network at the same steps as uninterrupted ones.
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        self.optim = torch.optim.Adam(self.q.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(seed)  # exploration draws, never the global RNG

    # ------------------------------------------------------------------ acting
    def epsilon(self, step: int) -> float:
        """The linear schedule: epsilon_start at step 0 to epsilon_end at epsilon_decay_steps, then flat."""
        cfg = self.config
        if cfg.epsilon_decay_steps == 0:
            return float(cfg.epsilon_end)
        fraction = min(max(step, 0) / cfg.epsilon_decay_steps, 1.0)
        return float(cfg.epsilon_start + fraction * (cfg.epsilon_end - cfg.epsilon_start))

    @torch.no_grad()
    def act(self, obs: np.ndarray, *, deterministic: bool = False, step: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Epsilon-greedy actions [B] (int64) at env step ``step`` and their exact log-probabilities [B]
        (float64); ``deterministic=True``: greedy actions with log-probability 0."""
        if deterministic:
            actions = self.q(obs).argmax(-1)
            return actions.numpy().astype(np.int64), np.zeros(actions.shape[0], dtype=np.float64)
        actions, log_probs = self.q.epsilon_greedy(obs, self.epsilon(step), self.generator)
        return actions.numpy().astype(np.int64), log_probs.numpy()

    # ------------------------------------------------------------------ learning
    @torch.no_grad()
    def td_target(self, rewards: torch.Tensor, next_obs: torch.Tensor, terminations: torch.Tensor) -> torch.Tensor:
        """y = r + gamma (1 - terminated) Q(s', a*; theta^-), a* = argmax_a Q(s', a; theta) (double DQN,
        van Hasselt et al. 2016, eq. 4) or a* = argmax_a Q(s', a; theta^-) (DQN, Mnih et al. 2015)."""
        next_q_target = self.q_target(next_obs)
        selector = self.q(next_obs) if self.config.double_q else next_q_target
        next_action = selector.argmax(-1, keepdim=True)
        next_value = next_q_target.gather(-1, next_action).squeeze(-1)
        return rewards.float() + self.config.gamma * (1.0 - terminations.float()) * next_value

    def td_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The Huber loss of Q(s, a; theta) against the (gradient-free) target: the only loss DQN has."""
        q = self.q(batch["observations"]).gather(-1, batch["actions"].long().reshape(-1, 1)).squeeze(-1)
        target = self.td_target(batch["rewards"], batch["next_observations"], batch["terminations"])
        loss = F.huber_loss(q, target, delta=self.config.huber_delta)
        return loss, {"q_mean": q.detach().mean().item(), "target_mean": target.mean().item()}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        cfg = self.config
        loss, info = self.td_loss(batch)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.q.parameters(), cfg.max_grad_norm)
        self.optim.step()
        self.num_updates += 1
        if int(self.num_updates) % cfg.target_update_every == 0:
            soft_update(self.q_target, self.q, cfg.tau)  # tau = 1: an exact copy (lerp with weight 1)
        return {"loss": loss.item(), "grad_norm": float(grad_norm), **info}

    # ------------------------------------------------------------------ persistence
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"q": self.optim}

    def policy_module(self) -> nn.Module:
        """The Q-network (saved as the behaviour-policy snapshot). The behaviour policy is its
        epsilon-greedy policy: record the epsilon used for collection in the dataset recipe."""
        return self.q
