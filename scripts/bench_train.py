"""Gradient steps per second of the offline baselines, and how close they come to this machine's
float32 matmul peak.

    python scripts/bench_train.py            # full run
    python scripts/bench_train.py --quick    # under a minute or two
    python scripts/bench_train.py --d3rlpy /tmp/d3rlpy   # also d3rlpy 2.8's own updates, same run

d3rlpy pins an old gymnasium, so it is installed apart, without its dependencies:
``pip install --no-deps --target /tmp/d3rlpy d3rlpy==2.8.1 gym structlog dataclasses-json marshmallow
typing-inspect mypy-extensions`` and timed in a subprocess with that folder on ``PYTHONPATH``.

Prints one JSON object per line. Every figure includes batch sampling (the algorithm's own
sampler on a 1M-step HalfCheetah-shaped dataset: obs 17, act 6), batch 256, at the reference
network sizes (2x256; CQL 3x256 with 10 sampled actions), for 1 and 2 torch threads. FLOPs per
update come from PyTorch's FLOP counter on one update; the matmul peak is measured in the same
run with 256-wide float32 matmuls, so "fraction_of_peak" = FLOPs x steps/s / peak.
Targets on 2 threads (issue 4): IQL >= 200, TD3+BC >= 250, BC >= 1000, CQL >= 9.5 steps/s.
"""
from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from offbench.cpu import configure_training_process
from offbench.data.dataset import Dataset, DatasetMetadata
from offbench.train import build_algorithm

TARGETS = {"bc": 1000, "td3_bc": 250, "iql": 200, "cql": 9.5, "awac": None}
SETTINGS = {"bc": {}, "td3_bc": {}, "awac": {}, "iql": {}, "cql": {"hidden": [256, 256, 256]}}


def emit(**row):
    print(json.dumps(row), flush=True)


def halfcheetah_shaped(steps: int = 1_000_000, length: int = 1000) -> Dataset:
    rng = np.random.default_rng(0)
    episodes = steps // length
    starts = np.arange(episodes, dtype=np.int64) * length
    truncations = np.zeros(steps, bool)
    truncations[starts + length - 1] = True
    arrays = {
        "observations": rng.standard_normal((steps, 17), dtype=np.float32),
        "actions": rng.uniform(-1, 1, (steps, 6)).astype(np.float32),
        "rewards": rng.standard_normal(steps, dtype=np.float32),
        "terminations": np.zeros(steps, bool), "truncations": truncations,
        "episodes/start": starts, "episodes/length": np.full(episodes, length, np.int64),
        "episodes/source": np.zeros(episodes, np.int32),
        "episodes/final/observations": rng.standard_normal((episodes, 17), dtype=np.float32),
    }
    meta = DatasetMetadata(dataset_id="bench/halfcheetah/synthetic-v0", env_id="HalfCheetah-v5",
                           observation_space=gym.spaces.Box(-np.inf, np.inf, (17,), np.float32),
                           action_space=gym.spaces.Box(-1.0, 1.0, (6,), np.float32),
                           reference_scores={"random": -280.0, "expert": 12135.0})
    return Dataset(arrays, meta)


def matmul_peak(seconds: float = 1.0) -> float:
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    for _ in range(50):
        a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            a @ b
        n += 100
    return 2 * 256**3 * n / (time.perf_counter() - t0)


# d3rlpy's own configuration of each algorithm at the same sizes; timed as sample + update,
# which is what its fit loop does per step.
D3RLPY_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
import d3rlpy

name, threads, budget = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
torch.set_num_threads(threads)
rng = np.random.default_rng(0)
n = 1_000_000
timeouts = np.zeros(n)
timeouts[999::1000] = 1
dataset = d3rlpy.dataset.MDPDataset(rng.standard_normal((n, 17), dtype=np.float32),
                                    rng.uniform(-1, 1, (n, 6)).astype(np.float32),
                                    rng.standard_normal(n, dtype=np.float32), np.zeros(n), timeouts=timeouts)
