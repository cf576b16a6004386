"""The headline claim on StitchGrid's medium data (REFERENCE §3: value-based offline RL stitches,
behaviour cloning does not).

``lite/stitchgrid/medium-v0`` holds route A (s1 -> s5 -> s3, then wait) from s1 starts and route B
(s7 -> s5 -> s9, the goal) from s7 starts, each with 10% uniform noise. The optimum from s1,
s1 -SE-> s5 -SE-> s9 (return -0.1 + 1 = 0.9), joins the first half of route A to the second half of
route B. Each algorithm is trained with ``offbench.train.train_run`` (small nets, 1,000 steps),
reloaded from its checkpoint, and its deterministic policy is rolled out from s1.

- discrete IQL and discrete CQL follow s1 -> s5 -> s9, with the actions of ``value_iteration``'s
  optimal policy at s1 and s5, and score the optimum (0.9, normalised 100) on the task's starts;
- BC copies the majority action at s5 (route A's NE) and never reaches s9 from s1;
- %BC (both definitions) *does* reach s9 from s1 on this data, and not by stitching: the 10% noise
  makes about 1% of the s1 episodes follow s1 -> s5 -> s9 whole, those episodes have the best
  return, and the filter keeps them (asserted on the filtered data below). %BC copies them.

- Decision Transformer conditioned on the data's best return (0.9) also reaches s9 from s1, and
  follows route A when conditioned on -1.0 (see its entry in ``CASES``).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import offbench  # noqa: F401  (registers offbench/StitchGrid-v0)
from offbench.checkpoint import load_checkpoint
from offbench.data.compose import percent_bc
from offbench.data.dataset import read_dataset
from offbench.data.recipes import build_dataset
from offbench.envs.gridworld import GOAL, NE, S1, S3, S5, S7, S9, SE, default_mdp, expected_return, value_iteration
from offbench.train import TrainConfig, build_algorithm, train_run

STITCHES = "stitches"  # s1 -> s5 -> s9, optimal actions, optimal score
FOLLOWS_ROUTE_A = "follows route A"  # imitates the majority at s5: never reaches s9 from s1
COPIES_WHOLE_OPTIMAL_EPISODES = "copies whole optimal episodes"  # reaches s9 by imitating filtered data

SMALL = {"hidden": [32, 32]}
CASES = [
    pytest.param("iql", {**SMALL, "lr": 1e-3, "reward_scaling": "none", "beta": 10.0}, STITCHES, id="iql"),
    pytest.param("cql", {**SMALL, "critic_lr": 1e-3, "alpha": 0.1}, STITCHES, id="cql"),
    pytest.param("bc", {**SMALL, "lr": 1e-3}, FOLLOWS_ROUTE_A, id="bc"),
    pytest.param("percent_bc", {**SMALL, "lr": 1e-3, "definition": "top_episodes_by_count"},
                 COPIES_WHOLE_OPTIMAL_EPISODES, id="percent_bc-by_count"),
    pytest.param("percent_bc", {**SMALL, "lr": 1e-3, "definition": "top_episodes_by_timesteps"},
                 COPIES_WHOLE_OPTIMAL_EPISODES, id="percent_bc-by_timesteps"),
    # Decision Transformer, conditioned on the best return in the data (0.9): after s1 -SE-> s5 the
    # requested return-to-go is 1.0, and in this data a return-to-go of 1.0 at s5 only ever precedes
    # SE into s9, so DT reaches s9 from s1 (measured with 3 seeds, and also after removing the 15
    # lucky whole s1 -> s9 episodes). REFERENCE §3's "DT does not stitch" is not shown by this data.
    pytest.param("dt", {"lr": 3e-3, "warmup_steps": 10, "embed_dim": 32, "layers": 1, "context_length": 5},
                 "return-conditioned", id="dt"),
]
# Why the settings above (all else default):
# - IQL: rewards as stored and beta 10 (the paper's AntMaze temperature). With the default
#   return-range scaling (x526 here) IQL stitches too (measured: 2,000 steps at lr 1e-3, or 1,000 at
#   lr 3e-3), but Q needs longer to reach that scale; unscaled with beta 3, exp(3 A) barely separates
#   SE (A ~ +0.1) from NE (A ~ -0.1) at s5, where the data holds NE twice as often.
# - CQL: alpha 0.1. The regulariser's fixed point is Q = B Q - alpha (softmax Q - mu) / mu, mu the
#   data's action frequencies; with rewards O(1) and mu(s5) = 2/3 NE vs 1/3 SE, alpha = 1 already
#   outweighs the 0.22 gap between Q*(s5, SE) and Q*(s5, NE) and CQL imitates (it was measured so).
TRAIN = TrainConfig(steps=1000, batch_size=128, eval_every=1000, eval_episodes=30, final_eval_episodes=30,
                    checkpoint_every=1000, log_every=500)


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    """The medium data, built once for this module in its own OFFBENCH_HOME (about 1 s)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OFFBENCH_HOME", str(tmp_path_factory.mktemp("offbench_home")))
        mp.delenv("OFFBENCH_CATALOGUE", raising=False)
        return read_dataset(build_dataset("lite/stitchgrid/medium-v0", progress=False))


