"""Why PEARL does not adapt on the point robot: a diagnostic (docs/studies/meta-curves/README.md).

Trains PEARL on ``meta/point-robot-v0`` with the given settings and, every ``--every`` iterations,
prints the normalised trial return on 20 held-out trials (episode 1 with z from the prior, episode 2
from the posterior of episode 1), and a probe of the encoder: the R^2 of a linear regression of the
training tasks' goals on the posterior mean computed from 20 and from 100 random transitions of each
task's buffer, and from the 20 transitions of a held-out trial's first episode (50 trials). With ``--oracle`` the learned encoder is replaced by an exact one: the goal solved from
the context by least squares (the reward is minus the distance to the goal, so every transition's
s' and r constrain it), written into the first two latent coordinates with variance 1e-4. That
separates the two halves of PEARL: how well the inference network identifies the task, and how well
SAC acts on a z that identifies it.

    python docs/studies/meta-curves/pearl_probe.py '{"hidden": [64, 64], "batch_size": 64, "updates_per_iteration": 500, "init_alpha": 0.01}' --iterations 25 --every 5
    python docs/studies/meta-curves/pearl_probe.py '{...}' --oracle
"""
from __future__ import annotations

import argparse
import json
import time

import gymnasium as gym
import numpy as np
import torch

import offbench.envs.meta  # noqa: F401 - registers the ids
from baselines.meta.pearl import PEARLConfig, PEARLTrainer
from offbench.envs.meta.benchmarks import EVAL_TASK_SEED, eval_tasks, get_benchmark

BENCHMARK = "meta/point-robot-v0"


def exact_posterior(latent_dim: int):
    """q(z | c) that knows how the point robot's reward is made: the goal g from ||s'_j - g||^2 = r_j^2
    (differences of the equations are linear in g), solved by least squares per task."""
    def posterior(context):
        if context is None or context.shape[-2] == 0:
            shape = (1 if context is None else context.shape[0], latent_dim)
            return torch.zeros(shape), torch.ones(shape)
        c = context.double()
        s2, r = c[..., 5:7], c[..., 4]  # a row is s (2), a (2), r (1), s' (2)
        a = 2 * (s2[..., 1:, :] - s2[..., :1, :])
        y = (s2[..., 1:, :] ** 2).sum(-1) - (s2[..., :1, :] ** 2).sum(-1) - r[..., 1:] ** 2 + r[..., :1] ** 2
        goal = torch.linalg.lstsq(a, y[..., None]).solution[..., 0]
        mean = torch.zeros(c.shape[0], latent_dim)
        mean[:, :2] = goal.float()
        return mean, torch.full_like(mean, 1e-4)
    return posterior


def goal_r2(trainer: PEARLTrainer, transitions: int, draws: int = 5) -> float:
    """R^2 of goals regressed (linear, with intercept) on posterior means from random context."""
    goals = np.array([t["goal"] for t in trainer.tasks])
    rng = np.random.default_rng(0)
    x, y = [], []
    for i, buffer in enumerate(trainer.buffers):
        if len(buffer) < transitions:
            continue
        for _ in range(draws):
            rows = np.stack([buffer[j] for j in rng.choice(len(buffer), transitions, replace=False)])
            with torch.no_grad():
                mean, _ = trainer.agent.posterior(torch.as_tensor(rows)[None])
            x.append(np.r_[mean[0].numpy(), 1.0])
            y.append(goals[i])
    x, y = np.array(x), np.array(y)
    w = np.linalg.lstsq(x, y, rcond=None)[0]
    return float(1 - ((x @ w - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def trial_goal_r2(trainer: PEARLTrainer, tasks: list[dict]) -> float:
    """The same R^2, with the posterior mean of what a trial's second episode conditions on: the 20
    transitions of episode 1, played with z from the prior and deterministic actions."""
    goals = np.array([t["goal"] for t in tasks])
    agent = trainer.agent
    prior_z = lambda rows: agent.sample_z(*agent.posterior(None))[0]  # noqa: E731
    x = []
    stream, agent.generator = agent.generator, torch.Generator().manual_seed(EVAL_TASK_SEED)  # training untouched
    try:
        for i, task in enumerate(tasks):
            rows, _ = trainer.play(task, prior_z, deterministic=True, seed=EVAL_TASK_SEED + 1000 * i)
            with torch.no_grad():
                mean, _ = agent.posterior(torch.as_tensor(np.stack(rows))[None])
            x.append(np.r_[mean[0].numpy(), 1.0])
    finally:
        agent.generator = stream
    x = np.array(x)
    w = np.linalg.lstsq(x, goals, rcond=None)[0]
    return float(1 - ((x @ w - goals) ** 2).sum() / ((goals - goals.mean(0)) ** 2).sum())


def use_episode_context(trainer: PEARLTrainer) -> None:
    """Train the encoder on what a trial gives it: each task's context batch becomes the transitions
    of one of its recent episodes (every point-robot episode is 20 steps, so the buffer is a sequence
    of 20-row episodes), instead of ``context_batch`` random rows of its recent transitions."""
    from offbench.envs.meta.point_robot import EPISODE_LENGTH

    batch = trainer._batch

    def episode_batch(task: int, size: int, recent: bool) -> np.ndarray:
        if not recent:
            return batch(task, size, recent)
        rows = trainer.buffers[task]
        episodes = len(rows) // EPISODE_LENGTH
        window = max(1, min(episodes, trainer.config.context_window // EPISODE_LENGTH))
        e = episodes - 1 - int(trainer.rng.integers(0, window))
        return np.stack(rows[e * EPISODE_LENGTH:(e + 1) * EPISODE_LENGTH])

    trainer._batch = episode_batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("settings", help="PEARLConfig fields as JSON")
    p.add_argument("--iterations", type=int, default=25)
    p.add_argument("--every", type=int, default=5)
    p.add_argument("--oracle", action="store_true", help="replace the encoder by the exact posterior")
    p.add_argument("--episode-context", action="store_true", help="train the encoder on one recent episode per task")
    args = p.parse_args()
    torch.set_num_threads(1)
    benchmark = get_benchmark(BENCHMARK)
    settings = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.settings).items()}
    config = PEARLConfig(**settings)
    trainer = PEARLTrainer(lambda: gym.make(benchmark.env_id, disable_env_checker=True), config, seed=0)
    if args.oracle:
        trainer.agent.posterior = exact_posterior(config.latent_dim)
    if args.episode_context:
        use_episode_context(trainer)
    tasks = eval_tasks(benchmark, 20)
    start = time.time()
    for iteration in range(1, args.iterations + 1):
        stats = trainer.iterate()
        if iteration % args.every:
            continue
        episodes = trainer.adapt_and_evaluate(tasks, 2, seed=EVAL_TASK_SEED)
        row = {"iteration": iteration, "seconds": round(time.time() - start, 1),
               "normalized_score": round(float(benchmark.normalise(episodes.sum(1), 20).mean()), 2),
               "episode_1": round(float(episodes[:, 0].mean()), 3), "episode_2": round(float(episodes[:, 1].mean()), 3),
               "alpha": round(stats["alpha"], 5), "kl": round(stats["kl"], 3)}
        if not args.oracle:
            row.update(goal_r2_20=round(goal_r2(trainer, 20), 3), goal_r2_100=round(goal_r2(trainer, 100), 3),
                       goal_r2_episode_1=round(trial_goal_r2(trainer, eval_tasks(benchmark, 50)), 3))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
