"""Write the cards of the reward-free exploratory datasets on PointMaze-medium and HalfCheetah, and of the
maze's goal tasks' relabellings (issue 18, item 4).

    python scripts/make_explore_cards.py maze cheetah

- ``explore/pointmaze-medium-reward-free/{diayn,dads,metra,rnd,random}-v0`` and
  ``explore/halfcheetah-reward-free/{...}-v0``: recipe ``explore``, each method trained for the
  skills-maze / skills-cheetah protocol's budget (125 episodes of 200 steps, seed 0, the protocol's
  settings), then 100,000 steps collected reward-free with the simulator state stored;
- ``explore/pointmaze-medium-goal-{near,far}/{...}-v0``: recipe ``relabel``, the maze data with a goal
  task's rewards, with the task's reference returns measured here (uniform random actions and the
  scripted ``maze_goal`` expert, 100 episodes each).

HalfCheetah's tasks (run forward, run backward, jump) have no expert policy yet, so their relabellings
are made on demand (``offbench datasets relabel``), not catalogue cards. Then build and record the cards
with ``offbench datasets build explore/<folder> --update-card``.
"""
from __future__ import annotations

import argparse
import json
from datetime import date

import offbench.envs  # noqa: F401  (registers the environments)
from measure_reference_scores import card_reference_scores  # scripts/, beside this one
from offbench.data.catalogue import DatasetCard, catalogue_dir
from offbench.envs import cheetah_tasks, maze_tasks

EPISODES = 125  # the skills-maze and skills-cheetah protocols' training budget
STEPS = 100_000
SKILLS = {  # the method's description and its settings (the protocols' overrides)
    "maze": {
        "diayn": ("DIAYN (10 categorical skills, drawn uniformly; fewer than 50 on a 2-D task, as the paper does; "
                  "SAC on the state and the one-hot skill)", {}, "the skill's index"),
        "dads": ("DADS (2-D continuous skills from Uniform[-1, 1]^2, L = 100 alternatives; SAC on the state and "
                 "the skill)", {}, "the skill vector"),
        "metra": ("METRA (2-D unit-vector skills; SAC on the state and the skill)", {}, "the skill vector"),
        "rnd": ("RND (no skills; SAC on the prediction-error bonus)", {}, None),
        "random": ("uniform random actions (nothing trained)", {}, None),
    },
    "cheetah": {
        "diayn": ("DIAYN (50 categorical skills, drawn uniformly, DIAYN's count for MuJoCo; SAC on the state and "
                  "the one-hot skill)", {"skills": 50}, "the skill's index"),
        "dads": ("DADS (2-D continuous skills from Uniform[-1, 1]^2, L = 100 alternatives; SAC on the state and "
                 "the skill)", {}, "the skill vector"),
        "metra": ("METRA (16 discrete skills, the released half_cheetah setting; SAC on the state and the one-hot "
                  "skill)", {"discrete": True, "skill_dim": 16, "eval_skills": 16}, "the skill's index"),
        "rnd": ("RND (no skills; SAC on the prediction-error bonus)", {}, None),
        "random": ("uniform random actions (nothing trained)", {}, None),
    },
}
ENVIRONMENTS = {
    "maze": {"folder": "pointmaze-medium-reward-free", "env_id": "offbench/PointMazeRewardFree-v0",
             "env_kwargs": {"maze": "medium", "episode_length": maze_tasks.EPISODE_LENGTH}, "run": "pointmaze-medium",
             "what": "PointMaze-medium (offbench/PointMazeRewardFree-v0: OGBench's maze, the (x, y) position as "
                     "observation, reward 0, 200-step episodes from the start cell of OGBench's evaluation task 1)",
             "state": "the simulator state (sim_state/qpos, the float64 (x, y); sim_state/qvel)",
             "tasks": "the goal tasks pointmaze-medium-goal-{near,far} (offbench/envs/maze_tasks.py)",
             "protocol": "skills-maze"},
    "cheetah": {"folder": "halfcheetah-reward-free", "env_id": cheetah_tasks.env_id("reward-free"), "env_kwargs": {},
                "run": "halfcheetah",
                "what": f"HalfCheetah ({cheetah_tasks.env_id('reward-free')}: HalfCheetah-v5 with the x position kept "
                        "in the observation, 200-step episodes, reward 0)",
                "state": "the simulator state (sim_state/qpos, sim_state/qvel)",
                "tasks": "the tasks halfcheetah-{run-forward,run-backward,jump} (offbench/envs/cheetah_tasks.py)",
                "protocol": "skills-cheetah"},
}


