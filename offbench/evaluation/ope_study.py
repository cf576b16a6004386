"""OPE studies on policy zoos: every estimator on every zoo policy against the dataset, compared
with the zoo's ground truth (DOPE metrics, expected online performance, figures). The commands
that run them (``offbench ope``, ``offbench ope zoo``, ``offbench select``) are in
:mod:`offbench.cli.ope`.

``offbench ope DATASET|SUITE --zoo DIR`` runs every requested estimator on every zoo policy
against the dataset and compares it with the zoo's ground truth (discounted with ``--gamma``,
default 0.99; ``--gamma 1`` compares with the undiscounted return). A SUITE name means every
dataset of that suite with a zoo; the suite row of the metrics is the **mean over datasets**
of each per-dataset metric (DOPE's aggregation), its interval a stratified bootstrap
(policies resampled within each dataset, the mean over datasets taken per resample).
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from offbench.errors import OffbenchError
from offbench.evaluation.tables import interval_text, markdown_table

DEFAULT_ESTIMATORS = ("fqe", "wpdis", "dr", "model", "dualdice")
METRIC_NAMES = ("absolute_error", "spearman", "regret@1", "regret@5")
SUITE_ROW = "MEAN over datasets"


# ====================================================================== estimators
def _horizon(dataset) -> int:
    spec = dataset.metadata.env_spec or {}
    steps = spec.get("max_episode_steps") if isinstance(spec, dict) else None
    return int(steps or np.max(dataset.episode_lengths))


def _tabular(dataset) -> bool:
    import gymnasium as gym

    from offbench.evaluation.ope import tabular_states

    return tabular_states(dataset) is not None and isinstance(dataset.action_space, gym.spaces.Discrete)


@dataclass(frozen=True)
class EstimatorSettings:
    """Budgets of the learned estimators (None: the estimator's own default)."""

    fqe_steps: int | None = None  # neural FQE gradient steps (ope.neural_fqe: 5000)
    dualdice_steps: int | None = None  # neural DualDICE steps (ope.dualdice: 5000)
    model_hidden: tuple[int, ...] | None = None  # dynamics ensemble layers (DynamicsEnsemble: 4 x 200)
    model_max_epochs: int | None = None  # dynamics training epochs (None: until hold-out early stopping)

    def as_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}


class EstimatorRunner:
    """Runs named estimators on one dataset, sharing what can be shared between them and
    between policies: FQE's Q-function is DR's model for the same policy, and one dynamics
    ensemble (fitted on the first model-based call) serves every policy.

    Targets (docs/off-policy-evaluation.md): the value of one time-limited episode, which is
    what the zoo's ground truth measures. ``fqe`` (tabular and neural) fits the time-indexed Q
    with ``horizon`` = the env's time limit (``fqe_stationary`` fits the stationary Q instead,
    as DOPE's FQE does: it overstates a short episode's value, by the factor 1/(1 - gamma^H)
    for constant rewards, 2.5x on Reacher's 50 steps); the IS family, ``dr``/``wdr`` (on
    ``fqe``'s Q) and ``model`` the time-limited value; ``dualdice`` only the stationary value.
    """

    def __init__(self, dataset, *, gamma: float, seed: int = 0, settings: EstimatorSettings = EstimatorSettings()):
        self.dataset, self.gamma, self.seed = dataset, float(gamma), int(seed)
        self.tabular = _tabular(dataset)
        self.horizon = _horizon(dataset)
        self.settings = settings
        self._dynamics = None
        self._fqe_cache: tuple[Any, Any, bool] | None = None  # (policy, its FQE estimate, stationary)

    def _fqe(self, policy, stationary: bool = False):
        from offbench.evaluation import ope

        if self._fqe_cache is None or self._fqe_cache[0] is not policy or self._fqe_cache[2] != stationary:
            kwargs: dict[str, Any] = {"gamma": self.gamma, "seed": self.seed}
            if not stationary or self.tabular or self.gamma >= 1.0:
                kwargs["horizon"] = self.horizon
            if self.settings.fqe_steps and not self.tabular:
                kwargs["steps"] = self.settings.fqe_steps
            self._fqe_cache = (policy, ope.fqe(self.dataset, policy, **kwargs), stationary)  # one policy at a time
        return self._fqe_cache[1]

    def run(self, name: str, policy) -> Any:
        from offbench.evaluation import ope

        if name == "fqe":
            return self._fqe(policy)
        if name == "fqe_stationary":
            return self._fqe(policy, stationary=True)
        if name in ope.IS_VARIANTS:
            return ope.importance_sampling(self.dataset, policy, name, gamma=self.gamma, seed=self.seed)
        if name in ("dr", "wdr"):
            return ope.doubly_robust(self.dataset, policy, weighted=name == "wdr", gamma=self.gamma,
                                     q_function=self._fqe(policy).model, seed=self.seed)
        if name == "model":
            ensemble = {"hidden": self.settings.model_hidden} if self.settings.model_hidden else None
            fit = {"max_epochs": self.settings.model_max_epochs} if self.settings.model_max_epochs else None
            est = ope.model_based(self.dataset, policy, gamma=self.gamma, model=self._dynamics, seed=self.seed,
                                  ensemble_kwargs=ensemble, fit_kwargs=fit)
            self._dynamics = est.model
            return est
        if name == "dualdice":
            kwargs = {"steps": self.settings.dualdice_steps} if self.settings.dualdice_steps else {}
            return ope.dualdice(self.dataset, policy, gamma=self.gamma, seed=self.seed, **kwargs)
        raise OffbenchError(f"unknown estimator {name!r}; choose from {estimator_names()}")


