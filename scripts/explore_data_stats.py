"""What the reward-free datasets of PointMaze-medium and HalfCheetah, and the ExORL table's relabelled point-plane
datasets, hold (docs/skills.md), one JSON line each.

    python scripts/explore_data_stats.py maze diayn dads metra rnd random
    python scripts/explore_data_stats.py cheetah diayn dads metra rnd random
    python scripts/explore_data_stats.py plane diayn dads metra rnd random sac-replay

- maze (``explore/pointmaze-medium-reward-free/<method>-v0``): distinct 1 x 1 cells of all states (finals
  included) and of the first 40 episodes' observations, the mean distance from its start where an episode
  ends, and for each goal task how many episodes reach it, its rewarded steps and mean episode return
  (``relabel_for_task``);
- cheetah (``explore/halfcheetah-reward-free/<method>-v0``): distinct 1 m/s bins of the x velocity (the
  skills table's coverage), the velocity and x ranges, the highest torso rise, and each task's mean and
  best episode return after relabelling;
- plane (``explore/point-plane-goal-{top-right,bottom}/<method>-v0``, the ExORL table's data): for each goal the
  steps with reward, the episodes that reach the goal, the best and mean episode return, the behaviour's
  entropy -E[log pi_beta(a|s)] in nats from the stored log-probs (of the skill-conditioned policy for
  DIAYN, DADS and METRA; log 4 = 1.386 is uniform actions on [-1, 1]^2), the floor of CQL's conservative
  gap (docs/skills.md), and the content hash (which build of the data it is: a rebuild on another CPU is
  not bit for bit the card's).

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

FOLDERS = {"maze": "pointmaze-medium-reward-free", "cheetah": "halfcheetah-reward-free",
           "plane": ("point-plane-goal-top-right", "point-plane-goal-bottom")}


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


def plane_row(ds) -> dict:
    returns = ds.episode_returns()
    return {"rewarded_steps": int((ds.rewards > 0).sum()), "episodes_reaching": int((returns > 0).sum()),
            "return_max": float(returns.max()), "return_mean": round(float(returns.mean()), 3),
            "behaviour_entropy": round(-float(np.mean(ds.extra("behaviour_log_prob"))), 3),
            "content_sha256": ds.content_sha256()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environment", choices=sorted(FOLDERS))
    parser.add_argument("methods", nargs="+")
    args = parser.parse_args()
    folders = FOLDERS[args.environment]
    for folder in folders if isinstance(folders, tuple) else (folders,):
        for method in args.methods:
            dataset_id = f"explore/{folder}/{method}-v0"
            if not cached_path(dataset_id).exists():
                print(json.dumps({"dataset": dataset_id, "built": False}))
                continue
            ds = load_dataset(dataset_id)
            row = {"maze": maze_row, "cheetah": cheetah_row, "plane": plane_row}[args.environment](ds)
            print(json.dumps({"dataset": dataset_id, "steps": ds.num_steps, "episodes": ds.num_episodes, **row}))


if __name__ == "__main__":
    main()
