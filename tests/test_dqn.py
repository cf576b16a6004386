"""DQN with the double-DQN target: schedule, exact behaviour log-probabilities, the target and
loss by hand, target-network updates, exact resume, learning (StitchGrid fast, CartPole slow), CLI."""
from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from baselines.online.dqn import DQN, DQNConfig
from offbench.cli import main
from offbench.envs.gridworld import N_ACTIONS, N_STATES, default_mdp, expected_return, value_iteration
from offbench.errors import OffbenchError
from offbench.online import OnlineConfig, OnlineRun, ReplayBuffer
from tests.conftest import Killed

GRID_OBS = gym.spaces.Discrete(N_STATES)
GRID_ACT = gym.spaces.Discrete(N_ACTIONS)


def grid_agent(seed: int = 0, **kw) -> DQN:
    torch.manual_seed(seed)  # weight initialisation uses the global RNG, as in the online loop
    return DQN(GRID_OBS, GRID_ACT, DQNConfig(**{"hidden": (32, 32), **kw}), seed=seed)


def behaviour_probs(epsilon: float, actions: np.ndarray, greedy: np.ndarray, n: int) -> np.ndarray:
    """pi(a|s) = (1 - eps) 1[a = greedy] + eps / n, written independently of the agent."""
    return np.where(actions == greedy, 1.0 - epsilon + epsilon / n, epsilon / n)


# ---------------------------------------------------------------------- exploration
def test_defaults_and_epsilon_schedule():
    cfg = DQNConfig()
    assert (cfg.hidden, cfg.lr, cfg.gamma, cfg.target_update_every, cfg.tau) == ((256, 256), 2.5e-4, 0.99, 1000, 1.0)
    assert (cfg.epsilon_start, cfg.epsilon_end, cfg.max_grad_norm, cfg.huber_delta) == (1.0, 0.05, 10.0, 1.0)
    agent = grid_agent(epsilon_decay_steps=1000)
    expected = {0: 1.0, 250: 0.7625, 500: 0.525, 999: 0.05095, 1000: 0.05, 5000: 0.05}
    for step, eps in expected.items():
        assert agent.epsilon(step) == pytest.approx(eps, abs=1e-12), step
    assert grid_agent(epsilon_decay_steps=0).epsilon(0) == 0.05  # no decay: epsilon_end from the start


def test_act_log_probs_are_exact_and_match_frequencies():
    agent = grid_agent(epsilon_decay_steps=1000)
    step, eps = 500, 0.525
    obs = np.tile(np.arange(N_STATES - 1), 50)
    with torch.no_grad():
        greedy = agent.q(torch.as_tensor(obs)).argmax(-1).numpy()
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()

    actions, log_probs = agent.act(obs, step=step)
    assert actions.dtype == np.int64 and log_probs.dtype == np.float64 and actions.shape == log_probs.shape == (400,)
    np.testing.assert_allclose(log_probs, np.log(behaviour_probs(eps, actions, greedy, N_ACTIONS)), rtol=1e-12)

    # Empirical frequencies in one state over many draws: within 5 standard errors of pi(.|s).
    n = 40_000
    actions, log_probs = agent.act(np.full(n, 4), step=step)
    g = int(greedy[4])
    probs = behaviour_probs(eps, np.arange(N_ACTIONS), g, N_ACTIONS)
    freq = np.bincount(actions, minlength=N_ACTIONS) / n
    np.testing.assert_array_less(np.abs(freq - probs), 5 * np.sqrt(probs * (1 - probs) / n))
    np.testing.assert_allclose(np.exp(log_probs), probs[actions], rtol=1e-12)

    # Greedy acting: the argmax with log-probability 0.
    det_actions, det_log_probs = agent.act(obs, deterministic=True, step=step)
    np.testing.assert_array_equal(det_actions, greedy)
    assert det_actions.dtype == np.int64 and np.all(det_log_probs == 0.0)

    # Past the decay epsilon_end applies; all randomness came from agent.generator, none from the globals.
    actions, log_probs = agent.act(obs, step=10_000)
    np.testing.assert_allclose(log_probs, np.log(behaviour_probs(0.05, actions, greedy, N_ACTIONS)), rtol=1e-12)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state))
    # Same seed, same draws.
    a1, _ = grid_agent(seed=7).act(obs, step=0)
    a2, _ = grid_agent(seed=7).act(obs, step=0)
    np.testing.assert_array_equal(a1, a2)


