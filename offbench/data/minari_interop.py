"""Two-way conversion between offbench datasets and Minari 0.5 datasets.

offbench keeps flat per-step arrays, an episode index and each episode's final observation
(``offbench.data.format``); Minari keeps one HDF5 group per episode with T+1 observations.
Both keep terminations and truncations apart, so the end flags convert without loss.

Mapping (``export_to_minari``; ``import_from_minari`` is its exact inverse)::

    offbench                                  Minari (group episode_<e>, or metadata.json)
    ----------------------------------------  -------------------------------------------------
    observations[s:e] + final observation     observations: T+1 rows (a sub-group per Dict key)
    actions, rewards, terminations,           actions, rewards, terminations, truncations:
      truncations                               T rows, stored exactly
    behaviour_log_prob, policy_id, task_id    infos/<name>: T+1 rows, row t = step t and row T
                                                repeats row T-1 ("action" alignment)
    sim_state/<k> + final sim_state           infos/sim_state/<k>: T+1 rows as they are ("state")
    infos/<name>                              infos/<name>: T+1 rows, row t+1 = step t and row 0
                                                repeats row 1 ("next" alignment: Minari's own
                                                convention, where row 0 holds the reset info and
                                                row t+1 the info returned by step t)
    episodes/source[e]                        episode attribute ``offbench_source``
    reference_scores random / expert          metadata ref_min_score / ref_max_score
    observation_space, action_space           metadata observation_space / action_space
    env_spec (if the env id is registered)    metadata env_spec
    everything else (ids, env_spec dict,      metadata["offbench"]: a JSON block that also
      description, behaviour_policies,          records which Minari info came from which
      sources, full reference_scores)           offbench array and how it was padded

An offbench info whose first path segment would clash with the names above
(``behaviour_log_prob``, ``policy_id``, ``task_id``, ``sim_state``, or ``infos`` itself) is stored as
``infos/infos/<name>`` instead; the ``offbench`` block records the mapping either way.

Ids: an offbench id ``suite/env/name-vN`` is a valid Minari id (namespace ``suite/env``), so
the default Minari id is the offbench id unchanged. The other way round, a Minari id is kept
if it matches offbench's id pattern; otherwise it becomes ``minari/<namespace>/<name>-vN``
with the namespace (or, without one, the env id) lower-cased and every run of characters
outside ``[a-z0-9_]`` replaced by ``_`` (see :func:`default_dataset_id`).

Minari datasets written by other tools have no ``offbench`` block: their numeric infos go to
``infos/<path>`` (T+1 rows: the reset row 0 is dropped; T rows: kept as they are), non-numeric
ones are skipped with a warning, and an episode that ends with neither flag (Minari allows
that at the end of a collection) gets its last step marked truncated.

Minari finds datasets through the ``MINARI_DATASETS_PATH`` environment variable; both
functions set it for the duration of the call when ``minari_root`` is given, so they are not
safe to run concurrently from several threads with different roots.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import shutil
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec

import minari
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from minari.storage import get_dataset_path

from offbench.data import format as fmt
from offbench.data.catalogue import ID_PATTERN, cached_path, check_dataset_id
from offbench.data.dataset import Dataset
from offbench.data.writer import DatasetWriter
from offbench.errors import OffbenchError

MINARI_ROOT_ENV = "MINARI_DATASETS_PATH"
# Key of the metadata.json block that makes an exported dataset convertible back exactly.
OFFBENCH_METADATA_KEY = "offbench"
# Bump when the layout of that block or the info alignment changes.
INTEROP_VERSION = 1
# Episode attribute holding offbench's episodes/source index.
SOURCE_ATTR = "offbench_source"
# Steps per batch of episodes handed to Minari, so an export never holds a second full copy.
EXPORT_BATCH_STEPS = 65536

# How an array's rows sit in Minari's T+1-row infos (see the module docstring).
ALIGN_STATE = "state"    # T+1 rows already; the last one is the final value
ALIGN_ACTION = "action"  # row t = step t; the padding row T repeats row T-1
ALIGN_NEXT = "next"      # row t+1 = step t; the padding row 0 repeats row 1
ALIGN_STEP = "step"      # T rows (foreign datasets only); kept as they are

_RESERVED_INFO_NAMES = (*fmt.OPTIONAL_STEP_ARRAYS, "sim_state", "infos")

# Minari's nudges to fill in provenance fields that an export has no value for.
_MINARI_NAG = (r"`(code_permalink|author|author_email|algorithm_name|description|eval_env)` is set to None"
               r"|env_spec is None")


# ---------------------------------------------------------------------- shared helpers
@contextlib.contextmanager
def _minari_root(root: str | os.PathLike | None) -> Iterator[None]:
    """Point Minari at ``root`` for the duration of the block, then restore the variable."""
    if root is None:
        yield
        return
    previous = os.environ.get(MINARI_ROOT_ENV)
    os.environ[MINARI_ROOT_ENV] = str(Path(root).expanduser().absolute())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MINARI_ROOT_ENV, None)
        else:
            os.environ[MINARI_ROOT_ENV] = previous


def _root_dir() -> Path:
    """The Minari root in effect (Minari creates it if missing)."""
    return Path(get_dataset_path())


def _parse_minari_id(minari_id: str) -> tuple[str | None, str, int | None]:
    """(namespace, name, version) of a Minari id, or OffbenchError if Minari would reject it."""
    try:
        return parse_dataset_id(minari_id)
    except TypeError:
        # Minari 0.5.4 accepts ids without '-vN' in its regex but then fails on int(None).
        match = re.fullmatch(r"(?:(?P<ns>.+)/)?(?P<name>[-_\w]+)", minari_id)
        if match:
            return match.group("ns"), match.group("name"), None
    except ValueError:
        pass
    raise OffbenchError(
        f"{minari_id!r} is not a Minari dataset id: Minari ids look like '(namespace/)name-vN', "
        "e.g. 'lite/pendulum/random-v0'")


def _nest(flat: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """{'a/b': x} -> {'a': {'b': x}}: Minari stores nested info dicts as HDF5 sub-groups."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': x}} -> {'a/b': x}."""
    out: dict[str, Any] = {}
    for key, value in nested.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, path + "/"))
        else:
            out[path] = value
    return out


