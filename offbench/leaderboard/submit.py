"""Build an entry from an ``offbench reproduce`` results directory (raw returns, not aggregates).

A ``meta``-suite directory (``offbench reproduce meta``) names benchmarks, not dataset files: its
runs get ``dataset_sha256`` null, their returns are trial returns, and ``settings`` come from the
meta run's ``config.json``. A ``skills``-suite directory (``offbench reproduce skills``) names skill
environments, also without files: each evaluation keeps results.csv's skill measurements
(``coverage``, ``final_distance`` and, for methods with skills, the classifier's
``classifier_accuracy``, ``classifier_chance``, ``mi_lower_bound``, ``log_k``), and its returns are
the rollouts' final distances. Only results.csv, manifest.json and protocol.toml are needed (a
run's ``config.json``, where present, adds its settings), so a committed table such as
``leaderboard/skills/`` makes entries without its run directories.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from offbench.errors import OffbenchError
from offbench.leaderboard.schema import SCHEMA_VERSION, SKILL_EVAL_KEYS, check_entry


def parse_selection(text: str) -> dict[str, Any]:
    """``offline`` or ``online:BUDGET`` (BUDGET: the online evaluations spent choosing hyperparameters)."""
    if text == "offline":
        return {"kind": "offline"}
    kind, _, budget = text.partition(":")
    if kind == "online" and budget.strip():
        return {"kind": "online", "budget": budget.strip()}
    raise OffbenchError(f"--selection {text!r}: use 'offline' or 'online:BUDGET' "
                        "(e.g. 'online:5 configurations x 10 episodes per dataset')")


def _finite(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _run_extras(run_dir: Path) -> tuple[dict, dict[int, list[bool]]]:
    """Settings/content hash from a run's config.json and per-episode success flags, where recorded."""
    extras: dict[str, Any] = {}
    flags: dict[int, list[bool]] = {}
    config = run_dir / "config.json"
    if config.is_file():
        info = json.loads(config.read_text())
        if info.get("dataset", {}).get("content_sha256"):
            extras["content_sha256"] = info["dataset"]["content_sha256"]
        if isinstance(info.get("algorithm_overrides"), dict):
            extras["settings"] = info["algorithm_overrides"]
        elif ("benchmark" in info or "environment" in info) and isinstance(info.get("settings"), dict):
            extras["settings"] = info["settings"]  # a meta run (offbench.meta_runs) or a skills run (skill_runs)
    evaluations = run_dir / "evaluations.jsonl"
    if evaluations.is_file():
        for line in evaluations.read_text().splitlines():
            ev = json.loads(line)
            success = ev.get("success", ev.get("successes"))
            if isinstance(success, list):
                flags[int(ev["step"])] = [bool(s) for s in success]
    return extras, flags


def entry_from_results(results_dir: str | Path, *, name: str, algorithm: str | None = None,
                       display_name: str | None = None, version: str | None = None,
                       authors: list[str] | None = None, paper: str | None = None, code: str | None = None,
                       commit: str | None = None, selection: str = "offline",
                       hardware: str | None = None) -> dict[str, Any]:
    """One entry for ``algorithm`` (default: the directory's only algorithm). Shape-checked, not validated."""
    from offbench.evaluation.results import load_results, run_dataset_sha256
    from offbench.leaderboard.schema import builtin_names

    results_dir = Path(results_dir)
    protocol, manifest, table = load_results(results_dir)
    algorithms = sorted(table["algorithm"].astype(str).unique())
    if algorithm is None:
        if len(algorithms) != 1:
            raise OffbenchError(f"{results_dir} holds {len(algorithms)} algorithms {algorithms}: "
                                "choose one with --algo")
        algorithm = algorithms[0]
    if algorithm not in algorithms:
        raise OffbenchError(f"{results_dir} has no results for algorithm {algorithm!r}; it has {algorithms}")
    failed = [r for r in manifest.get("runs", []) if r.get("algorithm") == algorithm and r.get("status") != "finished"]
    if failed:
        shown = ", ".join(f"{r['dataset']} seed {r['seed']}" for r in failed[:5])
        raise OffbenchError(f"{results_dir}: {len(failed)} run(s) of {algorithm} did not finish ({shown}); "
                            "re-run `offbench reproduce` with the same --out to finish them, then submit")
    hashes = manifest.get("dataset_sha256") or {}
    # a combined table (offbench combine) records each run's own dataset file and commit
    run_hashes = {(r.get("dataset"), int(r.get("seed", -1))): run_dataset_sha256(manifest, r)
                  for r in manifest.get("runs", []) if r.get("algorithm") == algorithm}
    run_commits = {r.get("git_commit") for r in manifest.get("runs", []) if r.get("algorithm") == algorithm}
    meta = protocol.suite in ("meta", "skills")  # benchmarks or environments: no dataset files, no hashes
    skills = protocol.suite == "skills"
    sub = table[table["algorithm"].astype(str) == algorithm].sort_values(["dataset", "seed", "step"], kind="stable")
    runs = []
    for (dataset, seed), group in sub.groupby(["dataset", "seed"], sort=True):
        digest = run_hashes.get((dataset, int(seed))) or hashes.get(dataset)
        if not meta and not digest:
            raise OffbenchError(f"{results_dir / 'manifest.json'}: no dataset_sha256 recorded for {dataset}; "
                                "re-run `offbench reproduce` with the same --out to record it")
        run_dir = results_dir / str(group["run_dir"].iloc[0])
        extras, flags = _run_extras(run_dir)
        evaluations = []
        for row in group.itertuples(index=False):
            returns = [float(r) for r in json.loads(row.returns)]
            ev: dict[str, Any] = {"step": int(row.step), "episodes": int(row.episodes),
                                  "eval_seed": int(row.eval_seed), "returns": returns}
            if int(row.step) in flags:
                ev["success"] = flags[int(row.step)]
            rate = _finite(row.success_rate) if row.success_rate == row.success_rate else None
            if rate is not None:
                ev["success_rate"] = rate
            if skills:  # the evaluation's measurements (NaN in results.csv: the method has no skills)
                for key in SKILL_EVAL_KEYS:
                    value = _finite(getattr(row, key))
                    ev[key] = None if value is None else int(value) if key == "coverage" else value
            evaluations.append(ev)
        runs.append({"dataset": str(dataset), "seed": int(seed), "dataset_sha256": None if meta else digest,
                     "gradient_steps": int(group["step"].max()), **extras, "evaluations": evaluations})
    builtin = algorithm in builtin_names()
    compute = {key: manifest.get(key) for key in ("backend", "workers", "wall_time_seconds", "run_seconds_total")
               if manifest.get(key) is not None}
    if hardware:
        compute["hardware"] = hardware
    entry = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "algorithm": {"name": display_name or algorithm, "import_path": algorithm,
                      "version": version or (manifest.get("offbench_version") if builtin else None)},
        "authors": list(authors or []),
        "paper": paper,
        "code": code,
        "code_commit": commit or ((manifest.get("git_commit") or (run_commits.pop() if len(run_commits) == 1 else None))
                                  if builtin else None),
        "offbench_version": manifest.get("offbench_version") or "unknown",
        "suite": protocol.suite,
        "protocol": {"name": protocol.name, "headline": {"kind": protocol.headline.kind, "n": protocol.headline.n}},
        "hyperparameter_selection": parse_selection(selection),
        "compute": compute,
        "config": protocol.settings(algorithm),
        "runs": runs,
    }
    return check_entry(json.loads(json.dumps(entry)), results_dir)
