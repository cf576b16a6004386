"""Turn a finished behaviour-policy run into a task's five datasets (D4RL's recipe, REFERENCE §2).

    python scripts/make_suite.py --suite lite --task reacher \
        --run ~/.cache/offbench/runs/behaviour/lite-reacher-sac-s0 --size 100000 --build

1. expert = the run's last snapshot (``--expert-step`` to override; ``--expert-candidates K``:
   of the K snapshots with the best 10-episode stochastic evaluation in the curve, the one with
   the best 50-episode stochastic return, measured with a selection seed distinct from the
   seed of the reported 100-episode return, so that number carries no selection bias); medium = the snapshot whose
   10-episode evaluation return is closest to one third of the way from the random to the
   expert return, among those up to the first that reaches it (D4RL: "about one third of the
   expert's return"; on the normalised scale so tasks with negative returns work too);
   ``--medium-step`` to override.
2. reference scores: random = the uniform random policy, expert = the expert checkpoint's
   stochastic policy (or a scripted controller with ``--expert-reference NAME``), 100 episodes.
3. exports the behaviour checkpoints (with 50-episode returns) and the learning curve to
   ``datasets/policies/<task>/``, writes the five cards under ``datasets/<suite>/<task>/``, and
   with ``--build`` builds each and records size, returns, hashes and build time in its card.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
from datetime import date
from pathlib import Path

import gymnasium as gym
import tomli_w

from offbench.behaviour import make_policy
from offbench.cli import main as cli
from offbench.data.collect import measure_returns
from offbench.online import behaviour_epsilon, export_policy, load_run_config, measure_policy, snapshot_policy

REPO = Path(__file__).resolve().parents[1]
SEEDS = {"random": 100, "medium": 200, "expert": 300}
SELECTION_SEED = 777_000  # expert selection only; reported returns use export_policy's seed


def choose_medium(curve: list[dict], snapshot_steps: set[int], random_ret: float, expert_ret: float) -> int:
    """The snapshot whose evaluation return is closest to one third of the way from random to
    expert, among the snapshots up to the first one that reaches that level."""
    threshold = random_ret + (expert_ret - random_ret) / 3
    candidates = []
    for row in curve:
        if int(row["step"]) not in snapshot_steps:
            continue
        candidates.append((abs(float(row["return_stochastic"]) - threshold), int(row["step"])))
        if float(row["return_stochastic"]) >= threshold:
            return min(candidates)[1]
    raise SystemExit(f"no snapshot reaches one third of the expert return ({threshold:.1f}); pass --medium-step")


def choose_expert(run: Path, curve: list[dict], snapshot_steps: set[int], candidates: int, episodes: int = 50) -> int:
    """Of the ``candidates`` snapshots with the best curve (10-episode stochastic) returns, the
    one with the best ``episodes``-episode stochastic return under a selection-only seed."""
    ranked = sorted((row for row in curve if int(row["step"]) in snapshot_steps),
                    key=lambda row: -float(row["return_stochastic"]))[:candidates]
    measured = []
    for row in ranked:
        module, config, agent_config = snapshot_policy(run, int(row["step"]))
        result = measure_policy(module, config.env_id, episodes, SELECTION_SEED, config.env_kwargs,
                                epsilon=behaviour_epsilon(agent_config))
        measured.append((result["stochastic"]["mean"], int(row["step"])))
        print(f"expert candidate step {row['step']}: {episodes}-episode stochastic return "
              f"{result['stochastic']['mean']:.1f} (curve {float(row['return_stochastic']):.1f})", flush=True)
    return max(measured)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", required=True)
    parser.add_argument("--task", required=True, help="short task name used in dataset ids, e.g. hopper")
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--size", type=int, required=True, help="steps of the random, medium and expert datasets")
    parser.add_argument("--random-policy", choices=["uniform", "init"], default="uniform",
                        help="uniform: uniform random actions; init: the randomly initialised actor (D4RL)")
    parser.add_argument("--expert-step", type=int)
    parser.add_argument("--expert-candidates", type=int, default=0,
                        help="choose the expert among the K best snapshots of the curve by 50 episodes")
    parser.add_argument("--medium-step", type=int)
    parser.add_argument("--expert-reference", help="scripted expert policy name for the reference score")
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--overwrite", action="store_true", help="rewrite cards that already exist")
    args = parser.parse_args()

    config = load_run_config(args.run)
    env = gym.make(config.env_id)
    curve = list(csv.DictReader(open(args.run / "curve.csv")))
    steps = {int(p.stem.split("-")[1]) for p in (args.run / "snapshots").glob("policy-*.safetensors")}
    if args.expert_step:
        expert_step = args.expert_step
    elif args.expert_candidates:
        expert_step = choose_expert(args.run, curve, steps, args.expert_candidates)
    else:
        expert_step = max(steps)
    policy_dir = REPO / "datasets" / "policies" / args.task
    policy_dir.mkdir(parents=True, exist_ok=True)

    def export(name, step, episodes=50):
        info = export_policy(args.run, step, policy_dir / f"{name}.safetensors", name=name, episodes=episodes)
        print(f"{name}: step {step}, return {info['returns']['stochastic']}", flush=True)
        return info

    random_returns = measure_returns(env, make_policy("uniform_random", env), episodes=100, seed=0)
    expert = export("expert", expert_step, episodes=100)
    if args.expert_reference:
        expert_ret = float(measure_returns(env, make_policy(args.expert_reference, env), episodes=100,
                                           seed=1_000_000).mean())
        expert_source = f"scripted controller {args.expert_reference}, 100 episodes, seed 1000000"
    else:
        expert_ret = expert["returns"]["stochastic"]["mean"]
        expert_source = f"policies/{args.task}/expert.safetensors (stochastic), 100 episodes, seed 123456"
    random_ret = float(random_returns.mean())
    medium_step = args.medium_step or choose_medium(curve, steps, random_ret, expert_ret)
    medium = export("medium", medium_step)
    if args.random_policy == "init":
        export("random", 0)
    shutil.copy(args.run / "curve.csv", policy_dir / "training_curve.csv")
    if (args.run / "curve.png").exists():
        shutil.copy(args.run / "curve.png", policy_dir / "training_curve.png")
    run_info = json.loads((args.run / "config.json").read_text())
    (policy_dir / "manifest.json").write_text(json.dumps({
        "task": args.task, "env_id": config.env_id, "run": args.run.name, "training_config": run_info,
        "training_wall_seconds": float(curve[-1]["wall_time"]), "trained_steps": int(curve[-1]["step"]),
        "medium_step": medium_step, "expert_step": expert_step,
        "expert_rule": (f"given: step {args.expert_step}" if args.expert_step else
                        f"best 50-episode stochastic return (seed {SELECTION_SEED}) among the {args.expert_candidates} "
                        "snapshots with the best 10-episode curve return" if args.expert_candidates else "last snapshot"),
        "medium_rule": "snapshot with 10-episode stochastic return closest to random + (expert - random) / 3, up to the first that reaches it",
        "returns": {"medium": medium["returns"], "expert": expert["returns"]},
    }, indent=2))

    reference = {"random": round(random_ret, 6), "expert": round(expert_ret, 6),
                 "random_policy": "uniform_random, 100 episodes, seed 0", "expert_policy": expert_source}
    online = {k: v for k, v in run_info["online"].items()}

    def checkpoint(name):
        sha = json.loads((policy_dir / f"{name}.json").read_text())["sha256"]
        return {"kind": "checkpoint", "path": f"policies/{args.task}/{name}.safetensors", "sha256": sha}

    recipes = {
        "random": {"kind": "rollout", "env_id": config.env_id, "steps": args.size, "seed": SEEDS["random"],
                   "policy": "uniform_random" if args.random_policy == "uniform" else checkpoint("random"),
                   **({"num_envs": 8} if args.random_policy == "init" else {})},
        "medium": {"kind": "rollout", "env_id": config.env_id, "steps": args.size, "seed": SEEDS["medium"],
                   "num_envs": 8, "policy": checkpoint("medium")},
        "expert": {"kind": "rollout", "env_id": config.env_id, "steps": args.size, "seed": SEEDS["expert"],
                   "num_envs": 8, "policy": checkpoint("expert")},
        "medium-replay": {"kind": "replay", "env_id": config.env_id, "run": args.run.name, "upto": medium_step,
                          "online": online},
        "medium-expert": {"kind": "mix", "sources": [f"{args.suite}/{args.task}/medium-v0",
                                                     f"{args.suite}/{args.task}/expert-v0"]},
    }
    descriptions = {
        "random": f"{args.size:,} steps of a {'uniformly random policy' if args.random_policy == 'uniform' else 'randomly initialised SAC actor'} in {config.env_id}.",
        "medium": f"{args.size:,} steps of the medium SAC policy (step {medium_step:,}, about one third of the expert) in {config.env_id}; actions sampled from the stochastic policy.",
        "expert": f"{args.size:,} steps of the expert SAC policy (step {expert_step:,}) in {config.env_id}; actions sampled from the stochastic policy.",
        "medium-replay": f"The SAC replay buffer up to the medium checkpoint (steps 0-{medium_step:,}) in {config.env_id}, warm-up included.",
        "medium-expert": f"medium-v0 and expert-v0 concatenated ({2 * args.size:,} steps).",
    }
    for kind in ("random", "medium", "expert", "medium-replay", "medium-expert"):
        path = REPO / "datasets" / args.suite / args.task / f"{kind}-v0.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not args.overwrite:  # a published v0 never changes; bump the version instead
            print(f"keeping existing card {path}")
            continue
        card = {"id": f"{args.suite}/{args.task}/{kind}-v0", "env_id": config.env_id,
                "description": descriptions[kind], "format_version": 1, "recipe": recipes[kind],
                "reference_scores": reference,
                "changelog": [{"version": "v0", "date": date.today().isoformat(), "notes": "First version."}]}
        path.write_text(tomli_w.dumps(card))
    if args.build:
        for kind in ("random", "medium", "expert", "medium-replay", "medium-expert"):
            code = cli(["datasets", "build", f"{args.suite}/{args.task}/{kind}-v0", "--quiet", "--force",
                        "--update-card"])
            if code:
                raise SystemExit(code)


if __name__ == "__main__":
    main()
