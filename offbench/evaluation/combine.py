"""``offbench combine``: one results directory from several of the same protocol.

A table too long for one machine or one sitting is run in parts (``offbench reproduce ... --algos X
--out A`` here, ``--algos Y --out B`` elsewhere) and combined::

    offbench combine A B --out TABLE

``TABLE`` is a results directory like any other for ``offbench report``, ``leaderboard submit``
and ``make_baseline_entries.py``. Its ``results.csv`` holds every source's rows; its manifest
records, for each run, the commit and the dataset file (SHA-256) it was trained with, each file's
level (``dataset_files``: episodes and mean episode return), and the sources' own manifests
(commit, machine's library versions, wall time) under ``sources``.

What may be combined:

- the sources' protocols schedule runs alike (:func:`offbench.protocol.schedule_difference`:
  training, headline, per-algorithm settings and suite; the grids may differ);
- a run (algorithm, dataset, seed) is in one source only, unless ``replace`` is set: then a later
  source's run replaces an earlier one (a run done again);
- one cell, one build: every seed of one algorithm on one dataset was trained on the same file. Two
  builds of a dataset that are not bit for bit equal (a rebuild on another CPU, see
  docs/datasets.md) may serve two algorithms, never the seeds of one cell, whose mean and interval
  assume they saw the same data. The combined manifest's ``dataset_sha256`` then maps such a
  dataset to ``null`` and each run carries its own hash.

With ``whole_cells`` (``--whole-cells``) each source gives only the cells finished on every seed of
its protocol: a part still running can be combined as far as it has gone, and a cell is replaced
whole or not at all.

A combined directory is a table, not a run directory: ``offbench reproduce`` refuses it (its
runs' directories stay on the machines that ran them). Reproduce into a new directory and
combine again.
"""
from __future__ import annotations

import json
from pathlib import Path

from offbench.errors import OffbenchError
from offbench.evaluation.results import dataset_file_record, load_results, run_dataset_sha256, write_results_csv

#: manifest fields each source keeps under ``sources`` (what differs from machine to machine)
SOURCE_FIELDS = ("git_commit", "git_dirty", "offbench_version", "library_versions", "backend", "device", "workers",
                 "wall_time_seconds", "run_seconds_total")


def run_key(run: dict) -> tuple[str, str, int]:
    return str(run["algorithm"]), str(run["dataset"]), int(run["seed"])


def _source_runs(manifest: dict) -> list[dict]:
    """The finished runs of one source's manifest, each with its commit and dataset hash."""
    runs = []
    for run in manifest.get("runs", []):
        if run.get("status") != "finished":
            continue  # failed runs stay with their source: finish them there (reproduce resumes)
        run = {**run, "dataset_sha256": run_dataset_sha256(manifest, run)}
        run.setdefault("git_commit", manifest.get("git_commit"))
        runs.append(run)
    return runs


def whole_cell_runs(runs: list[dict], seeds: list[int]) -> tuple[list[dict], list[tuple[str, str]]]:
    """The runs of the cells (algorithm, dataset) finished on every one of ``seeds``, and the cells
    left out."""
    finished: dict[tuple[str, str], set[int]] = {}
    for run in runs:
        finished.setdefault(run_key(run)[:2], set()).add(int(run["seed"]))
    whole = {cell for cell, done in finished.items() if set(seeds) <= done}
    return [r for r in runs if run_key(r)[:2] in whole], sorted(set(finished) - whole)


