"""Gradient steps per second of the offline baselines, and how close they come to this machine's
float32 matmul peak measured in the same run.

    python scripts/bench_train.py                        # full run, 1 and 2 threads
    python scripts/bench_train.py --quick                # a few minutes
    python scripts/bench_train.py --quick --threads 2 --compile --algos iql cql
    python scripts/bench_train.py --d3rlpy /tmp/d3rlpy   # also d3rlpy 2.8's own updates, same run

d3rlpy pins an old gymnasium, so it is installed apart, without its dependencies:
``pip install --no-deps --target /tmp/d3rlpy d3rlpy==2.8.1 gym structlog dataclasses-json marshmallow
typing-inspect mypy-extensions`` and timed in a subprocess with that folder on ``PYTHONPATH``.

Prints one JSON object per line: first the machine (CPU model from /proc/cpuinfo, torch's CPU
capability, torch version, cores, load average: a shared machine shows here), then per thread
count and algorithm one line. Every figure includes batch sampling (the algorithm's own sampler
on a 1M-step HalfCheetah-shaped dataset: obs 17, act 6), batch 256, at the reference network
sizes (2x256; CQL 3x256 with 10 sampled actions).

What "fraction of the peak" means. FLOPs per update come from PyTorch's FLOP counter, averaged
over two consecutive updates (TD3+BC updates its actor every other step). Two peaks are measured
in the same process, interleaved with the updates:

- ``matmul_peak_same_shapes`` (the one the targets use): every matmul one update runs, forward
  and backward (captured from the update with their exact shapes and memory layouts, e.g.
  [256, 17] x [17, 256] and its transposed backward products), replayed back to back on
  preallocated inputs. The update's FLOPs divided by that replay's time is the rate this CPU
  reaches on exactly these products; ``fraction_of_peak`` = FLOPs x steps/s / that rate, i.e.
  the share of the step spent at matmul speed. Everything else (elementwise work, optimiser,
  autograd, Python, sampling) is the remaining gap.
- ``matmul_peak_256``: square [256, 256] x [256, 256] products (as the earlier runs reported),
  the rate for the most favourable shape; ``fraction_of_peak_256`` uses it.

Timing: ``--rounds`` rounds (windows of 0.3 s with ``--quick``, 1 s otherwise; 3x for CQL), each
timing the square peak, the same-shape replay and the update (eager, and compiled with
``--compile``) back to back; every figure is the best round (the
machine may be shared: the best round is the least disturbed one), and the per-round fractions'
median is reported too. With ``--compile``, compile time (the first two updates) is excluded from
the rate and reported, with the number of graphs and of recompilations during timing (0 wanted).
On a machine other jobs share, ``--clock cpu --threads 1`` times with this process's CPU time,
so that time slices taken by other processes are not counted (caches and memory bandwidth are
still shared: peak and update are measured in the same rounds for that reason).
Targets on 2 threads (issue 15): >= 80% of the same-shape peak, CQL >= 85%.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from offbench.cpu import configure_training_process
from offbench.data.dataset import Dataset, DatasetMetadata
from offbench.train import build_algorithm

#: steps/s targets of issue 4 (2 threads), kept for continuity
TARGETS = {"bc": 1000, "td3_bc": 250, "iql": 200, "cql": 9.5, "awac": None}
#: fraction-of-peak targets of issue 15 (2 threads)
FRACTION_TARGETS = {"bc": 0.80, "td3_bc": 0.80, "awac": 0.80, "iql": 0.80, "cql": 0.85}
SETTINGS = {"bc": {}, "td3_bc": {}, "awac": {}, "iql": {}, "cql": {"hidden": [256, 256, 256]}}
CYCLE = 2  # updates per FLOP count and matmul capture (TD3+BC's policy delay)


def emit(**row):
    print(json.dumps(row), flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    return {"cpu": cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "cores": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "date": time.strftime("%Y-%m-%d")}


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


# ---------------------------------------------------------------------- the matmul peaks
_MATMULS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default,
            torch.ops.aten.baddbmm.default}


class CaptureMatmuls(TorchDispatchMode):
    """Records every matmul (mm, addmm, bmm, baddbmm: forward and backward) with its arguments'
    shapes, strides and dtypes."""

    def __init__(self):
        super().__init__()
        self.calls: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _MATMULS:
            spec = lambda a: ("T", tuple(a.shape), tuple(a.stride()), a.dtype) if isinstance(a, torch.Tensor) \
                else ("S", a)  # noqa: E731
            self.calls.append((func, [spec(a) for a in args], {k: spec(v) for k, v in kwargs.items()}))
        return func(*args, **kwargs)


def matmul_flops(calls) -> int:
    total = 0
    for func, args, _ in calls:
        shapes = [a[1] for a in args if a[0] == "T"]
        x, y = shapes[-2], shapes[-1]  # (batch..., M, K) x (batch..., K, N); addmm's bias comes first
        total += 2 * math.prod(x) * y[-1]
    return total


def replay(calls):
    """A function that runs the captured matmuls on preallocated inputs of the same layouts."""
    def make(spec):
        if spec[0] == "S":
            return spec[1]
        _, shape, stride, dtype = spec
        storage = 1 + sum((n - 1) * s for n, s in zip(shape, stride)) if all(shape) else 1
        return torch.randn(storage, dtype=dtype).as_strided(shape, stride)

    built = [(func, [make(a) for a in args], {k: make(v) for k, v in kw.items()}) for func, args, kw in calls]

    def run():
        for func, args, kwargs in built:
            func(*args, **kwargs)
    return run


#: the clock of every timing window: wall time (default), or this process's CPU time
#: (``--clock cpu``, 1 thread only: time other processes hold the core is not counted)
CLOCK = time.perf_counter


def square_peak_window(seconds: float) -> float:
    """GFLOP/s of [256, 256] x [256, 256] products over about ``seconds``."""
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    for _ in range(20):
        a @ b
    n, t0 = 0, CLOCK()
    while CLOCK() - t0 < seconds:
        for _ in range(50):
            a @ b
        n += 50
    return 2 * 256 ** 3 * n / (CLOCK() - t0) / 1e9


def rate_window(fn, seconds: float) -> float:
    """Calls of ``fn`` per second over about ``seconds`` (at least two calls)."""
    n, t0 = 0, CLOCK()
    while n < 2 or CLOCK() - t0 < seconds:
        fn()
        n += 1
    return n / (CLOCK() - t0)


# ---------------------------------------------------------------------- d3rlpy
# d3rlpy's own configuration of each algorithm at the same sizes; timed as sample + update,
# which is what its fit loop does per step.
D3RLPY_SCRIPT = r"""
import json, sys, time
import numpy as np, torch
import d3rlpy

