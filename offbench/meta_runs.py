"""One meta-RL run of a protocol: meta-train an online meta-RL algorithm on a benchmark
(``offbench.envs.meta.benchmarks``), evaluate it on held-out tasks on a schedule, and write the run
directory that ``offbench reproduce`` and ``offbench report`` read (``evaluations.jsonl``,
``summary.json``), as ``offbench.train.fit`` does for the offline suites.

A protocol of suite ``meta`` names benchmarks where other suites name datasets, and its ``[train]``
table means: ``steps`` = outer updates (RL²: PPO updates of whole trials; MAML: meta-iterations),
``eval_every`` in those updates, ``eval_episodes`` / ``final_eval_episodes`` = held-out *trials*
(tasks ``sample_tasks(n, EVAL_TASK_SEED)``, the same for every run), ``seed``, ``threads``;
``batch_size``, ``log_every`` and ``checkpoint_every`` are unused (the algorithms checkpoint after
every update). An evaluation row holds each trial's return (``returns``), each episode's
(``episode_returns``: the adaptation curve), and ``normalized_score``: 0 = the random policy,
100 = the benchmark's reference (exact Bayes-optimal, or the per-task oracle).

What a trial is for each algorithm: RL² plays the trial's episodes with its hidden state carried
across them (the benchmark's trial, exactly); PEARL plays episode 1 with z from the prior and each
later one with z drawn from the posterior of the trial's transitions so far (posterior sampling,
also the benchmark's trial); DREAM plays episode 1 with its exploration policy (rewarded for
information, not the task's reward) and the later ones with its exploitation policy given the
task embedding decoded from episode 1: its own objective is the return of episodes 2 onwards,
which ``episode_returns`` keeps. MAML's episode k is played by its policy after k inner
gradient steps, each on ``episodes_per_task`` episodes of the policy before it (MAML's few-shot
protocol, Finn et al. §5.3): it sees that many times more experience per adaptation than RL².
"""
from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from offbench.atomic import write_atomic
from offbench.envs.meta.benchmarks import EVAL_TASK_SEED, MetaBenchmark, eval_tasks, get_benchmark
from offbench.errors import OffbenchError
from offbench.resumable import check_run_config, evaluate_on_schedule

#: the online meta-RL algorithms a ``meta`` protocol can name
META_ALGORITHMS = ("rl2", "maml", "pearl", "dream")


def _split(settings: dict[str, Any], cls) -> tuple[dict, dict]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in settings.items() if k in names}, {k: v for k, v in settings.items() if k not in names}


class _RL2:
    def __init__(self, benchmark: MetaBenchmark, settings: dict, seed: int, steps: int, out: Path):
        from baselines.meta.rl2 import RL2Config, build_agent
        from baselines.online.ppo import PPOConfig

        own, ppo = _split(settings, RL2Config)
        unknown = set(ppo) - {f.name for f in fields(PPOConfig)}
        if unknown:
            raise OffbenchError(f"unknown RL² settings {sorted(unknown)}: RL2Config or PPOConfig fields")
        base = RL2Config().ppo
        ppo = {k: tuple(v) if isinstance(v, list) else v for k, v in ppo.items()}
        self.config = RL2Config(env_id=benchmark.env_id, episodes=benchmark.episodes, env_kwargs=benchmark.env_kwargs,
                                **{k: v for k, v in own.items() if k not in ("env_id", "episodes", "env_kwargs", "ppo")},
                                ppo=replace(base, **ppo))
        self.seed, self.steps, self.out = seed, steps, out
        self.agent, _ = build_agent(self.config, seed)

    def train_to(self, step: int, should_stop) -> int:
        from baselines.meta.rl2 import train

        def stop(row):
            if should_stop is not None and should_stop():
                raise _Stop(row["update"])

        self.agent = train(self.config, self.steps, self.out / "agent", seed=self.seed, stop_at=step, on_update=stop)
        return step

    def evaluate(self, trials: int) -> np.ndarray:
        from baselines.meta.rl2 import evaluate

        return evaluate(self.agent, self.config, trials, EVAL_TASK_SEED)


class _MAML:
    def __init__(self, benchmark: MetaBenchmark, settings: dict, seed: int, steps: int, out: Path):
        import gymnasium as gym

        import offbench.envs.meta  # noqa: F401
        from baselines.meta.maml import MAML, MAMLConfig

        own, unknown = _split(settings, MAMLConfig)
        if unknown:
            raise OffbenchError(f"unknown MAML settings {sorted(unknown)}")
        own = {k: tuple(v) if isinstance(v, list) else v for k, v in own.items()}
        self.benchmark, self.out = benchmark, out
        self.make_env = lambda: gym.make(benchmark.env_id, disable_env_checker=True, **benchmark.env_kwargs)
        env = self.make_env()
        self.agent = MAML(env.observation_space, env.action_space, MAMLConfig(**own), seed=seed)
        env.close()

    def train_to(self, step: int, should_stop) -> int:
        def stop(row):
            if should_stop is not None and should_stop():
                raise _Stop(row["iteration"])

        self.agent.fit(self.make_env, step, self.out / "agent", on_iteration=stop)
        return step

    def evaluate(self, trials: int) -> np.ndarray:
        tasks = eval_tasks(self.benchmark, trials)
        # [tasks, episodes]: the mean episode return after k = 0 .. episodes - 1 inner steps
        return self.agent.adapt_and_evaluate(self.make_env, tasks, steps=self.benchmark.episodes - 1,
                                             seed=EVAL_TASK_SEED)


