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


def measure_references(env_id: str, random: str, expert: str, episodes: int = 100, seed: int = 0) -> dict:
    """``{"random": {...}, "expert": {...}}``: each policy's mean and std undiscounted return over
    ``episodes`` episodes (random: ``seed``, expert: ``seed + 1_000_000``)."""
    env = gym.make(env_id)
    out = {}
    for role, name, s in (("random", random, seed), ("expert", expert, seed + 1_000_000)):
        returns = measure_returns(env, make_policy(name, env), episodes=episodes, seed=s)
        out[role] = {"policy": name, "mean": round(float(returns.mean()), 6), "std": round(float(returns.std()), 6),
                     "seed": s}
    env.close()
    return out


def card_reference_scores(env_id: str, expert: str, episodes: int = 100) -> dict:
    """A card's ``reference_scores`` table: uniform random actions and ``expert``, each the mean return of
    ``episodes`` episodes, with the policy, episode count and seed beside it."""
    measured = measure_references(env_id, "uniform_random", expert, episodes)
    out = {}
    for role in ("random", "expert"):
        out[role] = measured[role]["mean"]
        out[f"{role}_policy"] = f"{measured[role]['policy']}, {episodes} episodes, seed {measured[role]['seed']}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_id")
    parser.add_argument("--random", default="uniform_random")
    parser.add_argument("--expert", required=True)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = {"env_id": args.env_id, "episodes": args.episodes,
           **measure_references(args.env_id, args.random, args.expert, args.episodes, args.seed)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
