"""Relabelling stored transitions: hindsight goals (HER / OGBench) and other tasks' rewards.

Index conventions
-----------------
An episode of T steps has states s_0 .. s_T; s_T is its final observation (stored in
``episodes/final/...``). The transition at step t goes s_t -> s_{t+1} with action a_t.
States are addressed by their *row* in ``Dataset.states_with_finals(path)``, i.e. in
``concat(per-step states [N], final states [E])``: state j of episode e is row
``start[e] + j`` for j < T and row ``N + e`` for j == T. ``Dataset.next_index[t]`` is the
row of s_{t+1}, so next states are exact at episode ends (terminated or truncated).

Hindsight goals (datasets with Dict observations ``observation`` / ``achieved_goal`` /
``desired_goal``). For the transition at step t of an episode with final state index T,
a strategy picks a goal state s_j and the goal is ``achieved_goal`` of s_j:

====================  ===================================================================
``future``            j uniform in [t+1, T]: states reached *after* the action (HER, OGBench
                      actor goals), the final state included.
``future_inclusive``  j uniform in [t, T]: as Stable-Baselines3's ``future``, which also
                      allows the current state.
``geometric``         j = min(t + k, T), k ~ Geometric(p = 1 - gamma), k >= 1 (OGBench's
                      value-goal sampling; mean offset 1 / (1 - gamma) away from episode ends).
``final``             j = T.
``episode``           j uniform in [0, T].
``current``           j = t (OGBench samples 20% of value goals this way).
``random``            any state row of the dataset, uniformly over all N + E rows (finals
                      included), from any episode.
``original``          the stored ``desired_goal`` of s_t; it has no goal row (-1).
====================  ===================================================================

Strategies are mixed per sample: each sample draws its strategy independently with the
normalised proportions given (``{"current": 0.2, "geometric": 0.5, "random": 0.3}`` is
OGBench's value-goal mix).

Rewards of relabelled transitions compare the goal with ``achieved_goal`` of s_{t+1}, the
state *after* the action, as Gymnasium-Robotics' ``compute_reward`` does on the
``achieved_goal`` returned by ``step``. Note that OGBench's own sampler instead counts a
success when the goal index equals the *current* index t; :func:`index_reward` offers both
(``match="next"``, the default, or ``match="current"`` for OGBench's exact convention).

:func:`relabel_dataset` materialises one goal per step. Because the format reads a step's
next observation from the following row, episodes are cut (truncated) wherever consecutive
steps got different goals, and (with ``terminate_on_success``) cut and terminated at every
success, so every stored transition is exact under its own goal; no step is dropped.

Task relabelling recomputes the rewards of every stored transition under another task's
reward function, from stored observations, actions and simulator state (``sim_state/qpos``
and friends, with exact next states at episode ends), e.g. HalfCheetahVel velocity targets;
:func:`relabel_for_task` does it with a registered task's own reward (the point-plane goals of the
reward-free exploratory datasets, ``offbench.envs.tasks``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Callable, Literal, Mapping, Protocol

import numpy as np

from offbench.data import format as fmt
from offbench.data.dataset import Dataset
from offbench.errors import OffbenchError

GOAL_STRATEGIES = (
    "future", "future_inclusive", "geometric", "final", "episode", "current", "random", "original",
)
ACHIEVED_KEY = "achieved_goal"
DESIRED_KEY = "desired_goal"
NO_ROW = -1  # goal row of goals that are not a dataset state ("original")


class RelabelError(OffbenchError, ValueError):
    """A relabelling request that cannot be carried out (wrong dataset kind, bad arguments)."""


# ====================================================================== reward functions
class GoalRewardFn(Protocol):
    """``(achieved_goal [B, G], desired_goal [B, G]) -> (reward [B], success [B] bool)``.

    ``achieved_goal`` is that of s_{t+1}, the state after the action. A reward function
    that needs to know *which* dataset states are compared (index-based rewards) sets the
    attribute ``needs_state_rows = True``; it is then also called with the keyword
    arguments ``goal_rows`` (row of the goal state, -1 for ``original`` goals),
    ``step_rows`` (row of s_t, i.e. the step index t) and ``next_rows`` (row of s_{t+1}),
    all [B] int64 rows of ``Dataset.states_with_finals``. An optional ``spec()`` method
    returning a JSON-able dict is recorded in recipes.
    """

    def __call__(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ...


@dataclass(frozen=True)
class ThresholdReward:
    """Sparse distance reward: success = ||achieved - desired||_2 <= threshold.

    reward = ``sparse_values[0]`` on success, else ``sparse_values[1]`` (0 / -1 by default,
    the Gymnasium-Robotics convention).
    """

    distance_threshold: float
    sparse_values: tuple[float, float] = (0.0, -1.0)
    needs_state_rows = False

    def __call__(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        diff = np.asarray(achieved_goal, dtype=np.float64) - np.asarray(desired_goal, dtype=np.float64)
        distance = np.linalg.norm(diff.reshape(len(diff), -1), axis=-1)
        success = distance <= self.distance_threshold
        reward = np.where(success, self.sparse_values[0], self.sparse_values[1])
        return reward.astype(np.float64), success

    def spec(self) -> dict:
        return {"kind": "threshold", "distance_threshold": float(self.distance_threshold),
                "sparse_values": [float(v) for v in self.sparse_values]}


def threshold_reward(distance_threshold: float, *, sparse_values: tuple[float, float] = (0.0, -1.0)) -> ThresholdReward:
    """Reward ``sparse_values[0]`` (0) when ``||achieved - desired|| <= distance_threshold``, else -1."""
    if not distance_threshold >= 0:
        raise RelabelError(f"distance_threshold must be >= 0, got {distance_threshold}")
    return ThresholdReward(float(distance_threshold), (float(sparse_values[0]), float(sparse_values[1])))


@dataclass(frozen=True)
class IndexReward:
    """OGBench-style reward from state identity: success = (goal row == compared state row).

    reward = success - 1 (0 on success, else -1). ``match="next"`` compares the goal with
    s_{t+1} (offbench's convention, consistent with distance rewards); ``match="current"``
    compares with s_t, which is exactly what OGBench's ``GCDataset`` does (so its ``current``
    goals are always successes). Goals that are no dataset state (``original``) are refused.
    """

    match: Literal["next", "current"] = "next"
    needs_state_rows = True

    def __call__(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, *, goal_rows: np.ndarray,
                 step_rows: np.ndarray, next_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        goal_rows = np.asarray(goal_rows)
        if (goal_rows < 0).any():
            raise RelabelError("index_reward compares dataset state rows, but some goals are not dataset states "
                               "(the 'original' strategy); use threshold_reward or drop 'original'")
        compared = next_rows if self.match == "next" else step_rows
        success = goal_rows == np.asarray(compared)
        return success.astype(np.float64) - 1.0, success

    def spec(self) -> dict:
        return {"kind": "index", "match": self.match}


def index_reward(*, match: Literal["next", "current"] = "next") -> IndexReward:
    """Reward ``1[goal row == row of s_{t+1}] - 1`` (``match="current"``: row of s_t, as OGBench)."""
    if match not in ("next", "current"):
        raise RelabelError(f"match must be 'next' or 'current', got {match!r}")
    return IndexReward(match)


@dataclass(frozen=True)
class EnvComputeReward:
    """Vectorised call of a Gymnasium-Robotics-style ``env.unwrapped.compute_reward``.

    ``compute_reward(achieved_goal [B, G], desired_goal [B, G], info)`` is called once per
    batch with ``info=None`` (or a list of B empty dicts when ``pass_infos``). Success is
    defined as ``reward == success_value`` exactly; 0.0 fits the sparse robotics rewards
    (0 at the goal, -1 elsewhere). For dense rewards, pass a ``success_value`` that only
    successes reach, or use :func:`threshold_reward` for the success flag.
    """

    compute_reward: Callable[..., Any]
    env_id: str | None
    success_value: float = 0.0
    pass_infos: bool = False
    needs_state_rows = False

    def __call__(self, achieved_goal: np.ndarray, desired_goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        batch = len(achieved_goal)
        info = [{} for _ in range(batch)] if self.pass_infos else None
        reward = np.asarray(self.compute_reward(achieved_goal, desired_goal, info), dtype=np.float64)
        if reward.shape != (batch,):
            if reward.size == batch:
                reward = reward.reshape(batch)
            else:
                raise RelabelError(f"compute_reward of {self.env_id} returned shape {reward.shape} for a batch of "
                                   f"{batch}; it must be vectorised over the batch dimension")
        return reward, reward == self.success_value

    def spec(self) -> dict:
        return {"kind": "env_compute_reward", "env_id": self.env_id, "success_value": self.success_value}


def env_compute_reward(env, *, success_value: float = 0.0, pass_infos: bool = False) -> EnvComputeReward:
    """Wrap ``env.unwrapped.compute_reward`` (Gymnasium-Robotics goal envs) as a goal reward."""
    unwrapped = getattr(env, "unwrapped", env)
    fn = getattr(unwrapped, "compute_reward", None)
    spec = getattr(env, "spec", None)
    env_id = getattr(spec, "id", None) or type(unwrapped).__name__
    if not callable(fn):
        raise RelabelError(
            f"environment {env_id} has no compute_reward(achieved_goal, desired_goal, info) method, so its "
            "goal reward cannot be recomputed; use threshold_reward(distance) or index_reward() instead")
    return EnvComputeReward(fn, env_id, float(success_value), bool(pass_infos))


def _spec_of(fn: Any) -> dict | None:
    """JSON-able description of a reward/termination function for recipes."""
    if fn is None:
        return None
    if hasattr(fn, "spec") and callable(fn.spec):
        return fn.spec()
    return {"kind": "callable", "name": getattr(fn, "__qualname__", type(fn).__qualname__),
            "module": getattr(fn, "__module__", None)}


# ====================================================================== goal sampling
def _check_goal_dataset(dataset: Dataset) -> None:
    keys = set(dataset.observation_space.spaces) if dataset.is_dict_observation else set()
    if not {ACHIEVED_KEY, DESIRED_KEY} <= keys:
        raise RelabelError(
            f"dataset {dataset.metadata.dataset_id!r} has no Dict observations with '{ACHIEVED_KEY}' and "
            f"'{DESIRED_KEY}' (observation keys: {sorted(keys) or 'not a Dict space'}); hindsight goal "
            "relabelling needs goal-conditioned data")


def _normalise_strategies(strategies: Mapping[str, float]) -> tuple[tuple[str, ...], np.ndarray]:
    if not strategies:
        raise RelabelError("give at least one goal strategy, e.g. {'future': 1.0}")
    unknown = sorted(set(strategies) - set(GOAL_STRATEGIES))
    if unknown:
        raise RelabelError(f"unknown goal strategies {unknown}; choose from {list(GOAL_STRATEGIES)}")
    weights = np.array([float(w) for w in strategies.values()], dtype=np.float64)
    if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise RelabelError(f"strategy proportions must be finite, >= 0 and not all 0; got {dict(strategies)}")
    # Insertion order of the dict fixes the code of each strategy (and so the random stream).
    keep = weights > 0
    names = tuple(n for n, k in zip(strategies, keep) if k)
    return names, weights[keep] / weights[keep].sum()


def state_rows(dataset: Dataset, episodes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Row in ``states_with_finals`` of state ``positions`` (0..T) of ``episodes``."""
    episodes = np.asarray(episodes, dtype=np.int64)
    positions = np.asarray(positions, dtype=np.int64)
    lengths = dataset.episode_lengths[episodes]
    return np.where(positions < lengths, dataset.episode_starts[episodes] + positions,
                    dataset.num_steps + episodes)


