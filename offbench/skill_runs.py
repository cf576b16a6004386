"""One skill-discovery run of a protocol: train a skill-discovery or exploration method
(``baselines/skills/``) on an environment of the skills suite (``offbench.envs.skill_environments``),
measure its skills on a schedule with code the agent never trains (``offbench.evaluation.skills``),
and write the run directory that ``offbench reproduce`` and ``offbench report`` read
(``evaluations.jsonl``, ``summary.json``), as ``offbench.train.fit`` does for the offline suites.

A protocol of suite ``skills`` names environments where other suites name datasets, and its
``[train]`` table means: ``steps`` = training episodes, ``eval_every`` in episodes,
``eval_episodes`` / ``final_eval_episodes`` = N, the number of rollouts an evaluation plays,
``seed``, ``threads``; ``batch_size``, ``log_every`` and ``checkpoint_every`` are unused (a method's
batch size is a setting of its own, and the trainer checkpoints after every episode). Settings are
fields of the method's config class (``DIAYNConfig``, ...).

An evaluation, from the current parameters, with rollout streams of its own (training is untouched):

- **coverage**: N stochastic rollouts, seeded by :data:`EVAL_SEED` -- rollout r plays categorical
  skill r mod K, or the r-th of N skills drawn from a continuous prior (N different skills, as METRA
  measures it), or the one empty skill of a method without skills -- and the number of distinct
  1 x 1 cells of the x-y plane they visit, start included (``coverage``); ``final_distance`` is the
  mean distance from the start at which they end (also the row's ``returns`` and ``return_mean``,
  one per rollout, since the suite has no reward);
- **the independent classifier** (methods with skills only): N // K' rollouts of each of the K'
  evaluation skills (every categorical skill, or ``eval_skills`` continuous skills spread evenly over
  the prior's support: ``SkillSpace.spread``; a random draw can put several directions close together),
  seeded by ``EVAL_SEED + 1``; a logistic regression trained on the states of half of them and
  tested on the other half gives ``classifier_accuracy`` (against ``classifier_chance`` = 1 / K')
  and the bound ``mi_lower_bound`` on I(S; Z) in nats (against its ceiling ``log_k``). N must
  give every evaluation skill at least 2 rollouts.

The row's ``normalized_score`` is the coverage: the suite's headline score, in cells. The final
evaluation's rollouts are saved as ``rollouts.npz`` (observations, skills, the x-y coordinates), so
every metric can be recomputed and the report draws the skills' trajectories without retraining.
A killed run resumes exactly through the trainer's own checkpoints (``agent/``).
"""
from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import numpy as np

from offbench.atomic import write_atomic
from offbench.envs.skill_environments import SkillEnvironment, get_skill_environment
from offbench.errors import OffbenchError
from offbench.resumable import check_run_config, evaluate_on_schedule

#: the methods a ``skills`` protocol can name (``baselines.skills.registry.TRAINERS``)
SKILL_METHODS = ("diayn", "dads", "metra", "rnd", "random")
#: every evaluation's coverage rollouts are seeded by this, its classifier rollouts by this + 1
EVAL_SEED = 2_000_000


def method_config(algorithm: str, settings: dict[str, Any], threads: int = 1):
    """``(trainer class, config)`` of a method from a protocol's settings (lists become tuples;
    ``threads`` unless the settings say otherwise). Raises :class:`OffbenchError` naming an unknown
    method, unknown settings or a bad value."""
    from baselines.skills.registry import TRAINERS

    if algorithm not in SKILL_METHODS:
        raise OffbenchError(f"unknown skill-discovery method {algorithm!r}: use one of {list(SKILL_METHODS)}")
    trainer_class, config_class = TRAINERS[algorithm]
    known = sorted(f.name for f in fields(config_class))
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise OffbenchError(f"unknown {algorithm} settings {unknown}: {config_class.__name__} has {known}")
    values = {"threads": threads, **{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}}
    try:
        config = config_class(**values)
        config.check(trainer_class.name)
    except (TypeError, ValueError) as exc:
        raise OffbenchError(f"{algorithm} settings {settings}: {exc}") from None
    return trainer_class, config


