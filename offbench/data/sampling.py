"""Fast, seeded minibatch samplers over an in-memory :class:`~offbench.data.dataset.Dataset`.

* :class:`TransitionSampler`: uniform transitions ``(s, a, r, s', terminated, truncated)``,
  optionally n-step, for TD and behaviour-cloning methods.
* :class:`SegmentSampler`: fixed-length, left-padded trajectory segments with
  returns-to-go and timesteps, for Decision Transformer.

Both build their tensors once at construction so that a batch is one random-index draw
plus one row gather. All float32 per-step fields are packed side by side into a single
contiguous ``[rows, D]`` float32 tensor: gathering 256 rows of it is one
``index_select``, and each batch field is a column-slice *view* of the gathered block
(so fields are not contiguous; call ``.contiguous()`` if an op needs it). Fields of other
dtypes (uint8 images, integer discrete actions, float64 log-probabilities, ...) keep their
dtype in tensors of their own and cost one extra gather each.

Randomness comes only from a ``torch.Generator`` owned by the sampler: two samplers with
the same seed yield identical batch sequences, global RNG state is neither read nor
changed, and ``state_dict()`` / ``load_state_dict()`` resume a stream exactly. The same
seed gives the same stream on the same device type; CPU and CUDA generators differ.

To iterate over whole episodes use ``Dataset.episodes()``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from offbench.data import format as fmt
from offbench.data.dataset import Dataset
from offbench.data.labels import n_step_targets, returns_to_go

# Labels a sampler computes itself rather than reading from the file.
COMPUTED_EXTRAS = ("returns_to_go", "episode_index", "timesteps")


# ---------------------------------------------------------------------- batches
@dataclass
class TransitionBatch:
    """A batch of B transitions (all tensors on the sampler's device).

    * ``observations``, ``next_observations``: [B, ...] in the observation storage dtype,
      or dicts of such tensors for Dict spaces. ``next_observations`` is exact at every
      episode end: the episode's final observation, also after a time-limit truncation.
      For n-step batches it is the observation ``n'`` steps later (see below).
    * ``actions``: [B, ...] in the action storage dtype.
    * ``rewards``: [B] float32; for n-step batches the discounted sum of the ``n'`` rewards.
    * ``terminations``, ``truncations``: [B] float32 0/1. ``terminations`` is 1 where the
      transition (or n-step window) reaches a true MDP end: the TD target is then
      ``rewards + discounts * (1 - terminations) * V(next_observations)``.
    * ``discounts``: [B] float32, ``gamma ** n'`` with ``n' = min(n_step, steps left in the
      episode)``; ``gamma`` everywhere for 1-step batches.
    * ``extras``: the per-step arrays named in the sampler's ``extras``, [B, ...] each.
    """

    observations: Tensor | dict[str, Tensor]
    actions: Tensor
    rewards: Tensor
    next_observations: Tensor | dict[str, Tensor]
    terminations: Tensor
    truncations: Tensor
    discounts: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class SegmentBatch:
    """A batch of B left-padded segments of K steps (all tensors on the sampler's device).

    Real steps fill the *right* end of each row (Decision Transformer's convention, so the
    newest token is always last); ``mask`` marks them with 1 and the padding with 0. Every
    padded entry is 0 in every field.

    * ``observations``: [B, K, ...] (a dict of such tensors for Dict spaces).
    * ``actions``: [B, K, ...].
    * ``rewards``: [B, K] float32.
    * ``returns_to_go``: [B, K] float32, ``labels.returns_to_go(dataset, gamma) / return_scale``.
    * ``timesteps``: [B, K] int64, the step's index within its episode (0 at the first step).
    * ``mask``: [B, K] float32, 1 for real steps and 0 for padding (``mask.bool()`` for
      attention masks).
    """

    observations: Tensor | dict[str, Tensor]
    actions: Tensor
    rewards: Tensor
    returns_to_go: Tensor
    timesteps: Tensor
    mask: Tensor


# ---------------------------------------------------------------------- row table
class _RowTable:
    """Named per-row arrays stored for fast gathering of whole rows.

    float32 fields are packed side by side into one contiguous float32 tensor ``[R, D]``;
    every other field is kept as its own tensor in its own dtype. With ``pad_row=True`` an
    all-zero row is appended at index R, so gathering index R yields zeros in every field
    (the padding of :class:`SegmentSampler`).
    """

    def __init__(self, fields: Mapping[str, np.ndarray], device: torch.device, *, pad_row: bool = False):
        rows = {len(a) for a in fields.values()}
        if len(rows) != 1:
            raise ValueError(f"fields have different row counts: { {k: len(a) for k, a in fields.items()} }")
        (num_rows,) = rows
        total = num_rows + int(pad_row)
        packed_fields = {k: a for k, a in fields.items() if a.dtype == np.float32}
        width = sum(math.prod(a.shape[1:]) for a in packed_fields.values())
        packed = np.zeros((total, width), dtype=np.float32)
        # (name, first column, last column + 1, element shape) of every packed field.
        self._columns: list[tuple[str, int, int, tuple[int, ...]]] = []
        col = 0
        for name, arr in packed_fields.items():
            w = math.prod(arr.shape[1:])
            packed[:num_rows, col:col + w] = arr.reshape(num_rows, w)
            self._columns.append((name, col, col + w, tuple(arr.shape[1:])))
            col += w
        self.packed = torch.from_numpy(packed).to(device)
        self.separate: dict[str, Tensor] = {}
        for name, arr in fields.items():
            if name in packed_fields:
                continue
            arr = np.ascontiguousarray(arr)
            if pad_row:
                arr = np.concatenate([arr, np.zeros((1, *arr.shape[1:]), dtype=arr.dtype)])
            self.separate[name] = torch.from_numpy(arr).to(device)
        self.num_rows = num_rows
        self.nbytes = self.packed.element_size() * self.packed.nelement() + sum(
            t.element_size() * t.nelement() for t in self.separate.values())

    def gather(self, index: Tensor, lead_shape: tuple[int, ...]) -> dict[str, Tensor]:
        """Every field at the rows ``index`` (1-D), shaped ``[*lead_shape, *element_shape]``."""
        rows = self.packed.index_select(0, index)
        if len(lead_shape) != 1:
            rows = rows.view(*lead_shape, rows.shape[-1])
        out: dict[str, Tensor] = {}
        for name, start, stop, shape in self._columns:
            if not shape:
                out[name] = rows[..., start]
            elif len(shape) == 1:
                out[name] = rows[..., start:stop]
            else:
                out[name] = rows[..., start:stop].unflatten(-1, shape)
        for name, tensor in self.separate.items():
            picked = tensor.index_select(0, index)
            out[name] = picked if len(lead_shape) == 1 else picked.view(*lead_shape, *tensor.shape[1:])
        return out


# ---------------------------------------------------------------------- helpers
def _observation_paths(dataset: Dataset) -> list[str]:
    if dataset.is_dict_observation:
        return [f"observations/{k}" for k in dataset.observation_space.spaces]
    return ["observations"]


def _gather_states(dataset: Dataset, path: str, rows: np.ndarray) -> np.ndarray:
    """``states_with_finals(path)[rows]`` without building (and caching) the concatenation."""
    steps, finals = dataset.arrays[path], dataset.arrays[fmt.final_path(path)]
    out = np.empty((len(rows), *steps.shape[1:]), dtype=steps.dtype)
    inside = rows < len(steps)
    out[inside] = steps[rows[inside]]
    out[~inside] = finals[rows[~inside] - len(steps)]
    return out


def available_extras(dataset: Dataset) -> list[str]:
    """Names a sampler's ``extras`` accepts: the optional per-step arrays of the file
    (``behaviour_log_prob``, ``policy_id``, ``task_id``, ``sim_state/*``, ``infos/*``) and the
    computed labels ``returns_to_go`` (with the sampler's gamma), ``episode_index`` and
    ``timesteps`` (step index within the episode)."""
    stored = sorted(p for p in dataset.step_paths
                    if p not in fmt.REQUIRED_STEP_ARRAYS and not p.startswith("observations"))
    return stored + list(COMPUTED_EXTRAS)


def _extra_array(dataset: Dataset, name: str, gamma: float) -> np.ndarray:
    """The [N, ...] array behind an extras name; KeyError naming the available ones."""
    if name == "returns_to_go":
        return returns_to_go(dataset, gamma).astype(np.float32)
    if name == "episode_index":
        return dataset.episode_of_step
    if name == "timesteps":
        return _timesteps(dataset)
    if name in dataset.arrays and name in available_extras(dataset):
        return dataset.arrays[name]
    raise KeyError(f"unknown extra {name!r} for dataset {dataset.metadata.dataset_id!r}; "
                   f"available: {available_extras(dataset)}")


def _timesteps(dataset: Dataset) -> np.ndarray:
    """Index of every step within its episode, [N] int64."""
    return (np.arange(dataset.num_steps, dtype=np.int64)
            - np.repeat(dataset.episode_starts, dataset.episode_lengths))


def _make_generator(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator


def _maybe_dict(values: dict[str, Tensor], prefix: str, dict_keys: list[str] | None):
    """``values[prefix]``, or ``{key: values[prefix/key]}`` for Dict observations."""
    if dict_keys is None:
        return values[prefix]
    return {k: values[f"{prefix}/{k}"] for k in dict_keys}


# ---------------------------------------------------------------------- transitions
class TransitionSampler:
    """Uniformly random transitions, drawn with replacement; ``sample()`` -> :class:`TransitionBatch`.

    Args:
        dataset: the in-memory dataset.
        batch_size: transitions per batch.
        seed: seed of the sampler's own ``torch.Generator``.
        device: where the tensors live and batches are produced.
        extras: names of extra per-step fields to return in ``batch.extras`` (see
            :func:`available_extras`); an unknown name raises KeyError listing the available ones.
        n_step: 1 for ordinary transitions; n > 1 for n-step returns (see
            :func:`offbench.data.labels.n_step_targets`): ``rewards`` is the discounted sum of
            ``n' = min(n, steps left in the episode)`` rewards, ``next_observations`` the
            state ``n'`` steps later (the final observation if the episode ends first),
            ``discounts`` ``gamma ** n'``, and the flags say whether the window ends the episode.
        gamma: the discount used for ``discounts``, n-step rewards and the
            ``returns_to_go`` extra.

    Memory: the table is built once, in float32 with next observations pre-gathered, so it
    costs ``4 * (2 * obs_dim + action_dim + 4)`` bytes per step (reward, two flags,
    discount) plus float32 extras, plus non-float32 fields at their own size (twice for
    non-float32 observations). For 1M halfcheetah steps (obs 17, action 6) that is
    176 MB, against 98 MB for the dataset's own arrays, which stay untouched.

    Speed: one ``torch.randint`` and one ``index_select``; about 20 us per batch of 256
    on one CPU thread with halfcheetah shapes (``scripts/bench_sampling_core.py``).
    """

    def __init__(self, dataset: Dataset, batch_size: int = 256, *, seed: int = 0,
                 device: str | torch.device = "cpu", extras: Iterable[str] = (),
                 n_step: int = 1, gamma: float = 0.99):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.extras = tuple(extras)
        # Resolve extras first, so a typo fails before the expensive table is built.
        extra_arrays = {name: _extra_array(dataset, name, self.gamma) for name in self.extras}

        targets = n_step_targets(dataset, self.n_step, self.gamma)
        fields: dict[str, np.ndarray] = {}
        for path in _observation_paths(dataset):
            fields["obs" + path[len("observations"):]] = dataset.arrays[path]
            fields["next_obs" + path[len("observations"):]] = _gather_states(dataset, path, targets.next_row)
        fields["actions"] = dataset.actions
        fields["rewards"] = targets.reward.astype(np.float32)
        fields["terminations"] = targets.terminated.astype(np.float32)
        fields["truncations"] = targets.truncated.astype(np.float32)
        fields["discounts"] = targets.discount.astype(np.float32)
        for name, arr in extra_arrays.items():
            fields["extra:" + name] = arr
        del targets
        self._table = _RowTable(fields, self.device)
        self._dict_keys = list(dataset.observation_space.spaces) if dataset.is_dict_observation else None
        self._num_steps = dataset.num_steps
        self._generator = _make_generator(self.seed, self.device)

    @property
    def nbytes(self) -> int:
        """Bytes held by the sampler's tensors."""
        return self._table.nbytes

    def sample_indices(self) -> Tensor:
        """The step indices of the next batch ([B] int64), advancing the generator."""
        return torch.randint(self._num_steps, (self.batch_size,), generator=self._generator,
                             device=self.device)

    def sample(self) -> TransitionBatch:
        """Draw the next batch of ``batch_size`` transitions."""
        return self.batch_at(self.sample_indices())

    def batch_at(self, index: Tensor) -> TransitionBatch:
        """The batch of the given step indices (a 1-D int64 tensor on the sampler's device)."""
        v = self._table.gather(index, (len(index),))
        return TransitionBatch(
            observations=_maybe_dict(v, "obs", self._dict_keys),
            actions=v["actions"],
            rewards=v["rewards"],
            next_observations=_maybe_dict(v, "next_obs", self._dict_keys),
            terminations=v["terminations"],
            truncations=v["truncations"],
            discounts=v["discounts"],
            extras={name: v["extra:" + name] for name in self.extras},
        )

    @property
    def generator(self) -> torch.Generator:
        """The sampler's own random stream (saved and restored by resumable training)."""
        return self._generator

    def state_dict(self) -> dict[str, Any]:
        """The generator state (and the settings it belongs to), for resumable training."""
        return {"generator_state": self._generator.get_state(), "seed": self.seed,
                "batch_size": self.batch_size}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the batch stream exactly where :meth:`state_dict` was taken."""
        self._generator.set_state(state["generator_state"])


# ---------------------------------------------------------------------- segments
class SegmentSampler:
    """Left-padded trajectory segments for Decision Transformer; ``sample()`` -> :class:`SegmentBatch`.

    Each segment starts at a step drawn uniformly from all N steps of the dataset. That
    is exactly DT's scheme: the episode is then chosen with probability proportional to
    its length, and the start is uniform within the episode. The segment takes up to
    ``context_length`` (K) steps from the start, stopping at the episode's end, and is
    padded on the left to K (see :class:`SegmentBatch`).

    Args:
        dataset: the in-memory dataset.
        context_length: K, steps per segment.
        batch_size: segments per batch.
        seed: seed of the sampler's own ``torch.Generator``.
        gamma: discount of the returns-to-go (DT uses 1).
        device: where the tensors live and batches are produced.
        return_scale: returns-to-go are divided by it (DT uses e.g. 1000 for locomotion).

    Gathering is one index grid ``[B, K]`` into a table with an all-zero row appended, so
    padding costs nothing extra and there is no loop over the batch. Memory per step:
    float32 observations, actions, reward, return-to-go and mask, plus int64 timesteps and
    steps-to-episode-end: 120 MB for 1M halfcheetah steps (4 * (17 + 6 + 1 + 1 + 1) + 8 + 8
    bytes per step). Speed: about 53 us per batch of 64 x 20 on one CPU thread.
    """

    def __init__(self, dataset: Dataset, context_length: int = 20, batch_size: int = 64, *,
                 seed: int = 0, gamma: float = 1.0, device: str | torch.device = "cpu",
                 return_scale: float = 1.0):
        if context_length < 1:
            raise ValueError(f"context_length must be >= 1, got {context_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not return_scale > 0:
            raise ValueError(f"return_scale must be > 0, got {return_scale}")
        self.dataset = dataset
        self.context_length = int(context_length)
        self.batch_size = int(batch_size)
        self.gamma = float(gamma)
        self.return_scale = float(return_scale)
        self.seed = int(seed)
        self.device = torch.device(device)

        fields: dict[str, np.ndarray] = {}
        for path in _observation_paths(dataset):
            fields["obs" + path[len("observations"):]] = dataset.arrays[path]
        fields["actions"] = dataset.actions
        fields["rewards"] = np.asarray(dataset.rewards, dtype=np.float32)
        fields["returns_to_go"] = (returns_to_go(dataset, self.gamma) / self.return_scale).astype(np.float32)
        fields["timesteps"] = _timesteps(dataset)
        # A column of ones: gathered, it is the mask, and the zero padding row makes it 0.
        fields["mask"] = np.ones(dataset.num_steps, dtype=np.float32)
        self._table = _RowTable(fields, self.device, pad_row=True)
        self._dict_keys = list(dataset.observation_space.spaces) if dataset.is_dict_observation else None
        self._num_steps = dataset.num_steps
        # Steps from each step to its episode's end, itself included: a segment from t
        # holds min(K, this) real steps.
        ends = dataset.episode_starts + dataset.episode_lengths - 1
        to_end = np.repeat(ends, dataset.episode_lengths) - np.arange(dataset.num_steps) + 1
        self._steps_to_end = torch.from_numpy(to_end.astype(np.int64)).to(self.device)
        self._positions = torch.arange(self.context_length, device=self.device)
        self._generator = _make_generator(self.seed, self.device)

    @property
    def nbytes(self) -> int:
        """Bytes held by the sampler's tensors."""
        return self._table.nbytes + self._steps_to_end.element_size() * self._steps_to_end.nelement()

    def sample_starts(self) -> Tensor:
        """The first step of each segment of the next batch ([B] int64), advancing the generator."""
        return torch.randint(self._num_steps, (self.batch_size,), generator=self._generator,
                             device=self.device)

    def sample(self) -> SegmentBatch:
        """Draw the next batch of ``batch_size`` segments."""
        return self.batch_at(self.sample_starts())

    def batch_at(self, starts: Tensor) -> SegmentBatch:
        """The segments beginning at the given steps (a 1-D int64 tensor on the sampler's device)."""
        k = self.context_length
        real = torch.clamp(self._steps_to_end[starts], max=k)  # real steps per segment
        # Column j holds step start + j - (K - real); columns left of K - real are padding
        # and point at the table's zero row.
        offset = self._positions - (k - real).unsqueeze(1)  # [B, K]
        grid = torch.where(offset >= 0, starts.unsqueeze(1) + offset, self._num_steps)
        v = self._table.gather(grid.reshape(-1), (len(starts), k))
        return SegmentBatch(
            observations=_maybe_dict(v, "obs", self._dict_keys),
            actions=v["actions"],
            rewards=v["rewards"],
            returns_to_go=v["returns_to_go"],
            timesteps=v["timesteps"],
            mask=v["mask"],
        )

    @property
    def generator(self) -> torch.Generator:
        """The sampler's own random stream (saved and restored by resumable training)."""
        return self._generator

    def state_dict(self) -> dict[str, Any]:
        """The generator state (and the settings it belongs to), for resumable training."""
        return {"generator_state": self._generator.get_state(), "seed": self.seed,
                "batch_size": self.batch_size, "context_length": self.context_length}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the batch stream exactly where :meth:`state_dict` was taken."""
        self._generator.set_state(state["generator_state"])


__all__ = ["COMPUTED_EXTRAS", "SegmentBatch", "SegmentSampler", "TransitionBatch", "TransitionSampler",
           "available_extras"]
