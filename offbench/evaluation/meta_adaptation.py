"""Few-shot adaptation of an offline meta-RL agent (issue 17, item 4): the return after k = 1, 2, ...
episodes on a task, with the task's context from the agent's own exploration or from offline data.

An offline-trained agent (``baselines/meta/context_iql.py``) is played on a meta benchmark's trials
(``offbench.envs.meta.benchmarks``: e.g. 4 episodes of GridNavi per task), through its
``adapt_and_evaluate(make_env, tasks, episodes, seed, contexts=None)``:

- ``context="online"``: the held-out tasks every online meta-RL run is evaluated on
  (``eval_tasks``); the context is the agent's own transitions in the trial so far. The trial
  return is normalised exactly as the online runs' (0 = random, 100 = the benchmark's reference:
  Bayes-optimal or the per-task oracle), so the offline baseline sits in the same table as RL²,
  PEARL and DREAM. This is the setting where an offline-trained encoder meets context it was not
  trained on (its own exploration rather than the behaviour policies'): the known difficulty of
  offline meta-RL (BOReL, Dorfman et al. 2021; MACAW, Mitchell et al. 2021).
- ``context="offline"``: the dataset's own tasks (training tasks, recorded with every step as
  ``infos/task/<name>``), the context drawn from each task's offline transitions and fixed for the
  trial. An agent given a task's data can beat the Bayes-optimal value, which must search for the
  task, so here the per-episode return is normalised with the dataset card's references (0 =
  random, 100 = the task-aware expert), not the benchmark's.

Both report ``episode_returns`` (the adaptation curve: mean return of episode k over tasks) and
``episode_scores`` (each episode normalised with the card's per-episode references).
"""
from __future__ import annotations

import numpy as np

from offbench.data.dataset import Dataset
from offbench.envs.meta.benchmarks import EVAL_TASK_SEED, eval_tasks, get_benchmark
from offbench.errors import OffbenchError

CONTEXTS = ("online", "offline")


def dataset_tasks(dataset: Dataset, limit: int) -> tuple[list[int], list[dict]]:
    """The first ``limit`` task ids of a per-task dataset and each task's parameters, rebuilt from the
    ``infos/task/<name>`` arrays stored with every step."""
    if "task_id" not in dataset.step_paths:
        raise OffbenchError(f"{dataset.metadata.dataset_id}: no task_id array; offline-context adaptation needs a "
                            "per-task dataset (meta/<family>/<name>-v0)")
    names = [p.split("/", 2)[2] for p in dataset.step_paths if p.startswith("infos/task/")]
    if not names:
        raise OffbenchError(f"{dataset.metadata.dataset_id}: no infos/task/<name> arrays to rebuild its tasks from")
    task_ids = dataset.extra("task_id")
    ids = np.unique(task_ids)[:limit].tolist()
    first = [int(np.flatnonzero(task_ids == i)[0]) for i in ids]
    return [int(i) for i in ids], [{n: np.asarray(dataset.extra(f"infos/task/{n}")[row]) for n in names}
                                   for row in first]


def play_trials(algorithm, dataset: Dataset, benchmark_id: str, trials: int, *, context: str = "online",
                context_size: int = 32, seed: int = EVAL_TASK_SEED) -> tuple[np.ndarray, list[dict], list[int] | None]:
    """``(returns [tasks, episodes], tasks, task_ids)``: ``trials`` trials of the benchmark played by
    ``algorithm`` with the given context (module docstring); ``task_ids`` are the dataset's with
    offline context, None with online context (held-out tasks)."""
    import gymnasium as gym

    import offbench.envs.meta  # noqa: F401 - registers the families

    if context not in CONTEXTS:
        raise OffbenchError(f"context must be one of {CONTEXTS}, not {context!r}")
    if not hasattr(algorithm, "adapt_and_evaluate"):
        raise OffbenchError(f"{type(algorithm).__name__} is not an offline meta-RL agent (no adapt_and_evaluate); "
                            "train context_iql on a meta/<family>/<name>-v0 dataset")
    benchmark = get_benchmark(benchmark_id)
    if dataset.metadata.env_id != benchmark.env_id:
        raise OffbenchError(f"{benchmark_id} plays {benchmark.env_id}, but the run trained on "
                            f"{dataset.metadata.dataset_id} ({dataset.metadata.env_id})")

    def make_env():
        return gym.make(benchmark.env_id, disable_env_checker=True, **benchmark.env_kwargs)

    if context == "online":
        tasks, contexts, task_ids = eval_tasks(benchmark, trials), None, None
    else:
        task_ids, tasks = dataset_tasks(dataset, trials)
        by_task = algorithm.offline_context(dataset, context_size, seed)
        contexts = [by_task[i] for i in task_ids]
    returns = algorithm.adapt_and_evaluate(make_env, tasks, benchmark.episodes, seed, contexts=contexts)
    return np.asarray(returns, np.float64), tasks, task_ids


