r"""Meta-RL metrics: returns per adaptation episode, and regret against exact references.

A *trial* is a run of consecutive episodes of one task (:class:`~offbench.envs.meta.api.MetaTrial`).

- :func:`split_episodes` cuts one trial's per-step rewards at its episode ends (the
  ``info["episode_done"]`` flags of ``MetaTrial``) into per-episode returns;
  :func:`adaptation_curve` averages them over trials: the return after ``k = 1, 2, ...``
  episodes of experience with the task (RL²'s Table 3 and VariBAD's per-episode curves).
- :func:`bayes_regret` is the Bayesian regret of a learner against the Bayes-optimal
  policy: ``V* - (total return of the trial)`` per trial, whose mean estimates
  ``V* - V(learner) >= 0``: the Bayes-optimal policy is by definition the optimal policy of
  the Bayes-adaptive MDP, the one with the highest expected return under the task prior
  (Duff 2002; Zintgraf et al. 2020). :func:`gridnavi_bayes_regret` and
  :func:`bandit_bayes_regret` supply the exact ``V*`` of GridNavi
  (:mod:`~offbench.envs.meta.gridnavi_bayes`) and of short-horizon bandits
  (:func:`~offbench.envs.meta.bandit_references.bayes_optimal_value`).
- :func:`cumulative_regret`: ``sum_{j <= k} (reference_j - return_j)`` after each episode
  ``k``, against any per-episode reference (a known-task optimum, for instance).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from offbench.errors import OffbenchError


@dataclass(frozen=True)
class Regret:
    per_trial: np.ndarray  # [trials]
    reference: float

    @property
    def mean(self) -> float:
        return float(self.per_trial.mean())

    @property
    def stderr(self) -> float:
        n = len(self.per_trial)
        return float(self.per_trial.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def _as_2d(episode_returns, what: str = "episode_returns") -> np.ndarray:
    arr = np.asarray(episode_returns, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.size == 0:
        raise OffbenchError(f"{what} must be [trials, episodes] (or one trial's [episodes]), got shape {arr.shape}")
    return arr


def split_episodes(rewards, episode_done) -> np.ndarray:
    """Per-episode returns of one trial from its per-step rewards and episode-end flags.

    The last episode must be complete (``episode_done[-1]`` true): a partial episode's return
    would silently be compared with whole ones.
    """
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    done = np.asarray(episode_done, dtype=bool).reshape(-1)
    if rewards.shape != done.shape or rewards.size == 0:
        raise OffbenchError(f"rewards and episode_done must be equally long and non-empty, got {rewards.shape} "
                            f"and {done.shape}")
    if not done[-1]:
        raise OffbenchError("the trial's last episode is incomplete (episode_done[-1] is False)")
    ends = np.flatnonzero(done) + 1
    return np.add.reduceat(rewards, np.concatenate([[0], ends[:-1]]))


def adaptation_curve(episode_returns) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over trials of the return of episode ``k`` (``[episodes]`` each)."""
    arr = _as_2d(episode_returns)
    n = arr.shape[0]
    stderr = arr.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(arr.shape[1], np.nan)
    return arr.mean(0), stderr


def bayes_regret(episode_returns, bayes_value: float) -> Regret:
    """Per-trial regret ``V* - sum of the trial's episode returns`` (module doc)."""
    arr = _as_2d(episode_returns)
    return Regret(float(bayes_value) - arr.sum(1), float(bayes_value))


def cumulative_regret(episode_returns, reference) -> np.ndarray:
    """``[trials, episodes]``: regret accumulated after each episode against ``reference``
    (per-episode values, ``[episodes]`` or ``[trials, episodes]``)."""
    arr = _as_2d(episode_returns)
    ref = np.broadcast_to(np.asarray(reference, dtype=np.float64), arr.shape) if np.ndim(reference) else \
        np.full(arr.shape, float(reference))
    return np.cumsum(ref - arr, axis=1)


@lru_cache(maxsize=8)
def _gridnavi_value(width: int, height: int, episode_length: int, episodes: int) -> float:
    from offbench.envs.meta.gridnavi_bayes import solve_bayes_optimal

    return float(solve_bayes_optimal(width, height, episode_length, episodes).value)


def gridnavi_bayes_regret(episode_returns, *, width: int = 5, height: int = 5, episode_length: int = 15) -> Regret:
    """Bayesian regret on GridNavi; the number of episodes per trial is ``episode_returns``'s width."""
    arr = _as_2d(episode_returns)
    return bayes_regret(arr, _gridnavi_value(width, height, episode_length, arr.shape[1]))


def bandit_bayes_regret(totals, *, arms: int, pulls: int) -> Regret:
    """Bayesian regret of bandit trials (``totals``: total reward per trial, or per-pull
    rewards ``[trials, pulls]``) against the exact Bayes-optimal value (short horizons only)."""
    from offbench.envs.meta.bandit_references import bayes_optimal_value

    arr = np.asarray(totals, dtype=np.float64)
    arr = arr[:, None] if arr.ndim == 1 else arr
    if arr.shape[1] not in (1, pulls):
        raise OffbenchError(f"bandit returns must be totals [trials] or per-pull rewards [trials, {pulls}], "
                            f"got shape {np.shape(totals)}")
    return bayes_regret(arr, bayes_optimal_value(arms, pulls))