def test_discrete_and_one_hot_box_observations_give_the_same_q():
    discrete = grid_agent()
    box_space = gym.make("offbench/StitchGridOneHot-v0").observation_space
    box = DQN(box_space, GRID_ACT, DQNConfig(hidden=(32, 32)))
    assert discrete.one_hot and not box.one_hot
    box.load_state_dict(discrete.state_dict())  # same shapes: net.0.weight is [32, 9] in both
    states = np.arange(N_STATES)
    with torch.no_grad():
        torch.testing.assert_close(discrete.q(states), box.q(np.eye(N_STATES, dtype=np.float32)), rtol=0, atol=0)
    with pytest.raises(OffbenchError, match="one_hot_observations"):
        DQN(box_space, GRID_ACT, DQNConfig(one_hot_observations=True))
    with pytest.raises(OffbenchError, match="Discrete action space"):
        DQN(box_space, gym.spaces.Box(-1, 1, (2,)), DQNConfig())


# ---------------------------------------------------------------------- the target and the loss
def huber(x: float, delta: float = 1.0) -> float:
    return 0.5 * x * x if abs(x) <= delta else delta * (abs(x) - 0.5 * delta)


@pytest.mark.parametrize("double_q", [True, False])
def test_td_target_and_loss_by_hand(double_q):
    """Tabular nets (hidden=(), one-hot states: Q(s, a) = W[a, s]) set by hand; transitions go
    through the replay buffer so a time-limit truncation arrives exactly as in training."""
    gamma = 0.9
    agent = DQN(gym.spaces.Discrete(3), gym.spaces.Discrete(3), DQNConfig(hidden=(), gamma=gamma, double_q=double_q))
    q_online = np.array([[1.0, 0.0, 3.0], [0.0, 2.0, 1.0], [-3.0, 9.0, 0.0]])  # [s, a]
    q_target = np.array([[2.0, 7.0, 4.0], [5.0, -1.0, 3.0], [10.0, 10.0, 10.0]])
    with torch.no_grad():
        for net, table in ((agent.q, q_online), (agent.q_target, q_target)):
            net.net[0].weight.copy_(torch.tensor(table.T))
            net.net[0].bias.zero_()

    buffer = ReplayBuffer(3, gym.spaces.Discrete(3), gym.spaces.Discrete(3), {})
    #                 s   a    r    s'  terminated truncated
    rows = {0: dict(a=1, r=0.5, s2=1, term=False, trunc=False),  # ordinary step: bootstrap
            1: dict(a=0, r=1.5, s2=2, term=True, trunc=False),  # MDP end: no bootstrap
            2: dict(a=2, r=0.25, s2=0, term=False, trunc=True)}  # time limit: still bootstraps
    for s, row in rows.items():
        buffer.add(observations=s, next_observations=row["s2"], actions=row["a"], rewards=row["r"],
                   terminations=row["term"], truncations=row["trunc"], behaviour_log_prob=0.0)
    # Hand targets. Double DQN: the online net picks a* in s', the target net values it.
    # s'=1: online argmax 1 -> target Q -1 (max of target: 5); s'=0: online argmax 2 -> 4 (max: 7).
    by_hand_double = {0: 0.5 + gamma * -1.0, 1: 1.5, 2: 0.25 + gamma * 4.0}
    by_hand_max = {0: 0.5 + gamma * 5.0, 1: 1.5, 2: 0.25 + gamma * 7.0}
    by_hand = by_hand_double if double_q else by_hand_max

    batch = buffer.sample(64, np.random.default_rng(0))
    assert batch["observations"].dtype == torch.int64 and set(batch["observations"].tolist()) == {0, 1, 2}
    states = batch["observations"].numpy()
    target = agent.td_target(batch["rewards"], batch["next_observations"], batch["terminations"])
    np.testing.assert_allclose(target.numpy(), [by_hand[s] for s in states], rtol=1e-6)

    q_taken = {s: q_online[s, row["a"]] for s, row in rows.items()}  # 0, 0, 0
    errors = {s: q_taken[s] - by_hand[s] for s in rows}
    if double_q:  # one row in the quadratic part, two in the linear part of the Huber loss
        assert abs(errors[0]) < 1 < min(abs(errors[1]), abs(errors[2]))
    loss, info = agent.td_loss(batch)
    assert loss.item() == pytest.approx(np.mean([huber(errors[s]) for s in states]), rel=1e-6)
    assert info["target_mean"] == pytest.approx(np.mean([by_hand[s] for s in states]), rel=1e-6)


