"""What the reward-free datasets of PointMaze-medium and HalfCheetah hold (docs/skills.md), one JSON line each.

    python scripts/explore_data_stats.py maze diayn dads metra rnd random
    python scripts/explore_data_stats.py cheetah diayn dads metra rnd random

- maze (``explore/pointmaze-medium-reward-free/<method>-v0``): distinct 1 x 1 cells of all states (finals
  included) and of the first 40 episodes' observations, the mean distance from its start where an episode
  ends, and for each goal task how many episodes reach it, its rewarded steps and mean episode return
  (``relabel_for_task``);
- cheetah (``explore/halfcheetah-reward-free/<method>-v0``): distinct 1 m/s bins of the x velocity (the
  skills table's coverage), the velocity and x ranges, the highest torso rise, and each task's mean and
  best episode return after relabelling.

Datasets that are not built are reported as such.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from offbench.data import load_dataset
from offbench.data.catalogue import cached_path
from offbench.data.relabel import relabel_for_task
from offbench.evaluation.skills import coverage

FOLDERS = {"maze": "pointmaze-medium-reward-free", "cheetah": "halfcheetah-reward-free"}


def maze_row(ds) -> dict:
    states = ds.states_with_finals("sim_state/qpos")[:, :2]
    ends = ds.episode_starts + ds.episode_lengths - 1
    finals = ds.states_with_finals("sim_state/qpos")[ds.next_index[ends]][:, :2]
    first40 = ds.observations[: ds.episode_starts[40]] if ds.num_episodes > 40 else ds.observations
    row = {"coverage_all": coverage(states), "coverage_first40": coverage(first40),
           "final_distance": round(float(np.linalg.norm(finals - ds.observations[ds.episode_starts], axis=1).mean()), 2)}
    for goal in ("near", "far"):
        r = relabel_for_task(ds, f"pointmaze-medium-goal-{goal}")
        row[goal] = {"episodes": int((r.episode_returns() > 0).sum()), "rewarded_steps": int(r.rewards.sum()),
                     "return_mean": round(float(r.episode_returns().mean()), 2)}
    return row


def cheetah_row(ds) -> dict:
    obs = ds.observations
    row = {"velocity_bins": coverage(obs[:, 9:10], 1.0),
           "velocity_range": [round(float(obs[:, 9].min()), 2), round(float(obs[:, 9].max()), 2)],
           "x_range": [round(float(obs[:, 0].min()), 2), round(float(obs[:, 0].max()), 2)],
           "z_max": round(float(ds.arrays["sim_state/qpos"][:, 1].max()), 3)}
    for task in ("run-forward", "run-backward", "jump"):
        r = relabel_for_task(ds, f"halfcheetah-{task}").episode_returns()
        row[task] = {"mean": round(float(r.mean()), 1), "max": round(float(r.max()), 1)}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environment", choices=sorted(FOLDERS))
    parser.add_argument("methods", nargs="+")
    args = parser.parse_args()
    for method in args.methods:
        dataset_id = f"explore/{FOLDERS[args.environment]}/{method}-v0"
        if not cached_path(dataset_id).exists():
            print(json.dumps({"dataset": dataset_id, "built": False}))
            continue
        ds = load_dataset(dataset_id)
        row = maze_row(ds) if args.environment == "maze" else cheetah_row(ds)
        print(json.dumps({"dataset": dataset_id, "steps": ds.num_steps, "episodes": ds.num_episodes, **row}))


if __name__ == "__main__":
    main()