@pytest.fixture(scope="module")
def optimal_actions():
    mdp = default_mdp()
    return value_iteration(mdp.P, mdp.R, mdp.gamma, mdp.terminal)[2]


def route_from(algorithm, start: int) -> tuple[list[int], float]:
    """Cells visited and undiscounted return of one episode of the deterministic policy from ``start``
    (Markov ``act`` or a history-based ``make_eval_policy()``)."""
    algorithm.eval()
    env = gym.make("offbench/StitchGrid-v0")
    obs, _ = env.reset(seed=0, options={"state": start})
    episodic = algorithm.make_eval_policy() if hasattr(algorithm, "make_eval_policy") else None
    if episodic is not None:
        episodic.reset(0)
    cells, total, done = [start], 0.0, False
    while not done:
        batch = np.asarray([obs])
        action = episodic.act(batch, [0])[0] if episodic is not None else algorithm.act(batch)[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        if episodic is not None:
            episodic.observe([0], np.asarray([reward]))
        cells.append(int(obs))
        total += reward
        done = terminated or truncated
    return cells, total


def test_the_optimum_is_the_stitched_route(optimal_actions):
    assert optimal_actions[S1] == SE and optimal_actions[S5] == SE and optimal_actions[S7] == NE
    table = np.eye(9)[optimal_actions]
    assert expected_return(table, start_distribution=np.eye(9)[S1]) == pytest.approx(0.9, abs=1e-12)


@pytest.mark.parametrize("name,overrides,expectation", CASES)
def test_offline_rl_stitches_and_imitation_does_not(medium, optimal_actions, tmp_path, name, overrides,
                                                    expectation):
    summary = train_run(name, medium, overrides, TRAIN, tmp_path / name, progress=False)
    algorithm = build_algorithm(name, medium, overrides, seed=TRAIN.seed)
    algorithm.prepare(medium)  # as `offbench eval` does: sizes data-dependent parts before loading
    load_checkpoint(tmp_path / name / "checkpoint", modules={"algorithm": algorithm})  # what was saved is judged
    cells, ret = route_from(algorithm, S1)

    if expectation == STITCHES:
        assert cells == [S1, S5, S9], cells
        assert ret == pytest.approx(0.9, abs=1e-6)
        greedy = algorithm.act(np.array([S1, S5]))
        np.testing.assert_array_equal(greedy, optimal_actions[[S1, S5]])
        # The evaluation of the training run (starts s1 and s7): every episode scores the optimum.
        np.testing.assert_allclose(summary["returns"], 0.9, atol=1e-6)
        assert summary["score"] == pytest.approx(100.0, abs=1e-6)
    elif expectation == FOLLOWS_ROUTE_A:
        assert GOAL not in cells and cells[:3] == [S1, S5, S3], cells
        assert ret == pytest.approx(-1.0, abs=1e-6)  # ten steps of -0.1: waits at s3 until the time limit
        assert summary["score"] < 0  # below the uniform-random policy
    elif expectation == "return-conditioned":
        assert cells == [S1, S5, S9], cells
        assert ret == pytest.approx(0.9, abs=1e-6)
        # Conditioned on route A's return instead, it follows route A: the behaviour is set by the target.
        algorithm.best_return.fill_(-1.0)
        low_cells, low_ret = route_from(algorithm, S1)
        assert low_cells[:3] == [S1, S5, S3] and GOAL not in low_cells and low_ret == pytest.approx(-1.0, abs=1e-6)
    elif expectation == COPIES_WHOLE_OPTIMAL_EPISODES:
        assert cells == [S1, S5, S9], cells
        kept = percent_bc(medium, algorithm.config.fraction, algorithm.config.definition)
        from_s1 = [e for e in kept.episodes() if int(e.observations[0]) == S1]
        assert from_s1, "the filter kept no s1 episode"
        # Every kept s1 episode starts with SE; the best of them are the whole optimum, made by the noise.
        assert all(int(e.actions[0]) == SE for e in from_s1)
        assert any(e.observations.tolist() == [S1, S5, S9] for e in from_s1)
        assert len(from_s1) < 0.1 * len(list(kept.episodes()))  # a few lucky episodes among route-B ones
    else:  # pragma: no cover
        raise AssertionError(f"unknown expectation {expectation!r}")


def test_medium_data_alone_never_goes_from_s1_to_s9_on_route_a(medium):
    """The unfiltered data: s1 episodes reach s9 only by noise (about 1%), so copying the data's
    majority cannot reach the goal from s1, while both halves of the stitched route are well covered."""
    starts = medium.episode_starts
    first = medium.observations[starts]
    success = medium.terminations[starts + medium.episode_lengths - 1]
    assert success[first == S1].mean() < 0.05 and success[first == S7].mean() > 0.9
