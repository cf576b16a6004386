"""Read a results directory (written by ``offbench reproduce``) and score its runs.

See docs/evaluation.md for the layout and the columns of ``results.csv``.
"""
from __future__ import annotations

import json
from pathlib import Path

from offbench.errors import OffbenchError
from offbench.protocol import Headline, Protocol, headline_score, load_protocol

REQUIRED_COLUMNS = ["algorithm", "dataset", "suite", "env_id", "seed", "step", "final", "episodes", "eval_seed",
                    "return_mean", "return_stderr", "normalized_score", "success_rate", "returns", "run_dir"]
#: per-episode success flags and evaluation task ids (JSON lists, as ``returns``) where the task
#: reports them (the goal suite); empty elsewhere and absent from older results.csv files
OPTIONAL_COLUMNS = ["successes", "task_ids", "episode_returns"]  # goal suite; meta suite (per-episode returns of each trial)
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
#: the skills suite's metrics (``offbench.skill_runs``), columns of results.csv only where runs report them
SKILL_COLUMNS = ["coverage", "final_distance", "classifier_accuracy", "classifier_chance", "mi_lower_bound", "log_k"]
#: an offline meta-RL run's second evaluation, with each task's offline data as context
#: (``offbench.evaluation.meta_adaptation.evaluation_row``), columns only where runs report them
OFFLINE_CONTEXT_COLUMNS = ["offline_context_score", "offline_context_episode_returns"]
#: the columns a results.csv has only where some run reports them
EXTRA_COLUMNS = SKILL_COLUMNS + OFFLINE_CONTEXT_COLUMNS


#: what a goal dataset's score is (report and leaderboard label)
SUCCESS_UNIT = "success rate (%)"


def success_scored(dataset_id: str) -> bool:
    """Is the dataset's normalised score a success percentage? Its card says so: reference returns
    random 0 and expert 1 and a ``score`` that reads "success rate..." (the goal suite's cards: an
    evaluation episode returns 1 when it reaches the goal, where it ends, and 0 otherwise, so the
    normalised score is 100 x the success rate)."""
    from offbench.data.catalogue import get_card

    try:
        ref = get_card(dataset_id).reference_scores or {}
    except OffbenchError:
        return False
    return (ref.get("random") == 0 and ref.get("expert") == 1
            and str(ref.get("score", "")).lower().startswith("success rate"))


def dataset_slug(dataset_id: str) -> str:
    return dataset_id.replace("/", "__")


def evaluation_rows(run_dir: Path, *, algorithm: str, dataset: str, suite: str, env_id: str, seed: int,
                    final_step: int, results_dir: Path) -> list[dict]:
    """The tidy rows of one run directory's ``evaluations.jsonl``."""
    path = run_dir / "evaluations.jsonl"
    rows = []
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        rows.append({"algorithm": algorithm, "dataset": dataset, "suite": suite, "env_id": env_id, "seed": seed,
                     "step": ev["step"], "final": ev["step"] == final_step, "episodes": ev["episodes"],
                     "eval_seed": ev["seed"], "return_mean": ev["return_mean"], "return_stderr": ev["return_stderr"],
                     "normalized_score": ev.get("normalized_score"), "success_rate": ev.get("success_rate"),
                     "returns": json.dumps(ev["returns"]),
                     "run_dir": str(run_dir.relative_to(results_dir)),
                     **{key: json.dumps(ev[key]) if key in ev else None for key in OPTIONAL_COLUMNS},
                     **{key: ev[key] for key in SKILL_COLUMNS if key in ev},
                     **{key: json.dumps(ev[key]) if isinstance(ev[key], list) else ev[key]
                        for key in OFFLINE_CONTEXT_COLUMNS if key in ev}})
    return rows


def run_dataset_sha256(manifest: dict, run: dict) -> str | None:
    """The SHA-256 of the file a run of a results directory trained on: the run's own (a combined table,
    ``offbench combine``, records it per run), else the manifest's for the run's dataset."""
    return run.get("dataset_sha256") or (manifest.get("dataset_sha256") or {}).get(run.get("dataset")) or None


