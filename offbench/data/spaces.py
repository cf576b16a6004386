"""JSON (de)serialisation of the Gymnasium spaces a dataset can hold: Box, Discrete and Dict,
and the check that stored values lie in their space.

offbench writes its own small schema rather than pickling spaces, so a file never needs
code execution to be read. Example: ``{"type": "Box", "shape": [3], "dtype": "float32",
"low": [...], "high": [...]}``.
"""
from __future__ import annotations

import json
import math
from typing import Any

import gymnasium as gym
import numpy as np


def _bound_to_json(values: np.ndarray) -> list:
    # JSON has no inf; encode as strings so the bounds round-trip exactly.
    def enc(x):
        x = float(x)
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x

    return [enc(v) for v in values.reshape(-1)]


def _bound_from_json(values: list, shape, dtype) -> np.ndarray:
    return np.array([float(v) for v in values], dtype=dtype).reshape(shape)


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": _bound_to_json(space.low),
            "high": _bound_to_json(space.high),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: space_to_dict(s) for k, s in space.spaces.items()}}
    raise TypeError(
        f"offbench stores Box, Discrete and Dict spaces; got {type(space).__name__}. "
        "Wrap the environment so its spaces are one of these."
    )


def space_from_dict(data: dict[str, Any]) -> gym.Space:
    kind = data.get("type")
    if kind == "Box":
        shape = tuple(data["shape"])
        dtype = np.dtype(data["dtype"])
        return gym.spaces.Box(
            low=_bound_from_json(data["low"], shape, dtype),
            high=_bound_from_json(data["high"], shape, dtype),
            shape=shape,
            dtype=dtype,
        )
    if kind == "Discrete":
        return gym.spaces.Discrete(int(data["n"]), start=int(data.get("start", 0)))
    if kind == "Dict":
        return gym.spaces.Dict({k: space_from_dict(v) for k, v in data["spaces"].items()})
    raise ValueError(f"unknown space type {kind!r} (expected Box, Discrete or Dict)")


def space_to_json(space: gym.Space) -> str:
    return json.dumps(space_to_dict(space), sort_keys=True)


def space_from_json(text: str) -> gym.Space:
    return space_from_dict(json.loads(text))


def storage_dtype(space: gym.Space) -> np.dtype:
    """The dtype an array drawn from ``space`` is stored with (Discrete: int64)."""
    if isinstance(space, gym.spaces.Discrete):
        return np.dtype(np.int64)
    if isinstance(space, gym.spaces.Box):
        return np.dtype(space.dtype)
    raise TypeError(f"no single storage dtype for {type(space).__name__}")


def element_shape(space: gym.Space) -> tuple[int, ...]:
    """Shape of one element of ``space`` as stored (Discrete: a scalar)."""
    if isinstance(space, gym.spaces.Discrete):
        return ()
    return tuple(space.shape)


# A float value may pass a finite Box bound by this much, relative to max(1, |bound|): about
# 8 float32 ulps, so an action rescaled from tanh's [-1, 1] (which can round one ulp past the
# bound) is accepted while real out-of-range data is not.
BOUND_TOLERANCE = 1e-6


def _box_limits(space: gym.spaces.Box, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """The lowest and highest value of ``dtype`` accepted per element (infinite where unbounded)."""
    low = space.low.astype(np.float64)
    high = space.high.astype(np.float64)
    if np.issubdtype(dtype, np.floating):
        low = np.where(space.bounded_below, low - BOUND_TOLERANCE * np.maximum(1.0, np.abs(low)), -np.inf)
        high = np.where(space.bounded_above, high + BOUND_TOLERANCE * np.maximum(1.0, np.abs(high)), np.inf)
        # Limits in the data's dtype compare without converting the whole array to float64; a
        # bound at the dtype's largest value (np.finfo(...).max) stays finite when cast.
        info = np.finfo(dtype)
        return np.clip(low, info.min, info.max).astype(dtype), np.clip(high, info.min, info.max).astype(dtype)
    return space.low, space.high


def first_outside(values: np.ndarray, space: gym.Space) -> tuple[int, str] | None:
    """The first row of ``values`` ([N, *element_shape]) with an element outside ``space``.

    Returns ``(row, description)``, the description naming the value, its index within the row
    and the bound it breaks (counting every bad row), or ``None`` if all values lie in the
    space. Discrete values must be in ``start .. start + n - 1``; Box values within ``low`` and
    ``high`` up to :data:`BOUND_TOLERANCE` for floats. Unbounded (infinite) Box limits accept
    every value, and a Box unbounded on every side costs nothing to check.
    """
    if len(values) == 0:
        return None
    if isinstance(space, gym.spaces.Discrete):
        first, last = int(space.start), int(space.start + space.n - 1)
        if values.min() >= first and values.max() <= last:  # a fast vectorised pass for valid data
            return None
        bad = (values < first) | (values > last)
        row = int(np.flatnonzero(bad)[0])
        return row, (f"value {values[row]!s} at row {row} is outside the Discrete space's {first}..{last} "
                     f"({int(bad.sum())} of {len(values)} rows out of range)")
    if isinstance(space, gym.spaces.Box):
        if not (space.bounded_below.any() or space.bounded_above.any()):
            return None
        low, high = _box_limits(space, values.dtype)
        # A fast vectorised pass for valid data: every value within the tightest of the bounds.
        if values.min() >= low.max() and values.max() <= high.min():
            return None
        bad = (values < low) | (values > high)
        bad_rows = bad.reshape(len(values), -1).any(axis=1)
        if not bad_rows.any():
            return None
        row = int(np.flatnonzero(bad_rows)[0])
        index = tuple(int(i) for i in np.argwhere(bad[row])[0])
        value = values[row][index]
        if value < low[index]:
            side, bound = "below the low", space.low[index]
        else:
            side, bound = "above the high", space.high[index]
        where = f" at index {list(index)}" if index else ""
        return row, (f"value {value!s} at row {row}{where} is {side} bound {bound!s} of the Box space "
                     f"({int(bad_rows.sum())} of {len(values)} rows out of bounds)")
    raise TypeError(f"no value check for {type(space).__name__}")
