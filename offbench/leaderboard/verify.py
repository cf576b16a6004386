"""Re-run sampled (dataset, seed) pairs of an entry and check each re-run lands in the entry's interval.

This is the one leaderboard command that executes code: the entry's declared algorithm (a
built-in name or an import path ``package.module:Class``), under the protocol's settings and the
entry's config. Trust model (leaderboard/SCHEMA.md, "Trust model"): the entry is data; the code is
whatever the person running ``verify`` has installed under that import path. Before anything is
imported, :func:`plan_code` works out from the file system alone which source files the import
will execute and checks that the module defines the class; ``verify`` prints that plan and asks
unless ``--yes``. After the import, a class without the Algorithm protocol is refused before it is
instantiated (:func:`import_algorithm`).

A ``meta``-suite entry names one of offbench's own meta-RL trainers (``offbench.meta_runs``:
RL², MAML, PEARL, DREAM), never an import path, so its re-runs import nothing the entry names: they
run ``offbench reproduce``'s meta runs under the protocol and are scored as the board scores them.
A ``skills``-suite entry likewise names one of offbench's skill-discovery methods
(``offbench.skill_runs.SKILL_METHODS``): its re-runs are ``offbench.skill_runs.train_skill_run`` runs
(through ``offbench reproduce``'s run), evaluated at the fixed ``EVAL_SEED``, and their coverage is
compared; the classifier's accuracy is printed beside it.

The interval of a dataset (``DatasetScores.interval``): the entry's headline scores over seeds,
min..max, widened on both sides by ``VERIFY_STDERR_MULTIPLE`` (2) times the largest per-seed
headline standard error (the standard error of the mean over the headline evaluations' episodes;
0 for a skills run's coverage, one count per evaluation, so its interval is the seeds' range).
"""
from __future__ import annotations

import ast
import copy
import importlib
import importlib.util
import random
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib.machinery import PathFinder, SourceFileLoader
from pathlib import Path
from typing import Callable

from offbench.errors import OffbenchError
from offbench.leaderboard.validate import validate_file

# The Algorithm protocol (docs/algorithms.md) as checked before a class is instantiated: a
# torch.nn.Module class with a config class and these methods, plus ``act`` or ``make_eval_policy``.
ALGORITHM_METHODS = ("prepare", "make_sampler", "update", "optimizers")


def sample_pairs(entry: dict, k: int, seed: int = 0) -> list[tuple[str, int]]:
    """``k`` distinct (dataset, seed) pairs, drawn reproducibly (``random.Random(seed)``) from the sorted runs."""
    pairs = sorted((r["dataset"], r["seed"]) for r in entry["runs"])
    if k < 1:
        raise OffbenchError(f"--seeds {k}: re-run at least one (dataset, seed) pair")
    return sorted(random.Random(seed).sample(pairs, min(k, len(pairs))))


@dataclass(frozen=True)
class CodePlan:
    """What ``verify`` will import and run, worked out without importing anything."""

    import_path: str  # as the entry declares it
    module: str
    class_name: str
    files: tuple[str, ...]  # the source files importing ``module`` executes, outermost package first
    builtin: bool  # one of offbench's own baselines
    commit: str | None  # git commit of the module's checkout
    dirty: bool  # the module file has local changes

    @property
    def target(self) -> str:
        return f"{self.module}:{self.class_name}"

    def describe(self) -> list[str]:
        """The plan in words, one line each, for printing before the confirmation."""
        whose = f"offbench's built-in {self.import_path!r}" if self.builtin else "declared by the entry"
        lines = [f"  code to run: class {self.class_name} of module {self.module} ({self.target}; {whose})",
                 "  importing it executes these files, in order (verify has imported nothing yet):"]
        lines += [f"    {file}" for file in self.files]
        lines += [f"  module file: {self.files[-1]}",
                  f"  commit: {self.commit or 'unknown (not a git checkout)'}"
                  f"{' (with local changes)' if self.dirty else ''}",
                  f"  then: {self.class_name} is refused unless it implements the Algorithm protocol "
                  "(docs/algorithms.md); otherwise it is instantiated and trained on each run below"]
        return lines


def plan_code(import_path: str) -> CodePlan:
    """The :class:`CodePlan` of an entry's ``algorithm.import_path``; raises :class:`OffbenchError`
    for a target that is not an Algorithm class in Python source on this Python path. Reads files
    only: no module is imported and nothing submitted runs."""
    from offbench.algorithm import BUILTIN
    from offbench.leaderboard.schema import import_path_problem

    problem = import_path_problem(import_path)
    if problem:
        raise OffbenchError(f"algorithm.import_path {import_path!r}: {problem}")
    module, _, class_name = BUILTIN.get(import_path, import_path).partition(":")
    files = module_files(module)
    try:
        tree = ast.parse(Path(files[-1]).read_bytes(), filename=files[-1])
    except (OSError, SyntaxError, ValueError) as exc:
        raise OffbenchError(f"cannot read {files[-1]} (module {module!r}) as Python source: {exc}") from None
    if not _binds_class(tree, class_name):
        raise OffbenchError(f"{files[-1]} (module {module!r}) does not define a class {class_name!r} at its top "
                            f"level (nor import one by that name), so {import_path!r} is not an Algorithm class: "
                            "fix the entry's import_path, or install the entry's code at its declared commit")
    commit, dirty = _git_state(files[-1])
    return CodePlan(import_path, module, class_name, files, import_path in BUILTIN, commit, dirty)