def dataset_file_record(dataset_id: str, sha256: str | None = None) -> dict | None:
    """What a results directory records about a dataset file its runs trained on (``dataset_files``
    in a manifest, keyed by the file's SHA-256): ``{"dataset", "episodes", "return_mean"}`` of the
    cached file of ``dataset_id``, so that a table can give the level of the data each run saw when
    that file is a local rebuild rather than the card's. None when the file is not cached or, with
    ``sha256``, holds other bytes."""
    import numpy as np

    from offbench.data.catalogue import cached_path
    from offbench.data.dataset import read_dataset
    from offbench.data.mirrors import file_sha256

    path = cached_path(dataset_id)
    if not path.is_file() or (sha256 is not None and file_sha256(path) != sha256):
        return None
    returns = read_dataset(path, validate=False).episode_returns()
    return {"dataset": dataset_id, "episodes": int(len(returns)),
            "return_mean": float(np.mean(returns)) if len(returns) else None}


def write_results_csv(out: Path, rows: list[dict]) -> Path:
    """``OUT/results.csv``: one row per run x evaluation, sorted, so equal runs give equal bytes."""
    import pandas as pd

    from offbench.atomic import write_atomic

    # the skills suite's metric columns only where its runs wrote them: other tables keep their bytes
    table = pd.DataFrame.from_records(rows, columns=COLUMNS + [c for c in EXTRA_COLUMNS if any(c in r for r in rows)])
    table = table.sort_values(["algorithm", "dataset", "seed", "step"], kind="stable")
    path = Path(out) / "results.csv"
    write_atomic(path, table.to_csv(index=False))
    return path


def load_results(results_dir: str | Path):
    """``(protocol, manifest, table)`` of a results directory; ``table`` is a pandas DataFrame."""
    import pandas as pd

    results_dir = Path(results_dir)
    for name in ("protocol.toml", "manifest.json", "results.csv"):
        if not (results_dir / name).is_file():
            raise OffbenchError(f"{results_dir} is not a results directory: {name} is missing "
                                "(write one with `offbench reproduce ... --out DIR`)")
    protocol = load_protocol(results_dir / "protocol.toml")
    manifest = json.loads((results_dir / "manifest.json").read_text())
    table = pd.read_csv(results_dir / "results.csv")
    missing = sorted(set(REQUIRED_COLUMNS) - set(table.columns))
    if missing:
        raise OffbenchError(f"{results_dir / 'results.csv'}: missing columns {missing}")
    for column in OPTIONAL_COLUMNS + (SKILL_COLUMNS if protocol.suite == "skills" else []):
        if column not in table.columns:
            table[column] = None
    return protocol, manifest, table


def run_scores(table, headline: Headline | Protocol, *, score: str = "normalized_score"):
    """One row per (algorithm, dataset, seed): the headline ``score`` plus the best-over-training
    (labelled secondary) and the final step. Columns: algorithm, dataset, seed, score, best, final_step."""
    import pandas as pd

    if isinstance(headline, Protocol):
        headline = headline.headline
    records = []
    for (algorithm, dataset, seed), group in table.sort_values("step").groupby(
            ["algorithm", "dataset", "seed"], sort=True):
        values = group[score].astype(float).tolist()
        records.append({"algorithm": algorithm, "dataset": dataset, "seed": int(seed),
                        "score": headline_score(values, headline), "best": max(values),
                        "final_step": int(group["step"].max())})
    return pd.DataFrame.from_records(records, columns=["algorithm", "dataset", "seed", "score", "best", "final_step"])


def score_matrix(scores, algorithm: str, datasets: list[str]):
    """rliable's shape for one algorithm: ``[runs (seeds), tasks (datasets)]``, seeds in sorted order.

    Every dataset must have the same number of seeds (a missing run is an error, not a silent gap).
    """
    import numpy as np

    sub = scores[scores.algorithm == algorithm]
    columns = []
    for dataset in datasets:
        col = sub[sub.dataset == dataset].sort_values("seed")["score"].to_numpy(dtype=float)
        columns.append(col)
    lengths = {len(c) for c in columns}
    if len(lengths) != 1 or 0 in lengths:
        counts = {d: len(c) for d, c in zip(datasets, columns)}
        raise OffbenchError(f"{algorithm}: unequal or missing runs per dataset {counts}; finish the runs "
                            "(offbench reproduce resumes) or restrict the report to complete datasets")
    return np.stack(columns, axis=1)
