"""Settings given by users (``--set key=value``, protocol TOML) checked against a typed config.

Every config in offbench is a dataclass (``TrainConfig``, ``OnlineConfig``, each algorithm's
``config_class``). :func:`check_settings` refuses unknown keys and values of the wrong type
*before* any work starts, naming the key, the value and the type expected; without it a
``--set eval_every=abc`` surfaced as a ``TypeError`` minutes into training.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from offbench.errors import OffbenchError


def _accepts(hint: Any, value: Any) -> bool:
    """Whether ``value`` (parsed from JSON or TOML) fits the annotation ``hint``."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(hint)
        if not args:
            return True
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):  # list[X], tuple[X, ...]
            return all(_accepts(args[0], v) for v in value)
        return len(args) == len(value) and all(_accepts(a, v) for a, v in zip(args, value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True  # an annotation this check does not model: the config's own code decides


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def check_settings(config_class: type, values: dict[str, Any], *, what: str) -> None:
    """Raise :class:`OffbenchError` if ``values`` has a key ``config_class`` lacks or a value of the wrong type.

    ``what`` names the settings in the message (``"training setting"``, ``"IQL setting"``).
    """
    hints = typing.get_type_hints(config_class)
    known = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise OffbenchError(f"unknown {what}s {unknown}; known: {sorted(known)}")
    for key, value in values.items():
        hint = hints.get(key, Any)
        if not _accepts(hint, value):
            raise OffbenchError(f"{what} {key}={value!r}: expected {_type_name(hint)}, got {type(value).__name__}")


def check_positive(config: Any, names: tuple[str, ...], *, what: str) -> None:
    """Refuse a config whose ``names`` fields are not at least 1 (steps, intervals, episode counts)."""
    for name in names:
        value = getattr(config, name)
        if value < 1:
            raise OffbenchError(f"{what} {name}={value!r}: must be at least 1")


def split_settings(values: dict[str, Any], config_class: type, *, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config's, the rest)``: the ``values`` that are fields of ``config_class`` (type-checked, see
    :func:`check_settings`) and the others (an algorithm's or agent's settings, checked by their owner)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    own = {k: v for k, v in values.items() if k in names}
    check_settings(config_class, own, what=what)
    return own, {k: v for k, v in values.items() if k not in names}
