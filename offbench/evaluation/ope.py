r"""Off-policy evaluation: estimate a target policy's value from a fixed offbench dataset.

The value of a policy pi is the expected discounted sum of rewards of ONE episode started
from the start distribution, ``V(pi) = E[sum_{t<T} gamma^t r_t]`` (gamma = 1 allowed). The
start distribution is represented by the dataset's episodes' first observations; every
episode is assumed to start at time 0. Terminations are true MDP ends (nothing follows);
truncations (time limit, data cut) are not: the dataset stores T + 1 observations, so
bootstrapping estimators read the next state there.

Estimators (docs/off-policy-evaluation.md has the formulas and when to use each):

- :func:`importance_sampling` -- IS, PDIS, WIS, WPDIS (Precup, Sutton & Singh 2000);
- :func:`doubly_robust` -- per-decision DR (Jiang & Li 2016) and weighted DR (Thomas &
  Brunskill 2016), with an FQE Q-function as the model;
- :func:`fqe` -- fitted Q evaluation (Le, Voloshin & Yue 2019): an exact tabular version for
  index / one-hot observations and a neural one on ``offbench.nn`` blocks;
- :func:`model_based` -- roll the target policy out in an ``offbench.dynamics`` ensemble with
  the task's true termination rule (the DOPE model-based baseline, Fu et al. 2021);
- :func:`dualdice` -- DualDICE (Nachum et al. 2019): tabular closed form and neural minimax.

A target policy is anything with the small :class:`TargetPolicy` protocol; adapters:
:class:`TabularPolicy` (an [S, A] table) and :class:`AlgorithmPolicy` (a trained baseline).
IS and DR need the behaviour's log-probabilities: the dataset's stored
``behaviour_log_prob`` when present, else a behaviour policy cloned by maximum likelihood
(:func:`behaviour_log_probs`); each :class:`OPEEstimate` says which one it used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from offbench.data.dataset import Dataset
from offbench.errors import OffbenchError
from offbench.nn import (
    CategoricalPolicy, DeterministicPolicy, GaussianPolicy, ObservationEncoder, QEnsemble, TanhGaussianPolicy, adam,
    mlp, soft_update,
)

#: DOPE's clipping of importance log-ratios (REFERENCE §5); pass as ``log_ratio_clip``.
DOPE_LOG_RATIO_CLIP = (-6.0, 2.0)
IS_VARIANTS = ("is", "pdis", "wis", "wpdis")


# ====================================================================== results
@dataclass
class OPEEstimate:
    """One estimate of one policy's value.

    ``details`` holds estimator-specific diagnostics: ``behaviour`` ("stored", "cloned",
    "given") for IS/DR, ``ess`` (effective sample size of the episode weights),
    ``stderr`` (for the unweighted averages), ``log_ratio_clip``, training losses, ...
    ``model`` is the fitted object (a Q-function for FQE, the dynamics ensemble, ...).
    """

    estimator: str
    value: float
    gamma: float
    details: dict[str, Any] = field(default_factory=dict)
    model: Any = field(default=None, repr=False)


# ====================================================================== target policies
@runtime_checkable
class TargetPolicy(Protocol):
    """What every estimator needs of the policy being evaluated (batched, numpy in and out).

    ``log_prob(observations [N, ...], actions [N, ...]) -> [N]`` float64 (``-inf`` where the
    policy never takes the action); ``sample(observations, rng) -> actions [N, ...]``.
    Discrete-action policies should also have ``probabilities(observations) -> [N, A]``, so
    FQE, DR and DualDICE take exact expectations over actions (without it they are built
    from ``log_prob`` of every action).
    """

    def log_prob(self, observations: np.ndarray, actions: np.ndarray) -> np.ndarray: ...

    def sample(self, observations: np.ndarray, rng: np.random.Generator) -> np.ndarray: ...


def _sample_categorical(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of ``probs`` [N, A] by inverse CDF (vectorised)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(len(probs)) * cdf[:, -1]
    return np.minimum((u[:, None] >= cdf).sum(axis=1), probs.shape[1] - 1).astype(np.int64)


def _state_index(observations: Any) -> np.ndarray:
    """State indices from integer observations [N] or one-hot rows [N, S] (argmax)."""
    obs = np.asarray(observations)
    return obs.argmax(-1).astype(np.int64) if obs.ndim >= 2 else obs.astype(np.int64)


class TabularPolicy:
    """A stochastic [S, A] table for tabular tasks (StitchGrid). Observations may be state
    indices or one-hot rows (any float rows are read by argmax, so it also acts on a learned
    model's approximately one-hot predictions)."""

    def __init__(self, table: np.ndarray, name: str = "tabular"):
        table = np.asarray(table, dtype=np.float64)
        if table.ndim != 2 or np.any(table < 0) or not np.allclose(table.sum(1), 1.0, atol=1e-9):
            raise OffbenchError(f"TabularPolicy table must be [S, A] with rows summing to 1, got shape {table.shape}")
        self.table = table
        self.name = name

    @property
    def n_actions(self) -> int:
        return self.table.shape[1]

    def probabilities(self, observations) -> np.ndarray:
        return self.table[_state_index(observations)]

    def log_prob(self, observations, actions) -> np.ndarray:
        p = self.table[_state_index(observations), np.asarray(actions).astype(np.int64).reshape(-1)]
        with np.errstate(divide="ignore"):
            return np.log(p)

    def sample(self, observations, rng: np.random.Generator) -> np.ndarray:
        return _sample_categorical(self.probabilities(observations), rng)


class AlgorithmPolicy:
    """A trained offbench baseline as a :class:`TargetPolicy`.

    The algorithm's observation encoder (``algorithm.encoder``) and policy head
    (``algorithm.policy`` or ``algorithm.actor``) are used directly:

    - ``CategoricalPolicy`` (BC, IQL, AWR on discrete actions): exact probabilities;
    - ``GaussianPolicy`` (IQL, AWR, AWAC) and ``TanhGaussianPolicy`` (CQL): the head's own
      ``log_prob`` and sampler (GaussianPolicy clips samples into the action box; its density
      is the unclipped Gaussian's);
    - ``DeterministicPolicy`` (TD3+BC, continuous BC): wrapped as a Gaussian
      ``N(pi(s), (deterministic_std * action_scale)^2)`` -- a modelling choice, not the
      policy. Importance sampling with a deterministic target is degenerate (the ratio is
      a point mass, zero almost surely for continuous actions), so IS/DR values then depend
      on ``deterministic_std``; prefer FQE or model-based estimates for such policies.
    - discrete algorithms without a policy head (CQL's greedy critic, DQN): the greedy
      action of ``algorithm.act`` mixed with ``epsilon`` uniform noise.
    """

    def __init__(self, algorithm: nn.Module, *, deterministic_std: float = 0.1, epsilon: float = 0.0,
                 name: str | None = None):
        self.algorithm = algorithm.eval()
        self.encoder = getattr(algorithm, "encoder", None)
        self.name = name or type(algorithm).__name__
        space = getattr(algorithm, "action_space", None)
        self.discrete = isinstance(space, gym.spaces.Discrete)
        head = getattr(algorithm, "policy", None)
        if head is None:
            head = getattr(algorithm, "actor", None)
        self.head = head
        if isinstance(head, CategoricalPolicy):
            self.kind = "categorical"
        elif isinstance(head, (GaussianPolicy, TanhGaussianPolicy)):
            self.kind = "gaussian"
        elif isinstance(head, DeterministicPolicy):
            if not deterministic_std > 0:
                raise OffbenchError(f"deterministic_std must be > 0, got {deterministic_std}")
            self.kind = "deterministic"
        elif self.discrete and hasattr(algorithm, "act"):
            self.kind = "greedy"
        else:
            raise OffbenchError(f"AlgorithmPolicy cannot read a policy from {type(algorithm).__name__}: it needs a "
                                "`policy` or `actor` head from offbench.nn, or discrete actions and `act`")
        if not 0.0 <= epsilon <= 1.0:
            raise OffbenchError(f"epsilon must be in [0, 1], got {epsilon}")
        self.deterministic_std, self.epsilon = float(deterministic_std), float(epsilon)
        self.n_actions = int(space.n) if self.discrete else None

    def _features(self, observations) -> torch.Tensor:
        obs = torch.as_tensor(np.asarray(observations))
        return self.encoder(obs) if self.encoder is not None else obs.float()

    def _normal(self, features: torch.Tensor) -> torch.distributions.Normal:
        mean = self.head(features)
        return torch.distributions.Normal(mean, self.deterministic_std * self.head.action_scale)

    @torch.no_grad()
    def probabilities(self, observations) -> np.ndarray:
        if not self.discrete:
            raise OffbenchError(f"{self.name} has continuous actions: probabilities() is for discrete actions")
        if self.kind == "categorical":
            return self.head.net(self._features(observations)).softmax(-1).double().numpy()
        greedy = np.asarray(self.algorithm.act(np.asarray(observations))).astype(np.int64).reshape(-1)
        probs = np.full((len(greedy), self.n_actions), self.epsilon / self.n_actions)
        probs[np.arange(len(greedy)), greedy] += 1.0 - self.epsilon
        return probs

    @torch.no_grad()
    def log_prob(self, observations, actions) -> np.ndarray:
        if self.discrete:
            p = self.probabilities(observations)[np.arange(len(actions)), np.asarray(actions).astype(np.int64)]
            with np.errstate(divide="ignore"):
                return np.log(p)
        features = self._features(observations)
        act = torch.as_tensor(np.asarray(actions), dtype=torch.float32)
        if self.kind == "deterministic":
            return self._normal(features).log_prob(act).sum(-1).double().numpy()
        return self.head.log_prob(features, act).double().numpy()

    @torch.no_grad()
    def sample(self, observations, rng: np.random.Generator) -> np.ndarray:
        if self.discrete:
            return _sample_categorical(self.probabilities(observations), rng)
        generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        features = self._features(observations)
        if self.kind == "deterministic":
            dist = self._normal(features)
            noise = torch.randn(dist.mean.shape, generator=generator)
            low = self.head.action_bias - self.head.action_scale
            high = self.head.action_bias + self.head.action_scale
            return torch.max(torch.min(dist.mean + dist.stddev * noise, high), low).numpy()
        return self.head(features, False, generator)[0].numpy()


def _probabilities(policy: Any, observations: np.ndarray, n_actions: int) -> np.ndarray:
    """pi(. | s) [N, A]: the policy's own ``probabilities`` or, failing that, exp(log_prob) of every action."""
    if hasattr(policy, "probabilities"):
        probs = np.asarray(policy.probabilities(observations), dtype=np.float64)
    else:
        n = len(observations)
        probs = np.stack([np.exp(policy.log_prob(observations, np.full(n, a, dtype=np.int64)))
                          for a in range(n_actions)], axis=1)
    if probs.shape != (len(observations), n_actions):
        raise OffbenchError(f"the target policy returned probabilities of shape {probs.shape}, expected "
                            f"{(len(observations), n_actions)}")
    return probs


# ====================================================================== the data, in the shapes OPE needs
@dataclass
class _Data:
    obs: np.ndarray
    next_obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray  # float64
    terminated: np.ndarray  # bool: bootstrap 0
    timesteps: np.ndarray  # step index inside the episode
    episode: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    observation_space: gym.Space
    action_space: gym.Space

    @property
    def discrete_actions(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    @property
    def n_actions(self) -> int:
        return int(self.action_space.n)

    @property
    def start_obs(self) -> np.ndarray:
        return self.obs[self.starts]

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """(row index [E, T], mask [E, T]) of the episodes laid out as rows, T = longest episode."""
        horizon = int(self.lengths.max())
        t = np.arange(horizon)
        mask = t[None, :] < self.lengths[:, None]
        return np.where(mask, self.starts[:, None] + t[None, :], 0), mask


def _data(dataset: Dataset) -> _Data:
    if dataset.is_dict_observation:
        raise OffbenchError(f"dataset {dataset.metadata.dataset_id!r} has Dict observations; off-policy evaluation "
                            "needs flat observations (flatten them into one array first)")
    if not isinstance(dataset.action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        raise OffbenchError(f"off-policy evaluation supports Discrete and Box actions, not {dataset.action_space}")
    episode = dataset.episode_of_step
    starts = np.asarray(dataset.episode_starts, dtype=np.int64)
    return _Data(obs=dataset.observations, next_obs=dataset.next_observations, actions=dataset.actions,
                 rewards=dataset.rewards.astype(np.float64), terminated=dataset.terminations.astype(bool),
                 timesteps=np.arange(dataset.num_steps, dtype=np.int64) - starts[episode], episode=episode,
                 starts=starts, lengths=np.asarray(dataset.episode_lengths, dtype=np.int64),
                 observation_space=dataset.observation_space, action_space=dataset.action_space)


def _check_gamma(gamma: float, *, below_one: bool = False, who: str = "") -> float:
    gamma = float(gamma)
    if not (0.0 <= gamma < 1.0 if below_one else 0.0 <= gamma <= 1.0):
        need = "0 <= gamma < 1" if below_one else "0 <= gamma <= 1"
        raise OffbenchError(f"{who}gamma must satisfy {need}, got {gamma}")
    return gamma


def tabular_states(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(state index of every step [N], of every next state [N], number of states) when the
    observations are state indices (Discrete) or exactly one-hot rows; else None."""
    space = dataset.observation_space
    if isinstance(space, gym.spaces.Discrete):
        return (dataset.observations.astype(np.int64) - int(space.start),
                dataset.next_observations.astype(np.int64) - int(space.start), int(space.n))
    obs = dataset.observations
    if isinstance(space, gym.spaces.Box) and obs.ndim == 2:
        both = np.concatenate([obs, dataset.final_observations])
        if np.all((both == 0) | (both == 1)) and np.all(both.sum(1) == 1):
            return obs.argmax(1), dataset.next_observations.argmax(1), obs.shape[1]
    return None


def _state_observations(dataset: Dataset, n_states: int) -> np.ndarray:
    """One observation per state (what a policy is shown for state i)."""
    space = dataset.observation_space
    if isinstance(space, gym.spaces.Discrete):
        return np.arange(n_states, dtype=dataset.observations.dtype) + int(space.start)
    return np.eye(n_states, dtype=dataset.observations.dtype)


# ====================================================================== behaviour log-probabilities
def clone_behaviour(dataset: Dataset, *, seed: int = 0, steps: int = 2000, batch_size: int = 256, lr: float = 1e-3,
                    hidden: Sequence[int] = (64, 64)) -> TargetPolicy:
    """A behaviour policy fitted to the dataset's actions by maximum likelihood.

    Tabular observations with discrete actions: the exact MLE, action frequencies per state
    (:class:`TabularPolicy`; unvisited states get the uniform row, which IS never reads).
    Otherwise a small network: a softmax policy (discrete actions) or a Gaussian with
    state-dependent mean and log-std (continuous), trained for ``steps`` Adam steps.
    """
    data = _data(dataset)
    tab = tabular_states(dataset)
    if tab is not None and data.discrete_actions:
        states, _, n_states = tab
        counts = np.zeros((n_states, data.n_actions))
        np.add.at(counts, (states, data.actions.astype(np.int64) - int(data.action_space.start)), 1.0)
        seen = counts.sum(1, keepdims=True)
        return TabularPolicy(np.where(seen > 0, counts / np.maximum(seen, 1), 1.0 / data.n_actions), "cloned")
    return _NeuralBehaviour(dataset, seed=seed, steps=steps, batch_size=batch_size, lr=lr, hidden=hidden)


class _NeuralBehaviour:
    """Maximum-likelihood behaviour cloning with a network (see :func:`clone_behaviour`)."""

    def __init__(self, dataset: Dataset, *, seed: int, steps: int, batch_size: int, lr: float, hidden):
        data = _data(dataset)
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        self.encoder = ObservationEncoder(data.observation_space).fit(data.obs)
        self.discrete = data.discrete_actions
        out = data.n_actions if self.discrete else 2 * int(np.prod(data.action_space.shape))
        self.net = mlp(self.encoder.dim, out, hidden)
        obs = self.encoder(torch.as_tensor(data.obs))
        act = torch.as_tensor(self._action_array(data.actions))
        optim = adam(self.net.parameters(), lr=lr)
        for _ in range(steps):
            rows = torch.randint(len(obs), (min(batch_size, len(obs)),), generator=generator)
            loss = -self._log_prob(obs[rows], act[rows]).mean()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        self.final_nll = loss.item()

    def _action_array(self, actions):
        a = np.asarray(actions)
        return a.astype(np.int64).reshape(-1) if self.discrete else a.reshape(len(a), -1).astype(np.float32)

    def _log_prob(self, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        out = self.net(features)
        if self.discrete:
            return torch.log_softmax(out, -1).gather(-1, actions.view(-1, 1)).squeeze(-1)
        mean, log_std = out.chunk(2, dim=-1)
        return torch.distributions.Normal(mean, log_std.clamp(-5.0, 2.0).exp()).log_prob(actions).sum(-1)

    @torch.no_grad()
    def log_prob(self, observations, actions) -> np.ndarray:
        features = self.encoder(torch.as_tensor(np.asarray(observations)))
        return self._log_prob(features, torch.as_tensor(self._action_array(actions))).double().numpy()

    @torch.no_grad()
    def sample(self, observations, rng: np.random.Generator) -> np.ndarray:  # pragma: no cover - not used by OPE
        out = self.net(self.encoder(torch.as_tensor(np.asarray(observations)))).double().numpy()
        if self.discrete:
            p = np.exp(out - out.max(1, keepdims=True))
            return _sample_categorical(p / p.sum(1, keepdims=True), rng)
        mean, log_std = np.split(out, 2, axis=-1)
        return mean + np.exp(np.clip(log_std, -5, 2)) * rng.standard_normal(mean.shape)


def behaviour_log_probs(dataset: Dataset, behaviour: Any = "auto", *, seed: int = 0,
                        clone_steps: int = 2000) -> tuple[np.ndarray, str]:
    """(log mu(a_t | s_t) for every step [N], where it came from).

    ``behaviour``: ``"auto"`` (stored if the dataset has ``behaviour_log_prob``, else
    cloned), ``"stored"``, ``"cloned"`` (:func:`clone_behaviour`), an array [N] of
    log-probabilities, or a policy object with ``log_prob`` (both reported as ``"given"``).
    """
    if isinstance(behaviour, str):
        has = "behaviour_log_prob" in dataset.arrays
        if behaviour == "auto":
            behaviour = "stored" if has else "cloned"
        if behaviour == "stored":
            if not has:
                raise OffbenchError(f"dataset {dataset.metadata.dataset_id!r} stores no behaviour_log_prob "
                                    "(deterministic or unknown behaviour); use behaviour='cloned'")
            return dataset.extra("behaviour_log_prob").astype(np.float64), "stored"
        if behaviour == "cloned":
            return clone_behaviour(dataset, seed=seed, steps=clone_steps).log_prob(
                dataset.observations, dataset.actions).astype(np.float64), "cloned"
        raise OffbenchError(f"behaviour must be 'auto', 'stored', 'cloned', an array or a policy, got {behaviour!r}")
    if hasattr(behaviour, "log_prob"):
        log_mu = np.asarray(behaviour.log_prob(dataset.observations, dataset.actions), dtype=np.float64)
    else:
        log_mu = np.asarray(behaviour, dtype=np.float64)
    if log_mu.shape != (dataset.num_steps,):
        raise OffbenchError(f"behaviour log-probabilities have shape {log_mu.shape}, expected ({dataset.num_steps},)")
    return log_mu, "given"


# ====================================================================== importance sampling
@dataclass
class _Weights:
    """Per-episode layout: cumulative ratios rho_{0:t} [E, T] (carried forward past the end),
    rewards [E, T] (0 past the end), discounts gamma^t [T], row index and mask [E, T]."""

    rho: np.ndarray
    rewards: np.ndarray
    discounts: np.ndarray
    index: np.ndarray
    mask: np.ndarray
    details: dict


def _importance_weights(dataset: Dataset, policy: TargetPolicy, gamma: float, behaviour: Any,
                        log_ratio_clip: tuple[float, float] | None, seed: int) -> _Weights:
    data = _data(dataset)
    log_mu, source = behaviour_log_probs(dataset, behaviour, seed=seed)
    if not np.all(np.isfinite(log_mu)):
        raise OffbenchError("behaviour log-probabilities must be finite (the behaviour took every stored action)")
    log_pi = np.asarray(policy.log_prob(data.obs, data.actions), dtype=np.float64).reshape(-1)
    log_ratio = log_pi - log_mu  # -inf where the target never takes the logged action
    clipped = 0.0
    if log_ratio_clip is not None:
        lo, hi = (float(x) for x in log_ratio_clip)
        if not lo < hi:
            raise OffbenchError(f"log_ratio_clip must be (low, high) with low < high, got {log_ratio_clip}")
        clipped = float(np.mean((log_ratio < lo) | (log_ratio > hi)))
        log_ratio = np.clip(log_ratio, lo, hi)
    index, mask = data.padded()
    # Past an episode's end the ratio stays put and the reward is 0: the episode sits in an
    # absorbing state (Thomas 2015), which keeps the per-decision weights of unequal lengths consistent.
    rho = np.exp(np.cumsum(np.where(mask, log_ratio[index], 0.0), axis=1))
    rewards = np.where(mask, data.rewards[index], 0.0)
    details = {"behaviour": source, "log_ratio_clip": log_ratio_clip, "clipped_fraction": clipped,
               "episodes": int(len(data.starts)), "max_log_ratio": float(np.max(log_ratio))}
    return _Weights(rho, rewards, gamma ** np.arange(index.shape[1]), index, mask, details)


def _ess(w: np.ndarray) -> float:
    """Kish's effective sample size (sum w)^2 / sum w^2 (0 when every weight is 0)."""
    s2 = float(np.sum(w**2))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def importance_sampling(dataset: Dataset, policy: TargetPolicy, variant: str = "wpdis", *, gamma: float = 1.0,
                        behaviour: Any = "auto", log_ratio_clip: tuple[float, float] | None = None,
                        seed: int = 0) -> OPEEstimate:
    r"""Importance-sampling estimates (Precup, Sutton & Singh 2000), ``variant`` one of:

    with rho^i_{0:t} = prod_{k<=t} pi(a^i_k | s^i_k) / mu(a^i_k | s^i_k) and n episodes,

    - ``is``    (trajectory-wise):  (1/n) sum_i rho^i_{0:T_i-1} sum_t gamma^t r^i_t
    - ``pdis``  (per-decision):     (1/n) sum_i sum_t gamma^t rho^i_{0:t} r^i_t
    - ``wis``   (weighted IS):      sum_i rho^i_{0:T_i-1} G^i / sum_i rho^i_{0:T_i-1}
    - ``wpdis`` (weighted PDIS):    sum_t gamma^t sum_i rho^i_{0:t} r^i_t / sum_i rho^i_{0:t}

    IS and PDIS are unbiased (with exact behaviour probabilities and no clipping); the
    weighted forms are biased but consistent with much lower variance. ``log_ratio_clip``
    clips each step's log-ratio (DOPE: :data:`DOPE_LOG_RATIO_CLIP`), which biases all four.
    If every weight is zero (the target never agrees with the data) the weighted forms are
    undefined: value NaN, ``details["undefined"]`` says why.
    """
    if variant not in IS_VARIANTS:
        raise OffbenchError(f"unknown importance-sampling variant {variant!r}; choose one of {IS_VARIANTS}")
    gamma = _check_gamma(gamma)
    w = _importance_weights(dataset, policy, gamma, behaviour, log_ratio_clip, seed)
    returns = w.rewards @ w.discounts  # G^i, discounted
    final = w.rho[:, -1]  # rho^i_{0:T_i-1}, carried forward to the last column
    details = dict(w.details, ess=_ess(final))
    if variant in ("is", "pdis"):
        per_episode = final * returns if variant == "is" else (w.rho * w.rewards) @ w.discounts
        value = float(per_episode.mean())
        details["stderr"] = float(per_episode.std(ddof=1) / np.sqrt(len(per_episode))) if len(per_episode) > 1 else 0.0
    elif variant == "wis":
        total = float(final.sum())
        value = float(final @ returns / total) if total > 0 else float("nan")
    else:  # wpdis: normalise the weights of every time step separately
        num, den = (w.rho * w.rewards).sum(0), w.rho.sum(0)
        # A step where every weight has become 0 adds nothing (no episode can say anything about it).
        per_step = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
        value = float(np.sum(w.discounts * per_step)) if den[0] > 0 else float("nan")
    if not np.isfinite(value):
        details["undefined"] = ("every importance weight is zero (the target never takes the logged actions) "
                                "or a weight overflowed; consider log_ratio_clip")
        value = float("nan")
    return OPEEstimate(variant, value, gamma, details)


# ====================================================================== Q-functions (the FQE models)
class QFunction(Protocol):
    """A fitted Q^pi used by doubly robust: Q(s_t, a_t) and V(s_t) = E_{a~pi} Q(s_t, a) at time t."""

    def q(self, observations: np.ndarray, actions: np.ndarray, timesteps: np.ndarray) -> np.ndarray: ...

    def v(self, observations: np.ndarray, timesteps: np.ndarray) -> np.ndarray: ...


@dataclass
class TabularQ:
    """Q as a table: [S, A] (stationary) or [H + 1, S, A] (time-indexed, the last layer 0),
    with the target policy's table [S, A] for V."""

    table: np.ndarray
    policy_table: np.ndarray
    covered: np.ndarray  # [S, A] pairs the data has

    def q(self, observations, actions, timesteps) -> np.ndarray:
        s, a = _state_index(observations), np.asarray(actions).astype(np.int64)
        if self.table.ndim == 2:
            return self.table[s, a]
        return self.table[np.minimum(np.asarray(timesteps), self.table.shape[0] - 1), s, a]

    def v(self, observations, timesteps) -> np.ndarray:
        s = _state_index(observations)
        values = np.einsum("...sa,sa->...s", self.table, self.policy_table)
        if self.table.ndim == 2:
            return values[s]
        return values[np.minimum(np.asarray(timesteps), self.table.shape[0] - 1), s]


def _empirical_model(dataset: Dataset, n_states: int):
    """Counts N(s, a), mean reward R(s, a) and non-terminal transition frequencies P(s' | s, a)."""
    states, next_states, _ = tabular_states(dataset)
    actions = dataset.actions.astype(np.int64) - int(dataset.action_space.start)
    n_actions = int(dataset.action_space.n)
    alive = ~dataset.terminations.astype(bool)
    counts = np.zeros((n_states, n_actions))
    np.add.at(counts, (states, actions), 1.0)
    reward = np.zeros((n_states, n_actions))
    np.add.at(reward, (states, actions), dataset.rewards.astype(np.float64))
    trans = np.zeros((n_states, n_actions, n_states))
    np.add.at(trans, (states, actions, next_states), alive.astype(np.float64))  # terminated: bootstrap 0
    covered = counts > 0
    safe = np.maximum(counts, 1.0)
    return covered, reward / safe, trans / safe[..., None], counts


def tabular_fqe(dataset: Dataset, policy: TargetPolicy, *, gamma: float = 1.0, horizon: int | None = None
                ) -> OPEEstimate:
    r"""Exact FQE for tabular data (Le et al. 2019, with exact least-squares regression).

    A tabular regression of ``r + gamma (1 - terminated) sum_a' pi(a'|s') Q(s', a')`` onto
    (s, a) is the mean over the data's (s, a) transitions, so FQE iterates the Bellman
    operator of the data's empirical MDP (R-hat, P-hat). Its fixed point is solved directly:

    - ``horizon=None``: stationary ``Q = R + gamma P Pi Q`` (a linear solve): the
      infinite-horizon value; truncations are bootstrapped through. Needs gamma < 1 unless
      every policy path terminates.
    - ``horizon=H``: time-indexed backward induction ``Q_t = R + gamma P Pi Q_{t+1}``,
      ``Q_H = 0``: the value of a time-limited episode of H steps (what
      ``gridworld.finite_horizon_value`` computes). Transitions of every time step are used
      for every Q_t (the MDP is time-homogeneous; only the time left differs).

    Pairs the data never tried keep Q = 0 (FQE never regresses them). The estimate is the
    mean over the dataset's start states of V_0(s_0) = sum_a pi(a|s_0) Q_0(s_0, a).
    """
    gamma = _check_gamma(gamma)
    tab = tabular_states(dataset)
    if tab is None or not isinstance(dataset.action_space, gym.spaces.Discrete):
        raise OffbenchError("tabular_fqe needs Discrete or one-hot observations and Discrete actions; "
                            "use fqe(..., method='neural')")
    states, _, n_states = tab
    n_actions = int(dataset.action_space.n)
    covered, R, P, counts = _empirical_model(dataset, n_states)
    pi = _probabilities(policy, _state_observations(dataset, n_states), n_actions)
    start_states = states[np.asarray(dataset.episode_starts)]
    if horizon is None:
        # Q = R + gamma M Q with M[(s,a), (s',a')] = P(s'|s,a) pi(a'|s'); uncovered rows fixed at 0.
        M = np.einsum("sat,tb->satb", P, pi).reshape(n_states * n_actions, -1)
        A = np.eye(n_states * n_actions) - gamma * M
        b = R.reshape(-1).copy()
        unc = ~covered.reshape(-1)
        A[unc] = np.eye(n_states * n_actions)[unc]
        b[unc] = 0.0
        try:
            Q = np.linalg.solve(A, b).reshape(n_states, n_actions)
        except np.linalg.LinAlgError:
            raise OffbenchError("tabular_fqe: the stationary system is singular (gamma = 1 and a policy that never "
                                "terminates?); pass horizon=H for the time-limited value") from None
        V0 = (pi * Q).sum(1)[start_states]
    else:
        horizon = int(horizon)
        if horizon < 1:
            raise OffbenchError(f"horizon must be at least 1, got {horizon}")
        Q = np.zeros((horizon + 1, n_states, n_actions))
        for t in range(horizon - 1, -1, -1):
            V_next = (pi * Q[t + 1]).sum(1)
            Q[t] = np.where(covered, R + gamma * P @ V_next, 0.0)
        V0 = (pi * Q[0]).sum(1)[start_states]
    model = TabularQ(Q, pi, covered)
    unsupported = float(np.sum(pi * ~covered, axis=1)[np.unique(states)].max())
    return OPEEstimate("fqe_tabular", float(V0.mean()), gamma,
                       {"horizon": horizon, "covered_pairs": int(covered.sum()),
                        "max_policy_mass_on_unseen_actions": unsupported}, model)


class NeuralQ:
    """A neural Q^pi from :func:`neural_fqe` (stationary, or with a time-left input)."""

    def __init__(self, net: nn.Module, encoder: ObservationEncoder, policy: TargetPolicy, discrete: bool,
                 horizon: int | None, action_samples: int, seed: int, n_actions: int | None = None,
                 scale: float = 1.0):
        self.net, self.encoder, self.policy = net, encoder, policy
        self.scale = float(scale)  # the net outputs Q / scale
        self.discrete, self.horizon, self.action_samples = discrete, horizon, action_samples
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)

    def features(self, observations, timesteps) -> torch.Tensor:
        x = self.encoder(torch.as_tensor(np.asarray(observations)))
        if self.horizon is None:
            return x
        left = (self.horizon - torch.as_tensor(np.asarray(timesteps), dtype=torch.float32)) / self.horizon
        return torch.cat([x, left.view(-1, 1)], dim=1)

    def values(self, features: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        """[B, A] for discrete actions, [B] at ``actions`` [B, act_dim] for continuous ones."""
        if self.discrete:
            return self.net(features) * self.scale
        return self.net(features, actions).squeeze(0) * self.scale

    @torch.no_grad()
    def q(self, observations, actions, timesteps) -> np.ndarray:
        f = self.features(observations, timesteps)
        if self.discrete:
            a = torch.as_tensor(np.asarray(actions).astype(np.int64)).view(-1, 1)
            return self.values(f).gather(1, a).squeeze(1).double().numpy()
        a = torch.as_tensor(np.asarray(actions), dtype=torch.float32).reshape(len(f), -1)
        return self.values(f, a).double().numpy()

    @torch.no_grad()
    def v(self, observations, timesteps) -> np.ndarray:
        f = self.features(observations, timesteps)
        if self.discrete:
            probs = torch.as_tensor(_probabilities(self.policy, np.asarray(observations), self.n_actions))
            return (self.values(f).double() * probs).sum(1).numpy()
        total = np.zeros(len(f))
        for _ in range(self.action_samples):
            a = torch.as_tensor(self.policy.sample(np.asarray(observations), self.rng), dtype=torch.float32)
            total += self.values(f, a.reshape(len(f), -1)).double().numpy()
        return total / self.action_samples


def neural_fqe(dataset: Dataset, policy: TargetPolicy, *, gamma: float = 0.99, horizon: int | None = None,
               steps: int = 5000, batch_size: int = 256, lr: float = 3e-4, hidden: Sequence[int] = (256, 256),
               tau: float = 0.02, action_samples: int = 4, clip_targets: bool = True, value_scaling: bool = True,
               seed: int = 0) -> OPEEstimate:
    r"""Neural FQE (Le et al. 2019; DOPE's FQE): minimise over minibatches

        ( Q(s, a) - [ r + gamma (1 - terminated) E_{a'~pi(s')} Q_target(s', a') ] )^2

    with a Polyak-averaged target network (``tau``). ``terminated`` bootstraps 0; a
    truncated step bootstraps from its stored next observation. Discrete actions: an MLP
    with one output per action and the exact expectation over pi(. | s'); continuous
    actions: ``QEnsemble`` (one member) and ``action_samples`` draws a' ~ pi(s') fixed up
    front (the target policy does not change, so they are sampled once).

    ``horizon=None`` fits the stationary (infinite-horizon) Q; ``horizon=H`` adds the
    fraction of time left (H - t)/H as an input and bootstraps 0 at t + 1 = H, which
    estimates the value of a time-limited episode (and allows gamma = 1).

    ``clip_targets`` clips each target to the value range that rewards in the dataset's range
    [r_min, r_max] allow, [r_min, r_max] * sum_t gamma^t (over the horizon, or 1/(1 - gamma)):
    no policy's value lies outside it, and without it a target policy whose actions leave the
    data is free to extrapolate Q without bound (on lite/pendulum, all rewards <= 0, unclipped
    FQE returned +1202 for a policy whose true value is -584).

    ``value_scaling`` lets the network output Q / c with c = max(|mean r|, std r) * sum_t gamma^t
    and starts its output bias at mean(r) * sum_t gamma^t / c, the value of earning the mean
    reward forever: values of -600 are then O(1) outputs, and FQE starts near the answer
    instead of at 0, which ``steps`` Bellman backups (each shrinking the error by gamma) would
    otherwise have to cover. Neither changes the fixed point of the regression.
    """
    gamma = _check_gamma(gamma)
    if horizon is None and gamma >= 1.0:
        raise OffbenchError("neural_fqe with gamma = 1 needs horizon=H (a stationary Q diverges when truncations "
                            "are bootstrapped through)")
    data = _data(dataset)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = ObservationEncoder(data.observation_space).fit(data.obs)
    in_dim = encoder.dim + (horizon is not None)
    if data.discrete_actions:
        net = mlp(in_dim, data.n_actions, hidden)
        actions = torch.as_tensor(data.actions.astype(np.int64) - int(data.action_space.start))
        next_weight = torch.as_tensor(_probabilities(policy, data.next_obs, data.n_actions), dtype=torch.float32)
    else:
        act_dim = int(np.prod(data.action_space.shape))
        net = QEnsemble(in_dim, act_dim, members=1, hidden=hidden)
        actions = torch.as_tensor(data.actions.reshape(len(data.actions), -1), dtype=torch.float32)
        # [K, N, act_dim]: fixed samples of pi(s') for the targets.
        next_weight = torch.as_tensor(np.stack([np.asarray(policy.sample(data.next_obs, rng)).reshape(len(actions), -1)
                                                for _ in range(action_samples)]), dtype=torch.float32)
    length = (1.0 / (1.0 - gamma)) if horizon is None else float(sum(gamma ** t for t in range(horizon)))
    scale = 1.0
    if value_scaling:
        mean_value = float(data.rewards.mean()) * length
        scale = max(abs(float(data.rewards.mean())), float(data.rewards.std())) * length or 1.0
        with torch.no_grad():
            out_bias = net[-1].bias if data.discrete_actions else net.net.out.bias
            out_bias.fill_(mean_value / scale)
    model = NeuralQ(net, encoder, policy, data.discrete_actions, horizon, action_samples, seed,
                    data.n_actions if data.discrete_actions else None, scale=scale)
    target = NeuralQ(_frozen_copy(net), encoder, policy, data.discrete_actions, horizon, action_samples, seed,
                     scale=scale)
    with torch.no_grad():
        feats = model.features(data.obs, data.timesteps)
        next_feats = model.features(data.next_obs, data.timesteps + 1)
    rewards = torch.as_tensor(data.rewards, dtype=torch.float32)
    done = data.terminated if horizon is None else data.terminated | (data.timesteps + 1 >= horizon)
    not_done = torch.as_tensor(~done, dtype=torch.float32)
    if clip_targets:
        low, high = float(data.rewards.min()) * length, float(data.rewards.max()) * length
        low, high = min(low, 0.0), max(high, 0.0)  # a terminal state's value 0 is always possible
    else:
        low, high = -float("inf"), float("inf")
    optim = adam(net.parameters(), lr=lr)
    n, losses = len(rewards), []
    for step in range(steps):
        rows = torch.randint(n, (min(batch_size, n),), generator=generator)
        with torch.no_grad():
            if data.discrete_actions:
                next_v = (target.values(next_feats[rows]) * next_weight[rows]).sum(1)
            else:  # the K action samples in one forward pass: [K * b] rows
                b = len(rows)
                next_v = target.values(next_feats[rows].repeat(action_samples, 1),
                                       next_weight[:, rows].reshape(action_samples * b, -1))
                next_v = next_v.view(action_samples, b).mean(0)
            y = (rewards[rows] + gamma * not_done[rows] * next_v).clamp(low, high)
        if data.discrete_actions:
            q = model.values(feats[rows]).gather(1, actions[rows].view(-1, 1)).squeeze(1)
        else:
            q = model.values(feats[rows], actions[rows])
        loss = F.mse_loss(q, y)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        soft_update(target.net, net, tau)
        if step >= steps - 100:
            losses.append(loss.item())
    net.eval()
    if data.discrete_actions:
        v0 = model.v(data.start_obs, np.zeros(len(data.starts), dtype=np.int64))
    else:
        model.rng = np.random.default_rng(seed + 1)
        v0 = model.v(data.start_obs, np.zeros(len(data.starts), dtype=np.int64))
    return OPEEstimate("fqe_neural", float(v0.mean()), gamma,
                       {"horizon": horizon, "steps": steps, "final_td_loss": float(np.mean(losses)),
                        "target_range": [low, high], "value_scale": scale}, model)


def _frozen_copy(net: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(net).requires_grad_(False)


def fqe(dataset: Dataset, policy: TargetPolicy, *, method: str = "auto", gamma: float = 0.99,
        horizon: int | None = None, seed: int = 0, **neural_kwargs) -> OPEEstimate:
    """FQE: ``method="tabular"`` (:func:`tabular_fqe`) for index / one-hot observations with
    discrete actions, ``"neural"`` (:func:`neural_fqe`) otherwise; ``"auto"`` picks."""
    if method == "auto":
        method = ("tabular" if tabular_states(dataset) is not None
                  and isinstance(dataset.action_space, gym.spaces.Discrete) else "neural")
    if method == "tabular":
        return tabular_fqe(dataset, policy, gamma=gamma, horizon=horizon)
    if method == "neural":
        return neural_fqe(dataset, policy, gamma=gamma, horizon=horizon, seed=seed, **neural_kwargs)
    raise OffbenchError(f"unknown FQE method {method!r}; choose 'auto', 'tabular' or 'neural'")


# ====================================================================== doubly robust
def doubly_robust(dataset: Dataset, policy: TargetPolicy, *, weighted: bool = False, gamma: float = 1.0,
                  q_function: QFunction | None = None, horizon: int | None = None, behaviour: Any = "auto",
                  log_ratio_clip: tuple[float, float] | None = None, seed: int = 0,
                  fqe_kwargs: dict | None = None) -> OPEEstimate:
    r"""Per-decision doubly robust (Jiang & Li 2016, eq. 10 unrolled; Thomas & Brunskill 2016 eq. 9):

        DR  = (1/n) sum_i sum_t gamma^t [ rho^i_{0:t} r^i_t - rho^i_{0:t} Q(s^i_t, a^i_t) + rho^i_{0:t-1} V(s^i_t) ]

    with rho_{0:-1} = 1 and V(s) = E_{a~pi} Q(s, a). ``weighted=True`` is WDR (Thomas &
    Brunskill 2016): rho^i_{0:t} / n is replaced by w^i_t = rho^i_{0:t} / sum_j rho^j_{0:t}
    (w_{-1} = 1/n). For any Q the control variate has mean zero, so DR keeps IS's
    unbiasedness; the closer Q is to Q^pi the lower the variance.

    ``q_function`` defaults to FQE on the same data (``fqe_kwargs``; tabular data get the
    exact time-indexed Q with ``horizon`` = the longest episode, others a stationary
    neural Q with ``gamma``). The Q is read at each step's time index t.
    """
    gamma = _check_gamma(gamma)
    data = _data(dataset)
    details: dict[str, Any] = {}
    if q_function is None:
        kwargs = dict(fqe_kwargs or {})
        tabular = tabular_states(dataset) is not None and data.discrete_actions
        if tabular:
            kwargs.setdefault("horizon", horizon or int(data.lengths.max()))
        elif gamma >= 1.0:
            kwargs.setdefault("horizon", horizon or int(data.lengths.max()))
        fit = fqe(dataset, policy, gamma=gamma, seed=seed, **kwargs)
        q_function = fit.model
        details["q_model"] = fit.estimator
        details["fqe_value"] = fit.value
    w = _importance_weights(dataset, policy, gamma, behaviour, log_ratio_clip, seed)
    q_hat = np.where(w.mask, np.asarray(q_function.q(data.obs, data.actions, data.timesteps))[w.index], 0.0)
    v_hat = np.where(w.mask, np.asarray(q_function.v(data.obs, data.timesteps))[w.index], 0.0)
    n = w.rho.shape[0]
    if weighted:
        den = w.rho.sum(0)
        weights = np.divide(w.rho, den, out=np.zeros_like(w.rho), where=den > 0)
    else:
        weights = w.rho / n
    previous = np.concatenate([np.full((n, 1), 1.0 / n), weights[:, :-1]], axis=1)
    terms = weights * (w.rewards - q_hat) + previous * v_hat  # [E, T]
    per_episode = terms @ w.discounts
    value = float(per_episode.sum())
    details.update(w.details, ess=_ess(w.rho[:, -1]))
    if not weighted and n > 1:
        details["stderr"] = float((n * per_episode).std(ddof=1) / np.sqrt(n))
    return OPEEstimate("wdr" if weighted else "dr", value, gamma, details, q_function)


# ====================================================================== model-based
def _one_hot(actions: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)[np.asarray(actions).astype(np.int64).reshape(-1)]


def model_based(dataset: Dataset, policy: TargetPolicy, *, gamma: float = 1.0, horizon: int | None = None,
                model: Any = None, task: Any = None, num_rollouts: int | None = None,
                ensemble_kwargs: dict | None = None, fit_kwargs: dict | None = None, deterministic: bool = False,
                seed: int = 0) -> OPEEstimate:
    r"""Model-based OPE (DOPE's MB baseline): ``V = mean over rollouts of sum_{t<H} gamma^t r_t``.

    Each rollout starts from a dataset start state (all of them once, or ``num_rollouts``
    drawn with replacement), takes a_t ~ pi(s_t) and steps a
    :class:`offbench.dynamics.DynamicsEnsemble` (``model``, or one fitted here with
    ``ensemble_kwargs`` / ``fit_kwargs``); it stops at the task's TRUE termination rule on
    the predicted next observation (``task``, default ``task_for_dataset(dataset_id)`` or
    ``get_task(env_id)``) or after ``horizon`` steps (default the env's
    ``max_episode_steps`` when recorded, else the longest episode). Box observations only;
    discrete actions are one-hot inputs to the model.
    """
    from offbench.dynamics import DynamicsEnsemble
    from offbench.envs.tasks import get_task, task_for_dataset

    gamma = _check_gamma(gamma)
    data = _data(dataset)
    if not isinstance(data.observation_space, gym.spaces.Box):
        raise OffbenchError("model_based needs Box observations (e.g. offbench/StitchGridOneHot-v0 instead of "
                            f"StitchGrid-v0); got {data.observation_space}")
    if task is None:
        try:
            task = task_for_dataset(dataset.metadata.dataset_id)
        except OffbenchError:
            task = get_task(dataset.metadata.env_id)
    if horizon is None:
        spec = dataset.metadata.env_spec or {}
        horizon = spec.get("max_episode_steps") if isinstance(spec, dict) else None
        horizon = int(horizon or data.lengths.max())
    obs_dim = int(np.prod(data.observation_space.shape))

    def model_actions(actions):
        if data.discrete_actions:
            return _one_hot(np.asarray(actions) - int(data.action_space.start), data.n_actions)
        return np.asarray(actions, dtype=np.float32).reshape(len(actions), -1)

    generator = torch.Generator().manual_seed(seed)
    fit_info = None
    if model is None:
        torch.manual_seed(seed)
        act_dim = data.n_actions if data.discrete_actions else int(np.prod(data.action_space.shape))
        model = DynamicsEnsemble(obs_dim, act_dim, task=task, **(ensemble_kwargs or {}))
        fit_info = model.fit(torch.as_tensor(data.obs.reshape(len(data.obs), -1), dtype=torch.float32),
                             torch.as_tensor(model_actions(data.actions)),
                             torch.as_tensor(data.next_obs.reshape(len(data.obs), -1), dtype=torch.float32),
                             torch.as_tensor(data.rewards, dtype=torch.float32), data.episode,
                             generator=generator, **(fit_kwargs or {}))
    elif getattr(model, "task", None) is None:
        model.task = task
    model.eval()
    rng = np.random.default_rng(seed)
    starts = data.start_obs.reshape(len(data.starts), -1).astype(np.float32)
    if num_rollouts is not None:
        starts = starts[rng.integers(len(starts), size=int(num_rollouts))]
    obs = torch.as_tensor(starts)
    # A learned model can walk off the data into states where it predicts nonsense (huge states
    # whose policy outputs are NaN): predictions are clipped to the data's observation and reward
    # ranges, each widened by its span on both sides (wide, so the model's own noise around a
    # boundary value is not truncated into a bias); the fraction of clipped steps is reported.
    flat = data.obs.reshape(len(data.obs), -1)
    span = flat.max(0) - flat.min(0)
    obs_low = torch.as_tensor(flat.min(0) - span, dtype=torch.float32)
    obs_high = torch.as_tensor(flat.max(0) + span, dtype=torch.float32)
    r_span = float(data.rewards.max() - data.rewards.min())
    r_low, r_high = float(data.rewards.min()) - r_span, float(data.rewards.max()) + r_span
    alive = torch.ones(len(obs), dtype=torch.bool)
    total = torch.zeros(len(obs), dtype=torch.float64)
    clipped_steps = alive_steps = 0
    for t in range(horizon):
        shaped = obs.numpy().reshape(len(obs), *data.observation_space.shape)
        actions = policy.sample(shaped, rng)
        next_obs, reward, terminated, _ = model.step(obs, torch.as_tensor(model_actions(actions)), generator,
                                                     deterministic)
        outside = ((next_obs < obs_low) | (next_obs > obs_high)).any(-1) | (reward < r_low) | (reward > r_high)
        clipped_steps += int((outside & alive).sum())
        alive_steps += int(alive.sum())
        next_obs = torch.minimum(torch.maximum(next_obs, obs_low), obs_high)
        reward = reward.clamp(r_low, r_high)
        total += (gamma**t) * torch.where(alive, reward.double(), torch.zeros_like(total))
        alive &= ~terminated
        if not bool(alive.any()):
            break
        obs = torch.where(alive.view(-1, 1), next_obs, obs)  # finished rows stay put (not counted)
    details = {"horizon": horizon, "rollouts": int(len(obs)), "task": task.name,
               "terminated_fraction": float((~alive).float().mean()),
               "clipped_step_fraction": clipped_steps / max(alive_steps, 1)}
    if fit_info is not None:
        details["elite_holdout_mse"] = fit_info["elite_holdout_mse"]
        details["model_epochs"] = fit_info["epochs"]
    return OPEEstimate("model_based", float(total.mean()), gamma, details, model)


# ====================================================================== DualDICE
def dualdice(dataset: Dataset, policy: TargetPolicy, *, gamma: float = 0.99, method: str = "auto",
             steps: int = 5000, batch_size: int = 256, nu_lr: float = 3e-4, zeta_lr: float = 3e-3,
             hidden: Sequence[int] = (32,), action_samples: int = 2, seed: int = 0) -> OPEEstimate:
    r"""DualDICE (Nachum, Chow, Dai & Li 2019), with f(x) = x^2 / 2:

        min_nu max_zeta  J = E_{(s,a,s')~D}[ (nu(s,a) - gamma (1 - term) E_{a'~pi(s')} nu(s',a')) zeta(s,a)
                                             - zeta(s,a)^2 / 2 ]  -  (1 - gamma) E_{s0~D0, a0~pi}[ nu(s0,a0) ]

    At the saddle point zeta = d^pi / d^D, the discounted state-action occupancy ratio, and
    the value is ``V = E_D[zeta(s,a) r] / (1 - gamma)``. Terminated transitions lead to an
    absorbing state with nu = 0 and reward 0; truncations bootstrap from the stored next
    observation. DualDICE estimates the stationary (infinite-horizon) discounted value and
    needs gamma < 1.

    ``method="tabular"`` solves the saddle point in closed form: the inner max gives
    zeta = B nu with (B nu)(s,a) = nu(s,a) - gamma sum P(s'|s,a) pi(a'|s') nu(s',a'), and
    the outer min is the least-squares system B^T D B nu = (1 - gamma) b (D the data's
    (s, a) frequencies, b the start state-action distribution); minimum-norm solution.
    ``"neural"`` trains two MLPs by simultaneous gradient descent-ascent (Adam, zeta on the
    faster timescale) and averages the value of the zeta iterates over the second half of
    training (GDA cycles around the saddle point; averaging damps it). The defaults were
    tuned on StitchGrid only; neural DualDICE is the least stable estimator here.
    """
    gamma = _check_gamma(gamma, below_one=True, who="dualdice: ")
    if method == "auto":
        method = ("tabular" if tabular_states(dataset) is not None
                  and isinstance(dataset.action_space, gym.spaces.Discrete) else "neural")
    if method == "tabular":
        return _dualdice_tabular(dataset, policy, gamma)
    if method != "neural":
        raise OffbenchError(f"unknown DualDICE method {method!r}; choose 'auto', 'tabular' or 'neural'")
    return _dualdice_neural(dataset, policy, gamma, steps=steps, batch_size=batch_size, nu_lr=nu_lr,
                            zeta_lr=zeta_lr, hidden=hidden, action_samples=action_samples, seed=seed)


def _dualdice_tabular(dataset: Dataset, policy: TargetPolicy, gamma: float) -> OPEEstimate:
    tab = tabular_states(dataset)
    if tab is None or not isinstance(dataset.action_space, gym.spaces.Discrete):
        raise OffbenchError("tabular DualDICE needs Discrete or one-hot observations and Discrete actions")
    states, _, n_states = tab
    n_actions = int(dataset.action_space.n)
    covered, R, P, counts = _empirical_model(dataset, n_states)
    pi = _probabilities(policy, _state_observations(dataset, n_states), n_actions)
    size = n_states * n_actions
    B = np.eye(size) - gamma * np.einsum("sat,tb->satb", P, pi).reshape(size, size)
    d = counts.reshape(-1) / counts.sum()
    start_states = states[np.asarray(dataset.episode_starts)]
    b = (np.bincount(start_states, minlength=n_states)[:, None] / len(start_states) * pi).reshape(-1)
    nu = np.linalg.lstsq(B.T @ (d[:, None] * B), (1.0 - gamma) * b, rcond=None)[0]
    zeta = (B @ nu).reshape(n_states, n_actions)  # the occupancy ratio d^pi / d^D per (s, a)
    value = float(np.sum(d.reshape(n_states, n_actions) * zeta * R) / (1.0 - gamma))
    return OPEEstimate("dualdice_tabular", value, gamma,
                       {"mean_ratio": float(np.sum(d * zeta.reshape(-1))), "covered_pairs": int(covered.sum())},
                       zeta)


def _dualdice_neural(dataset: Dataset, policy: TargetPolicy, gamma: float, *, steps: int, batch_size: int,
                     nu_lr: float, zeta_lr: float, hidden, action_samples: int, seed: int,
                     average_every: int = 50) -> OPEEstimate:
    data = _data(dataset)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    encoder = ObservationEncoder(data.observation_space).fit(data.obs)
    with torch.no_grad():
        feats = encoder(torch.as_tensor(data.obs))
        next_feats = encoder(torch.as_tensor(data.next_obs))
        start_feats = encoder(torch.as_tensor(data.start_obs))
    rewards = torch.as_tensor(data.rewards, dtype=torch.float32)
    not_done = torch.as_tensor(~data.terminated, dtype=torch.float32)
    if data.discrete_actions:
        nu_net, zeta_net = mlp(encoder.dim, data.n_actions, hidden), mlp(encoder.dim, data.n_actions, hidden)
        actions = torch.as_tensor(data.actions.astype(np.int64) - int(data.action_space.start))
        next_pi = torch.as_tensor(_probabilities(policy, data.next_obs, data.n_actions), dtype=torch.float32)
        start_pi = torch.as_tensor(_probabilities(policy, data.start_obs, data.n_actions), dtype=torch.float32)

        def at(net, f, a):
            return net(f).gather(1, a.view(-1, 1)).squeeze(1)

        def expected(net, f, probs):  # probs [B, A]
            return (net(f) * probs).sum(1)
    else:
        act_dim = int(np.prod(data.action_space.shape))
        nu_net, zeta_net = mlp(encoder.dim + act_dim, 1, hidden), mlp(encoder.dim + act_dim, 1, hidden)
        actions = torch.as_tensor(data.actions.reshape(len(data.actions), -1), dtype=torch.float32)

        def draws(obs):
            return torch.as_tensor(np.stack([np.asarray(policy.sample(obs, rng)).reshape(len(obs), -1)
                                             for _ in range(action_samples)]), dtype=torch.float32)

        next_pi, start_pi = draws(data.next_obs), draws(data.start_obs)  # [K, N, act_dim], fixed samples

        def at(net, f, a):
            return net(torch.cat([f, a], dim=1)).squeeze(1)

        def expected(net, f, samples):  # samples [K, B, act_dim]
            return torch.stack([at(net, f, samples[k]) for k in range(len(samples))]).mean(0)

    nu_optim, zeta_optim = adam(nu_net.parameters(), lr=nu_lr), adam(zeta_net.parameters(), lr=zeta_lr)
    n, n0 = len(rewards), len(start_feats)
    rewards64 = rewards.double()
    averaged: list[float] = []  # value of the zeta iterates over the last half (GDA cycles; averaging damps it)
    for step in range(steps):
        rows = torch.randint(n, (min(batch_size, n),), generator=generator)
        rows0 = torch.randint(n0, (min(batch_size, n0),), generator=generator)
        nu = at(nu_net, feats[rows], actions[rows])
        if data.discrete_actions:
            nu_next = expected(nu_net, next_feats[rows], next_pi[rows])
            nu_start = expected(nu_net, start_feats[rows0], start_pi[rows0])
        else:
            nu_next = expected(nu_net, next_feats[rows], next_pi[:, rows])
            nu_start = expected(nu_net, start_feats[rows0], start_pi[:, rows0])
        zeta = at(zeta_net, feats[rows], actions[rows])
        J = ((nu - gamma * not_done[rows] * nu_next) * zeta - 0.5 * zeta**2).mean() - (1 - gamma) * nu_start.mean()
        nu_optim.zero_grad(set_to_none=True)
        zeta_optim.zero_grad(set_to_none=True)
        J.backward()
        for p in zeta_net.parameters():  # ascent for zeta: flip its gradient
            p.grad.neg_()
        nu_optim.step()
        zeta_optim.step()
        if step >= steps // 2 and (steps - 1 - step) % average_every == 0:
            with torch.no_grad():
                ratio = at(zeta_net, feats, actions).double()
            averaged.append(float((ratio * rewards64).mean()) / (1.0 - gamma))
    value = float(np.mean(averaged))
    return OPEEstimate("dualdice_neural", value, gamma,
                       {"mean_ratio": float(ratio.mean()), "last_iterate_value": averaged[-1], "steps": steps,
                        "averaged_iterates": len(averaged), "final_objective": J.item()},
                       (nu_net, zeta_net))


__all__ = [
    "AlgorithmPolicy", "DOPE_LOG_RATIO_CLIP", "IS_VARIANTS", "NeuralQ", "OPEEstimate", "QFunction", "TabularPolicy",
    "TabularQ", "TargetPolicy", "behaviour_log_probs", "clone_behaviour", "doubly_robust", "dualdice", "fqe",
    "importance_sampling", "model_based", "neural_fqe", "tabular_fqe", "tabular_states",
]
