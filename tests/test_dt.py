"""Decision Transformer and the shared causal transformer: masking, the loss, the evaluation
policy's history bookkeeping, learning on the gridworld, exact resume, and its (non-)stitching."""
from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import offbench.envs  # noqa: F401  (registers offbench/StitchGrid-v0)
from baselines.dt import DTConfig
from offbench import load_dataset
from offbench.cli import main
from offbench.data.recipes import build_dataset
from offbench.data.sampling import SegmentBatch
from offbench.envs.gridworld import S1, S7, cell_name
from offbench.errors import OffbenchError
from offbench.train import TrainConfig, build_algorithm, fit, train_run
from offbench.transformer import CausalTransformer, causal_attention_mask
from tests.conftest import kill_and_resume, write_toy

# A small DT for fast tests (the defaults are the paper's: K 20, 3 layers, embedding 128).
TINY = {"embed_dim": 16, "layers": 2, "heads": 2, "context_length": 3, "dropout": 0.1}
# The gridworld runs: short context (episodes are 1-10 steps), fast lr, almost no warm-up.
GRID = {"lr": 3e-3, "warmup_steps": 10, "embed_dim": 32, "layers": 1, "context_length": 5}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as training runs use (more threads on a busy 2-core machine are far slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------- the causal transformer
def test_causal_mask_future_inputs_do_not_change_past_outputs():
    torch.manual_seed(0)
    net = CausalTransformer(dim=16, layers=2, heads=2, dropout=0.1).eval()
    x = torch.randn(3, 7, 16)
    y = net(x)
    for t in range(7):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn(3, 6 - t, 16)  # everything after t
        y2 = net(changed)
        torch.testing.assert_close(y2[:, :t + 1], y[:, :t + 1], rtol=0, atol=1e-6)
        if t < 6:
            assert not torch.allclose(y2[:, t + 1:], y[:, t + 1:])  # ... and the future does see them
    # The explicit-mask path (all tokens real) is the is_causal path.
    torch.testing.assert_close(net(x, torch.ones(3, 7)), y, rtol=0, atol=1e-6)


def test_padding_positions_do_not_affect_real_positions():
    torch.manual_seed(1)
    net = CausalTransformer(dim=16, layers=2, heads=2, dropout=0.0).eval()
    pad = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1], [1] * 7])  # left padding, as in DT
    x = torch.randn(3, 7, 16)
    y = net(x, pad)
    assert torch.isfinite(y).all()  # a padding query attends to itself only: no empty softmax rows
    noisy = torch.where(pad.bool().unsqueeze(-1), x, 100 * torch.randn(3, 7, 16))
    torch.testing.assert_close(net(noisy, pad)[pad.bool()], y[pad.bool()], rtol=0, atol=1e-5)
    # With no positional encoding, a padded row's real part equals the unpadded sequence alone.
    torch.testing.assert_close(y[0, 3:], net(x[:1, 3:])[0], rtol=0, atol=1e-5)
    mask = causal_attention_mask(pad, 7)
    assert mask.shape == (3, 1, 7, 7)
    assert not mask[0, 0, 4, :3].any() and mask[0, 0, 4, 3:5].all() and not mask[0, 0, 4, 5:].any()
    assert mask[0, 0, 1].tolist() == [False, True, False, False, False, False, False]  # padding: itself


# ---------------------------------------------------------------------- DT model and loss
@pytest.fixture
def grid(monkeypatch):
    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)

    def get(name):
        build_dataset(f"lite/stitchgrid/{name}", progress=False)
        return load_dataset(f"lite/stitchgrid/{name}")
    return get


@pytest.fixture
def toy(tmp_path):
    """Box observations (3), Box actions (2, bounds +-1), episodes of 5, 3 and 4 steps."""
    return load_dataset(write_toy(tmp_path / "toy.hdf5"))


def make_dt(dataset, **overrides):
    dt = build_algorithm("dt", dataset, {**TINY, **overrides}, seed=0)
    dt.prepare(dataset)
    return dt


