"""Measure an environment's reference returns (random and expert policies) for dataset cards.

    python scripts/measure_reference_scores.py Pendulum-v1 --expert pendulum_swingup --episodes 100

Prints one JSON object: mean/std of each policy's undiscounted return over N episodes,
with the seeds used (random: seed, expert: seed + 1_000_000), ready to paste into a card.
"""
from __future__ import annotations

import argparse
import json

import gymnasium as gym

from offbench.behaviour import make_policy
from offbench.data.collect import measure_returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_id")
    parser.add_argument("--random", default="uniform_random")
    parser.add_argument("--expert", required=True)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env = gym.make(args.env_id)
    out = {"env_id": args.env_id, "episodes": args.episodes}
    for role, name, seed in (("random", args.random, args.seed), ("expert", args.expert, args.seed + 1_000_000)):
        returns = measure_returns(env, make_policy(name, env), episodes=args.episodes, seed=seed)
        out[role] = {"policy": name, "mean": round(float(returns.mean()), 6),
                     "std": round(float(returns.std()), 6), "seed": seed}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
