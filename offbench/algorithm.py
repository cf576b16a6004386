"""The ``Algorithm`` protocol every offline baseline (and any outside algorithm) implements.

An algorithm is a ``torch.nn.Module`` holding all of its networks (targets included), with:

- ``config_class``: a dataclass of hyperparameters with documented defaults;
- ``__init__(observation_space, action_space, config, *, seed)``: build networks and optimisers;
  all randomness of its own goes through ``self.generator`` (a ``torch.Generator``);
- ``prepare(dataset) -> Dataset``: once, before training: fit normalisers, scale rewards,
  filter (%BC) — returns the dataset to sample from;
- ``make_sampler(dataset, batch_size, seed)``: the batch source (default: transitions);
- ``update(batch) -> dict[str, float | Tensor]``: one gradient step, the loss written as in its
  paper; metrics may be 0-d tensors (the built-in algorithms return them, so that nothing is read
  back to the host inside the step; the loop reads them);
- ``act(observations) -> actions``: deterministic batched actions for evaluation (or
  ``make_eval_policy()`` returning an ``offbench.rollout.EpisodicPolicy`` for history-based
  policies such as Decision Transformer);
- ``optimizers() -> dict[str, Optimizer]``.

``offbench.train.fit`` saves and restores the module's state_dict, the optimisers, the
algorithm's and the sampler's generators and torch's global RNG, so a killed run resumes to
exactly the parameters of an uninterrupted one. An outside package plugs in with
``offbench train mypkg.module:MyAlgo DATASET`` (see docs/algorithms.md).
"""
from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from offbench.data.dataset import Dataset
from offbench.data.sampling import TransitionSampler
from offbench.errors import OffbenchError

# Name -> "module:Class" for offbench's own baselines; anything else is an import path.
BUILTIN = {
    "bc": "baselines.bc:BC",
    "percent_bc": "baselines.bc:PercentBC",
    "awr": "baselines.awr:AWR",
    "awac": "baselines.awac:AWAC",
    "td3_bc": "baselines.td3_bc:TD3BC",
    "td3": "baselines.td3:TD3",  # no behaviour term: ExORL's offline learner (issue 18)
    "cql": "baselines.cql:CQL",
    "iql": "baselines.iql:IQL",
    "dt": "baselines.dt:DecisionTransformer",
    "mopo": "baselines.mopo:MOPO",
    "combo": "baselines.combo:COMBO",
    # the goal-conditioned suite (baselines/goal/__init__.py lists the same)
    "gcbc": "baselines.goal.gcbc:GCBC",
    "gcivl": "baselines.goal.gcivl:GCIVL",
    "gciql": "baselines.goal.gciql:GCIQL",
    "qrl": "baselines.goal.qrl:QRL",
    "crl": "baselines.goal.crl:CRL",
    "hiql": "baselines.goal.hiql:HIQL",
    # offline meta-RL (datasets meta/<family>/...)
    "context_iql": "baselines.meta.context_iql:ContextIQL",
}