def pad_to_minari(array: np.ndarray, align: str) -> np.ndarray:
    """T offbench rows -> the T+1 rows Minari infos hold (``state`` arrays are already T+1)."""
    if align == ALIGN_ACTION:
        return np.concatenate([array, array[-1:]])
    if align == ALIGN_NEXT:
        return np.concatenate([array[:1], array])
    return array


def unpad_from_minari(rows: np.ndarray, align: str) -> np.ndarray:
    """Exact inverse of :func:`pad_to_minari` (``step`` rows are returned as they are)."""
    if align == ALIGN_ACTION:
        return rows[:-1]
    if align == ALIGN_NEXT:
        return rows[1:]
    return rows


# ---------------------------------------------------------------------- export
def _as_dataset(dataset: Dataset | str | os.PathLike) -> Dataset:
    if isinstance(dataset, Dataset):
        return dataset
    from offbench.data import load_dataset

    return load_dataset(dataset)


def _default_minari_id(dataset: Dataset) -> str:
    # Every offbench id is a valid Minari id with the nested namespace 'suite/env'.
    dataset_id = dataset.metadata.dataset_id
    if not dataset_id or not ID_PATTERN.match(dataset_id):
        raise OffbenchError(
            f"dataset {dataset.path or dataset_id!r} has no offbench id ({dataset_id!r}) to use as "
            "its Minari id: pass minari_id, e.g. export_to_minari(ds, 'mysuite/myenv/name-v0')")
    return dataset_id


def _export_env_spec(dataset: Dataset) -> EnvSpec | None:
    """The EnvSpec to give Minari, or None when the env id is not registered in Gymnasium.

    The dataset's own env_spec (an ``EnvSpec.to_json`` dict) is preferred, since it records
    e.g. a non-default max_episode_steps; otherwise the registered spec is used with the
    recorded max_episode_steps / kwargs applied on top.
    """
    meta = dataset.metadata
    if not meta.env_id or meta.env_id not in gym.registry:
        return None
    recorded = meta.env_spec
    if isinstance(recorded, str):  # to_json() text stored as is rather than parsed
        try:
            recorded = json.loads(recorded)
        except ValueError:
            recorded = None
    recorded = recorded if isinstance(recorded, dict) else {}
    try:
        spec = EnvSpec.from_json(json.dumps(recorded))
    except (KeyError, TypeError, ValueError, gym.error.Error):
        spec = None
    if spec is None or spec.id != meta.env_id:
        spec = gym.spec(meta.env_id)
        overrides = {k: recorded[k] for k in ("max_episode_steps", "kwargs") if k in recorded}
        if overrides:
            spec = replace(spec, **overrides)
    try:
        # Minari calls gym.make on the spec; an env whose dependencies are missing is
        # exported without a spec rather than failing the whole export.
        gym.make(spec).close()
    except Exception as exc:  # noqa: BLE001 - any failure to build the env means "no spec"
        warnings.warn(f"env {meta.env_id!r} is registered but cannot be made ({exc}); exporting "
                      "without env_spec (spaces are still recorded)", stacklevel=3)
        return None
    return spec


def _info_layout(dataset: Dataset) -> dict[str, dict[str, str]]:
    """Minari info path -> {"array": offbench path, "align": alignment} for every extra array."""
    layout: dict[str, dict[str, str]] = {}
    for path in dataset.step_paths:
        if path in fmt.OPTIONAL_STEP_ARRAYS:
            layout[path] = {"array": path, "align": ALIGN_ACTION}
        elif path.startswith("sim_state/"):
            layout[path] = {"array": path, "align": ALIGN_STATE}
        elif path.startswith(fmt.INFO_GROUP + "/"):
            name = path.split("/", 1)[1]
            # Keep offbench infos from shadowing the names above (recorded, so import is exact).
            minari_path = path if name.split("/", 1)[0] in _RESERVED_INFO_NAMES else name
            layout[minari_path] = {"array": path, "align": ALIGN_NEXT}
    return layout


def _episode_buffer(dataset: Dataset, index: int, layout: Mapping[str, Mapping[str, str]]) -> EpisodeBuffer:
    episode = dataset.episode(index)
    infos = {}
    for minari_path, entry in layout.items():
        offbench_path = entry["array"]
        if entry["align"] == ALIGN_STATE:
            rows = episode.sim_state[offbench_path.split("/", 1)[1]]
        else:
            rows = pad_to_minari(episode.extras[offbench_path], entry["align"])
        infos[minari_path] = rows
    return EpisodeBuffer(
        observations=episode.observations,
        actions=episode.actions,
        rewards=episode.rewards,
        terminations=episode.terminations,
        truncations=episode.truncations,
        # None, not {}: Minari would otherwise write an empty infos group.
        infos=_nest(infos) if infos else None,
    )


def _episode_batches(lengths: np.ndarray, max_steps: int) -> Iterator[range]:
    """Consecutive episode ranges of about ``max_steps`` steps each (at least one episode)."""
    start, steps = 0, 0
    for i, length in enumerate(lengths):
        steps += int(length)
        if steps >= max_steps:
            yield range(start, i + 1)
            start, steps = i + 1, 0
    if start < len(lengths):
        yield range(start, len(lengths))


def _offbench_block(dataset: Dataset, layout: dict[str, dict[str, str]]) -> dict[str, Any]:
    meta = dataset.metadata
    return {
        "interop_version": INTEROP_VERSION,
        "format_version": meta.format_version,
        "dataset_id": meta.dataset_id,
        "env_id": meta.env_id,
        "env_spec": meta.env_spec,
        "description": meta.description,
        "behaviour_policies": meta.behaviour_policies,
        "reference_scores": meta.reference_scores,
        "sources": meta.sources,
        "infos": layout,
    }


def _reference_metadata(reference_scores: dict | None) -> dict[str, float]:
    # Written after creation rather than passed to create_dataset_from_buffers: Minari only
    # keeps them when an env spec exists and would roll out 100 random episodes to fill a
    # missing ref_min_score.
    ref = reference_scores or {}
    out = {}
    if ref.get("random") is not None:
        out["ref_min_score"] = float(ref["random"])
    if ref.get("expert") is not None:
        out["ref_max_score"] = float(ref["expert"])
    return out


def _prepare_target(minari_id: str, overwrite: bool) -> Path:
    """The dataset directory for ``minari_id``, cleared if ``overwrite``; error if it exists."""
    target = get_dataset_path(minari_id)
    if not target.exists():
        return target
    if not (target / "data").exists() and any(target.iterdir()):
        # A namespace directory holding other datasets: never delete it.
        raise OffbenchError(f"{target} is a Minari namespace, not a dataset: choose another minari_id")
    if not overwrite:
        raise OffbenchError(
            f"Minari dataset {minari_id!r} already exists at {target}: pass overwrite=True "
            "(`--overwrite` on the command line) to replace it, or choose another minari_id")
    shutil.rmtree(target)
    return target