def module_files(module_name: str) -> tuple[str, ...]:
    """The source files importing ``module_name`` executes (each package's ``__init__.py``, then the
    module), found without importing; a module already imported is where it was loaded from."""
    parts = module_name.split(".")
    files: list[str] = []
    search: list[str] | None = None
    for i in range(len(parts)):
        name = ".".join(parts[:i + 1])
        loaded = sys.modules.get(name)
        try:
            if loaded is not None and getattr(loaded, "__spec__", None) is not None:
                spec = loaded.__spec__
            elif i == 0:  # a top-level name: the installed finders locate it without importing it
                spec = importlib.util.find_spec(name)
            else:  # a submodule: searched for in its package's folders, without importing the package
                spec = PathFinder.find_spec(name, search)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise OffbenchError(f"cannot find module {name!r} on this Python path: install the entry's code (see "
                                "its 'code' link and commit) and run verify again")
        if spec.origin is None and spec.submodule_search_locations is not None:  # a namespace package: no code
            if i == len(parts) - 1:
                raise OffbenchError(f"{name!r} is a folder without __init__.py, not a module that defines a class")
        elif isinstance(spec.loader, SourceFileLoader):
            files.append(spec.origin)
        else:
            raise OffbenchError(f"module {name!r} is not Python source ({spec.origin}): verify runs only code it "
                                "can show, so install the entry's code from source")
        search = spec.submodule_search_locations
        if i < len(parts) - 1 and not search:
            raise OffbenchError(f"cannot find module {module_name!r}: {name!r} is a module, not a package")
    return tuple(files)


def _binds_class(tree: ast.Module, name: str) -> bool:
    """Whether the module's top level (including its if/try/with blocks) defines ``class name``
    or imports ``name`` from another module."""
    statements = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, ast.ClassDef) and node.name == name:
            return True
        if isinstance(node, ast.ImportFrom) and any((alias.asname or alias.name) == name for alias in node.names):
            return True
        if isinstance(node, (ast.If, ast.With)):
            statements += node.body + getattr(node, "orelse", [])
        elif isinstance(node, ast.Try):
            statements += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
    return False


