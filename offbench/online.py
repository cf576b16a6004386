"""The online training loop that produces behaviour policies (SAC, DQN).

One env step, then ``updates_per_step`` gradient steps after a uniform-random warm-up.
Every ``eval_every`` steps the current policy is evaluated on separate, separately seeded
environments (stochastic and deterministic returns), every ``snapshot_every`` steps the
policy's weights are saved (candidates for the medium and expert behaviour policies), and at
the first episode end after every ``checkpoint_every`` steps the full state is saved: agent
weights and optimisers, all RNG states (torch, numpy, the env's), counters, and the new rows
of the replay buffer. Because checkpoints fall on episode boundaries, a resumed run continues
exactly as the uninterrupted one would (tested).

Run directory::

    config.json                  resolved configuration, library versions, git commit
    curve.csv, curve.png         learning curve (evaluation returns against env steps)
    snapshots/policy-<step>.safetensors (+ .json)   policy weights and evaluation return
    state.safetensors, state.json                  latest full checkpoint (state.json last)
    buffer/rows-<start>-<end>.npz                  replay buffer, appended at checkpoints
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from offbench.checkpoint import load_checkpoint, save_checkpoint, save_module
from offbench.cpu import configure_training_process, torch_threads
from offbench.data.collect import simulator_state
from offbench.errors import OffbenchError
from offbench.nn import seed_everything
from offbench.rollout import rollout


@dataclass
class OnlineConfig:
    env_id: str
    algo: str
    steps: int = 1_000_000
    seed: int = 0
    warmup_steps: int = 5_000  # uniform random actions before the first update
    batch_size: int = 256
    updates_per_step: int = 1
    eval_every: int = 10_000
    eval_episodes: int = 10
    snapshot_every: int = 10_000
    checkpoint_every: int = 50_000
    threads: int = 1
    env_kwargs: dict = field(default_factory=dict)
    agent: dict = field(default_factory=dict)  # overrides of the algorithm's config


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def git_dirty() -> bool | None:
    """Whether the checkout has uncommitted changes (so a recorded commit is not the whole story)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return bool(out.stdout.strip()) if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# ---------------------------------------------------------------------- replay buffer
class ReplayBuffer:
    """Preallocated, append-only transitions (no wrap-around: capacity = the run's steps).

    Keeps what a dataset needs besides (s, a, r, s', terminated): the episode-end flag for
    time limits, the behaviour log-probability of every action, and the simulator state before
    and after each step, so the buffer up to any step can be written as a dataset
    (medium-replay) with exact final observations.
    """

    def __init__(self, capacity: int, obs_space: gym.Space, act_space: gym.Space, sim_shapes: dict[str, tuple]):
        def alloc(shape, dtype):
            return np.zeros((capacity, *shape), dtype=dtype)

        obs_dtype = np.int64 if isinstance(obs_space, gym.spaces.Discrete) else obs_space.dtype
        act_dtype = np.int64 if isinstance(act_space, gym.spaces.Discrete) else act_space.dtype
        self.arrays: dict[str, np.ndarray] = {
            "observations": alloc(obs_space.shape, obs_dtype),
            "next_observations": alloc(obs_space.shape, obs_dtype),
            "actions": alloc(act_space.shape, act_dtype),
            "rewards": alloc((), np.float32),
            "terminations": alloc((), bool),
            "truncations": alloc((), bool),
            "behaviour_log_prob": alloc((), np.float64),
        }
        for name, shape in sim_shapes.items():
            self.arrays[f"sim_state/{name}"] = alloc(shape, np.float64)
            self.arrays[f"next_sim_state/{name}"] = alloc(shape, np.float64)
        self.capacity = capacity
        self.size = 0
        self.saved = 0  # rows already on disk

    def add(self, **row) -> None:
        if self.size >= self.capacity:
            raise OffbenchError(f"replay buffer full ({self.capacity} rows)")
        for key, value in row.items():
            self.arrays[key][self.size] = value
        self.size += 1

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, batch_size)
        batch = {}
        for key in ("observations", "next_observations", "actions", "rewards"):
            rows = self.arrays[key][idx]
            # Networks run in float32; MuJoCo v5 observations are float64 in the buffer.
            batch[key] = torch.from_numpy(rows.astype(np.float32) if rows.dtype == np.float64 else rows)
        batch["terminations"] = torch.from_numpy(self.arrays["terminations"][idx].astype(np.float32))
        return batch

    def save_new_rows(self, directory: Path) -> None:
        """Append rows [saved, size) as one new .npz file (never rewrites old rows)."""
        if self.size == self.saved:
            return
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"rows-{self.saved:09d}-{self.size:09d}.npz"
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
        np.savez(tmp, **{k.replace("/", "__"): v[self.saved:self.size] for k, v in self.arrays.items()})
        os.replace(tmp, path)
        self.saved = self.size

    def load_rows(self, directory: Path, upto: int) -> None:
        """Reload rows [0, upto) on resume; files written after that checkpoint are superseded."""
        for path in sorted(directory.glob("rows-*.npz")):
            if int(path.stem.split("-")[1]) >= upto:
                path.unlink()
        for key, rows in read_replay_rows(directory, upto).items():
            self.arrays[key][:upto] = rows
        self.size = self.saved = upto

    def episodes_upto(self, upto: int) -> list[tuple[int, int]]:
        """(start, end) of the episodes in rows [0, upto); the last may be cut at ``upto``."""
        ends = np.flatnonzero(self.arrays["terminations"][:upto] | self.arrays["truncations"][:upto]) + 1
        bounds = [0, *ends.tolist()]
        if bounds[-1] != upto:
            bounds.append(upto)
        return list(zip(bounds[:-1], bounds[1:]))


