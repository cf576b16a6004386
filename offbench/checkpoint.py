"""Checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is ``NAME.safetensors`` (module parameters and buffers, optimiser moments,
torch generator states) plus ``NAME.json`` (optimiser hyperparameters, counters, numpy RNG
states, config). Both are written to temporary files and renamed, JSON last, so the JSON
marks a complete checkpoint. The JSON is also stored in the safetensors header, and loading
uses that copy: a process killed between the two renames leaves a JSON one checkpoint behind
its tensors, and the tensors must never be resumed with another checkpoint's counters (such as
the step). Loading never executes code from the file.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from offbench.errors import OffbenchError

META_KEY = "offbench_checkpoint"  # the safetensors header entry holding the checkpoint's JSON


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def flatten_state(modules: dict[str, nn.Module] | None = None,
                  optimizers: dict[str, torch.optim.Optimizer] | None = None,
                  generators: dict[str, torch.Generator] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors keyed ``module/<name>/<param>``, ``optim/<name>/<i>/<key>``, ``rng/<name>``; plus JSON."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"optimizers": {}}
    for name, module in (modules or {}).items():
        for key, value in module.state_dict().items():
            tensors[f"module/{name}/{key}"] = value.detach().contiguous().cpu()
    for name, optim in (optimizers or {}).items():
        state = optim.state_dict()
        for index, slots in state["state"].items():
            for key, value in slots.items():
                tensors[f"optim/{name}/{index}/{key}"] = torch.as_tensor(value).contiguous().cpu()
        meta["optimizers"][name] = state["param_groups"]
    for name, gen in (generators or {}).items():
        tensors[f"rng/{name}"] = gen.get_state()
    return tensors, meta


def save_checkpoint(path_stem: str | os.PathLike, *, modules=None, optimizers=None, generators=None,
                    extra: dict | None = None) -> Path:
    """Write ``<stem>.safetensors`` then ``<stem>.json``; return the JSON path."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    tensors, meta = flatten_state(modules, optimizers, generators)
    meta_text = json.dumps({**meta, **(extra or {})}, indent=2, sort_keys=True)
    tmp = stem.with_name(f".{stem.name}.safetensors.tmp-{os.getpid()}")
    save_file(tensors, str(tmp), metadata={META_KEY: meta_text})
    os.replace(tmp, stem.with_suffix(".safetensors"))
    json_path = stem.with_suffix(".json")
    _atomic_write_text(json_path, meta_text)
    return json_path


def load_checkpoint(path_stem: str | os.PathLike, *, modules=None, optimizers=None, generators=None) -> dict:
    """Restore what :func:`save_checkpoint` wrote into the given objects; return the JSON."""
    stem = Path(path_stem)
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
        with safe_open(str(stem.with_suffix(".safetensors")), framework="pt") as f:
            embedded = (f.metadata() or {}).get(META_KEY)
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        if embedded is not None:  # the tensors' own counters (see the module docstring)
            meta = json.loads(embedded)
    except (OSError, ValueError, SafetensorError) as exc:
        raise OffbenchError(f"{stem}: cannot read checkpoint ({exc}); it is missing or corrupt") from None
    for name, module in (modules or {}).items():
        prefix = f"module/{name}/"
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(state)
    for name, optim in (optimizers or {}).items():
        prefix = f"optim/{name}/"
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(prefix):
                index, slot = key[len(prefix):].split("/", 1)
                slots.setdefault(int(index), {})[slot] = value
        optim.load_state_dict({"state": slots, "param_groups": meta["optimizers"][name]})
    for name, gen in (generators or {}).items():
        gen.set_state(tensors[f"rng/{name}"])
    return meta


def save_module(path: str | os.PathLike, module: nn.Module, metadata: dict[str, str] | None = None) -> Path:
    """One module's weights as a standalone safetensors file (behaviour-policy checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(tmp),
              metadata=metadata)
    os.replace(tmp, path)
    return path


def load_module(path: str | os.PathLike, module: nn.Module) -> nn.Module:
    try:
        module.load_state_dict(load_file(str(path)))
    except (OSError, ValueError, RuntimeError) as exc:
        raise OffbenchError(f"{path}: cannot load weights into {type(module).__name__} ({exc})") from None
    return module
