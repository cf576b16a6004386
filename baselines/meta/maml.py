r"""MAML for reinforcement learning (Finn, Abbeel & Levine, "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks", ICML 2017, Algorithm 3), with a PPO outer step (course notes §13.2).

The policy pi_theta is a small MLP: a Gaussian with a state-independent log standard deviation
for ``Box`` actions (the log-std is adapted too), a categorical for ``Discrete`` ones.

One meta-iteration
------------------
1. Draw ``meta_batch`` tasks T_i from the family (``sample_tasks(meta_batch, seed)``, the seed
   derived from the run's seed and the iteration, so a resumed run draws the same tasks).
2. For each task, roll out ``episodes_per_task`` episodes with pi_theta: the data D_i. Its inner
   loss is the policy-gradient surrogate of eq. (4) (REINFORCE, Williams 1992)::

       L_i(theta; D) = -1/|D| sum_t log pi_theta(a_t | s_t) A_t,

   A_t = G_t - b(s_t), G_t the discounted return-to-go and b a linear feature baseline fitted to
   the returns of D by ridge regression (Duan et al. 2016, "Benchmarking Deep RL for Continuous
   Control"; MAML's baseline), normalised to zero mean and unit variance within D.
3. The adapted parameters, eq. (1) (``inner_steps`` such steps, each on D_i)::

       theta'_i = theta - alpha grad_theta L_i(theta; D_i)

4. Roll out D'_i with pi_{theta'_i} and take ``outer_epochs`` Adam steps on the meta-objective

       J(theta) = 1/n sum_i L^clip(theta'_i(theta); D'_i),
       L^clip(phi; D') = -E[min(rho A, clip(rho, 1 - eps, 1 + eps) A)],  rho = pi_phi(a|s) / pi_old(a|s)

   (PPO's clipped surrogate, Schulman et al. 2017 eq. 7, as the outer step, as ProMP does; MAML
   used TRPO), recomputing theta'_i from the current theta at every epoch. The gradient flows
   through step 3 (second order: d theta'_i / d theta = I - alpha Hess L_i, by autograd through
   ``torch.autograd.grad(..., create_graph=True)`` on ``torch.func.functional_call``); with
   ``first_order=True`` the inner gradient is treated as a constant (first-order MAML, §5.2), so
   d theta'_i / d theta = I.

What this leaves out, as Finn et al. do: the dependence of the pre-update data's distribution on
theta (the term ProMP and DiCE add). :meth:`MAML.meta_loss` is the objective on fixed data, whose
gradient ``tests/test_meta_maml.py`` checks against finite differences.

Meta-test (:meth:`MAML.adapt_and_evaluate`): on held-out tasks, the mean return of
``episodes_per_task`` episodes before adaptation and after each of k inner steps, each step on
the episodes of the policy before it: the "return after k adaptation steps" curve.

Defaults follow the paper's 2-D navigation setting (§5.3 and Appendix A.2): two hidden layers of
100 ReLU units, alpha = 0.1, 20 episodes per task, 20 tasks per meta-batch, discount 0.99; the PPO
outer step uses lr 3e-4, eps 0.2 and 5 epochs (ProMP's settings).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from offbench.checkpoint import load_checkpoint, save_checkpoint
from offbench.cpu import torch_threads
from offbench.errors import OffbenchError
from offbench.nn import seed_everything
from offbench.resumable import resumable_loop


@dataclass
class MAMLConfig:
    hidden: tuple[int, ...] = (100, 100)  # Finn et al., Appendix A.2
    inner_lr: float = 0.1  # alpha, eq. (1); the paper's 2-D navigation value
    inner_steps: int = 1
    first_order: bool = False
    meta_batch: int = 20  # tasks per meta-iteration
    episodes_per_task: int = 20
    gamma: float = 0.99
    outer_lr: float = 3e-4
    outer_epochs: int = 5
    clip_coef: float = 0.2
    baseline_ridge: float = 1e-5  # the linear baseline's regularisation (rllab's reg_coeff)
    init_log_std: float = 0.0
    threads: int = 1


@dataclass
class Rollouts:
    """``episodes`` episodes of one task, padded to the longest: observations [E, T, d] (encoded),
    actions [E, T, ...], rewards and a validity mask [E, T], the behaviour log-probs [E, T]."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    mask: torch.Tensor
    log_probs: torch.Tensor
    advantages: torch.Tensor = field(default=None)

    @property
    def returns(self) -> np.ndarray:
        """Undiscounted return of each episode."""
        return (self.rewards * self.mask).sum(1).numpy()


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = sum_k gamma^k r_{t+k} within each episode (rows), 0 past its end."""
    out = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype)
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        out[:, t] = running
    return out


def linear_baseline(observations: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                    ridge: float) -> torch.Tensor:
    """Fitted values of rllab's ``LinearFeatureBaseline``: least squares on the features
    [s, s^2, t/100, (t/100)^2, (t/100)^3, 1] of the valid steps, ridge ``ridge`` (raised tenfold
    until the solve is finite)."""
    E, T = mask.shape
    t = (torch.arange(T, dtype=torch.float64) / 100.0).expand(E, T).unsqueeze(-1)
    obs = observations.double().clamp(-10, 10)
    features = torch.cat([obs, obs ** 2, t, t ** 2, t ** 3, torch.ones_like(t)], -1)
    valid = mask.bool()
    x, y = features[valid], returns.double()[valid]
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    for k in range(5):
        coef = torch.linalg.solve(x.T @ x + ridge * 10 ** k * eye, x.T @ y)
        if torch.isfinite(coef).all():
            break
    return (features @ coef).to(returns.dtype) * mask


class MAML(nn.Module):
    """MAML-PPO for a meta-RL family (``offbench.envs.meta``): see the module docstring."""

    config_class = MAMLConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: MAMLConfig = MAMLConfig(),
                 seed: int = 0):
        super().__init__()
        self.config, self.seed = config, int(seed)
        if not 0 < config.inner_lr or config.inner_steps < 1 or config.meta_batch < 1 or config.episodes_per_task < 1:
            raise OffbenchError(f"MAML settings must be positive: {asdict(config)}")
        self.discrete_obs = isinstance(observation_space, gym.spaces.Discrete)
        self.obs_dim = int(observation_space.n) if self.discrete_obs else int(np.prod(observation_space.shape))
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if not self.discrete and not isinstance(action_space, gym.spaces.Box):
            raise OffbenchError(f"MAML takes Box or Discrete actions, got {action_space}")
        out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.action_space = action_space
        seed_everything(seed)
        layers, last = [], self.obs_dim
        for width in config.hidden:
            layers += [nn.Linear(last, width), nn.ReLU()]
            last = width
        self.net = nn.Sequential(*layers, nn.Linear(last, out))
        self.log_std = None if self.discrete else nn.Parameter(torch.full((out,), float(config.init_log_std)))
        self.optimizer = torch.optim.Adam(self.parameters(), lr=config.outer_lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.iteration = 0

    # ------------------------------------------------------------------ the policy as a function of its parameters
    def params(self) -> dict[str, torch.Tensor]:
        return dict(self.named_parameters())

    def encode(self, obs) -> torch.Tensor:
        obs = torch.as_tensor(np.asarray(obs))
        if self.discrete_obs:
            return nn.functional.one_hot(obs.long().reshape(obs.shape[:1] + (-1,))[..., 0], self.obs_dim).float()
        return obs.float().reshape(obs.shape[0], -1)

    def log_prob(self, params: dict, observations: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi_params(a | s), elementwise over the leading dimensions."""
        out = functional_call(self, params, (observations,))
        if self.discrete:
            return out.log_softmax(-1).gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        log_std = params["log_std"]
        return (-0.5 * ((actions - out) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        """The logits, or the Gaussian's mean."""
        return self.net(observations)

    # ------------------------------------------------------------------ losses (the paper's equations)
    def inner_loss(self, params: dict, data: Rollouts) -> torch.Tensor:
        """Eq. (4) as a surrogate: -mean_t log pi(a_t | s_t) A_t over the valid steps."""
        logp = self.log_prob(params, data.observations, data.actions)
        return -(logp * data.advantages * data.mask).sum() / data.mask.sum()

    def adapt(self, params: dict, data: Rollouts, *, create_graph: bool) -> dict:
        """Eq. (1): ``inner_steps`` gradient steps on ``inner_loss``. ``create_graph``: keep the
        graph for the second-order meta-gradient; otherwise the step is a constant offset."""
        with torch.enable_grad():  # also under no_grad: the step itself is a gradient
            for _ in range(self.config.inner_steps):
                grads = torch.autograd.grad(self.inner_loss(params, data), list(params.values()),
                                            create_graph=create_graph)
                params = {k: p - self.config.inner_lr * (g if create_graph else g.detach())
                          for (k, p), g in zip(params.items(), grads)}
        return params

    def outer_loss(self, params: dict, data: Rollouts) -> torch.Tensor:
        """PPO's clipped surrogate (eq. 7) of the adapted policy on its own rollouts."""
        ratio = (self.log_prob(params, data.observations, data.actions) - data.log_probs).exp()
        clipped = ratio.clamp(1 - self.config.clip_coef, 1 + self.config.clip_coef)
        surrogate = torch.min(ratio * data.advantages, clipped * data.advantages)
        return -(surrogate * data.mask).sum() / data.mask.sum()

    def meta_loss(self, params: dict, tasks: list[tuple[Rollouts, Rollouts]]) -> torch.Tensor:
        """J(theta) = mean_i L^clip(theta'_i(theta); D'_i), theta'_i = adapt(theta; D_i)."""
        second_order = not self.config.first_order
        losses = [self.outer_loss(self.adapt(params, pre, create_graph=second_order), post) for pre, post in tasks]
        return torch.stack(losses).mean()

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def sample(self, params: dict, observations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(self, params, (observations,))
        if self.discrete:
            actions = torch.multinomial(out.softmax(-1), 1, generator=self.generator).squeeze(-1)
        else:
            noise = torch.randn(out.shape, generator=self.generator)
            actions = out + params["log_std"].exp() * noise
        return actions, self.log_prob(params, observations, actions)

    def env_action(self, action: torch.Tensor):
        if self.discrete:
            return int(action)
        return np.clip(action.numpy(), self.action_space.low, self.action_space.high).astype(self.action_space.dtype)

    def rollouts(self, params: dict, envs: list[gym.Env], task: dict, seed: int) -> Rollouts:
        """One episode in each of ``envs`` on ``task`` with pi_params (seeded resets)."""
        obs = [env.reset(seed=seed + i, options={"task": task})[0] for i, env in enumerate(envs)]
        running = np.ones(len(envs), bool)
        steps: list[tuple] = []
        while running.any():
            o = self.encode(np.stack(obs))
            actions, logp = self.sample(params, o)
            rewards = np.zeros(len(envs))
            alive = running.copy()
            for i in np.flatnonzero(running):
                obs[i], rewards[i], terminated, truncated, _ = envs[i].step(self.env_action(actions[i]))
                running[i] = not (terminated or truncated)
            steps.append((o, actions, torch.as_tensor(rewards, dtype=torch.float32),
                          torch.as_tensor(alive, dtype=torch.float32), logp))
        o, a, r, m, lp = (torch.stack(x, 1) for x in zip(*steps))
        data = Rollouts(o, a, r, m, lp)
        returns = discounted_returns(r, m, self.config.gamma)
        adv = returns - linear_baseline(o, returns, m, self.config.baseline_ridge)
        valid = m.bool()
        adv = (adv - adv[valid].mean()) / (adv[valid].std() + 1e-8)
        data.advantages = adv * m
        return data

    # ------------------------------------------------------------------ training
    def meta_iteration(self, make_env: Callable[[], gym.Env]) -> dict:
        """Steps 1-4 of the module docstring; returns the iteration's statistics."""
        cfg = self.config
        envs = [make_env() for _ in range(cfg.episodes_per_task)]
        seed = self.seed * 1_000_003 + self.iteration * 7919
        tasks = envs[0].unwrapped.sample_tasks(cfg.meta_batch, seed)
        params = self.params()
        batches, pre_returns, post_returns = [], [], []
        for i, task in enumerate(tasks):
            pre = self.rollouts({k: p.detach() for k, p in params.items()}, envs, task, seed + 100 * i)
            adapted = {k: p.detach() for k, p in self.adapt(params, pre, create_graph=False).items()}
            post = self.rollouts(adapted, envs, task, seed + 100 * i + 50)
            batches.append((pre, post))
            pre_returns.append(pre.returns.mean())
            post_returns.append(post.returns.mean())
        for _ in range(cfg.outer_epochs):
            loss = self.meta_loss(self.params(), batches)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.iteration += 1
        return {"iteration": self.iteration, "pre_update_return": float(np.mean(pre_returns)),
                "post_update_return": float(np.mean(post_returns)), "meta_loss": loss.detach().item()}

    def adapt_and_evaluate(self, make_env: Callable[[], gym.Env], tasks: list[dict], steps: int = 1,
                           seed: int = 777_000) -> np.ndarray:
        """Mean return per task [len(tasks), steps + 1]: before adaptation and after each inner step."""
        with torch_threads(self.config.threads):  # the run's own thread count, whatever the caller's
            envs = [make_env() for _ in range(self.config.episodes_per_task)]
            out = np.zeros((len(tasks), steps + 1))
            for i, task in enumerate(tasks):
                params = {k: p.detach() for k, p in self.params().items()}
                for k in range(steps + 1):
                    data = self.rollouts(params, envs, task, seed + 1000 * i + 100 * k)
                    out[i, k] = data.returns.mean()
                    if k < steps:
                        params = {n: p.detach().requires_grad_() for n, p in params.items()}
                        params = {n: p.detach() for n, p in self.adapt(params, data, create_graph=False).items()}
            return out

    def fit(self, make_env: Callable[[], gym.Env], iterations: int, out: str | Path,
            on_iteration: Callable[[dict], None] | None = None) -> list[dict]:
        """Meta-train to ``iterations``, resuming from ``out`` (a checkpoint after every iteration;
        ``metrics.jsonl`` one row per iteration)."""
        with torch_threads(self.config.threads):  # restored after: no thread count left behind
            return resumable_loop(out, iterations, load=self._load, save=self._save, current=lambda: self.iteration,
                                  step=lambda: self.meta_iteration(make_env), on_iteration=on_iteration)

    def _save(self, stem: Path) -> None:
        save_checkpoint(stem, modules={"maml": self}, optimizers={"outer": self.optimizer},
                        generators={"maml": self.generator},
                        extra={"iteration": self.iteration, "config": asdict(self.config)})

    def _load(self, stem: Path) -> None:
        meta = load_checkpoint(stem, modules={"maml": self}, optimizers={"outer": self.optimizer},
                               generators={"maml": self.generator})
        if meta["config"] != json.loads(json.dumps(asdict(self.config))):
            raise OffbenchError(f"{stem.parent} holds a MAML run with other settings; use another folder")
        self.iteration = meta["iteration"]
