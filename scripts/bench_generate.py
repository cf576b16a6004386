"""Speed of data generation: env steps per second of dataset generation, and SAC updates per second.

    python scripts/bench_generate.py            # full run
    python scripts/bench_generate.py --quick    # under a minute

Prints one JSON object per line ({"figure", "value", "unit", ...}). Generation uses a freshly
initialised 2x256 SAC actor (the cost of a trained one is the same) with the vectorised
collector, exactly as ``offbench datasets build`` runs a checkpoint recipe.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

from baselines.online.sac import SAC, SACConfig
from offbench.data.collect import collect_vectorised
from offbench.data.writer import DatasetWriter


def emit(figure, value, unit, **extra):
    print(json.dumps({"figure": figure, "value": round(float(value), 3), "unit": unit, **extra}), flush=True)


class ActorPolicy:
    """The SAC actor as a batched behaviour policy (what CheckpointPolicy wraps)."""

    name = "sac-init"
    deterministic = False

    def __init__(self, actor):
        self.actor = actor
        self.generator = torch.Generator().manual_seed(0)

    def act_batch(self, obs):
        with torch.no_grad():
            action, log_prob = self.actor(torch.as_tensor(obs, dtype=torch.float32), False, self.generator)
        return action.numpy(), log_prob.double().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--envs", nargs="+", default=["Hopper-v5", "HalfCheetah-v5", "Walker2d-v5"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = 20_000 if args.quick else 100_000
    updates = 300 if args.quick else 2_000
    emit("torch_threads", 1, "threads")
    for env_id in args.envs:
        env = gym.make(env_id)
        agent = SAC(env.observation_space, env.action_space, SACConfig())
        for num_envs in (1, 8):
            with tempfile.TemporaryDirectory() as tmp:
                with DatasetWriter(Path(tmp) / "d.hdf5", dataset_id="bench/x/y-v0", env_id=env_id,
                                   observation_space=env.observation_space, action_space=env.action_space) as w:
                    t0 = time.perf_counter()
                    collect_vectorised(env_id, ActorPolicy(agent.actor), w, num_steps=steps, seed=0,
                                       num_envs=num_envs)
                    elapsed = time.perf_counter() - t0
            emit(f"generate_{env_id}_num_envs_{num_envs}", steps / elapsed, "env steps/s", steps=steps)
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        batch = {"observations": torch.randn(256, obs_dim), "next_observations": torch.randn(256, obs_dim),
                 "actions": torch.rand(256, act_dim) * 2 - 1, "rewards": torch.randn(256),
                 "terminations": torch.zeros(256)}
        for _ in range(20):
            agent.update(batch)
        t0 = time.perf_counter()
        for _ in range(updates):
            agent.update(batch)
        emit(f"sac_updates_{env_id}", updates / (time.perf_counter() - t0), "updates/s", batch=256,
             hidden=[256, 256])


if __name__ == "__main__":
    main()
