"""Skills used by a higher level against flat SAC on sparse goal reaching, at equal environment steps
(issue 18, item 6; course notes §16.3).

    python scripts/skills_downstream.py --out ~/.cache/offbench/results/skills-downstream \\
        [--goals top-right bottom] [--skills dads metra] [--k 5] [--env-steps 30000] [--seeds 3] \\
        [--table leaderboard/skills/downstream]

For each goal task ``offbench/point-plane-goal-<goal>-v0`` and seed it trains, with offbench's online SAC
and its defaults (``offbench.online.OnlineRun``; each run resumes where it stopped):

- **flat SAC** on the goal task: ``--env-steps`` steps, 5,000 of them uniform warm-up, an evaluation
  (10 episodes) every 2,500;
- **high-level SAC** on ``offbench/PointPlaneSkills-v0`` for each ``--skills`` method: every action
  picks a skill of that exploratory dataset's trained agent (``explore/point-plane/<method>-v0``), which
  plays ``k`` steps of the same goal task. It gets ``--env-steps / k`` steps, warm-up and evaluation
  interval divided by ``k`` too, so both use the same environment steps and the same evaluation points.

The table (``--table``: ``table.md`` and ``curves.csv``) gives each method's deterministic evaluation return
(the goal task's return: steps spent within 1 of the goal, of 50) at the last two evaluations, mean ±
standard error over seeds, how many seeds reach the goal at all, and the slope over the last 4
evaluations.
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import numpy as np

EPISODE = 50  # the point plane's episode length


def run_config(goal: str, method: str, seed: int, env_steps: int, k: int):
    from offbench.envs.point_plane import goal_env_id
    from offbench.online import OnlineConfig

    if method == "flat":
        return OnlineConfig(env_id=goal_env_id(goal), algo="sac", steps=env_steps, seed=seed, warmup_steps=5000,
                            eval_every=2500, eval_episodes=10, snapshot_every=env_steps, checkpoint_every=2500)
    return OnlineConfig(env_id="offbench/PointPlaneSkills-v0", algo="sac", steps=env_steps // k, seed=seed,
                        warmup_steps=5000 // k, eval_every=2500 // k, eval_episodes=10, snapshot_every=env_steps // k,
                        checkpoint_every=2500 // k,
                        env_kwargs={"goal": goal, "skills": f"explore/point-plane/{method}-v0", "k": k})


def env_steps_of(step: int, method: str, k: int) -> int:
    """Environment steps after ``step`` agent steps: a high-level episode is ceil(50 / k) steps of k
    (its last one shorter when k does not divide 50)."""
    if method == "flat":
        return step
    per_episode = math.ceil(EPISODE / k)
    episodes, rest = divmod(step, per_episode)
    return episodes * EPISODE + rest * k


def main() -> None:
    from offbench.evaluation.settling import ols_slope
    from offbench.online import OnlineRun

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder of the runs (resumed if present)")
    parser.add_argument("--goals", nargs="+", default=["top-right", "bottom"])
    parser.add_argument("--skills", nargs="+", default=["dads", "metra"], choices=["diayn", "dads", "metra"])
    parser.add_argument("--k", type=int, default=5, help="environment steps per skill choice")
    parser.add_argument("--env-steps", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--table", type=Path, help="write table.md and curves.csv here")
    args = parser.parse_args()
    if "diayn" in args.skills:
        parser.error("DIAYN's skills are categorical: its high level would be DQN, not SAC (not part of this comparison)")

    methods = ["flat", *args.skills]
    rows = []
    for goal in args.goals:
        for method in methods:
            for seed in range(args.seeds):
                out = args.out / goal / (method if method == "flat" else f"{method}-k{args.k}") / f"seed{seed}"
                run = OnlineRun(run_config(goal, method, seed, args.env_steps, args.k), out)
                run.train(progress=False)
                for point in run.curve:
                    rows.append({"goal": goal, "method": method, "seed": seed,
                                 "env_steps": env_steps_of(point["step"], method, args.k),
                                 "return": point["return_deterministic"]})
                print(f"{goal} {method} seed {seed}: {run.curve[-1]}", flush=True)

    lines = [f"| goal | method | return at the last two evaluations (of 50) | seeds reaching the goal | slope, last 4 (per 1k env steps) |",
             "|---|---|---|---|---|"]
    for goal in args.goals:
        for method in methods:
            per_seed, slopes, reached = [], [], 0
            for seed in range(args.seeds):
                curve = sorted((r["env_steps"], r["return"]) for r in rows
                               if (r["goal"], r["method"], r["seed"]) == (goal, method, seed))
                per_seed.append(np.mean([ret for _, ret in curve[-2:]]))
                slopes.append(1000.0 * ols_slope([s for s, _ in curve[-4:]], [ret for _, ret in curve[-4:]]))
                reached += any(ret > 0 for _, ret in curve)
            mean, se = float(np.mean(per_seed)), float(np.std(per_seed, ddof=1) / math.sqrt(len(per_seed)))
            label = "flat SAC" if method == "flat" else f"SAC over {method.upper()} skills (k = {args.k})"
            lines.append(f"| {goal} | {label} | {mean:.1f} ± {se:.1f} ({', '.join(f'{v:.1f}' for v in per_seed)}) | "
                         f"{reached} of {args.seeds} | {np.mean(slopes):+.2f} |")
    print("\n".join(lines))
    if args.table:
        args.table.mkdir(parents=True, exist_ok=True)
        (args.table / "table.md").write_text("\n".join(lines) + "\n")
        with open(args.table / "curves.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
