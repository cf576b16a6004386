"""Online RL speed against Stable-Baselines3, in the same run (issue 15, item 2).

    python scripts/bench_online.py --sb3 /tmp/sb3            # SAC and PPO, offbench and SB3
    python scripts/bench_online.py --sb3 /tmp/sb3 --quick    # a few minutes
    python scripts/bench_online.py --clock cpu               # on a machine other jobs share

SB3 pins an older gymnasium, so it is installed apart, without its dependencies (they are
offbench's own: torch, gymnasium, numpy, pandas, cloudpickle):
``pip install --no-deps --target /tmp/sb3 stable-baselines3==2.7.0``; its runs are subprocesses
with that folder first on ``PYTHONPATH``. Without ``--sb3`` only offbench and the simulators run.

Prints one JSON object per line: the machine, then per environment

- ``simulator``: the environment's own step rate (``env.step`` with uniformly random actions and
  resets, nothing else): the ceiling for any agent on it;
- ``sac``: environment steps per second *with one gradient update per step* (batch 256, 2x256
  networks, twin critics, learned temperature: both libraries' defaults agree), timed over the
  steps after the warm-up and the first 10 updates (the uniform-action steps before the first
  update, and a compiled update's compile time, are excluded), for
  offbench's ``OnlineRun`` (``offbench online train sac``: its replay buffer also keeps every step's
  simulator state, for OPE) and SB3's ``SAC``; with ``--compile`` also offbench's SAC with its
  compiled update (``--set compile=true``, opt-in);
- ``ppo``: environment steps per second of PPO (8 vectorised environments, 128 steps each per
  update, 4 epochs of 4 minibatches, 2x64 tanh networks: both libraries' settings made equal),
  over the whole run, on the meta-RL suite's environments (``offbench/PointRobot-v0``,
  continuous; ``offbench/GridNavi-v0``, discrete), for offbench's ``baselines/online/ppo.py``
  (``SyncVectorEnv``) and SB3's ``PPO`` (``DummyVecEnv``).

Each row has ``ratio_to_sb3`` (offbench / SB3, same run) and ``fraction_of_simulator`` (steps/s /
the simulator's). Every measurement runs in its own process with 1 torch thread (both libraries:
SB3 would otherwise take every core). The simulator and PPO measurements are each made in
``--repeats`` fresh processes (3 by default) and the fastest is reported, the least disturbed on a
machine shared with other work; SAC's minutes-long runs once. ``--clock cpu`` times with the process's CPU time (user +
system), so time slices other jobs take do not count; the default is wall time. Targets (issue 15):
offbench >= 2x SB3 for SAC and PPO.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAC_ENVS = ("Pendulum-v1", "HalfCheetah-v5")
PPO_ENVS = ("offbench/PointRobot-v0", "offbench/GridNavi-v0")
PPO_SETTINGS = dict(num_envs=8, rollout_steps=128, update_epochs=4, minibatches=4, hidden=(64, 64), lr=2.5e-4,
                    gamma=0.99, gae_lambda=0.95, clip_coef=0.2, entropy_coef=0.0, value_coef=0.5,
                    max_grad_norm=0.5)


def clock(kind: str) -> float:
    return time.process_time() if kind == "cpu" else time.perf_counter()


def machine() -> dict:
    import torch

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() \
        else platform.processor()
    return {"figure": "machine", "cpu": model, "cores": os.cpu_count(), "torch": torch.__version__,
            "load_average_1min": round(os.getloadavg()[0], 2)}


# ---------------------------------------------------------------------- one measurement per process
def measure_simulator(env_id: str, steps: int, kind: str) -> float:
    import gymnasium as gym

    import offbench.envs.meta  # noqa: F401 - registers the meta-RL ids

    env = gym.make(env_id)
    env.action_space.seed(0)
    env.reset(seed=0)
    actions = [env.action_space.sample() for _ in range(steps)]
    start = clock(kind)
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (clock(kind) - start)


def measure_offbench_sac(env_id: str, warmup: int, steps: int, kind: str, compiled: bool = False) -> float:
    """offbench's SAC steps/s over the ``steps`` after the warm-up and the first 10 updates (the
    compiled update compiles on its first calls: excluded from the rate, as in bench_train)."""
    from offbench.online import OnlineConfig, OnlineRun

    start, total = warmup + 10, warmup + steps
    marks = {}

    def on_step(step: int) -> None:
        if step in (start, total):
            marks[step] = clock(kind)

    with tempfile.TemporaryDirectory() as out:
        config = OnlineConfig(env_id=env_id, algo="sac", steps=total, seed=0, warmup_steps=warmup,
                              eval_every=10 * total, snapshot_every=10 * total, checkpoint_every=10 * total, threads=1,
                              agent={"compile": True} if compiled else {})
        OnlineRun(config, out).train(progress=False, on_step=on_step)
    return (total - start) / (marks[total] - marks[start])


def measure_sac_matmul_floor(env_id: str, kind: str) -> float:
    """Milliseconds per SAC update spent in its matrix products alone: every matmul one update
    runs (forward and backward), captured with its shapes and memory layouts and replayed back to
    back on preallocated inputs (``bench_train``'s same-shape peak), best of 5 one-second windows.
    No update with these networks and this batch can take less on this CPU and thread count."""
    import gymnasium as gym
    import torch
    from bench_train import CaptureMatmuls, replay

    from offbench.online import make_agent

    torch.set_num_threads(1)
    env = gym.make(env_id)
    agent, _ = make_agent("sac", env.observation_space, env.action_space, {}, 0)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    g = torch.Generator().manual_seed(0)
    batch = {"observations": torch.randn(256, obs_dim, generator=g), "next_observations": torch.randn(256, obs_dim, generator=g),
             "actions": torch.rand(256, act_dim, generator=g) * 2 - 1, "rewards": torch.randn(256, generator=g),
             "terminations": torch.zeros(256)}
    for _ in range(3):
        agent.update(batch)
    with CaptureMatmuls() as capture:
        agent.update(batch)
    run = replay(capture.calls)
    best = float("inf")
    for _ in range(5):
        n, start = 0, clock(kind)
        while clock(kind) - start < 1.0:
            run()
            n += 1
        best = min(best, (clock(kind) - start) / n)
    return best * 1e3


def measure_sb3_sac(env_id: str, warmup: int, steps: int, kind: str) -> float:
    import torch
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    total = warmup + steps
    marks = {}

    class Marks(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps in (warmup, total):
                marks[self.num_timesteps] = clock(kind)
            return True

    model = SAC("MlpPolicy", env_id, learning_starts=warmup, batch_size=256, buffer_size=total, train_freq=1,
                gradient_steps=1, policy_kwargs={"net_arch": [256, 256]}, seed=0, device="cpu")
    model.learn(total, callback=Marks())
    return steps / (marks[total] - marks[warmup])


def measure_offbench_ppo(env_id: str, steps: int, kind: str) -> dict:
    import gymnasium as gym

    import offbench.envs.meta  # noqa: F401
    from baselines.online.ppo import PPOConfig, make_ppo

    config = PPOConfig(**PPO_SETTINGS, threads=1)
    agent = make_ppo(lambda: gym.make(env_id), config, seed=0)
    spent = {"collect": 0.0, "update": 0.0}
    for name in spent:  # time the rollouts and the updates apart
        method = getattr(agent, name)

        def timed(*a, _method=method, _name=name, **kw):
            begin = clock(kind)
            try:
                return _method(*a, **kw)
            finally:
                spent[_name] += clock(kind) - begin
        setattr(agent, name, timed)
    start = clock(kind)
    agent.train_envs(lambda: gym.make(env_id), steps)
    total = clock(kind) - start
    return {"rate": steps / total, "rollout_share": spent["collect"] / total, "update_share": spent["update"] / total}


def measure_sb3_ppo(env_id: str, steps: int, kind: str) -> dict:
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    import offbench.envs.meta  # noqa: F401

    torch.set_num_threads(1)
    s = PPO_SETTINGS
    envs = make_vec_env(lambda: gym.make(env_id), n_envs=s["num_envs"], seed=0)
    model = PPO("MlpPolicy", envs, n_steps=s["rollout_steps"], batch_size=s["num_envs"] * s["rollout_steps"] // s["minibatches"],
                n_epochs=s["update_epochs"], learning_rate=s["lr"], gamma=s["gamma"], gae_lambda=s["gae_lambda"],
                clip_range=s["clip_coef"], ent_coef=s["entropy_coef"], vf_coef=s["value_coef"],
                max_grad_norm=s["max_grad_norm"], policy_kwargs={"net_arch": list(s["hidden"]), "activation_fn": torch.nn.Tanh},
                seed=0, device="cpu")
    from stable_baselines3.common.callbacks import BaseCallback

    rollout = {"spent": 0.0, "begin": 0.0}

    class RolloutClock(BaseCallback):
        def _on_rollout_start(self) -> None:
            rollout["begin"] = clock(kind)

        def _on_rollout_end(self) -> None:
            rollout["spent"] += clock(kind) - rollout["begin"]

        def _on_step(self) -> bool:
            return True

    start = clock(kind)
    model.learn(steps, callback=RolloutClock())
    total = clock(kind) - start
    return {"rate": steps / total, "rollout_share": rollout["spent"] / total, "update_share": 1 - rollout["spent"] / total}


MEASURES = {"simulator": measure_simulator, "offbench_sac": measure_offbench_sac, "sb3_sac": measure_sb3_sac,
            "offbench_sac_compiled": lambda *a: measure_offbench_sac(*a, compiled=True),
            "sac_matmul_floor": measure_sac_matmul_floor,
            "offbench_ppo": measure_offbench_ppo, "sb3_ppo": measure_sb3_ppo}


def run_one(what: str, args: list, kind: str, sb3: str | None):
    """``what`` in a fresh process (SB3 with its folder on PYTHONPATH); what it returns (JSON)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    paths = [str(REPO)] + ([sb3] if what.startswith("sb3") and sb3 else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = (f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import bench_online as b; "
            f"print(json.dumps(b.MEASURES[{what!r}](*{args!r}, {kind!r})))")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise RuntimeError(f"{what} {args} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sb3", help="folder with stable-baselines3 installed (pip install --no-deps --target DIR)")
    parser.add_argument("--quick", action="store_true", help="fewer steps (minutes)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--only", choices=["sac", "ppo"], help="one of the two comparisons")
    parser.add_argument("--compile", action="store_true",
                        help="also time SAC with its compiled update (SACConfig.compile; needs a C++ compiler)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="fresh processes per PPO and simulator measurement, the fastest reported "
                             "(default 3; 1 with --quick); SAC's long runs are measured once")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)

    def best_of(what: str, run_args: list):
        """The fastest of ``repeats`` fresh-process measurements (the least disturbed one)."""
        results = [run_one(what, run_args, args.clock, args.sb3) for _ in range(repeats)]
        return max(results, key=lambda r: r["rate"] if isinstance(r, dict) else r)
    sac_warmup, sac_steps = (1000, 2000) if args.quick else (5000, 10000)
    ppo_steps = 8 * 128 * (8 if args.quick else 40)
    print(json.dumps({**machine(), "clock": args.clock, "sb3": bool(args.sb3), "quick": args.quick,
                      "repeats": repeats}), flush=True)

    def emit(figure: str, env_id: str, offbench: float, sb3: float | None, simulator: float, target: float,
             **extra) -> None:
        ratio = None if sb3 is None else offbench / sb3
        print(json.dumps({"figure": figure, "env": env_id, "offbench_steps_per_s": round(offbench, 1),
                          "sb3_steps_per_s": None if sb3 is None else round(sb3, 1),
                          "ratio_to_sb3": None if ratio is None else round(ratio, 2),
                          "simulator_steps_per_s": round(simulator, 1),
                          "fraction_of_simulator": round(offbench / simulator, 4),
                          "sb3_fraction_of_simulator": None if sb3 is None else round(sb3 / simulator, 4),
                          "target_ratio": target, "meets_target": None if ratio is None else ratio >= target,
                          **extra, "load_average_1min": round(os.getloadavg()[0], 2)}), flush=True)

    if args.only in (None, "sac"):
        for env_id in SAC_ENVS:
            simulator = best_of("simulator", [env_id, 20000])
            ours = run_one("offbench_sac", [env_id, sac_warmup, sac_steps], args.clock, args.sb3)
            compiled = run_one("offbench_sac_compiled", [env_id, sac_warmup, sac_steps], args.clock, args.sb3) \
                if args.compile else None
            theirs = run_one("sb3_sac", [env_id, sac_warmup, sac_steps], args.clock, args.sb3) if args.sb3 else None
            floor_ms = run_one("sac_matmul_floor", [env_id], args.clock, args.sb3)
            # the ratio offbench would reach if each of its steps cost only its update's matmuls
            ceiling = None if theirs is None else round(1000.0 / theirs / floor_ms, 2)
            extra = {} if compiled is None else {
                "offbench_compiled_steps_per_s": round(compiled, 1),
                "compiled_ratio_to_sb3": None if theirs is None else round(compiled / theirs, 2),
                "compiled_matmul_fraction_of_step": round(floor_ms * compiled / 1000.0, 3)}
            emit("sac_env_steps_per_s_with_updates", env_id, ours, theirs, simulator, 2.0, **extra,
                 update_matmul_floor_ms=round(floor_ms, 3), offbench_step_ms=round(1000.0 / ours, 3),
                 matmul_fraction_of_step=round(floor_ms * ours / 1000.0, 3), ratio_to_sb3_ceiling=ceiling)
    if args.only in (None, "ppo"):
        for env_id in PPO_ENVS:
            simulator = best_of("simulator", [env_id, 20000])
            ours = best_of("offbench_ppo", [env_id, ppo_steps])
            theirs = best_of("sb3_ppo", [env_id, ppo_steps]) if args.sb3 else None
            # where each library's time went: rollouts (acting and the environments) and updates
            split = {"offbench_rollout_ms_per_1k_steps": round(1e6 * ours["rollout_share"] / ours["rate"], 1),
                     "offbench_update_ms_per_1k_steps": round(1e6 * ours["update_share"] / ours["rate"], 1)}
            if theirs is not None:
                split.update(sb3_rollout_ms_per_1k_steps=round(1e6 * theirs["rollout_share"] / theirs["rate"], 1),
                             sb3_update_ms_per_1k_steps=round(1e6 * theirs["update_share"] / theirs["rate"], 1))
            emit("ppo_env_steps_per_s", env_id, ours["rate"], None if theirs is None else theirs["rate"], simulator,
                 2.0, **split)
    return 0


if __name__ == "__main__":
    sys.exit(main())
