"""The entry format: read one entry file and check its shape (types, required fields, limits).

This module checks the structure only; what the values must agree with (catalogue cards, the
protocol, plausible ranges, other entries) is ``offbench.leaderboard.validate``. The format is
documented in ``leaderboard/SCHEMA.md``; bump ``SCHEMA_VERSION`` when it changes.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from offbench.errors import OffbenchError

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAX_ENTRY_BYTES = 5 * 1024 * 1024
# Names become file names and HTML ids: no separators, no traversal, no markup.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A built-in algorithm name or an import path ``package.module:Class``.
IMPORT_PATH_PATTERN = re.compile(r"^(?:[a-z][a-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
                                 r":[A-Za-z_][A-Za-z0-9_]*)$")
PROTOCOL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
COMMIT_PATTERN = re.compile(r"^[0-9a-f]{7,64}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
URL_PATTERN = re.compile(r"^https?://[^\s<>\"'`]{1,500}$")
SELECTION_KINDS = ("offline", "online")
MAX_TEXT = 300
MAX_AUTHORS = 50
MAX_EPISODES = 10_000
SCHEMA_DOC = "leaderboard/SCHEMA.md"

TOP_LEVEL = {"schema_version", "name", "algorithm", "authors", "paper", "code", "code_commit",
             "offbench_version", "suite", "protocol", "hyperparameter_selection", "compute", "config", "runs"}
RUN_KEYS = {"dataset", "seed", "dataset_sha256", "content_sha256", "gradient_steps", "settings", "evaluations"}
EVAL_KEYS = {"step", "episodes", "eval_seed", "returns", "success", "success_rate"}


class EntryError(OffbenchError):
    """A rejected entry: names the file, the field and the value, and says what to do."""

    def __init__(self, path: str | Path, field: str | None, problem: str, *, value: Any = ...,
                 hint: str | None = None):
        self.path, self.field, self.problem = str(path), field, problem
        where = self.path + (f" [{field}]" if field else "")
        message = f"{where}: {problem}"
        if value is not ...:
            shown = repr(value)
            message += f" (got {shown[:120] + '...' if len(shown) > 120 else shown})"
        message += f"\n  what to do: {hint or 'fix the entry; the format is documented in ' + SCHEMA_DOC}"
        super().__init__(message)


def _reject_constant(token: str):
    raise ValueError(f"{token} is not allowed (scores must be finite numbers)")


def read_entry(path: str | Path) -> dict[str, Any]:
    """Read and shape-check an entry file; raises :class:`EntryError` naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise EntryError(path, None, "no such entry file", hint="give the path of an entry JSON file")
    size = path.stat().st_size
    if size > MAX_ENTRY_BYTES:
        raise EntryError(path, None, f"the file is {size:,} bytes, over the {MAX_ENTRY_BYTES:,}-byte limit",
                         hint="entries hold raw evaluation returns only; drop anything else (run logs, "
                              "checkpoints) or evaluate fewer episodes per evaluation")
    try:
        text = path.read_bytes().decode("utf-8")
        raw = json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise EntryError(path, None, f"not UTF-8 text ({exc})", hint="save the entry as UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise EntryError(path, None, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                         hint="fix the JSON syntax (`python -m json.tool FILE` shows where)") from None
    except ValueError as exc:  # NaN / Infinity literals
        raise EntryError(path, None, str(exc), hint="record finite numbers; a diverged run is a failed run "
                         "and must be re-run or the entry withdrawn") from None
    return check_entry(raw, path)


def check_entry(raw: Any, path: str | Path = "entry") -> dict[str, Any]:
    """Shape-check a parsed entry; returns it unchanged."""
    c = _Checker(path)
    if not isinstance(raw, dict):
        raise EntryError(path, None, "an entry is a JSON object", value=type(raw).__name__)
    version = raw.get("schema_version")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise EntryError(path, "schema_version", f"unknown schema version; this offbench reads {SUPPORTED_VERSIONS}",
                         value=version, hint="write the entry with `offbench leaderboard submit` of this "
                                             "offbench version, or upgrade offbench")
    c.keys(raw, TOP_LEVEL, "", required=TOP_LEVEL)
    name = raw["name"]
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise EntryError(path, "name", f"names must match {NAME_PATTERN.pattern} (letters, digits, '.', '_', '-'; "
                         "at most 64 characters; no slashes or '..')", value=name,
                         hint="pick a short name such as 'myalgo-v2'")
    if ".." in name:
        raise EntryError(path, "name", "names must not contain '..'", value=name, hint="pick another name")
    algo = c.obj(raw["algorithm"], "algorithm", {"name", "version", "import_path"}, required={"name", "import_path"})
    c.text(algo["name"], "algorithm.name")
    if "version" in algo:
        c.text(algo["version"], "algorithm.version", optional=True)
    if not isinstance(algo["import_path"], str) or not IMPORT_PATH_PATTERN.match(algo["import_path"]):
        raise EntryError(path, "algorithm.import_path", "must be a built-in algorithm name (e.g. 'iql') or an "
                         "import path 'package.module:Class'", value=algo["import_path"])
    authors = raw["authors"]
    if not isinstance(authors, list) or len(authors) > MAX_AUTHORS:
        raise EntryError(path, "authors", f"a list of at most {MAX_AUTHORS} names", value=authors)
    for i, a in enumerate(authors):
        c.text(a, f"authors[{i}]")
    for key in ("paper", "code"):
        value = raw[key]
        if value is not None and (not isinstance(value, str) or not URL_PATTERN.match(value)):
            raise EntryError(path, key, "must be null or an http(s) URL", value=value,
                             hint="give a link starting with https://")
    commit = raw["code_commit"]
    if commit is not None and (not isinstance(commit, str) or not COMMIT_PATTERN.match(commit)):
        raise EntryError(path, "code_commit", "must be null or a lower-case hex git commit", value=commit)
    c.text(raw["offbench_version"], "offbench_version")
    c.text(raw["suite"], "suite")
    proto = c.obj(raw["protocol"], "protocol", {"name", "headline"}, required={"name"})
    if not isinstance(proto["name"], str) or not PROTOCOL_NAME_PATTERN.match(proto["name"]):
        raise EntryError(path, "protocol.name", "must be the name of a shipped protocol (e.g. 'lite')",
                         value=proto["name"])
    sel = c.obj(raw["hyperparameter_selection"], "hyperparameter_selection", {"kind", "budget"}, required={"kind"})
    if sel["kind"] not in SELECTION_KINDS:
        raise EntryError(path, "hyperparameter_selection.kind", f"must be one of {SELECTION_KINDS}",
                         value=sel["kind"])
    if sel["kind"] == "online":
        if "budget" not in sel:
            raise EntryError(path, "hyperparameter_selection.budget", "online selection must declare the online "
                             "evaluation budget used", hint="e.g. --selection 'online:20 evaluations per dataset'")
        c.text(sel["budget"], "hyperparameter_selection.budget")
    elif "budget" in sel:
        raise EntryError(path, "hyperparameter_selection.budget", "offline selection has no online budget",
                         value=sel["budget"], hint="drop the budget, or declare kind 'online'")
    compute = c.obj(raw["compute"], "compute", None)
    for key, value in compute.items():
        c.scalar(value, f"compute.{key}")
    c.json_value(raw["config"], "config", dict)
    runs = raw["runs"]
    if not isinstance(runs, list) or not runs:
        raise EntryError(path, "runs", "a non-empty list of runs (one per dataset and seed)",
                         value=type(runs).__name__)
    for i, run in enumerate(runs):
        _check_run(c, run, f"runs[{i}]")
    return raw


def _check_run(c: "_Checker", run: Any, where: str) -> None:
    run = c.obj(run, where, RUN_KEYS, required={"dataset", "seed", "dataset_sha256", "gradient_steps", "evaluations"})
    c.text(run["dataset"], f"{where}.dataset")
    c.integer(run["seed"], f"{where}.seed", low=0)
    if not isinstance(run["dataset_sha256"], str) or not SHA256_PATTERN.match(run["dataset_sha256"]):
        raise EntryError(c.path, f"{where}.dataset_sha256", "must be a 64-digit lower-case hex sha256",
                         value=run["dataset_sha256"])
    if run.get("content_sha256") is not None and (not isinstance(run["content_sha256"], str)
                                                  or not SHA256_PATTERN.match(run["content_sha256"])):
        raise EntryError(c.path, f"{where}.content_sha256", "must be null or a 64-digit hex sha256",
                         value=run["content_sha256"])
    c.integer(run["gradient_steps"], f"{where}.gradient_steps", low=1)
    if "settings" in run:
        c.json_value(run["settings"], f"{where}.settings", dict)
    evals = run["evaluations"]
    if not isinstance(evals, list) or not evals:
        raise EntryError(c.path, f"{where}.evaluations", "a non-empty list of evaluations", value=evals)
    for j, ev in enumerate(evals):
        w = f"{where}.evaluations[{j}]"
        ev = c.obj(ev, w, EVAL_KEYS, required={"step", "episodes", "returns"})
        c.integer(ev["step"], f"{w}.step", low=0)
        c.integer(ev["episodes"], f"{w}.episodes", low=1, high=MAX_EPISODES)
        if "eval_seed" in ev and ev["eval_seed"] is not None:
            c.integer(ev["eval_seed"], f"{w}.eval_seed", low=0)
        returns = ev["returns"]
        if not isinstance(returns, list) or len(returns) != ev["episodes"]:
            raise EntryError(c.path, f"{w}.returns", f"must list one raw return per episode ({ev['episodes']})",
                             value=returns if not isinstance(returns, list) else f"{len(returns)} values")
        for k, r in enumerate(returns):
            c.number(r, f"{w}.returns[{k}]")
        success = ev.get("success")
        if success is not None:
            if not isinstance(success, list) or len(success) != ev["episodes"] or \
                    not all(isinstance(s, bool) for s in success):
                raise EntryError(c.path, f"{w}.success", "must be null or one true/false per episode", value=success)
        rate = ev.get("success_rate")
        if rate is not None:
            c.number(rate, f"{w}.success_rate")
            if not 0.0 <= rate <= 1.0:
                raise EntryError(c.path, f"{w}.success_rate", "must lie in [0, 1]", value=rate)


class _Checker:
    """Small typed accessors that raise :class:`EntryError` with the field's path."""

    def __init__(self, path):
        self.path = path

    def keys(self, obj: dict, allowed: set | None, where: str, required: set) -> None:
        missing = sorted(required - set(obj))
        if missing:
            field = f"{where}.{missing[0]}" if where else missing[0]
            raise EntryError(self.path, field, "required field is missing",
                             hint=f"add it ({SCHEMA_DOC} describes every field)")
        if allowed is not None:
            unknown = sorted(set(obj) - allowed)
            if unknown:
                field = f"{where}.{unknown[0]}" if where else unknown[0]
                raise EntryError(self.path, field, f"unknown field; known: {sorted(allowed)}",
                                 hint="remove it or fix its spelling")

    def obj(self, value: Any, where: str, allowed: set | None, required: set = frozenset()) -> dict:
        if not isinstance(value, dict):
            raise EntryError(self.path, where, "must be a JSON object", value=value)
        self.keys(value, allowed, where, required)
        return value

    def text(self, value: Any, where: str, optional: bool = False) -> None:
        if optional and value is None:
            return
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
            raise EntryError(self.path, where, f"must be a non-empty string of at most {MAX_TEXT} characters",
                             value=value)
        if any(ord(ch) < 32 or ch in "\u2028\u2029" for ch in value):
            raise EntryError(self.path, where, "control characters and line breaks are not allowed", value=value)

    def number(self, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EntryError(self.path, where, "must be a number", value=value,
                             hint="record scores as JSON numbers, not strings")
        if not math.isfinite(value):
            raise EntryError(self.path, where, "must be finite", value=value)

    def integer(self, value: Any, where: str, low: int | None = None, high: int | None = None) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EntryError(self.path, where, "must be an integer", value=value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise EntryError(self.path, where, f"must lie in [{low}, {high if high is not None else 'inf'}]",
                             value=value)

    def scalar(self, value: Any, where: str) -> None:
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, (int, float)):
            self.number(value, where)
        elif isinstance(value, str):
            self.text(value, where)
        else:
            raise EntryError(self.path, where, "must be a string, number, boolean or null", value=value)

    def json_value(self, value: Any, where: str, kind: type | None = None, depth: int = 0) -> None:
        """Plain JSON (settings): finite numbers, short strings, at most 6 levels deep."""
        if kind is not None and not isinstance(value, kind):
            raise EntryError(self.path, where, f"must be a JSON {'object' if kind is dict else 'list'}", value=value)
        if depth > 6:
            raise EntryError(self.path, where, "nested too deeply (6 levels at most)")
        if isinstance(value, dict):
            for key, item in value.items():
                self.text(key, f"{where} key")
                self.json_value(item, f"{where}.{key}", depth=depth + 1)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.json_value(item, f"{where}[{i}]", depth=depth + 1)
        else:
            self.scalar(value, where)


def dumps_entry(entry: dict[str, Any]) -> str:
    """The canonical text of an entry: sorted keys, one-space indent, trailing newline."""
    return json.dumps(entry, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"
