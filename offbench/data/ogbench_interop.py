"""OGBench's ``.npz`` dataset files: write an offbench dataset as one, read one into offbench.

OGBench's layout (``data_gen_scripts/generate_*.py`` writes it with ``np.savez_compressed``;
``ogbench.utils.load_dataset`` reads it) is one flat row per recorded step, episodes back to back:

=================  ==========  ===============================================================
key                dtype       meaning
=================  ==========  ===============================================================
``observations``   float32     the observation of the row (uint8 for pixel tasks)
``actions``        float32     the action taken there
``terminals``      bool        1 on the last row of each episode (OGBench's ``done``: the time
                               limit, as its data never terminates), 0 elsewhere
``qpos``           float32     optional: the simulator's ``qpos`` at the row
``qvel``           float32     optional: ``qvel`` likewise
=================  ==========  ===============================================================

The last row of an episode is a state whose action has no recorded outcome: ``load_dataset``
drops it (or marks it invalid in its compact form), so an episode of R rows holds R - 1
transitions and its last row is the episode's final observation. Training and validation splits
are separate files, ``NAME.npz`` and ``NAME-val.npz``. OGBench's files store neither rewards nor
the goals the behaviour pursued: goal-conditioned training relabels both.

Mapping to offbench (T steps, T + 1 observations per episode):

- **export**: the T + 1 observations (``observation`` key of Dict observations), the T actions
  and one all-zero filler action on the final row, ``terminals`` on the final row, and
  ``sim_state/qpos`` / ``sim_state/qvel`` (final states included) as ``qpos`` / ``qvel``.
  ``ogbench.load_dataset`` then returns exactly the offbench transitions, next observations
  included. Rewards, goals and log-probabilities have no place in the layout and are not written.
- **import**: each run of rows ending at a terminal becomes an episode of R - 1 steps, truncated
  (the layout cannot say "terminated", and OGBench's data is cut by time limits); observations
  become Dict observations ``observation`` = ``achieved_goal`` = the row's observation (OGBench's
  goals are observations) and ``desired_goal`` = the episode's final observation, marked as such
  in the recipe (the files do not store the behaviour's goals); rewards are 0 (not stored);
  ``qpos`` / ``qvel`` become ``sim_state``.
"""
from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from offbench.data.dataset import Dataset
from offbench.errors import OffbenchError

OBSERVATION_KEY = "observation"
SIM_KEYS = ("qpos", "qvel")
_NAME = re.compile(r"^(?P<env>[a-z]+maze-[a-z]+)-(?P<kind>[a-z]+)-v(?P<version>\d+)(?P<val>-val)?$")

__all__ = ["export_to_ogbench", "import_from_ogbench", "ogbench_rows"]


def _load(dataset: Dataset | str | os.PathLike) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    from offbench.data import load_dataset

    return load_dataset(dataset)


def ogbench_rows(dataset: Dataset) -> dict[str, np.ndarray]:
    """The arrays of OGBench's layout for ``dataset`` (see the module docstring)."""
    if dataset.is_dict_observation:
        if OBSERVATION_KEY not in dataset.observation_space.spaces:
            raise OffbenchError(f"dataset {dataset.metadata.dataset_id!r} has Dict observations without an "
                                f"'{OBSERVATION_KEY}' key; OGBench's layout holds one observation array")
        path = f"observations/{OBSERVATION_KEY}"
    else:
        path = "observations"
    n, e = dataset.num_steps, dataset.num_episodes
    starts, lengths = dataset.episode_starts, dataset.episode_lengths
    # Row of step i: i + its episode index (one extra row per earlier episode); the final
    # observation of episode k goes to row start[k] + length[k] + k.
    step_rows = np.arange(n, dtype=np.int64) + dataset.episode_of_step
    final_rows = starts + lengths + np.arange(e, dtype=np.int64)

    def interleave(steps: np.ndarray, finals: np.ndarray, dtype) -> np.ndarray:
        out = np.empty((n + e, *steps.shape[1:]), dtype=dtype)
        out[step_rows] = steps
        out[final_rows] = finals
        return out

    observations = dataset.arrays[path]
    obs_dtype = np.uint8 if observations.dtype == np.uint8 else np.float32
    rows = {
        "observations": interleave(observations, dataset.arrays[f"episodes/final/{path}"], obs_dtype),
        "actions": interleave(np.asarray(dataset.actions, dtype=np.float32),
                              np.zeros((e, *dataset.actions.shape[1:]), np.float32), np.float32),
        "terminals": np.zeros(n + e, dtype=bool),
    }
    rows["terminals"][final_rows] = True
    for key in SIM_KEYS:
        if f"sim_state/{key}" in dataset.arrays:
            rows[key] = interleave(dataset.arrays[f"sim_state/{key}"],
                                   dataset.arrays[f"episodes/final/sim_state/{key}"], np.float32)
    return rows