class Algorithm(nn.Module):
    """Convenience base class with the protocol's defaults; subclassing it is optional."""

    config_class: type = object
    #: one line for ``offbench algos``
    summary: str = ""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: Any, *, seed: int = 0):
        super().__init__()
        self.observation_space = observation_space
        self.action_space = action_space
        self.config = config
        self.generator = torch.Generator().manual_seed(seed)

    def prepare(self, dataset: Dataset) -> Dataset:
        return dataset

    def make_sampler(self, dataset: Dataset, batch_size: int, seed: int):
        return TransitionSampler(dataset, batch_size=batch_size, seed=seed, device=self.device)

    def update(self, batch) -> dict[str, float | torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ speed (optional)
    #: methods of the update that compute gradients (losses and ``backward``, no optimiser step,
    #: no random draw) and that :meth:`compile_update` compiles
    compiled_parts: tuple[str, ...] = ()

    def compile_update(self, *, mode: str | None = None, options: dict | None = None) -> "Algorithm":
        """Compile the gradient parts of ``update`` (``compiled_parts``) with ``torch.compile``:
        each becomes one graph (forward and backward, static shapes, no graph break), while the
        random draws, optimiser steps and Polyak updates stay in eager PyTorch (the same fused
        kernels as the eager path). Opt-in; compilation happens on the first ``update`` calls.
        ``options``: inductor settings, by default ``{"cpp_wrapper": True}`` (the graph's kernels
        called from C++, not Python: 2-8% more steps/s here). See docs/algorithms.md, "Speed"."""
        options = {"cpp_wrapper": True} if options is None else options
        for name in self.compiled_parts:
            setattr(self, name, compile_step(getattr(self, name), mode=mode, options=options))
        return self

    @property
    def device(self) -> torch.device:
        """Where the algorithm's tensors live (its first parameter or buffer; CPU if it has none)."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def to_device(self, device: str | torch.device) -> "Algorithm":
        """Move networks, buffers, optimiser moments and ``generator`` to ``device`` (before
        training: the random streams of a CUDA generator differ from the CPU one's)."""
        device = torch.device(device)
        self.to(device)
        for optimizer in self.optimizers().values():
            optimizer.load_state_dict(optimizer.state_dict())  # casts the moments to the parameters' device
        if self.generator.device != device:
            self.generator = torch.Generator(device=device).manual_seed(self.generator.initial_seed())
        return self

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {}


def compile_step(fn, *, mode: str | None = None, dynamic: bool = False, options: dict | None = None):
    """``torch.compile`` for a function that computes losses and calls ``backward()``: the whole
    function, backward included, as one graph (``fullgraph=True``: a graph break is an error),
    shapes static (``dynamic=False``: a batch of another shape would compile again). ``mode`` and
    ``options`` (inductor settings) go to ``torch.compile``."""
    import torch._dynamo

    # Dynamo traces ``loss.backward()`` into the graph instead of breaking the graph there.
    torch._dynamo.config.trace_autograd_ops = True
    return torch.compile(fn, fullgraph=True, dynamic=dynamic, mode=mode, options=options)


def load_algorithm_class(name: str) -> type:
    """A built-in name (``iql``) or an import path ``package.module:Class``."""
    target = BUILTIN.get(name, name)
    if ":" not in target:
        raise OffbenchError(f"unknown algorithm {name!r}: use one of {sorted(BUILTIN)} "
                            "or an import path like mypkg.module:MyAlgo")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OffbenchError(f"cannot import {module_name!r} for algorithm {name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise OffbenchError(f"{module_name} has no class {class_name!r}")
    for attr in ("config_class", "update", "optimizers"):
        if not hasattr(cls, attr):
            raise OffbenchError(f"{target} does not implement the Algorithm protocol (missing {attr!r}); "
                                "see docs/algorithms.md")
    return cls


def dataset_overrides(name: str, dataset_id: str) -> dict[str, Any]:
    """Per-dataset settings of a built-in algorithm from ``baselines/configs/<name>.toml``.

    Tables are keyed by dataset-id glob patterns (``"locomotion/hopper/*"``); every matching
    table applies, in file order, so put general patterns first. ``--set`` overrides win.
    """
    import fnmatch
    import sys
    from pathlib import Path

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    path = Path(__file__).resolve().parents[1] / "baselines" / "configs" / f"{name}.toml"
    if name not in BUILTIN or not path.is_file():
        return {}
    try:
        tables = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise OffbenchError(f"{path}: invalid TOML ({exc})") from None
    merged: dict[str, Any] = {}
    for pattern, values in tables.items():
        if fnmatch.fnmatchcase(dataset_id, pattern):
            merged.update(values)
    return merged


def make_config(cls: type, overrides: dict[str, Any]):
    """The algorithm's config with ``overrides`` applied; unknown keys and mistyped values are an error."""
    from offbench.config import check_settings

    check_settings(cls.config_class, overrides, what=f"{cls.__name__} setting")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return cls.config_class(**values)
