"""Learned dynamics for model-based offline RL (MOPO, COMBO): a probabilistic ensemble.

:class:`DynamicsEnsemble` is the model of PETS (Chua et al. 2018) as MBPO (Janner et al. 2019)
and MOPO (Yu et al. 2020) use it (REFERENCE §4): ``members`` (7) Gaussian MLPs, 4 hidden
layers of 200 units with swish (SiLU) activations, each predicting a diagonal Gaussian over
``[s' - s, r]`` from ``[s, a]``; the ``elites`` (5) members with the lowest hold-out error are
the ones used for prediction.

Per member i, with normalised input x = ([s, a] - mu) / sigma (dataset statistics):

    [m_i(x), l_i(x)] = f_i(x)                          (EnsembleMLP, all members in one matmul)
    log-variance, softly clamped into learned bounds (PETS appendix A.1):
        l <- max_i - softplus(max_i - l)
        l <- min_i + softplus(l - min_i)
    loss_i = mean over batch and output dims of the Gaussian negative log-likelihood
        0.5 * ((y - m_i)^2 exp(-l_i) + l_i + log 2 pi)
    total  = sum_i loss_i + 0.01 * sum_i (sum(max_i) - sum(min_i))   (keeps the bounds tight)
           + L2 weight decay per layer (weights only; 2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4 as in MBPO)

``max_i`` starts at 0.5 and ``min_i`` at -10 (PETS), one pair per member and output dim.
Targets are not normalised, so the predicted standard deviations are in the units of the
observation and reward (MOPO's penalty reads them directly).

Training (:meth:`DynamicsEnsemble.fit`): a hold-out set of whole episodes (10% of the
transitions, at most 5000; a random transition split when the dataset has too few episodes);
each member sees its own shuffle of the training set every epoch (minibatches of 256, Adam
1e-3); after every epoch the hold-out MSE of each member's mean is measured, and a member whose
hold-out MSE drops below 0.99 x its best so far keeps a snapshot of its weights. Training
stops when no member has improved by more than 1% for ``patience`` (5) epochs (or at
``max_epochs``); every member is restored to its best snapshot and the elites are the
``elites`` members with the lowest best hold-out MSE.

:meth:`DynamicsEnsemble.predict` samples, for each transition, one elite uniformly at random
and then s' = s + delta and r from that elite's Gaussian; :meth:`DynamicsEnsemble.step` adds the
TRUE termination of the task (``offbench.envs.tasks.Task.is_terminal``), and also terminates
any transition whose prediction is not finite. Everything is vectorised over members and
samples: the only Python loops are over epochs and minibatches.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from offbench.nn import EnsembleMLP

#: L2 weight decay of the 5 layers of a 4x200 model (MBPO's values); other depths interpolate.
DEFAULT_WEIGHT_DECAY = (2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4)
#: Coefficient of the log-variance bound regulariser (PETS).
BOUND_COEF = 0.01
#: Initial soft bounds on the log-variance (PETS).
INIT_MAX_LOGVAR, INIT_MIN_LOGVAR = 0.5, -10.0
#: A member counts as improved when its hold-out MSE falls below (1 - this) x its best.
IMPROVEMENT = 0.01


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gaussian negative log-likelihood per member: ``[M, B, D]`` inputs -> ``[M]``.

    0.5 * ((y - m)^2 exp(-l) + l + log 2 pi), averaged over the batch and output dimensions.
    """
    per_element = 0.5 * ((target - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi))
    return per_element.mean(dim=(-2, -1))


def soft_clamp_logvar(logvar: torch.Tensor, max_logvar: torch.Tensor, min_logvar: torch.Tensor) -> torch.Tensor:
    """PETS' differentiable clamp: ``max - softplus(max - l)``, then ``min + softplus(l - min)``.

    Approximately the identity well inside (min, max), never below ``min``, above ``max`` by at
    most ``softplus(min - max)`` (2.8e-5 for the initial bounds 0.5 and -10: the second clamp
    adds it to a value already at most ``max``), and smooth, so the bounds themselves receive
    gradients and are learned.
    """
    logvar = max_logvar - F.softplus(max_logvar - logvar)
    return min_logvar + F.softplus(logvar - min_logvar)


