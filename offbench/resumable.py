"""The loop that every iteration-based trainer of the online suites shares (MAML, PEARL, DREAM):
resume from ``out/checkpoint.*``, keep ``out/metrics.jsonl`` consistent with the checkpoint, run
iterations to a target, checkpoint on a schedule. A run killed at any point resumes to the state
and the metrics rows an uninterrupted run has (each trainer's ``save``/``load`` hold its whole
state: networks, optimisers, generators, numpy streams, buffers)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from offbench.atomic import write_atomic


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