def export_to_minari(
    dataset: Dataset | str | os.PathLike,
    minari_id: str | None = None,
    *,
    minari_root: str | os.PathLike | None = None,
    overwrite: bool = False,
) -> str:
    """Write ``dataset`` (a Dataset, an id or a path) as a Minari dataset; return its Minari id.

    ``minari_id`` defaults to the offbench id. ``minari_root`` overrides Minari's
    ``MINARI_DATASETS_PATH`` for this call. An existing Minari dataset is an error unless
    ``overwrite``. See the module docstring for how each array is mapped.
    """
    dataset = _as_dataset(dataset)
    minari_id = minari_id or _default_minari_id(dataset)
    if _parse_minari_id(minari_id)[2] is None:
        # Minari 0.5.4 cannot create a dataset whose id has no version.
        raise OffbenchError(f"Minari id {minari_id!r} has no version: add one, e.g. {minari_id}-v0")
    with _minari_root(minari_root):
        target = _prepare_target(minari_id, overwrite)
        env_spec = _export_env_spec(dataset)
        layout = _info_layout(dataset)
        try:
            _write_minari(dataset, minari_id, env_spec, layout)
        except BaseException:
            # Never leave a half-written dataset that Minari would list or refuse to overwrite.
            shutil.rmtree(target, ignore_errors=True)
            raise
    return minari_id


def _write_minari(dataset: Dataset, minari_id: str, env_spec: EnvSpec | None,
                  layout: dict[str, dict[str, str]]) -> None:
    meta = dataset.metadata
    minari_dataset = None
    for batch in _episode_batches(dataset.episode_lengths, EXPORT_BATCH_STEPS):
        buffers = [_episode_buffer(dataset, i, layout) for i in batch]
        if minari_dataset is None:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=_MINARI_NAG, category=UserWarning)
                minari_dataset = minari.create_dataset_from_buffers(
                    dataset_id=minari_id, buffer=buffers, env=env_spec,
                    observation_space=meta.observation_space, action_space=meta.action_space,
                    description=meta.description or f"Exported from offbench dataset {meta.dataset_id}",
                    data_format="hdf5",
                    # Lossless: offbench arrays must come back bit for bit.
                    jpeg_encoding=False,
                )
        else:
            minari_dataset.update_dataset_from_buffer(buffers)
        minari_dataset.storage.update_episode_metadata(
            [{SOURCE_ATTR: int(dataset.episode_sources[i])} for i in batch], episode_indices=batch)
    minari_dataset.storage.update_metadata({
        **_reference_metadata(meta.reference_scores),
        OFFBENCH_METADATA_KEY: _offbench_block(dataset, layout),
    })


# ---------------------------------------------------------------------- import
def _slug(text: str, *, keep_dash: bool = False) -> str:
    allowed = "a-z0-9_-" if keep_dash else "a-z0-9_"
    slug = re.sub(f"[^{allowed}]+", "_", text.lower()).strip("_-")
    return slug or "dataset"


def default_dataset_id(minari_id: str, env_id: str | None = None) -> str:
    """The offbench id an imported Minari dataset gets by default (see the module docstring)."""
    if ID_PATTERN.match(minari_id):
        return minari_id
    namespace, name, version = _parse_minari_id(minari_id)
    group = _slug(namespace) if namespace else _slug(env_id or "local")
    return check_dataset_id(f"minari/{group}/{_slug(name, keep_dash=True)}-v{version or 0}")


