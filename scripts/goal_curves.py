"""Learning curves of the goal-conditioned baselines, for sizing the ``goal`` protocol (issue 16, item 6).

A resumable, sequential driver: one run at a time in this process, each an ``offbench.train``
run directory (a finished run is skipped, an interrupted one resumes from its checkpoint, and a
run extended to more steps repeats the first steps exactly). ``collect`` writes every evaluation
(success rate per evaluation, per task) and the training speed as CSV.

    python scripts/goal_curves.py run --algos gcivl gcbc --datasets goal/pointmaze-medium/navigate-v0 \\
        --seeds 0 --steps 40000 --eval-every 4000 --eval-episodes 50 --batch-size 256 \\
        --set hidden=[256,256] --tag h256 --out DIR
    python scripts/goal_curves.py collect DIR      # -> DIR/curves.csv, DIR/speed.csv

Runs go to ``DIR/runs/<tag>/<algo>/<dataset with / as __>/seed<S>``. ``--set`` values are algorithm
settings; ``--tag`` names the variant.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def run_dir(out: Path, tag: str, algo: str, dataset: str, seed: int) -> Path:
    return out / "runs" / tag / algo / dataset.replace("/", "__") / f"seed{seed}"


def cmd_run(args) -> None:
    from baselines.goal import ALGORITHMS
    from offbench.cli.common import parse_overrides
    from offbench.data import load_dataset
    from offbench.train import TrainConfig, train_run

    settings = parse_overrides(args.set)  # key=value, values parsed as JSON where they can be
    for dataset_id in args.datasets:
        dataset = load_dataset(dataset_id)
        for algo in args.algos:
            for seed in args.seeds:
                out = run_dir(Path(args.out), args.tag, algo, dataset_id, seed)
                summary = out / "summary.json"
                if summary.is_file() and json.loads(summary.read_text())["final_step"] >= args.steps:
                    continue
                config = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=seed,
                                     eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                                     final_eval_episodes=args.eval_episodes, checkpoint_every=args.eval_every,
                                     log_every=min(1000, args.eval_every), threads=1)
                started = time.perf_counter()
                train_run(ALGORITHMS.get(algo, algo), dataset, settings, config, out, progress=False)
                print(f"{args.tag} {algo} {dataset_id} seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)


def cmd_collect(args) -> None:
    out = Path(args.dir)
    rows, speed = [], []
    for path in sorted(out.glob("runs/*/*/*/seed*/evaluations.jsonl")):
        seed_dir = path.parent
        tag, algo, dataset = seed_dir.parts[-4], seed_dir.parts[-3], seed_dir.parts[-2].replace("__", "/")
        seed = int(seed_dir.name[4:])
        for line in path.read_text().splitlines():
            ev = json.loads(line)
            per_task = ev.get("success_rate_per_task", {})
            rows.append({"tag": tag, "algorithm": algo, "dataset": dataset, "seed": seed, "step": ev["step"],
                         "episodes": ev["episodes"], "success_rate": ev.get("success_rate"),
                         **{f"task{k}": v for k, v in sorted(per_task.items())}})
        metrics = [json.loads(line) for line in (seed_dir / "metrics.jsonl").read_text().splitlines()]
        sps = [m["steps_per_second"] for m in metrics]
        speed.append({"tag": tag, "algorithm": algo, "dataset": dataset, "seed": seed,
                      "steps": metrics[-1]["step"], "median_steps_per_second": float(np.median(sps))})
    for name, table in (("curves.csv", rows), ("speed.csv", speed)):
        if not table:
            continue
        keys = list(dict.fromkeys(k for row in table for k in row))
        with open(out / name, "w", newline="") as f:
            writer = csv.DictWriter(f, keys)
            writer.writeheader()
            writer.writerows(table)
        print(f"wrote {out / name} ({len(table)} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--algos", nargs="+", required=True)
    run.add_argument("--datasets", nargs="+", required=True)
    run.add_argument("--seeds", nargs="+", type=int, default=[0])
    run.add_argument("--steps", type=int, required=True)
    run.add_argument("--eval-every", type=int, required=True)
    run.add_argument("--eval-episodes", type=int, default=50)
    run.add_argument("--batch-size", type=int, default=256)
    run.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    run.add_argument("--tag", default="default")
    run.add_argument("--out", required=True)
    run.set_defaults(func=cmd_run)
    collect = sub.add_parser("collect")
    collect.add_argument("dir")
    collect.set_defaults(func=cmd_collect)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
