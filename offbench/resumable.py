"""The loops that the online suites' trainers and protocol runs share.

- :func:`resumable_loop` (every iteration-based trainer: MAML, PEARL, DREAM, the skill methods):
  resume from ``out/checkpoint.*``, keep ``out/metrics.jsonl`` consistent with the checkpoint, run
  iterations to a target, checkpoint on a schedule. A run killed at any point resumes to the state
  and the metrics rows an uninterrupted run has (each trainer's ``save``/``load`` hold its whole
  state: networks, optimisers, generators, numpy streams, buffers).
- :func:`check_run_config` and :func:`evaluate_on_schedule` (one protocol run of the meta and
  skills suites, ``offbench/meta_runs.py`` and ``offbench/skill_runs.py``): the run directory's
  ``config.json``, and training to each evaluation step of the protocol's schedule with the
  evaluations appended to ``evaluations.jsonl``; evaluations already written are skipped, so a
  killed run resumes at its next evaluation step.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from offbench.atomic import write_atomic
from offbench.errors import OffbenchError


def resumable_loop(out: str | Path, iterations: int, *, load: Callable[[Path], None], save: Callable[[Path], None],
                   current: Callable[[], int], step: Callable[[], dict],
                   on_iteration: Callable[[dict], None] | None = None, checkpoint_every: int = 1) -> list[dict]:
    """Run ``step()`` (one iteration; returns its metrics row with ``"iteration"``) until ``current()``
    reaches ``iterations``. ``load(stem)`` restores a checkpoint if ``out`` holds one; ``save(stem)``
    writes one every ``checkpoint_every`` iterations and at the end, right after the metrics rows,
    and then ``on_iteration(row)`` is called (it may raise to stop the run there). Returns the rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / "checkpoint"
    if stem.with_suffix(".json").exists():
        load(stem)
    metrics = out / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    rows = [r for r in rows if r["iteration"] <= current()]
    while current() < iterations:
        rows.append(step())
        if current() % checkpoint_every == 0 or current() == iterations:
            write_atomic(metrics, "".join(json.dumps(r) + "\n" for r in rows))
            save(stem)
            if on_iteration:
                on_iteration(rows[-1])
    return rows


def check_run_config(out: Path, resolved: dict, what: str) -> None:
    """Write ``resolved`` as ``out/config.json``, or refuse a directory that holds a ``what`` run
    with other settings."""
    path = out / "config.json"
    if path.exists() and json.loads(path.read_text()) != json.loads(json.dumps(resolved)):
        raise OffbenchError(f"{out} holds a {what} run with other settings; use another --out or the same settings")
    write_atomic(path, json.dumps(resolved, indent=2))


def evaluate_on_schedule(out: Path, config, train_to: Callable[[int], None],
                         evaluate: Callable[[int, int], dict], on_step: Callable[[int], None] | None = None
                         ) -> list[dict]:
    """For each step of ``config``'s schedule (every ``eval_every`` up to ``steps``, and ``steps``)
    not yet in ``out/evaluations.jsonl``: ``train_to(step)``, then ``evaluate(step, episodes)`` (the
    row's fields after ``step`` and ``episodes``; ``final_eval_episodes`` at the last step), appended
    to the file atomically, then ``on_step(step)``; with torch on ``config.threads`` threads. Returns
    every row."""
    from offbench.cpu import torch_threads

    path = out / "evaluations.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    schedule = sorted({*range(config.eval_every, config.steps + 1, config.eval_every), config.steps})
    with torch_threads(config.threads):
        for step in schedule:
            if any(r["step"] == step for r in rows):
                continue
            train_to(step)
            episodes = config.final_eval_episodes if step == config.steps else config.eval_episodes
            rows.append({"step": step, "episodes": episodes, **evaluate(step, episodes)})
            write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
            if on_step:
                on_step(step)
    return rows