def explore_card(env: str, method: str, changelog: list) -> DatasetCard:
    e = ENVIRONMENTS[env]
    name, config, skill = SKILLS[env][method]
    episodes = 0 if method == "random" else EPISODES
    trained = (f"{name} trained for {episodes} episodes ({episodes * 200:,} steps, seed 0; the {e['protocol']} "
               "protocol's budget), then " if episodes else f"{name}: ")
    description = (
        f"Reward-free exploratory data on {e['what']}; ExORL's recipe: {trained}{STEPS // 200:,} episodes of 200 steps "
        f"({STEPS:,} steps) collected with the " + ("stochastic policy" if episodes else "box's uniform distribution")
        + ("; one skill per episode from the prior, the same for its 200 steps" if skill else "")
        + "; rewards are 0. Every step stores " + (f"the episode's skill (infos/skill, {skill}), " if skill else "")
        + f"the exact behaviour log-probability and {e['state']}, from which {e['tasks']} recompute rewards "
        "(offbench.data.relabel.relabel_for_task). No reference scores: the data are reward-free.")
    recipe = {"kind": "explore", "env_id": e["env_id"], "method": method, "episodes": episodes, "steps": STEPS,
              "seed": 0, "config": config}
    if e["env_kwargs"]:
        recipe["env_kwargs"] = e["env_kwargs"]
    if episodes:
        recipe["run"] = f"explore-{e['run']}-{method}-s0"
    return DatasetCard(id=f"explore/{e['folder']}/{method}-v0", env_id=e["env_id"], description=description,
                       recipe=recipe, changelog=changelog)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("environments", nargs="+", choices=sorted(ENVIRONMENTS))
    args = parser.parse_args()
    changelog = [{"version": "v0", "date": date.today().isoformat(), "notes": "First version."}]
    for env in args.environments:
        folder = catalogue_dir() / "explore" / ENVIRONMENTS[env]["folder"]
        folder.mkdir(parents=True, exist_ok=True)
        for method in SKILLS[env]:
            explore_card(env, method, changelog).save(folder / f"{method}-v0.toml")
        if env != "maze":
            continue
        for goal, reward in maze_tasks.GOALS.items():
            task, env_id = f"pointmaze-medium-goal-{goal}", maze_tasks.env_id(goal)
            reference = card_reference_scores(env_id, "maze_goal")
            goal_folder = catalogue_dir() / "explore" / task
            goal_folder.mkdir(parents=True, exist_ok=True)
            for method in SKILLS[env]:
                source = f"explore/{ENVIRONMENTS[env]['folder']}/{method}-v0"
                DatasetCard(
                    id=f"explore/{task}/{method}-v0", env_id=env_id,
                    description=(f"{source} (reward-free, collected by {method}) with the rewards of {task}: 1 on every "
                                 f"step whose next position lies within 1 of {reward.goal}, recomputed from the stored "
                                 "float64 qpos (offbench.data.relabel.relabel_for_task; ExORL's relabelling). Evaluated "
                                 f"in {env_id}; reference returns: uniform random actions and the scripted maze_goal "
                                 "expert (OGBench's oracle route at full speed)."),
                    recipe={"kind": "relabel", "source": source, "task": task},
                    reference_scores=reference, changelog=changelog).save(goal_folder / f"{method}-v0.toml")
            print(json.dumps({"task": task, "reference_scores": reference}))


if __name__ == "__main__":
    main()
