"""The entry format: read one entry file and check its shape (types, required fields, limits).

This module checks the structure only; what the values must agree with (catalogue cards, the
protocol, plausible ranges, other entries) is ``offbench.leaderboard.validate``. The format is
documented in ``leaderboard/SCHEMA.md``; bump ``SCHEMA_VERSION`` when it changes.
"""
from __future__ import annotations

import json
import math
import re
import reprlib
import sys
import unicodedata
from pathlib import Path
from typing import Any

from offbench.errors import OffbenchError

SCHEMA_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAX_ENTRY_BYTES = 5 * 1024 * 1024
# Every pattern is applied with ``fullmatch`` (``$`` alone also matches before a trailing newline).
# Names become file names and HTML ids: no separators, no traversal, no markup.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# A built-in algorithm name, or an import path ``package.module:Class`` naming a class (CapWords).
IMPORT_PATH_PATTERN = re.compile(r"^(?:[a-z][a-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
                                 r":[A-Z][A-Za-z0-9_]*)$")
PROTOCOL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
COMMIT_PATTERN = re.compile(r"^[0-9a-f]{7,64}$")
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
URL_PATTERN = re.compile(r"^https?://[^\s<>\"'`]{1,500}$")
SELECTION_KINDS = ("offline", "online")
MAX_TEXT = 300
MAX_AUTHORS = 50
MAX_EPISODES = 10_000
# Integers in an entry (seeds, steps) fit a signed 64-bit integer; the JSON reader refuses integer
# literals longer than MAX_INT_DIGITS digits outright (a value that long is never meaningful).
MAX_INTEGER = 2 ** 63 - 1
MAX_INT_DIGITS = 1000
# Format characters allowed in free text: the zero-width non-joiner and joiner, which some scripts
# (Persian, Indic) and emoji sequences need. Every other format character (bidi overrides and
# isolates such as U+202E and U+2066, zero-width spaces, U+FEFF) is refused, as are control
# characters (C0, DEL, C1 such as U+0085), line and paragraph separators and lone surrogates.
ALLOWED_FORMAT_CHARACTERS = frozenset("\u200c\u200d")
FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
SCHEMA_DOC = "leaderboard/SCHEMA.md"

TOP_LEVEL = {"schema_version", "name", "algorithm", "authors", "paper", "code", "code_commit",
             "offbench_version", "suite", "protocol", "hyperparameter_selection", "compute", "config", "runs"}
RUN_KEYS = {"dataset", "seed", "dataset_sha256", "content_sha256", "gradient_steps", "settings", "evaluations"}
#: a skills-suite evaluation's measurements (``offbench.skill_runs``; results.csv's columns of the same
#: names): null or numbers here, required and checked against the environment and method by ``validate``
SKILL_EVAL_KEYS = ("coverage", "final_distance", "classifier_accuracy", "classifier_chance", "mi_lower_bound",
                   "log_k")
EVAL_KEYS = {"step", "episodes", "eval_seed", "returns", "success", "success_rate", *SKILL_EVAL_KEYS}


class EntryError(OffbenchError):
    """A rejected entry: names the file, the field and the value, and says what to do."""

    def __init__(self, path: str | Path, field: str | None, problem: str, *, value: Any = ...,
                 hint: str | None = None):
        self.path, self.field, self.problem = str(path), field, problem
        where = self.path + (f" [{field}]" if field else "")
        message = f"{where}: {problem}"
        if value is not ...:
            message += f" (got {shown(value)})"
        message += f"\n  what to do: {hint or 'fix the entry; the format is documented in ' + SCHEMA_DOC}"
        super().__init__(message)


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxstring, _SHOW.maxother = 3, 6, 6, 100, 100
_SHOW.maxlong = 40


