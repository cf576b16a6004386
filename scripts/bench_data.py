"""Speed of the data layer on a 1M-transition HalfCheetah-shaped dataset.

    python scripts/bench_data.py            # full run
    python scripts/bench_data.py --quick    # under a minute

Prints one JSON object per line: {"figure", "value", "unit", "target", "meets_target"}.
The dataset mirrors what the locomotion recipes store: 1,000 episodes of 1,000 steps,
17-dim float32 observations, 6-dim float32 actions, behaviour log-probs, policy ids and
MuJoCo qpos/qvel (9 + 9 float64). The same data is exported to Minari and timed through
Minari's own loader in the same run.

Goal-conditioned batches (``goal_batch_256_*``) are timed on a PointMaze-shaped dataset: 1,000
episodes of 1,001 steps, Dict observations (observation, achieved_goal, desired_goal: 2 float32
each), 2-dim actions, with OGBench's goal mixes (offbench.data.goal_batches); ``--goal-only``
runs just those figures.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from offbench.data.dataset import read_dataset
from offbench.data.goal_batches import GoalBatchConfig, GoalBatchSampler
from offbench.data.labels import returns_to_go
from offbench.data.sampling import SegmentSampler, TransitionSampler
from offbench.data.writer import DatasetWriter


def emit(figure: str, value: float, unit: str, target: float | None = None, higher_is_better: bool = False,
         **extra) -> None:
    meets = None if target is None else (value >= target if higher_is_better else value <= target)
    print(json.dumps({"figure": figure, "value": round(float(value), 6), "unit": unit, "target": target,
                      "meets_target": meets, **extra}), flush=True)


def write_halfcheetah_shaped(path: Path, episodes: int, length: int) -> None:
    rng = np.random.default_rng(0)
    with DatasetWriter(path, dataset_id="bench/halfcheetah/synthetic-v0", env_id="HalfCheetah-v5",
                       observation_space=gym.spaces.Box(-np.inf, np.inf, (17,), np.float32),
                       action_space=gym.spaces.Box(-1.0, 1.0, (6,), np.float32),
                       reference_scores={"random": -280.0, "expert": 12135.0}) as writer:
        trunc = np.zeros(length, bool)
        trunc[-1] = True
        for _ in range(episodes):
            writer.add_episode(
                observations=rng.standard_normal((length + 1, 17), dtype=np.float32),
                actions=rng.uniform(-1, 1, (length, 6)).astype(np.float32),
                rewards=rng.standard_normal(length, dtype=np.float32),
                terminations=np.zeros(length, bool), truncations=trunc,
                behaviour_log_prob=rng.standard_normal(length), policy_id=0,
                sim_state={"qpos": rng.standard_normal((length + 1, 9)),
                           "qvel": rng.standard_normal((length + 1, 9))})


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions; finishes in under a minute")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-minari", action="store_true", help="skip the Minari comparison")
    parser.add_argument("--goal-only", action="store_true", help="only the goal-conditioned batch figures")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 5
    emit("torch_threads", args.threads, "threads", cpu_count=os.cpu_count())
    if args.goal_only:
        bench_goal_batches(quick=args.quick)
        return

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "halfcheetah.hdf5"
        t0 = time.perf_counter()
        write_halfcheetah_shaped(path, episodes=1000, length=1000)
        emit("write_1M_steps", time.perf_counter() - t0, "s", size_mb=round(path.stat().st_size / 1e6, 1))

        read_dataset(path)  # warm the page cache: the figure is load into memory, not disk speed
        ours_load = best_of(repeats, lambda: read_dataset(path))
        emit("load_1M_into_memory", ours_load, "s", target=0.3)
        dataset = read_dataset(path)
        emit("validate_with_checksums_1M", best_of(1, dataset.validate), "s")

        emit("returns_to_go_1M_gamma_0.99", best_of(repeats, lambda: returns_to_go(dataset, 0.99)), "s",
             target=0.2)
        emit("returns_to_go_1M_undiscounted", best_of(repeats, lambda: returns_to_go(dataset, 1.0)), "s",
             target=0.2)

        t0 = time.perf_counter()
        sampler = TransitionSampler(dataset, batch_size=256, seed=0)
        emit("transition_sampler_setup", time.perf_counter() - t0, "s")
        n = 20_000 if args.quick else 100_000
        for _ in range(1000):
            sampler.sample()
        t0 = time.perf_counter()
        for _ in range(n):
            sampler.sample()
        emit("sample_batch_256", n / (time.perf_counter() - t0), "batches/s", target=20_000, higher_is_better=True)
        ours_per_batch = (time.perf_counter() - t0) / n

        segments = SegmentSampler(dataset, context_length=20, batch_size=64, seed=0)
        m = 2_000 if args.quick else 10_000
        t0 = time.perf_counter()
        for _ in range(m):
            segments.sample()
        emit("sample_segments_64x20", m / (time.perf_counter() - t0), "batches/s")

        if not args.no_minari:
            bench_minari(dataset, Path(tmp), repeats=1 if args.quick else 3, ours_load=ours_load,
                         ours_per_batch=ours_per_batch)
    bench_goal_batches(quick=args.quick)


def write_pointmaze_shaped(path: Path, episodes: int, length: int) -> None:
    """Random walks shaped like OGBench's PointMaze navigate data (positions are the goals)."""
    rng = np.random.default_rng(0)
    box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    space = gym.spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
    with DatasetWriter(path, dataset_id="bench/pointmaze/synthetic-v0", env_id="offbench/pointmaze-medium-v0",
                       observation_space=space, action_space=gym.spaces.Box(-1.0, 1.0, (2,), np.float32)) as writer:
        trunc = np.zeros(length, bool)
        trunc[-1] = True
        for _ in range(episodes):
            position = np.cumsum(rng.uniform(-0.2, 0.2, (length + 1, 2)), axis=0).astype(np.float32)
            writer.add_episode(
                observations={"observation": position, "achieved_goal": position,
                              "desired_goal": np.repeat(position[-1:], length + 1, axis=0)},
                actions=rng.uniform(-1, 1, (length, 2)).astype(np.float32), rewards=np.zeros(length, np.float32),
                terminations=np.zeros(length, bool), truncations=trunc, behaviour_log_prob=np.zeros(length))


