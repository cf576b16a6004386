"""What a trained continuous CQL critic holds, one JSON line per run (docs/skills.md, the ExORL table's CQL
column). For 2048 of the run's data transitions (fixed draw, not at an episode's end):

- ``q_data``: Q(s, a) at the data's actions (mean of the twin critics), the training log's ``q_data_mean``;
- ``q_actor``: Q at the actor's deterministic action; ``q_grid_mean`` / ``q_grid_max``: Q over a 40 x 40
  midpoint grid of the action box;
- ``gap_exact``: the conservative gap log integral exp Q(s, a) da - Q(s, a_data) with the integral on that
  grid; ``gap_is``: the same gap as training estimates it (appendix F's importance sampling over
  3N proposals, ``CQL.importance_sampled_logsumexp``), biased low because the log of a sample mean
  underestimates the log of the mean;
- ``td_target``: r + gamma * (1 - terminated) * min_twin Qtarget(s', a'), a' ~ pi(.|s'), the critic's TD target;
- ``backup_excess``: that backup's value at s' minus Q at the data's next action, E[min Qtarget(s', a')] -
  E[Q(s', a'_data)]; a constant excess delta held through every backup sustains a level
  gamma * delta / (1 - gamma) above what the rewards give (``implied_level``).

    python scripts/cql_critic_probe.py ~/.cache/offbench/results/explore-cql/runs/cql/*/seed0

Only for action boxes of one or two dimensions (the grid).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from offbench.errors import OffbenchError
from offbench.train import load_run

GRID = 40


def action_grid(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Midpoints of a GRID^d grid over the box [low, high] (d <= 2) and the log of one cell's volume."""
    if len(low) > 2:
        raise OffbenchError(f"the probe integrates Q on a grid; the action box has {len(low)} dimensions (at most 2)")
    axes = [lo + (hi - lo) * (torch.arange(GRID) + 0.5) / GRID for lo, hi in zip(low.tolist(), high.tolist())]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(low))
    return grid, float(torch.log((high - low) / GRID).sum())


def probe(run: Path, samples: int = 2048, seed: int = 0) -> dict:
    """One JSON line's fields for a run directory, at its latest checkpoint."""
    algorithm, data, step = load_run(run)
    if getattr(algorithm, "discrete", True) or not hasattr(algorithm, "importance_sampled_logsumexp"):
        raise OffbenchError(f"{run} is not a continuous-action CQL run")
    return {"run": str(run), "dataset": data.metadata.dataset_id, "step": step,
            **critic_summary(algorithm, data, samples, seed)}


def probe_indices(data, samples: int = 2048, seed: int = 0) -> np.ndarray:
    """The transitions probed: a fixed draw of steps that are not an episode's last, so that step i + 1
    holds the data's next action."""
    ends = data.episode_starts + data.episode_lengths - 1
    candidates = np.setdiff1d(np.arange(len(data.actions)), ends)
    return np.sort(np.random.default_rng(seed).choice(candidates, min(samples, len(candidates)), replace=False))


@torch.no_grad()
def critic_summary(algorithm, data, samples: int = 2048, seed: int = 0) -> dict:
    """The module docstring's fields for a continuous CQL ``algorithm`` and the dataset it trained on."""
    idx = probe_indices(data, samples, seed)
    obs, next_obs = (algorithm.encoder(torch.as_tensor(data.observations[i])) for i in (idx, idx + 1))
    action, next_action = (torch.as_tensor(data.actions[i], dtype=torch.float32) for i in (idx, idx + 1))
    critic = algorithm.critic

    def q_on(features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:  # [critics, B, M]
        b, m = actions.shape[:2]
        flat = critic(features.unsqueeze(1).expand(-1, m, -1).reshape(b * m, -1), actions.reshape(b * m, -1))
        return flat.view(-1, b, m)

    q_data = critic(obs, action)  # [critics, B]
    grid, log_cell = action_grid(algorithm.action_low, algorithm.action_high)
    q_grid = q_on(obs, grid.expand(len(idx), -1, -1))
    sampled, log_density = algorithm.sample_actions(obs, next_obs)
    gap_is = algorithm.importance_sampled_logsumexp(q_on(obs, sampled), log_density) - q_data
    gap_exact = torch.logsumexp(q_grid, -1) + log_cell - q_data
    actor_next, _ = algorithm.actor(next_obs, generator=torch.Generator().manual_seed(seed))
    backup = algorithm.critic_target(next_obs, actor_next).min(0).values
    gamma = algorithm.config.gamma
    rewards = torch.as_tensor(data.rewards[idx], dtype=torch.float32)
    not_done = 1.0 - torch.as_tensor(data.terminations[idx], dtype=torch.float32)
    excess = float((backup - critic(next_obs, next_action).mean(0)).mean())

    def mean(x: torch.Tensor) -> float:
        return round(float(x.mean()), 3)

    return {"q_data": mean(q_data), "q_actor": mean(critic(obs, algorithm.actor(obs, deterministic=True)[0])),
            "q_grid_mean": mean(q_grid), "q_grid_max": mean(q_grid.max(-1).values),
            "gap_exact": mean(gap_exact), "gap_is": mean(gap_is),
            "td_target": mean(rewards + gamma * not_done * backup), "reward_mean": mean(rewards),
            "backup_excess": round(excess, 3), "implied_level": round(gamma * excess / (1 - gamma), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="CQL run directories (offbench train / reproduce)")
    parser.add_argument("--samples", type=int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for run in args.runs:
        print(json.dumps(probe(run, args.samples)), flush=True)


if __name__ == "__main__":
    try:
        main()
    except OffbenchError as error:
        raise SystemExit(f"error: {error}")