def adaptation(algorithm, dataset: Dataset, benchmark_id: str, trials: int, *, context: str = "online",
               context_size: int = 32, seed: int = EVAL_TASK_SEED) -> dict:
    """Play ``trials`` trials of the benchmark with ``algorithm`` (module docstring); JSON-ready."""
    benchmark = get_benchmark(benchmark_id)
    returns, tasks, task_ids = play_trials(algorithm, dataset, benchmark_id, trials, context=context,
                                           context_size=context_size, seed=seed)
    trial_returns = returns.sum(1)
    result = {"benchmark": benchmark_id, "context": context, "trials": len(tasks), "episodes": benchmark.episodes,
              "seed": seed, "trial_returns": [round(float(r), 6) for r in trial_returns],
              "trial_return_mean": float(trial_returns.mean()),
              "episode_returns": [round(float(r), 6) for r in returns.mean(0)]}
    if dataset.metadata.reference_scores:
        result["episode_scores"] = [round(float(s), 3) for s in dataset.normalized_score(returns.mean(0))]
    if context == "online":
        random, reference = benchmark.references(len(tasks))
        scores = benchmark.normalise(trial_returns, len(tasks))
        result.update(normalized_score=float(scores.mean()),
                      normalized_score_stderr=float(scores.std(ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else None,
                      references={"random": random, benchmark.reference_kind: reference})
    else:
        result.update(task_ids=task_ids, context_size=context_size)
    return result


def evaluation_row(algorithm, dataset: Dataset, benchmark_id: str, trials: int, seed: int) -> dict:
    """The training loop's evaluation of an offline meta-RL agent (``offbench.train.evaluate`` on a
    ``meta/<family>/<name>-v0`` dataset), in the shape of an online meta run's
    (``offbench.meta_runs``), so the ``meta-offline`` protocols' results sit in the meta report:

    - ``returns``, ``normalized_scores``, ``episode_returns`` ([trials, episodes]): ``trials`` trials
      on the benchmark's held-out tasks with online context, normalised as every meta run is;
    - ``offline_context_score``: the mean per-episode score (the dataset card's references, 0 =
      random, 100 = the task-aware expert) of trials on the dataset's first ``trials`` tasks with as
      many of each task's offline transitions as the agent's training context (``context_size``), and
      ``offline_context_episode_returns``, their mean return per episode."""
    benchmark = get_benchmark(benchmark_id)
    returns, tasks, _ = play_trials(algorithm, dataset, benchmark_id, trials, context="online", seed=seed)
    totals = returns.sum(1)
    scores = benchmark.normalise(totals, len(tasks))
    row = {"returns": [round(float(r), 6) for r in totals], "return_mean": float(totals.mean()),
           "return_stderr": float(totals.std(ddof=1) / np.sqrt(len(totals))) if len(totals) > 1 else 0.0,
           "normalized_scores": [round(float(s), 6) for s in scores], "normalized_score": float(scores.mean()),
           "episode_returns": [[round(float(x), 6) for x in trial] for trial in returns]}
    offline, _, _ = play_trials(algorithm, dataset, benchmark_id, trials, context="offline",
                                context_size=int(algorithm.config.context_size), seed=seed)
    row["offline_context_episode_returns"] = [round(float(r), 6) for r in offline.mean(0)]
    if dataset.metadata.reference_scores:
        row["offline_context_score"] = float(dataset.normalized_score(offline.reshape(-1)).mean())
    return row
