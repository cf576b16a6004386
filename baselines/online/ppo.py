r"""Proximal Policy Optimisation (Schulman et al. 2017) on Gymnasium vector environments.

The course notes' policy-gradient method (section 3: importance-sampled policy gradients,
TRPO, PPO), with a feed-forward or a recurrent (GRU) actor-critic. The recurrent policy sees
RL²'s input tuple (Duan et al. 2016, section 2.3): the observation, the previous action, the
previous reward and the previous episode-end flag, so RL² is PPO with ``recurrent=True`` on a
:class:`~offbench.envs.meta.api.MetaTrial` environment.

One update
----------
1. Rollout: ``rollout_steps`` steps in each of ``num_envs`` environments (a
   :class:`~offbench.envs.vector.SerialVectorEnv`, same-step autoreset), stored in
   :class:`RolloutStorage` with the policy's log-probabilities and values, and for a recurrent policy its hidden state *before*
   every step (so any stretch of a sequence can be recomputed from the state it started in).
2. Advantages by generalised advantage estimation (Schulman et al. 2016, "High-Dimensional
   Continuous Control Using Generalized Advantage Estimation", eq. 16; PPO eqs. 11-12)::

       delta_t = r_t + gamma V(s_{t+1}) - V(s_t),     A_t = sum_l (gamma lambda)^l delta_{t+l}

   cut at episode ends. After a termination ``V(s_{t+1}) = 0``; after a time-limit
   truncation it is the value of the final observation (Pardo et al. 2018, "Time Limits in
   Reinforcement Learning"), evaluated when the truncation happens. Value targets are
   ``A_t + V(s_t)``.
3. ``update_epochs`` passes over the rollout in ``minibatches`` minibatches, each a gradient
   step (Adam, global gradient-norm clipping) on the negated PPO objective, eq. 9::

       L = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)]  +  c1 E[(V(s) - V_targ)^2]  -  c2 E[H(pi(.|s))]
       rho = pi(a|s) / pi_old(a|s)                                           (eq. 6; eq. 7 is the first term)

   with advantages normalised per minibatch (a common implementation detail, not in the paper).
   A recurrent policy's minibatches are whole sequences (chunks of ``bptt_chunk`` steps per
   environment), re-run from their stored starting hidden state with the hidden state zeroed
   where a new trial starts; gradients flow through time within a chunk.

Actions: a categorical policy for ``Discrete`` spaces; for ``Box`` spaces a Gaussian with a
state-independent log standard deviation whose samples are clipped to the bounds when sent to
the environment (the unclipped sample is stored and scored). Observations: ``Box`` (flattened)
or ``Discrete`` (one-hot). Sampling and minibatch order come from the agent's own
``torch.Generator``; weight initialisation from the global torch RNG seeded with ``seed``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from offbench.cpu import torch_threads
from offbench.envs.vector import SerialVectorEnv
from offbench.errors import OffbenchError
from offbench.nn import ForeachAdam, seed_everything


@dataclass
class PPOConfig:
    num_envs: int = 8
    rollout_steps: int = 128  # per environment per update
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2  # epsilon, eq. 7
    value_coef: float = 0.5  # c1, eq. 9
    entropy_coef: float = 0.01  # c2, eq. 9
    lr: float = 2.5e-4
    anneal_lr: bool = True  # linearly to 0 over the run
    update_epochs: int = 4
    minibatches: int = 4
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True
    # the critic and the advantages learn from reward_scale * r (the recurrent policy's input keeps
    # the raw r); 1 changes nothing. On HalfCheetahVel (about -3 a step) the value loss is in the
    # hundreds with raw rewards and about 1 at 0.05 (docs/studies/meta-curves/)
    reward_scale: float = 1.0
    hidden: tuple[int, ...] = (64, 64)
    recurrent: bool = False
    gru_hidden: int = 64
    bptt_chunk: int | None = None  # recurrent minibatch sequence length; None: the whole rollout
    # torch intra-op threads while training/evaluating: PPO's tensors are tiny, and on a busy
    # 2-core machine a 2-thread pool made a 2x2 softmax 20x slower than the whole step (measured)
    threads: int = 1


# ---------------------------------------------------------------------- pure pieces (tested by hand)
def compute_gae(rewards: torch.Tensor, values: torch.Tensor, last_value: torch.Tensor, terminated: torch.Tensor,
                truncated: torch.Tensor, bootstrap: torch.Tensor, gamma: float,
                lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and value targets ``[T, N]`` (module doc, step 2).

    ``values[t]`` is ``V(s_t)``; ``last_value`` is ``V`` of the observation after the last
    step; ``bootstrap[t]`` is ``V`` of the final observation where step ``t`` was truncated.
    """
    # The recursion runs in numpy on the tensors' memory: the same float32 operations, in the same
    # order, as torch would run them, at a fraction of the per-operation cost (T steps of ~10 ops)
    r, v, last, term, trunc, boot = (x.detach().cpu().numpy() for x in (rewards, values, last_value, terminated,
                                                                       truncated, bootstrap))
    adv = np.zeros_like(r)
    running = np.zeros_like(last)
    zero = np.zeros_like(last)
    for t in range(r.shape[0] - 1, -1, -1):
        ended = term[t] | trunc[t]
        following = last if t == r.shape[0] - 1 else v[t + 1]
        next_value = np.where(term[t], zero, np.where(trunc[t], boot[t], following))
        delta = r[t] + gamma * next_value - v[t]
        running = delta + gamma * lam * (~ended).astype(np.float32) * running
        adv[t] = running
    advantages = torch.from_numpy(adv).to(rewards.device)
    return advantages, advantages + values


