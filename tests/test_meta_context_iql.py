"""Context-conditioned IQL for offline meta-RL (baselines/meta/context_iql.py): task-grouped batches,
gradient routing (only the critics and the KL train the encoder), the online context the evaluation
policy builds, exact resume on the fit loop, and both action kinds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from baselines.meta.context_iql import ContextIQL, ContextIQLConfig, OnlineContextPolicy
from offbench.data.dataset import read_dataset
from offbench.data.meta_generation import write_meta_dataset
from offbench.data.task_batches import TaskBatchSampler
from offbench.errors import OffbenchError

TINY = {"hidden": [16], "latent_dim": 2, "tasks_per_batch": 2, "context_size": 4}


def _tiny(factory, family: str, behaviour: str, dataset_id: str, references: dict):
    """Three tasks x two episodes of a meta_tasks recipe."""
    recipe = dict(kind="meta_tasks", family=family, tasks=3, task_seed=0, episodes_per_task=2, behaviour=behaviour, seed=0)
    path = factory.mktemp("meta") / "data.hdf5"
    return read_dataset(write_meta_dataset(path, recipe, dataset_id=dataset_id, reference_scores=references))


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    return _tiny(tmp_path_factory, "offbench/GridNavi-v0", "mixed", "meta/gridnavi/mixed-v0",
                 {"random": -1.165, "expert": 11.07})


@pytest.fixture(scope="module")
def point(tmp_path_factory):
    return _tiny(tmp_path_factory, "offbench/PointRobot-v0", "expert", "meta/point-robot/expert-v0",
                 {"random": -21.36, "expert": -5.18})


def test_batches_keep_tasks_apart(grid):
    sampler = TaskBatchSampler(grid, tasks=3, batch_per_task=16, context_size=8, seed=0)
    batch = sampler.sample()
    goals = grid.extra("infos/task/goal")
    task_of_row = grid.extra("task_id")
    for t, task in enumerate(batch.task_ids.tolist()):
        goal = goals[np.flatnonzero(task_of_row == task)[0]]
        # every context row of task t comes from that task: its reward is +1 exactly at the goal cell
        ctx = batch.context[t].numpy()
        at_goal = np.all(ctx[:, -2:] == goal, axis=1)
        assert np.array_equal(ctx[:, 2 + 5] == 1.0, at_goal)


def test_the_actor_never_trains_the_encoder(grid):
    algo = ContextIQL(grid.observation_space, grid.action_space, ContextIQLConfig(**{**TINY, "hidden": (16,)}), seed=0)
    batch = algo.make_sampler(grid, 8, 0).sample()
    mean, var = algo.posterior(batch.context)
    algo.optim.zero_grad()
    x = torch.cat([batch.observations.reshape(-1, 2), torch.zeros(8, 2)], -1)
    (-algo.policy.log_prob(x, batch.actions.reshape(-1)).mean()).backward()
    assert all(p.grad is None for p in algo.encoder.parameters())
    before = [p.detach().clone() for p in algo.encoder.parameters()]
    algo.update(batch)
    assert any(not torch.equal(a, b) for a, b in zip(before, algo.encoder.parameters()))  # via L_Q and the KL


def test_the_evaluation_policy_reads_its_own_transitions(grid):
    algo = ContextIQL(grid.observation_space, grid.action_space, ContextIQLConfig(**{**TINY, "hidden": (16,)}), seed=0)
    policy = algo.make_eval_policy()
    assert isinstance(policy, OnlineContextPolicy)
    policy.reset(0)
    obs = np.array([[0.0, 0.0]], np.float32)
    a0 = policy.act(obs, [0])
    policy.observe([0], np.array([-0.1]))
    policy.act(np.array([[1.0, 0.0]], np.float32), [0])
    row = policy.rows[0][0]
    assert np.allclose(row[:2], [0, 0]) and row[2 + int(a0[0])] == 1.0 and row[7] == pytest.approx(-0.1)
    assert np.allclose(row[8:], [1, 0])
    policy.reset(0)
    assert policy.rows[0] == []


@pytest.mark.parametrize("which", ["grid", "point"])
def test_a_killed_run_resumes_to_identical_parameters(which, grid, point, tmp_path):
    from offbench.train import TrainConfig
    from tests.conftest import kill_and_resume

    dataset = grid if which == "grid" else point
    config = TrainConfig(steps=12, batch_size=8, eval_every=12, eval_episodes=2, final_eval_episodes=2,
                         checkpoint_every=4, log_every=6)
    kill_and_resume("context_iql", dataset, TINY, config, tmp_path, kill_at=10, checkpoint_at=8)


def test_data_without_tasks_is_refused(grid):
    from dataclasses import replace

    from offbench.data.dataset import Dataset

    untasked = Dataset({k: v for k, v in grid.arrays.items() if k != "task_id"}, replace(grid.metadata, checksums={}))
    with pytest.raises(OffbenchError, match="no task_id"):
        TaskBatchSampler(untasked, tasks=2, batch_per_task=4, context_size=4)