def estimator_names() -> list[str]:
    return ["fqe", "fqe_stationary", "is", "pdis", "wis", "wpdis", "dr", "wdr", "model", "dualdice"]


def check_estimators(names: Sequence[str]) -> list[str]:
    unknown = sorted(set(names) - set(estimator_names()))
    if unknown:
        raise OffbenchError(f"unknown estimators {unknown}; choose from {estimator_names()}")
    return list(dict.fromkeys(names))


# ====================================================================== the OPE study
def _datasets_for(target: str, zoo_dir: Path) -> tuple[list[str], bool]:
    """(dataset ids, is_suite): a catalogue id, or a suite name meaning its datasets with a zoo."""
    from offbench.data.catalogue import list_cards
    from offbench.evaluation.zoo import zoo_path

    cards = list_cards()
    if any(c.id == target for c in cards) or "/" in target:
        return [target], False
    ids = [c.id for c in cards if c.suite == target]
    if not ids:
        raise OffbenchError(f"{target!r} is neither a catalogue dataset id nor a suite name "
                            f"(suites: {sorted({c.suite for c in cards})})")
    with_zoo = [d for d in ids if (zoo_path(zoo_dir, d) / "manifest.json").is_file()]
    if not with_zoo:
        raise OffbenchError(f"no dataset of suite {target!r} has a zoo under {zoo_dir}; build them with "
                            "`offbench ope zoo DATASET --from RESULTS_DIR --out ZOO_DIR`")
    return with_zoo, True


