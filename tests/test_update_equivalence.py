"""The optimised updates of BC, TD3+BC, AWAC, IQL and CQL equal the eager updates they replaced.

Each ``ref_*`` function below is the update as it was before the speed work (issue 15), kept
here (not in the library) as the reference: ``torch.distributions`` objects, critic output
layers as batched matmuls, ``torch.optim.Adam(fused=True)``'s own ``step``, one Polyak call per
module and a host read of every metric. Two copies of an algorithm built with the same seed
take the same batches; after several updates every parameter, buffer and optimiser state must
agree within float tolerance (the critics' last layer now sums in another order), and the
metrics too. The updates must also leave every metric on the device (no host read inside
``update``), which is what lets the same code run on CUDA without a synchronisation per step.
"""
from __future__ import annotations

import copy
import math
import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from baselines.awac import AWAC, AWACConfig
from baselines.bc import BC, BCConfig
from baselines.cql import CQL, CQLConfig
from baselines.iql import IQL, IQLConfig
from baselines.td3_bc import TD3BC, TD3BCConfig
from offbench.data.sampling import TransitionBatch
from offbench.nn import LOG_STD_MAX, LOG_STD_MIN

OBS = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)
ACT = gym.spaces.Box(-1.0, 2.0, (3,), np.float32)  # asymmetric: scale 1.5, bias 0.5
DISCRETE_OBS = gym.spaces.Discrete(7)
DISCRETE_ACT = gym.spaces.Discrete(4)
HIDDEN = (32, 32)
STEPS = 12


# ---------------------------------------------------------------------- the old building blocks
def ref_ensemble(net, x):
    """EnsembleMLP.forward as it was: every layer, the output layer too, a ``torch.baddbmm``."""
    def linear(layer, h):
        if h.dim() == 2:
            h = h.unsqueeze(0).expand(layer.members, -1, -1)
        return torch.baddbmm(layer.bias, h, layer.weight)

    for i, layer in enumerate(net.hidden):
        x = linear(layer, x)
        if net.norms is not None:
            x = net.norms[i](x)
        x = net.activation(x)
    return linear(net.out, x)


def ref_q(qens, obs, action):
    return ref_ensemble(qens.net, torch.cat([obs, action], dim=-1)).squeeze(-1)


def ref_gaussian(policy, obs):
    """GaussianPolicy.distribution as it was: a ``torch.distributions.Normal`` with argument checks."""
    mean = torch.tanh(policy.net(obs)) * policy.action_scale + policy.action_bias
    std = policy.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp() * policy.action_scale
    return torch.distributions.Normal(mean, std)


def ref_gaussian_forward(policy, obs, generator):
    dist = ref_gaussian(policy, obs)
    action = dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=generator, device=dist.mean.device)
    low, high = policy.action_bias - policy.action_scale, policy.action_bias + policy.action_scale
    action = torch.max(torch.min(action, high), low)
    return action, dist.log_prob(action).sum(-1)


def ref_categorical_log_prob(policy, obs, action):
    return torch.distributions.Categorical(logits=policy.net(obs)).log_prob(action.long())


def ref_soft_update(target, source, tau):
    with torch.no_grad():
        torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


def plain_adam(optimizer: torch.optim.Optimizer) -> torch.optim.Adam:
    """``torch.optim.Adam(fused=True)`` over the same parameter groups (what ``offbench.nn.adam`` made)."""
    groups = [{k: v for k, v in g.items()} for g in optimizer.param_groups]
    for g in groups:
        g["params"] = list(g["params"])
    return torch.optim.Adam(groups, lr=groups[0]["lr"], fused=True)


# ---------------------------------------------------------------------- the old updates
def ref_bc(algo, opt, batch):
    features = algo.encoder(batch.observations)
    if algo.discrete:
        loss = -ref_categorical_log_prob(algo.policy, features, batch.actions).mean()
    else:
        loss = ((algo.policy(features) - batch.actions) ** 2).sum(-1).mean()
    opt["policy"].zero_grad(set_to_none=True)
    loss.backward()
    opt["policy"].step()
    return {"bc_loss": loss.item()}