def holdout_split(episode_of_step: np.ndarray, fraction: float = 0.1, max_holdout: int = 5000, *,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(train rows, hold-out rows) as sorted int64 tensors.

    Whole episodes, taken in random order until they hold ``min(fraction * N, max_holdout)``
    transitions (at least one episode). Neighbouring transitions of one episode are nearly
    identical, so a random-transition hold-out would measure interpolation, not
    generalisation. When episodes are too few or too long for that (fewer than 2 episodes, or
    the chosen ones would hold more than half the data), the split is by random transitions.
    """
    episode_of_step = np.asarray(episode_of_step)
    n = len(episode_of_step)
    target = max(1, min(int(round(fraction * n)), int(max_holdout)))
    if n < 2:
        raise ValueError(f"a hold-out split needs at least 2 transitions, got {n}")
    target = min(target, n - 1)
    num_episodes = int(episode_of_step.max()) + 1 if n else 0
    holdout = None
    if num_episodes >= 2:
        lengths = np.bincount(episode_of_step, minlength=num_episodes)
        order = torch.randperm(num_episodes, generator=generator).numpy()
        count = int(np.searchsorted(np.cumsum(lengths[order]), target)) + 1
        chosen = np.zeros(num_episodes, dtype=bool)
        chosen[order[:count]] = True
        mask = chosen[episode_of_step]
        if 0 < mask.sum() <= n // 2:
            holdout = mask
    if holdout is None:
        holdout = np.zeros(n, dtype=bool)
        holdout[torch.randperm(n, generator=generator)[:target].numpy()] = True
    rows = np.arange(n)
    return torch.from_numpy(rows[~holdout]), torch.from_numpy(rows[holdout])


@dataclass
class Prediction:
    """One model step for a batch of B transitions.

    ``next_observations`` [B, O] and ``rewards`` [B] are the sampled outcome; ``members`` [B]
    the ensemble member each was drawn from; ``means`` and ``stds`` [E, B, O + 1] every
    elite's Gaussian over ``[delta s, r]`` (E = number of elites), for uncertainty estimates.
    """

    next_observations: torch.Tensor
    rewards: torch.Tensor
    members: torch.Tensor
    means: torch.Tensor
    stds: torch.Tensor


class DynamicsEnsemble(nn.Module):
    """Probabilistic ensemble over ``[s' - s, r]`` (see the module docstring).

    ``task`` (an ``offbench.envs.tasks.Task``) supplies the true termination rule for
    :meth:`step`; it is not part of the state dict.
    """

    def __init__(self, obs_dim: int, act_dim: int, members: int = 7, elites: int = 5,
                 hidden: Sequence[int] = (200, 200, 200, 200),
                 weight_decay: Sequence[float] | None = None, task: Any = None):
        super().__init__()
        if not 1 <= elites <= members:
            raise ValueError(f"need 1 <= elites <= members, got elites={elites}, members={members}")
        self.obs_dim, self.act_dim = int(obs_dim), int(act_dim)
        self.members, self.num_elites = int(members), int(elites)
        self.out_dim = self.obs_dim + 1
        self.net = EnsembleMLP(members, obs_dim + act_dim, 2 * self.out_dim, hidden, activation=nn.SiLU)
        layers = len(hidden) + 1
        if weight_decay is None:
            weight_decay = (DEFAULT_WEIGHT_DECAY if layers == len(DEFAULT_WEIGHT_DECAY)
                            else tuple(np.linspace(DEFAULT_WEIGHT_DECAY[0], DEFAULT_WEIGHT_DECAY[-1], layers)))
        if len(weight_decay) != layers:
            raise ValueError(f"weight_decay needs one value per layer ({layers}), got {len(weight_decay)}")
        self.weight_decay = tuple(float(w) for w in weight_decay)
        self.max_logvar = nn.Parameter(torch.full((members, 1, self.out_dim), INIT_MAX_LOGVAR))
        self.min_logvar = nn.Parameter(torch.full((members, 1, self.out_dim), INIT_MIN_LOGVAR))
        self.register_buffer("input_mean", torch.zeros(obs_dim + act_dim))
        self.register_buffer("input_std", torch.ones(obs_dim + act_dim))
        self.register_buffer("elites", torch.arange(elites, dtype=torch.int64))
        self.register_buffer("holdout_mse", torch.full((members,), float("nan")))
        self.task = task

    # ------------------------------------------------------------------ forward
    def layers(self) -> list:
        return [*self.net.hidden, self.net.out]

    def forward(self, obs: torch.Tensor, action: torch.Tensor,
                members: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and bounded log-variance ``[M, B, O + 1]`` of ``[delta s, r]``.

        ``obs``/``action`` are [B, .] (shared by the members) or [M, B, .] (one batch per
        member). ``members`` (int64 [K]) runs only those members, gathering their weights.
        """
        x = (torch.cat([obs, action], dim=-1) - self.input_mean) / self.input_std
        layers = self.layers()
        count = self.members if members is None else len(members)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(count, -1, -1)
        for i, layer in enumerate(layers):
            weight, bias = layer.weight, layer.bias
            if members is not None:
                weight, bias = weight.index_select(0, members), bias.index_select(0, members)
            x = torch.baddbmm(bias, x, weight)
            if i < len(layers) - 1:
                x = F.silu(x, inplace=not torch.is_grad_enabled())  # in place when nothing needs x
        mean, raw_logvar = x.split(self.out_dim, dim=-1)
        max_logvar, min_logvar = self.max_logvar, self.min_logvar
        if members is not None:
            max_logvar, min_logvar = max_logvar.index_select(0, members), min_logvar.index_select(0, members)
        return mean, soft_clamp_logvar(raw_logvar, max_logvar, min_logvar)

    def loss(self, obs: torch.Tensor, action: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(training loss, per-member NLL [M]): sum of member NLLs plus the bound regulariser."""
        mean, logvar = self(obs, action)
        nll = gaussian_nll(mean, logvar, target)
        return nll.sum() + BOUND_COEF * (self.max_logvar.sum() - self.min_logvar.sum()), nll

    @torch.no_grad()
    def mse(self, obs: torch.Tensor, action: torch.Tensor, target: torch.Tensor,
            chunk: int = 20_000) -> torch.Tensor:
        """Per-member MSE of the mean prediction, averaged over transitions and output dims: [M]."""
        total = torch.zeros(self.members, dtype=torch.float64)
        for start in range(0, len(obs), chunk):
            mean, _ = self(obs[start:start + chunk], action[start:start + chunk])
            total += ((mean - target[start:start + chunk]) ** 2).sum(dim=(1, 2)).double()
        return (total / (len(obs) * self.out_dim)).float()

    def select_elites(self, holdout_mse: torch.Tensor) -> torch.Tensor:
        """Record ``holdout_mse`` and make the ``num_elites`` lowest the elites (sorted, best first)."""
        holdout_mse = torch.as_tensor(holdout_mse, dtype=torch.float32)
        self.holdout_mse.copy_(holdout_mse)
        self.elites.copy_(torch.argsort(holdout_mse, stable=True)[: self.num_elites])
        return self.elites

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict(self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None = None,
                deterministic: bool = False) -> Prediction:
        """Sample s' and r from a uniformly random elite per transition (its mean if ``deterministic``)."""
        obs, action = obs.float(), action.float()
        means, logvars = self(obs, action, members=self.elites)  # [E, B, O + 1]
        stds = (0.5 * logvars).exp()
        batch = obs.shape[0]
        pick = torch.randint(self.num_elites, (batch,), generator=generator, device=obs.device)
        rows = torch.arange(batch, device=obs.device)
        sample = means[pick, rows]
        if not deterministic:
            noise = torch.randn(sample.shape, generator=generator, device=obs.device, dtype=sample.dtype)
            sample = sample + stds[pick, rows] * noise
        return Prediction(next_observations=obs + sample[:, :self.obs_dim], rewards=sample[:, self.obs_dim],
                          members=self.elites[pick], means=means, stds=stds)

    @torch.no_grad()
    def step(self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None = None,
             deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Prediction]:
        """(next observations [B, O], rewards [B], terminated [B] bool, prediction).

        ``terminated`` is the task's true termination rule on (s, a, s'), or'ed with "the
        prediction is not finite" (such transitions must not be bootstrapped from or stored).
        """
        if self.task is None:
            raise ValueError("DynamicsEnsemble.step needs a task (its true termination rule); pass task=...")
        prediction = self.predict(obs, action, generator, deterministic)
        next_obs, reward = prediction.next_observations, prediction.rewards
        terminated = self.task.is_terminal(obs, action, next_obs).to(obs.device)
        finite = torch.isfinite(next_obs).all(-1) & torch.isfinite(reward)
        return next_obs, reward, terminated | ~finite, prediction

    # ------------------------------------------------------------------ training
    def fit_normalizer(self, obs: torch.Tensor, action: torch.Tensor) -> None:
        """Input mean/std from the training inputs (a constant input keeps std 1)."""
        x = torch.cat([obs, action], dim=-1).double()
        std = x.std(0)
        self.input_mean.copy_(x.mean(0).float())
        self.input_std.copy_(torch.where(std < 1e-12, torch.ones_like(std), std).float())

    def fit(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor, reward: torch.Tensor,
            episode_of_step: np.ndarray | None = None, *, generator: torch.Generator, lr: float = 1e-3,
            batch_size: int = 256, holdout_fraction: float = 0.1, max_holdout: int = 5000, patience: int = 5,
            max_epochs: int | None = None, log=None) -> dict:
        """Train on transitions (see the module docstring); returns a summary of the training.

        ``episode_of_step`` ([N] episode index) makes the hold-out split by whole episodes.
        All randomness comes from ``generator``. ``log(epoch, info)`` is called after each epoch.
        """
        obs, action, next_obs = obs.float(), action.float(), next_obs.float()
        target = torch.cat([next_obs - obs, reward.float().reshape(-1, 1)], dim=-1)
        n = len(obs)
        if episode_of_step is None:
            episode_of_step = np.arange(n)
        train_rows, holdout_rows = holdout_split(episode_of_step, holdout_fraction, max_holdout, generator=generator)
        x_obs, x_act, y = obs[train_rows], action[train_rows], target[train_rows]
        h_obs, h_act, h_y = obs[holdout_rows], action[holdout_rows], target[holdout_rows]
        self.fit_normalizer(x_obs, x_act)

        groups = [{"params": [layer.weight], "weight_decay": wd} for layer, wd in zip(self.layers(), self.weight_decay)]
        groups.append({"params": [layer.bias for layer in self.layers()] + [self.max_logvar, self.min_logvar],
                       "weight_decay": 0.0})
        optim = torch.optim.Adam(groups, lr=lr)
        params = list(self.parameters())  # every parameter's leading dimension is the member
        snapshot = [p.detach().clone() for p in params]
        best = torch.full((self.members,), float("inf"))
        n_train = len(x_obs)
        epoch, since_improved, started = 0, 0, time.perf_counter()
        history = []
        while max_epochs is None or epoch < max_epochs:
            order = torch.argsort(torch.rand(self.members, n_train, generator=generator), dim=1)
            nll_sum = 0.0
            for start in range(0, n_train, batch_size):
                rows = order[:, start:start + batch_size]  # [M, b]: each member its own shuffle
                loss, nll = self.loss(x_obs[rows], x_act[rows], y[rows])
                optim.zero_grad(set_to_none=True)
                loss.backward()
                optim.step()
                nll_sum += float(nll.detach().mean()) * rows.shape[1]
            epoch += 1
            mse = self.mse(h_obs, h_act, h_y)
            improved = mse < (1.0 - IMPROVEMENT) * best
            with torch.no_grad():
                for p, s in zip(params, snapshot):
                    s.copy_(torch.where(improved.view(-1, *[1] * (p.dim() - 1)), p, s))
            best = torch.where(improved, mse, best)
            since_improved = 0 if bool(improved.any()) else since_improved + 1
            info = {"epoch": epoch, "train_nll": nll_sum / n_train, "holdout_mse": mse.tolist(),
                    "improved": int(improved.sum()), "seconds": time.perf_counter() - started}
            history.append(info)
            if log is not None:
                log(epoch, info)
            if since_improved >= patience:
                break
        with torch.no_grad():
            for p, s in zip(params, snapshot):
                p.copy_(s)
        self.select_elites(best)
        return {"epochs": epoch, "seconds": time.perf_counter() - started, "train_transitions": n_train,
                "holdout_transitions": len(holdout_rows), "holdout_mse": best.tolist(),
                "elites": self.elites.tolist(), "elite_holdout_mse": float(best[self.elites].mean()),
                "history": history}


__all__ = ["DynamicsEnsemble", "Prediction", "gaussian_nll", "holdout_split", "soft_clamp_logvar"]