def combine_results(sources: list[str | Path], out: str | Path, *, replace: bool = False,
                    whole_cells: bool = False) -> dict:
    """Write ``out`` (``protocol.toml``, ``manifest.json``, ``results.csv``) from ``sources``, results
    directories of one protocol; returns the combined manifest. ``out`` may be one of the sources
    (everything is read before anything is written). See the module docstring for the rules.
    ``whole_cells``: take from each source only the cells finished on all of its protocol's seeds
    (the cells left out are returned under ``partial_cells_left``, not written)."""
    import pandas as pd

    from offbench.atomic import write_atomic
    from offbench.protocol import schedule_difference, write_protocol

    if len(sources) < 2:
        raise OffbenchError("combine needs two or more results directories")
    loaded = [(Path(s), *load_results(s)) for s in sources]
    # the rows exactly as written (pandas' default float parser may change a value's last digit)
    loaded = [(path, protocol, manifest, pd.read_csv(path / "results.csv", float_precision="round_trip"))
              for path, protocol, manifest, _ in loaded]
    first_path, protocol = loaded[0][0], loaded[0][1]
    for path, other, _, _ in loaded[1:]:
        differs = schedule_difference(protocol, other)
        if differs:
            raise OffbenchError(f"{path} holds results of a different protocol than {first_path} ({differs} differs): "
                                "only runs of one protocol make one table")

    runs: dict[tuple, dict] = {}
    rows: dict[tuple, list[dict]] = {}
    origin: dict[tuple, Path] = {}
    left_out: dict[str, list[tuple[str, str]]] = {}
    for path, source_protocol, manifest, table in loaded:
        taken = _source_runs(manifest)
        if whole_cells:
            taken, partial = whole_cell_runs(taken, source_protocol.seeds)
            if partial:
                left_out[str(path)] = partial
        for run in taken:
            key = run_key(run)
            if key in runs and not replace:
                raise OffbenchError(f"{key[0]} {key[1]} seed {key[2]} is in both {origin[key]} and {path}: "
                                    "remove it from one, or pass --replace to keep the later source's run")
            picked = table[(table["algorithm"].astype(str) == key[0]) & (table["dataset"].astype(str) == key[1])
                           & (table["seed"].astype(int) == key[2])]
            if picked.empty:
                raise OffbenchError(f"{path / 'manifest.json'} lists {key[0]} {key[1]} seed {key[2]} as finished "
                                    f"but {path / 'results.csv'} has no rows for it")
            runs[key], origin[key] = run, path
            rows[key] = [{k: v for k, v in r.items() if v == v and v is not None}  # NaN: no value
                         for r in picked.to_dict("records")]

    # one cell (algorithm, dataset), one build of the dataset
    cell_hash: dict[tuple, tuple[str, tuple]] = {}
    for key, run in sorted(runs.items()):
        digest = run.get("dataset_sha256")
        if digest is None:
            continue  # an online suite (no dataset file)
        seen = cell_hash.setdefault(key[:2], (digest, key))
        if seen[0] != digest:
            other = seen[1]
            raise OffbenchError(
                f"{key[0]} on {key[1]}: seed {other[2]} ({origin[other]}) trained on a file with SHA-256 {seen[0][:12]}…, "
                f"seed {key[2]} ({origin[key]}) on {digest[:12]}…: one algorithm's runs on a dataset must share one "
                "build of it. Re-run the cell's seeds on one build (offbench reproduce --algos "
                f"{key[0]}) and pass --replace")
    by_dataset: dict[str, set] = {}
    for (_, dataset), (digest, _) in cell_hash.items():
        by_dataset.setdefault(dataset, set()).add(digest)

    grid = protocol.restricted(
        algorithms=list(dict.fromkeys(a for _, p, _, _ in loaded for a in p.algorithms)),
        datasets=list(dict.fromkeys(d for _, p, _, _ in loaded for d in p.datasets)),
        seeds=sorted({s for _, p, _, _ in loaded for s in p.seeds}))
    manifests = [m for _, _, m, _ in loaded]
    dataset_files = combined_dataset_files(manifests, runs.values())
    commits = {run.get("git_commit") for run in runs.values()}
    ordered = [runs[k] for k in sorted(runs)]
    manifest = {
        "suite": protocol.suite, "protocol": protocol.name, "algorithms": grid.algorithms, "datasets": grid.datasets,
        "seeds": grid.seeds, "combined": True,
        "git_commit": commits.pop() if len(commits) == 1 else None,
        "offbench_version": _same(manifests, "offbench_version"), "backend": _same(manifests, "backend"),
        "device": _same(manifests, "device"),
        "dataset_sha256": {d: (next(iter(h)) if len(h) == 1 else None) for d, h in sorted(by_dataset.items())},
        "dataset_files": dataset_files,
        "wall_time_seconds": round(sum(float(m.get("wall_time_seconds") or 0) for m in manifests), 1),
        "run_seconds_total": round(sum(float(r.get("wall_time_seconds") or 0) for r in ordered), 1),
        "sources": [s for m in manifests for s in (m.get("sources") or [{k: m.get(k) for k in SOURCE_FIELDS}])],
        "runs": ordered,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_protocol(grid, out / "protocol.toml")
    write_results_csv(out, [row for key in sorted(rows) for row in rows[key]])
    write_atomic(out / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True))
    return {**manifest, "partial_cells_left": left_out} if left_out else manifest


def combined_dataset_files(manifests: list[dict], runs) -> dict[str, dict]:
    """The combined manifest's ``dataset_files`` (``{sha256: {"dataset", "episodes", "return_mean"}}``)
    for the files ``runs`` trained on: the sources' records, else the cached file here when it has
    the run's bytes (a source written before reproduce recorded them). A file found in neither is
    left out, and the report prints its level as unknown."""
    known = {h: r for m in manifests for h, r in (m.get("dataset_files") or {}).items()}
    files, looked = {}, set()
    for run in runs:
        digest = run.get("dataset_sha256")
        if digest and digest not in known and digest not in looked:
            looked.add(digest)
            known[digest] = dataset_file_record(run["dataset"], digest)
        if digest and known.get(digest):
            files[digest] = known[digest]
    return dict(sorted(files.items()))


def _same(manifests: list[dict], key: str):
    """The sources' common value of ``key``, or None where they differ."""
    values = {json.dumps(m.get(key), sort_keys=True) for m in manifests}
    return json.loads(values.pop()) if len(values) == 1 else None
