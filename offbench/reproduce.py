"""``offbench reproduce``: run a protocol's algorithm x dataset x seed grid and collect the results.

The schedule is resumable by construction: each run is an ``offbench train`` run directory
(``RESULTS_DIR/runs/ALGO/DATASET_SLUG/seedS``), a finished one is skipped and an interrupted one
resumes from its checkpoint to exactly the parameters of an uninterrupted run. A crashed run
is retried once; failures are recorded in ``manifest.json`` and never take the other runs down.
Runs execute on a local process pool (default, one torch thread per worker) or on Ray; every run
is seeded and single-threaded, so both backends give the same numbers. See docs/evaluation.md.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from offbench.atomic import write_atomic
from offbench.errors import OffbenchError
from offbench.evaluation.results import COLUMNS, dataset_slug, evaluation_rows
from offbench.protocol import Protocol

# Rough cost of one gradient step relative to BC at lite sizes (measured on this machine), so the
# pool starts the longest runs first and the progress bar's ETA means something.
RELATIVE_STEP_COST = {"bc": 1.0, "percent_bc": 1.0, "awr": 2.0, "td3_bc": 2.0, "awac": 2.5, "iql": 2.5,
                      "cql": 12.0, "dt": 25.0, "mopo": 6.0, "combo": 14.0}


@dataclass
class RunSpec:
    algorithm: str
    dataset: str
    seed: int
    protocol: Protocol
    run_dir: Path

    @property
    def key(self) -> tuple[str, str, int]:
        return self.algorithm, self.dataset, self.seed

    @property
    def steps(self) -> int:
        return self.protocol.train_config(self.algorithm, self.seed).steps

    @property
    def cost(self) -> float:
        return self.steps * RELATIVE_STEP_COST.get(self.algorithm, 5.0)


def algorithm_dirname(algorithm: str) -> str:
    return algorithm.replace(":", "_").replace("/", "_")


def plan(protocol: Protocol, results_dir: Path) -> list[RunSpec]:
    """Every (algorithm, dataset, seed) of the protocol, longest first."""
    specs = [RunSpec(a, d, s, protocol, results_dir / "runs" / algorithm_dirname(a) / dataset_slug(d) / f"seed{s}")
             for a in protocol.algorithms for d in protocol.datasets for s in protocol.seeds]
    return sorted(specs, key=lambda spec: -spec.cost)


def is_finished(spec: RunSpec) -> bool:
    summary = spec.run_dir / "summary.json"
    if not summary.is_file():
        return False
    try:
        return json.loads(summary.read_text()).get("final_step") == spec.steps
    except (OSError, json.JSONDecodeError):
        return False


def _rows(spec: RunSpec, dataset) -> list[dict]:
    return evaluation_rows(spec.run_dir, algorithm=spec.algorithm, dataset=spec.dataset, suite=spec.protocol.suite,
                           env_id=dataset.metadata.env_id, seed=spec.seed, final_step=spec.steps,
                           results_dir=spec.run_dir.parents[3])


def execute_run(spec: RunSpec) -> dict:
    """Train and evaluate one run (or pick up its finished results). Never raises for a run's own
    failure: returns ``{"status": "finished"|"failed", "error": str|None, "rows": [...], ...}``."""
    started = time.perf_counter()
    try:
        from offbench.data import load_dataset
        from offbench.data.recipes import ensure_built
        from offbench.train import train_run

        ensure_built(spec.dataset, progress=False)
        dataset = load_dataset(spec.dataset)
        skipped = is_finished(spec)
        if not skipped:
            train_run(spec.algorithm, dataset, spec.protocol.settings(spec.algorithm),
                      spec.protocol.train_config(spec.algorithm, spec.seed), spec.run_dir, progress=False)
        return {"key": list(spec.key), "status": "finished", "error": None, "skipped": skipped,
                "seconds": time.perf_counter() - started, "rows": _rows(spec, dataset)}
    except BaseException as exc:  # noqa: BLE001 - a run's crash is data for the report
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = "".join(traceback.format_exception(exc)[-3:]).strip()
        return {"key": list(spec.key), "status": "failed", "error": f"{type(exc).__name__}: {exc}\n{detail}",
                "skipped": False, "seconds": time.perf_counter() - started, "rows": []}


# ---------------------------------------------------------------------- backends
def _run_local(specs: list[RunSpec], workers: int, on_result: Callable[[RunSpec, dict], None]) -> None:
    if workers <= 1:
        for spec in specs:
            on_result(spec, execute_run(spec))
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    # spawn, not fork: the parent may already hold torch's thread pools.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending = {pool.submit(execute_run, spec): spec for spec in specs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                spec = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # the worker process died (e.g. killed for memory)
                    result = {"key": list(spec.key), "status": "failed", "error": f"worker died: {exc!r}",
                              "skipped": False, "seconds": 0.0, "rows": []}
                on_result(spec, result)


def _run_ray(specs: list[RunSpec], workers: int, address: str | None,
             on_result: Callable[[RunSpec, dict], None]) -> None:
    try:
        import ray
    except ImportError:
        raise OffbenchError("--backend ray needs Ray: pip install 'offbench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local Ray on demand, one CPU per worker
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        pending = {remote.remote(spec): spec for spec in specs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # a node or worker lost
                    result = {"key": list(spec.key), "status": "failed", "error": f"ray task failed: {exc!r}",
                              "skipped": False, "seconds": 0.0, "rows": []}
                on_result(spec, result)
    finally:
        if started_here:
            ray.shutdown()


# ---------------------------------------------------------------------- the schedule


def write_protocol(protocol: Protocol, path: Path) -> None:
    import tomli_w

    raw = protocol.to_dict()
    write_atomic(path, tomli_w.dumps(raw))


def reproduce(protocol: Protocol, out: str | os.PathLike, *, backend: str = "local", workers: int = 1,
              address: str | None = None, progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run (or finish) the protocol's grid into ``out``; returns the manifest."""
    from tqdm.auto import tqdm

    from offbench.data.recipes import ensure_built
    from offbench.data.writer import library_versions
    from offbench.online import git_commit, git_dirty
    from offbench import __version__

    if backend not in ("local", "ray"):
        raise OffbenchError(f"unknown backend {backend!r}: use local or ray")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    protocol_path = out / "protocol.toml"
    requested = protocol
    if protocol_path.exists():
        from offbench.protocol import load_protocol

        previous = load_protocol(protocol_path)
        for attribute in ("train", "headline", "per_algorithm", "suite"):
            if getattr(previous, attribute) != getattr(protocol, attribute):
                raise OffbenchError(f"{out} holds results of a different protocol ({attribute} differs); "
                                    "use another --out, or the same protocol to resume")
        # the directory's protocol is the union of every schedule run into it; this call runs
        # only what was asked for, but the table keeps every finished run
        protocol = protocol.restricted(
            algorithms=list(dict.fromkeys(previous.algorithms + protocol.algorithms)),
            datasets=list(dict.fromkeys(previous.datasets + protocol.datasets)),
            seeds=sorted(set(previous.seeds) | set(protocol.seeds)))
    # Every dataset must be known before anything is written (a card to build it from, or the cache).
    from offbench.data.catalogue import cached_path, get_card

    for dataset_id in requested.datasets:
        if not cached_path(dataset_id).exists():
            get_card(dataset_id)  # raises, naming the id, if there is no card
    write_protocol(protocol, protocol_path)

    # Datasets first (in this process: builds are deterministic and shared by all runs).
    from offbench.data.mirrors import file_sha256

    for dataset_id in requested.datasets:
        if not cached_path(dataset_id).exists():
            log(f"building {dataset_id} (not in the cache)")
            ensure_built(dataset_id, progress=progress)
    dataset_hashes = {d: file_sha256(cached_path(d)) for d in protocol.datasets if cached_path(d).exists()}

    specs = plan(protocol, out)  # every run of the directory, for the table and the manifest
    manifest_path = out / "manifest.json"
    previous_runs, previous_wall = {}, 0.0
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
        previous_runs = {tuple(r["key"]): r for r in previous.get("runs", [])}
        previous_wall = float(previous.get("wall_time_seconds") or 0.0)
    manifest = {"suite": protocol.suite, "protocol": protocol.name, "algorithms": protocol.algorithms,
                "datasets": protocol.datasets, "seeds": protocol.seeds, "backend": backend, "workers": workers,
                "git_commit": git_commit(), "git_dirty": git_dirty(), "offbench_version": __version__, "library_versions": library_versions(),
                "dataset_sha256": dataset_hashes, "wall_time_seconds": None, "runs": []}
    results: dict[tuple, dict] = {}
    for spec in specs:  # cheap: reads finished run directories
        if is_finished(spec):
            results[spec.key] = execute_run(spec)
    todo = [s for s in plan(requested, out) if s.key not in results]
    log(f"{len(specs)} runs in {out}: {len(results)} finished earlier, {len(todo)} to run now "
        f"({backend} backend, {workers} worker{'s' if workers != 1 else ''})")
    started = time.perf_counter()
    bar = tqdm(total=sum(s.cost for s in todo), disable=not progress or not todo, unit="", desc="reproduce",
               bar_format="{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}] {postfix}")
    retried: set[tuple] = set()
    counts = {"finished": len(results), "failed": 0}

    def save_manifest():
        runs = []
        for spec in specs:
            r = results.get(spec.key)
            if r is None:
                continue
            earlier = previous_runs.get(spec.key, {})
            seconds = r["seconds"] if not r.get("skipped") else earlier.get("wall_time_seconds", r["seconds"])
            runs.append({"key": list(spec.key), "algorithm": spec.algorithm, "dataset": spec.dataset,
                         "seed": spec.seed, "status": r["status"], "error": r["error"],
                         "retried": spec.key in retried, "wall_time_seconds": round(seconds, 2),
                         "run_dir": str(spec.run_dir.relative_to(out))})
        manifest["runs"] = runs
        # wall time accumulates over the invocations that resumed this directory
        manifest["wall_time_seconds"] = round(previous_wall + time.perf_counter() - started, 1)
        manifest["run_seconds_total"] = round(sum(r["wall_time_seconds"] for r in runs), 1)
        write_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True))

    def on_result(spec: RunSpec, result: dict) -> None:
        if result["status"] == "failed" and spec.key not in retried:
            retried.add(spec.key)
            log(f"run {spec.algorithm} {spec.dataset} seed {spec.seed} failed; retrying once:\n  "
                f"{result['error'].splitlines()[0]}")
            retry.append(spec)
            return
        results[spec.key] = result
        counts[result["status"]] += 1
        bar.update(spec.cost)
        bar.set_postfix_str(f"{counts['finished']}/{len(specs)} runs done, {counts['failed']} failed")
        save_manifest()
        write_results_table(out, [results[s.key] for s in specs if s.key in results])

    retry: list[RunSpec] = []
    try:
        batch = todo
        while batch:
            retry = []
            if backend == "ray":
                _run_ray(batch, workers, address, on_result)
            else:
                _run_local(batch, workers, on_result)
            batch = retry
    finally:
        bar.close()
        save_manifest()
        write_results_table(out, [results[s.key] for s in specs if s.key in results])
    failed = [r for r in manifest["runs"] if r["status"] == "failed"]
    for r in failed:
        log(f"FAILED {r['algorithm']} {r['dataset']} seed {r['seed']}: {r['error'].splitlines()[0]}")
    return manifest


def write_results_table(out: Path, results: Iterable[dict]) -> Path:
    """``results.csv``: one row per run x evaluation, sorted, so equal runs give equal bytes."""
    import pandas as pd

    rows = [row for r in results for row in r["rows"]]
    table = pd.DataFrame.from_records(rows, columns=COLUMNS)
    table = table.sort_values(["algorithm", "dataset", "seed", "step"], kind="stable")
    path = out / "results.csv"
    tmp = path.with_name(".results.csv.tmp")
    table.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path