enc2 = d3rlpy.models.VectorEncoderFactory(hidden_units=[256, 256])
enc3 = d3rlpy.models.VectorEncoderFactory(hidden_units=[256, 256, 256])
configs = {
    "bc": lambda: d3rlpy.algos.BCConfig(batch_size=256, encoder_factory=enc2),
    "td3_bc": lambda: d3rlpy.algos.TD3PlusBCConfig(batch_size=256, actor_encoder_factory=enc2,
                                                    critic_encoder_factory=enc2),
    "awac": lambda: d3rlpy.algos.AWACConfig(batch_size=256, actor_encoder_factory=enc2, critic_encoder_factory=enc2),
    "iql": lambda: d3rlpy.algos.IQLConfig(batch_size=256, actor_encoder_factory=enc2, critic_encoder_factory=enc2,
                                          value_encoder_factory=enc2),
    "cql": lambda: d3rlpy.algos.CQLConfig(batch_size=256, actor_encoder_factory=enc3, critic_encoder_factory=enc3,
                                          n_action_samples=10),
}
algo = configs[name]().create(device="cpu:0")
algo.build_with_dataset(dataset)
for _ in range(3 if name == "cql" else 20):
    algo.update(dataset.sample_transition_batch(256))
steps, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < budget:
    algo.update(dataset.sample_transition_batch(256))
    steps += 1
print(json.dumps({"rate": steps / (time.perf_counter() - t0), "version": d3rlpy.__version__}))
"""


#: glibc settings equal to offbench.cpu.tune_allocator's, for a d3rlpy run on equal terms
GLIBC_TUNED = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"


def d3rlpy_rate(path: str, name: str, threads: int, budget: float, tuned: bool = False) -> dict:
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": path, **({"GLIBC_TUNABLES": GLIBC_TUNED} if tuned else {})}
    done = subprocess.run([sys.executable, "-c", D3RLPY_SCRIPT, name, str(threads), str(budget)], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--algos", nargs="+", default=list(SETTINGS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--d3rlpy", metavar="PATH", help="a folder holding d3rlpy 2.8 (installed --no-deps --target)")
    args = parser.parse_args()
    dataset = halfcheetah_shaped()
    for threads in args.threads:
        configure_training_process(threads)  # as offbench.train.fit does
        peak = matmul_peak()
        emit(figure="matmul_peak_256", threads=threads, value=round(peak / 1e9, 1), unit="GFLOP/s")
        for name in args.algos:
            algorithm = build_algorithm(name, dataset, SETTINGS[name], seed=0)
            data = algorithm.prepare(dataset)
            sampler = algorithm.make_sampler(data, 256, 0)
            with FlopCounterMode(display=False) as counter:
                algorithm.update(sampler.sample())
            flops = counter.get_total_flops()
            for _ in range(3 if name == "cql" else 20):
                algorithm.update(sampler.sample())
            budget = (2.0 if args.quick else 8.0) * (3 if name == "cql" else 1)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < budget:
                algorithm.update(sampler.sample())
                n += 1
            rate = n / (time.perf_counter() - t0)
            target = TARGETS.get(name)
            emit(figure=f"train_{name}", threads=threads, value=round(rate, 1), unit="steps/s",
                 gflop_per_update=round(flops / 1e9, 3), fraction_of_peak=round(flops * rate / peak, 2),
                 target=target if threads == 2 else None,
                 meets_target=(rate >= target) if (target and threads == 2) else None)
            if args.d3rlpy:
                theirs = d3rlpy_rate(args.d3rlpy, name, threads, budget)
                if "error" in theirs:
                    emit(figure=f"d3rlpy_{name}", threads=threads, error=theirs["error"])
                else:
                    emit(figure=f"d3rlpy_{name}", threads=threads, value=round(theirs["rate"], 1), unit="steps/s",
                         d3rlpy_version=theirs["version"], offbench_speedup=round(rate / theirs["rate"], 2))
                # d3rlpy given the same allocator setting as offbench (its own runs do not have it)
                tuned = d3rlpy_rate(args.d3rlpy, name, threads, budget, tuned=True)
                if "error" not in tuned:
                    emit(figure=f"d3rlpy_{name}_same_allocator", threads=threads, value=round(tuned["rate"], 1),
                         unit="steps/s", offbench_speedup=round(rate / tuned["rate"], 2))


if __name__ == "__main__":
    main()