def test_prepare_records_data_settings_in_buffers(toy):
    dt = make_dt(toy)
    returns = toy.episode_returns()
    assert int(dt.max_episode_steps) == 5 == dt.embed_timestep.num_embeddings  # longest episode
    assert float(dt.best_return) == pytest.approx(returns.max())
    assert float(dt.return_scale) == pytest.approx(np.abs(returns).max())  # default: largest |return|
    assert make_dt(toy, target_return=7.5).make_eval_policy().target_return == 7.5
    assert dt.make_eval_policy().target_return == pytest.approx(returns.max())
    state = dt.state_dict()
    assert {"max_episode_steps", "best_return", "return_scale", "updates", "embed_timestep.weight"} <= set(state)
    fixed = make_dt(toy, return_scale=1000.0, max_episode_steps=50)
    assert float(fixed.return_scale) == 1000.0 and fixed.embed_timestep.num_embeddings == 50
    unprepared = build_algorithm("dt", toy, TINY, seed=0)
    with pytest.raises(OffbenchError, match="prepare"):
        unprepared.make_sampler(toy, 4, 0)


def test_dt_prediction_sees_only_the_past_and_ignores_padding(toy):
    dt = make_dt(toy).eval()
    g = torch.Generator().manual_seed(0)
    rtg, obs, act = torch.randn(2, 3, generator=g), torch.randn(2, 3, 3, generator=g), torch.rand(2, 3, 2, generator=g)
    steps, mask = torch.tensor([[0, 0, 1], [2, 3, 4]]), torch.tensor([[0.0, 1, 1], [1, 1, 1]])
    pred = dt(rtg, obs, act, steps, mask)
    assert pred.shape == (2, 3, 2) and pred.abs().max() <= 1.0
    # a_t is not visible to its own prediction, but to the next step's.
    act2 = act.clone()
    act2[:, 1] = -act2[:, 1]
    pred2 = dt(rtg, obs, act2, steps, mask)
    torch.testing.assert_close(pred2[:, :2], pred[:, :2], rtol=0, atol=1e-6)
    assert not torch.allclose(pred2[:, 2], pred[:, 2])
    # The return-to-go and state of step t are.
    rtg2 = rtg.clone()
    rtg2[:, 2] += 1
    pred3 = dt(rtg2, obs, act, steps, mask)
    torch.testing.assert_close(pred3[:, :2], pred[:, :2], rtol=0, atol=1e-6)
    assert not torch.allclose(pred3[:, 2], pred[:, 2])
    # Row 0's padded step 0 can hold anything.
    rtg4, obs4, act4, steps4 = rtg.clone(), obs.clone(), act.clone(), steps.clone()
    rtg4[0, 0], obs4[0, 0], act4[0, 0], steps4[0, 0] = 50.0, 50.0, 0.9, 4
    torch.testing.assert_close(dt(rtg4, obs4, act4, steps4, mask)[0, 1:], pred[0, 1:], rtol=0, atol=1e-5)


def test_loss_by_hand_continuous(toy):
    dt = make_dt(toy)
    with torch.no_grad():  # the head predicts tanh(atanh(0.5)) = 0.5 in every dimension
        dt.head.weight.zero_()
        dt.head.bias.fill_(math.atanh(0.5))
    actions = torch.tensor([[[100.0, 100.0], [1.0, 0.0], [0.5, -0.5]]])  # step 0 is padding
    batch = SegmentBatch(observations=torch.zeros(1, 3, 3), actions=actions, rewards=torch.zeros(1, 3),
                         returns_to_go=torch.zeros(1, 3), timesteps=torch.tensor([[0, 0, 1]]),
                         mask=torch.tensor([[0.0, 1.0, 1.0]]))
    # step 1: ((0.5-1)^2 + (0.5-0)^2) / 2 = 0.25; step 2: (0 + 1) / 2 = 0.5; mean over real steps 0.375.
    assert dt.loss(batch).item() == pytest.approx(0.375, abs=1e-6)