def test_target_network_updates_and_gradient_clipping():
    torch.manual_seed(0)
    agent = DQN(gym.spaces.Box(-1e4, 1e4, (4,)), GRID_ACT, DQNConfig(hidden=(32, 32), target_update_every=3))
    before = {k: v.clone() for k, v in agent.q_target.state_dict().items()}
    obs = torch.as_tensor(np.random.default_rng(0).uniform(-1e3, 1e3, (9, 4)), dtype=torch.float32)
    batch = {"observations": obs[:8], "next_observations": obs[1:], "actions": torch.arange(8),
             "rewards": torch.full((8,), 1e4), "terminations": torch.zeros(8)}
    metrics = agent.update(batch)
    # Large inputs make large gradients (the Huber loss bounds only dL/dQ): the raw norm is well
    # above 10, and the gradient the optimiser used was rescaled to norm 10.
    assert metrics["grad_norm"] > 100
    used = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in agent.q.parameters()]))
    assert used.item() == pytest.approx(10.0, rel=1e-4)
    agent.update(batch)
    for key, value in agent.q_target.state_dict().items():  # two steps: target untouched
        assert torch.equal(value, before[key]), key
    assert not torch.equal(agent.q.net[0].weight, agent.q_target.net[0].weight)
    agent.update(batch)
    assert int(agent.num_updates) == 3 and "num_updates" in agent.state_dict()
    for key, value in agent.q_target.state_dict().items():  # third step: an exact copy
        assert torch.equal(value, agent.q.state_dict()[key]), key

    polyak = grid_agent(target_update_every=1, tau=0.25)
    batch = {"observations": torch.arange(8), "next_observations": torch.arange(1, 9), "actions": torch.arange(8),
             "rewards": torch.ones(8), "terminations": torch.zeros(8)}
    old = polyak.q_target.net[0].weight.clone()
    polyak.update(batch)
    torch.testing.assert_close(polyak.q_target.net[0].weight, 0.75 * old + 0.25 * polyak.q.net[0].weight)


# ---------------------------------------------------------------------- the online loop
def grid_config(**kw) -> OnlineConfig:
    base = dict(env_id="offbench/StitchGrid-v0", algo="dqn", steps=600, seed=3, warmup_steps=100, batch_size=32,
                eval_every=300, eval_episodes=2, snapshot_every=300, checkpoint_every=100,
                agent={"hidden": (32, 32), "target_update_every": 50, "epsilon_decay_steps": 400})
    base.update(kw)
    return OnlineConfig(**base)


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    straight = OnlineRun(grid_config(), tmp_path / "straight")
    straight.train(progress=False)

    def kill_at(step):
        if step == 470:  # after the checkpoint at the first episode end past step 400
            raise Killed

    with pytest.raises(Killed):
        OnlineRun(grid_config(), tmp_path / "killed").train(progress=False, on_step=kill_at)
    checkpointed = json.loads((tmp_path / "killed" / "state.json").read_text())["step"]
    assert 400 <= checkpointed <= 410  # episodes last at most 10 steps
    resumed = OnlineRun(grid_config(), tmp_path / "killed")
    resumed.train(progress=False)

    a, b = straight.agent.state_dict(), resumed.agent.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert int(a["num_updates"]) == 501  # one update per env step from step 100 to 600
    for key in straight.buffer.arrays:
        np.testing.assert_array_equal(straight.buffer.arrays[key], resumed.buffer.arrays[key], err_msg=key)
    assert straight.curve == [{**r, "wall_time": straight.curve[i]["wall_time"]} for i, r in enumerate(resumed.curve)]

    # The recorded behaviour log-probabilities: uniform in the warm-up, then one of the two
    # epsilon-greedy values for the epsilon of that step (row t was acted at step t).
    buf, n = straight.buffer.arrays, straight.buffer.size
    assert n == 600 and buf["observations"].dtype == np.int64
    np.testing.assert_allclose(buf["behaviour_log_prob"][:100], -np.log(9))
    eps = np.array([straight.agent.epsilon(t) for t in range(100, n)])
    lp = buf["behaviour_log_prob"][100:n]
    is_greedy = np.isclose(lp, np.log(1 - eps + eps / 9), rtol=0, atol=1e-12)
    is_other = np.isclose(lp, np.log(eps / 9), rtol=0, atol=1e-12)
    assert np.all(is_greedy | is_other)
    assert 0.3 < is_greedy.mean() < 0.95  # both kinds occur while epsilon falls 0.76 -> 0.05