def saved_replay_rows(directory: Path) -> int:
    """How many rows from the start of a run's saved replay buffer are on disk (0 without one)."""
    covered = 0
    for path in sorted(Path(directory).glob("rows-*.npz"), key=lambda p: int(p.stem.split("-")[1])):
        start, end = (int(x) for x in path.stem.split("-")[1:])
        if start != covered:
            break
        covered = end
    return covered


def read_replay_rows(directory: Path, upto: int) -> dict[str, np.ndarray]:
    """Rows [0, upto) of a run's saved replay buffer (``buffer/rows-*.npz``), read-only."""
    chunks: dict[str, list[np.ndarray]] = {}
    covered = 0
    for path in sorted(Path(directory).glob("rows-*.npz")):
        start, end = (int(x) for x in path.stem.split("-")[1:])
        if start >= upto:
            break
        if start != covered:
            raise OffbenchError(f"{directory}: replay rows {covered}..{start} are missing")
        with np.load(path, allow_pickle=False) as data:
            for key in data.files:
                chunks.setdefault(key.replace("__", "/"), []).append(data[key][: min(end, upto) - start])
        covered = min(end, upto)
    if covered < upto:
        raise OffbenchError(f"{directory}: the saved replay buffer holds {covered} rows, {upto} requested "
                            "(let the run reach a checkpoint past that step)")
    return {k: np.concatenate(v) for k, v in chunks.items()}


# ---------------------------------------------------------------------- the loop
def make_agent(algo: str, obs_space, act_space, overrides: dict, seed: int):
    from baselines.online import registry

    if algo not in registry.ALGORITHMS:
        raise OffbenchError(f"unknown online algorithm {algo!r}; known: {sorted(registry.ALGORITHMS)}")
    cls = registry.ALGORITHMS[algo]
    known = {f.name for f in fields(cls.config_class)}
    unknown = set(overrides) - known
    if unknown:
        raise OffbenchError(f"unknown {algo} config keys {sorted(unknown)}; known: {sorted(known)}")
    config = cls.config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    return cls(obs_space, act_space, config, seed=seed), config