def ppo_loss(new_log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor,
             new_values: torch.Tensor, value_targets: torch.Tensor, entropy: torch.Tensor, *, clip_coef: float,
             value_coef: float, entropy_coef: float) -> tuple[torch.Tensor, dict[str, float]]:
    """The negated PPO objective, eq. 9 (module doc, step 3), on one minibatch."""
    ratio = torch.exp(new_log_prob - old_log_prob)  # eq. 6
    clipped = torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
    policy_loss = -torch.min(ratio * advantages, clipped * advantages).mean()  # eq. 7
    value_loss = ((new_values - value_targets) ** 2).mean()  # L^VF
    entropy_mean = entropy.mean()
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy_mean
    with torch.no_grad():
        stats = {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(), "entropy": entropy_mean.item(),
                 "approx_kl": ((ratio - 1) - torch.log(ratio)).mean().item(),  # Schulman's k3 estimator
                 "clip_fraction": ((ratio - 1).abs() > clip_coef).float().mean().item()}
    return loss, stats


# ---------------------------------------------------------------------- networks
def _layer(in_dim: int, out_dim: int, gain: float = math.sqrt(2)) -> nn.Linear:
    """Orthogonal weights, zero bias (the PPO implementations' initialisation)."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def _trunk(in_dim: int, hidden: tuple[int, ...]) -> tuple[nn.Sequential, int]:
    layers, last = [], in_dim
    for width in hidden:
        layers += [_layer(last, width), nn.Tanh()]
        last = width
    return nn.Sequential(*layers), last


class _Heads(nn.Module):
    """Policy and value heads on separate tanh trunks over the same features.

    ``forward`` returns the policy's parameters (a categorical's logits, or a Gaussian's mean;
    its log standard deviation is the parameter ``log_std``) and ``V``; :class:`PPO` samples,
    scores and takes entropies from them through :class:`PolicyDistribution`."""

    def __init__(self, in_dim: int, action_space: gym.Space, hidden: tuple[int, ...]):
        super().__init__()
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.policy_trunk, last = _trunk(in_dim, hidden)
        self.policy_out = _layer(last, out, 0.01)
        self.value_trunk, last = _trunk(in_dim, hidden)
        self.value_out = _layer(last, 1, 1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(out))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = _run_layers(features, self.policy_trunk, self.policy_out)
        value = _run_layers(features, self.value_trunk, self.value_out).squeeze(-1)
        return params, value


def _run_layers(x: torch.Tensor, trunk: nn.Sequential, out: nn.Linear) -> torch.Tensor:
    """``out(trunk(x))`` with each layer's function called directly (``F.linear``, ``torch.tanh``: what
    ``nn.Linear`` and ``nn.Tanh`` call). nn.Module's call machinery cost more than these 64-wide
    layers: this is a rollout's per-step forward pass."""
    for layer in trunk:
        x = F.linear(x, layer.weight, layer.bias) if isinstance(layer, nn.Linear) else torch.tanh(x)
    return F.linear(x, out.weight, out.bias)


