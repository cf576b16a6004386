"""Write the cards of the ExORL comparison's datasets for point-plane goal tasks (issue 18, item 5).

    python scripts/make_exorl_cards.py top-right bottom [--sac-steps 100000]

For each goal ``<g>`` of ``offbench.envs.point_plane.GOALS`` it writes, under
``datasets/explore/point-plane-goal-<g>/``:

- ``{diayn,dads,metra,rnd,random}-v0``: recipe ``relabel``, the reward-free
  ``explore/point-plane/<method>-v0`` with the goal task's rewards recomputed from its stored states;
- ``sac-replay-v0``: recipe ``replay``, the replay buffer of SAC trained on the goal task itself for
  as many steps as an exploratory dataset holds (ExORL's task-specific data, at equal size).

Every card gets the task's reference returns, measured here: the uniform random policy and the
scripted straight-line controller ``point_plane_goal`` (100 episodes each). Then build and record
them with ``offbench datasets build explore/point-plane-goal-<g> --update-card``.
"""
from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import offbench.envs  # noqa: F401  (registers the environments)
from measure_reference_scores import card_reference_scores  # scripts/, beside this one
from offbench.data.catalogue import DatasetCard, catalogue_dir, get_card
from offbench.envs.point_plane import GOALS, goal_env_id

METHODS = ("diayn", "dads", "metra", "rnd", "random")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("goals", nargs="+", choices=sorted(GOALS))
    parser.add_argument("--sac-steps", type=int, default=100_000, help="SAC replay size (default: an exploratory dataset's)")
    args = parser.parse_args()
    today = date.today().isoformat()
    for goal in args.goals:
        task, env_id = f"point-plane-goal-{goal}", goal_env_id(goal)
        reference = card_reference_scores(env_id, "point_plane_goal")
        folder = catalogue_dir() / "explore" / task
        folder.mkdir(parents=True, exist_ok=True)
        changelog = [{"version": "v0", "date": today, "notes": "First version."}]
        for method in METHODS:
            source = f"explore/point-plane/{method}-v0"
            get_card(source)  # raises if the source is unknown
            card = DatasetCard(
                id=f"explore/{task}/{method}-v0", env_id=env_id,
                description=(f"{source} (reward-free, collected by {method}) with the rewards of {task}: 1 on every step "
                             f"whose next position lies within 1 of {GOALS[goal]}, recomputed from the stored float64 "
                             "positions (offbench.data.relabel.relabel_for_task; ExORL's relabelling). Evaluated in "
                             f"{env_id}; reference returns: uniform random actions and the straight-line controller."),
                recipe={"kind": "relabel", "source": source, "task": task},
                reference_scores=reference, changelog=changelog)
            card.save(folder / f"{method}-v0.toml")
        run = f"exorl-{task}-sac-s0"
        card = DatasetCard(
            id=f"explore/{task}/sac-replay-v0", env_id=env_id,
            description=(f"ExORL's task-specific data for {task}, at the size of an exploratory dataset: the whole replay "
                         f"buffer ({args.sac_steps:,} steps, warm-up included) of SAC trained on {env_id} itself with its "
                         "sparse reward (seed 0, offbench's online SAC defaults, 1 update per step)."),
            recipe={"kind": "replay", "env_id": env_id, "run": run, "upto": args.sac_steps,
                    "online": {"env_id": env_id, "algo": "sac", "steps": args.sac_steps, "seed": 0,
                               "warmup_steps": 5000, "batch_size": 256, "updates_per_step": 1,
                               "eval_every": 5000, "eval_episodes": 10, "snapshot_every": 10000,
                               "checkpoint_every": 10000, "threads": 1, "env_kwargs": {}, "agent": {}}},
            reference_scores=reference, changelog=changelog)
        card.save(folder / "sac-replay-v0.toml")
        print(json.dumps({"task": task, "reference_scores": reference, "cards": str(folder)}))


if __name__ == "__main__":
    main()