def estimate_zoo(dataset_id: str, zoo_dir: Path, estimators: Sequence[str], *, gamma: float, seed: int,
                 settings: EstimatorSettings = EstimatorSettings(), log: Callable[[str], None] = print) -> list[dict]:
    """One row per (zoo policy, estimator): estimate, truth, seconds, error (NaN estimate on failure)."""
    import torch

    from offbench.data import load_dataset
    from offbench.data.recipes import ensure_built
    from offbench.evaluation.zoo import load_zoo, truth_value, zoo_policy

    torch.set_num_threads(1)
    manifest = load_zoo(zoo_dir, dataset_id)
    ensure_built(dataset_id, progress=False)
    dataset = load_dataset(dataset_id)
    if manifest.get("dataset_content_sha256") not in (None, dataset.content_sha256()):
        raise OffbenchError(f"the zoo of {dataset_id} was built for another version of the dataset "
                            "(dataset_content_sha256 differs); rebuild it")
    runner = EstimatorRunner(dataset, gamma=gamma, seed=seed, settings=settings)
    rows = []
    for entry in manifest["policies"]:
        truth, truth_se = truth_value(entry, gamma)
        policy = zoo_policy(zoo_dir, entry, dataset)
        for name in estimators:
            started = time.perf_counter()
            value, error, details = float("nan"), "", {}
            try:
                est = runner.run(name, policy)
                value, details = float(est.value), est.details
            except (OffbenchError, ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
                error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            rows.append({"dataset": dataset_id, "policy": entry["name"], "source": entry["source"],
                         "algorithm": entry.get("algorithm", ""), "truth": truth, "truth_stderr": truth_se,
                         "estimator": name, "estimate": value, "seconds": round(time.perf_counter() - started, 3),
                         "behaviour": details.get("behaviour", ""), "error": error})
            log(f"  {dataset_id} {entry['name']} {name}: {value:.4g} (truth {truth:.4g})"
                + (f" [{error}]" if error else ""))
    return rows


def _finite(t: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(e)
    return t[keep], e[keep]


def metric_functions(ks: Sequence[int] = (1, 5)) -> dict[str, Callable]:
    from offbench.evaluation import dope_metrics as dm

    out = {"absolute_error": dm.absolute_error, "spearman": dm.spearman}
    out.update({f"regret@{k}": (lambda t, e, k=k: dm.regret_at_k(t, e, k)) for k in ks})
    return out


def stratified_bootstrap(metric: Callable, groups: list[tuple[np.ndarray, np.ndarray]], *, resamples: int = 1000,
                         seed: int = 0, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean over groups (datasets) of ``metric``; interval from resampling policies within each group."""
    point = float(np.nanmean([metric(t, e) for t, e in groups]))
    rng = np.random.default_rng(seed)
    stats = np.empty(resamples)
    for r in range(resamples):
        values = []
        for t, e in groups:
            rows = rng.integers(len(t), size=len(t))
            values.append(metric(t[rows], e[rows]))
        values = np.asarray(values, dtype=np.float64)
        stats[r] = np.mean(values) if np.all(np.isfinite(values)) else np.nan
    defined = stats[np.isfinite(stats)]
    if defined.size == 0:
        return point, float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(defined, [alpha, 1 - alpha])
    return point, float(low), float(high)


def dope_table(estimates, *, resamples: int = 1000, seed: int = 0, aggregate: bool = False):
    """Per (dataset, estimator) DOPE metrics with bootstrap intervals over policies; with
    ``aggregate`` a row per estimator with the mean over datasets (stratified bootstrap)."""
    import pandas as pd

    from offbench.evaluation import dope_metrics as dm

    metrics = metric_functions()
    rows = []
    for (dataset, estimator), group in estimates.groupby(["dataset", "estimator"], sort=False):
        t, e = _finite(group.truth.to_numpy(float), group.estimate.to_numpy(float))
        row = {"dataset": dataset, "estimator": estimator, "policies": len(t),
               "failed": int(len(group) - len(t))}
        for name, fn in metrics.items():
            if len(t) >= 1:
                iv = dm.bootstrap(fn, t, e, resamples=resamples, seed=seed)
                row.update({name: iv.value, f"{name}_low": iv.low, f"{name}_high": iv.high})
            else:
                row.update({name: np.nan, f"{name}_low": np.nan, f"{name}_high": np.nan})
        rows.append(row)
    if aggregate:
        for estimator, group in estimates.groupby("estimator", sort=False):
            parts = [_finite(g.truth.to_numpy(float), g.estimate.to_numpy(float)) for _, g in group.groupby("dataset")]
            parts = [p for p in parts if len(p[0]) >= 1]
            row = {"dataset": SUITE_ROW, "estimator": estimator, "policies": int(sum(len(p[0]) for p in parts)),
                   "failed": int(len(group) - sum(len(p[0]) for p in parts))}
            for name, fn in metrics.items():
                if parts:
                    v, lo, hi = stratified_bootstrap(fn, parts, resamples=resamples, seed=seed)
                else:
                    v = lo = hi = np.nan
                row.update({name: v, f"{name}_low": lo, f"{name}_high": hi})
            rows.append(row)
    return pd.DataFrame.from_records(rows)


RANDOM_SELECTOR = "random (no OPE)"
EOP_KS = (1, 2, 3, 5, 10)


def eop_curves(estimates):
    """Expected online performance (Kurenkov & Kolesnikov 2022) of a budget of k online evaluations:
    the best normalised true value among the k policies an estimator ranks highest, and
    ``random (no OPE)``: E[max of k] policies drawn uniformly (``dope_metrics.expected_max_of_k``).
    Values normalised per dataset (0 = its worst policy, 1 = its best). Rows for every k up to the
    dataset's policy count, plus ``MEAN over datasets`` rows for k up to the smallest count."""
    import pandas as pd

    from offbench.evaluation import dope_metrics as dm

    rows = []
    for dataset, g in estimates.groupby("dataset", sort=True):
        truth = g.drop_duplicates("policy").truth.to_numpy(float)
        if len(truth) == 0:
            continue
        ks = range(1, len(truth) + 1)
        random = dm.expected_max_of_k(dm.normalise(truth, truth), list(ks))
        rows += [{"dataset": dataset, "selector": RANDOM_SELECTOR, "k": k, "value": float(v)} for k, v in zip(ks, random)]
        for name, e in g.groupby("estimator", sort=False):
            t, est = _finite(e.truth.to_numpy(float), e.estimate.to_numpy(float))
            if len(t) == 0:
                continue
            order = dm.normalise(t, truth)[dm.top_k(est, len(t))]
            best = np.maximum.accumulate(order)
            rows += [{"dataset": dataset, "selector": name, "k": k, "value": float(best[min(k, len(t)) - 1])}
                     for k in ks]
    curves = pd.DataFrame.from_records(rows, columns=["dataset", "selector", "k", "value"])
    if curves.dataset.nunique() > 1:
        k_max = int(curves.groupby("dataset").k.max().min())
        mean = (curves[curves.k <= k_max].groupby(["selector", "k"], sort=False).value.mean().reset_index()
                .assign(dataset=SUITE_ROW))
        curves = pd.concat([curves, mean[curves.columns]], ignore_index=True)
    return curves


def write_ope_outputs(estimates, metrics, out: Path, *, gamma: float, figures: bool = True) -> None:
    out.mkdir(parents=True, exist_ok=True)
    estimates.to_csv(out / "estimates.csv", index=False)
    metrics.to_csv(out / "metrics.csv", index=False)
    eop = eop_curves(estimates)
    eop.to_csv(out / "eop.csv", index=False)
    est_cols = list(dict.fromkeys(estimates.estimator))
    wide = estimates.drop_duplicates(["dataset", "policy"])[["dataset", "policy", "truth", "truth_stderr"]]
    values = estimates.set_index(["dataset", "policy", "estimator"]).estimate
    wide = wide.assign(**{c: [values.get((d, p, c), np.nan) for d, p in zip(wide.dataset, wide.policy)]
                          for c in est_cols})
    wide = wide.sort_values(["dataset", "truth"], ascending=[True, False])
    show = wide.assign(truth=[f"{t:.4g} ± {s:.2g}" for t, s in zip(wide.truth, wide.truth_stderr)],
                       **{c: [f"{v:.4g}" if np.isfinite(v) else "failed" for v in wide[c]] for c in est_cols})
    value = "discounted (gamma = %g)" % gamma if gamma < 1 else "undiscounted"
    text = [f"# OPE estimates vs truth ({value} episode value; truth ± standard error of the online rollouts)\n",
            markdown_table(show, ["dataset", "policy", "truth", *est_cols]), "",
            "# DOPE metrics (95% bootstrap intervals over policies, 1000 resamples)\n",
            f"Normalised absolute error (estimates clipped at 2), Spearman rank correlation, regret@k on normalised "
            f"values. `{SUITE_ROW}`: each metric averaged over the datasets (DOPE), interval from a stratified "
            "bootstrap (policies resampled within each dataset).\n"]
    cells = metrics.assign(**{m: [interval_text(r[m], r[f"{m}_low"], r[f"{m}_high"]) for _, r in metrics.iterrows()]
                              for m in METRIC_NAMES})
    text.append(markdown_table(cells, ["dataset", "estimator", "policies", "failed", *METRIC_NAMES]))
    summary = eop[eop.dataset == (SUITE_ROW if (eop.dataset == SUITE_ROW).any() else eop.dataset.iloc[0])] \
        if len(eop) else eop
    if len(summary):
        ks = [k for k in EOP_KS if k <= summary.k.max()]
        table = summary[summary.k.isin(ks)].pivot(index="selector", columns="k", values="value")
        table = table.reindex([RANDOM_SELECTOR, *[n for n in est_cols if n in table.index]])
        text += ["", f"# Expected online performance ({summary.dataset.iloc[0]})\n",
                 "Best normalised true value among the k policies each estimator ranks highest (0 = the dataset's "
                 "worst policy, 1 = its best); `random (no OPE)`: k policies drawn uniformly (Kurenkov & "
                 "Kolesnikov 2022). Every k: `eop.csv`.\n",
                 markdown_table(table.reset_index().rename(columns={k: f"k={k}" for k in ks}).assign(
                     **{f"k={k}": [f"{v:.3f}" for v in table[k]] for k in ks}), ["selector", *[f"k={k}" for k in ks]])]
    (out / "table.md").write_text("\n".join(text))
    if figures:
        _ope_figures(estimates, metrics, out)
        _eop_figure(eop, out)


def _ope_figures(estimates, metrics, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from offbench.evaluation import dope_metrics as dm

    names = list(dict.fromkeys(estimates.estimator))
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for dataset, g in estimates[estimates.estimator == name].groupby("dataset"):
            t, e = _finite(g.truth.to_numpy(float), g.estimate.to_numpy(float))
            if len(t):
                ax.scatter(dm.normalise(t, t), dm.normalise(e, t, clip_max=dm.ESTIMATE_CLIP), s=14, label=dataset)
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        ax.set_title(name)
        ax.set_xlabel("normalised true value")
    axes[0][0].set_ylabel("normalised estimate (clipped at 2)")
    labelled = [ax for ax in axes[0] if ax.get_legend_handles_labels()[0]]
    if labelled and estimates.dataset.nunique() <= 10:
        labelled[-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "scatter.png", dpi=120)
    plt.close(fig)

    rows = metrics[metrics.dataset == SUITE_ROW] if (metrics.dataset == SUITE_ROW).any() else metrics
    fig, axes = plt.subplots(1, len(METRIC_NAMES), figsize=(3.4 * len(METRIC_NAMES), 3.2), squeeze=False)
    for ax, m in zip(axes[0], METRIC_NAMES):
        labels = [f"{r.estimator}" if rows.dataset.nunique() == 1 else f"{r.estimator}\n{r.dataset}"
                  for r in rows.itertuples()]
        v = rows[m].to_numpy(float)
        err = np.abs(np.vstack([v - rows[f"{m}_low"].to_numpy(float), rows[f"{m}_high"].to_numpy(float) - v]))
        ax.bar(range(len(v)), np.nan_to_num(v), yerr=np.nan_to_num(err), capsize=3)
        ax.set_xticks(range(len(v)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_title(m)
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=120)
    plt.close(fig)


def _eop_figure(eop, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not len(eop):
        return
    rows = eop[eop.dataset == SUITE_ROW] if (eop.dataset == SUITE_ROW).any() else eop[eop.dataset == eop.dataset.iloc[0]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for selector, g in rows.groupby("selector", sort=False):
        ax.plot(g.k, g.value, marker="o", ms=3, label=selector, ls="--" if selector == RANDOM_SELECTOR else "-")
    ax.set_xlabel("policies evaluated online (k)")
    ax.set_ylabel("best normalised true value")
    ax.set_title(f"expected online performance: {rows.dataset.iloc[0]}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "eop.png", dpi=120)
    plt.close(fig)


def estimator_code_hash() -> str:
    """sha256 of the estimators' source (``ope.py`` and this module): a changed estimator
    invalidates cached estimates instead of mixing old and new numbers in one study."""
    import hashlib

    from offbench.evaluation import ope

    digest = hashlib.sha256()
    for path in (ope.__file__, __file__):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def run_ope(target: str, zoo_dir: str | os.PathLike, *, estimators: Sequence[str] = DEFAULT_ESTIMATORS,
            out: str | os.PathLike | None = None, gamma: float = 0.99, seed: int = 0, resamples: int = 1000,
            settings: EstimatorSettings = EstimatorSettings(), figures: bool = True,
            log: Callable[[str], None] = print) -> dict:
    """The OPE study of ``target`` (a dataset id or a suite name); returns the output paths and tables.

    Resumable: each dataset's estimates are kept in ``OUT/estimates/DATASET_SLUG.csv`` with the
    key they were made under (zoo manifest, estimators, gamma, seed, settings and the estimators'
    source code); a re-run reuses a dataset whose key is unchanged and estimates only the rest."""
    import hashlib

    import pandas as pd

    from offbench.atomic import write_atomic
    from offbench.evaluation.zoo import dataset_slug, load_zoo

    zoo_dir = Path(zoo_dir)
    estimators = check_estimators(estimators)
    datasets, is_suite = _datasets_for(target, zoo_dir)
    out = Path(out) if out else zoo_dir / "ope" / target.replace("/", "__")
    (out / "estimates").mkdir(parents=True, exist_ok=True)
    frames = []
    for dataset_id in datasets:
        zoo_manifest = json.dumps(load_zoo(zoo_dir, dataset_id), sort_keys=True).encode()  # a clear error if none
        key = json.dumps({"zoo": hashlib.sha256(zoo_manifest).hexdigest(), "estimators": list(estimators),
                          "gamma": gamma, "seed": seed, "settings": settings.as_dict(),
                          "code": estimator_code_hash()}, sort_keys=True)
        cached = out / "estimates" / f"{dataset_slug(dataset_id)}.csv"
        key_path = cached.with_suffix(".key.json")
        if cached.exists() and key_path.exists() and key_path.read_text() == key:
            log(f"{dataset_id}: estimates from an earlier run ({cached})")
            frames.append(pd.read_csv(cached, keep_default_na=False, na_values=["", "nan", "NaN"]))
            continue
        frame = pd.DataFrame.from_records(estimate_zoo(dataset_id, zoo_dir, estimators, gamma=gamma, seed=seed,
                                                       settings=settings, log=log))
        write_atomic(cached, frame.to_csv(index=False))
        write_atomic(key_path, key)
        frames.append(frame)
    estimates = pd.concat(frames, ignore_index=True)
    estimates["error"] = estimates["error"].fillna("").astype(str)
    estimates["behaviour"] = estimates["behaviour"].fillna("").astype(str)
    metrics = dope_table(estimates, resamples=resamples, seed=seed, aggregate=is_suite)
    write_ope_outputs(estimates, metrics, out, gamma=gamma, figures=figures)
    write_atomic(out / "ope.json", json.dumps({"target": target, "datasets": datasets, "estimators": estimators,
                                              "gamma": gamma, "seed": seed, "resamples": resamples,
                                              "settings": settings.as_dict(), "estimator_code": estimator_code_hash(),
                                              "zoo": str(zoo_dir)}, indent=2))
    return {"out": out, "estimates": estimates, "metrics": metrics}


__all__ = ["DEFAULT_ESTIMATORS", "eop_curves", "EstimatorRunner", "EstimatorSettings", "check_estimators", "dope_table", "estimate_zoo",
           "estimator_names", "run_ope", "stratified_bootstrap"]