class PolicyDistribution:
    """The policy at a batch of inputs, computed as ``torch.distributions`` computes it.

    ``Categorical(logits=params)`` (``log_std`` None) or ``Normal(params, exp(log_std))`` summed over
    action dimensions, with the same operations in the same order and each intermediate made
    once (the normalised logits, their softmax, the scale), so forward and backward passes give
    the same bits (tests/test_ppo.py), without the distribution objects' argument validation and
    lazy-property machinery, which cost more per rollout step than the 2x64 network itself."""

    def __init__(self, params: torch.Tensor, log_std: torch.Tensor | None):
        self.discrete = log_std is None
        if self.discrete:
            self.logits = params - params.logsumexp(dim=-1, keepdim=True)  # log-probabilities
            self._probs: torch.Tensor | None = None
        else:
            self.mean, self.scale = params, log_std.exp().expand_as(params)

    @property
    def probs(self) -> torch.Tensor:
        if self._probs is None:
            self._probs = F.softmax(self.logits, dim=-1)
        return self._probs

    def sample(self, deterministic: bool, generator: torch.Generator) -> torch.Tensor:
        if self.discrete:
            if deterministic:
                return self.probs.argmax(-1)
            return torch.multinomial(self.probs, 1, generator=generator).squeeze(-1)
        if deterministic:
            return self.mean
        return self.mean + self.scale * torch.randn(self.mean.shape, generator=generator)

    def log_prob(self, action: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return self.logits.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)
        return (-((action - self.mean) ** 2) / (2 * self.scale ** 2) - self.scale.log()
                - math.log(math.sqrt(2 * math.pi))).sum(-1)

    def entropy(self) -> torch.Tensor:
        if self.discrete:
            return -(torch.clamp(self.logits, min=torch.finfo(self.logits.dtype).min) * self.probs).sum(-1)
        return (0.5 + 0.5 * math.log(2 * math.pi) + torch.log(self.scale)).sum(-1)


class ActorCritic(nn.Module):
    """Feed-forward actor-critic: ``(obs) -> (pi(.|obs), V(obs))``."""

    recurrent = False

    def __init__(self, obs_dim: int, action_space: gym.Space, hidden: tuple[int, ...]):
        super().__init__()
        self.heads = _Heads(obs_dim, action_space, hidden)

    def forward(self, obs: torch.Tensor):
        return self.heads(obs)


class RecurrentActorCritic(nn.Module):
    """GRU actor-critic fed RL²'s ``(s, a_prev, r_prev, done_prev)`` (module doc)."""

    recurrent = True

    def __init__(self, obs_dim: int, action_dim: int, action_space: gym.Space, hidden: tuple[int, ...],
                 gru_hidden: int):
        super().__init__()
        self.gru_hidden = gru_hidden
        self.embed = nn.Sequential(_layer(obs_dim + action_dim + 2, gru_hidden), nn.Tanh())
        self.gru = nn.GRUCell(gru_hidden, gru_hidden)
        for name, param in self.gru.named_parameters():
            nn.init.orthogonal_(param) if "weight" in name else nn.init.zeros_(param)
        self.heads = _Heads(gru_hidden, action_space, hidden)

    def step(self, inputs: torch.Tensor, hidden: torch.Tensor):
        """One step for a batch: ``inputs`` = [obs, a_prev, r_prev, done_prev] concatenated."""
        hidden = self.gru(self.embed(inputs), hidden)
        params, value = self.heads(hidden)
        return params, value, hidden

    def sequence(self, inputs: torch.Tensor, hidden: torch.Tensor, starts: torch.Tensor):
        """``inputs`` [C, B, D] from ``hidden`` [B, H]; the state is zeroed where ``starts``."""
        outputs = []
        for t in range(inputs.shape[0]):
            hidden = hidden * (~starts[t]).float().unsqueeze(-1)
            hidden = self.gru(self.embed(inputs[t]), hidden)
            outputs.append(hidden)
        return self.heads(torch.stack(outputs))


