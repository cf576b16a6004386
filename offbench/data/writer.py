"""Streaming writer for the trajectory store (format v1, see ``offbench.data.format``).

Episodes are buffered up to ``flush_steps`` steps and then appended to resizable HDF5
arrays, so memory stays bounded whatever the dataset size. Everything is written to a
temporary file beside the target and renamed into place only when :meth:`DatasetWriter.close`
succeeds: a crash or an error never leaves a half-written file under the final name.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym
import h5py
import numpy as np

from offbench.data import format as fmt
from offbench.data.spaces import element_shape, first_outside, space_to_json, storage_dtype
from offbench.errors import DatasetFormatError


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    versions = {}
    for name in ("offbench", "numpy", "h5py", "gymnasium", "mujoco", "torch"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return versions


def _flatten_states(group: str, value, space: gym.Space | None = None) -> dict[str, np.ndarray]:
    """``observations`` as an array or a dict of arrays -> {'observations[/key]': array}."""
    if isinstance(value, Mapping):
        return {f"{group}/{k}": np.asarray(v) for k, v in value.items()}
    return {group: np.asarray(value)}


class DatasetWriter:
    """Write a dataset episode by episode.

    Example::

        with DatasetWriter(path, dataset_id="lite/pendulum/random-v0", env_id="Pendulum-v1",
                           observation_space=env.observation_space,
                           action_space=env.action_space) as writer:
            writer.add_episode(observations=obs, actions=act, rewards=rew,
                               terminations=term, truncations=trunc)

    ``observations`` (and each ``sim_state`` array) hold T+1 rows: the T observations at
    which actions were taken and the final one. Per-step arrays hold T rows. The last step
    of every episode must be terminated or truncated, and no earlier step may be.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        dataset_id: str,
        env_id: str,
        observation_space: gym.Space,
        action_space: gym.Space,
        env_spec: dict | None = None,
        recipe: dict | None = None,
        behaviour_policies: list[dict] | None = None,
        reference_scores: dict | None = None,
        sources: list[dict] | None = None,
        description: str = "",
        flush_steps: int = 65536,
        compression: str | None = None,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.observation_space = observation_space
        self.action_space = action_space
        self._attrs: dict[str, Any] = {
            "dataset_id": dataset_id,
            "env_id": env_id,
            "description": description,
            "env_spec": env_spec,
            "observation_space": json.loads(space_to_json(observation_space)),
            "action_space": json.loads(space_to_json(action_space)),
            "recipe": recipe or {},
            "behaviour_policies": list(behaviour_policies or []),
            "reference_scores": reference_scores,
            "sources": list(sources or [{"dataset_id": dataset_id}]),
        }
        self._flush_steps = flush_steps
        self._compression = compression
        self._file: h5py.File | None = h5py.File(self._tmp, "w")
        self._schema: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None
        self._hashes: dict[str, "hashlib._Hash"] = {}
        self._buffer_steps: dict[str, list[np.ndarray]] = {}
        self._buffer_episodes: dict[str, list[np.ndarray]] = {}
        self._buffered = 0
        self.num_steps = 0
        self.num_episodes = 0
        self._closed = False

    # ------------------------------------------------------------------ schema
    def _space(self, path: str) -> gym.Space | None:
        """The space of an observation or action array (finals included); None for other arrays."""
        if path.startswith(fmt.FINAL_PREFIX):  # finals share their state array's space
            path = path[len(fmt.FINAL_PREFIX):]
        if path == "actions":
            return self.action_space
        if path.startswith("observations"):
            space = self.observation_space
            if isinstance(space, gym.spaces.Dict):
                space = space[path.split("/", 1)[1]]
            return space
        return None

    def _expected_dtype(self, path: str, array: np.ndarray) -> np.dtype:
        if path in fmt.FIXED_DTYPES:
            return np.dtype(fmt.FIXED_DTYPES[path])
        space = self._space(path)
        return array.dtype if space is None else storage_dtype(space)  # sim_state/*, infos/*: the caller's

    def _check_in_space(self, arrays: dict[str, np.ndarray], episode_of_row) -> None:
        """Refuse observations and actions outside their spaces, as reading a file would."""
        for path, arr in arrays.items():
            space = self._space(path)
            if space is None:
                continue
            if arr.shape[1:] != element_shape(space):
                raise DatasetFormatError(
                    self.path, f"element shape {arr.shape[1:]} does not match the space's {element_shape(space)}",
                    field=path, hint="store values of the shape the observation and action spaces declare")
            outside = first_outside(arr, space)
            if outside:
                row, problem = outside
                kind = "action" if path == "actions" else "observation"
                raise DatasetFormatError(
                    self.path, f"episode {episode_of_row(row)}: outside the {kind} space: {problem}", field=path,
                    hint=f"clip the values to the {kind} space, or pass the space the data really comes from")

    def _fix_schema(self, step_arrays: dict[str, np.ndarray], episode_arrays: dict[str, np.ndarray]):
        schema = {}
        for path, arr in {**step_arrays, **episode_arrays}.items():
            if arr.dtype == object:
                raise DatasetFormatError(self.path, "object arrays cannot be stored", field=path,
                                         hint="pass numeric or boolean numpy arrays")
            schema[path] = (arr.shape[1:], self._expected_dtype(path, arr))
        for path in schema:
            self._hashes[path] = hashlib.sha256()
            (self._buffer_episodes if path.startswith("episodes/") else self._buffer_steps)[path] = []
        self._schema = schema

    def _check_against_schema(self, arrays: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
        out = {}
        expected = {p for p in self._schema if p.startswith("episodes/") == (where == "episode")}
        missing = expected - set(arrays)
        extra = set(arrays) - expected
        if missing or extra:
            raise DatasetFormatError(
                self.path,
                f"episode {self.num_episodes} has arrays {sorted(arrays)} but the first episode fixed "
                f"{sorted(expected)} (missing {sorted(missing)}, unexpected {sorted(extra)})",
                hint="give every episode the same optional arrays",
            )
        for path, arr in arrays.items():
            shape, dtype = self._schema[path]
            if arr.shape[1:] != shape:
                raise DatasetFormatError(
                    self.path, f"episode {self.num_episodes}: element shape {arr.shape[1:]} != {shape}",
                    field=path, hint="every episode must have the same element shapes")
            out[path] = arr.astype(dtype, copy=False)
        return out

    # ------------------------------------------------------------------ adding data
    def add_episode(
        self,
        *,
        observations,
        actions,
        rewards,
        terminations,
        truncations,
        behaviour_log_prob=None,
        policy_id=None,
        task_id=None,
        sim_state: Mapping[str, np.ndarray] | None = None,
        infos: Mapping[str, np.ndarray] | None = None,
        source: int = 0,
    ) -> None:
        """Append one episode (observations and sim_state with T+1 rows, the rest T)."""
        states = _flatten_states("observations", observations)
        if sim_state:
            states.update({f"sim_state/{k}": np.asarray(v) for k, v in sim_state.items()})
        steps = {
            "actions": np.asarray(actions),
            "rewards": np.asarray(rewards),
            "terminations": np.asarray(terminations),
            "truncations": np.asarray(truncations),
        }
        length = len(steps["rewards"])
        for name, value in (("behaviour_log_prob", behaviour_log_prob), ("policy_id", policy_id),
                            ("task_id", task_id)):
            if value is not None:
                value = np.asarray(value)
                steps[name] = np.full(length, value) if value.ndim == 0 else value
        for k, v in (infos or {}).items():
            steps[f"infos/{k}"] = np.asarray(v)
        ep = self.num_episodes
        if length < 1:
            raise DatasetFormatError(self.path, f"episode {ep} has no steps", field="rewards",
                                     hint="drop empty episodes before writing")
        for path, arr in states.items():
            if len(arr) != length + 1:
                raise DatasetFormatError(
                    self.path, f"episode {ep} has {len(arr)} rows, expected T+1 = {length + 1} "
                    "(the observations before each of the T actions and the final one)", field=path,
                    hint="include the final observation returned by the last env.step")
            steps[path] = arr[:-1]
        for path, arr in steps.items():
            if len(arr) != length:
                raise DatasetFormatError(self.path, f"episode {ep} has {len(arr)} rows, expected T = {length}",
                                         field=path, hint="per-step arrays must all have one row per action")
        finals = {fmt.final_path(p): arr[-1:] for p, arr in states.items()}
        self.add_block(steps, lengths=np.array([length]), finals=finals, sources=np.array([source]))

    def add_block(self, steps: dict[str, np.ndarray], *, lengths: np.ndarray, finals: dict[str, np.ndarray],
                  sources: np.ndarray) -> None:
        """Append several whole episodes given as flat arrays (used to save derived datasets).

        ``steps`` maps array paths to [sum(lengths), ...] arrays; ``finals`` maps
        ``episodes/final/...`` paths to [len(lengths), ...] arrays.
        """
        if self._closed:
            raise RuntimeError("writer is closed")
        lengths = np.asarray(lengths, dtype=np.int64)
        ep0 = self.num_episodes
        term = np.asarray(steps["terminations"], dtype=bool)
        trunc = np.asarray(steps["truncations"], dtype=bool)
        ends = np.cumsum(lengths) - 1
        done = term | trunc
        if not done[ends].all():
            bad = ep0 + int(np.flatnonzero(~done[ends])[0])
            raise DatasetFormatError(
                self.path, f"episode {bad} ends with neither termination nor truncation",
                field="terminations/truncations",
                hint="mark the last step truncated if the episode was cut by a time limit or the data budget")
        done[ends] = False
        if done.any():
            step = int(np.flatnonzero(done)[0])
            bad = ep0 + int(np.searchsorted(ends, step))
            raise DatasetFormatError(
                self.path, f"episode {bad} is terminated or truncated before its last step (step {step})",
                field="terminations/truncations", hint="split the data into episodes at every end flag")
        for path in ("rewards", *(p for p in steps if p.startswith("observations"))):
            arr = np.asarray(steps[path])
            if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                raise DatasetFormatError(self.path, f"non-finite values in episodes {ep0}..", field=path,
                                         hint="remove or fix the NaN/inf values before writing")
        episode_arrays = {
            "episodes/length": lengths,
            "episodes/source": np.asarray(sources, dtype=np.int32),
            **finals,
        }
        if self._schema is None:
            self._fix_schema({k: np.asarray(v) for k, v in steps.items()}, episode_arrays)
        steps = self._check_against_schema({k: np.asarray(v) for k, v in steps.items()}, "step")
        episode_arrays = self._check_against_schema(episode_arrays, "episode")
        self._check_in_space(steps, lambda row: ep0 + int(np.searchsorted(ends, row)))
        self._check_in_space(episode_arrays, lambda row: ep0 + row)
        for path, arr in steps.items():
            self._buffer_steps[path].append(arr)
        for path, arr in episode_arrays.items():
            self._buffer_episodes[path].append(arr)
        self._buffered += int(lengths.sum())
        self.num_steps += int(lengths.sum())
        self.num_episodes += len(lengths)
        if self._buffered >= self._flush_steps:
            self._flush()

    def _create(self, path: str, first_rows: int) -> h5py.Dataset:
        # HDF5 allocates whole chunks, so a chunk never exceeds the first block written: small
        # datasets stay small, and large ones get ~CHUNK_BYTES chunks for one-pass reads.
        shape, dtype = self._schema[path]
        row_bytes = max(1, dtype.itemsize * int(np.prod(shape)))
        chunk_rows = max(1, min(fmt.CHUNK_BYTES // row_bytes, first_rows))
        return self._file.create_dataset(
            path, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
            chunks=(chunk_rows, *shape), compression=self._compression, track_times=False)

    def _append(self, path: str, arr: np.ndarray) -> None:
        ds = self._file[path] if path in self._file else self._create(path, len(arr))
        n = ds.shape[0]
        ds.resize(n + len(arr), axis=0)
        ds[n:] = arr
        self._hashes[path].update(np.ascontiguousarray(arr).data)

    def _flush(self) -> None:
        if self._schema is None:
            return
        for buffers in (self._buffer_steps, self._buffer_episodes):
            for path, chunks in buffers.items():
                if chunks:
                    self._append(path, np.concatenate(chunks))
                    chunks.clear()
        self._buffered = 0

    # ------------------------------------------------------------------ finishing
    def close(self) -> Path:
        """Finish the file and atomically move it to its final path."""
        if self._closed:
            return self.path
        if self.num_episodes == 0:
            self.abort()
            raise DatasetFormatError(self.path, "no episodes were written", hint="add at least one episode")
        try:
            self._flush()
            f = self._file
            lengths = f["episodes/length"][()]
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
            f.create_dataset("episodes/start", data=starts, track_times=False)
            h = hashlib.sha256()
            h.update(starts.data)
            self._hashes["episodes/start"] = h
            attrs = dict(self._attrs)
            attrs["library_versions"] = library_versions()
            attrs["checksums"] = {p: self._hashes[p].hexdigest() for p in sorted(self._hashes)}
            f.attrs[fmt.ATTR_FORMAT_VERSION] = fmt.FORMAT_VERSION
            for key in fmt.TEXT_ATTRS:
                f.attrs[key] = attrs[key] or ""
            for key in fmt.JSON_ATTRS:
                f.attrs[key] = json.dumps(attrs[key], sort_keys=True)
            f.close()
            self._file = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; the target path is left untouched."""
        if self._file is not None:
            try:
                self._file.close()
            except Exception:
                pass
            self._file = None
        self._tmp.unlink(missing_ok=True)
        self._closed = True

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
