"""Measure a meta benchmark's oracle and random references and write its references card
(offbench/envs/meta/oracle_references.py has the method; the card is read by reports and the
leaderboard, so they never replay MuJoCo).

    python scripts/make_oracle_references.py meta/cheetah-vel-v0 \
        --oracle datasets/policies/cheetah-vel/oracle.safetensors --tasks 200

The oracle checkpoint is made by ``offbench online train sac --env offbench/HalfCheetahVelOracle-v0``
and ``offbench online export-policy`` (docs/meta.md). Writes to a temporary file, then renames.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    from offbench.atomic import write_atomic
    from offbench.envs.meta.benchmarks import EVAL_TASK_SEED, eval_tasks, get_benchmark
    from offbench.envs.meta.oracle_references import card_path, measure_references
    from offbench.errors import OffbenchError

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("benchmark", help="e.g. meta/cheetah-vel-v0")
    p.add_argument("--oracle", required=True, help="the oracle's behaviour checkpoint (.safetensors)")
    p.add_argument("--tasks", type=int, default=200, help="held-out tasks (the meta protocol's final evaluation uses 200)")
    p.add_argument("--random-trials", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="card path (default: the benchmark's card in datasets/)")
    args = p.parse_args(argv)
    try:
        start = time.time()
        benchmark = get_benchmark(args.benchmark)
        card = measure_references(benchmark, eval_tasks(benchmark, args.tasks), EVAL_TASK_SEED, args.oracle,
                                  random_trials=args.random_trials, seed=args.seed)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        card = {**card, "commit": commit or None, "seconds": round(time.time() - start, 1)}
        out = Path(args.out) if args.out else card_path(args.benchmark)
        write_atomic(out, json.dumps(card, indent=1) + "\n")
    except OffbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    print(json.dumps({"card": str(out), "tasks": args.tasks, "random": mean(card["random_trial_returns"]),
                      "oracle": mean(card["oracle_trial_returns"]), "seconds": card["seconds"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