# ---------------------------------------------------------------------- storage
@dataclass
class RolloutStorage:
    """One rollout, every field ``[T, N, ...]``. For step ``t``: ``inputs[t]`` is what the
    policy saw (the observation, and for a recurrent policy ``a_{t-1}, r_{t-1}, d_{t-1}``),
    ``hidden[t]`` the recurrent state it started from (already zeroed if ``starts[t]``, a new
    trial), then the action, its log-probability, ``V``, the reward, the end flags and the
    truncation bootstrap value."""

    inputs: torch.Tensor
    hidden: torch.Tensor
    starts: torch.Tensor
    actions: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    bootstrap: torch.Tensor
    advantages: torch.Tensor | None = None
    targets: torch.Tensor | None = None

    @classmethod
    def empty(cls, steps: int, envs: int, input_dim: int, hidden_dim: int, action_shape: tuple,
              action_dtype) -> "RolloutStorage":
        z = lambda *shape, dtype=torch.float32: torch.zeros(steps, envs, *shape, dtype=dtype)  # noqa: E731
        return cls(inputs=z(input_dim), hidden=z(hidden_dim), starts=z(dtype=torch.bool),
                   actions=z(*action_shape, dtype=action_dtype), log_probs=z(), values=z(), rewards=z(),
                   terminated=z(dtype=torch.bool), truncated=z(dtype=torch.bool), bootstrap=z())


@dataclass
class TrainingLog:
    """What a run did: returns of the completed (trial-)episodes, and one row per update."""

    episode_returns: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    updates: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------------- the agent
class PPO(nn.Module):
    """PPO agent: ``train`` runs the loop on vector environments; ``act`` for rollouts."""

    config_class = PPOConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: PPOConfig = PPOConfig(),
                 seed: int = 0):
        super().__init__()
        _check_config(config)
        self.config = config
        if isinstance(observation_space, gym.spaces.Discrete):
            self.obs_dim, self.obs_discrete = int(observation_space.n), True
        elif isinstance(observation_space, gym.spaces.Box):
            self.obs_dim, self.obs_discrete = int(np.prod(observation_space.shape)), False
        else:
            raise OffbenchError(f"PPO takes Box or Discrete observations, not {type(observation_space).__name__}")
        if isinstance(action_space, gym.spaces.Discrete):
            self.action_dim, self.action_shape, self.action_dtype = int(action_space.n), (), torch.long
        elif isinstance(action_space, gym.spaces.Box):
            self.action_dim = int(np.prod(action_space.shape))
            self.action_shape, self.action_dtype = (self.action_dim,), torch.float32
            self.register_buffer("action_low", torch.as_tensor(action_space.low, dtype=torch.float32).reshape(-1))
            self.register_buffer("action_high", torch.as_tensor(action_space.high, dtype=torch.float32).reshape(-1))
        else:
            raise OffbenchError(f"PPO takes Box or Discrete actions, not {type(action_space).__name__}")
        self.observation_space, self.action_space = observation_space, action_space
        seed_everything(seed)  # weight initialisation
        if config.recurrent:
            self.net = RecurrentActorCritic(self.obs_dim, self.action_dim, action_space, tuple(config.hidden),
                                            config.gru_hidden)
        else:
            self.net = ActorCritic(self.obs_dim, action_space, tuple(config.hidden))
        self.optimizer = ForeachAdam(self.net.parameters(), lr=config.lr, eps=1e-5)  # Adam's numbers, less Python
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed

    # ---------------------------------------------------------------- encodings
    @property
    def input_dim(self) -> int:
        return self.obs_dim + (self.action_dim + 2 if self.config.recurrent else 0)

    @property
    def hidden_dim(self) -> int:
        return self.config.gru_hidden if self.config.recurrent else 0

    def encode_obs(self, obs) -> torch.Tensor:
        obs = torch.as_tensor(np.asarray(obs))
        if self.obs_discrete:
            return F.one_hot(obs.long().reshape(-1), self.obs_dim).float()
        return obs.reshape(obs.shape[0], -1).float()

    def encode_action(self, action: torch.Tensor) -> torch.Tensor:
        if self.action_dtype == torch.long:
            return F.one_hot(action, self.action_dim).float()
        return torch.max(torch.min(action, self.action_high), self.action_low)

    def env_action(self, action: torch.Tensor) -> np.ndarray:
        """The action sent to the environment (Box: the sample clipped to the bounds)."""
        return self.encode_action(action).numpy() if self.action_dtype != torch.long else action.numpy()

    def _distribution(self, params: torch.Tensor) -> PolicyDistribution:
        return PolicyDistribution(params, None if self.action_dtype == torch.long else self.net.heads.log_std)

    def _forward_step(self, inputs: torch.Tensor, hidden: torch.Tensor | None):
        if self.config.recurrent:
            return self.net.step(inputs, hidden)
        params, value = self.net(inputs)
        return params, value, hidden

    # ---------------------------------------------------------------- acting (evaluation)
    def initial_state(self, batch: int) -> dict:
        """The per-environment context a rollout carries: hidden state and previous (a, r, d)."""
        return {"hidden": torch.zeros(batch, self.hidden_dim), "prev_action": torch.zeros(batch, self.action_dim),
                "prev_reward": torch.zeros(batch), "prev_done": torch.zeros(batch)}

    def _inputs(self, obs_t: torch.Tensor, state: dict) -> torch.Tensor:
        if not self.config.recurrent:
            return obs_t
        return torch.cat([obs_t, state["prev_action"], state["prev_reward"][:, None], state["prev_done"][:, None]], 1)

    @torch.no_grad()
    def act(self, obs, state: dict, *, deterministic: bool = False) -> tuple[np.ndarray, dict]:
        """Actions for a batch; ``state`` from :meth:`initial_state`, then :meth:`observe`."""
        params, _, hidden = self._forward_step(self._inputs(self.encode_obs(obs), state), state["hidden"])
        action = self._distribution(params).sample(deterministic, self.generator)
        return self.env_action(action), {**state, "hidden": hidden, "last_action": action}

    def observe(self, state: dict, reward, episode_done, trial_done) -> dict:
        """Advance the context after a step: previous (a, r, d); reset where a trial ended."""
        keep = torch.as_tensor(~np.asarray(trial_done, bool)).float()
        return {"hidden": state["hidden"] * keep[:, None],
                "prev_action": self.encode_action(state["last_action"]) * keep[:, None],
                "prev_reward": torch.as_tensor(np.asarray(reward), dtype=torch.float32) * keep,
                "prev_done": torch.as_tensor(np.asarray(episode_done, bool)).float() * keep}

    # ---------------------------------------------------------------- training
    def collect(self, envs: gym.vector.VectorEnv, obs, state: dict, log: TrainingLog, step0: int,
                running_return: np.ndarray):
        """One rollout (module doc, step 1); returns the storage and the carried-over context."""
        cfg = self.config
        T, N = cfg.rollout_steps, cfg.num_envs
        buf = RolloutStorage.empty(T, N, self.input_dim, self.hidden_dim, self.action_shape, self.action_dtype)
        starts = state.pop("starts")
        recurrent = cfg.recurrent  # a feed-forward policy carries no context: no hidden state, no (a, r, d)
        rewards = np.zeros((T, N), np.float32)  # filled per step, made tensors once after the loop
        terminations, truncations = np.zeros((T, N), bool), np.zeros((T, N), bool)
        with torch.no_grad():
            for t in range(T):
                inputs = self._inputs(self.encode_obs(obs), state)
                buf.inputs[t] = inputs
                if recurrent:
                    buf.hidden[t], buf.starts[t] = state["hidden"], starts
                params, value, hidden = self._forward_step(inputs, state["hidden"])
                dist = self._distribution(params)
                action = dist.sample(False, self.generator)
                buf.actions[t], buf.log_probs[t], buf.values[t] = action, dist.log_prob(action), value
                obs, reward, terminated, truncated, info = envs.step(self.env_action(action))
                ended = np.logical_or(terminated, truncated)
                rewards[t], terminations[t], truncations[t] = reward, terminated, truncated
                if recurrent:
                    episode_done = np.asarray(info["episode_done"], bool) if "episode_done" in info else ended
                    state = {**state, "hidden": hidden, "last_action": action}
                if truncated.any():  # bootstrap from the final observation (Pardo et al. 2018)
                    rows = np.flatnonzero(np.logical_and(truncated, ~terminated))
                    final = self.encode_obs(np.stack([info["final_obs"][i] for i in rows]))
                    if recurrent:
                        sub = {k: v[rows] for k, v in self.observe(state, reward, episode_done,
                                                                    np.zeros(N, bool)).items()}
                        _, final_value, _ = self._forward_step(self._inputs(final, sub), sub["hidden"])
                    else:
                        _, final_value, _ = self._forward_step(final, None)
                    buf.bootstrap[t, torch.as_tensor(rows)] = final_value
                if recurrent:
                    state = self.observe(state, reward, episode_done, ended)
                starts = torch.as_tensor(ended)
                running_return += reward
                for i in np.flatnonzero(ended):
                    log.episode_returns.append(float(running_return[i]))
                    log.episode_end_steps.append(step0 + (t + 1) * N)
                    running_return[i] = 0.0
            inputs = self._inputs(self.encode_obs(obs), state)
            _, last_value, _ = self._forward_step(inputs, state["hidden"] * (~starts).float()[:, None])
        buf.rewards = torch.from_numpy(rewards)
        buf.terminated, buf.truncated = torch.from_numpy(terminations), torch.from_numpy(truncations)
        learned = buf.rewards if cfg.reward_scale == 1.0 else buf.rewards * cfg.reward_scale
        buf.advantages, buf.targets = compute_gae(learned, buf.values, last_value, buf.terminated,
                                                  buf.truncated, buf.bootstrap, cfg.gamma, cfg.gae_lambda)
        return buf, obs, {**state, "starts": starts}

    def _evaluate_batch(self, buf: RolloutStorage, time_idx: torch.Tensor, env_idx: torch.Tensor):
        """New log-probs, entropies and values for the minibatch at ``(time_idx, env_idx)``
        (``[B]`` samples, or ``[C, B]`` sequences for a recurrent policy), and the stored
        old log-probs, advantages and targets there."""
        if self.config.recurrent:  # re-run each sequence from the hidden state it started in
            params, value = self.net.sequence(buf.inputs[time_idx, env_idx], buf.hidden[time_idx[0], env_idx[0]],
                                            buf.starts[time_idx, env_idx])
        else:
            params, value = self.net(buf.inputs[time_idx, env_idx])
        act = buf.actions[time_idx, env_idx]
        dist = self._distribution(params)
        return (dist.log_prob(act), dist.entropy(), value, buf.log_probs[time_idx, env_idx],
                buf.advantages[time_idx, env_idx], buf.targets[time_idx, env_idx])

    def _minibatches(self, T: int, N: int):
        """Index pairs ``(time_idx, env_idx)`` of each minibatch, in the generator's order."""
        cfg = self.config
        if not cfg.recurrent:
            order = torch.randperm(T * N, generator=self.generator)
            for part in order.chunk(cfg.minibatches):
                yield part // N, part % N
            return
        chunk = cfg.bptt_chunk or T
        n_chunks = T // chunk
        order = torch.randperm(N * n_chunks, generator=self.generator)
        steps = torch.arange(chunk)[:, None]
        for part in order.chunk(cfg.minibatches):  # sequence s = (environment s % N, chunk s // N)
            yield (part // N * chunk)[None, :] + steps, (part % N)[None, :].expand(chunk, -1)

    def update(self, buf: RolloutStorage) -> dict[str, float]:
        """``update_epochs`` passes of minibatch steps on the negated eq. 9 (module doc, step 3)."""
        cfg = self.config
        rows = []
        for _ in range(cfg.update_epochs):
            for time_idx, env_idx in self._minibatches(*buf.rewards.shape):
                new_lp, entropy, value, old_lp, adv, targets = self._evaluate_batch(buf, time_idx, env_idx)
                if cfg.normalize_advantages and adv.numel() > 1:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                loss, stats = ppo_loss(new_lp, old_lp, adv, value, targets, entropy, clip_coef=cfg.clip_coef,
                                       value_coef=cfg.value_coef, entropy_coef=cfg.entropy_coef)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), cfg.max_grad_norm)
                self.optimizer.step()
                rows.append(stats)
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    def train_envs(self, make_env: Callable[[], gym.Env], total_steps: int,
                   on_update: Callable[[dict], None] | None = None) -> TrainingLog:
        """Train for ``total_steps`` environment steps (all environments together) on
        ``num_envs`` copies of ``make_env()``, seeded ``seed, seed + 1, ...``."""
        cfg = self.config
        batch = cfg.rollout_steps * cfg.num_envs
        if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < batch:
            raise OffbenchError(f"total_steps must be an integer of at least one rollout "
                                f"(num_envs x rollout_steps = {batch}), got {total_steps!r}")
        envs = SerialVectorEnv([make_env for _ in range(cfg.num_envs)])
        try:
            with torch_threads(cfg.threads):
                return self._train_loop(envs, total_steps, on_update)
        finally:
            envs.close()

    def _train_loop(self, envs, total_steps: int, on_update) -> TrainingLog:
        cfg = self.config
        batch = cfg.rollout_steps * cfg.num_envs
        if envs.single_observation_space != self.observation_space or \
                envs.single_action_space != self.action_space:
            raise OffbenchError("the environments' spaces differ from the ones this PPO agent was built for")
        obs, _ = envs.reset(seed=self.seed)
        state = {**self.initial_state(cfg.num_envs), "starts": torch.ones(cfg.num_envs, dtype=torch.bool)}
        log, running = TrainingLog(), np.zeros(cfg.num_envs)
        updates = total_steps // batch
        start = time.perf_counter()
        for u in range(updates):
            if cfg.anneal_lr:
                for group in self.optimizer.param_groups:
                    group["lr"] = cfg.lr * (1.0 - u / updates)
            buf, obs, state = self.collect(envs, obs, state, log, u * batch, running)
            stats = self.update(buf)
            steps = (u + 1) * batch
            recent = log.episode_returns[-20:]
            row = {"update": u + 1, "steps": steps, "steps_per_second": steps / (time.perf_counter() - start),
                   "recent_return": float(np.mean(recent)) if recent else float("nan"), **stats}
            log.updates.append(row)
            if on_update is not None:
                on_update(row)
        return log

    @torch.no_grad()
    def evaluate(self, make_env: Callable[[], gym.Env], episodes: int, seed: int, *,
                 deterministic: bool = True) -> np.ndarray:
        """Undiscounted returns of ``episodes`` (trial-)episodes, one environment each, seeded
        ``seed, seed + 1, ...``."""
        with torch_threads(self.config.threads):
            return self._evaluate(make_env, episodes, seed, deterministic)

    def _evaluate(self, make_env, episodes: int, seed: int, deterministic: bool) -> np.ndarray:
        returns = np.zeros(episodes)
        envs = [make_env() for _ in range(episodes)]
        obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
        state = self.initial_state(episodes)
        running = np.ones(episodes, bool)
        while running.any():
            actions, state = self.act(obs, state, deterministic=deterministic)
            rewards, episode_done = np.zeros(episodes), np.zeros(episodes, bool)
            for i in np.flatnonzero(running):
                o, r, te, tr, info = envs[i].step(actions[i])
                obs[i], rewards[i] = o, r
                returns[i] += r
                episode_done[i] = info.get("episode_done", te or tr)
                running[i] = not (te or tr)
            state = self.observe(state, rewards, episode_done, ~running)
        return returns


