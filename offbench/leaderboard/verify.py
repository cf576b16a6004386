"""Re-run sampled (dataset, seed) pairs of an entry and check each re-run lands in the entry's interval.

This is the one leaderboard command that executes code: the entry's declared algorithm (a
built-in name or an import path), under the protocol's settings and the entry's config. It says
which code (import path, module file, git commit) before running, and asks unless ``--yes``.

The interval of a dataset (``DatasetScores.interval``): the entry's headline scores over seeds,
min..max, widened on both sides by ``VERIFY_STDERR_MULTIPLE`` (2) times the largest per-seed
headline standard error (the standard error of the mean over the headline evaluations' episodes).
"""
from __future__ import annotations

import copy
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from offbench.errors import OffbenchError
from offbench.leaderboard.validate import validate_file


def sample_pairs(entry: dict, k: int, seed: int = 0) -> list[tuple[str, int]]:
    """``k`` distinct (dataset, seed) pairs, drawn reproducibly (``random.Random(seed)``) from the sorted runs."""
    pairs = sorted((r["dataset"], r["seed"]) for r in entry["runs"])
    if k < 1:
        raise OffbenchError(f"--seeds {k}: re-run at least one (dataset, seed) pair")
    return sorted(random.Random(seed).sample(pairs, min(k, len(pairs))))


def locate_module(module_name: str) -> str | None:
    """The file of a module, found without importing (so nothing runs before confirmation)."""
    from importlib.machinery import PathFinder

    if module_name in sys.modules:
        return getattr(sys.modules[module_name], "__file__", None)
    parts = module_name.split(".")
    spec = PathFinder.find_spec(parts[0])
    for i in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        spec = PathFinder.find_spec(".".join(parts[:i + 1]), list(spec.submodule_search_locations))
    return spec.origin if spec is not None else None


def describe_code(import_path: str) -> dict:
    """What ``verify`` would run: resolved target, module file, and the git commit of its checkout."""
    from offbench.algorithm import BUILTIN

    target = BUILTIN.get(import_path, import_path)
    module = target.partition(":")[0]
    file = locate_module(module)
    commit, dirty = None, False
    if file:
        folder = str(Path(file).parent)
        try:
            commit = subprocess.run(["git", "-C", folder, "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10).stdout.strip() or None
            dirty = bool(subprocess.run(["git", "-C", folder, "status", "--porcelain", "--", file],
                                        capture_output=True, text=True, timeout=10).stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    return {"import_path": import_path, "target": target, "module_file": file, "commit": commit, "dirty": dirty}


def verify_entry(path: str | Path, k: int, *, yes: bool = False, sample_seed: int = 0,
                 work_dir: str | Path | None = None, log: Callable[[str], None] = print,
                 ask: Callable[[str], str] = input) -> bool:
    """Re-run ``k`` sampled pairs; True if every re-run headline lies in the entry's interval."""
    from offbench.data.catalogue import get_card
    from offbench.evaluation.results import dataset_slug
    from offbench.leaderboard.scoring import run_headline, score_entry
    from offbench.reproduce import RunSpec, algorithm_dirname, execute_run

    entry, protocol = validate_file(path, check_unique=False)
    scores = score_entry(entry, protocol)
    pairs = sample_pairs(entry, k, sample_seed)
    algorithm = entry["algorithm"]["import_path"]
    code = describe_code(algorithm)
    log(f"verify {entry['name']}: re-running {len(pairs)} of {len(entry['runs'])} runs under protocol "
        f"{protocol.name!r} (sample seed {sample_seed})")
    log(f"  code to run: {code['target']}" + (f" (built-in {algorithm!r})" if code["target"] != algorithm else ""))
    log(f"  module file: {code['module_file'] or 'NOT FOUND on this Python path'}")
    log(f"  commit: {code['commit'] or 'unknown (not a git checkout)'}{' (with local changes)' if code['dirty'] else ''}"
        f"; the entry declares {entry['code_commit'] or 'no commit'}")
    if entry["code_commit"] and code["commit"] and not code["commit"].startswith(entry["code_commit"]):
        log("  WARNING: the local code is not at the entry's declared commit; results may differ")
    log(f"  config: {entry['config']}")
    log("  runs: " + ", ".join(f"{d} seed {s}" for d, s in pairs))
    if code["module_file"] is None:
        raise OffbenchError(f"cannot find module {code['target'].partition(':')[0]!r} for {algorithm!r}: install the "
                            "entry's code (see its 'code' link and commit) and run verify again")
    if not yes:
        if not sys.stdin or not sys.stdin.isatty():
            raise OffbenchError("verify runs the entry's code: confirm interactively, or pass --yes after reading "
                                "what it will run (above)")
        if ask("Run this code? [y/N] ").strip().lower() not in ("y", "yes"):
            log("not run")
            return False
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
            evaluations = [{"step": int(r["step"]), "returns": _returns(r["returns"])} for r in result["rows"]]
            score, _ = run_headline(evaluations, get_card(dataset), protocol.headline)
            entry_score = dict(zip(scores.datasets[dataset].seeds, scores.datasets[dataset].scores))[seed]
            inside = low <= score <= high
            ok &= inside
            log(f"{'ok  ' if inside else 'FAIL'} {dataset} seed {seed}: re-run {score:.2f}, entry {entry_score:.2f}, "
                f"interval [{low:.2f}, {high:.2f}]")
    finally:
        if own_dir:
            shutil.rmtree(root, ignore_errors=True)
    log("verified: every re-run lies in the entry's interval" if ok else
        "NOT verified: a re-run fell outside the entry's interval or failed")
    return ok


def _returns(value) -> list[float]:
    import json

    return [float(x) for x in (json.loads(value) if isinstance(value, str) else value)]