def ref_td3_bc(algo, opt, batch, state):
    cfg = algo.config
    obs, next_obs = algo.encoder(batch.observations), algo.encoder(batch.next_observations)
    scale = algo.actor.action_scale
    with torch.no_grad():
        eps = torch.randn(batch.actions.shape, generator=algo.generator) * cfg.policy_noise
        next_action = algo.actor_target(next_obs) + eps.clamp(-cfg.noise_clip, cfg.noise_clip) * scale
        next_action = next_action.clamp(algo.actor.action_bias - scale, algo.actor.action_bias + scale)
        next_q = ref_q(algo.critic_target, next_obs, next_action).min(0).values
        target = batch.rewards + batch.discounts * (1.0 - batch.terminations) * next_q
    q = ref_q(algo.critic, obs, batch.actions)
    critic_loss = ((q - target) ** 2).mean(1).sum()
    opt["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    opt["critic"].step()
    if state["updates"] % cfg.policy_delay == 0:
        algo.critic.requires_grad_(False)
        obs = algo.encoder(batch.observations)
        pi = algo.actor(obs)
        q1 = ref_q(algo.critic, obs, pi)[0]
        lam = cfg.alpha / q1.abs().mean().detach()
        bc = ((pi - batch.actions) ** 2).mean()
        actor_loss = -lam * q1.mean() + bc
        opt["actor"].zero_grad(set_to_none=True)
        actor_loss.backward()
        opt["actor"].step()
        algo.critic.requires_grad_(True)
        ref_soft_update(algo.actor_target, algo.actor, cfg.tau)
        ref_soft_update(algo.critic_target, algo.critic, cfg.tau)
        state["actor_metrics"] = {"actor_loss": actor_loss.detach(), "lambda": lam, "bc_loss": bc.detach()}
    state["updates"] += 1
    return {"critic_loss": critic_loss.item(), "q_mean": q.detach().mean().item(),
            **{k: v.item() for k, v in state["actor_metrics"].items()}}


def ref_awac(algo, opt, batch):
    cfg = algo.config
    obs, next_obs = algo.encoder(batch.observations), algo.encoder(batch.next_observations)
    with torch.no_grad():
        next_action, _ = ref_gaussian_forward(algo.actor, next_obs, algo.generator)
        next_q = ref_q(algo.critic_target, next_obs, next_action).min(0).values
        target = batch.rewards + batch.discounts * (1.0 - batch.terminations) * next_q
    q = ref_q(algo.critic, obs, batch.actions)
    critic_loss = ((q - target) ** 2).mean(1).sum()
    opt["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    opt["critic"].step()

    obs = algo.encoder(batch.observations)
    with torch.no_grad():
        k = cfg.value_samples
        q_data = ref_q(algo.critic, obs, batch.actions).min(0).values
        repeated = obs.repeat(k, 1)
        sampled, _ = ref_gaussian_forward(algo.actor, repeated, algo.generator)
        value = ref_q(algo.critic, repeated, sampled).min(0).values.view(k, -1).mean(0)
        advantage = q_data - value
        weights = (advantage / cfg.temperature).exp().clamp(max=cfg.max_weight)
    log_prob = ref_gaussian(algo.actor, obs).log_prob(batch.actions).sum(-1)
    actor_loss = -(weights * log_prob).mean()
    opt["actor"].zero_grad(set_to_none=True)
    actor_loss.backward()
    opt["actor"].step()
    ref_soft_update(algo.critic_target, algo.critic, cfg.tau)
    return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "q_mean": q.detach().mean().item(),
            "advantage_mean": advantage.mean().item(), "weight_mean": weights.mean().item(),
            "log_prob": log_prob.detach().mean().item()}


def ref_iql(algo, opt, batch):
    cfg = algo.config

    def q_values(critic, features, actions):
        if algo.discrete:
            q = ref_ensemble(critic, features)
            return q.gather(-1, actions.long().view(1, -1, 1).expand(q.shape[0], -1, 1)).squeeze(-1)
        return ref_q(critic, features, actions)

    if cfg.actor_cosine_steps > 0:
        progress = min(int(algo.updates), cfg.actor_cosine_steps) / cfg.actor_cosine_steps
        opt["iql"].param_groups[2]["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    obs, next_obs = algo.encoder(batch.observations), algo.encoder(batch.next_observations)
    with torch.no_grad():
        q_target = q_values(algo.critic_target, obs, batch.actions).min(0).values
    v_both = algo.value(torch.cat([obs, next_obs])).squeeze(-1)
    v, v_next = v_both[: len(obs)], v_both[len(obs):].detach()
    diff = q_target - v
    value_loss = (torch.where(diff < 0, 1.0 - cfg.expectile, cfg.expectile) * diff.pow(2)).mean()
    td_target = batch.rewards + cfg.gamma * (1.0 - batch.terminations) * v_next
    q = q_values(algo.critic, obs, batch.actions)
    critic_loss = ((q - td_target) ** 2).mean(1).sum()
    advantage = q_target - v.detach()
    weights = torch.exp(cfg.beta * advantage).clamp(max=cfg.max_weight)
    if algo.discrete:
        log_prob = ref_categorical_log_prob(algo.policy, obs, batch.actions)
    else:
        log_prob = ref_gaussian(algo.policy, obs).log_prob(batch.actions).sum(-1)
    actor_loss = -(weights * log_prob).mean()
    info = {"value_loss": value_loss, "critic_loss": critic_loss, "actor_loss": actor_loss,
            "v_mean": v.mean(), "q_mean": q.mean(), "advantage_mean": advantage.mean(),
            "weight_mean": weights.mean(), "weight_clipped": (weights >= cfg.max_weight).float().mean()}
    opt["iql"].zero_grad(set_to_none=True)
    (value_loss + critic_loss + actor_loss).backward()
    opt["iql"].step()
    ref_soft_update(algo.critic_target, algo.critic, cfg.tau)
    algo.updates += 1
    return {k: v.item() for k, v in info.items()}


def ref_cql(algo, opt, batch):
    cfg = algo.config
    obs, next_obs = algo.encoder(batch.observations), algo.encoder(batch.next_observations)
    not_done = 1.0 - batch.terminations
    with torch.no_grad():
        next_action, _ = algo.actor(next_obs, generator=algo.generator)
        next_v = ref_q(algo.critic_target, next_obs, next_action).min(0).values
        if cfg.backup_entropy:
            next_v = next_v - algo.log_entropy_alpha.exp() * _
        n, b = cfg.num_sampled_actions, len(obs)
        low, high = algo.action_low, algo.action_high
        uniform = low + (high - low) * torch.rand((b, n, len(low)), generator=algo.generator)
        mean, log_std = algo.actor.distribution(torch.cat([obs, next_obs]))
        mean, log_std = mean.unsqueeze(1).expand(-1, n, -1), log_std.unsqueeze(1).expand(-1, n, -1)
        u = mean + log_std.exp() * torch.randn(mean.shape, generator=algo.generator)
        policy_actions, policy_log_prob = algo.actor._squash(u, mean, log_std)
        sampled = torch.cat([uniform, policy_actions[:b], policy_actions[b:]], dim=1)
        log_density = torch.cat([torch.full((b, n), algo.uniform_log_density),
                                 policy_log_prob[:b], policy_log_prob[b:]], dim=1)
        target = batch.rewards + cfg.gamma * not_done * next_v
    m = sampled.shape[1]
    actions = torch.cat([batch.actions.unsqueeze(1), sampled], dim=1)
    obs_rep = obs.unsqueeze(1).expand(-1, m + 1, -1)
    q_all = ref_q(algo.critic, obs_rep.reshape(-1, obs.shape[-1]), actions.reshape(-1, actions.shape[-1]))
    q_all = q_all.view(q_all.shape[0], len(obs), m + 1)
    q_data = q_all[..., 0]
    logsumexp = torch.logsumexp(q_all[..., 1:] - log_density, dim=-1) - math.log(m)
    td_loss = 0.5 * ((q_data - target) ** 2).mean(1).sum()
    gap = (logsumexp - q_data).mean(1)
    alpha = algo.log_alpha.exp().detach()
    critic_loss = td_loss + alpha * gap.sum()
    info = {"td_loss": td_loss, "cql_gap": gap.mean(), "cql_alpha": alpha, "q_data_mean": q_data.mean(),
            "logsumexp_mean": logsumexp.mean()}
    opt["critic"].zero_grad(set_to_none=True)
    critic_loss.backward()
    opt["critic"].step()
    if cfg.lagrange:
        alpha_loss = -(algo.log_alpha.exp() * (gap.detach() - cfg.target_action_gap)).mean()
        opt["lagrange"].zero_grad(set_to_none=True)
        alpha_loss.backward()
        opt["lagrange"].step()
    entropy_alpha = algo.log_entropy_alpha.exp().detach()
    action, log_prob = algo.actor(obs, generator=algo.generator)
    algo.critic.requires_grad_(False)
    q_new = ref_q(algo.critic, obs, action).min(0).values
    algo.critic.requires_grad_(True)
    actor_loss = (entropy_alpha * log_prob - q_new).mean()
    opt["actor"].zero_grad(set_to_none=True)
    actor_loss.backward()
    opt["actor"].step()
    entropy_loss = -(algo.log_entropy_alpha * (log_prob.detach() + algo.target_entropy)).mean()
    opt["entropy"].zero_grad(set_to_none=True)
    entropy_loss.backward()
    opt["entropy"].step()
    info.update(actor_loss=actor_loss, entropy_alpha=entropy_alpha, entropy=-log_prob.detach().mean())
    ref_soft_update(algo.critic_target, algo.critic, cfg.tau)
    return {k: v.item() for k, v in info.items()}


# ---------------------------------------------------------------------- harness
def make_batches(obs_space, act_space, n: int, size: int = 64, seed: int = 0) -> list[TransitionBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        if isinstance(obs_space, gym.spaces.Discrete):
            obs, next_obs = (torch.randint(obs_space.n, (size,), generator=g) for _ in range(2))
        else:
            obs, next_obs = (torch.randn(size, *obs_space.shape, generator=g) * 2 + 1 for _ in range(2))
        if isinstance(act_space, gym.spaces.Discrete):
            actions = torch.randint(act_space.n, (size,), generator=g)
        else:
            low, high = torch.as_tensor(act_space.low), torch.as_tensor(act_space.high)
            actions = low + (high - low) * torch.rand(size, *act_space.shape, generator=g)
        out.append(TransitionBatch(observations=obs, actions=actions, rewards=torch.randn(size, generator=g),
                                   next_observations=next_obs,
                                   terminations=(torch.rand(size, generator=g) < 0.1).float(),
                                   truncations=torch.zeros(size), discounts=torch.full((size,), 0.99)))
    return out


def pair(cls, config, obs_space=OBS, act_space=ACT):
    """Two identical instances; the reference one gets plain ``torch.optim.Adam`` optimisers."""
    new = cls(obs_space, act_space, config, seed=3)
    ref = cls(obs_space, act_space, config, seed=3)
    ref.load_state_dict(new.state_dict())
    return new, ref, {name: plain_adam(o) for name, o in ref.optimizers().items()}


def assert_same_state(new, ref, new_opt, ref_opt, rtol, atol):
    for (name, a), (_, b) in zip(new.state_dict().items(), ref.state_dict().items()):
        if torch.is_tensor(a):
            torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")
    for key in new_opt:
        sa, sb = new_opt[key].state_dict(), ref_opt[key].state_dict()
        assert len(sa["state"]) == len(sb["state"])
        for i in sa["state"]:
            for k in ("step", "exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(sa["state"][i][k], sb["state"][i][k], rtol=rtol, atol=atol,
                                           msg=lambda m: f"{key} state {i} {k}: {m}")


def assert_same_metrics(new_metrics, ref_metrics, rtol, atol):
    assert new_metrics.keys() == ref_metrics.keys()
    for k, v in new_metrics.items():
        assert torch.is_tensor(v) and v.dim() == 0 and v.grad_fn is None and not v.requires_grad, k
        assert float(v) == pytest.approx(ref_metrics[k], rel=rtol, abs=atol), k


CASES = {
    # name: (class, config, observation space, action space, reference update, bitwise expected)
    "bc": (BC, BCConfig(hidden=HIDDEN), OBS, ACT, ref_bc, True),
    "bc_discrete": (BC, BCConfig(hidden=HIDDEN), DISCRETE_OBS, DISCRETE_ACT, ref_bc, True),
    "td3_bc": (TD3BC, TD3BCConfig(hidden=HIDDEN), OBS, ACT, ref_td3_bc, False),
    "awac": (AWAC, AWACConfig(hidden=HIDDEN), OBS, ACT, ref_awac, False),
    "iql": (IQL, IQLConfig(hidden=HIDDEN), OBS, ACT, ref_iql, False),
    "iql_cosine": (IQL, IQLConfig(hidden=HIDDEN, actor_cosine_steps=5), OBS, ACT, ref_iql, False),
    "iql_discrete": (IQL, IQLConfig(hidden=HIDDEN), DISCRETE_OBS, DISCRETE_ACT, ref_iql, True),
    "cql": (CQL, CQLConfig(hidden=(32, 32, 32), num_sampled_actions=4), OBS, ACT, ref_cql, False),
    "cql_lagrange": (CQL, CQLConfig(hidden=HIDDEN, num_sampled_actions=3, lagrange=True, backup_entropy=True),
                     OBS, ACT, ref_cql, False),
}


def run_reference(name, ref, ref_opt, batches):
    ref_update = CASES[name][4]
    if ref_update is not ref_td3_bc:
        return [ref_update(ref, ref_opt, b) for b in batches]
    state = {"updates": 0, "actor_metrics": {}}
    metrics = [ref_update(ref, ref_opt, b, state) for b in batches]
    ref._updates = state["updates"]
    return metrics


@pytest.mark.parametrize("name", list(CASES))
def test_update_equals_the_previous_eager_update(name):
    cls, config, obs_space, act_space, _, bitwise = CASES[name]
    new, ref, ref_opt = pair(cls, config, obs_space, act_space)
    batches = make_batches(obs_space, act_space, STEPS)
    ref_metrics = run_reference(name, ref, ref_opt, batches)
    new_metrics = [new.update(b) for b in batches]
    # Bitwise where only the bookkeeping changed; otherwise the critics' output layer sums in
    # another order (a broadcast product instead of a one-column bmm): float rounding, no more.
    rtol, atol = (0.0, 0.0) if bitwise else (1e-4, 1e-5)
    assert_same_state(new, ref, new.optimizers(), ref_opt, rtol, atol)
    for a, b in zip(new_metrics, ref_metrics):
        assert_same_metrics(a, b, max(rtol, 1e-6), max(atol, 1e-6))
    # the random streams advanced identically (same draws, same order)
    assert torch.equal(new.generator.get_state(), ref.generator.get_state())


class NoHostReads(TorchDispatchMode):
    """Fails on any op that copies a tensor's value to the host (``item``, ``float``, ``bool``,
    data-dependent shapes): on CUDA each would be a synchronisation."""

    BANNED = {"_local_scalar_dense", "nonzero", "_assert_async", "masked_select", "unique"}

    def __init__(self):
        super().__init__()
        self.reads = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in self.BANNED:
            self.reads.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", list(CASES))
def test_update_reads_nothing_back_to_the_host(name):
    cls, config, obs_space, act_space, _, _ = CASES[name]
    algo = cls(obs_space, act_space, config, seed=0)
    batches = make_batches(obs_space, act_space, 4, size=16)
    algo.update(batches[0])  # IQL's cosine schedule reads its step counter once per run or resume
    with NoHostReads() as mode:
        for b in batches[1:]:
            metrics = algo.update(b)
    assert mode.reads == [], mode.reads
    assert all(torch.is_tensor(v) and v.dim() == 0 and v.grad_fn is None for v in metrics.values())


def test_iql_cosine_schedule_survives_a_state_dict_reload():
    """The host copy of IQL's step counter is refreshed when a checkpoint is loaded."""
    config = IQLConfig(hidden=HIDDEN, actor_cosine_steps=10)
    a = IQL(OBS, ACT, config, seed=0)
    batches = make_batches(OBS, ACT, 6, size=16)
    for b in batches[:4]:
        a.update(b)
    b_algo = IQL(OBS, ACT, config, seed=0)
    b_algo.update(batches[0])  # its host counter is now 1
    b_algo.load_state_dict(a.state_dict())
    b_algo.optimizers()["iql"].load_state_dict(copy.deepcopy(a.optimizers()["iql"].state_dict()))
    b_algo.generator.set_state(a.generator.get_state())
    for b in batches[4:]:
        a.update(b)
        b_algo.update(b)
    assert a.optimizers()["iql"].param_groups[2]["lr"] == b_algo.optimizers()["iql"].param_groups[2]["lr"]
    for x, y in zip(a.state_dict().values(), b_algo.state_dict().values()):
        assert torch.equal(x, y)


def test_to_device_keeps_the_update_working():
    """``Algorithm.to_device`` (CPU here; CUDA where there is one) moves networks, optimiser
    moments and the generator; updates then run with batches on that device."""
    for cls, config in ((TD3BC, TD3BCConfig(hidden=HIDDEN)), (CQL, CQLConfig(hidden=HIDDEN, num_sampled_actions=2))):
        algo = cls(OBS, ACT, config, seed=0)
        batches = make_batches(OBS, ACT, 2, size=8)
        algo.update(batches[0])
        device = "cuda" if torch.cuda.is_available() else "cpu"
        algo.to_device(device)
        assert algo.device.type == device and algo.generator.device.type == device
        batch = TransitionBatch(**{k: v.to(device) if torch.is_tensor(v) else v for k, v in vars(batches[1]).items()})
        metrics = algo.update(batch)
        assert all(v.device.type == device for v in metrics.values())
        assert algo.act(np.zeros((3, 5), np.float32)).shape == (3, 3)


@pytest.mark.parametrize("kind", ["fused", "foreach"])
@pytest.mark.parametrize("skip_a_gradient", [False, True])
def test_direct_adams_equal_torch_adam_to_the_bit(kind, skip_a_gradient):
    """offbench.nn.FusedAdam calls the same fused kernel as torch.optim.Adam(fused=True), and
    ForeachAdam Adam's multi-tensor operations, which on the CPU equal its default per-tensor path:
    the same bits, with parameter groups of different learning rates and eps, after a state-dict
    round trip (betas back as a list, as from a JSON checkpoint), once a parameter has missed a step
    (``skip_a_gradient``: Adam's own path takes over where the plan no longer fits), and with step
    hooks registered (through Optimizer's own wrapper)."""
    from offbench.nn import ForeachAdam, FusedAdam

    torch.manual_seed(0)
    params = [torch.randn(5, 4, requires_grad=True) for _ in range(4)] + [torch.randn(3, requires_grad=True)]
    twins = [p.detach().clone().requires_grad_(True) for p in params]
    groups = lambda ps: [{"params": ps[:2]}, {"params": ps[2:], "lr": 1e-2, "eps": 1e-5}]  # noqa: E731
    if kind == "fused":
        ours, theirs = FusedAdam(groups(params), lr=3e-4), torch.optim.Adam(groups(twins), lr=3e-4, fused=True)
    else:
        ours, theirs = ForeachAdam(groups(params), lr=3e-4), torch.optim.Adam(groups(twins), lr=3e-4)

    def step(skip: bool) -> None:
        for group in (params, twins):
            used = group[:4] if skip else group
            sum((p ** 2).sum() * (i + 1) + p.sin().sum() for i, p in enumerate(used)).backward()
        ours.step()
        theirs.step()
        ours.zero_grad()
        theirs.zero_grad()
        for p, q in zip(params, twins):
            assert torch.equal(p, q)

    for i in range(8):
        step(skip_a_gradient and i == 2)
        if i == 4:
            state = copy.deepcopy(ours.state_dict())
            for group in state["param_groups"]:
                group["betas"] = list(group["betas"])
            ours.load_state_dict(state)
    for p, q in zip(params, twins):
        assert torch.equal(ours.state[p]["exp_avg_sq"], theirs.state[q]["exp_avg_sq"])
        assert torch.equal(ours.state[p]["step"], theirs.state[q]["step"])
    calls = []
    ours.register_step_pre_hook(lambda opt, args, kwargs: calls.append("pre"))
    ours.register_step_post_hook(lambda opt, args, kwargs: calls.append("post"))
    step(False)
    assert calls == ["pre", "post"]


def sac_batch(n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """A random batch of online SAC's transitions: 5-number observations, 2 actions in [-1, 1]."""
    return {"observations": torch.randn(n, 5, generator=g), "next_observations": torch.randn(n, 5, generator=g),
            "actions": torch.rand(n, 2, generator=g) * 2 - 1, "rewards": torch.randn(n, generator=g),
            "terminations": (torch.rand(n, generator=g) < 0.1).float()}


def test_online_sac_update_equals_the_per_tensor_adam_update():
    """Online SAC on ForeachAdam takes the same steps, to the bit, as with torch.optim.Adam's default
    path (its replay and skill datasets were generated with that one)."""
    import gymnasium as gym

    from baselines.online.sac import SAC

    space_o, space_a = gym.spaces.Box(-np.inf, np.inf, (5,)), gym.spaces.Box(-1, 1, (2,))
    torch.manual_seed(0)
    ours = SAC(space_o, space_a, seed=3)
    reference = copy.deepcopy(ours)
    for name, module in (("actor", reference.actor), ("critic", reference.critic)):
        setattr(reference, f"{name}_optim", torch.optim.Adam(module.parameters(), lr=3e-4, foreach=False))
    reference.alpha_optim = torch.optim.Adam([reference.log_alpha], lr=3e-4, foreach=False)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        batch = sac_batch(32, g)
        ours.update(batch)
        reference.update(batch)
    for (name, p), q in zip(ours.state_dict().items(), reference.state_dict().values()):
        assert torch.equal(p, q), name


# ---------------------------------------------------------------------- the compiled path
COMPILED_FAST = {"bc", "iql"}  # the others compile for 10-60 s each: marked slow
needs_compiler = pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                                    reason="torch.compile on CPU needs a C++ compiler")


@needs_compiler
@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in COMPILED_FAST else pytest.mark.slow)
                                  for n in ("bc", "td3_bc", "awac", "iql", "cql", "cql_lagrange")])