def shown(value: Any, limit: int = 120) -> str:
    """A short, one-line ``repr`` of a submitted value, safe for any value an entry can hold:
    nesting, long lists and long strings are elided; huge integers are summarised."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        digits = len(str(abs(value))) if value.bit_length() < 14_000 else "thousands of"  # str() stops at 4300
        return f"{'a negative' if value < 0 else 'an'} integer of {digits} digits"
    text = _SHOW.repr(value)
    return text[:limit] + "..." if len(text) > limit else text


def forbidden_character(text: str) -> str | None:
    """The first character free text must not hold, described for a message ("U+202E at
    position 3"), or None (see ``FORBIDDEN_CATEGORIES``)."""
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in FORBIDDEN_CATEGORIES and ch not in ALLOWED_FORMAT_CHARACTERS:
            name = unicodedata.name(ch, unicodedata.category(ch))
            return f"U+{ord(ch):04X} ({name}) at position {i}"
    return None


def builtin_names() -> list[str]:
    """The algorithm names an entry may give instead of an import path, sorted: offbench's offline
    and goal-conditioned baselines (``offbench.algorithm.BUILTIN``), its online meta-RL trainers
    (``offbench.meta_runs.META_ALGORITHMS``, the only algorithms of the ``meta`` suite) and its
    skill-discovery methods (``offbench.skill_runs.SKILL_METHODS``, the only ones of the ``skills`` suite)."""
    from offbench.algorithm import BUILTIN
    from offbench.meta_runs import META_ALGORITHMS
    from offbench.skill_runs import SKILL_METHODS

    return sorted({*BUILTIN, *META_ALGORITHMS, *SKILL_METHODS})


def import_path_problem(value: Any) -> str | None:
    """What is wrong with an ``algorithm.import_path``, or None. Data only: nothing is imported.

    A built-in algorithm name, or ``package.module:Class`` with a CapWords class name outside the
    standard library (the Algorithm protocol is a class; ``os:system`` and ``builtins:eval`` are not).
    """
    builtin = builtin_names()
    if not isinstance(value, str) or not IMPORT_PATH_PATTERN.fullmatch(value):
        return (f"must be a built-in algorithm name ({', '.join(builtin)}) or an import path "
                "'package.module:Class' naming an Algorithm class (CapWords)")
    if ":" not in value:
        if value not in builtin:
            return (f"unknown built-in algorithm; built-ins are {', '.join(builtin)}, anything else is "
                    "an import path 'package.module:Class'")
        return None
    package = value.partition(":")[0].split(".")[0]
    if package in sys.stdlib_module_names:
        return (f"{package!r} is a standard-library module: an Algorithm class comes from the entry's own "
                "package, as 'package.module:Class'")
    return None


class _Unreadable(ValueError):
    """A JSON value the reader refuses while parsing, with what to do about it."""

    def __init__(self, problem: str, hint: str):
        super().__init__(problem)
        self.hint = hint


def _reject_constant(token: str):
    raise _Unreadable(f"{token} is not allowed (scores must be finite numbers)",
                      "record finite numbers; a diverged run is a failed run and must be re-run or the entry "
                      "withdrawn")


def _parse_int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Unreadable(f"an integer literal with {digits} digits (at most {MAX_INT_DIGITS} are read; "
                          f"integers in an entry are at most {MAX_INTEGER})",
                          "record returns as ordinary numbers and seeds and steps as the protocol's integers")
    return int(literal)


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
        raw = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
    except UnicodeDecodeError as exc:
        raise EntryError(path, None, f"not UTF-8 text ({exc})", hint="save the entry as UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise EntryError(path, None, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                         hint="fix the JSON syntax (`python -m json.tool FILE` shows where)") from None
    except _Unreadable as exc:  # NaN / Infinity literals, absurdly long integers
        raise EntryError(path, None, str(exc), hint=exc.hint) from None
    except RecursionError:
        raise EntryError(path, None, "arrays or objects nested too deeply to read (an entry needs about ten "
                         "levels)", hint="write the entry with `offbench leaderboard submit`") from None
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
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise EntryError(path, "name", f"names must match {NAME_PATTERN.pattern} (letters, digits, '.', '_', '-'; "
                         "at most 64 characters; no slashes or '..')", value=name,
                         hint="pick a short name such as 'myalgo-v2'")
    if ".." in name:
        raise EntryError(path, "name", "names must not contain '..'", value=name, hint="pick another name")
    algo = c.obj(raw["algorithm"], "algorithm", {"name", "version", "import_path"}, required={"name", "import_path"})
    c.text(algo["name"], "algorithm.name")
    if "version" in algo:
        c.text(algo["version"], "algorithm.version", optional=True)
    problem = import_path_problem(algo["import_path"])
    if problem:
        raise EntryError(path, "algorithm.import_path", problem, value=algo["import_path"],
                         hint="declare the algorithm `offbench leaderboard verify` should run; it imports only "
                              "an Algorithm class, after showing what it will import (see the trust model in "
                              f"{SCHEMA_DOC})")
    authors = raw["authors"]
    if not isinstance(authors, list) or len(authors) > MAX_AUTHORS:
        raise EntryError(path, "authors", f"a list of at most {MAX_AUTHORS} names", value=authors)
    for i, a in enumerate(authors):
        c.text(a, f"authors[{i}]")
    for key in ("paper", "code"):
        value = raw[key]
        if isinstance(value, str):
            c.characters(value, key)
        if value is not None and (not isinstance(value, str) or not URL_PATTERN.fullmatch(value)):
            raise EntryError(path, key, "must be null or an http(s) URL", value=value,
                             hint="give a link starting with https://")
    commit = raw["code_commit"]
    if commit is not None and (not isinstance(commit, str) or not COMMIT_PATTERN.fullmatch(commit)):
        raise EntryError(path, "code_commit", "must be null or a lower-case hex git commit", value=commit)
    c.text(raw["offbench_version"], "offbench_version")
    c.text(raw["suite"], "suite")
    proto = c.obj(raw["protocol"], "protocol", {"name", "headline"}, required={"name"})
    if not isinstance(proto["name"], str) or not PROTOCOL_NAME_PATTERN.fullmatch(proto["name"]):
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
        c.text(key, "compute key")
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
    # null for a meta- or skills-suite run: a meta benchmark or a skill environment is an environment, not a
    # dataset file (validate checks which)
    if run["dataset_sha256"] is not None and (not isinstance(run["dataset_sha256"], str)
                                              or not SHA256_PATTERN.fullmatch(run["dataset_sha256"])):
        raise EntryError(c.path, f"{where}.dataset_sha256", "must be a 64-digit lower-case hex sha256 (null for a "
                         "meta benchmark or a skill environment, which have no dataset file)",
                         value=run["dataset_sha256"])
    if run.get("content_sha256") is not None and (not isinstance(run["content_sha256"], str)
                                                  or not SHA256_PATTERN.fullmatch(run["content_sha256"])):
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
        for key in SKILL_EVAL_KEYS:  # a count of cells, or a number; validate checks them against the suite
            if ev.get(key) is not None:
                if key == "coverage":
                    c.integer(ev[key], f"{w}.coverage", low=0)
                else:
                    c.number(ev[key], f"{w}.{key}")


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
        self.characters(value, where)

    def characters(self, value: str, where: str) -> None:
        bad = forbidden_character(value)
        if bad:
            raise EntryError(self.path, where, f"holds {bad}: control, format (bidi, zero-width) and line or "
                             "paragraph separator characters are not allowed", value=value,
                             hint="remove the character (it is invisible or reorders the text around it)")

    def number(self, value: Any, where: str) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EntryError(self.path, where, "must be a number", value=value,
                             hint="record scores as JSON numbers, not strings")
        if isinstance(value, int) and abs(value) > MAX_INTEGER:  # (math.isfinite overflows on huge ints)
            raise EntryError(self.path, where, f"too large: integers in an entry are at most {MAX_INTEGER} in "
                             "magnitude", value=value, hint="record raw returns and measurements as ordinary numbers")
        if not math.isfinite(value):
            raise EntryError(self.path, where, "must be finite", value=value)

    def integer(self, value: Any, where: str, low: int, high: int = MAX_INTEGER) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EntryError(self.path, where, "must be an integer", value=value)
        if not low <= value <= high:
            raise EntryError(self.path, where, f"must lie in [{low}, {high}]", value=value)

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
