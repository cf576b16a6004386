"""Task-grouped batches for offline meta-RL (``baselines/meta/context_iql.py``): per batch,
``tasks`` tasks of a dataset that records ``task_id`` (``offbench.data.meta_generation``), and for
each an RL batch and a *context* batch drawn independently from that task's transitions.

The context rows are ``[s, a, r, s']`` (actions one-hot for a discrete action space), what an
inference network reads; the RL batch is the usual transitions. Seeded through ``generator`` (a
``torch.Generator``), so ``offbench.train.fit`` checkpoints and resumes the stream exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from offbench.data.dataset import Dataset
from offbench.errors import OffbenchError


@dataclass
class TaskBatch:
    """Fields ``[T, B, ...]`` (T tasks); ``context`` ``[T, C, 2d + a + 1]``; ``task_ids`` ``[T]``."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_observations: torch.Tensor
    terminations: torch.Tensor
    context: torch.Tensor
    task_ids: torch.Tensor


def context_rows(observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_observations: np.ndarray,
                 action_space: gym.Space) -> np.ndarray:
    """``[N, 2d + a + 1]`` float32 rows ``[s, a, r, s']`` (one-hot ``a`` for a Discrete space)."""
    n = len(rewards)
    if isinstance(action_space, gym.spaces.Discrete):
        a = np.eye(int(action_space.n), dtype=np.float32)[np.asarray(actions, np.int64).reshape(n)]
    else:
        a = np.asarray(actions, np.float32).reshape(n, -1)
    return np.concatenate([np.asarray(observations, np.float32).reshape(n, -1), a,
                           np.asarray(rewards, np.float32).reshape(n, 1),
                           np.asarray(next_observations, np.float32).reshape(n, -1)], 1)


class TaskBatchSampler:
    def __init__(self, dataset: Dataset, *, tasks: int, batch_per_task: int, context_size: int, seed: int = 0,
                 device: str | torch.device = "cpu"):
        if "task_id" not in dataset.step_paths:
            raise OffbenchError(f"{dataset.metadata.dataset_id}: no task_id array; offline meta-RL needs per-task "
                                "data (datasets meta/<family>/<name>-v0)")
        if isinstance(dataset.observation_space, gym.spaces.Dict):
            raise OffbenchError("task batches take flat observations")
        self.device = torch.device(device)
        task_ids = dataset.extra("task_id").astype(np.int64)
        self.task_values = np.unique(task_ids)
        self.rows = [np.flatnonzero(task_ids == t) for t in self.task_values]
        self.tasks = min(int(tasks), len(self.rows))
        self.batch_per_task, self.context_size = int(batch_per_task), int(context_size)
        obs, next_obs = dataset.observations.astype(np.float32), dataset.next_observations.astype(np.float32)
        self._obs = torch.as_tensor(obs.reshape(len(obs), -1), device=self.device)
        self._next = torch.as_tensor(next_obs.reshape(len(next_obs), -1), device=self.device)
        actions = dataset.actions
        self._actions = torch.as_tensor(actions, device=self.device)
        self._rewards = torch.as_tensor(dataset.rewards.astype(np.float32), device=self.device)
        self._terms = torch.as_tensor(dataset.terminations.astype(np.float32), device=self.device)
        self._context = torch.as_tensor(context_rows(obs, actions, dataset.rewards, next_obs, dataset.action_space),
                                        device=self.device)
        self._rows = [torch.as_tensor(r, device=self.device) for r in self.rows]
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))

    def _draw(self, rows: torch.Tensor, n: int) -> torch.Tensor:
        return rows[torch.randint(len(rows), (n,), generator=self.generator, device=self.device)]

    def sample(self) -> TaskBatch:
        chosen = torch.randperm(len(self._rows), generator=self.generator, device=self.device)[: self.tasks]
        rl = torch.stack([self._draw(self._rows[i], self.batch_per_task) for i in chosen.tolist()])
        ctx = torch.stack([self._draw(self._rows[i], self.context_size) for i in chosen.tolist()])
        return TaskBatch(self._obs[rl], self._actions[rl], self._rewards[rl], self._next[rl], self._terms[rl],
                         self._context[ctx], torch.as_tensor(self.task_values[chosen.cpu().numpy()]))