def test_loss_by_hand_discrete(grid):
    dt = make_dt(grid("expert-v0"), heads=1)
    with torch.no_grad():  # logits log(1), log(2), log(1), -inf...: probabilities 1/4, 1/2, 1/4, 0...
        dt.head.weight.zero_()
        dt.head.bias.copy_(torch.tensor([0.0, math.log(2), 0.0] + [-1e9] * 6))
    batch = SegmentBatch(observations=torch.tensor([[0, 0, 4]]), actions=torch.tensor([[5, 1, 0]]),
                         rewards=torch.zeros(1, 3), returns_to_go=torch.zeros(1, 3),
                         timesteps=torch.tensor([[0, 0, 1]]), mask=torch.tensor([[0.0, 1.0, 1.0]]))
    # real steps: -log(1/2) and -log(1/4); the padded action 5 (probability 0) is not counted.
    assert dt.loss(batch).item() == pytest.approx((math.log(2) + math.log(4)) / 2, abs=1e-6)


def test_warmup_clip_and_weight_decay_groups(toy):
    dt = make_dt(toy, lr=1e-3, warmup_steps=4, dropout=0.0)
    sampler = dt.make_sampler(toy, 8, seed=0)
    lrs = [dt.update(sampler.sample())["lr"] for _ in range(6)]
    np.testing.assert_allclose(lrs, [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    assert int(dt.updates) == 6
    decay, no_decay, timestep = dt.optim.param_groups
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0 and timestep["weight_decay"] == 0
    assert all(p.dim() == 2 for p in decay["params"]) and timestep["params"] == [dt.embed_timestep.weight]
    assert sum(len(g["params"]) for g in dt.optim.param_groups) == len(list(dt.parameters()))
    assert DTConfig().grad_clip == 0.25
    batch = sampler.sample()
    batch.actions.mul_(0).add_(1e3)  # a huge error: a huge gradient, clipped to norm 0.25 before the step
    metrics = dt.update(batch)
    assert metrics["grad_norm"] > 10  # the norm before clipping
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in dt.parameters() if p.grad is not None]))
    assert after.item() == pytest.approx(0.25, rel=1e-4)