def test_compiled_update_equals_the_previous_eager_update(name):
    """``compile_update()``: one graph per gradient part, none compiled again after the first
    update, and the same parameters as the reference within float tolerance (inductor fuses and
    reorders the elementwise work; the random draws are the eager generator's, unchanged)."""
    from torch._dynamo.utils import counters

    cls, config, obs_space, act_space, _, _ = CASES[name]
    new, ref, ref_opt = pair(cls, config, obs_space, act_space)
    new.compile_update()
    batches = make_batches(obs_space, act_space, STEPS)
    ref_metrics = run_reference(name, ref, ref_opt, batches)
    torch._dynamo.reset()
    counters.clear()
    new_metrics = [new.update(batches[0]), new.update(batches[1])]
    graphs = counters["stats"]["unique_graphs"]
    assert graphs == len(cls.compiled_parts), dict(counters["recompiles"])
    assert not counters["graph_break"], dict(counters["graph_break"])
    new_metrics += [new.update(b) for b in batches[2:]]
    assert counters["stats"]["unique_graphs"] == graphs  # no recompilation
    assert_same_state(new, ref, new.optimizers(), ref_opt, 1e-4, 1e-5)
    for a, b in zip(new_metrics, ref_metrics):
        assert_same_metrics(a, b, 1e-4, 1e-5)
    assert torch.equal(new.generator.get_state(), ref.generator.get_state())


@needs_compiler
def test_online_sac_compiled_update_equals_the_eager_update():
    """SAC.compile_update (opt-in, SACConfig.compile): the same draws and optimiser steps as the eager
    update, the gradient parts compiled; parameters equal within float tolerance after 6 updates."""
    from baselines.online.sac import SAC, SACConfig

    space_o, space_a = gym.spaces.Box(-np.inf, np.inf, (5,)), gym.spaces.Box(-1, 1, (2,))
    torch.manual_seed(0)
    eager = SAC(space_o, space_a, SACConfig(hidden=(32, 32)), seed=3)
    torch.manual_seed(0)
    compiled = SAC(space_o, space_a, SACConfig(hidden=(32, 32), compile=True), seed=3)
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        batch = sac_batch(16, g)
        eager.update(batch)
        compiled.update(batch)
    for (name, p), q in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