def check_evaluation(trainer, rollouts: int, field: str = "eval_episodes") -> None:
    """Refuse an evaluation size that cannot measure the trainer's skills (named by ``field``)."""
    if int(rollouts) < 1:
        raise OffbenchError(f"[train].{field} = {rollouts}: a skills evaluation plays at least 1 rollout")
    space = trainer.skill_space
    if space.prior != "none":
        k = len(space.spread(trainer.config.eval_skills, EVAL_SEED + 1))
        if int(rollouts) // k < 2:
            raise OffbenchError(f"[train].{field} = {rollouts}: {trainer.name} has {k} evaluation skills and the "
                                f"independent classifier needs at least 2 rollouts of each, so at least {2 * k}")


def evaluate_skills(trainer, environment: SkillEnvironment, rollouts: int, seed: int = EVAL_SEED
                    ) -> tuple[dict, dict[str, np.ndarray]]:
    """The metrics of one evaluation (module docstring) and the arrays they come from."""
    check_evaluation(trainer, rollouts)
    space, xy = trainer.skill_space, list(environment.xy)
    if space.categorical:
        skills = np.arange(rollouts) % space.dim
    elif space.prior == "none":
        skills = np.zeros((rollouts, 0), np.float32)
    else:
        skills = space.evaluation_skills(rollouts, seed)
    observations = trainer.skill_rollouts(1, seed, skills=skills)["positions"].astype(np.float32)
    dims, cell = list(environment.coverage_coordinates), float(environment.coverage_cell)
    metrics: dict[str, Any] = coverage_metrics(observations, xy, dims, cell)
    arrays = {"xy": np.asarray(xy, np.int64), "coverage_dims": np.asarray(dims, np.int64),
              "coverage_cell": np.asarray(cell, np.float64), "coverage_observations": observations,
              "coverage_skills": space.vectors(skills) if not space.categorical else skills.astype(np.int64)}
    if space.prior != "none":
        evaluation_skills = space.spread(trainer.config.eval_skills, seed + 1)
        played = trainer.skill_rollouts(rollouts // len(evaluation_skills), seed + 1, skills=evaluation_skills)
        states, labels = played["positions"].astype(np.float32), played["skills"]
        metrics.update(classifier_metrics(states, labels, seed))
        arrays.update({"classifier_observations": states, "classifier_labels": labels.astype(np.int64),
                       "classifier_skills": space.vectors(evaluation_skills)})
    return metrics, arrays


def coverage_metrics(observations: np.ndarray, xy: list[int], dims: list[int], cell: float) -> dict[str, Any]:
    """Coverage (distinct cells of width ``cell`` in coordinates ``dims``) of rollouts ``observations``
    [R, T + 1, d], and the x-y distance from each rollout's start to its end (``final_distances``) and its mean."""
    from offbench.evaluation.skills import coverage

    distances = np.linalg.norm(observations[:, -1, xy] - observations[:, 0, xy], axis=-1).astype(np.float64)
    return {"coverage": coverage(observations[..., dims], cell), "final_distance": float(distances.mean()),
            "final_distances": distances}


def classifier_metrics(observations: np.ndarray, labels: np.ndarray, seed: int = EVAL_SEED) -> dict[str, float]:
    """The independent classifier on rollouts ``observations`` [R, T + 1, d] of skills ``labels`` [R]:
    every visited state after the (shared) start, split by rollout."""
    from offbench.evaluation.skills import independent_classifier

    R, T1, d = observations.shape
    result = independent_classifier(observations[:, 1:].reshape(-1, d), np.repeat(labels, T1 - 1),
                                    np.repeat(np.arange(R), T1 - 1), seed=seed)
    return {"classifier_accuracy": result["accuracy"], "classifier_chance": result["chance"],
            "mi_lower_bound": result["mi_lower_bound"], "log_k": result["log_k"]}


def metrics_from_rollouts(path: str | Path, seed: int = EVAL_SEED) -> dict[str, float]:
    """Recompute an evaluation's metrics from its saved ``rollouts.npz`` (what the report and the
    tests check results.csv against)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    xy = list(arrays["xy"])
    dims = list(arrays["coverage_dims"]) if "coverage_dims" in arrays else xy  # files written before: x-y cells
    cell = float(arrays["coverage_cell"]) if "coverage_cell" in arrays else 1.0
    observations = arrays["coverage_observations"]
    out = coverage_metrics(observations, xy, dims, cell)
    out.pop("final_distances")
    if "classifier_observations" in arrays:
        out.update(classifier_metrics(arrays["classifier_observations"], arrays["classifier_labels"], seed))
    return out


def resume_point(out: str | Path) -> int:
    """The training episode a run in ``out`` resumes from (0 without a checkpoint)."""
    try:
        return int(json.loads((Path(out) / "agent" / "checkpoint.json").read_text())["episodes"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


class _Stop(Exception):
    def __init__(self, step: int):
        self.step = step


def _save_rollouts(path: Path, arrays: dict[str, np.ndarray], step: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, step=np.int64(step), seed=np.int64(EVAL_SEED), **arrays)
    tmp.replace(path)


def train_skill_run(algorithm: str, environment_id: str, settings: dict[str, Any], config, out: str | Path, *,
                    on_step: Callable[[int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> dict:
    """Train ``algorithm`` on ``environment_id`` to ``config.steps`` episodes with an evaluation every
    ``config.eval_every``; resumes from ``out``; returns the summary (``summary.json``). ``config`` is
    an ``offbench.train.TrainConfig`` read as the module docstring says."""
    from offbench.train import TrainingInterrupted

    if algorithm not in SKILL_METHODS:
        raise OffbenchError(f"unknown skill-discovery method {algorithm!r}: use one of {list(SKILL_METHODS)}")
    environment = get_skill_environment(environment_id)
    for field in ("steps", "eval_every"):
        if int(getattr(config, field)) < 1:
            raise OffbenchError(f"[train].{field} = {getattr(config, field)}: a skills run needs at least 1 episode")
    trainer_class, method = method_config(algorithm, settings, config.threads)
    out = Path(out)
    trainer = trainer_class(environment.make, method, seed=config.seed)  # builds and checks before any write
    for field in ("eval_episodes", "final_eval_episodes"):
        check_evaluation(trainer, getattr(config, field), field)
    out.mkdir(parents=True, exist_ok=True)
    resolved = {"algorithm": algorithm, "environment": environment_id, "env_id": environment.env_id,
                "settings": settings,
                "train": {k: getattr(config, k) for k in ("steps", "eval_every", "eval_episodes",
                                                          "final_eval_episodes", "seed", "threads")}}
    check_run_config(out, resolved, "skills")

    def stop(row):
        if on_step:
            on_step(row["iteration"])
        if should_stop is not None and should_stop():
            raise _Stop(row["iteration"])

    def train_to(step: int) -> None:
        try:
            trainer.fit(step, out / "agent", on_iteration=stop, checkpoint_every=1)
        except _Stop as stopped:
            raise TrainingInterrupted(stopped.step, out) from None

    def evaluate(step: int, n: int) -> dict:
        metrics, arrays = evaluate_skills(trainer, environment, n)
        distances = metrics.pop("final_distances")
        if step == config.steps:
            _save_rollouts(out / "rollouts.npz", arrays, step)
        return {"seed": EVAL_SEED, "returns": [float(d) for d in distances], "return_mean": float(distances.mean()),
                "return_stderr": float(distances.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0,
                "normalized_score": float(metrics["coverage"]), **metrics}

    rows = evaluate_on_schedule(out, config, train_to, evaluate, on_step)
    last = rows[-1]
    summary = {"final_step": last["step"], "headline": "last evaluation", "score_kind": "coverage (cells)",
               "score": last["coverage"], "episodes": last["episodes"],
               "metrics": {k: last[k] for k in ("coverage", "final_distance", "classifier_accuracy",
                                                "classifier_chance", "mi_lower_bound", "log_k") if k in last}}
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary
