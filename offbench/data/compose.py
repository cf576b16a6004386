"""Derived datasets: %BC filtering, behaviour-policy mixing and train/validation splits.

Each function returns a new in-memory :class:`Dataset` made of whole episodes of its
inputs (episode boundaries, final observations and termination flags are kept intact),
records how it was made in ``metadata.recipe``, and keeps per-episode provenance in
``episodes/source`` (an index into ``metadata.sources``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from offbench.data.dataset import Dataset
from offbench.errors import OffbenchError


# ---------------------------------------------------------------------- %BC
def _episodes_by_return(dataset: Dataset) -> np.ndarray:
    """Episode indices sorted by undiscounted return, best first (ties: earlier episode first)."""
    returns = dataset.episode_returns(1.0)
    return np.lexsort((np.arange(len(returns)), -returns))


def _check_fraction(fraction: float) -> float:
    if not 0.0 < fraction <= 1.0:
        raise OffbenchError(f"%BC fraction must be in (0, 1], got {fraction!r} (e.g. 0.1 for 10%BC)")
    return float(fraction)


def top_episodes_by_timesteps(dataset: Dataset, fraction: float) -> Dataset:
    """%BC as in the Decision Transformer paper: keep the best episodes (by return) until
    they hold ``fraction`` of the dataset's timesteps (the episode crossing the threshold is
    kept, so at least that fraction of timesteps is kept)."""
    fraction = _check_fraction(fraction)
    order = _episodes_by_return(dataset)
    held = np.cumsum(dataset.episode_lengths[order])
    count = int(np.searchsorted(held, fraction * dataset.num_steps - 1e-9)) + 1
    keep = np.sort(order[: min(count, len(order))])
    return _subset(dataset, keep, {"kind": "percent_bc", "definition": "top_episodes_by_timesteps",
                                   "fraction": fraction})


def top_episodes_by_count(dataset: Dataset, fraction: float) -> Dataset:
    """%BC as in CORL: keep the top ``fraction`` of episodes by return, counted in episodes
    (rounded up, at least one)."""
    fraction = _check_fraction(fraction)
    order = _episodes_by_return(dataset)
    count = max(1, int(np.ceil(fraction * dataset.num_episodes - 1e-9)))
    keep = np.sort(order[:count])
    return _subset(dataset, keep, {"kind": "percent_bc", "definition": "top_episodes_by_count",
                                   "fraction": fraction})


PERCENT_BC_DEFINITIONS = {
    "top_episodes_by_timesteps": top_episodes_by_timesteps,  # Decision Transformer paper
    "top_episodes_by_count": top_episodes_by_count,  # CORL
}


def percent_bc(dataset: Dataset, fraction: float, definition: str) -> Dataset:
    """%BC filtering by a named definition (see :data:`PERCENT_BC_DEFINITIONS`)."""
    if definition not in PERCENT_BC_DEFINITIONS:
        raise OffbenchError(f"unknown %BC definition {definition!r}; choose one of {sorted(PERCENT_BC_DEFINITIONS)}")
    return PERCENT_BC_DEFINITIONS[definition](dataset, fraction)


def _subset(dataset: Dataset, episodes: np.ndarray, step: dict) -> Dataset:
    recipe = {**step, "parent": dataset.metadata.dataset_id, "parent_recipe": dataset.metadata.recipe}
    return dataset.select_episodes(episodes, recipe=recipe)


# ---------------------------------------------------------------------- split
def train_validation_split(dataset: Dataset, validation_fraction: float = 0.1, *,
                           seed: int = 0) -> tuple[Dataset, Dataset]:
    """Seeded split by whole episodes; both parts keep the original episode order."""
    if not 0.0 < validation_fraction < 1.0:
        raise OffbenchError(f"validation_fraction must be in (0, 1), got {validation_fraction!r}")
    if dataset.num_episodes < 2:
        raise OffbenchError(f"{dataset.metadata.dataset_id}: a split needs at least 2 episodes")
    rng = np.random.default_rng(seed)
    n_val = min(dataset.num_episodes - 1, max(1, int(round(validation_fraction * dataset.num_episodes))))
    val = np.sort(rng.permutation(dataset.num_episodes)[:n_val])
    train = np.setdiff1d(np.arange(dataset.num_episodes), val)
    info = {"validation_fraction": validation_fraction, "seed": seed}
    return (_subset(dataset, train, {"kind": "split", "part": "train", **info}),
            _subset(dataset, val, {"kind": "split", "part": "validation", **info}))


# ---------------------------------------------------------------------- mixing
def _same(values: list, what: str, ids: list[str]):
    distinct = {repr(v) for v in values}
    if len(distinct) > 1:
        raise OffbenchError(f"cannot mix datasets with different {what}: "
                            + "; ".join(f"{i}: {v!r}" for i, v in zip(ids, values)))
    return values[0]


def mix(sources: Sequence[Dataset], proportions: Sequence[float] | None = None, *,
        by: str = "episodes", total: int | None = None, seed: int = 0,
        dataset_id: str | None = None) -> Dataset:
    """Compose a dataset from several sources in given proportions.

    - ``proportions=None``: concatenate every source whole (D4RL's medium-expert).
    - otherwise draw, per source, ``proportion * total`` episodes (``by="episodes"``) or
      whole episodes until at least ``proportion * total`` steps (``by="steps"``), picked by a
      seeded permutation without replacement. ``total`` defaults to the largest total that
      every source can supply.

    All sources must share the environment, spaces, array layout and reference scores
    (reference scores belong to the task, so a mix keeps them). Per-episode provenance goes
    to ``episodes/source``, an index into ``metadata.sources``; the behaviour-policy tables
    are merged and ``policy_id`` re-indexed into the merged table.
    """
    if not sources:
        raise OffbenchError("mix needs at least one source dataset")
    ids = [s.metadata.dataset_id for s in sources]
    _same([s.metadata.env_id for s in sources], "environments", ids)
    _same([repr(s.observation_space) for s in sources], "observation spaces", ids)
    _same([repr(s.action_space) for s in sources], "action spaces", ids)
    _same([sorted(s.arrays) for s in sources], "arrays", ids)
    reference = _same([s.metadata.reference_scores for s in sources], "reference scores", ids)
    if by not in ("episodes", "steps"):
        raise OffbenchError(f"mix: by must be 'episodes' or 'steps', got {by!r}")

    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    if proportions is None:
        chosen = [np.arange(s.num_episodes) for s in sources]
    else:
        if len(proportions) != len(sources) or any(p < 0 for p in proportions) or sum(proportions) <= 0:
            raise OffbenchError(f"mix: need one non-negative proportion per source, got {list(proportions)}")
        weights = np.asarray(proportions, dtype=np.float64) / float(np.sum(proportions))
        sizes = [s.num_episodes if by == "episodes" else s.num_steps for s in sources]
        if total is None:
            total = int(min(size / w for size, w in zip(sizes, weights) if w > 0))
        for source, w, size in zip(sources, weights, sizes):
            want = int(round(w * total))
            if want > size:
                raise OffbenchError(f"mix: {source.metadata.dataset_id} has {size} {by}, "
                                    f"{want} requested (lower total or the proportion)")
            order = rng.permutation(source.num_episodes)
            if by == "episodes":
                pick = order[:want]
            else:
                held = np.cumsum(source.episode_lengths[order])
                pick = order[: int(np.searchsorted(held, want)) + 1] if want > 0 else order[:0]
            chosen.append(np.sort(pick))

    parts = [s.select_episodes(idx) for s, idx in zip(sources, chosen)]
    # Merge provenance tables: each part's local source ids shift by the tables before it.
    merged_sources, merged_policies = [], []
    arrays: dict[str, list[np.ndarray]] = {p: [] for p in parts[0].arrays}
    for part, original in zip(parts, sources):
        src_offset, pol_offset = len(merged_sources), len(merged_policies)
        table = original.metadata.sources or [{"dataset_id": original.metadata.dataset_id}]
        merged_sources += [{**entry, "mixed_from": original.metadata.dataset_id} for entry in table]
        merged_policies += original.metadata.behaviour_policies
        for path, arr in part.arrays.items():
            if path == "episodes/source":
                arr = arr + src_offset
            elif path == "policy_id":
                arr = arr + pol_offset
            arrays[path].append(arr)
    joined = {p: np.concatenate(chunks) for p, chunks in arrays.items()}
    lengths = joined["episodes/length"]
    joined["episodes/start"] = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    joined["episodes/source"] = joined["episodes/source"].astype(np.int32)
    if "policy_id" in joined:
        joined["policy_id"] = joined["policy_id"].astype(np.int32)
    recipe = {"kind": "mix", "sources": ids, "proportions": None if proportions is None else list(proportions),
              "by": by, "total": total, "seed": seed}
    meta = replace(sources[0].metadata, dataset_id=dataset_id or "+".join(ids), recipe=recipe,
                   sources=merged_sources, behaviour_policies=merged_policies,
                   reference_scores=reference, checksums={}, description="")
    return Dataset(joined, meta)