def bench_goal_batches(quick: bool) -> None:
    """Goal-conditioned batches of 256 (value and actor goals, rewards, masks; HIQL also subgoals)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pointmaze.hdf5"
        write_pointmaze_shaped(path, episodes=1000, length=1001)
        dataset = read_dataset(path)
        for method, stitch in (("gciql", False), ("hiql", True)):
            config = GoalBatchConfig.ogbench(method, stitch=stitch)
            t0 = time.perf_counter()
            sampler = GoalBatchSampler(dataset, config, batch_size=256, seed=0)
            setup = time.perf_counter() - t0
            for _ in range(200):
                sampler.sample()
            n = 20_000 if quick else 100_000
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                sampler.sample()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            # cpu_batches_per_s: batches per second of this process's own CPU time, the figure that
            # does not depend on other jobs sharing the cores (wall-clock is the headline).
            emit(f"goal_batch_256_{method}{'_stitch' if stitch else ''}", n / wall, "batches/s",
                 target=10_000, higher_is_better=True, cpu_batches_per_s=round(n / cpu), setup_s=round(setup, 3),
                 steps=dataset.num_steps, load_average_1min=round(os.getloadavg()[0], 2))


def bench_minari(dataset, root: Path, repeats: int, ours_load: float, ours_per_batch: float) -> None:
    import minari

    from offbench.data.minari_interop import export_to_minari

    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
    t0 = time.perf_counter()
    minari_id = export_to_minari(dataset, "bench/halfcheetah-v0", minari_root=root / "minari")
    emit("minari_export_1M", time.perf_counter() - t0, "s")

    def minari_load_all():
        data = minari.load_dataset(minari_id)
        return [ep.observations for ep in data.iterate_episodes()]

    minari_load = best_of(repeats, minari_load_all)
    emit("minari_load_1M_into_memory", minari_load, "s", ratio_vs_offbench=round(minari_load / ours_load, 1))

    data = minari.load_dataset(minari_id)
    data.set_seed(0)
    # Minari's own way to get 256 random transitions: sample episodes, then one step each.
    t0 = time.perf_counter()
    for _ in range(repeats):
        data.sample_episodes(256)
    per_batch = (time.perf_counter() - t0) / repeats
    emit("minari_sample_episodes_256", per_batch, "s/batch",
         ratio_vs_offbench=round(per_batch / ours_per_batch))


if __name__ == "__main__":
    main()
