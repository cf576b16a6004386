"""Hyperparameter selection study (``offbench select``): sweep an algorithm's settings on a suite,
select one setting per (dataset, seed) by each offline criterion, and report each rule's regret
against the oracle (Paine et al. 2020; REFERENCE §5).

Design (docs/off-policy-evaluation.md, "Hyperparameter selection"):

- one ``offbench.reproduce`` results directory per grid point, ``OUT/points/LABEL``, with the
  protocol's settings plus the grid point as ``[overrides.ALGO].settings``;
- with ``holdout`` (default) every run trains on ``train_validation_split(dataset, 0.1, seed=0)``'s
  train part, through the wrapper algorithm ``offbench.evaluation.selection:Holdout_ALGO``, so
  the validation TD error is measured on episodes the run never trained on; OPE estimates
  read the whole dataset (the data a practitioner has);
- a selection unit is one (dataset, training seed): its candidates are the grid points' runs
  with that seed; the truth of a candidate is its run's own headline score (the protocol's
  final evaluations, normalised score where the dataset has reference scores);
- regret of a rule on a unit = (oracle score - chosen score) / (oracle score - worst score)
  (0 when all candidates tie), plus the raw gap; intervals bootstrap the units.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from offbench.errors import OffbenchError

VALIDATION_FRACTION = 0.1
SPLIT_SEED = 0
WORKFLOW_TOLERANCE = 0.05  # a relative decline of the dataset-action Q beyond this is "peak then decline"
Q_METRICS = ("q_data_mean", "q_mean")  # logged mean Q on dataset actions (CQL, IQL / MOPO)
HOLDOUT_PREFIX = "Holdout_"


# ====================================================================== training on the train split
class _HoldoutMixin:
    """Trains on the train part of ``train_validation_split(dataset, VALIDATION_FRACTION, seed=SPLIT_SEED)``."""

    def prepare(self, dataset):
        from offbench.data.compose import train_validation_split

        train, _ = train_validation_split(dataset, VALIDATION_FRACTION, seed=SPLIT_SEED)
        return super().prepare(train)


_HOLDOUT_CLASSES: dict[str, type] = {}


def __getattr__(name: str):
    """``Holdout_iql`` etc.: built on demand, so ``load_algorithm_class`` (and spawned workers) find them."""
    if name.startswith(HOLDOUT_PREFIX):
        base_name = name[len(HOLDOUT_PREFIX):]
        if base_name not in _HOLDOUT_CLASSES:
            from offbench.algorithm import BUILTIN, load_algorithm_class

            if base_name not in BUILTIN:
                raise AttributeError(name)
            base = load_algorithm_class(base_name)
            _HOLDOUT_CLASSES[base_name] = type(name, (_HoldoutMixin, base),
                                               {"__module__": __name__, "config_class": base.config_class})
        return _HOLDOUT_CLASSES[base_name]
    raise AttributeError(name)


def holdout_algorithm(algo: str) -> str:
    return f"{__name__}:{HOLDOUT_PREFIX}{algo}"


def validation_split(dataset):
    from offbench.data.compose import train_validation_split

    return train_validation_split(dataset, VALIDATION_FRACTION, seed=SPLIT_SEED)


# ====================================================================== the grid
def _parse_value(text: str) -> Any:
    import tomllib

    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_grid(items: Sequence[str]) -> dict[str, list]:
    """``["expectile=0.7,0.9", "beta=3,10"]`` -> ``{"expectile": [0.7, 0.9], "beta": [3, 10]}``."""
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise OffbenchError(f"--grid {item!r}: expected KEY=V1,V2,...")
        if key.strip() in grid:
            raise OffbenchError(f"--grid names {key.strip()!r} twice")
        grid[key.strip()] = [_parse_value(v.strip()) for v in values.split(",") if v.strip()]
    if not grid:
        raise OffbenchError("--grid needs at least one KEY=V1,V2 entry")
    return grid


def grid_points(grid: dict[str, list]) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def point_label(point: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items())


def _dirname(label: str) -> str:
    return label.replace(",", "_").replace("/", "_").replace(" ", "")


# ====================================================================== criteria of one run
def _critic_parts(algorithm):
    """(q(features, actions) -> min over critics [N], backup value v(next features) [N], reward scale)
    of an algorithm with a ``critic`` (QEnsemble or discrete EnsembleMLP), or None."""
    import torch

    critic = getattr(algorithm, "critic", None)
    encoder = getattr(algorithm, "encoder", None)
    if critic is None or encoder is None:
        return None
    discrete = bool(getattr(algorithm, "discrete", False))
    target = getattr(algorithm, "critic_target", None)
    target = critic if target is None else target
    from baselines.iql import IQL

    is_iql = isinstance(algorithm, IQL)
    scale = float(getattr(algorithm, "reward_scale", torch.tensor(1.0)))

    def q_of(net, feats, actions):
        if discrete:
            q = net(feats)  # [critics, B, A]
            idx = torch.as_tensor(actions).long().view(1, -1, 1).expand(q.shape[0], -1, 1)
            return q.gather(-1, idx).squeeze(-1).min(0).values
        return net(feats, torch.as_tensor(actions, dtype=torch.float32)).min(0).values

    def policy_actions(raw_obs):
        return np.asarray(algorithm.act(raw_obs))

    def backup_value(raw_next_obs, feats_next):
        if is_iql:
            return algorithm.value(feats_next).squeeze(-1)  # IQL's own TD target reads V(s')
        return q_of(target, feats_next, policy_actions(raw_next_obs))

    return q_of, critic, policy_actions, backup_value, scale


def critic_value(algorithm, dataset) -> float:
    """The training critic's estimate of its policy's value: mean over the dataset's start
    states of min_j Q_j(s0, pi(s0)) (pi = the algorithm's ``act``), in raw reward units."""
    import torch

    parts = _critic_parts(algorithm)
    if parts is None:
        return float("nan")
    q_of, critic, policy_actions, _, scale = parts
    obs = dataset.observations[np.asarray(dataset.episode_starts)]
    with torch.no_grad():
        feats = algorithm.encoder(torch.as_tensor(obs))
        return float(q_of(critic, feats, policy_actions(obs)).double().mean()) / scale


def td_error(algorithm, dataset) -> float:
    """Mean squared TD error of the critic on ``dataset``'s transitions, with the algorithm's own
    backup (IQL: r + gamma (1 - d) V(s'); others: r + gamma (1 - d) min_j Qbar_j(s', pi(s'))),
    in raw reward units (divided by the reward scale squared)."""
    import torch

    parts = _critic_parts(algorithm)
    if parts is None:
        return float("nan")
    q_of, critic, policy_actions, backup_value, scale = parts
    gamma = float(getattr(algorithm.config, "gamma", 0.99))
    with torch.no_grad():
        feats = algorithm.encoder(torch.as_tensor(dataset.observations))
        feats_next = algorithm.encoder(torch.as_tensor(dataset.next_observations))
        q = q_of(critic, feats, dataset.actions).double()
        v_next = backup_value(dataset.next_observations, feats_next).double()
        rewards = torch.as_tensor(dataset.rewards, dtype=torch.float64) * scale
        not_done = 1.0 - torch.as_tensor(dataset.terminations, dtype=torch.float64)
        err = q - (rewards + gamma * not_done * v_next)
    return float((err**2).mean()) / scale**2


def q_trajectory(run_dir: Path) -> list[float]:
    """The logged mean Q on dataset actions over training (``metrics.jsonl``), or []."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for key in Q_METRICS:
        if rows and all(key in r for r in rows):
            return [float(r[key]) for r in rows]
    return []


def relative_decline(trajectory: Sequence[float]) -> float:
    """How much of a "peak then decline" the Q trajectory shows (Kumar et al. 2021: the mean Q on
    dataset actions first rises, then falls): (peak - final) / (max - min), the peak taken AFTER
    the trajectory's lowest point. So a Q that only falls from its initial value to where it
    converges (every negative-reward task: Q starts near 0 above its fixed point) has no decline,
    and a Q that rises, peaks and falls back gives back the fraction of its range since the peak.
    0 while it still peaks at the end or is constant; NaN if empty."""
    if not trajectory:
        return float("nan")
    q = np.asarray(trajectory, dtype=np.float64)
    spread = float(q.max() - q.min())
    if spread <= 0:
        return 0.0
    peak = float(q[int(np.argmin(q)):].max())
    return float((peak - q[-1]) / spread)


def run_criteria(run_dir: Path, dataset, validation, estimators: Sequence[str], *, gamma: float, seed: int,
                 settings=None) -> dict:
    """Every criterion value of one finished run (larger = better, except td/decline)."""
    from offbench.evaluation.ope import AlgorithmPolicy
    from offbench.evaluation.ope_study import EstimatorRunner, EstimatorSettings
    from offbench.evaluation.zoo import load_run_algorithm

    algorithm, step, _ = load_run_algorithm(run_dir, dataset)
    row: dict[str, Any] = {"checkpoint_step": step, "critic": critic_value(algorithm, dataset),
                           "validation_td_error": td_error(algorithm, validation),
                           "q_decline": relative_decline(q_trajectory(run_dir))}
    try:
        policy = AlgorithmPolicy(algorithm)
    except OffbenchError:
        policy = None
    runner = EstimatorRunner(dataset, gamma=gamma, seed=seed, settings=settings or EstimatorSettings())
    for name in estimators:
        value = float("nan")
        if policy is not None:
            try:
                value = float(runner.run(name, policy).value)
            except (OffbenchError, ValueError, RuntimeError, np.linalg.LinAlgError):
                pass
        row[f"ope:{name}"] = value
    return row


# ====================================================================== selection rules
def _argmax(values: np.ndarray) -> int | None:
    """Index of the largest finite value (ties: the first in grid order); None if none is finite."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    return int(np.argmax(np.where(finite, values, -np.inf)))


def cql_workflow_choice(decline: np.ndarray, td: np.ndarray, tolerance: float = WORKFLOW_TOLERANCE) -> int | None:
    """The CQL workflow rule (Kumar et al. 2021) applied to settings.

    A setting shows overfitting when its dataset-action Q peaked and then declined by more than
    ``tolerance`` of the peak by the final checkpoint (the one evaluated). Among the settings
    without that signal, pick the one with the lowest validation TD error (a high held-out TD
    error signals underfitting); if every setting overfits, pick the smallest decline. Ties
    go to grid order. None if no setting has a logged Q trajectory.
    """
    decline, td = np.asarray(decline, dtype=np.float64), np.asarray(td, dtype=np.float64)
    if not np.isfinite(decline).any():
        return None
    ok = np.isfinite(decline) & (decline <= tolerance)
    if ok.any():
        if np.isfinite(td[ok]).any():
            return _argmax(np.where(ok, -td, np.nan))
        return int(np.flatnonzero(ok)[0])
    return _argmax(-decline)


def select_units(table, criteria: Sequence[str], *, tolerance: float = WORKFLOW_TOLERANCE,
                 default_point: str | None = None):
    """Per (dataset, seed) unit and rule: the chosen grid point and its regret.

    ``table`` has one row per (dataset, seed, point) with ``truth`` and the criterion columns.
    Rules: ``truth`` (the oracle itself), each criterion in ``criteria`` (argmax; for
    ``validation_td_error`` argmin), ``cql_workflow`` (:func:`cql_workflow_choice`),
    ``default`` (always ``default_point``, the grid point equal to the protocol's own setting,
    when the grid contains it: no selection at all) and ``random`` (the expected regret of a
    uniformly random choice).
    """
    import pandas as pd

    rows = []
    for (dataset, seed), unit in table.groupby(["dataset", "seed"], sort=True):
        unit = unit.reset_index(drop=True)
        truth = unit.truth.to_numpy(float)
        best, worst = float(np.nanmax(truth)), float(np.nanmin(truth))
        spread = best - worst
        oracle = unit.point[int(np.nanargmax(truth))]

        def regret(i):
            return (best - truth[i]) / spread if spread > 0 else 0.0

        rules: dict[str, int | None] = {"truth": _argmax(truth)}
        for c in criteria:
            values = unit[c].to_numpy(float)
            rules[c] = _argmax(-values if c == "validation_td_error" else values)
        rules["cql_workflow"] = cql_workflow_choice(unit.q_decline.to_numpy(float),
                                                    unit.validation_td_error.to_numpy(float), tolerance)
        if default_point is not None:
            matches = np.flatnonzero(unit.point.to_numpy() == default_point)
            rules["default"] = int(matches[0]) if len(matches) else None
        for rule, i in rules.items():
            rows.append({"dataset": dataset, "seed": seed, "rule": rule, "candidates": len(unit), "oracle": oracle,
                         "oracle_score": best, "chosen": unit.point[i] if i is not None else "",
                         "chosen_score": truth[i] if i is not None else np.nan,
                         "regret": regret(i) if i is not None else np.nan,
                         "raw_regret": best - truth[i] if i is not None else np.nan})
        rows.append({"dataset": dataset, "seed": seed, "rule": "random", "candidates": len(unit), "oracle": oracle,
                     "oracle_score": best, "chosen": "(uniform)", "chosen_score": float(np.nanmean(truth)),
                     "regret": float(np.mean([regret(i) for i in range(len(unit))])),
                     "raw_regret": best - float(np.nanmean(truth))})
    return pd.DataFrame.from_records(rows)


def regret_summary(selections, *, resamples: int = 1000, seed: int = 0, confidence: float = 0.95):
    """Mean regret per rule with a percentile bootstrap over (dataset, seed) units."""
    import pandas as pd

    rows = []
    rng = np.random.default_rng(seed)
    for rule, g in selections.groupby("rule", sort=False):
        r = g.regret.to_numpy(float)
        defined = r[np.isfinite(r)]
        row = {"rule": rule, "units": len(r), "undefined_units": int(len(r) - len(defined))}
        for name, values in (("regret", defined), ("raw_regret", g.raw_regret.to_numpy(float)[np.isfinite(r)])):
            if len(values):
                means = values[rng.integers(len(values), size=(resamples, len(values)))].mean(1)
                lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
                row.update({name: float(values.mean()), f"{name}_low": float(lo), f"{name}_high": float(hi)})
            else:
                row.update({name: np.nan, f"{name}_low": np.nan, f"{name}_high": np.nan})
        row["oracle_picked"] = float(np.mean(g.chosen[np.isfinite(r)] == g.oracle[np.isfinite(r)])) if len(defined) else np.nan
        rows.append(row)
    return pd.DataFrame.from_records(rows)


# ====================================================================== the study
def run_select(algo: str, protocol, grid: dict[str, list], out: str | os.PathLike, *,
               datasets: Sequence[str] | None = None, seeds: int | None = None, workers: int = 1,
               estimators: Sequence[str] = ("fqe", "wpdis"), gamma: float = 0.99, holdout: bool = True,
               seed: int = 0, resamples: int = 1000, figures: bool = True, progress: bool = False,
               tolerance: float = WORKFLOW_TOLERANCE, settings=None, log: Callable[[str], None] = print) -> dict:
    """Sweep ``grid`` for ``algo`` under ``protocol`` into ``out`` (resumable) and write the study."""
    import pandas as pd
    import torch

    from offbench.algorithm import load_algorithm_class, make_config
    from offbench.data import load_dataset
    from offbench.data.recipes import ensure_built
    from offbench.evaluation.ope_study import EstimatorSettings, check_estimators
    from offbench.evaluation.results import dataset_slug, load_results, run_scores
    from offbench.reproduce import algorithm_dirname, reproduce

    estimators = check_estimators(estimators)
    settings = settings or EstimatorSettings()
    make_config(load_algorithm_class(algo), {k: v[0] for k, v in grid.items()})  # unknown settings: an error now
    torch.set_num_threads(1)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = holdout_algorithm(algo) if holdout else algo
    base = protocol.restricted(datasets=list(datasets) if datasets else None, seeds=seeds)
    if datasets:
        unknown = sorted(set(datasets) - set(protocol.datasets))
        if unknown:
            log(f"note: datasets {unknown} are not in protocol {protocol.name!r}; running them under its settings")
    points = grid_points(grid)
    study = {"algorithm": algo, "trained_as": name, "protocol": protocol.name, "suite": protocol.suite,
             "grid": grid, "points": [point_label(p) for p in points], "datasets": base.datasets,
             "seeds": base.seeds, "holdout": holdout, "validation_fraction": VALIDATION_FRACTION if holdout else None,
             "estimators": estimators, "gamma": gamma, "workflow_tolerance": tolerance,
             "estimator_settings": settings.as_dict()}
    (out / "study.json").write_text(json.dumps(study, indent=2))

    records = []
    for point in points:
        label = point_label(point)
        point_protocol = base.restricted(algorithms=[name])
        fixed = protocol.per_algorithm.get(algo, {})
        point_protocol.per_algorithm = {name: {"train": dict(fixed.get("train", {})),
                                               "settings": {**fixed.get("settings", {}), **point}}}
        results_dir = out / "points" / _dirname(label)
        log(f"grid point {label}: {results_dir}")
        manifest = reproduce(point_protocol, results_dir, workers=workers, progress=progress, log=log)
        failed = [r for r in manifest["runs"] if r["status"] == "failed"]
        for r in failed:
            log(f"  FAILED {r['dataset']} seed {r['seed']}: {r['error'].splitlines()[0]}")
        _, _, table = load_results(results_dir)
        score_key = "normalized_score" if table.normalized_score.notna().all() else "return_mean"
        scores = run_scores(table, point_protocol.headline, score=score_key)
        for s in scores.itertuples():
            records.append({"point": label, "dataset": s.dataset, "seed": int(s.seed), "truth": float(s.score),
                            "score_kind": score_key,
                            "run_dir": str(results_dir / "runs" / algorithm_dirname(name) / dataset_slug(s.dataset)
                                           / f"seed{int(s.seed)}")})
    runs = pd.DataFrame.from_records(records)

    # criteria per run, cached in criteria.csv (the expensive part is OPE)
    cache_path = out / "criteria.csv"
    cache = pd.read_csv(cache_path) if cache_path.exists() else pd.DataFrame()
    key_cols = ["point", "dataset", "seed"]
    cached = {tuple(r[k] for k in key_cols): r for r in cache.to_dict("records")} if len(cache) else {}
    wanted = ["critic", "validation_td_error", "q_decline", *[f"ope:{e}" for e in estimators]]
    rows = []
    loaded: dict[str, tuple] = {}
    for r in runs.to_dict("records"):
        key = (r["point"], r["dataset"], r["seed"])
        if key in cached and all(c in cached[key] for c in wanted):
            # the decline is cheap (it reads metrics.jsonl): always recomputed, so a change of its
            # definition never leaves stale values in the cache
            rows.append({**cached[key], **r, "q_decline": relative_decline(q_trajectory(Path(r["run_dir"])))})
            continue
        if r["dataset"] not in loaded:
            ensure_built(r["dataset"], progress=False)
            ds = load_dataset(r["dataset"])
            loaded = {r["dataset"]: (ds, validation_split(ds)[1])}  # one dataset in memory at a time
        ds, val = loaded[r["dataset"]]
        log(f"criteria: {r['point']} {r['dataset']} seed {r['seed']}")
        rows.append({**r, **run_criteria(Path(r["run_dir"]), ds, val, estimators, gamma=gamma, seed=seed,
                                             settings=settings)})
        pd.DataFrame.from_records(rows).to_csv(cache_path, index=False)
    table = pd.DataFrame.from_records(rows)
    table.to_csv(cache_path, index=False)

    criteria = ["critic", "validation_td_error", *[f"ope:{e}" for e in estimators]]
    study["default_point"] = default_point_label(algo, protocol, points)
    (out / "study.json").write_text(json.dumps(study, indent=2))
    selections = select_units(table, criteria, tolerance=tolerance, default_point=study["default_point"])
    summary = regret_summary(selections, resamples=resamples, seed=seed)
    write_select_outputs(table, selections, summary, out, study, figures=figures)
    return {"out": out, "table": table, "selections": selections, "summary": summary}


RULE_DEFINITIONS = {
    "truth": "the oracle: the setting with the best true score (regret 0 by definition; a check)",
    "critic": "argmax of the training critic's value of its own policy on dataset start states",
    "validation_td_error": "argmin of the critic's mean squared TD error on the held-out episodes",
    "cql_workflow": "no 'peak then decline' of the logged dataset-action Q (decline <= tolerance), then the lowest "
                    "validation TD error; if every setting declines, the smallest decline",
    "random": "expected regret of a uniformly random setting",
    "default": "always the protocol's own setting (no selection), when the grid contains it",
}


def default_point_label(algo: str, protocol, points: Sequence[dict]) -> str | None:
    """The label of the grid point equal to the setting the protocol trains ``algo`` with
    (its overrides over the algorithm's defaults), or None if no grid point is."""
    from dataclasses import asdict

    from offbench.algorithm import load_algorithm_class, make_config

    config = asdict(make_config(load_algorithm_class(algo), protocol.per_algorithm.get(algo, {}).get("settings", {})))

    def same(key, value) -> bool:
        if key not in config:
            return False
        numbers = (int, float)
        if isinstance(value, numbers) and isinstance(config[key], numbers) and not isinstance(value, bool):
            return float(config[key]) == float(value)  # the grid's 3 is the config's 3.0
        if isinstance(value, (list, tuple)) and isinstance(config[key], (list, tuple)):
            return tuple(value) == tuple(config[key])  # a TOML list is the config's tuple
        return config[key] == value

    for point in points:
        if all(same(k, v) for k, v in point.items()):
            return point_label(point)
    return None


def write_select_outputs(table, selections, summary, out: Path, study: dict, *, figures: bool = True) -> None:
    from offbench.evaluation.tables import interval_text, markdown_table

    selections.to_csv(out / "selections.csv", index=False)
    summary.to_csv(out / "regret.csv", index=False)
    cells = summary.assign(regret=[interval_text(r.regret, r.regret_low, r.regret_high) for r in summary.itertuples()],
                           raw_regret=[interval_text(r.raw_regret, r.raw_regret_low, r.raw_regret_high)
                                       for r in summary.itertuples()],
                           oracle_picked=[f"{v:.2f}" if np.isfinite(v) else "n/a" for v in summary.oracle_picked],
                           definition=[RULE_DEFINITIONS.get(r, f"argmax of the OPE estimate {r[4:]}"
                                                            if r.startswith("ope:") else "") for r in summary.rule])
    kind = table.score_kind.iloc[0] if len(table) else "score"
    text = [f"# Hyperparameter selection: {study['algorithm']} on {study['suite']} ({study['protocol']} protocol)\n",
            f"Grid: {json.dumps(study['grid'])}; {len(study['datasets'])} datasets x {len(study['seeds'])} seeds = "
            f"{selections[['dataset', 'seed']].drop_duplicates().shape[0]} selection units. Truth: each run's headline "
            f"{kind}. Training on the {'train split (10% of episodes held out)' if study['holdout'] else 'whole dataset (validation TD error is in-sample)'}.",
            "Regret = (oracle - chosen) / (oracle - worst) per unit; raw regret in score units; mean over units "
            "with 95% bootstrap intervals over units (1000 resamples). oracle_picked: fraction of units where the "
            "rule picked the oracle's setting.\n",
            markdown_table(cells, ["rule", "units", "undefined_units", "regret", "raw_regret", "oracle_picked",
                              "definition"])]
    (out / "regret.md").write_text("\n".join(text))
    if figures:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(1.2 * len(summary) + 2, 3.4))
        v = summary.regret.to_numpy(float)
        err = np.abs(np.vstack([v - summary.regret_low.to_numpy(float), summary.regret_high.to_numpy(float) - v]))
        ax.bar(range(len(v)), np.nan_to_num(v), yerr=np.nan_to_num(err), capsize=3)
        ax.set_xticks(range(len(v)), summary.rule, rotation=30, ha="right")
        ax.set_ylabel("normalised regret vs oracle")
        ax.set_title(f"{study['algorithm']} on {study['suite']}: selection regret")
        fig.tight_layout()
        fig.savefig(out / "regret.png", dpi=120)
        plt.close(fig)


__all__ = ["cql_workflow_choice", "critic_value", "grid_points", "holdout_algorithm", "parse_grid",
           "q_trajectory", "regret_summary", "relative_decline", "run_criteria", "run_select", "select_units",
           "td_error"]