def _check_config(cfg: PPOConfig) -> None:
    for name in ("num_envs", "rollout_steps", "update_epochs", "minibatches", "gru_hidden", "threads"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OffbenchError(f"PPO config: {name} must be a positive integer, got {value!r}")
    if not (0.0 <= cfg.gamma <= 1.0 and 0.0 <= cfg.gae_lambda <= 1.0):
        raise OffbenchError(f"PPO config: gamma and gae_lambda must lie in [0, 1], got {cfg.gamma}, {cfg.gae_lambda}")
    if not cfg.clip_coef > 0 or not cfg.lr > 0:
        raise OffbenchError(f"PPO config: clip_coef and lr must be positive, got {cfg.clip_coef}, {cfg.lr}")
    if not 0 < cfg.reward_scale < math.inf:
        raise OffbenchError(f"PPO config: reward_scale must be a positive finite number, got {cfg.reward_scale!r}")
    if cfg.recurrent:
        chunk = cfg.bptt_chunk or cfg.rollout_steps
        if cfg.rollout_steps % chunk:
            raise OffbenchError(f"PPO config: bptt_chunk ({chunk}) must divide rollout_steps ({cfg.rollout_steps})")
        if cfg.num_envs * (cfg.rollout_steps // chunk) < cfg.minibatches:
            raise OffbenchError(f"PPO config: {cfg.minibatches} minibatches need at least as many sequences; a "
                                f"rollout has num_envs x rollout_steps / bptt_chunk = "
                                f"{cfg.num_envs * (cfg.rollout_steps // chunk)}")
    elif cfg.num_envs * cfg.rollout_steps < cfg.minibatches:
        raise OffbenchError(f"PPO config: {cfg.minibatches} minibatches need at least as many samples per rollout")


def make_ppo(env_fn: Callable[[], gym.Env], config: PPOConfig = PPOConfig(), seed: int = 0) -> PPO:
    """A PPO agent for the spaces of ``env_fn()``."""
    env = env_fn()
    try:
        return PPO(env.observation_space, env.action_space, config, seed)
    finally:
        env.close()