def test_learns_stitchgrid_optimum(tmp_path):
    """DQN's greedy policy is optimal in every state of StitchGrid after 1500 env steps."""
    cfg = grid_config(steps=1500, seed=0, warmup_steps=200, batch_size=64, eval_every=1500, eval_episodes=10,
                      snapshot_every=1500, checkpoint_every=1500,
                      agent={"hidden": (64, 64), "target_update_every": 100, "epsilon_decay_steps": 1000})
    run = OnlineRun(cfg, tmp_path / "run")
    run.train(progress=False)
    mdp = default_mdp()
    v_star, q_star, _ = value_iteration(mdp.P, mdp.R, mdp.gamma, mdp.terminal)
    with torch.no_grad():
        q = run.agent.q(torch.arange(N_STATES)).double().numpy()
    greedy = q.argmax(1)
    live = np.flatnonzero(~mdp.terminal)
    # Every greedy action is optimal (ties allowed), so the exact undiscounted return is the optimum.
    np.testing.assert_array_less(v_star[live] - 1e-9, q_star[live, greedy[live]])
    optimum = expected_return(np.eye(N_ACTIONS)[value_iteration(mdp.P, mdp.R, mdp.gamma, mdp.terminal)[2]])
    assert optimum == pytest.approx(0.9)
    assert expected_return(np.eye(N_ACTIONS)[greedy]) == pytest.approx(optimum, abs=1e-9)
    assert run.curve[-1]["return_deterministic"] == pytest.approx(0.9)
    # DQN bootstraps through time limits, so its fixed point is the infinite-horizon Q*.
    assert np.abs(q[live] - q_star[live]).max() < 0.3


@pytest.mark.slow
def test_learns_cartpole(tmp_path):
    """Greedy evaluation reaches CartPole's "solved" mean return of 195 within 15k env steps."""
    cfg = OnlineConfig(env_id="CartPole-v1", algo="dqn", steps=15_000, seed=0, warmup_steps=1000, batch_size=64,
                       eval_every=2500, eval_episodes=10, snapshot_every=15_000, checkpoint_every=15_000,
                       agent={"hidden": (64, 64), "target_update_every": 500, "epsilon_decay_steps": 10_000})
    run = OnlineRun(cfg, tmp_path / "run")
    run.train(progress=False)
    returns = [row["return_deterministic"] for row in run.curve]
    assert returns[0] < 100  # after 1.5k updates, still far from solved (random play scores about 22)
    assert max(returns) >= 195
    assert returns[-1] >= 150  # and it has not collapsed by the end (DQN on CartPole is known to oscillate)