# ---------------------------------------------------------------------- the evaluation policy
def test_eval_policy_history_across_two_slots(toy):
    dt = make_dt(toy, return_scale=2.0, target_return=10.0, context_length=3).train()  # dropout is on outside
    policy = dt.make_eval_policy()
    obs = lambda slot, t: np.array([slot, t, 0.5], dtype=np.float32)  # noqa: E731
    chosen = {0: [], 1: []}

    def step(slots, t_of, rewards):
        actions = policy.act(np.stack([obs(s, t_of[s]) for s in slots]), slots)
        assert actions.shape == (len(slots), 2) and actions.dtype == np.float32
        for s, a in zip(slots, actions):
            chosen[s].append(a)
        # Slots are independent: each slot alone gives the same action as in the batch.
        x = policy.inputs(slots)
        with torch.no_grad():
            alone = dt.eval()(x["returns_to_go"], x["observations"], x["actions"], x["timesteps"], x["mask"])
        dt.train()
        np.testing.assert_allclose(alone[:, -1].numpy(), actions, atol=1e-6)
        policy.observe(slots, np.array(rewards))

    policy.reset(0)
    policy.reset(1)
    step([0, 1], {0: 0, 1: 0}, [1.0, 2.0])
    x = policy.inputs([0, 1])
    np.testing.assert_allclose(x["mask"], [[0, 0, 1], [0, 0, 1]])
    np.testing.assert_allclose(x["returns_to_go"], [[0, 0, 5.0], [0, 0, 5.0]])  # 10 / return_scale 2
    np.testing.assert_array_equal(x["timesteps"], [[0, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(x["observations"][:, 2], [obs(0, 0), obs(1, 0)])
    assert (x["observations"][:, :2] == 0).all() and (x["actions"][:, :2] == 0).all()  # left padding

    step([0, 1], {0: 1, 1: 1}, [1.0, 2.0])
    x = policy.inputs([0, 1])
    np.testing.assert_allclose(x["returns_to_go"], [[0, 5.0, 4.5], [0, 5.0, 4.0]])  # 10-1, 10-2 over 2
    np.testing.assert_array_equal(x["timesteps"], [[0, 0, 1], [0, 0, 1]])
    np.testing.assert_allclose(x["actions"][0, 1:], np.stack(chosen[0]))
    np.testing.assert_allclose(x["actions"][1, 1:], np.stack(chosen[1]))

    # Slot 1's episode ends after 2 steps and a new one starts there; slot 0 runs on.
    policy.reset(1)
    chosen[1] = []
    step([0, 1], {0: 2, 1: 0}, [1.0, 3.0])
    x = policy.inputs([0, 1])
    np.testing.assert_allclose(x["mask"], [[1, 1, 1], [0, 0, 1]])
    np.testing.assert_allclose(x["returns_to_go"], [[5.0, 4.5, 4.0], [0, 0, 5.0]])
    np.testing.assert_array_equal(x["timesteps"], [[0, 1, 2], [0, 0, 0]])
    np.testing.assert_allclose(x["observations"][1], [np.zeros(3), np.zeros(3), obs(1, 0)])

    # Only slot 0 acts (as when another env has finished): its context is truncated to the last K = 3.
    before = {k: v.clone() for k, v in policy.inputs([1]).items()}
    step([0], {0: 3}, [0.5])
    x = policy.inputs([0])
    np.testing.assert_allclose(x["returns_to_go"], [[4.5, 4.0, 3.5]])  # (10 - 1 - 1 - 1) / 2 at step 3
    np.testing.assert_array_equal(x["timesteps"], [[1, 2, 3]])
    np.testing.assert_allclose(x["observations"][0], [obs(0, 1), obs(0, 2), obs(0, 3)])
    np.testing.assert_allclose(x["actions"][0], np.stack(chosen[0][1:4]))
    for key, value in policy.inputs([1]).items():  # slot 1 untouched
        torch.testing.assert_close(value, before[key])
    assert policy.histories[0].return_to_go == pytest.approx(10 - 3.5) and policy.histories[0].timestep == 4
    assert dt.training  # the policy switched dropout off only inside act()


def test_eval_policy_clamps_timesteps_beyond_the_table(toy):
    dt = make_dt(toy, context_length=2)
    policy = dt.make_eval_policy()
    policy.reset(0)
    for t in range(8):  # longer than the data's longest episode (5)
        action = policy.act(np.zeros((1, 3), np.float32), [0])
        policy.observe([0], np.zeros(1))
    assert np.isfinite(action).all() and list(policy.histories[0].timesteps) == [6, 7]


# ---------------------------------------------------------------------- learning
def test_discrete_dt_learns_the_gridworld_expert(grid, tmp_path):
    data = grid("expert-v0")
    summary = train_run("dt", data, {**GRID, "target_return": 0.9},
                        TrainConfig(steps=150, batch_size=64, eval_every=150, eval_episodes=20,
                                    final_eval_episodes=20, checkpoint_every=150, log_every=50),
                        tmp_path / "dt", progress=False)
    # Optimum 0.9 is normalised 100, the uniform random policy 0.
    assert summary["score"] > 90


def run_from(policy, start: int) -> tuple[float, list[str]]:
    """One StitchGrid episode from cell ``start`` with an EpisodicPolicy (env and policy are deterministic)."""
    env = gym.make("offbench/StitchGrid-v0")
    obs, _ = env.reset(seed=0, options={"state": start})
    policy.reset(0)
    total, path = 0.0, [cell_name(obs)]
    while True:
        action = policy.act(np.array([obs]), [0])[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        policy.observe([0], np.array([reward]))
        total += reward
        path.append(cell_name(obs))
        if terminated or truncated:
            return total, path


@pytest.mark.parametrize("drop_s1_successes", [False, True])
def test_dt_on_stitching_data_follows_the_return_it_is_given(grid, tmp_path, drop_s1_successes):
    """What DT does on lite/stitchgrid/medium-v0 (route A from s1: s1 -> s5 -> s3; route B from s7:
    s7 -> s5 -> s9). REFERENCE §3 expects DT "does not stitch", i.e. to stay below the stitched
    optimum 0.9 from s1. Measured here it does not: conditioned on 0.9 it walks s1 -> s5 -> s9.

    The return-to-go decides: after s1 -> s5 (reward -0.1) the asked-for return-to-go is exactly
    1.0, and in the data a return-to-go of 1.0 at s5 occurs only on the step SE into s9 (route B,
    plus 14 of the 907 route-A episodes that a random action sent into s9). It happens also with
    those 14 removed (``drop_s1_successes``), so no s1 -> s9 episode is left in the data. Asked for
    -1.0 instead, it follows route A from s1 to s3 and waits there.
    """
    data = grid("medium-v0")
    starts = data.observations[data.episode_starts]
    s1_goal = (starts == S1) & (data.episode_returns() > 0)
    assert s1_goal.sum() == 15  # 14 with return 0.9, 1 with 0.8
    if drop_s1_successes:
        data = data.select_episodes(np.flatnonzero(~s1_goal))
    dt = build_algorithm("dt", data, GRID, seed=0)
    fit(dt, data, TrainConfig(steps=300, batch_size=64, eval_every=300, eval_episodes=3, final_eval_episodes=3,
                              checkpoint_every=300, log_every=100), tmp_path / "dt", progress=False)
    dt.eval()
    assert run_from(dt.make_eval_policy(0.9), S1) == (pytest.approx(0.9), ["s1", "s5", "s9"])
    assert run_from(dt.make_eval_policy(0.9), S7) == (pytest.approx(0.9), ["s7", "s5", "s9"])
    ret, path = run_from(dt.make_eval_policy(-1.0), S1)
    assert ret == pytest.approx(-1.0) and path[:3] == ["s1", "s5", "s3"]


PENDULUM_EXPERT = """\
id = "t/pendulum/expert-v0"
env_id = "Pendulum-v1"
description = "test card"
format_version = 1

[recipe]
kind = "rollout"
env_id = "Pendulum-v1"
policy = "pendulum_swingup"
steps = 2000
seed = 0

[reference_scores]
random = -1207.555223
expert = -157.161713

[[changelog]]
version = "v0"
date = "2026-11-24"
notes = "test"
"""


@pytest.mark.slow
def test_continuous_dt_improves_over_random_on_pendulum(tmp_path, monkeypatch):
    (tmp_path / "cat" / "t" / "pendulum").mkdir(parents=True)
    (tmp_path / "cat" / "t" / "pendulum" / "expert-v0.toml").write_text(PENDULUM_EXPERT)
    monkeypatch.setenv("OFFBENCH_CATALOGUE", str(tmp_path / "cat"))
    build_dataset("t/pendulum/expert-v0", progress=False)
    data = load_dataset("t/pendulum/expert-v0")
    summary = train_run("dt", data, {"lr": 1e-3, "warmup_steps": 100, "embed_dim": 64, "layers": 2,
                                     "context_length": 10, "dropout": 0.0},
                        TrainConfig(steps=1500, batch_size=64, eval_every=1500, eval_episodes=10,
                                    final_eval_episodes=10, checkpoint_every=1500, log_every=500),
                        tmp_path / "dt", progress=False)
    # Normalised: the uniform random policy is 0, the scripted swing-up expert 100. Measured with
    # these settings (evaluated every 500 steps): 25 / 37 / 41 at steps 500 / 1000 / 1500, 55 at 3000;
    # with dropout 0.1, 34 at 3000. Imitating the swing-up from 10 episodes is slow for DT.
    assert summary["score"] > 20


# ---------------------------------------------------------------------- resume
def test_resume_after_kill_gives_identical_parameters(pendulum, tmp_path, capsys):
    small = TrainConfig(steps=60, batch_size=16, eval_every=30, eval_episodes=2, final_eval_episodes=2,
                        checkpoint_every=20, log_every=10)
    settings = {**TINY, "warmup_steps": 50}  # dropout 0.1: the global RNG must be restored too
    _, resumed = kill_and_resume("dt", pendulum, settings, small, tmp_path, kill_at=47, checkpoint_at=40,
                                 run_info={"algorithm": "dt", "algorithm_overrides": settings})  # as train_run, for `eval`
    assert int(resumed.updates) == 60
    # `offbench eval` rebuilds the model (prepare sizes the timestep table) and reloads it.
    assert main(["eval", str(tmp_path / "b"), "--episodes", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 60
