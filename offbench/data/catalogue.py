"""The dataset catalogue: one TOML card per dataset id, and the local cache.

Ids are shaped ``suite/env/name-vN`` (e.g. ``locomotion/hopper/medium-v0``); the card of
an id lives at ``datasets/<suite>/<env>/<name>-vN.toml``. Cached files live at
``$OFFBENCH_HOME/datasets/<suite>/<env>/<name>-vN.hdf5`` (default ``~/.cache/offbench``).
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from offbench.errors import CardError, DatasetNotFoundError

# The env part may hold dashes: OGBench's maze names (goal/pointmaze-medium/navigate-v0).
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]*/[a-z0-9][a-z0-9_-]*/[a-z0-9][a-z0-9_-]*-v(\d+)$")


def check_dataset_id(dataset_id: str) -> str:
    """Return ``dataset_id`` if it is shaped ``suite/env/name-vN`` (lower case), else raise."""
    if not isinstance(dataset_id, str) or not ID_PATTERN.match(dataset_id):
        raise DatasetNotFoundError(
            f"{dataset_id!r} is not a dataset id: ids look like 'suite/env/name-vN' in lower case "
            "(e.g. 'lite/pendulum/random-v0'); `offbench datasets list` shows them all")
    return dataset_id


def offbench_home() -> Path:
    return Path(os.environ.get("OFFBENCH_HOME") or Path.home() / ".cache" / "offbench")


def cached_path(dataset_id: str) -> Path:
    """Where the cache keeps the file of ``dataset_id`` (it may not exist yet)."""
    return offbench_home() / "datasets" / (check_dataset_id(dataset_id) + ".hdf5")


def catalogue_dir() -> Path:
    """The cards: ``$OFFBENCH_CATALOGUE``, the copy inside an installed wheel, or the repo's datasets/."""
    if os.environ.get("OFFBENCH_CATALOGUE"):
        return Path(os.environ["OFFBENCH_CATALOGUE"])
    packaged = Path(__file__).resolve().parents[1] / "_catalogue"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "datasets"


@dataclass
class DatasetCard:
    """A dataset's card: what it is, how it is made, and what its file must hash to."""

    id: str
    env_id: str
    description: str
    recipe: dict[str, Any]
    format_version: int = 1
    reference_scores: dict[str, Any] = field(default_factory=dict)
    size: dict[str, Any] = field(default_factory=dict)  # steps, episodes, bytes
    returns: dict[str, Any] = field(default_factory=dict)  # mean, std, min, max over episodes
    files: dict[str, Any] = field(default_factory=dict)  # sha256 (file), content_sha256, build info
    changelog: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None

    @property
    def suite(self) -> str:
        return self.id.split("/")[0]

    @property
    def env_name(self) -> str:
        return self.id.split("/")[1]

    @property
    def sha256(self) -> str | None:
        return self.files.get("sha256") or None

    @property
    def content_sha256(self) -> str | None:
        return self.files.get("content_sha256") or None

    def to_toml_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "env_id": self.env_id, "description": self.description,
            "format_version": self.format_version, "recipe": self.recipe,
        }
        for key in ("reference_scores", "size", "returns", "files"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        out["changelog"] = self.changelog
        return out

    def save(self, path: Path | None = None) -> Path:
        """Write the card as TOML (temporary file, then rename)."""
        path = Path(path or self.path)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(tomli_w.dumps(self.to_toml_dict()))
        os.replace(tmp, path)
        return path


def read_card(path: Path) -> DatasetCard:
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CardError(f"{path}: cannot read dataset card ({exc}); fix the TOML syntax") from None
    for key in ("id", "env_id", "description", "recipe"):
        if key not in data:
            raise CardError(f"{path}: dataset card lacks the required field {key!r}")
    check_dataset_id(data["id"])
    card = DatasetCard(
        id=data["id"], env_id=data["env_id"], description=data["description"], recipe=data["recipe"],
        format_version=int(data.get("format_version", 1)),
        reference_scores=data.get("reference_scores", {}), size=data.get("size", {}),
        returns=data.get("returns", {}), files=data.get("files", {}),
        changelog=data.get("changelog", []), path=Path(path))
    expected = catalogue_dir() / (card.id + ".toml")
    if Path(path).resolve() != expected.resolve() and Path(path).is_relative_to(catalogue_dir()):
        raise CardError(f"{path}: card id {card.id!r} does not match its location (expected {expected})")
    return card


def list_cards() -> list[DatasetCard]:
    root = catalogue_dir()
    if not root.is_dir():
        return []
    return sorted((read_card(p) for p in root.glob("*/*/*.toml")), key=lambda c: c.id)


def get_card(dataset_id: str) -> DatasetCard:
    """The card of ``dataset_id``; an unknown id raises with the closest known ids."""
    check_dataset_id(dataset_id)
    path = catalogue_dir() / (dataset_id + ".toml")
    if path.is_file():
        return read_card(path)
    known = [c.id for c in list_cards()]
    close = difflib.get_close_matches(dataset_id, known, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "`offbench datasets list` shows every id"
    raise DatasetNotFoundError(f"unknown dataset id {dataset_id!r}: {hint}")


def select_cards(patterns: list[str]) -> list[DatasetCard]:
    """The cards named by ``patterns``, in catalogue order, each once.

    A pattern is an exact id (``lite/pendulum/medium-v0``), a prefix of whole id parts
    (``locomotion``, ``locomotion/hopper``) or a shell glob (``lite/*/expert-v0``). A pattern
    that names nothing raises, so a typo never silently builds less than asked for."""
    cards = list_cards()
    chosen: dict[str, DatasetCard] = {}
    for pattern in patterns:
        stripped = pattern.strip("/")
        matched = [c for c in cards if c.id == stripped or c.id.startswith(stripped + "/")
                   or fnmatch.fnmatchcase(c.id, stripped)]
        if not matched:
            if ID_PATTERN.match(stripped):
                get_card(stripped)  # raises with the closest known ids
            suites = sorted({c.suite for c in cards})
            raise DatasetNotFoundError(
                f"{pattern!r} names no catalogue dataset: give an id, a suite ({', '.join(suites)}), "
                f"a suite/env prefix or a glob such as 'lite/*/expert-v0'; `offbench datasets list` shows them all")
        chosen.update((c.id, c) for c in matched)
    return sorted(chosen.values(), key=lambda c: c.id)


def looks_like_path(value: str) -> bool:
    return value.endswith((".hdf5", ".h5")) or os.sep in value and Path(value).exists() or Path(value).is_file()


def resolve_dataset_path(id_or_path: str | os.PathLike) -> Path:
    """A dataset file path for an id (from the cache) or a path.

    A catalogue id that is not cached raises :class:`DatasetNotFoundError` saying how to get it
    (``load_dataset(..., download=True)`` fetches it from the mirrors instead).
    """
    text = str(id_or_path)
    if isinstance(id_or_path, Path) or looks_like_path(text):
        return Path(text)
    check_dataset_id(text)
    if cached_path(text).is_file():  # catalogue datasets, and local ones without a card (imports)
        return cached_path(text)
    card = get_card(text)
    raise DatasetNotFoundError(
        f"dataset {card.id!r} is not in the cache ({cached_path(card.id)}): run `offbench datasets download "
        f"{card.id}` or build it locally with `offbench datasets build {card.id}`")