class OnlineRun:
    """A resumable online training run in ``out``."""

    def __init__(self, config: OnlineConfig, out: str | os.PathLike):
        self.out = Path(out)
        self.config = config
        configure_training_process(config.threads)
        self.env = gym.make(config.env_id, **config.env_kwargs)
        seed_everything(config.seed)  # weight initialisation draws from the global torch RNG
        self.agent, self.agent_config = make_agent(config.algo, self.env.observation_space, self.env.action_space,
                                                   config.agent, config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.env.reset(seed=config.seed)  # some envs (Pendulum) have no simulator state before a reset
        sim_shapes = {k: v.shape for k, v in simulator_state(self.env).items()}
        self.buffer = ReplayBuffer(config.steps, self.env.observation_space, self.env.action_space, sim_shapes)
        self.step = 0
        self.episodes = 0
        self.curve: list[dict] = []
        self.env_rng_state: dict | None = None
        self.elapsed = 0.0

    # ---------------------------------------------------------------- persistence
    def save_config(self) -> None:
        from offbench.data.writer import library_versions

        self.out.mkdir(parents=True, exist_ok=True)
        resolved = {"online": asdict(self.config), "agent": asdict(self.agent_config),
                    "library_versions": library_versions(), "git_commit": git_commit()}
        (self.out / "config.json").write_text(json.dumps(resolved, indent=2, default=list))

    def checkpoint(self) -> None:
        self.buffer.save_new_rows(self.out / "buffer")
        save_checkpoint(
            self.out / "state", modules={"agent": self.agent}, optimizers=self.agent.optimizers(),
            generators={"agent": self.agent.generator},
            extra={"step": self.step, "episodes": self.episodes, "elapsed": self.elapsed,
                   "numpy_rng": self.rng.bit_generator.state,
                   "env_rng": self.env.unwrapped.np_random.bit_generator.state, "curve": self.curve})

    def try_resume(self) -> bool:
        if not (self.out / "state.json").exists():
            return False
        saved = json.loads((self.out / "config.json").read_text())["online"]
        mine = json.loads(json.dumps(asdict(self.config), default=list))
        differs = {k for k in mine if k not in ("steps", "threads") and saved.get(k) != mine[k]}
        if differs:
            raise OffbenchError(f"{self.out} holds a run with a different configuration ({sorted(differs)}); "
                                "use another --out or the same settings to resume it")
        meta = load_checkpoint(self.out / "state", modules={"agent": self.agent},
                               optimizers=self.agent.optimizers(), generators={"agent": self.agent.generator})
        self.step, self.episodes, self.elapsed = meta["step"], meta["episodes"], meta["elapsed"]
        self.rng.bit_generator.state = meta["numpy_rng"]
        self.env_rng_state = meta["env_rng"]
        self.curve = meta["curve"]
        self.buffer.load_rows(self.out / "buffer", self.step)
        return True

    # ---------------------------------------------------------------- evaluation
    def evaluate(self) -> dict:
        cfg = self.config
        index = self.step // cfg.eval_every
        seed = cfg.seed * 1_000_003 + 10_000_000 + index * cfg.eval_episodes  # distinct from training seeds
        generator_state = self.agent.generator.get_state()  # evaluation must not shift the training stream
        row = {"step": self.step, "wall_time": round(self.elapsed, 1)}
        for label, deterministic in (("stochastic", False), ("deterministic", True)):
            result = rollout(lambda obs: self.agent.act(obs, deterministic=deterministic, step=self.step)[0],
                             cfg.env_id, cfg.eval_episodes, seed=seed, env_kwargs=cfg.env_kwargs)
            row[f"return_{label}"] = round(result.mean, 3)
            row[f"return_{label}_std"] = round(float(result.returns.std()), 3)
        self.agent.generator.set_state(generator_state)
        self.curve.append(row)
        self.write_curve()
        return row

    def write_curve(self) -> None:
        with open(self.out / "curve.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self.curve[0]))
            writer.writeheader()
            writer.writerows(self.curve)

    def plot_curve(self) -> None:
        plot_learning_curve(self.curve, self.out / "curve.png", episodes=self.config.eval_episodes,
                            title=f"{self.config.algo.upper()} on {self.config.env_id} (seed {self.config.seed})")

    def snapshot(self, last_eval: dict | None) -> None:
        path = self.out / "snapshots" / f"policy-{self.step:09d}.safetensors"
        save_module(path, self.agent.policy_module())
        info = {"step": self.step, "algo": self.config.algo, "env_id": self.config.env_id,
                "evaluation": last_eval if last_eval and last_eval["step"] == self.step else None}
        path.with_suffix(".json").write_text(json.dumps(info, indent=2))

    # ---------------------------------------------------------------- training
    def train(self, progress: bool = True, on_step: Callable[[int], None] | None = None) -> Path:
        from tqdm.auto import tqdm

        cfg = self.config
        resumed = self.try_resume()
        self.save_config()
        if self.step >= cfg.steps:
            return self.out
        if not resumed:
            self.snapshot(None)  # step 0: the randomly initialised policy
        obs, _ = self.env.reset(seed=cfg.seed)
        if resumed:  # continue the env's random stream exactly where the checkpoint left it
            self.env.unwrapped.np_random.bit_generator.state = self.env_rng_state
            obs, _ = self.env.reset()
        act_space = self.env.action_space
        uniform_log_prob = (float(-np.log(act_space.n)) if isinstance(act_space, gym.spaces.Discrete)
                            else float(-np.sum(np.log(act_space.high - act_space.low))))
        sim = simulator_state(self.env)
        last_eval = self.curve[-1] if self.curve else None
        bar = tqdm(total=cfg.steps, initial=self.step, unit="step", unit_scale=True, disable=not progress,
                   desc=f"{cfg.algo} {cfg.env_id}", smoothing=0.05)
        started = time.perf_counter() - self.elapsed
        episode_return, pending_checkpoint, checkpointed = 0.0, False, None
        try:
            while self.step < cfg.steps:
                if self.step < cfg.warmup_steps:
                    if isinstance(act_space, gym.spaces.Discrete):
                        action = int(self.rng.integers(act_space.n))
                    else:
                        action = self.rng.uniform(act_space.low, act_space.high).astype(act_space.dtype)
                    log_prob = uniform_log_prob
                else:
                    actions, log_probs = self.agent.act(np.asarray(obs)[None], deterministic=False, step=self.step)
                    action, log_prob = actions[0], float(log_probs[0])
                next_obs, reward, terminated, truncated, _ = self.env.step(action)
                next_sim = simulator_state(self.env)
                self.step += 1
                cut = self.step >= cfg.steps and not terminated
                self.buffer.add(observations=obs, next_observations=next_obs, actions=action, rewards=reward,
                                terminations=terminated, truncations=(truncated or cut) and not terminated,
                                behaviour_log_prob=log_prob,
                                **{f"sim_state/{k}": v for k, v in sim.items()},
                                **{f"next_sim_state/{k}": v for k, v in next_sim.items()})
                obs, sim = next_obs, next_sim
                episode_return += float(reward)
                if self.step >= cfg.warmup_steps:
                    for _ in range(cfg.updates_per_step):
                        self.agent.update(self.buffer.sample(cfg.batch_size, self.rng))
                self.elapsed = time.perf_counter() - started
                if self.step % cfg.eval_every == 0:
                    last_eval = self.evaluate()
                    bar.set_postfix(eval_return=last_eval["return_stochastic"])
                if self.step % cfg.snapshot_every == 0:
                    self.snapshot(last_eval)
                if self.step % cfg.checkpoint_every == 0:
                    pending_checkpoint = True
                bar.update(1)
                if on_step:
                    on_step(self.step)
                if terminated or truncated:
                    self.episodes += 1
                    episode_return = 0.0
                    if pending_checkpoint or self.step >= cfg.steps:
                        # episode boundary, before the reset: the state is exactly resumable, so a
                        # run extended to more steps later continues as one that never stopped
                        self.checkpoint()
                        pending_checkpoint, checkpointed = False, self.step
                    obs, _ = self.env.reset()
                    sim = simulator_state(self.env)
        finally:
            bar.close()
        if checkpointed != self.step:  # the budget cut an episode: resumable, but a new episode follows
            self.checkpoint()
        if self.step % cfg.snapshot_every:  # the final policy is always a snapshot
            self.snapshot(last_eval)
        if self.curve:
            self.plot_curve()
        return self.out


# ---------------------------------------------------------------------- behaviour checkpoints
def load_run_config(run_dir: Path) -> OnlineConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise OffbenchError(f"{run_dir} is not an online run directory (no config.json)")
    return OnlineConfig(**json.loads(path.read_text())["online"])


def snapshot_policy(run_dir: Path, step: int) -> tuple[torch.nn.Module, OnlineConfig, dict]:
    """The policy network of a run at ``step`` (step 0: the seeded initial network)."""
    from offbench.checkpoint import load_module

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    env = gym.make(config.env_id, **config.env_kwargs)
    seed_everything(config.seed)  # the same initialisation as the run's (OnlineRun.__init__)
    agent, agent_config = make_agent(config.algo, env.observation_space, env.action_space, config.agent, config.seed)
    path = run_dir / "snapshots" / f"policy-{step:09d}.safetensors"
    if path.exists():
        load_module(path, agent.policy_module())
    elif step != 0:
        have = sorted(int(p.stem.split("-")[1]) for p in (run_dir / "snapshots").glob("policy-*.safetensors"))
        raise OffbenchError(f"{run_dir} has no snapshot at step {step}; snapshots: {have[:5]}…{have[-5:]}")
    return agent.policy_module().eval(), config, asdict(agent_config)


def behaviour_epsilon(agent_config: dict) -> float:
    """The exploration rate of a snapshot's behaviour policy: a DQN's final epsilon (SAC: unused)."""
    return float(agent_config.get("epsilon_end", 0.0))


def measure_policy(module: torch.nn.Module, env_id: str, episodes: int, seed: int, env_kwargs=None,
                   epsilon: float = 0.0) -> dict:
    """Mean/std/stderr of undiscounted returns, stochastic and deterministic, ``episodes`` each
    (a Q-network's stochastic policy is epsilon-greedy with ``epsilon``). One torch thread:
    fast on a shared machine, and the same numbers on any core count (offbench/cpu.py)."""
    from offbench.behaviour import sample_actions

    generator = torch.Generator().manual_seed(seed)
    out = {"episodes": episodes, "seed": seed}
    for label, deterministic in (("stochastic", False), ("deterministic", True)):
        def policy(obs):
            obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
            return sample_actions(module, obs, deterministic=deterministic, generator=generator,
                                  epsilon=epsilon)[0].numpy()

        with torch_threads(1):
            result = rollout(policy, env_id, episodes, seed=seed, env_kwargs=env_kwargs)
        out[label] = {"mean": round(result.mean, 3), "std": round(float(result.returns.std()), 3),
                      "stderr": round(result.stderr, 3)}
    return out


def export_policy(run_dir: Path, step: int, dest: Path, *, name: str, episodes: int = 50, seed: int = 123_456) -> dict:
    """Write a behaviour checkpoint (safetensors + JSON sidecar with measured returns)."""
    from offbench.data.mirrors import file_sha256

    module, config, agent_config = snapshot_policy(run_dir, step)
    dest = Path(dest)
    save_module(dest, module)
    if config.algo == "dqn":  # the Q-network; its behaviour policy is epsilon-greedy
        shape = {"obs_dim": module.obs_dim, "act_dim": module.n_actions, "n_states": module.n_states,
                 "epsilon": behaviour_epsilon(agent_config)}
    else:
        shape = {"obs_dim": int(np.prod(gym.make(config.env_id).observation_space.shape)),
                 "act_dim": int(module.action_scale.numel())}
    info = {
        "name": name, "module": type(module).__name__, "algo": config.algo, "env_id": config.env_id,
        **shape, "hidden": list(agent_config["hidden"]),
        "step": step, "run": Path(run_dir).name, "training_seed": config.seed,
        "returns": measure_policy(module, config.env_id, episodes, seed, config.env_kwargs,
                                  epsilon=shape.get("epsilon", 0.0)),
        "sha256": file_sha256(dest), "git_commit": git_commit(),
    }
    info["returns"]["mean"] = info["returns"]["stochastic"]["mean"]  # the behaviour samples actions
    dest.with_suffix(".json").write_text(json.dumps(info, indent=2))
    return info


def plot_learning_curve(rows: list[dict], path: Path, *, episodes: int, title: str) -> None:
    """Evaluation returns (stochastic and deterministic policy) against environment steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [float(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label in ("stochastic", "deterministic"):
        ax.plot(steps, [float(r[f"return_{label}"]) for r in rows], label=f"{label} policy")
    ax.set_xlabel("environment steps")
    ax.set_ylabel(f"mean return ({episodes} episodes)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