def _load_minari(minari_id: str):
    _parse_minari_id(minari_id)
    root = _root_dir()
    if not (get_dataset_path(minari_id) / "data").is_dir():
        known = _local_ids(root)
        close = difflib.get_close_matches(minari_id, known, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else (
            f"; it has {', '.join(known[:10])}" if known else "; it holds no datasets")
        raise OffbenchError(
            f"unknown Minari dataset {minari_id!r}: not found under the Minari root {root} "
            f"(set by minari_root or ${MINARI_ROOT_ENV}){hint}. Download it first with "
            f"`minari download {minari_id}` or point minari_root at the right directory")
    try:
        return minari.load_dataset(minari_id, download=False)
    except (ValueError, ImportError, KeyError, OSError) as exc:
        # e.g. a dataset written by a Minari version this one does not read.
        raise OffbenchError(f"cannot read Minari dataset {minari_id!r} under {root}: {exc}") from None


def _local_ids(root: Path) -> list[str]:
    return sorted(p.parent.parent.relative_to(root).as_posix()
                  for p in root.glob("**/data/metadata.json"))


def _check_space(space: gym.Space, what: str, minari_id: str) -> None:
    leaves = space.spaces.values() if isinstance(space, gym.spaces.Dict) else [space]
    for leaf in leaves:
        if not isinstance(leaf, (gym.spaces.Box, gym.spaces.Discrete)):
            raise OffbenchError(
                f"Minari dataset {minari_id!r} has a {type(leaf).__name__} {what} space ({space}); "
                "offbench stores Box, Discrete and a flat Dict of those")


@dataclass
class _ImportPlan:
    """How to turn each Minari episode into offbench arrays."""

    minari_id: str
    block: dict  # the "offbench" metadata block ({} for datasets from other tools)
    infos: dict[str, dict[str, str]] | None = None  # fixed by the first episode
    skipped: set[str] = field(default_factory=set)  # info paths left out, for the warning

    @property
    def from_offbench(self) -> bool:
        return bool(self.block)

    def fix_infos(self, infos: Mapping[str, np.ndarray], length: int) -> None:
        """Choose the infos to carry from the first episode; every later one must have them."""
        if self.from_offbench:
            self.infos = dict(self.block.get("infos") or {})
            return
        self.infos = {}
        for path, value in infos.items():
            value = np.asarray(value)
            if value.dtype.kind not in "biuf" or value.ndim == 0:
                self.skipped.add(path)
            elif len(value) in (length, length + 1):
                # T+1 rows follow Minari's collector: row 0 is the reset info, dropped.
                align = ALIGN_NEXT if len(value) == length + 1 else ALIGN_STEP
                self.infos[path] = {"array": f"{fmt.INFO_GROUP}/{path}", "align": align}
            else:
                self.skipped.add(path)

    def convert_infos(self, infos: Mapping[str, Any], length: int, episode_id: int) -> dict[str, np.ndarray]:
        out = {}
        for path, entry in self.infos.items():
            if path not in infos:
                raise OffbenchError(
                    f"episode {episode_id} of Minari dataset {self.minari_id!r} lacks the info {path!r} "
                    "that earlier episodes have; offbench needs the same arrays in every episode")
            rows = unpad_from_minari(np.asarray(infos[path]), entry["align"])
            expected = length + 1 if entry["align"] == ALIGN_STATE else length
            if len(rows) != expected:
                raise OffbenchError(
                    f"episode {episode_id} of Minari dataset {self.minari_id!r}: info {path!r} has "
                    f"{len(infos[path])} rows, which does not fit an episode of {length} steps")
            out[entry["array"]] = rows
        self.skipped.update(set(infos) - set(self.infos))
        return out


def _end_flags(episode, minari_id: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Terminations and truncations as stored; the last step marked truncated if unflagged."""
    term = np.asarray(episode.terminations, dtype=bool)
    trunc = np.asarray(episode.truncations, dtype=bool).copy()
    inner = np.flatnonzero((term | trunc)[:-1])
    if len(inner):
        raise OffbenchError(
            f"episode {episode.id} of Minari dataset {minari_id!r} ends at step {int(inner[0])}, "
            f"before its last step ({len(term) - 1}); split it into episodes before importing")
    open_end = not (term[-1] or trunc[-1])
    if open_end:
        # Minari lets a collection stop mid-episode; the data was cut, which is a truncation.
        trunc[-1] = True
    return term, trunc, open_end


def _observations(episode, length: int, minari_id: str):
    obs = episode.observations
    rows = len(next(iter(obs.values()))) if isinstance(obs, Mapping) else len(obs)
    if rows != length + 1:
        raise OffbenchError(
            f"episode {episode.id} of Minari dataset {minari_id!r} has {rows} observations for "
            f"{length} steps; offbench needs T+1 (the final observation included)")
    return obs


def _import_metadata(minari_dataset, minari_id: str, block: dict) -> dict[str, Any]:
    """DatasetWriter keyword arguments other than path and dataset_id."""
    raw = minari_dataset.storage.metadata
    spec = minari_dataset.env_spec
    if block:
        env_id, env_spec = block.get("env_id") or "", block.get("env_spec")
    else:
        env_id = spec.id if spec is not None else ""
        try:
            env_spec = json.loads(spec.to_json()) if spec is not None else None
        except (TypeError, ValueError):
            env_spec = None  # kwargs that are not JSON: keep the id only
    reference = dict(block.get("reference_scores") or {})
    if raw.get("ref_min_score") is not None:
        reference["random"] = float(raw["ref_min_score"])
    if raw.get("ref_max_score") is not None:
        reference["expert"] = float(raw["ref_max_score"])
    return {
        "env_id": env_id,
        "env_spec": env_spec,
        "observation_space": minari_dataset.observation_space,
        "action_space": minari_dataset.action_space,
        "recipe": {"kind": "minari_import", "minari_id": minari_id,
                   "minari_version": minari_dataset.minari_version},
        "behaviour_policies": block.get("behaviour_policies") or [],
        "reference_scores": reference or None,
        "sources": block.get("sources"),  # None: filled in once the offbench id is known
        "description": block["description"] if "description" in block
        else raw.get("description") or f"Imported from Minari dataset {minari_id}",
    }


def import_from_minari(
    minari_id: str,
    *,
    dataset_id: str | None = None,
    out: str | os.PathLike | None = None,
    minari_root: str | os.PathLike | None = None,
) -> Path:
    """Convert the local Minari dataset ``minari_id`` into an offbench file; return its path.

    Reads episode by episode, so memory stays bounded. ``dataset_id`` defaults to
    :func:`default_dataset_id`, ``out`` to the cache path of that id. Nothing is downloaded.
    """
    with _minari_root(minari_root):
        minari_dataset = _load_minari(minari_id)
        block = minari_dataset.storage.metadata.get(OFFBENCH_METADATA_KEY) or {}
        kwargs = _import_metadata(minari_dataset, minari_id, block)
        _check_space(kwargs["observation_space"], "observation", minari_id)
        _check_space(kwargs["action_space"], "action", minari_id)
        env_for_id = kwargs["env_id"] or None
        dataset_id = check_dataset_id(dataset_id or default_dataset_id(minari_id, env_for_id))
        kwargs["sources"] = kwargs["sources"] or [{"dataset_id": dataset_id, "minari_id": minari_id}]
        path = Path(out) if out is not None else cached_path(dataset_id)
        plan = _ImportPlan(minari_id, block)
        with DatasetWriter(path, dataset_id=dataset_id, **kwargs) as writer:
            counts = _copy_episodes(minari_dataset, plan, writer)
    _warn_about(minari_id, plan, counts)
    return path


def _copy_episodes(minari_dataset, plan: _ImportPlan, writer: DatasetWriter) -> dict[str, int]:
    counts = {"open_ended": 0, "empty": 0, "episodes": 0}
    indices = minari_dataset.episode_indices
    attrs = minari_dataset.storage.get_episode_metadata(indices)
    for episode, episode_attrs in zip(minari_dataset.iterate_episodes(indices), attrs):
        length = len(episode.rewards)
        counts["episodes"] += 1
        if length == 0:
            counts["empty"] += 1
            continue
        infos = _flatten(episode.infos or {})
        if plan.infos is None:
            plan.fix_infos(infos, length)
        term, trunc, open_end = _end_flags(episode, plan.minari_id)
        counts["open_ended"] += open_end
        arrays = plan.convert_infos(infos, length, episode.id)
        writer.add_episode(
            observations=_observations(episode, length, plan.minari_id),
            actions=episode.actions,
            rewards=episode.rewards,
            terminations=term,
            truncations=trunc,
            behaviour_log_prob=arrays.pop("behaviour_log_prob", None),
            policy_id=arrays.pop("policy_id", None),
            task_id=arrays.pop("task_id", None),
            sim_state={p.split("/", 1)[1]: a for p, a in arrays.items() if p.startswith("sim_state/")},
            infos={p.split("/", 1)[1]: a for p, a in arrays.items() if p.startswith(fmt.INFO_GROUP + "/")},
            source=int(episode_attrs.get(SOURCE_ATTR, 0)) if plan.from_offbench else 0,
        )
    return counts


def _warn_about(minari_id: str, plan: _ImportPlan, counts: dict[str, int]) -> None:
    if counts["open_ended"]:
        warnings.warn(
            f"{counts['open_ended']} of {counts['episodes']} episodes of Minari dataset {minari_id!r} end "
            "with neither termination nor truncation; their last step was marked truncated",
            stacklevel=3)
    if counts["empty"]:
        warnings.warn(f"skipped {counts['empty']} empty episodes of Minari dataset {minari_id!r}",
                      stacklevel=3)
    if plan.skipped:
        warnings.warn(
            f"skipped infos of Minari dataset {minari_id!r} that are not numeric per-step arrays "
            f"(or appear in only some episodes): {', '.join(sorted(plan.skipped))}", stacklevel=3)


__all__ = ["default_dataset_id", "export_to_minari", "import_from_minari"]
