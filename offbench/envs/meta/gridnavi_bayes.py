r"""The exact Bayes-optimal policy of GridNavi and its expected return.

The problem (Zintgraf et al. 2020: the Bayes-adaptive MDP). The goal is uniform
over the ``G`` candidate cells and the agent has ``E`` episodes of ``L`` steps; it maximises
the expected *undiscounted* total reward of the trial (VariBAD's evaluation metric). Its
belief is the posterior over goals given its history.

Beliefs. A step reveals one thing about the goal: whether it is the cell just entered (reward
+1 or -0.1). So the belief is uniform over the candidates not visited so far, ``U``, until
the goal is found, and a point mass afterwards. With the goal known the best continuation is
known in closed form: stay on it for the rest of the episode (+1 per step is the largest
reward) and walk straight to it in each later episode (``known_goal_return``). Before it is
found every observation is determined by the actions alone (positions, and -0.1), so the
Bayes-optimal policy is a fixed *search plan* (one action per step of the trial) followed
until the goal shows up. If the plan first enters goal ``g`` at step ``t`` of episode ``e``
(1-indexed), the trial returns::

    R(g) = -0.1 L (e - 1)                          earlier episodes
           - 0.1 (t - 1) + (L - t + 1)             this episode: search, then stay on the goal
           + (E - e) known_goal_return(g)          later episodes

and ``-0.1 L E`` if the plan never enters ``g``. The Bayes-optimal value is
``max_plan (1 / G) sum_g R(g)``.

Dynamic programming over beliefs. The state of the search is (belief ``U``, position, time).
Since it evolves deterministically, the Bellman recursion is solved forward: for every
reachable state keep the best *reward-to-come* ``sum_{g found} R(g)`` (Bellman's principle:
the best continuation depends only on the state, so only the best way to reach each state
matters). Rewards are counted in tenths, so all of this is exact integer arithmetic.

Pruning (branch and bound, exact). The reachable states number in the tens of millions, so a
state is dropped when even an optimistic completion cannot reach a known feasible plan's value
(a beam search's plan, ``lower``). The optimistic completion: each future step finds at most
one new goal; a find at step ``t`` of episode ``e`` is worth ``time(e, t) + (E - e) K(g)``
where ``K`` is ``10 known_goal_return``, and the bound adds the ``n`` largest ``time`` terms of
the future steps that could find a goal to the best pairing of the ``n`` earliest episodes with
the ``n`` largest ``K`` (rearrangement inequality), ``n = min(goals left, such steps)``. Every
find is worth more than not finding (both terms are measured against "never found"), so the
bound holds whatever the plan finds. Dropping a state whose bound is below ``lower`` cannot
drop the optimum.

5x5, 15 x 4 (VariBAD): 521/14 = 37.2142857... per trial (7815/210 in tenths), in a few seconds (two
cores). tests/test_meta_tasks.py checks the solver against an exhaustive expectimax over
histories on small grids, and the plan against the environment itself on every goal.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from offbench.envs.meta.gridnavi import (ACTION_DELTAS, EPISODE_LENGTH, EPISODES_PER_TRIAL, START, candidate_goals,
                                         check_grid, known_goal_return, move)
from offbench.envs.meta.api import check_count

GOAL_TENTHS, STEP_TENTHS = 10, -1


@dataclass(frozen=True)
class GridNaviBayesOptimal:
    """The solution: the search plan, when it finds each goal, and the exact expected return."""

    width: int
    height: int
    episode_length: int
    episodes: int
    goals: tuple[tuple[int, int], ...]
    plan: tuple[tuple[int, ...], ...]  # [episode][step]: the action while the goal is unknown
    first_visit: tuple[tuple[int, int] | None, ...]  # per goal: (episode, step), 1-indexed, or never
    returns: tuple[Fraction, ...]  # per goal: the trial's return
    episode_returns: tuple[tuple[Fraction, ...], ...]  # per goal: the return of each episode

    @property
    def value(self) -> Fraction:
        """The Bayes-optimal expected trial return, exactly."""
        return sum(self.returns, Fraction(0)) / len(self.goals)

    @property
    def episode_values(self) -> np.ndarray:
        """Expected return of each episode under this plan (another optimal plan may split the
        same total differently between episodes)."""
        return np.array([float(sum(r[k] for r in self.episode_returns) / len(self.goals))
                         for k in range(self.episodes)])

    def action(self, episode: int, step: int, cell: tuple[int, int], goal: tuple[int, int] | None) -> int:
        """The Bayes-optimal action at ``step`` (0-indexed) of ``episode`` (0-indexed) from
        ``cell``, given the goal if it has been found (``None`` otherwise)."""
        if goal is None:
            return self.plan[episode][step]
        for a in (1, 2, 3, 4):  # a shortest-path move towards the goal, else stay on it
            nxt = move(cell, a, self.width, self.height)
            if abs(nxt[0] - goal[0]) + abs(nxt[1] - goal[1]) < abs(cell[0] - goal[0]) + abs(cell[1] - goal[1]):
                return a
        return 0


def _trial_return_tenths(first: tuple[int, int] | None, goal: tuple[int, int], length: int,
                         episodes: int) -> list[int]:
    """Per-episode returns (tenths) when the plan first enters ``goal`` at ``first``."""
    known = round(10 * known_goal_return(goal, length))
    out = []
    for e in range(1, episodes + 1):
        if first is None or e < first[0]:
            out.append(STEP_TENTHS * length)
        elif e == first[0]:
            t = first[1]
            out.append(STEP_TENTHS * (t - 1) + GOAL_TENTHS * (length - t + 1))
        else:
            out.append(known)
    return out


class _Search:
    """The forward DP with bounds (module doc); cells are indexed ``x * height + y``."""

    def __init__(self, width: int, height: int, length: int, episodes: int):
        self.W, self.H, self.L, self.E = width, height, length, episodes
        self.cells = [(x, y) for x in range(width) for y in range(height)]
        self.goals = candidate_goals(width, height)
        index = {c: i for i, c in enumerate(self.cells)}
        self.start = index[START]
        self.nbr = np.array([[index[move(c, a, width, height)] for a in range(len(ACTION_DELTAS))]
                             for c in self.cells], dtype=np.int64)
        self.bit = np.zeros(len(self.cells), np.int64)
        for j, g in enumerate(self.goals):
            self.bit[index[g]] = 1 << j
        self.dist = np.array([abs(x - START[0]) + abs(y - START[1]) for x, y in self.cells], dtype=np.int64)
        self.never = STEP_TENTHS * length * episodes  # trial return (tenths) of a goal never found
        # K(d) = 10 known_goal_return at distance d, per cell
        self.known = np.array([round(10 * known_goal_return(c, length)) for c in self.cells], dtype=np.int64)
        goal_d = sorted({int(self.dist[index[g]]) for g in self.goals})
        self.dmin = goal_d[0]
        # distance classes for the pairing bound, best (smallest d, largest K) first: (goal bits, max(K, 0))
        self.classes = []
        for d in goal_d:
            members = [j for j, g in enumerate(self.goals) if self.dist[index[g]] == d]
            k_value = int(self.known[index[self.goals[members[0]]]])
            self.classes.append((sum(1 << j for j in members), max(0, k_value)))
        self._slot_cache: dict[tuple[int, int], tuple] = {}

    def gain(self, e: int, t: int, cell: np.ndarray) -> np.ndarray:
        """Trial return (tenths) of a goal first entered at (e, t), minus "never found"."""
        time_part = STEP_TENTHS * self.L * (e - 1) + STEP_TENTHS * (t - 1) + GOAL_TENTHS * (self.L - t + 1)
        return time_part + (self.E - e) * self.known[cell] - self.never

    def _time_part(self, e: int, t: int) -> int:
        return STEP_TENTHS * self.L * (e - 1) + STEP_TENTHS * (t - 1) + GOAL_TENTHS * (self.L - t + 1) - self.never

    def _slots(self, e: int, t: int):
        """After step t of episode e: prefix sums of the largest time parts of the steps that
        could still find a goal, and the chronological (episode, count) blocks of those steps."""
        if (e, t) in self._slot_cache:
            return self._slot_cache[e, t]
        slots = [(e, s) for s in range(t + 1, self.L + 1)]
        blocks = [(e, self.L - t)]
        for later in range(e + 1, self.E + 1):
            slots += [(later, s) for s in range(self.dmin, self.L + 1)]
            blocks.append((later, self.L - self.dmin + 1))
        parts = sorted((self._time_part(*s) for s in slots), reverse=True)
        self._slot_cache[e, t] = (np.concatenate([[0], np.cumsum(parts)]).astype(np.int64), blocks, len(slots))
        return self._slot_cache[e, t]

    def bound(self, mask: np.ndarray, e: int, t: int) -> np.ndarray:
        """Optimistic future gain (tenths) of each state after step t of episode e."""
        prefix, blocks, n_slots = self._slots(e, t)
        left = [np.bitwise_count(cls & ~mask).astype(np.int64) for cls, _ in self.classes]
        n = np.minimum(sum(left), n_slots)
        out = prefix[n]

        def best_k(k):  # sum of the k largest K among the goals left
            total, before = np.zeros_like(k), np.zeros_like(k)
            for (_, value), count in zip(self.classes, left):
                total += value * np.clip(k - before, 0, count)
                before = before + count
            return total

        start = np.zeros_like(n)
        for episode, count in blocks:
            end = np.minimum(start + count, n)
            out = out + (self.E - episode) * (best_k(end) - best_k(start))
            start = end
        return out

    def run(self, lower: int | None, beam: int | None):
        """Forward DP; returns (best reward-to-come, action sequence). ``lower`` prunes (exact),
        ``beam`` keeps only the best states (a heuristic, for a feasible ``lower``)."""
        n_actions, n_cells = len(ACTION_DELTAS), len(self.cells)
        mask = np.zeros(1, np.int64)
        pos = np.array([self.start])
        score = np.zeros(1, np.int64)
        layers = []  # per step: (parent index, action)
        for e in range(1, self.E + 1):
            if e > 1:  # a new episode starts at START: states differ only by their belief
                order = np.lexsort((-score, mask))
                keep = np.ones(len(order), bool)
                keep[1:] = mask[order][1:] != mask[order][:-1]
                chosen = order[keep]
                layers.append((chosen, None))
                mask, score = mask[chosen], score[chosen]
                pos = np.full(len(mask), self.start)
            for t in range(1, self.L + 1):
                parent = np.repeat(np.arange(len(mask)), n_actions)
                act = np.tile(np.arange(n_actions), len(mask))
                m, p, s = np.repeat(mask, n_actions), self.nbr[pos].ravel(), np.repeat(score, n_actions)
                b = self.bit[p]
                new = (b != 0) & ((m & b) == 0)
                s = s + np.where(new, self.gain(e, t, p), 0)
                m = m | b
                optimistic = s + self.bound(m, e, t)
                if lower is not None:
                    ok = optimistic >= lower
                    parent, act, m, p, s, optimistic = parent[ok], act[ok], m[ok], p[ok], s[ok], optimistic[ok]
                key = m * n_cells + p
                order = np.lexsort((-s, key))
                keep = np.ones(len(order), bool)
                keep[1:] = key[order][1:] != key[order][:-1]
                chosen = order[keep]
                if beam is not None and len(chosen) > beam:
                    chosen = chosen[np.argsort(-s[chosen], kind="stable")[:beam]]
                layers.append((parent[chosen], act[chosen]))
                mask, pos, score = m[chosen], p[chosen], s[chosen]
        best = int(np.argmax(score))
        actions = []
        i = best
        for parent, act in reversed(layers):
            if act is not None:
                actions.append(int(act[i]))
                i = int(parent[i])
            else:
                i = int(parent[i])
        return int(score[best]), actions[::-1]


def solve_bayes_optimal(width: int = 5, height: int = 5, episode_length: int = EPISODE_LENGTH,
                        episodes: int = EPISODES_PER_TRIAL, beam: int = 2000) -> GridNaviBayesOptimal:
    """The exact Bayes-optimal plan and value (module doc). ``beam`` only sets how good the
    first feasible plan (the pruning threshold) is; the answer does not depend on it."""
    width, height = check_grid(width, height)
    length, episodes = check_count(episode_length, "episode_length"), check_count(episodes, "episodes")
    search = _Search(width, height, length, episodes)
    lower, _ = search.run(lower=None, beam=beam)
    best, actions = search.run(lower=lower, beam=None)
    plan = tuple(tuple(actions[e * length:(e + 1) * length]) for e in range(episodes))
    first: dict[tuple[int, int], tuple[int, int]] = {}
    for e, episode_plan in enumerate(plan, start=1):
        cell = START
        for t, a in enumerate(episode_plan, start=1):
            cell = move(cell, a, width, height)
            first.setdefault(cell, (e, t))
    goals = tuple(search.goals)
    firsts = tuple(first.get(g) for g in goals)
    per_episode = [_trial_return_tenths(f, g, length, episodes) for f, g in zip(firsts, goals)]
    total = sum(sum(r) for r in per_episode)
    if total != best + search.never * len(goals):  # an internal invariant, not a user error
        raise RuntimeError(f"GridNavi Bayes DP: the plan replays to {total}, the search said {best}")
    return GridNaviBayesOptimal(
        width, height, length, episodes, goals, plan, firsts,
        returns=tuple(Fraction(sum(r), 10) for r in per_episode),
        episode_returns=tuple(tuple(Fraction(x, 10) for x in r) for r in per_episode))
