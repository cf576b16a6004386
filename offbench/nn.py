"""Shared network building blocks: MLPs, batched ensembles, policy heads, target updates, seeding.

Every algorithm in ``baselines/`` builds from these; none defines its own MLP.
Ensembles (twin critics, critic ensembles, dynamics models) keep their weights shaped
``[members, in, out]`` and run all members in one batched matmul (``torch.baddbmm``).
"""
from __future__ import annotations

import math
import random
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

try:  # private to torch; without them FusedAdam always takes Optimizer's hook wrapper (slower, same result)
    from torch.optim.optimizer import _global_optimizer_post_hooks, _global_optimizer_pre_hooks
except ImportError:  # pragma: no cover
    _global_optimizer_post_hooks = _global_optimizer_pre_hooks = {None: None}

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch global generators (components own generators too)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def mlp(in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256), activation: type[nn.Module] = nn.ReLU,
        layer_norm: bool = False, dropout: float = 0.0) -> nn.Sequential:
    """Linear -> [LayerNorm] -> activation -> [Dropout] per hidden layer, then a linear output."""
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers.append(nn.Linear(last, width))
        if layer_norm:
            layers.append(nn.LayerNorm(width))
        layers.append(activation())
        if dropout:
            layers.append(nn.Dropout(dropout))
        last = width
    layers.append(nn.Linear(last, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``members`` independent linear layers applied in one batched matmul.

    Input [members, B, in] (or [B, in], shared by every member); output [members, B, out].
    Each member is initialised like ``nn.Linear`` (uniform ±1/sqrt(in)).
    """

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.members, self.in_dim, self.out_dim = members, in_dim, out_dim
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.out_dim == 1:
            # A matrix-vector product per member. As a batched matmul with one output column it ran
            # 3-7x slower on CPU than this broadcast product (the bmm kernel has no fast path for
            # N = 1): 0.49 ms against 0.07 ms forward and backward at [2, 256, 256], 16 ms against
            # 6 ms at CQL's [2, 7936, 256] (1 thread). The same sums, in another order.
            return (x * self.weight.transpose(-1, -2)).sum(-1, keepdim=True) + self.bias
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"members={self.members}, in={self.in_dim}, out={self.out_dim}"


class EnsembleMLP(nn.Module):
    """An ensemble of MLPs sharing one architecture; output [members, B, out_dim]."""

    def __init__(self, members: int, in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256),
                 activation: type[nn.Module] = nn.ReLU, layer_norm: bool = False):
        super().__init__()
        self.members = members
        dims = [in_dim, *hidden]
        self.hidden = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(nn.LayerNorm(b) for b in hidden) if layer_norm else None
        self.activation = activation()
        self.out = EnsembleLinear(members, dims[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.hidden):
            x = layer(x)
            if self.norms is not None:
                x = self.norms[i](x)
            x = self.activation(x)
        return self.out(x)


class QEnsemble(nn.Module):
    """Q(s, a) for ``members`` critics at once (twin critics: members=2). Output [members, B]."""

    def __init__(self, obs_dim: int, act_dim: int, members: int = 2, hidden: Sequence[int] = (256, 256),
                 layer_norm: bool = False):
        super().__init__()
        self.net = EnsembleMLP(members, obs_dim + act_dim, 1, hidden, layer_norm=layer_norm)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


def register_action_bounds(module: nn.Module, act_dim: int, low: np.ndarray | None, high: np.ndarray | None) -> None:
    """Buffers ``action_scale`` = (high - low) / 2 and ``action_bias`` = (high + low) / 2 (default [-1, 1]),
    mapping a tanh output in [-1, 1] onto the action box; saved with every checkpoint."""
    low_t = torch.as_tensor(-np.ones(act_dim) if low is None else low, dtype=torch.float32)
    high_t = torch.as_tensor(np.ones(act_dim) if high is None else high, dtype=torch.float32)
    module.register_buffer("action_scale", (high_t - low_t) / 2)
    module.register_buffer("action_bias", (high_t + low_t) / 2)


class TanhGaussianPolicy(nn.Module):
    """Squashed Gaussian policy of SAC (Haarnoja et al. 2018, appendix C).

    a = scale * tanh(u) + bias, u ~ N(mu(s), sigma(s)); the log-density includes the
    change-of-variables term log|det da/du| = sum log(scale * (1 - tanh(u)^2)) (eq. 21).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256),
                 action_low: np.ndarray | None = None, action_high: np.ndarray | None = None):
        super().__init__()
        self.net = mlp(obs_dim, 2 * act_dim, hidden)
        register_action_bounds(self, act_dim, action_low, action_high)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def forward(self, obs: torch.Tensor, deterministic: bool = False,
                generator: torch.Generator | None = None,
                noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample (reparameterised) an action and its log-probability [B]. ``noise``: the standard
        normal draw to use instead of drawing one from ``generator`` (shape of the action batch)."""
        mean, log_std = self.distribution(obs)
        std = log_std.exp()
        if deterministic:
            u = mean
        else:
            if noise is None:
                noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            u = mean + std * noise
        return self._squash(u, mean, log_std)

    def _squash(self, u, mean, log_std):
        log_prob = (-0.5 * ((u - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log(1 - tanh(u)^2) computed stably as 2 * (log 2 - u - softplus(-2u)).
        log_prob = log_prob - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        log_prob = log_prob - torch.log(self.action_scale).sum()
        return torch.tanh(u) * self.action_scale + self.action_bias, log_prob

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        """Log-density of given (in-bounds) actions; actions are clipped just inside the bounds."""
        mean, log_std = self.distribution(obs)
        y = ((action - self.action_bias) / self.action_scale).clamp(-1 + eps, 1 - eps)
        return self._squash(torch.atanh(y), mean, log_std)[1]


class GaussianPolicy(nn.Module):
    """Unsquashed diagonal Gaussian with state-independent log-std (AWR/AWAC/IQL style);
    the mean is squashed by tanh into the action bounds."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256),
                 action_low: np.ndarray | None = None, action_high: np.ndarray | None = None):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden)
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        register_action_bounds(self, act_dim, action_low, action_high)

    def mean_std(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussian's mean [B, A] and standard deviation [A]."""
        mean = torch.tanh(self.net(obs)) * self.action_scale + self.action_bias
        std = self.log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp() * self.action_scale
        return mean, std

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(*self.mean_std(obs))

    @staticmethod
    def gaussian_log_prob(mean: torch.Tensor, std: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """sum_i log N(action_i; mean_i, std_i^2) [B]: ``Normal(mean, std).log_prob(action).sum(-1)`` term by
        term, without the distribution object (whose argument checks read tensors back to the host
        every call: a device synchronisation, and about 20 small ops)."""
        return (-((action - mean) ** 2) / (2 * std ** 2) - std.log() - math.log(math.sqrt(2 * math.pi))).sum(-1)

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.gaussian_log_prob(*self.mean_std(obs), action)

    def sample(self, mean: torch.Tensor, std: torch.Tensor, deterministic: bool = False,
               generator: torch.Generator | None = None, with_log_prob: bool = True,
               noise: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``forward`` from a precomputed ``mean_std``: (action clipped into the box, its log-density,
        or None when ``with_log_prob`` is False). ``noise``: the standard normal draw to use instead
        of drawing one from ``generator``."""
        if deterministic:
            action = mean
        else:
            if noise is None:
                noise = torch.randn(mean.shape, generator=generator, device=mean.device)
            action = mean + std * noise
        low, high = self.action_bias - self.action_scale, self.action_bias + self.action_scale
        action = torch.max(torch.min(action, high), low)
        return action, self.gaussian_log_prob(mean, std, action) if with_log_prob else None

    def forward(self, obs: torch.Tensor, deterministic: bool = False,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sample(*self.mean_std(obs), deterministic=deterministic, generator=generator)


class DeterministicPolicy(nn.Module):
    """a = scale * tanh(f(s)) + bias (TD3+BC, BC)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256),
                 action_low: np.ndarray | None = None, action_high: np.ndarray | None = None):
        super().__init__()
        self.net = mlp(obs_dim, act_dim, hidden)
        register_action_bounds(self, act_dim, action_low, action_high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs)) * self.action_scale + self.action_bias


