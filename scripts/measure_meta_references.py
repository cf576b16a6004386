"""Per-episode reference returns of the offline meta-RL datasets' families, for their cards'
``[reference_scores]`` (random = the uniformly random policy, expert = the per-task optimum, both
averaged over the family's task prior; see offbench/envs/meta/benchmarks.py for the methods).

    python scripts/measure_meta_references.py
"""
from __future__ import annotations

import json

import numpy as np


def main() -> None:
    from offbench.envs.meta.benchmarks import gridnavi_random_return, point_robot_references
    from offbench.envs.meta.gridnavi import candidate_goals, known_goal_return
    import gymnasium as gym

    import offbench.envs.meta  # noqa: F401

    grid = {"random": gridnavi_random_return(1), "expert": float(np.mean([known_goal_return(g) for g in candidate_goals()]))}
    env = gym.make("offbench/PointRobot-v0", disable_env_checker=True)
    random, oracle = point_robot_references(env.unwrapped.sample_tasks(2000, 424242), 1, samples=200_000)
    print(json.dumps({"gridnavi": grid, "point-robot": {"random": random, "expert": oracle}}))


if __name__ == "__main__":
    main()
