"""Time the dataset hot paths: TransitionSampler, returns-to-go, SegmentSampler.

Builds a 1M-step halfcheetah-shaped dataset in memory (obs 17 float32, action 6 float32,
1000 episodes of 1000 steps, every episode truncated by the time limit) and prints one JSON
line per figure: {"figure", "value", "unit", "target"} (plus a few context fields). Rates
are the median of 5 timed runs (``best`` is the fastest); RTG time is the best of 5 calls.

    python scripts/bench_sampling_core.py [--threads 1] [--steps 1000000] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

from offbench.data.dataset import Dataset, DatasetMetadata
from offbench.data.labels import returns_to_go
from offbench.data.sampling import SegmentSampler, TransitionSampler


def halfcheetah_like(num_steps: int, episode_length: int = 1000, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    episodes = num_steps // episode_length
    n = episodes * episode_length
    lengths = np.full(episodes, episode_length, dtype=np.int64)
    truncations = np.zeros(n, dtype=bool)
    truncations[episode_length - 1::episode_length] = True
    arrays = {
        "observations": rng.standard_normal((n, 17), dtype=np.float32),
        "actions": rng.uniform(-1, 1, (n, 6)).astype(np.float32),
        "rewards": rng.standard_normal(n, dtype=np.float32),
        "terminations": np.zeros(n, dtype=bool),
        "truncations": truncations,
        "episodes/start": np.arange(episodes, dtype=np.int64) * episode_length,
        "episodes/length": lengths,
        "episodes/source": np.zeros(episodes, dtype=np.int32),
        "episodes/final/observations": rng.standard_normal((episodes, 17), dtype=np.float32),
    }
    meta = DatasetMetadata(
        dataset_id="bench/halfcheetah-like-v0", env_id="HalfCheetah-v5",
        observation_space=gym.spaces.Box(-np.inf, np.inf, (17,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (6,), np.float32))
    return Dataset(arrays, meta)


def rates(fn, calls: int, repeats: int = 5) -> tuple[float, float]:
    """Calls per second of ``fn`` over ``repeats`` timed runs of ``calls`` calls: (median, best)."""
    for _ in range(min(calls, 200)):  # warm caches and the allocator
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append(time.perf_counter() - t0)
    return calls / float(np.median(times)), calls / min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    context = {"threads": args.threads, "steps": args.steps, "device": args.device}

    def emit(figure: str, value: float, unit: str, target: str, **more) -> None:
        print(json.dumps({"figure": figure, "value": round(value, 4), "unit": unit, "target": target,
                          **context, **more}), flush=True)

    dataset = halfcheetah_like(args.steps)

    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        returns_to_go(dataset, 0.99)
        times.append(time.perf_counter() - t0)
    emit("returns_to_go_1M_steps", min(times), "s", "<= 0.2", gamma=0.99, first_call_s=round(times[0], 4))

    t0 = time.perf_counter()
    sampler = TransitionSampler(dataset, 256, seed=0, device=args.device)
    build = time.perf_counter() - t0
    sync = torch.cuda.synchronize if sampler.device.type == "cuda" else (lambda: None)

    def transition():
        sampler.sample()

    rate, best = rates(transition, 5000)
    sync()
    emit("transition_sampler_batches_per_s", rate, "batches/s", ">= 20000", batch_size=256,
         us_per_batch=round(1e6 / rate, 2), best=round(best), build_s=round(build, 3),
         table_mb=round(sampler.nbytes / 1e6, 1))

    nstep = TransitionSampler(dataset, 256, seed=0, device=args.device, n_step=3, extras=("returns_to_go",))
    rate, best = rates(lambda: nstep.sample(), 5000)
    emit("transition_sampler_nstep3_rtg_batches_per_s", rate, "batches/s", ">= 20000", batch_size=256,
         best=round(best))
    del nstep

    t0 = time.perf_counter()
    segments = SegmentSampler(dataset, context_length=20, batch_size=64, seed=0, device=args.device,
                              return_scale=1000.0)
    build = time.perf_counter() - t0
    rate, best = rates(lambda: segments.sample(), 2000)
    emit("segment_sampler_batches_per_s", rate, "batches/s", "report", batch_size=64, context_length=20,
         us_per_batch=round(1e6 / rate, 2), best=round(best), build_s=round(build, 3),
         table_mb=round(segments.nbytes / 1e6, 1))


if __name__ == "__main__":
    main()