def export_to_ogbench(dataset: Dataset | str | os.PathLike, path: str | os.PathLike, *,
                      overwrite: bool = False) -> Path:
    """Write ``dataset`` (a Dataset, id or file) as an OGBench ``.npz`` file at ``path``.

    Name the validation split's file ``<name>-val.npz`` beside the training one, as OGBench's
    ``make_env_and_datasets(..., dataset_path=...)`` expects. Written to a temporary file first.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise OffbenchError(f"{path}: OGBench dataset files end in .npz")
    if path.exists() and not overwrite:
        raise OffbenchError(f"{path} exists; pass overwrite=True to replace it")
    rows = ogbench_rows(_load(dataset))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
            np.savez_compressed(f, **rows)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise OffbenchError(f"{path}: not a readable .npz file ({exc})") from None


def _default_env_id(path: Path) -> str | None:
    """offbench's env id for an OGBench file named like ``pointmaze-medium-navigate-v0[-val].npz``."""
    match = _NAME.match(path.stem)
    if match and match["env"].startswith("pointmaze-"):
        from offbench.envs.pointmaze import MAZES, env_id

        maze = match["env"].split("-", 1)[1]
        return env_id(maze) if maze in MAZES else None
    return None


def import_from_ogbench(path: str | os.PathLike, *, dataset_id: str, out: str | os.PathLike | None = None,
                        env_id: str | None = None) -> Path:
    """Convert an OGBench ``.npz`` file into an offbench dataset file; return its path.

    ``out`` defaults to the cache path of ``dataset_id`` (so ``offbench.load_dataset(dataset_id)``
    finds it); ``env_id`` defaults to offbench's PointMaze env for files named like OGBench's
    (``pointmaze-<maze>-<type>-v0[-val].npz``) and is required otherwise.
    """
    from offbench.data.catalogue import cached_path, check_dataset_id
    from offbench.data.writer import DatasetWriter

    path = Path(path)
    if not path.is_file():
        raise OffbenchError(f"{path}: no such file; give the path of an OGBench .npz dataset")
    check_dataset_id(dataset_id)
    env_id = env_id or _default_env_id(path)
    if env_id is None:
        raise OffbenchError(f"{path}: cannot tell the environment from the file name; pass env_id "
                            "(--env on the command line; e.g. 'offbench/pointmaze-medium-v0')")
    data = _read_npz(path)
    for key in ("observations", "actions", "terminals"):
        if key not in data:
            raise OffbenchError(f"{path}: no {key!r} array; OGBench files hold observations, actions and terminals "
                                f"(found {sorted(data)})")
    observations, actions = data["observations"], np.asarray(data["actions"], dtype=np.float32)
    terminals = np.asarray(data["terminals"]).astype(bool)
    rows = len(observations)
    if not (len(actions) == len(terminals) == rows) or any(len(data[k]) != rows for k in SIM_KEYS if k in data):
        raise OffbenchError(f"{path}: arrays have different row counts "
                            f"({ {k: len(v) for k, v in data.items()} })")
    if rows == 0 or not terminals[-1]:
        raise OffbenchError(f"{path}: the last row is not a terminal, so the last episode is incomplete "
                            "(OGBench marks the last row of every episode)")
    ends = np.flatnonzero(terminals)
    starts = np.concatenate([[0], ends[:-1] + 1])
    if (ends == starts).any():
        bad = int(np.flatnonzero(ends == starts)[0])
        raise OffbenchError(f"{path}: episode {bad} has a single row (no transition): every episode needs at least "
                            "two rows, the last being its final observation")
    if not np.all(np.abs(actions) <= 1.0):
        raise OffbenchError(f"{path}: actions outside [-1, 1]; OGBench's locomotion actions lie in [-1, 1]")
    obs_dtype = np.uint8 if observations.dtype == np.uint8 else np.float32
    observations = np.asarray(observations, dtype=obs_dtype)
    box = gym.spaces.Box(0, 255, observations.shape[1:], np.uint8) if obs_dtype == np.uint8 else \
        gym.spaces.Box(-np.inf, np.inf, observations.shape[1:], np.float32)
    space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
    action_space = gym.spaces.Box(-1.0, 1.0, actions.shape[1:], np.float32)
    recipe: dict[str, Any] = {
        "kind": "ogbench_import", "file": path.name, "rows": int(rows), "episodes": int(len(ends)),
        "desired_goal": "the final observation of each episode (OGBench files do not store the behaviour's goals)",
        "rewards": "0 (OGBench files store no rewards; goal-conditioned training relabels them)",
        "episode_ends": "truncated (OGBench's terminals mark episode ends, not MDP terminations)",
    }
    target = Path(out) if out else cached_path(dataset_id)
    with DatasetWriter(target, dataset_id=dataset_id, env_id=env_id, observation_space=space,
                       action_space=action_space, recipe=recipe,
                       description=f"Imported from the OGBench file {path.name}.",
                       behaviour_policies=[{"name": f"OGBench data ({path.name})", "checkpoint_sha256": None,
                                            "return": None}]) as writer:
        for start, end in zip(starts.tolist(), ends.tolist()):
            obs = observations[start:end + 1]
            steps = end - start
            truncated = np.zeros(steps, bool)
            truncated[-1] = True
            sim = {k: np.asarray(data[k][start:end + 1]) for k in SIM_KEYS if k in data}
            final_goal = np.repeat(obs[-1:], steps + 1, axis=0)
            writer.add_episode(
                observations={"observation": obs, "achieved_goal": obs, "desired_goal": final_goal},
                actions=actions[start:end], rewards=np.zeros(steps, np.float32), terminations=np.zeros(steps, bool),
                truncations=truncated, policy_id=0, sim_state=sim or None)
    return target