def _git_state(file: str) -> tuple[str | None, bool]:
    """``(commit, dirty)`` of the checkout holding ``file``; ``(None, False)`` outside git. The
    checkout's fsmonitor hook is switched off: reading the state must run none of its code."""
    folder = str(Path(file).parent)
    git = ["git", "-c", "core.fsmonitor=false", "-C", folder]
    try:
        commit = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = commit is not None and bool(subprocess.run(git + ["status", "--porcelain", "--", file],
                                                           capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False
    return commit, dirty


def import_algorithm(plan: CodePlan) -> type:
    """Import the planned module (this runs its files) and return the class, refused unless it
    implements the Algorithm protocol; nothing is instantiated here."""
    try:
        module = importlib.import_module(plan.module)
    except Exception as exc:  # the entry's code failed: report it as a refusal, not a crash
        raise OffbenchError(f"importing {plan.module!r} failed ({type(exc).__name__}: {exc}); nothing was run: "
                            "fix the installed code") from None
    cls = getattr(module, plan.class_name, None)
    check_algorithm_class(cls, plan.target)
    return cls


def check_algorithm_class(cls: object, target: str) -> None:
    """Raise :class:`OffbenchError` unless ``cls`` is a class implementing the Algorithm protocol."""
    from torch import nn

    missing = [m for m in ALGORITHM_METHODS if not callable(getattr(cls, m, None))]
    if not (callable(getattr(cls, "act", None)) or callable(getattr(cls, "make_eval_policy", None))):
        missing.append("act (or make_eval_policy)")
    if not isinstance(getattr(cls, "config_class", None), type):
        missing.append("config_class")
    module_class = isinstance(cls, type) and issubclass(cls, nn.Module)
    if not module_class or missing:
        problems = [] if module_class else [
            "a class, but not a torch.nn.Module" if isinstance(cls, type) else f"not a class (a {type(cls).__name__})"]
        problems += [f"missing {', '.join(missing)}"] if missing else []
        raise OffbenchError(f"{target} is not an Algorithm: {'; '.join(problems)}. Nothing was instantiated or run; "
                            "an Algorithm is a torch.nn.Module class with config_class, prepare, make_sampler, "
                            "update, act (or make_eval_policy) and optimizers (docs/algorithms.md)")


def verify_entry(path: str | Path, k: int, *, yes: bool = False, sample_seed: int = 0,
                 work_dir: str | Path | None = None, log: Callable[[str], None] = print,
                 ask: Callable[[str], str] = input) -> bool:
    """Re-run ``k`` sampled pairs; True if every re-run headline lies in the entry's interval."""
    from offbench.evaluation.results import SKILL_COLUMNS, dataset_slug
    from offbench.leaderboard.scoring import run_headline, score_entry, skill_headline
    from offbench.leaderboard.validate import run_source
    from offbench.reproduce import RunSpec, algorithm_dirname, execute_run

    entry, protocol = validate_file(path, check_unique=False)
    scores = score_entry(entry, protocol)
    pairs = sample_pairs(entry, k, sample_seed)
    algorithm = entry["algorithm"]["import_path"]
    log(f"verify {entry['name']}: re-running {len(pairs)} of {len(entry['runs'])} runs under protocol "
        f"{protocol.name!r} (sample seed {sample_seed})")
    meta = protocol.suite == "meta"  # validated: one of offbench's meta-RL trainers
    skills = protocol.suite == "skills"  # validated: one of offbench's skill-discovery methods
    code = None
    if meta:
        log(f"  code to run: offbench's built-in meta-RL trainer {algorithm!r} (offbench.meta_runs, baselines/meta/); "
            "nothing the entry names is imported")
    elif skills:
        log(f"  code to run: offbench's built-in skill-discovery method {algorithm!r} (offbench.skill_runs."
            "train_skill_run, baselines/skills/); nothing the entry names is imported")
    else:
        code = plan_code(algorithm)  # reads files only; refuses what is not an Algorithm class in source
        for line in code.describe():
            log(line)
        log(f"  the entry declares commit {entry['code_commit'] or 'none'}")
        if entry["code_commit"] and code.commit and not code.commit.startswith(entry["code_commit"]):
            log("  WARNING: the local code is not at the entry's declared commit; results may differ")
    log(f"  config: {entry['config']}")
    log("  runs: " + ", ".join(f"{d} seed {s}" for d, s in pairs))
    if not yes:
        if not sys.stdin or not sys.stdin.isatty():
            raise OffbenchError("verify runs the entry's code: confirm interactively, or pass --yes after reading "
                                "what it will run (above)")
        if ask("Import and run this code? [y/N] ").strip().lower() not in ("y", "yes"):
            log("not run")
            return False
    if code is not None:
        import_algorithm(code)
    # the entry's config on top of the algorithm's defaults; the protocol's fixed settings win
    protocol = copy.deepcopy(protocol)
    fixed = protocol.per_algorithm.get(algorithm, {})
    protocol.per_algorithm[algorithm] = {"train": dict(fixed.get("train", {})),
                                         "settings": {**entry["config"], **fixed.get("settings", {})}}
    own_dir = work_dir is None
    root = Path(tempfile.mkdtemp(prefix="offbench-verify-")) if own_dir else Path(work_dir)
    ok = True
    try:
        for dataset, seed in pairs:
            run_dir = root / "runs" / algorithm_dirname(algorithm) / dataset_slug(dataset) / f"seed{seed}"
            result = execute_run(RunSpec(algorithm=algorithm, dataset=dataset, seed=seed, protocol=protocol,
                                         run_dir=run_dir))
            low, high = scores.datasets[dataset].interval()
            if result["status"] != "finished":
                ok = False
                log(f"FAIL {dataset} seed {seed}: the re-run failed: {(result['error'] or '').splitlines()[0]}")
                continue
            evaluations = [{"step": int(r["step"]), "returns": _returns(r["returns"]),
                            **{k: r[k] for k in SKILL_COLUMNS if r.get(k) is not None}} for r in result["rows"]]
            score, _ = run_headline(evaluations, run_source(protocol, dataset), protocol.headline)
            entry_score = dict(zip(scores.datasets[dataset].seeds, scores.datasets[dataset].scores))[seed]
            inside = low <= score <= high
            ok &= inside
            log(f"{'ok  ' if inside else 'FAIL'} {dataset} seed {seed}: re-run {score:.2f}, entry {entry_score:.2f}, "
                f"interval [{low:.2f}, {high:.2f}]")
            if skills and dataset in scores.classifier:  # shown, not judged: the headline is the coverage
                classifier = scores.classifier[dataset]
                accuracy = skill_headline(evaluations, "classifier_accuracy", protocol.headline)
                log(f"     classifier accuracy: re-run {'-' if accuracy is None else f'{accuracy:.3f}'}, entry "
                    f"{dict(zip(classifier.seeds, classifier.accuracies))[seed]:.3f} (chance {classifier.chance:.3f})")
    finally:
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
    log("verified: every re-run lies in the entry's interval" if ok else
        "NOT verified: a re-run fell outside the entry's interval or failed")
    return ok


def _returns(value) -> list[float]:
    import json

    return [float(x) for x in (json.loads(value) if isinstance(value, str) else value)]