class CategoricalPolicy(nn.Module):
    """Softmax policy over ``n`` discrete actions (logits from an MLP)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.net = mlp(obs_dim, n_actions, hidden)

    def distribution(self, obs: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.net(obs))

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``Categorical(logits).log_prob(action)`` without the distribution's argument checks (a host
        read-back every call): logits normalised by their log-sum-exp, as the distribution does."""
        logits = self.net(obs)
        logits = logits - logits.logsumexp(dim=-1, keepdim=True)
        return logits.gather(-1, action.long().unsqueeze(-1)).squeeze(-1)

    def forward(self, obs: torch.Tensor, deterministic: bool = False,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(obs)
        if deterministic:
            action = logits.argmax(-1)
        else:
            action = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(-1)
        return action, torch.log_softmax(logits, -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def soft_update(target: nn.Module | list[torch.Tensor], source: nn.Module | list[torch.Tensor], tau: float) -> None:
    """Polyak averaging: target <- tau * source + (1 - tau) * target, as one ``torch._foreach_lerp_``
    call over every parameter. Modules, or lists of their parameters (saves listing them each step)."""
    target_params = list(target.parameters()) if isinstance(target, nn.Module) else target
    source_params = list(source.parameters()) if isinstance(source, nn.Module) else source
    torch._foreach_lerp_(target_params, source_params, tau)


class RunningNormalizer(nn.Module):
    """Fixed observation normaliser (mean/std from the dataset), saved with the checkpoint."""

    def __init__(self, dim: int | tuple[int, ...], eps: float = 1e-3):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.eps = eps

    def fit(self, data: np.ndarray | torch.Tensor) -> "RunningNormalizer":
        data = torch.as_tensor(data, dtype=torch.float32)
        self.mean.copy_(data.mean(0))
        self.std.copy_(data.std(0) + self.eps)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ObservationEncoder(nn.Module):
    """Observations -> float features: Box observations flattened and (optionally) normalised
    with the dataset's mean/std, Discrete observations one-hot. The statistics are buffers, so
    they are saved with every checkpoint and applied identically at evaluation."""

    def __init__(self, space, normalize: bool = True, eps: float = 1e-3):
        super().__init__()
        import gymnasium as gym

        self.discrete = isinstance(space, gym.spaces.Discrete)
        self.dim = int(space.n) if self.discrete else int(np.prod(space.shape))
        self.normalize = normalize and not self.discrete
        self.eps = eps
        self.register_buffer("mean", torch.zeros(self.dim))
        self.register_buffer("std", torch.ones(self.dim))

    def fit(self, observations: np.ndarray) -> "ObservationEncoder":
        if self.normalize:
            data = torch.as_tensor(np.asarray(observations).reshape(len(observations), -1), dtype=torch.float64)
            self.mean.copy_(data.mean(0).float())
            self.std.copy_((data.std(0) + self.eps).float())
        return self

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            # F.one_hot's range check reads the indices back to the host (a device synchronisation);
            # scatter checks them in its kernel. The same 0/1 rows.
            index = obs.long().reshape(-1, 1)
            return torch.zeros(len(index), self.dim, device=obs.device).scatter_(1, index, 1.0)
        obs = obs.reshape(obs.shape[0], -1).float()
        return (obs - self.mean) / self.std if self.normalize else obs


def _adam_step(optimizer: torch.optim.Adam, closure=None):
    """``torch.optim.Adam.step`` itself (its grad-mode handling included), without the profiler
    label and step hooks that ``Optimizer`` wraps around it once an ``Adam`` has been made."""
    step = torch.optim.Adam.step
    return (step.__wrapped__ if getattr(step, "hooked", False) else step)(optimizer, closure)


class _DirectAdam(torch.optim.Adam):
    """What :class:`FusedAdam` and :class:`ForeachAdam` share: a *plan* of the kernel calls of one
    step, made once (again after a state-dict load, a new parameter group or a changed
    hyperparameter) from the optimiser's state; ``step`` runs it with gradients off, and falls back
    to ``Adam.step``'s own path wherever the plan does not apply (no state yet, a parameter without
    a gradient, a closure). ``Optimizer`` wraps every subclass's ``step`` in a profiler label and
    the step hooks (about 13 us a call); here that wrapper runs only when a hook is registered or a
    profiler records. ``zero_grad`` sets every gradient to None."""

    def __init__(self, params, lr: float = 1e-3, **kwargs):
        super().__init__(params, lr=lr, **kwargs)
        self._plan: list | None = None  # the kernel calls' tensors, per call
        self._plan_keys: list | None = None  # the groups' hyperparameters the plan was made for

    @staticmethod
    def _hyper(group) -> tuple:
        raise NotImplementedError

    def _make_plan(self) -> list | None:
        """The tensors of one step's kernel calls, or None when ``Adam.step`` must take over."""
        raise NotImplementedError

    def _run_plan(self, grads: list[list[torch.Tensor]]) -> None:
        """One step's kernel calls with ``grads`` (one list per planned call)."""
        raise NotImplementedError

    def _bypassed(self) -> bool:
        """Whether this step must take ``Adam.step``'s path whatever the plan."""
        return False

    def load_state_dict(self, state_dict) -> None:
        super().load_state_dict(state_dict)
        self._plan = None  # the state tensors were replaced

    def add_param_group(self, param_group) -> None:
        super().add_param_group(param_group)
        self._plan = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        if not set_to_none:
            return super().zero_grad(set_to_none=False)
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _step(self, closure=None):
        if closure is not None or self._bypassed():
            return _adam_step(self, closure)
        keys = [self._hyper(group) for group in self.param_groups]
        if self._plan is None or keys != self._plan_keys:  # first step, a new lr, reloaded state
            self._plan, self._plan_keys = self._make_plan(), keys
            if self._plan is None:
                return _adam_step(self)
        grads = [[p.grad for p in call[0]] for call in self._plan]
        if any(g is None for call in grads for g in call):
            self._plan = None  # Adam skips that parameter: the state may no longer fit the plan
            return _adam_step(self)
        grad_enabled = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        try:
            self._run_plan(grads)
        finally:
            torch.set_grad_enabled(grad_enabled)
        return None

    _hooked_step = torch.optim.Optimizer.profile_hook_step(_step)

    def step(self, closure=None):
        if self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks or _global_optimizer_pre_hooks \
                or _global_optimizer_post_hooks or torch.autograd._profiler_enabled():
            return self._hooked_step(closure)
        return self._step(closure)

    step.hooked = True  # tells Optimizer not to wrap it (see _patch_step_function)


class FusedAdam(_DirectAdam):
    """``torch.optim.Adam(fused=True)`` whose ``step`` calls the fused kernel directly.

    The same kernel, with the same arguments, as ``torch.optim.Adam``'s fused path, so the same
    parameters to the bit (``tests/test_update_equivalence.py``); the state dict is Adam's. What it
    skips is the per-step Python of ``Adam.step`` and of the profiler/hook wrapper ``Optimizer``
    puts around it: building six lists per parameter group, lazy state checks, grouping by device
    (85 -> 52 us per step of a 2x256 MLP on this CPU, of which 38 us is the kernel; 225 -> 137 us
    for IQL's three groups). Groups whose hyperparameters are equal share one kernel call. Anything
    outside the plain case (a parameter without a gradient, amsgrad, a ``grad_scale``, a tensor
    learning rate, no state yet) takes ``Adam.step``'s own path.
    """

    def __init__(self, params, lr: float = 1e-3, **kwargs):
        kwargs.setdefault("fused", True)
        super().__init__(params, lr=lr, **kwargs)

    @staticmethod
    def _hyper(group) -> tuple:
        # betas come back from a JSON checkpoint as a list
        return group["lr"], tuple(group["betas"]), group["weight_decay"], group["eps"], group["maximize"]

    def _bypassed(self) -> bool:
        return getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None

    def _make_plan(self):
        calls: dict[tuple, list] = {}
        for group in self.param_groups:
            if not group["fused"] or group["amsgrad"] or group["differentiable"] or \
                    group["decoupled_weight_decay"] or torch.is_tensor(group["lr"]):
                return None
            params = list(group["params"])
            if not all(p in self.state and "exp_avg" in self.state[p] for p in params):
                return None
            merged = calls.setdefault(self._hyper(group), [[], [], [], []])
            for p in params:
                state = self.state[p]
                for into, item in zip(merged, (p, state["exp_avg"], state["exp_avg_sq"], state["step"])):
                    into.append(item)
        return [(params, avgs, sqs, steps, {"lr": lr, "beta1": betas[0], "beta2": betas[1],
                                            "weight_decay": weight_decay, "eps": eps, "maximize": maximize})
                for (lr, betas, weight_decay, eps, maximize), (params, avgs, sqs, steps) in calls.items()]

    def _run_plan(self, grads) -> None:
        for (params, avgs, sqs, steps, kwargs), call_grads in zip(self._plan, grads):
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(params, call_grads, avgs, sqs, [], steps, amsgrad=False, grad_scale=None,
                               found_inf=None, **kwargs)


class ForeachAdam(_DirectAdam):
    """``torch.optim.Adam(foreach=True)`` whose ``step`` issues the multi-tensor kernels directly.

    The same operations, in the same order, with the same arguments as Adam's multi-tensor path
    (``_multi_tensor_adam``), which on the CPU gives the same bits as its default per-tensor loop
    too, so switching an algorithm to it changes none of its numbers
    (``tests/test_update_equivalence.py``). The fused kernel of :class:`FusedAdam` is faster but
    rounds differently: algorithms whose results are already published as datasets (SAC, which
    generates replay and skill data) or tables (PPO and RL²) keep Adam's numbers with this one.
    What it skips is ``Adam.step``'s per-call Python: grouping tensors by device, a host read of
    every parameter's step count, the profiler/hook wrapper (about 250 of 530 us per step of
    PPO's 12-13 small parameters here). Every parameter of a group has taken the same number of
    steps, so the bias corrections are computed once per group. Anything outside the plain case
    (a parameter without a gradient, step counts that differ, amsgrad, weight decay, maximize,
    complex parameters, a closure or a tensor hyperparameter) takes ``Adam.step``'s own path.
    """

    _one = torch.tensor(1.0)

    def __init__(self, params, lr: float = 1e-3, **kwargs):
        kwargs["foreach"] = True
        super().__init__(params, lr=lr, **kwargs)

    @staticmethod
    def _hyper(group) -> tuple:
        return group["lr"], tuple(group["betas"]), group["eps"]

    def _make_plan(self):
        plan = []
        for group in self.param_groups:
            if group["amsgrad"] or group["weight_decay"] or group["maximize"] or group["differentiable"] or \
                    group["capturable"] or group["fused"] or torch.is_tensor(group["lr"]) or \
                    any(torch.is_tensor(b) for b in group["betas"]):
                return None
            params = list(group["params"])
            if not all(p in self.state and "exp_avg" in self.state[p] and not p.is_complex() and p.device.type == "cpu"
                       for p in params):
                return None
            steps = [self.state[p]["step"] for p in params]
            if len({float(step) for step in steps}) > 1:
                return None
            plan.append((params, [self.state[p]["exp_avg"] for p in params],
                         [self.state[p]["exp_avg_sq"] for p in params], steps))
        return plan

    def _run_plan(self, grads) -> None:
        for (params, avgs, sqs, steps), group_grads, (lr, (beta1, beta2), eps) in \
                zip(self._plan, grads, self._plan_keys):
            # _multi_tensor_adam, capturable=False, on the CPU, line by line
            torch._foreach_add_(steps, self._one, alpha=1.0)
            torch._foreach_lerp_(avgs, group_grads, 1 - beta1)
            torch._foreach_mul_(sqs, beta2)
            torch._foreach_addcmul_(sqs, group_grads, group_grads, 1 - beta2)
            step = steps[0].item()
            step_size = (lr / (1 - beta1 ** step)) * -1
            bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
            denom = torch._foreach_sqrt(sqs)
            torch._foreach_div_(denom, [bias_correction2_sqrt] * len(denom))
            torch._foreach_add_(denom, eps)
            torch._foreach_addcdiv_(params, avgs, denom, [step_size] * len(denom))


def adam(params, lr: float, **kwargs) -> torch.optim.Adam:
    """Adam with PyTorch's fused kernel (:class:`FusedAdam`): one op updates every parameter
    (measured ~5% more BC steps/s on this CPU than the default multi-tensor Adam, and about 2%
    more again without ``Adam.step``'s Python; the same update rule, the same numbers)."""
    return FusedAdam(params, lr=lr, **kwargs)
