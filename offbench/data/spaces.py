"""JSON (de)serialisation of the Gymnasium spaces a dataset can hold: Box, Discrete and Dict.

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
