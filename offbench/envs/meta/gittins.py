r"""Gittins indices of Bernoulli arms with Beta posteriors, by calibration (retirement).

Definition (Gittins 1979; Gittins, Glazebrook & Weber 2011). An arm whose
success probability has posterior ``Beta(a, b)`` pays 1 with probability ``p = a / (a + b)``
and moves to ``Beta(a + 1, b)`` on a success, ``Beta(a, b + 1)`` on a failure; rewards are
discounted by ``gamma`` per pull. Offer the option of retiring forever with a reward of
``lam`` per step, worth ``M = lam / (1 - gamma)`` (Whittle's retirement formulation,
Gittins et al. 2011). The optimal value of the arm-or-retire problem is::

    V(a, b) = max( M,  C(a, b) ),
    C(a, b) = p + gamma * ( p V(a + 1, b) + (1 - p) V(a, b + 1) )      (continue once)

and the Gittins index is the retirement rate that makes the decision-maker indifferent at
the start: ``nu(a, b) = the lam at which C(a, b) = M`` (the "calibration" of the arm against
a standard arm paying ``lam``).

Computation. The recursion is solved backwards over ``horizon`` further pulls. At the
horizon the arm's mean is treated as known, ``V = max(M, p / (1 - gamma))`` (the usual
truncation in computing Bernoulli indices). Any stopping rule's payoff is affine in ``lam``,
so ``C`` is a maximum of affine functions: ``D(lam) = C(lam) - lam / (1 - gamma)`` is convex
and decreasing (slope at most -1). The index is the root of ``D``. This module evaluates the
recursion for a whole grid of ``lam`` at once (NumPy over ``[grid, states]``), finds the grid
interval holding each state's root, and brackets the root inside it from both sides: the
tangent at the left end (a subgradient carried through the recursion as ``dV/dlam``) meets
zero below the root, the chord through both ends meets zero above it (convexity). Both are
exact when the optimal stopping rule does not change inside the interval.
:func:`gittins_index` (one state) zooms the grid into the bracket until it is narrower than
``tol``; :func:`gittins_table` (every state within ``depth`` pulls, for index policies) makes
one pass and reports each entry's bracket half-width as its error bound (about 1e-4 with the
default grid for the tables the RL² references use; an index policy only compares indices,
so such errors matter only between arms whose indices are that close).

The horizon is chosen so that truncation moves an index by at most ``tol``: a change of the
terminal values by at most ``1 / (1 - gamma)`` changes ``D`` by at most
``gamma**horizon / (1 - gamma)``, and ``|D'| >= 1``.

Checked in tests/test_meta_tasks.py against a published table (uniform prior, as printed in
Christian & Griffiths 2016, ch. 2): gamma = 0.9: Beta(1,1) 0.7029, Beta(2,2) 0.6346, Beta(3,3)
0.6010, Beta(10,2) 0.8695; gamma = 0.99: Beta(1,1) 0.8699.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from offbench.errors import OffbenchError


def _check_gamma(gamma: float) -> float:
    if not (isinstance(gamma, (int, float, np.floating)) and 0.0 < float(gamma) < 1.0):
        raise OffbenchError(f"the Gittins discount must lie strictly between 0 and 1, got {gamma!r}")
    return float(gamma)


def truncation_horizon(gamma: float, tol: float) -> int:
    """Pulls to look ahead so that truncation moves an index by at most ``tol`` (module doc)."""
    gamma = _check_gamma(gamma)
    if not tol > 0:
        raise OffbenchError(f"tol must be positive, got {tol!r}")
    return max(1, math.ceil(math.log(tol * (1.0 - gamma)) / math.log(gamma)))


@dataclass(frozen=True)
class GittinsTable:
    """Indices of every posterior reachable within ``depth`` pulls of ``Beta(a0, b0)``.

    ``index[j, i]`` is the index of ``Beta(a0 + i, b0 + j - i)`` (``j`` pulls, ``i``
    successes; entries with ``i > j`` are NaN); ``error[j, i]`` bounds that entry's error
    (bracket half-width plus the truncation bound).
    """

    gamma: float
    a0: float
    b0: float
    index: np.ndarray  # [depth + 1, depth + 1]
    error: np.ndarray  # [depth + 1, depth + 1]

    def lookup(self, successes: np.ndarray, failures: np.ndarray) -> np.ndarray:
        return self.index[successes + failures, successes]


def _brackets(a0: float, b0: float, gamma: float, lams: np.ndarray, record_depth: int,
              horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """For every state within ``record_depth`` pulls of ``Beta(a0, b0)``: the bracket
    ``[lower, upper]`` of its index inside the grid ``lams`` (ascending, spanning the root)."""
    scale = 1.0 / (1.0 - gamma)
    retire = lams[:, None] * scale  # M per grid point, [G, 1]
    depth = record_depth + horizon
    succ = np.arange(depth + 1)
    p = (a0 + succ) / (a0 + b0 + depth)
    known = p[None, :] * scale
    value = np.maximum(retire, known)
    slope = np.where(retire >= known, scale, 0.0)  # dV/dlam
    lower = np.full((record_depth + 1, record_depth + 1), np.nan)
    upper = np.full((record_depth + 1, record_depth + 1), np.nan)
    for j in range(depth - 1, -1, -1):
        p = (a0 + succ[: j + 1]) / (a0 + b0 + j)
        cont = p + gamma * (p * value[:, 1:] + (1.0 - p) * value[:, :-1])
        cont_slope = gamma * (p * slope[:, 1:] + (1.0 - p) * slope[:, :-1])
        if j <= record_depth:
            gap = cont - retire  # D(lam) per grid point and state, decreasing in lam
            gap_slope = cont_slope - scale
            k = np.clip((gap >= 0).sum(0) - 1, 0, len(lams) - 2)  # last grid point with D >= 0
            cols = np.arange(j + 1)
            d_left, d_right = gap[k, cols], gap[k + 1, cols]
            lam_left, lam_right = lams[k], lams[k + 1]
            newton = lam_left - d_left / gap_slope[k, cols]  # tangent root: below the root
            chord = lam_left + d_left * (lam_right - lam_left) / np.maximum(d_left - d_right, 1e-300)
            lower[j, : j + 1] = np.clip(newton, lam_left, lam_right)
            upper[j, : j + 1] = np.clip(chord, lam_left, lam_right)
        value = np.maximum(retire, cont)
        slope = np.where(cont > retire, cont_slope, scale)
    return lower, upper


def gittins_index(a: float, b: float, gamma: float, *, tol: float = 1e-7, grid: int = 8) -> float:
    """The Gittins index of an arm with posterior ``Beta(a, b)`` under discount ``gamma``."""
    gamma = _check_gamma(gamma)
    if not (a > 0 and b > 0):
        raise OffbenchError(f"Beta parameters must be positive, got a={a!r}, b={b!r}")
    horizon = truncation_horizon(gamma, tol / 2)
    lo, hi = a / (a + b), 1.0  # the index is at least the mean and at most the best reward
    while hi - lo > tol / 2:
        lams = np.linspace(lo, hi, grid)
        lower, upper = _brackets(a, b, gamma, lams, 0, horizon)
        lo, hi = float(lower[0, 0]), max(float(upper[0, 0]), float(lower[0, 0]))
    return 0.5 * (lo + hi)


def gittins_table(depth: int, gamma: float, *, a0: float = 1.0, b0: float = 1.0, tol: float = 1e-6,
                  grid: int = 256) -> GittinsTable:
    """Indices of all posteriors within ``depth`` pulls of ``Beta(a0, b0)`` (one grid pass of
    ``grid`` retirement rates; truncation error at most ``tol / 2``; see the module doc)."""
    gamma = _check_gamma(gamma)
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
        raise OffbenchError(f"depth must be a non-negative integer, got {depth!r}")
    if not (isinstance(grid, (int, np.integer)) and grid >= 2):
        raise OffbenchError(f"grid must be an integer of at least 2, got {grid!r}")
    horizon = truncation_horizon(gamma, tol / 2)
    lower, upper = _brackets(a0, b0, gamma, np.linspace(0.0, 1.0, int(grid)), int(depth), horizon)
    upper = np.maximum(upper, lower)
    return GittinsTable(gamma, a0, b0, 0.5 * (lower + upper), 0.5 * (upper - lower) + tol / 2)
