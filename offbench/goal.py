"""Building blocks of the goal-conditioned baselines (``baselines/goal/``: GCBC, GCIVL, GCIQL, QRL,
CRL, HIQL), as OGBench builds them (Park et al., "OGBench: Benchmarking Offline Goal-Conditioned
RL", ICLR 2025; facts from its paper and its ``impls/`` code, REFERENCE §7; no code copied).

- :class:`GoalAlgorithm`: the :class:`offbench.algorithm.Algorithm` of a goal-conditioned method.
  Batches come from :class:`offbench.data.goal_batches.GoalBatchSampler` with OGBench's goal mix for
  the method and the dataset (``GoalBatchConfig.for_dataset``: stitch data, giant maze); ``act``
  reads the environment's Dict observations (``observation``, ``desired_goal``) and returns the
  deterministic action clipped to [-1, 1], as OGBench evaluates (temperature 0, ``np.clip``).
- :func:`goal_mlp` / :func:`goal_ensemble`: OGBench's MLPs: GELU activations, LayerNorm on the
  hidden layers where asked (OGBench's ``layer_norm=True`` of its value and critic networks; its
  actors have none), weights initialised by variance scaling 1.0 (fan-average, uniform: Glorot
  uniform), biases zero. They are ``offbench.nn.mlp`` / ``EnsembleMLP`` underneath, whose hidden
  layer is Linear -> LayerNorm -> activation; OGBench's is Dense -> activation -> LayerNorm.
- :class:`GaussianGoalActor`: OGBench's ``GCActor``: a diagonal Gaussian whose mean is a linear
  head (initialised at scale 1e-2) on an MLP, standard deviation fixed at 1 (``const_std=True``),
  no tanh; the action is the mean, clipped to the action box.
- :func:`expectile_loss`, :func:`ddpg_bc_loss`, :func:`awr_weights`: the loss pieces several methods
  share, written out where they are used.
- :func:`iqe`: the Interval Quasimetric Embedding distance of QRL's value (Wang & Isola 2022).
- :func:`play_tasks`: a goal-conditioned policy on given (start cell, goal cell) tasks of a maze,
  success counted by OGBench's environment (``info["success"]``: within 1.0 of the goal, episode
  ended there), for tests and studies beyond the 5 evaluation tasks.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from offbench.algorithm import Algorithm
from offbench.data.dataset import Dataset
from offbench.data.goal_batches import GoalBatchConfig, GoalBatchSampler
from offbench.errors import OffbenchError
from offbench.nn import EnsembleLinear, EnsembleMLP, mlp, soft_update

#: OGBench's networks (REFERENCE §7): three hidden layers of 512
OGBENCH_HIDDEN = (512, 512, 512)
#: OGBench's discount, and on the giant mazes (``GoalBatchConfig.for_dataset``)
OGBENCH_DISCOUNT, OGBENCH_GIANT_DISCOUNT = 0.99, 0.995
#: AWR weights exp(alpha A) are clipped at this (OGBench's GCIVL and HIQL)
MAX_AWR_WEIGHT = 100.0


# ---------------------------------------------------------------------- networks
def _glorot_(weight: torch.Tensor, fan_in: int, fan_out: int, scale: float = 1.0) -> None:
    """Variance scaling ``scale``, fan-average, uniform (Flax's ``variance_scaling(scale, 'fan_avg',
    'uniform')``, OGBench's ``default_init``): U(-b, b), b = sqrt(3 scale / ((fan_in + fan_out) / 2))."""
    bound = math.sqrt(3.0 * scale / ((fan_in + fan_out) / 2.0))
    with torch.no_grad():
        weight.uniform_(-bound, bound)