class _IterationRunner:
    """A trainer with ``fit(step, out, on_iteration)`` and ``adapt_and_evaluate(tasks, episodes, seed)``."""

    trainer = None
    benchmark: MetaBenchmark
    out: Path

    def train_to(self, step: int, should_stop) -> int:
        def stop(row):
            if should_stop is not None and should_stop():
                raise _Stop(row["iteration"])

        self.trainer.fit(step, self.out / "agent", on_iteration=stop)
        return step

    def evaluate(self, trials: int) -> np.ndarray:
        return self.trainer.adapt_and_evaluate(eval_tasks(self.benchmark, trials), self.benchmark.episodes,
                                               seed=EVAL_TASK_SEED)


class _PEARL(_IterationRunner):
    def __init__(self, benchmark: MetaBenchmark, settings: dict, seed: int, steps: int, out: Path):
        import gymnasium as gym

        import offbench.envs.meta  # noqa: F401
        from baselines.meta.pearl import PEARLConfig, PEARLTrainer

        own, unknown = _split(settings, PEARLConfig)
        if unknown:
            raise OffbenchError(f"unknown PEARL settings {sorted(unknown)}")
        own = {k: tuple(v) if isinstance(v, list) else v for k, v in own.items()}
        self.benchmark, self.out = benchmark, out
        make_env = lambda: gym.make(benchmark.env_id, disable_env_checker=True, **benchmark.env_kwargs)  # noqa: E731
        self.trainer = PEARLTrainer(make_env, PEARLConfig(**own), seed=seed)


class _DREAM(_IterationRunner):
    def __init__(self, benchmark: MetaBenchmark, settings: dict, seed: int, steps: int, out: Path):
        import gymnasium as gym

        import offbench.envs.meta  # noqa: F401
        from baselines.meta.dream import DREAMConfig, DREAMTrainer

        own, unknown = _split(settings, DREAMConfig)
        if unknown:
            raise OffbenchError(f"unknown DREAM settings {sorted(unknown)}")
        make_env = lambda: gym.make(benchmark.env_id, disable_env_checker=True, **benchmark.env_kwargs)  # noqa: E731
        env = make_env()
        tasks = len(getattr(env.unwrapped, "layout", None).goals) if hasattr(env.unwrapped, "layout") else None
        env.close()
        if tasks is None:
            raise OffbenchError(f"DREAM needs a family whose task is a goal index (SignGrid), not {benchmark.env_id}")
        self.benchmark, self.out = benchmark, out
        # the epsilon schedule runs over the protocol's iterations unless a setting says otherwise
        self.trainer = DREAMTrainer(make_env, tasks, DREAMConfig(**{"iterations": steps, **own}), seed=seed)


class _Stop(Exception):
    def __init__(self, step: int):
        self.step = step


def train_meta_run(algorithm: str, benchmark_id: str, settings: dict[str, Any], config, out: str | Path, *,
                   on_step: Callable[[int], None] | None = None,
                   should_stop: Callable[[], bool] | None = None) -> dict:
    """Meta-train ``algorithm`` on ``benchmark_id`` to ``config.steps`` updates with an evaluation
    every ``config.eval_every``; resumes from ``out``; returns the summary (``summary.json``).
    ``config`` is an ``offbench.train.TrainConfig`` read as the module docstring says."""
    from offbench.train import TrainingInterrupted

    if algorithm not in META_ALGORITHMS:
        raise OffbenchError(f"unknown meta-RL algorithm {algorithm!r}: use one of {list(META_ALGORITHMS)}")
    benchmark = get_benchmark(benchmark_id)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resolved = {"algorithm": algorithm, "benchmark": benchmark_id, "settings": settings,
                "train": {k: getattr(config, k) for k in ("steps", "eval_every", "eval_episodes",
                                                          "final_eval_episodes", "seed", "threads")}}
    check_run_config(out, resolved, "meta")
    runner = {"rl2": _RL2, "maml": _MAML, "pearl": _PEARL, "dream": _DREAM}[algorithm](benchmark, settings, config.seed, config.steps,
                                                                     out)

    def train_to(step: int) -> None:
        try:
            runner.train_to(step, should_stop)
        except _Stop as stopped:
            raise TrainingInterrupted(stopped.step, out) from None

    def evaluate(step: int, trials: int) -> dict:
        episode_returns = runner.evaluate(trials)
        totals = episode_returns.sum(1)
        scores = benchmark.normalise(totals, trials)
        return {"seed": EVAL_TASK_SEED, "returns": [round(float(r), 6) for r in totals],
                "return_mean": float(totals.mean()),
                "return_stderr": float(totals.std(ddof=1) / np.sqrt(len(totals))) if len(totals) > 1 else 0.0,
                "normalized_scores": [round(float(s), 6) for s in scores], "normalized_score": float(scores.mean()),
                "episode_returns": [[round(float(x), 6) for x in trial] for trial in episode_returns]}

    rows = evaluate_on_schedule(out, config, train_to, evaluate, on_step)
    last = rows[-1]
    random, reference = benchmark.references(config.final_eval_episodes)
    summary = {"final_step": last["step"], "headline": "last evaluation", "score_kind": "normalized_score",
               "score": last["normalized_score"], "returns": last["returns"], "episodes": last["episodes"],
               "references": {"random": random, benchmark.reference_kind: reference}}
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary
