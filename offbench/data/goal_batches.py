"""Goal-conditioned training batches: OGBench's goal sampling on top of :class:`relabel.GoalSampler`.

One batch serves every goal-conditioned method OGBench benchmarks (GCBC, GCIVL, GCIQL, QRL, CRL,
HIQL); each reads the fields it needs (:class:`GoalBatch`). For the transition at step ``t`` of
an episode with states ``s_0 .. s_T`` (``s_T`` its final observation):

- **value goals** mix the current state ``s_t``, a future state ``s_j`` of the same episode
  (geometric offset: ``j = min(t + k, T)`` with ``k ~ Geometric(1 - discount)``, ``k >= 1``; or
  uniform in ``[t + 1, T]``) and a random state of the dataset;
- **actor goals** mix the same kinds (OGBench: a uniform future state; on stitch data half future,
  half random, except GCBC);
- **reward and mask** (OGBench's ``gc_negative`` convention): ``success = (goal is s_t)``,
  ``reward = success - 1`` (0 at the goal, -1 elsewhere) and ``mask = 1 - success``, so a value
  target ``r + discount * mask * V(s_{t+1}, g)`` stops at the goal. A stored termination also
  zeroes the mask (a true MDP end; PointMaze data has none). ``success_at="next"`` compares the
  goal with ``s_{t+1}`` instead (offbench's hindsight convention, :func:`relabel.index_reward`);
  OGBench's mixes of current-state goals only make sense with ``"current"``, the default;
- **HIQL**: ``low_actor_goals`` is the state ``subgoal_steps`` ahead, ``s_min(t + subgoal_steps, T)``;
  ``high_actor_targets`` is ``s_min(t + subgoal_steps, j)`` for an actor goal ``s_j`` of the same
  episode and ``s_min(t + subgoal_steps, T)`` for a random actor goal (OGBench's ``HGCDataset``);
  ``actor_goals`` are HIQL's high-level goals.

A goal is the ``achieved_goal`` of the goal state (for PointMaze: its position, which is also the
observation). Differences from OGBench's sampler, all deliberate: future goals may be the
episode's final observation ``s_T`` (offbench keeps it; OGBench's files drop it, so its goals
stop at ``s_{T-1}``), random goals are drawn from every stored state (finals included), and
uniform future goals are exactly uniform on ``[t + 1, T]`` (OGBench's rounding gives the two
end points half weight).

Speed: goals, rewards and subgoals for ``chunk_batches`` batches are drawn in one vectorised pass
and served as prebuilt views; one batch of 256 costs 70 to 95 microseconds of CPU time on this
project's machine (``scripts/bench_data.py --goal-only``, docs/goal-conditioned.md). The batch stream is a function of ``(seed, batch_size,
chunk_batches)``; :attr:`GoalBatchSampler.generator` saves and restores it exactly, also in the
middle of a chunk, through ``offbench.train.fit``'s checkpoints.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import Any, Literal, Mapping

import numpy as np
import torch
from torch import Tensor

from offbench.data.dataset import Dataset
from offbench.data.relabel import ACHIEVED_KEY, GoalSampler, compute_goal_reward, index_reward
from offbench.errors import OffbenchError

OBSERVATION_KEY = "observation"
#: Goal kinds, in the order of their codes in ``GoalBatch.value_goal_kinds`` / ``actor_goal_kinds``.
GOAL_KINDS = ("current", "future", "random")
METHODS = ("gcbc", "gcivl", "gciql", "qrl", "crl", "hiql")
HIQL_SUBGOAL_STEPS = 25


class GoalBatchError(OffbenchError, ValueError):
    """A goal-batch configuration or dataset that cannot give goal-conditioned batches."""


@dataclass(frozen=True)
class GoalBatchConfig:
    """Where goals come from, as fractions per goal kind (OGBench's ``*_p_curgoal``,
    ``*_p_trajgoal``, ``*_p_randomgoal`` and ``*_geom_sample``). Defaults: GCIVL / GCIQL / HIQL on
    navigate data. :meth:`ogbench` gives each method's defaults."""

    value_current: float = 0.2
    value_future: float = 0.5
    value_random: float = 0.3
    value_geometric: bool = True
    actor_current: float = 0.0
    actor_future: float = 1.0
    actor_random: float = 0.0
    actor_geometric: bool = False
    #: the geometric offsets' ``1 - p`` (OGBench: the method's discount, 0.99; 0.995 on giant mazes)
    discount: float = 0.99
    #: HIQL's subgoal horizon; 0 leaves ``low_actor_goals`` and ``high_actor_targets`` out
    subgoal_steps: int = 0
    success_at: Literal["current", "next"] = "current"

    def __post_init__(self):
        for prefix in ("value", "actor"):
            parts = [getattr(self, f"{prefix}_{kind}") for kind in GOAL_KINDS]
            if not all(isinstance(p, (int, float)) and math.isfinite(p) and p >= 0 for p in parts):
                raise GoalBatchError(f"{prefix} goal fractions must be finite and >= 0, got "
                                     f"{dict(zip(GOAL_KINDS, parts))}")
            if abs(sum(parts) - 1.0) > 1e-9:
                raise GoalBatchError(f"{prefix} goal fractions must sum to 1, got {dict(zip(GOAL_KINDS, parts))} "
                                     f"(sum {sum(parts)})")
        if not 0.0 <= self.discount < 1.0:
            raise GoalBatchError(f"discount must be in [0, 1), got {self.discount}")
        if not isinstance(self.subgoal_steps, int) or self.subgoal_steps < 0:
            raise GoalBatchError(f"subgoal_steps must be an integer >= 0, got {self.subgoal_steps!r}")
        if self.success_at not in ("current", "next"):
            raise GoalBatchError(f"success_at must be 'current' (OGBench) or 'next', got {self.success_at!r}")

    @classmethod
    def ogbench(cls, method: str, *, stitch: bool = False, discount: float = 0.99) -> "GoalBatchConfig":
        """OGBench's defaults for ``method`` (REFERENCE §7, ``impls/agents/*.py`` and
        ``hyperparameters.sh``): value goals current / future (geometric) / random = GCIVL, GCIQL,
        HIQL 0.2 / 0.5 / 0.3, CRL 0 / 1 / 0, QRL 0 / 0 / 1 (GCBC has no value); actor goals a
        uniform future state, on stitch data 0.5 future + 0.5 random (not GCBC); HIQL subgoals 25
        steps ahead; discount 0.99 (0.995 on the giant mazes)."""
        method = method.lower()
        if method not in METHODS:
            raise GoalBatchError(f"unknown goal-conditioned method {method!r}; OGBench's are {', '.join(METHODS)}")
        value = {"gcbc": (0.0, 1.0, 0.0), "qrl": (0.0, 0.0, 1.0), "crl": (0.0, 1.0, 0.0)}.get(method, (0.2, 0.5, 0.3))
        actor_random = 0.5 if stitch and method != "gcbc" else 0.0
        return cls(value_current=value[0], value_future=value[1], value_random=value[2],
                   value_geometric=method != "gcbc",
                   actor_current=0.0, actor_future=1.0 - actor_random, actor_random=actor_random,
                   actor_geometric=False, discount=discount,
                   subgoal_steps=HIQL_SUBGOAL_STEPS if method == "hiql" else 0)

    @classmethod
    def for_dataset(cls, method: str, dataset: Dataset | str) -> "GoalBatchConfig":
        """:meth:`ogbench` with ``stitch`` and ``discount`` read from a dataset (or its id):
        stitch data when its recipe's ``dataset_type`` (or id) says so, 0.995 on giant mazes."""
        dataset_id = dataset if isinstance(dataset, str) else dataset.metadata.dataset_id
        recipe = {} if isinstance(dataset, str) else dataset.metadata.recipe
        kind = recipe.get("dataset_type") or ("stitch" if "stitch" in dataset_id.split("/")[-1] else "navigate")
        giant = recipe.get("maze") == "giant" or "giant" in dataset_id
        return cls.ogbench(method, stitch=kind == "stitch", discount=0.995 if giant else 0.99)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class GoalBatch:
    """B goal-conditioned transitions (torch tensors on the sampler's device, batch first).

    ``observations`` / ``next_observations`` [B, D] and ``actions`` [B, A] as stored (the
    ``observation`` key of the Dict observations; the next one is exact at episode ends);
    ``value_goals`` / ``actor_goals`` [B, G]; ``rewards`` / ``masks`` [B] float32 (module
    docstring); ``low_actor_goals`` / ``high_actor_targets`` [B, G] for HIQL (None without
    ``subgoal_steps``); ``value_goal_kinds`` / ``actor_goal_kinds`` [B] int8 codes into
    :data:`GOAL_KINDS`; ``steps`` [B] int64 step rows; ``value_goal_rows`` / ``actor_goal_rows``
    [B] int64 rows of the goal states in ``Dataset.states_with_finals``.
    """

    observations: Tensor
    next_observations: Tensor
    actions: Tensor
    value_goals: Tensor
    rewards: Tensor
    masks: Tensor
    actor_goals: Tensor
    low_actor_goals: Tensor | None
    high_actor_targets: Tensor | None
    value_goal_kinds: Tensor
    actor_goal_kinds: Tensor
    steps: Tensor
    value_goal_rows: Tensor
    actor_goal_rows: Tensor

    @property
    def high_actor_goals(self) -> Tensor:
        """HIQL's high-level goals: the actor goals."""
        return self.actor_goals


_ARRAY_FIELDS = tuple(f.name for f in fields(GoalBatch))


class _StreamState:
    """The sampler's random stream behind the ``torch.Generator`` interface that
    ``offbench.train.fit`` checkpoints (``get_state()`` / ``set_state(tensor)``): the numpy
    generator's state at the start of the current chunk and the next batch's place in it."""

    def __init__(self, sampler: "GoalBatchSampler"):
        self._sampler = sampler

    def get_state(self) -> Tensor:
        s = self._sampler
        text = json.dumps({"bit_generator": s._chunk_start, "position": s._position})
        return torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8).clone()

    def set_state(self, state: Tensor) -> None:
        data = json.loads(bytes(state.to(torch.uint8).cpu().numpy()).decode())
        self._sampler._restore(data["bit_generator"], int(data["position"]))


class GoalBatchSampler:
    """Goal-conditioned batches from a dataset with Dict observations ``observation``,
    ``achieved_goal``, ``desired_goal``; ``sample()`` -> :class:`GoalBatch`.

    Value and actor goals are drawn by two :class:`relabel.GoalSampler` s sharing this sampler's
    one ``numpy.random.Generator`` (seeded by ``seed``), which also draws the steps.
    """

    def __init__(self, dataset: Dataset, config: GoalBatchConfig | None = None, batch_size: int = 256, *,
                 seed: int = 0, device: str | torch.device = "cpu", chunk_batches: int = 64):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise GoalBatchError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if not isinstance(chunk_batches, int) or chunk_batches < 1:
            raise GoalBatchError(f"chunk_batches must be an integer >= 1, got {chunk_batches!r}")
        config = config or GoalBatchConfig()
        if not isinstance(config, GoalBatchConfig):
            raise GoalBatchError(f"config must be a GoalBatchConfig, got {type(config).__name__}")
        keys = set(dataset.observation_space.spaces) if dataset.is_dict_observation else set()
        if OBSERVATION_KEY not in keys:
            raise GoalBatchError(
                f"dataset {dataset.metadata.dataset_id!r} has no '{OBSERVATION_KEY}' in Dict observations "
                f"(keys: {sorted(keys) or 'not a Dict space'}); goal-conditioned batches need observation, "
                "achieved_goal and desired_goal")
        self.dataset = dataset
        self.config = config
        self.batch_size = batch_size
        self.chunk_batches = chunk_batches
        self.seed = int(seed)
        self.device = torch.device(device)
        self.rng = np.random.default_rng(self.seed)
        # GoalSampler takes its generator through numpy.random.default_rng(seed), which hands back
        # a Generator it is given: both samplers and the step draws share one stream.
        self._value = GoalSampler(dataset, self._strategies("value"), gamma=config.discount, seed=self.rng)
        self._actor = GoalSampler(dataset, self._strategies("actor"), gamma=config.discount, seed=self.rng)
        self._value_kind = self._kind_codes(self._value)
        self._actor_kind = self._kind_codes(self._actor)
        self._reward = index_reward(match=config.success_at)

        n = dataset.num_steps
        path = f"observations/{OBSERVATION_KEY}"
        self._observations = dataset.arrays[path]
        self._observations_with_finals = dataset.states_with_finals(path)
        self._goals_with_finals = dataset.states_with_finals(f"observations/{ACHIEVED_KEY}")
        self._next_index = dataset.next_index
        episode = dataset.episode_of_step
        self._t = np.arange(n, dtype=np.int64) - dataset.episode_starts[episode]
        self._length = dataset.episode_lengths[episode].astype(np.int64)
        self._final_row = n + episode
        self._terminations = dataset.terminations
        self._num_steps = n
        self._batches: list[GoalBatch] = []
        self._chunk_start = self.rng.bit_generator.state
        self._position = chunk_batches  # no chunk drawn yet
        self._stream = _StreamState(self)

    # ------------------------------------------------------------------ set-up helpers
    def _strategies(self, prefix: str) -> dict[str, float]:
        c = self.config
        geometric = getattr(c, f"{prefix}_geometric")
        weights = {"current": getattr(c, f"{prefix}_current"),
                   "geometric" if geometric else "future": getattr(c, f"{prefix}_future"),
                   "random": getattr(c, f"{prefix}_random")}
        return {name: w for name, w in weights.items() if w > 0}

    @staticmethod
    def _kind_codes(sampler: GoalSampler) -> np.ndarray:
        kind = {"current": 0, "future": 1, "geometric": 1, "random": 2}
        return np.array([kind[name] for name in sampler.strategy_names], dtype=np.int8)

    # ------------------------------------------------------------------ drawing
    # Gathers use np.take(..., axis=0): for [N, 2] arrays it is several times faster than
    # fancy indexing, which is what makes a batch cost tens of microseconds.
    def _row_of(self, steps: np.ndarray, t: np.ndarray, length: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Row in ``states_with_finals`` of state ``j`` (0..T) of each step's episode."""
        return np.where(j < length, steps + (j - t), np.take(self._final_row, steps))

    def draw_arrays(self, count: int) -> dict[str, np.ndarray | None]:
        """``count`` goal-conditioned transitions as numpy arrays (one vectorised pass)."""
        steps = self.rng.integers(0, self._num_steps, size=count)
        value = self._value.sample(steps)
        actor = self._actor.sample(steps)
        next_rows = np.take(self._next_index, steps)
        _, success = compute_goal_reward(self._reward, value.goals, value.goals, goal_rows=value.goal_rows,
                                         step_rows=steps, next_rows=next_rows)
        actor_kinds = np.take(self._actor_kind, actor.strategy)
        out = {
            "observations": np.take(self._observations, steps, axis=0),
            "next_observations": np.take(self._observations_with_finals, next_rows, axis=0),
            "actions": np.take(self.dataset.actions, steps, axis=0),
            "value_goals": value.goals,
            "rewards": success.astype(np.float32) - np.float32(1.0),
            "masks": (~(success | np.take(self._terminations, steps))).astype(np.float32),
            "actor_goals": actor.goals,
            "low_actor_goals": None,
            "high_actor_targets": None,
            "value_goal_kinds": np.take(self._value_kind, value.strategy),
            "actor_goal_kinds": actor_kinds,
            "steps": steps,
            "value_goal_rows": value.goal_rows,
            "actor_goal_rows": actor.goal_rows,
        }
        s = self.config.subgoal_steps
        if s:
            t, length = np.take(self._t, steps), np.take(self._length, steps)
            ahead = np.minimum(t + s, length)
            out["low_actor_goals"] = np.take(self._goals_with_finals, self._row_of(steps, t, length, ahead), axis=0)
            # An actor goal from the step's own episode sits at position j; a random one counts as T.
            rows = actor.goal_rows
            position = np.where(rows >= self._num_steps, length, t + (rows - steps))
            position = np.where(actor_kinds == GOAL_KINDS.index("random"), length, position)
            target = self._row_of(steps, t, length, np.minimum(ahead, position))
            out["high_actor_targets"] = np.take(self._goals_with_finals, target, axis=0)
        return out

    def _draw_chunk(self) -> None:
        """Draw the next ``chunk_batches`` batches at once and cut them into batch views."""
        self._chunk_start = self.rng.bit_generator.state
        arrays = self.draw_arrays(self.batch_size * self.chunk_batches)
        # One split per field gives every batch's views in one call; sample() then only hands
        # out a prebuilt batch (slicing 14 tensors per batch would cost more than drawing them).
        parts = {name: (None,) * self.chunk_batches if value is None else
                 torch.from_numpy(np.ascontiguousarray(value)).to(self.device).split(self.batch_size)
                 for name, value in arrays.items()}
        self._batches = [GoalBatch(**{name: parts[name][i] for name in _ARRAY_FIELDS})
                         for i in range(self.chunk_batches)]
        self._position = 0

    def _restore(self, chunk_start: Mapping[str, Any], position: int) -> None:
        if not 0 <= position <= self.chunk_batches:
            raise GoalBatchError(f"saved sampler position {position} is outside a chunk of {self.chunk_batches} "
                                 "batches: the checkpoint was made with other sampler settings")
        self.rng.bit_generator.state = dict(chunk_start)
        if position < self.chunk_batches:
            self._draw_chunk()
        else:
            self._chunk_start = self.rng.bit_generator.state
        self._position = position

    # ------------------------------------------------------------------ the protocol of samplers
    def sample(self) -> GoalBatch:
        """The next batch of ``batch_size`` goal-conditioned transitions."""
        if self._position >= self.chunk_batches:
            self._draw_chunk()
        batch = self._batches[self._position]
        self._position += 1
        return batch

    @property
    def generator(self) -> _StreamState:
        """The random stream, with ``get_state`` / ``set_state`` like a ``torch.Generator``
        (``offbench.train.fit`` saves and restores it in checkpoints)."""
        return self._stream

    def state_dict(self) -> dict[str, Any]:
        return {"generator_state": self._stream.get_state(), "seed": self.seed, "batch_size": self.batch_size,
                "chunk_batches": self.chunk_batches, "config": self.config.to_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in ("batch_size", "chunk_batches"):
            if key in state and state[key] != getattr(self, key):
                raise GoalBatchError(f"the saved sampler had {key} {state[key]}, this one {getattr(self, key)}")
        self._stream.set_state(state["generator_state"])


__all__ = ["GOAL_KINDS", "METHODS", "GoalBatch", "GoalBatchConfig", "GoalBatchError", "GoalBatchSampler"]