name, threads, budget = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
clock = time.process_time if sys.argv[4] == "cpu" else time.perf_counter
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
steps, t0 = 0, clock()
while clock() - t0 < budget:
    algo.update(dataset.sample_transition_batch(256))
    steps += 1
print(json.dumps({"rate": steps / (clock() - t0), "version": d3rlpy.__version__}))
"""


#: glibc settings equal to offbench.cpu.tune_allocator's, for a d3rlpy run on equal terms
GLIBC_TUNED = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"


def d3rlpy_rate(path: str, name: str, threads: int, budget: float, tuned: bool = False, clock: str = "wall") -> dict:
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": path, **({"GLIBC_TUNABLES": GLIBC_TUNED} if tuned else {})}
    done = subprocess.run([sys.executable, "-c", D3RLPY_SCRIPT, name, str(threads), str(budget), clock], env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- one algorithm
def bench_algorithm(name: str, dataset: Dataset, threads: int, args) -> dict:
    cql = name == "cql"
    algorithm = build_algorithm(name, dataset, SETTINGS[name], seed=0)
    sampler = algorithm.make_sampler(algorithm.prepare(dataset), 256, 0)
    for _ in range(2 if cql else 10):
        algorithm.update(sampler.sample())
    with FlopCounterMode(display=False) as counter:
        for _ in range(CYCLE):
            algorithm.update(sampler.sample())
    flops = counter.get_total_flops() / CYCLE
    capture = CaptureMatmuls()
    with capture:
        for _ in range(CYCLE):
            algorithm.update(sampler.sample())
    replayed, replay_flops = replay(capture.calls), matmul_flops(capture.calls)  # CYCLE updates' worth
    step = lambda: algorithm.update(sampler.sample())  # noqa: E731

    compiled = compile_row = None
    if args.compile:
        from torch._dynamo.utils import counters

        compiled = build_algorithm(name, dataset, SETTINGS[name], seed=0).compile_update()
        compiled_sampler = compiled.make_sampler(compiled.prepare(dataset), 256, 0)
        before = counters["stats"]["unique_graphs"]
        t0 = time.perf_counter()
        for _ in range(CYCLE):  # every graph compiles here (TD3+BC's actor part on its first update)
            compiled.update(compiled_sampler.sample())
        compile_row = {"compile_seconds": round(time.perf_counter() - t0, 1),
                       "graphs": counters["stats"]["unique_graphs"] - before}
        graphs_after_warmup = counters["stats"]["unique_graphs"]
        for _ in range(2 if cql else 10):
            compiled.update(compiled_sampler.sample())
        compiled_step = lambda: compiled.update(compiled_sampler.sample())  # noqa: E731

    window = (0.3 if args.quick else 1.0) * (3.0 if cql else 1.0)
    best = {"square": 0.0, "shapes": 0.0, "eager": 0.0, "compiled": 0.0}
    fractions, compiled_fractions = [], []
    for _ in range(args.rounds):
        square = square_peak_window(0.2 if args.quick else 0.5)
        shapes = replay_flops * rate_window(replayed, window / 2) / 1e9
        eager = rate_window(step, window)
        fractions.append(flops * eager / (shapes * 1e9))
        round_rates = {"square": square, "shapes": shapes, "eager": eager}
        if compiled is not None:
            round_rates["compiled"] = rate_window(compiled_step, window)
            compiled_fractions.append(flops * round_rates["compiled"] / (shapes * 1e9))
        for key, value in round_rates.items():
            best[key] = max(best[key], value)

    def figures(rate: float, rounds: list[float]) -> dict:
        target = FRACTION_TARGETS[name]
        fraction = flops * rate / (best["shapes"] * 1e9)
        return {"value": round(rate, 2), "unit": "steps/s", "gflop_per_update": round(flops / 1e9, 3),
                "matmul_peak_same_shapes": round(best["shapes"], 1), "matmul_peak_256": round(best["square"], 1),
                "fraction_of_peak": round(fraction, 3),
                "fraction_of_peak_256": round(flops * rate / (best["square"] * 1e9), 3),
                "fraction_of_peak_median_round": round(statistics.median(rounds), 3),
                "target_fraction": target if threads == 2 else None,
                "meets_target_fraction": (fraction >= target) if threads == 2 else None}

    row = {"figure": f"train_{name}", "threads": threads, **figures(best["eager"], fractions),
           "target_steps": TARGETS.get(name) if threads == 2 else None,
           "rounds": args.rounds, "clock": args.clock, "cpu": cpu_model()}
    emit(**row)
    if compiled is not None:
        from torch._dynamo.utils import counters

        emit(figure=f"train_{name}_compiled", threads=threads, **figures(best["compiled"], compiled_fractions),
             **compile_row, recompiles=counters["stats"]["unique_graphs"] - graphs_after_warmup,
             speedup_vs_eager=round(best["compiled"] / best["eager"], 3), rounds=args.rounds, clock=args.clock,
             cpu=cpu_model())
        row["compiled_value"] = best["compiled"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--quick", action="store_true", help="short windows, 5 rounds")
    parser.add_argument("--algos", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (default 5 quick, 7 full)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: this process's CPU time (1 thread only), for a machine other jobs share")
    parser.add_argument("--compile", action="store_true", help="also time Algorithm.compile_update()")
    parser.add_argument("--d3rlpy", metavar="PATH", help="a folder holding d3rlpy 2.8 (installed --no-deps --target)")
    args = parser.parse_args()
    args.rounds = args.rounds or (5 if args.quick else 7)
    if args.clock == "cpu":
        if args.threads != [1]:
            parser.error("--clock cpu needs --threads 1 (with more threads CPU time also counts waiting threads)")
        global CLOCK
        CLOCK = time.process_time
    emit(figure="machine", **machine())
    dataset = halfcheetah_shaped()
    for threads in args.threads:
        configure_training_process(threads)  # as offbench.train.fit does
        emit(figure="matmul_peak_256", threads=threads, value=round(max(square_peak_window(0.5) for _ in range(3)), 1),
             unit="GFLOP/s")
        for name in args.algos:
            row = bench_algorithm(name, dataset, threads, args)
            if args.d3rlpy:
                budget = (2.0 if args.quick else 8.0) * (3 if name == "cql" else 1)
                theirs = d3rlpy_rate(args.d3rlpy, name, threads, budget, clock=args.clock)
                if "error" in theirs:
                    emit(figure=f"d3rlpy_{name}", threads=threads, error=theirs["error"])
                else:
                    emit(figure=f"d3rlpy_{name}", threads=threads, value=round(theirs["rate"], 2), unit="steps/s",
                         d3rlpy_version=theirs["version"], clock=args.clock,
                         offbench_speedup=round(row["value"] / theirs["rate"], 2),
                         **({"offbench_compiled_speedup": round(row["compiled_value"] / theirs["rate"], 2)}
                            if "compiled_value" in row else {}))
                # d3rlpy given the same allocator setting as offbench (its own runs do not have it)
                tuned = d3rlpy_rate(args.d3rlpy, name, threads, budget, tuned=True, clock=args.clock)
                if "error" not in tuned:
                    emit(figure=f"d3rlpy_{name}_same_allocator", threads=threads, value=round(tuned["rate"], 2),
                         unit="steps/s", clock=args.clock, offbench_speedup=round(row["value"] / tuned["rate"], 2))


if __name__ == "__main__":
    main()