def state_positions(dataset: Dataset, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`state_rows`: (episode, position j in 0..T) of each state row."""
    rows = np.asarray(rows, dtype=np.int64)
    n = dataset.num_steps
    is_final = rows >= n
    step_rows = np.where(is_final, 0, rows)
    episodes = np.where(is_final, rows - n, dataset.episode_of_step[step_rows])
    positions = np.where(is_final, dataset.episode_lengths[np.where(is_final, rows - n, 0)],
                         rows - dataset.episode_starts[episodes])
    return episodes, positions


@dataclass
class GoalSample:
    """Goals drawn for a batch of steps."""

    goals: np.ndarray  # [B, G]
    goal_rows: np.ndarray  # [B] int64 row in states_with_finals, -1 for 'original'
    strategy: np.ndarray  # [B] int8 index into strategy_names
    strategy_names: tuple[str, ...]


@dataclass
class RelabelledBatch:
    """Transitions with a relabelled goal; all numpy, batch dimension first.

    ``observations`` and ``next_observations`` are dicts with ``desired_goal`` replaced by
    the same goal on both sides. ``rewards``/``success`` compare ``achieved_goal`` of the
    next observation with the goal. ``terminations`` = stored terminations, OR'ed with
    ``success`` when the sampler terminates on success. ``truncations`` are as stored.
    """

    observations: dict[str, np.ndarray]
    next_observations: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray  # float32
    terminations: np.ndarray  # bool
    truncations: np.ndarray  # bool
    success: np.ndarray  # bool
    goal_rows: np.ndarray  # int64, -1 for 'original'
    step_indices: np.ndarray  # int64
    strategy: np.ndarray  # int8 into strategy_names
    strategy_names: tuple[str, ...] = ()

    @property
    def goals(self) -> np.ndarray:
        return self.observations[DESIRED_KEY]


class GoalSampler:
    """Draw hindsight goals for stored steps and recompute rewards and terminations.

    ``strategies`` maps strategy names (module docstring) to proportions, normalised to 1.
    ``gamma`` sets the ``geometric`` offsets. ``reward_fn`` (a :class:`GoalRewardFn`) is
    needed by :meth:`relabel`. With ``terminate_on_success`` a relabelled transition is
    terminated when it reaches its goal (mask = 1 - success, as OGBench), in addition to
    the stored terminations, which are true MDP ends whatever the goal. Everything is
    vectorised with numpy and drawn from one seeded ``numpy.random.Generator``.
    """

    def __init__(
        self,
        dataset: Dataset,
        strategies: Mapping[str, float],
        *,
        gamma: float = 0.99,
        reward_fn: GoalRewardFn | None = None,
        terminate_on_success: bool = False,
        seed: int = 0,
    ):
        _check_goal_dataset(dataset)
        if not 0.0 <= gamma < 1.0:
            raise RelabelError(f"gamma must be in [0, 1) for geometric goal offsets, got {gamma}")
        self.dataset = dataset
        self.strategy_names, self.proportions = _normalise_strategies(strategies)
        self.gamma = float(gamma)
        self.reward_fn = reward_fn
        self.terminate_on_success = bool(terminate_on_success)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._achieved = dataset.states_with_finals(f"observations/{ACHIEVED_KEY}")
        self._desired = dataset.arrays[f"observations/{DESIRED_KEY}"]
        # Per-step episode, position and episode length, so a batch costs three 1-D gathers.
        self._episode = dataset.episode_of_step
        self._t = np.arange(dataset.num_steps, dtype=np.int64) - dataset.episode_starts[self._episode]
        self._length = dataset.episode_lengths[self._episode]

    # ------------------------------------------------------------------ goals
    def _positions(self, name: str, t: np.ndarray, length: np.ndarray) -> np.ndarray:
        """Goal state index j (0..T) for within-episode step positions t and lengths T."""
        rng = self.rng
        if name == "future":
            return rng.integers(t + 1, length, endpoint=True)
        if name == "future_inclusive":
            return rng.integers(t, length, endpoint=True)
        if name == "geometric":
            # numpy's geometric counts trials to the first success: k >= 1, mean 1 / p.
            k = rng.geometric(1.0 - self.gamma, size=len(t))
            return np.minimum(t + k, length)
        if name == "final":
            return length.copy()
        if name == "episode":
            return rng.integers(0, length, endpoint=True)
        if name == "current":
            return t.copy()
        raise AssertionError(name)

    def _check_steps(self, step_indices) -> np.ndarray:
        steps = np.asarray(step_indices, dtype=np.int64).reshape(-1)
        n = self.dataset.num_steps
        if len(steps) and (steps.min() < 0 or steps.max() >= n):
            raise RelabelError(f"step indices must be in [0, {n}); got range "
                               f"[{int(steps.min())}, {int(steps.max())}]")
        return steps

    def sample(self, step_indices: np.ndarray) -> GoalSample:
        """Goals, goal rows and the strategy used, for each step index."""
        steps = self._check_steps(step_indices)
        ds = self.dataset
        batch = len(steps)
        if len(self.strategy_names) == 1:
            codes = np.zeros(batch, dtype=np.int8)
        else:
            codes = self.rng.choice(len(self.strategy_names), size=batch, p=self.proportions).astype(np.int8)
        episodes = np.take(self._episode, steps)
        t = np.take(self._t, steps)
        lengths = np.take(self._length, steps)
        rows = np.full(batch, NO_ROW, dtype=np.int64)
        # One vectorised draw per strategy (at most 8), never one per sample.
        for code, name in enumerate(self.strategy_names):
            sel = np.flatnonzero(codes == code)
            if not len(sel) or name == "original":
                continue
            if name == "random":
                rows[sel] = self.rng.integers(0, len(self._achieved), size=len(sel))
            else:
                j = self._positions(name, t[sel], lengths[sel])
                rows[sel] = state_rows(ds, episodes[sel], j)
        goals = np.take(self._achieved, np.maximum(rows, 0), axis=0)  # take: much faster than [] on [N, G]
        original = rows == NO_ROW
        if original.any():
            goals[original] = self._desired[steps[original]]
        return GoalSample(goals, rows, codes, self.strategy_names)

    def sample_goals(self, step_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(goals [B, G], goal_state_rows [B])``; rows index ``states_with_finals``, -1 = original."""
        s = self.sample(step_indices)
        return s.goals, s.goal_rows

    # ------------------------------------------------------------------ transitions
    def relabel(self, step_indices: np.ndarray) -> RelabelledBatch:
        """Transitions at ``step_indices`` with freshly drawn goals, rewards and terminations."""
        if self.reward_fn is None:
            raise RelabelError("GoalSampler.relabel needs a reward_fn, e.g. threshold_reward(0.05)")
        goal = self.sample(step_indices)
        steps = self._check_steps(step_indices)
        ds = self.dataset
        next_rows = ds.next_index[steps]
        obs, next_obs = {}, {}
        for key in ds.observation_space.spaces:
            path = f"observations/{key}"
            obs[key] = ds.arrays[path][steps]
            next_obs[key] = ds.states_with_finals(path)[next_rows]
        obs[DESIRED_KEY] = goal.goals.astype(obs[DESIRED_KEY].dtype, copy=False)
        next_obs[DESIRED_KEY] = obs[DESIRED_KEY].copy()
        reward, success = compute_goal_reward(self.reward_fn, next_obs[ACHIEVED_KEY], obs[DESIRED_KEY],
                                              goal_rows=goal.goal_rows, step_rows=steps, next_rows=next_rows)
        terminations = ds.terminations[steps].copy()
        if self.terminate_on_success:
            terminations |= success
        return RelabelledBatch(
            observations=obs, next_observations=next_obs, actions=ds.actions[steps], rewards=reward.astype(np.float32),
            terminations=terminations, truncations=ds.truncations[steps].copy(), success=success,
            goal_rows=goal.goal_rows, step_indices=steps, strategy=goal.strategy, strategy_names=self.strategy_names)


def compute_goal_reward(reward_fn: GoalRewardFn, achieved_goal: np.ndarray, desired_goal: np.ndarray, *,
                        goal_rows: np.ndarray, step_rows: np.ndarray, next_rows: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Call ``reward_fn`` (passing state rows if it asks for them) and check its output."""
    if getattr(reward_fn, "needs_state_rows", False):
        reward, success = reward_fn(achieved_goal, desired_goal, goal_rows=goal_rows, step_rows=step_rows,
                                    next_rows=next_rows)
    else:
        reward, success = reward_fn(achieved_goal, desired_goal)
    batch = len(achieved_goal)
    reward = np.asarray(reward, dtype=np.float64).reshape(-1)
    success = np.asarray(success).reshape(-1).astype(bool)
    if reward.shape != (batch,) or success.shape != (batch,):
        raise RelabelError(f"goal reward function returned {reward.shape} rewards and {success.shape} success flags "
                           f"for a batch of {batch}")
    if not np.isfinite(reward).all():
        raise RelabelError("goal reward function returned non-finite rewards")
    return reward, success


# ====================================================================== re-segmenting episodes
def _resegment(dataset: Dataset, steps: dict[str, np.ndarray], piece_end: np.ndarray,
               next_override: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Arrays of a dataset with the same N steps cut into episodes ending where ``piece_end``.

    ``piece_end`` must include every original episode end. The final state of each piece is
    the exact next state of its last step (``next_override[path]`` gives per-step next
    values that differ from the parent's, e.g. a relabelled goal). Steps are never dropped.
    """
    ends = np.flatnonzero(piece_end).astype(np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    arrays = dict(steps)
    arrays["episodes/start"] = starts
    arrays["episodes/length"] = ends - starts + 1
    arrays["episodes/source"] = dataset.episode_sources[dataset.episode_of_step[ends]].astype(np.int32)
    next_rows = dataset.next_index[ends]
    for path in steps:
        if not fmt.is_state_path(path):
            continue
        if next_override and path in next_override:
            arrays[fmt.final_path(path)] = np.asarray(next_override[path])[ends]
        else:
            arrays[fmt.final_path(path)] = dataset.states_with_finals(path)[next_rows]
    return arrays


def _episode_end_mask(dataset: Dataset) -> np.ndarray:
    mask = np.zeros(dataset.num_steps, dtype=bool)
    mask[dataset.episode_starts + dataset.episode_lengths - 1] = True
    return mask


def _derived(dataset: Dataset, arrays: dict[str, np.ndarray], *, dataset_id: str, recipe: dict) -> Dataset:
    meta = replace(dataset.metadata, dataset_id=dataset_id, recipe=recipe, checksums={})
    return Dataset(arrays, meta, path=None)


# ====================================================================== materialised goal relabelling
def relabel_dataset(
    dataset: Dataset,
    strategies: Mapping[str, float],
    *,
    reward_fn: GoalRewardFn,
    seed: int = 0,
    gamma: float = 0.99,
    terminate_on_success: bool = False,
    dataset_id: str | None = None,
) -> Dataset:
    """A copy of ``dataset`` in which every step has one hindsight goal (drawn once, seeded).

    Every step keeps its observation, action and next state; ``observations/desired_goal``
    holds its goal, ``rewards`` the reward of s_{t+1} against it, and new step arrays
    ``infos/success`` (bool) and ``infos/goal_row`` (row of the goal state in the *parent*
    dataset's ``states_with_finals``, -1 for ``original``) record the outcome.

    Episodes are split so that the stored data stays exactly right; no step is dropped:

    * The format derives the next observation of step t from row t + 1. If steps t and
      t + 1 got different goals, that row carries the wrong goal for step t, so the
      episode is cut after step t, marked *truncated* (bootstrap from the next state),
      and the piece's final observation is s_{t+1} with step t's goal. Where consecutive
      steps share a goal (``final``, ``original``) episodes stay whole.
    * With ``terminate_on_success`` a step that reaches its goal is *terminated* and the
      episode is cut after it too; the following steps, still valid transitions, start a
      new episode at s_{t+1}. Truncating the episode there instead would throw data away,
      and keeping stored terminations would hide true goal terminations from algorithms
      that read only ``terminations``. Stored terminations stay terminations (true MDP
      ends whatever the goal). Without the option, terminations are as stored.

    Unchanged per-step arrays are shared with ``dataset``, not copied.
    """
    sampler = GoalSampler(dataset, strategies, gamma=gamma, reward_fn=reward_fn,
                          terminate_on_success=terminate_on_success, seed=seed)
    n = dataset.num_steps
    batch = sampler.relabel(np.arange(n, dtype=np.int64))
    goals = batch.goals
    original_end = _episode_end_mask(dataset)
    piece_end = original_end.copy()
    flat_goals = goals.reshape(n, -1)
    piece_end[:-1] |= (flat_goals[1:] != flat_goals[:-1]).any(axis=1)  # goal changes after step t
    terminations = batch.terminations
    piece_end |= terminations
    # A cut that is not a termination is a data cut: bootstrap from the (exact) next state.
    truncations = (piece_end & ~terminations) | (batch.truncations & original_end)

    steps = {p: a for p, a in dataset.arrays.items() if not p.startswith(fmt.EPISODE_GROUP + "/")}
    desired_path = f"observations/{DESIRED_KEY}"
    steps[desired_path] = goals
    steps["rewards"] = batch.rewards
    steps["terminations"] = terminations
    steps["truncations"] = truncations
    steps[f"{fmt.INFO_GROUP}/success"] = batch.success
    steps[f"{fmt.INFO_GROUP}/goal_row"] = batch.goal_rows
    # The next desired_goal of every step is its own goal.
    arrays = _resegment(dataset, steps, piece_end, next_override={desired_path: goals})

    parent = dataset.metadata.dataset_id
    recipe = {
        "kind": "hindsight_goal_relabel",
        "parent": parent,
        "parent_recipe": dataset.metadata.recipe,
        "strategies": dict(zip(sampler.strategy_names, (float(p) for p in sampler.proportions))),
        "seed": seed,
        "gamma": float(gamma),
        "terminate_on_success": bool(terminate_on_success),
        "reward": _spec_of(reward_fn),
        "episodes_split": "after every goal change (truncated) and every success (terminated)"
                          if terminate_on_success else "after every goal change (truncated)",
    }
    return _derived(dataset, arrays, dataset_id=dataset_id or f"{parent}+goals-s{seed}", recipe=recipe)


# ====================================================================== task reward relabelling
class TransitionView:
    """Read-only view of stored transitions for task reward functions (arrays built lazily).

    ``observations`` / ``next_observations`` are arrays (dicts for Dict spaces);
    ``sim_state`` / ``next_sim_state`` map names (``qpos``, ``qvel``...) to arrays. Next
    values come from ``Dataset.next_state``, so they are exact at episode ends.
    """

    def __init__(self, dataset: Dataset, steps: np.ndarray | None = None):
        self.dataset = dataset
        self.steps = None if steps is None else np.asarray(steps, dtype=np.int64)

    def __len__(self) -> int:
        return self.dataset.num_steps if self.steps is None else len(self.steps)

    def _take(self, arr: np.ndarray) -> np.ndarray:
        return arr if self.steps is None else arr[self.steps]

    def _next(self, path: str) -> np.ndarray:
        rows = self.dataset.next_index if self.steps is None else self.dataset.next_index[self.steps]
        return self.dataset.states_with_finals(path)[rows]

    def _obs_paths(self) -> dict[str | None, str]:
        ds = self.dataset
        if ds.is_dict_observation:
            return {k: f"observations/{k}" for k in ds.observation_space.spaces}
        return {None: "observations"}

    @cached_property
    def observations(self) -> np.ndarray | dict[str, np.ndarray]:
        paths = self._obs_paths()
        if None in paths:
            return self._take(self.dataset.arrays["observations"])
        return {k: self._take(self.dataset.arrays[p]) for k, p in paths.items()}

    @cached_property
    def next_observations(self) -> np.ndarray | dict[str, np.ndarray]:
        paths = self._obs_paths()
        if None in paths:
            return self._next("observations")
        return {k: self._next(p) for k, p in paths.items()}

    @cached_property
    def actions(self) -> np.ndarray:
        return self._take(self.dataset.actions)

    @cached_property
    def rewards(self) -> np.ndarray:
        return self._take(self.dataset.rewards)

    @cached_property
    def terminations(self) -> np.ndarray:
        return self._take(self.dataset.terminations)

    @cached_property
    def truncations(self) -> np.ndarray:
        return self._take(self.dataset.truncations)

    def _sim_paths(self) -> list[str]:
        return [p for p in self.dataset.arrays if p.startswith("sim_state/")]

    @cached_property
    def sim_state(self) -> dict[str, np.ndarray]:
        return {p.split("/", 1)[1]: self._take(self.dataset.arrays[p]) for p in self._sim_paths()}

    @cached_property
    def next_sim_state(self) -> dict[str, np.ndarray]:
        return {p.split("/", 1)[1]: self._next(p) for p in self._sim_paths()}

    def require_sim_state(self, name: str, who: str) -> None:
        if f"sim_state/{name}" not in self.dataset.arrays:
            raise RelabelError(
                f"{who} needs sim_state/{name}, which dataset {self.dataset.metadata.dataset_id!r} does not store; "
                "rebuild it with the simulator state recorded")


class TaskRewardFn(Protocol):
    """``(batch: TransitionView) -> rewards [N]`` for every transition of the view."""

    def __call__(self, batch: TransitionView) -> np.ndarray:
        ...


@dataclass(frozen=True)
class HalfCheetahVelocityReward:
    """HalfCheetahVel: ``-|v - goal_velocity| - ctrl_cost * |a|^2`` with v from stored qpos.

    v = (qpos'[0] - qpos[0]) / dt is exactly how HalfCheetah-v5 computes its
    ``x_velocity``; dt = frame_skip * timestep = 5 * 0.01 = 0.05 for HalfCheetah-v5.
    """

    goal_velocity: float
    ctrl_cost: float = 0.05
    dt: float = 0.05

    def velocity(self, batch: TransitionView) -> np.ndarray:
        batch.require_sim_state("qpos", "halfcheetah_velocity_reward")
        x0 = batch.sim_state["qpos"][:, 0].astype(np.float64)
        x1 = batch.next_sim_state["qpos"][:, 0].astype(np.float64)
        return (x1 - x0) / self.dt

    def __call__(self, batch: TransitionView) -> np.ndarray:
        actions = np.asarray(batch.actions, dtype=np.float64).reshape(len(batch), -1)
        return -np.abs(self.velocity(batch) - self.goal_velocity) - self.ctrl_cost * np.sum(actions**2, axis=1)

    def spec(self) -> dict:
        return {"kind": "halfcheetah_velocity", "goal_velocity": self.goal_velocity,
                "ctrl_cost": self.ctrl_cost, "dt": self.dt}


def halfcheetah_velocity_reward(goal_velocity: float, ctrl_cost: float = 0.05, dt: float = 0.05
                                ) -> HalfCheetahVelocityReward:
    """HalfCheetahVel task reward (meta-RL); ``dt`` defaults to HalfCheetah-v5's 0.05 s."""
    if not dt > 0:
        raise RelabelError(f"dt must be > 0, got {dt}")
    return HalfCheetahVelocityReward(float(goal_velocity), float(ctrl_cost), float(dt))


def angle_normalize(x: np.ndarray) -> np.ndarray:
    """Wrap angles to [-pi, pi)."""
    return ((x + np.pi) % (2 * np.pi)) - np.pi


@dataclass(frozen=True)
class PendulumTargetAngleReward:
    """Pendulum-v1's cost around a target angle instead of upright (target 0 = Pendulum-v1).

    reward = -(angle_normalize(theta - target)^2 + 0.1 thetadot^2 + 0.001 u^2), with theta
    and thetadot of the state *before* the action (as Pendulum-v1 computes its cost), read
    from observations [cos theta, sin theta, thetadot], and u the action clipped to
    [-max_torque, max_torque] like the environment does.
    """

    target_angle: float
    max_torque: float = 2.0

    def __call__(self, batch: TransitionView) -> np.ndarray:
        obs = np.asarray(batch.observations, dtype=np.float64)
        theta = np.arctan2(obs[:, 1], obs[:, 0])
        thetadot = obs[:, 2]
        u = np.clip(np.asarray(batch.actions, dtype=np.float64).reshape(len(batch), -1)[:, 0],
                    -self.max_torque, self.max_torque)
        return -(angle_normalize(theta - self.target_angle) ** 2 + 0.1 * thetadot**2 + 0.001 * u**2)

    def spec(self) -> dict:
        return {"kind": "pendulum_target_angle", "target_angle": self.target_angle, "max_torque": self.max_torque}


def pendulum_target_angle_reward(target_angle: float) -> PendulumTargetAngleReward:
    """Pendulum-v1 reward measured from ``target_angle`` (radians; 0 = upright, the standard task)."""
    if not math.isfinite(target_angle):
        raise RelabelError(f"target_angle must be finite, got {target_angle}")
    return PendulumTargetAngleReward(float(target_angle))


def relabel_task(
    dataset: Dataset,
    reward_fn: TaskRewardFn,
    *,
    task_id: int,
    dataset_id: str | None = None,
    terminations_fn: Callable[[TransitionView], np.ndarray] | None = None,
) -> Dataset:
    """A copy of ``dataset`` with every reward recomputed by ``reward_fn`` (one vectorised call).

    ``task_id`` becomes the per-step ``task_id`` array and the recipe records the task.
    Terminations are kept as stored unless ``terminations_fn(view) -> bool [N]`` gives the
    new task's own (it replaces the stored ones; OR them in yourself to keep them). A new
    termination inside an episode cuts the episode after that step (the rest starts a new
    episode at the next state, no step is dropped); an original episode end that the new
    task does not terminate becomes a truncation, since the data simply stops there.
    Unchanged per-step arrays are shared with ``dataset``, not copied.
    """
    task_id = int(task_id)
    if not np.iinfo(np.int32).min <= task_id <= np.iinfo(np.int32).max:
        raise RelabelError(f"task_id {task_id} does not fit int32")
    n = dataset.num_steps
    view = TransitionView(dataset)
    rewards = np.asarray(reward_fn(view), dtype=np.float64).reshape(-1)
    if rewards.shape != (n,):
        raise RelabelError(f"task reward function returned {rewards.shape} rewards for {n} steps")
    if not np.isfinite(rewards).all():
        raise RelabelError(f"task reward function returned non-finite rewards at step "
                           f"{int(np.flatnonzero(~np.isfinite(rewards))[0])}")
    steps = {p: a for p, a in dataset.arrays.items() if not p.startswith(fmt.EPISODE_GROUP + "/")}
    steps["rewards"] = rewards.astype(np.float32)
    steps["task_id"] = np.full(n, task_id, dtype=np.int32)
    if terminations_fn is None:
        arrays = {**dataset.arrays, **steps}
    else:
        terminations = np.asarray(terminations_fn(view)).reshape(-1).astype(bool)
        if terminations.shape != (n,):
            raise RelabelError(f"terminations_fn returned {terminations.shape} flags for {n} steps")
        original_end = _episode_end_mask(dataset)
        steps["terminations"] = terminations
        steps["truncations"] = (original_end & ~terminations) | (dataset.truncations & original_end)
        arrays = _resegment(dataset, steps, original_end | terminations)
    parent = dataset.metadata.dataset_id
    recipe = {
        "kind": "task_relabel",
        "parent": parent,
        "parent_recipe": dataset.metadata.recipe,
        "task_id": task_id,
        "reward": _spec_of(reward_fn),
        "terminations": _spec_of(terminations_fn) if terminations_fn is not None else "as stored",
    }
    return _derived(dataset, arrays, dataset_id=dataset_id or f"{parent}+task-{task_id}", recipe=recipe)


def relabel_for_task(dataset: Dataset, task: str, *, task_id: int = 0, dataset_id: str | None = None) -> Dataset:
    """A copy of ``dataset`` with the rewards of the registered task ``task`` (a name or Gymnasium id of
    ``offbench.envs.tasks``), recomputed from the stored transitions by the task's ``relabel_reward``
    (:func:`relabel_task`; terminations as stored: the tasks that have one never end an episode early).
    E.g. ``relabel_for_task(load_dataset("explore/point-plane/metra-v0"), "point-plane-goal-top-right")``
    pays 1 on every step whose next position (``sim_state/state``) lies within 1 of (9, 9)."""
    from offbench.envs.tasks import TASKS, get_task

    found = get_task(task)
    if found.relabel_reward is None:
        able = sorted(name for name, t in TASKS.items() if t.relabel_reward is not None)
        raise RelabelError(f"task {found.name!r} has no reward that offbench recomputes from stored data; tasks "
                           f"that have one: {', '.join(able)}")
    parent = dataset.metadata.dataset_id
    return relabel_task(dataset, found.relabel_reward, task_id=task_id,
                        dataset_id=dataset_id or f"{parent}+{found.name}")


__all__ = [
    "GOAL_STRATEGIES", "EnvComputeReward", "GoalRewardFn", "GoalSample", "GoalSampler", "HalfCheetahVelocityReward",
    "IndexReward", "PendulumTargetAngleReward", "RelabelError", "RelabelledBatch", "TaskRewardFn", "ThresholdReward",
    "TransitionView", "angle_normalize", "compute_goal_reward", "env_compute_reward", "halfcheetah_velocity_reward",
    "index_reward", "pendulum_target_angle_reward", "relabel_dataset", "relabel_for_task", "relabel_task",
    "state_positions", "state_rows", "threshold_reward",
]
