"""Success rates of reference policies on OGBench's PointMaze evaluation tasks (for the goal cards).

    python scripts/measure_goal_references.py medium large --episodes-per-task 50

Prints one JSON object per maze and policy: the success rate over the maze's 5 evaluation tasks
(``episodes-per-task`` episodes each, OGBench's protocol: start and goal jittered, the episode
ends at the goal or after 1000 steps), per task and overall. Policies: ``uniform_random``
(actions uniform in [-1, 1]^2), ``oracle_noisy`` (the datasets' behaviour: OGBench's oracle
direction plus N(0, 0.5^2) noise, clipped) and ``oracle`` (the noiseless oracle).

Episode i is reset with seed ``seed + i``; with a seed divisible by 5 the episodes cycle through
tasks 1..5, so each task gets exactly ``episodes-per-task`` episodes.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

import offbench.envs  # noqa: F401  (registers offbench/pointmaze-*)
from offbench.envs import pointmaze
from offbench.rollout import rollout


def uniform_random(seed: int):
    rng = np.random.default_rng(seed)
    return lambda obs: rng.uniform(-1.0, 1.0, (len(obs["observation"]), 2)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mazes", nargs="+", choices=pointmaze.MAZES)
    parser.add_argument("--episodes-per-task", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1_000_000, help="first episode seed (a multiple of 5)")
    args = parser.parse_args()
    if args.seed % pointmaze.NUM_EVAL_TASKS:
        parser.error("--seed must be a multiple of 5 so that every task gets the same number of episodes")
    episodes = args.episodes_per_task * pointmaze.NUM_EVAL_TASKS
    for maze in args.mazes:
        geometry = pointmaze.MazeGeometry.of(maze)
        policies = {"uniform_random": uniform_random(args.seed),
                    "oracle_noisy": pointmaze.oracle_policy(geometry, noise=0.5, seed=args.seed),
                    "oracle": pointmaze.oracle_policy(geometry)}
        for name, policy in policies.items():
            result = rollout(policy, pointmaze.env_id(maze), episodes, seed=args.seed)
            tasks = 1 + (args.seed + np.arange(episodes)) % pointmaze.NUM_EVAL_TASKS
            per_task = {f"task{k}": float(result.success[tasks == k].mean()) for k in range(1, 6)}
            print(json.dumps({"maze": maze, "policy": name, "episodes": episodes, "seed": args.seed,
                              "success": float(result.success.mean()), **per_task,
                              "mean_length": float(result.lengths.mean())}), flush=True)


if __name__ == "__main__":
    main()