def test_cli_train_writes_run_directory(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["online", "train", "dqn", "--env", "offbench/StitchGrid-v0", "--steps", "300", "--seed", "1",
            "--out", str(out), "--quiet", "--set", "warmup_steps=100", "--set", "eval_every=150",
            "--set", "eval_episodes=2", "--set", "batch_size=32", "--set", "hidden=[32,32]",
            "--set", "epsilon_decay_steps=200"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 300
    config = json.loads((out / "config.json").read_text())
    assert config["online"]["algo"] == "dqn" and config["agent"]["hidden"] == [32, 32]
    assert config["agent"]["epsilon_decay_steps"] == 200 and config["agent"]["double_q"] is True
    weights = load_file(str(out / "snapshots" / "policy-000000300.safetensors"))
    # The snapshot is the online Q-network alone (one-hot over 9 states in, 9 action values out).
    assert {k: tuple(v.shape) for k, v in weights.items()} == {
        "net.0.weight": (32, 9), "net.0.bias": (32,), "net.2.weight": (32, 32), "net.2.bias": (32,),
        "net.4.weight": (9, 32), "net.4.bias": (9,)}
    assert (out / "curve.csv").read_text().count("\n") == 3  # header + 2 evaluations
    assert main(args[:-2] + ["--set", "no_such_key=1"]) == 2


def test_dqn_snapshot_is_an_epsilon_greedy_behaviour_policy(tmp_path, monkeypatch, capsys):
    """export-policy turns a DQN snapshot into a behaviour checkpoint; a rollout recipe with it
    stores epsilon-greedy actions with their exact log-probabilities, and rebuilds identically."""
    from offbench import load_dataset
    from offbench.behaviour import CheckpointPolicy
    from offbench.data.recipes import build_dataset

    run = tmp_path / "run"
    assert main(["online", "train", "dqn", "--env", "offbench/StitchGrid-v0", "--steps", "600", "--seed", "1",
                 "--out", str(run), "--quiet", "--set", "warmup_steps=100", "--set", "eval_every=300",
                 "--set", "eval_episodes=2", "--set", "batch_size=32", "--set", "hidden=[32,32]",
                 "--set", "epsilon_decay_steps=300", "--set", "epsilon_end=0.2"]) == 0
    root = tmp_path / "catalogue"
    dest = root / "policies" / "grid" / "dqn.safetensors"
    assert main(["online", "export-policy", str(run), "--step", "600", "--name", "dqn", "--dest", str(dest),
                 "--episodes", "20"]) == 0
    info = json.loads(dest.with_suffix(".json").read_text())
    assert (info["module"], info["obs_dim"], info["act_dim"], info["n_states"], info["epsilon"]) == \
        ("QNetwork", 9, 9, 9, 0.2)
    assert info["returns"]["episodes"] == 20 and info["returns"]["mean"] == info["returns"]["stochastic"]["mean"]

    card = root / "grid" / "stitch" / "dqn-v0.toml"
    card.parent.mkdir(parents=True)
    card.write_text(f'id = "grid/stitch/dqn-v0"\nenv_id = "offbench/StitchGrid-v0"\ndescription = "test"\n'
                    f'[recipe]\nkind = "rollout"\nenv_id = "offbench/StitchGrid-v0"\nsteps = 400\nseed = 5\n'
                    f'num_envs = 4\npolicy = {{ kind = "checkpoint", path = "policies/grid/dqn.safetensors", '
                    f'sha256 = "{info["sha256"]}" }}\n[reference_scores]\nrandom = -1.0\nexpert = 0.9\n')
    monkeypatch.setenv("OFFBENCH_CATALOGUE", str(root))
    path = build_dataset("grid/stitch/dqn-v0", progress=False)
    first = path.read_bytes()
    ds = load_dataset("grid/stitch/dqn-v0", validate=True)
    assert ds.num_steps == 400
    q = CheckpointPolicy(dest, sha256=info["sha256"]).network
    with torch.no_grad():
        greedy = q(torch.as_tensor(ds.observations)).argmax(-1).numpy()
    actions = ds.actions.astype(np.int64)
    # pi(a|s) = 0.8 * 1[a = greedy] + 0.2 / 9 (Mnih et al.'s epsilon-greedy with epsilon 0.2)
    expected = np.where(actions == greedy, np.log(0.8 + 0.2 / 9), np.log(0.2 / 9))
    np.testing.assert_allclose(ds.extra("behaviour_log_prob"), expected, rtol=1e-12)
    assert 0.7 < (actions == greedy).mean() < 0.95  # about 0.8 + 0.2/9 of the steps are greedy
    assert build_dataset("grid/stitch/dqn-v0", progress=False, force=True).read_bytes() == first