def ogbench_init_(module: nn.Module, final_scale: float = 1.0) -> nn.Module:
    """OGBench's initialisation of every (ensemble) linear layer of ``module``: Glorot-uniform
    weights and zero biases; the last layer's variance scaled by ``final_scale``."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Linear, EnsembleLinear))]
    for k, layer in enumerate(layers):
        scale = final_scale if k == len(layers) - 1 else 1.0
        if isinstance(layer, nn.Linear):
            _glorot_(layer.weight, layer.in_features, layer.out_features, scale)
        else:
            _glorot_(layer.weight, layer.in_dim, layer.out_dim, scale)
        with torch.no_grad():
            layer.bias.zero_()
    return module


def goal_mlp(in_dim: int, out_dim: int, hidden: Sequence[int], *, layer_norm: bool,
             final_scale: float = 1.0) -> nn.Sequential:
    """An OGBench MLP (module docstring): GELU, optional LayerNorm, Glorot-uniform initialisation."""
    return ogbench_init_(mlp(in_dim, out_dim, tuple(hidden), activation=nn.GELU, layer_norm=layer_norm), final_scale)


def goal_ensemble(members: int, in_dim: int, out_dim: int, hidden: Sequence[int], *,
                  layer_norm: bool) -> EnsembleMLP:
    """``members`` OGBench MLPs in one batched module (OGBench's ``ensemble=True``): [members, B, out]."""
    return ogbench_init_(EnsembleMLP(members, in_dim, out_dim, tuple(hidden), activation=nn.GELU,
                                     layer_norm=layer_norm))


class GaussianGoalActor(nn.Module):
    """OGBench's ``GCActor`` for continuous actions: pi(a | x) = N(mu(x), sigma^2 I) with the mean a
    linear head (initialisation scale 1e-2) on an MLP and sigma = 1 (``const_std=True``); with
    ``const_std=False`` a learned state-independent log-std. No tanh: the action is the mean,
    clipped to [-1, 1] by the caller, as OGBench does. ``x`` is whatever the method conditions on
    (state and goal, or state and a goal representation); HIQL's high-level actor uses it with
    ``act_dim`` the representation's size."""

    def __init__(self, in_dim: int, act_dim: int, hidden: Sequence[int], *, layer_norm: bool = False,
                 const_std: bool = True):
        super().__init__()
        self.net = goal_mlp(in_dim, act_dim, hidden, layer_norm=layer_norm, final_scale=1e-2)
        self.log_std = None if const_std else nn.Parameter(torch.zeros(act_dim))

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def log_prob(self, x: torch.Tensor, actions: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
        """log N(actions; mu(x), sigma^2 I) [B] (``mean``: mu(x) if already computed)."""
        mean = self.mean(x) if mean is None else mean
        if self.log_std is None:
            return (-0.5 * (actions - mean) ** 2 - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_std = self.log_std.expand_as(mean)
        return (-0.5 * ((actions - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


# ---------------------------------------------------------------------- shared loss pieces
def expectile_loss(adv: torch.Tensor, diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """|tau - 1(adv < 0)| diff^2, elementwise: the asymmetric L2 of expectile regression (IQL eq. 5),
    with the side chosen by ``adv`` (OGBench's GCIVL and HIQL weigh each ensemble member's error
    by the sign of the mean advantage; with ``adv = diff`` it is IQL's)."""
    weight = torch.where(adv >= 0, expectile, 1.0 - expectile)
    return weight * diff ** 2


def awr_weights(advantage: torch.Tensor, alpha: float, max_weight: float = MAX_AWR_WEIGHT) -> torch.Tensor:
    """exp(alpha A), clipped at ``max_weight`` (Peng et al. 2019's advantage weights, as OGBench clips them)."""
    return torch.exp(alpha * advantage).clamp(max=max_weight)


def ddpg_bc_loss(q: torch.Tensor, log_prob: torch.Tensor, alpha: float) -> torch.Tensor:
    """OGBench's DDPG+BC actor loss (Fujimoto & Gu 2021's TD3+BC, eq. 3, with the log-likelihood as
    the BC term): -E[Q] / stopgrad(E|Q|) - alpha E[log pi(a_data | s, g)]. Dividing by the mean
    |Q| makes the Q term scale-free, so ``alpha`` alone sets the balance."""
    return -q.mean() / (q.abs().mean().detach() + 1e-6) - alpha * log_prob.mean()


def iqe(x: torch.Tensor, y: torch.Tensor, dim_per_component: int, mix: torch.Tensor) -> torch.Tensor:
    """Interval Quasimetric Embedding distance (Wang & Isola, "Improved Representation of
    Asymmetrical Distances with Interval Quasimetric Embeddings", 2022), [...] from ``[..., D]``.

    The latents are cut into components of ``dim_per_component`` coordinates; component i's
    distance is the total length of the union of the intervals [x_j, max(x_j, y_j)] over its
    coordinates j; the distance is the "maxmean" reduction ``mix * max_i d_i + (1 - mix) * mean_i d_i``.
    It is 0 from x to itself, obeys the triangle inequality and is asymmetric.

    The union's length: with the intervals sorted by start s_0 <= s_1 <= ..., the first adds
    e_0 - s_0 and the i-th ``relu(e_i - max(s_i, M_{i-1}))``, M_{i-1} = max_{k<i} e_k the reach of
    those before it; max(u, v) is written u + relu(v - u) (a third faster here than
    ``torch.maximum``, whose backward masks twice).
    """
    shape = x.shape[:-1]
    k = x.shape[-1] // dim_per_component
    x = x.reshape(*shape, k, dim_per_component)
    y = y.reshape(*shape, k, dim_per_component)
    start, order = x.sort(dim=-1)
    end = start + torch.relu(y.gather(-1, order) - start)  # max(x_j, y_j), in the order of the starts
    reach = end.cummax(dim=-1).values
    later = torch.relu(end[..., 1:] - start[..., 1:] - torch.relu(reach[..., :-1] - start[..., 1:]))
    components = (end[..., 0] - start[..., 0]) + later.sum(-1)  # [..., k]
    return mix * components.max(-1).values + (1 - mix) * components.mean(-1)


# ---------------------------------------------------------------------- the algorithm base
def goal_spaces(observation_space: gym.Space, action_space: gym.Space) -> tuple[int, int, int]:
    """(state, goal, action) sizes of a goal-conditioned task's Dict observations; anything else is refused."""
    keys = set(observation_space.spaces) if isinstance(observation_space, gym.spaces.Dict) else set()
    if not {"observation", "achieved_goal"} <= keys:
        raise OffbenchError("the goal-conditioned baselines need Dict observations with 'observation', "
                            "'achieved_goal' and 'desired_goal' (the goal suite's datasets, e.g. "
                            f"goal/pointmaze-medium/navigate-v0); got {observation_space}")
    if not isinstance(action_space, gym.spaces.Box):
        raise OffbenchError(f"the goal-conditioned baselines take continuous (Box) actions; got {action_space}")
    obs_dim = int(np.prod(observation_space["observation"].shape))
    goal_dim = int(np.prod(observation_space["achieved_goal"].shape))
    return obs_dim, goal_dim, int(np.prod(action_space.shape))


def ogbench_discount(dataset: Dataset | str) -> float:
    """OGBench's discount for a dataset: 0.995 on the giant maze, else 0.99 (REFERENCE §7)."""
    return GoalBatchConfig.for_dataset("gcbc", dataset).discount


class GoalAlgorithm(Algorithm):
    """A goal-conditioned method on :class:`GoalBatchSampler` batches (module docstring).

    Subclasses set ``method`` (OGBench's name: its goal mix) and implement ``loss(batch) ->
    (total, metrics)`` and ``policy(observations, goals) -> actions`` (unclipped means). Their
    config has ``discount: float | None`` (None: OGBench's, from the dataset) and ``lr``. The loss is
    summed over the method's networks and taken in one Adam step, as OGBench does (one optimiser
    over every parameter; the terms touch disjoint parameters or stop gradients), then the target
    networks, if any (``target_pairs``), move by Polyak averaging at rate ``tau``.
    """

    method: str = ""

    def __init__(self, observation_space, action_space, config, *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        self.obs_dim, self.goal_dim, self.act_dim = goal_spaces(observation_space, action_space)
        self.discount = config.discount if config.discount is not None else OGBENCH_DISCOUNT
        self.batch_config: GoalBatchConfig | None = None
        self.register_buffer("action_low", torch.as_tensor(action_space.low, dtype=torch.float32))
        self.register_buffer("action_high", torch.as_tensor(action_space.high, dtype=torch.float32))

    # ------------------------------------------------------------------ data
    def prepare(self, dataset: Dataset) -> Dataset:
        """OGBench's goal mix for this method and dataset; the discount, unless set, from the dataset."""
        if self.config.discount is None:
            self.discount = ogbench_discount(dataset)
        self.batch_config = replace(GoalBatchConfig.for_dataset(self.method, dataset), discount=self.discount)
        return dataset

    def make_sampler(self, dataset: Dataset, batch_size: int, seed: int) -> GoalBatchSampler:
        if self.batch_config is None:
            self.prepare(dataset)
        return GoalBatchSampler(dataset, self.batch_config, batch_size, seed=seed, device=self.device)

    # ------------------------------------------------------------------ training
    def optimizers(self):
        return {"adam": self.optim}

    def target_pairs(self) -> list[tuple[list[torch.Tensor], list[torch.Tensor]]]:
        """(target parameters, online parameters) to Polyak-average after each step."""
        return []

    def loss(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, batch) -> dict[str, torch.Tensor]:
        total, info = self.loss(batch)
        self.optim.zero_grad(set_to_none=True)
        total.backward()
        self.optim.step()
        for target, online in self.target_pairs():
            soft_update(target, online, self.config.tau)
        return {k: v.detach() for k, v in info.items()}

    # ------------------------------------------------------------------ acting
    def policy(self, observations: torch.Tensor, goals: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def act(self, observations: dict[str, np.ndarray]) -> np.ndarray:
        """The deterministic action (the policy's mean, clipped to the action box) for a batch of
        Dict observations: the state ``observation`` and the goal ``desired_goal``."""
        if not isinstance(observations, dict):
            raise OffbenchError("a goal-conditioned policy acts on Dict observations {'observation', 'desired_goal'}")
        obs = torch.as_tensor(np.asarray(observations["observation"]), dtype=torch.float32, device=self.device)
        goal = torch.as_tensor(np.asarray(observations["desired_goal"]), dtype=torch.float32, device=self.device)
        actions = self.policy(obs.reshape(len(obs), -1), goal.reshape(len(goal), -1))
        return torch.maximum(torch.minimum(actions, self.action_high), self.action_low).cpu().numpy()


# ---------------------------------------------------------------------- custom tasks
def play_tasks(policy, maze: str, tasks: Sequence[tuple[tuple[int, int], tuple[int, int]]], episodes_per_task: int,
               *, seed: int = 0, max_episode_steps: int = 1000) -> np.ndarray:
    """Success of ``policy`` (Dict observations -> actions, batched) on each task, a (start cell,
    goal cell) pair of ``maze``: [tasks, episodes_per_task] booleans.

    Each episode starts and ends as OGBench's evaluation episodes do (start and goal at the cells'
    centres plus U[-1, 1] per axis, the episode ends at the goal or after ``max_episode_steps``),
    on ``offbench/pointmaze-<maze>-v0`` reset with ``options={"task_info": ...}``; success is the
    environment's ``info["success"]`` (OGBench's: within 1.0 of the goal). Episode ``e`` of task
    ``k`` is reset with seed ``seed + k * episodes_per_task + e``; all episodes run as one batch.
    """
    from offbench.envs.pointmaze import env_id

    envs, observations = [], []
    for k, (start, goal) in enumerate(tasks):
        for e in range(episodes_per_task):
            env = gym.make(env_id(maze), max_episode_steps=max_episode_steps)
            info = {"init_ij": tuple(int(c) for c in start), "goal_ij": tuple(int(c) for c in goal)}
            obs, _ = env.reset(seed=seed + k * episodes_per_task + e, options={"task_info": info})
            envs.append(env)
            observations.append(obs)
    n = len(envs)
    success = np.zeros(n, dtype=bool)
    running = list(range(n))
    while running:
        batch = {key: np.stack([observations[i][key] for i in running]) for key in observations[0]}
        actions = policy(batch)
        still = []
        for i, action in zip(running, actions):
            observations[i], _, terminated, truncated, info = envs[i].step(action)
            success[i] |= bool(info["success"])
            if not (terminated or truncated):
                still.append(i)
        running = still
    for env in envs:
        env.close()
    return success.reshape(len(tasks), episodes_per_task)


__all__ = ["GaussianGoalActor", "GoalAlgorithm", "MAX_AWR_WEIGHT", "OGBENCH_DISCOUNT", "OGBENCH_GIANT_DISCOUNT",
           "OGBENCH_HIDDEN", "awr_weights", "ddpg_bc_loss", "expectile_loss", "goal_ensemble", "goal_mlp",
           "goal_spaces", "iqe", "ogbench_discount", "ogbench_init_", "play_tasks"]
