r"""SignGrid: the goal is in one of the corners, and a sign elsewhere says which.

The task where exploration has to *seek information* (course notes section 14.1-14.2; the
"instructions" example of DREAM, Liu et al. 2021, "Decoupling Exploration and Exploitation
for Meta-Reinforcement Learning without Sacrifices", ICML). Reading the sign earns nothing by
itself and costs a detour; only a policy that then *uses* what it read gains from it. Learned
end to end (RL²), exploration and exploitation have to be discovered together (the notes'
chicken-and-egg problem): guessing a corner is the easy local optimum. Decoupled exploration
(DREAM) rewards the explorer for information about the task directly.

Exact semantics (defaults: 5x5)
-------------------------------
- Cells ``(x, y)``, ``0 <= x < width``, ``0 <= y < height``; each episode starts at ``start``
  = (2, 2), the centre. Actions (``Discrete(5)``): 0 stay, 1 up (y + 1), 2 right (x + 1),
  3 down (y - 1), 4 left (x - 1); moves off the grid leave the agent in place.
- Task: ``{"goal": j}``, the index of the goal among ``goals`` = the four corners (0, 0),
  (0, 4), (4, 0), (4, 4), uniform.
- Observation: ``float32 [x, y, s_0, ..., s_{K-1}]``; ``s`` is the one-hot of ``j`` while the
  agent stands on the ``sign`` cell (2, 0), and all zeros elsewhere.
- Reward: entering the goal gives +1 and ends the episode (``terminated``); entering another
  corner gives -1 and ends it too; every other step costs -0.1 (the sign included).
- Episode: at most ``episode_length`` = 20 steps (then ``truncated``). A trial is
  ``MetaTrial(env, episodes)``; the references use 2 episodes (one to find out, one to use it).

Exact optimum. :func:`solve_optimal` computes the Bayes-optimal expected trial return by
expectimax over beliefs: since moves are deterministic, the belief is the set of goals still
consistent with what was seen (the sign collapses it to one goal, a wrong corner removes one),
and ``V(episode, step, cell, consistent)`` is a finite recursion, memoised and evaluated in
exact rational arithmetic. ``use_sign=False`` solves the same problem with a blank sign: the
best a policy that never reads it can do (the "guess corners" optimum).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import gymnasium as gym
import numpy as np

from offbench.envs.meta.api import MetaTaskMixin, Task, check_count, task_field
from offbench.errors import OffbenchError

ACTION_DELTAS = ((0, 0), (0, 1), (1, 0), (0, -1), (-1, 0))
GOAL_TENTHS, WRONG_TENTHS, STEP_TENTHS = 10, -10, -1


@dataclass(frozen=True)
class SignGridLayout:
    width: int = 5
    height: int = 5
    start: tuple[int, int] = (2, 2)
    sign: tuple[int, int] = (2, 0)
    goals: tuple[tuple[int, int], ...] = ((0, 0), (0, 4), (4, 0), (4, 4))
    episode_length: int = 20

    def __post_init__(self):
        check_count(self.width, "width"), check_count(self.height, "height")
        check_count(self.episode_length, "episode_length")
        cells = {"start": [self.start], "sign": [self.sign], "goals": list(self.goals)}
        for name, group in cells.items():
            for c in group:
                if len(c) != 2 or not (0 <= c[0] < self.width and 0 <= c[1] < self.height):
                    raise OffbenchError(f"SignGrid: {name} cell {c} is outside the {self.width}x{self.height} grid")
        if len(self.goals) < 2 or len(set(self.goals)) != len(self.goals):
            raise OffbenchError(f"SignGrid: goals must be at least two distinct cells, got {self.goals}")
        special = [self.start, self.sign, *self.goals]
        if len(set(special)) != len(special):
            raise OffbenchError("SignGrid: start, sign and goals must be distinct cells")

    def move(self, cell: tuple[int, int], action: int) -> tuple[int, int]:
        dx, dy = ACTION_DELTAS[int(action)]
        return min(max(cell[0] + dx, 0), self.width - 1), min(max(cell[1] + dy, 0), self.height - 1)


class SignGridEnv(MetaTaskMixin, gym.Env):
    """SignGrid (module doc); layout fields as keywords (``width``, ``sign``, ``goals``, ...)."""

    metadata = {"render_modes": []}
    family = "SignGrid"

    def __init__(self, **layout):
        try:
            self.layout = SignGridLayout(**{k: tuple(map(tuple, v)) if k == "goals" else
                                            tuple(v) if k in ("start", "sign") else v for k, v in layout.items()})
        except TypeError as err:
            raise OffbenchError(f"SignGrid: {err}") from None
        lay = self.layout
        self.action_space = gym.spaces.Discrete(len(ACTION_DELTAS))
        high = np.concatenate([[lay.width - 1, lay.height - 1], np.ones(len(lay.goals))]).astype(np.float32)
        self.observation_space = gym.spaces.Box(np.zeros_like(high), high, dtype=np.float32)
        self._cell = lay.start
        self._t = 0

    @property
    def max_episode_steps(self) -> int:
        """The episode's time limit (``episode_length``; the environment applies it itself). An
        episode may end sooner, in a corner."""
        return self.layout.episode_length

    def _draw_task(self, rng: np.random.Generator) -> Task:
        return {"goal": int(rng.integers(len(self.layout.goals)))}

    def _check_task(self, task: Task) -> Task:
        goal = int(task_field(task, "goal", (), self.family, dtype=np.int64))
        if not 0 <= goal < len(self.layout.goals):
            raise OffbenchError(f"{self.family}: goal index {goal} is not in 0..{len(self.layout.goals) - 1}")
        return {"goal": goal}

    def _obs(self) -> np.ndarray:
        obs = np.zeros(2 + len(self.layout.goals), np.float32)
        obs[:2] = self._cell
        if self._cell == self.layout.sign:
            obs[2 + self._task["goal"]] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._start_episode_task(options)
        self._cell, self._t = self.layout.start, 0
        return self._obs(), self._task_info()

    def step(self, action):
        if self._task is None:
            raise OffbenchError(f"{self.family}: call reset() before step()")
        if not self.action_space.contains(action):
            raise OffbenchError(f"{self.family}: action {action!r} is not one of 0..4")
        self._cell = self.layout.move(self._cell, action)
        self._t += 1
        terminated, reward = False, STEP_TENTHS / 10
        if self._cell in self.layout.goals:
            terminated = True
            reward = GOAL_TENTHS / 10 if self._cell == self.layout.goals[self._task["goal"]] else WRONG_TENTHS / 10
        truncated = not terminated and self._t >= self.layout.episode_length
        return self._obs(), reward, terminated, truncated, self._task_info()


@dataclass
class SignGridSolution:
    """``value``: the optimal expected trial return; ``action(...)``: an optimal action."""

    layout: SignGridLayout
    episodes: int
    use_sign: bool
    value: Fraction = Fraction(0)
    _memo: dict = field(default_factory=dict, repr=False)

    def action(self, episode: int, step: int, cell: tuple[int, int], consistent: frozenset[int]) -> int:
        """An optimal action (lowest index among ties) in episode ``episode`` (0-indexed) at
        ``step`` steps into it, from ``cell``, with the goals ``consistent`` with the past."""
        return _best(self, episode, step, tuple(cell), frozenset(consistent))[1]


def _outcomes(sol: SignGridSolution, cell, consistent: frozenset[int], action: int):
    """(probability, reward in tenths, terminated, next cell, next consistent set) of one action."""
    lay = sol.layout
    nxt = lay.move(cell, action)
    n = len(consistent)
    if nxt in lay.goals:
        j = lay.goals.index(nxt)
        out = []
        if j in consistent:
            out.append((Fraction(1, n), GOAL_TENTHS, True, nxt, frozenset([j])))
        if consistent - {j}:
            out.append((Fraction(len(consistent - {j}), n), WRONG_TENTHS, True, nxt, consistent - {j}))
        return out
    if sol.use_sign and nxt == lay.sign:
        return [(Fraction(1, n), STEP_TENTHS, False, nxt, frozenset([j])) for j in sorted(consistent)]
    return [(Fraction(1), STEP_TENTHS, False, nxt, consistent)]


def _value(sol: SignGridSolution, episode: int, step: int, cell, consistent: frozenset[int]) -> Fraction:
    if step == sol.layout.episode_length:  # truncated: the next episode starts from `start`
        return _value(sol, episode + 1, 0, sol.layout.start, consistent) if episode + 1 < sol.episodes else Fraction(0)
    return _best(sol, episode, step, cell, consistent)[0]


def _best(sol: SignGridSolution, episode: int, step: int, cell, consistent: frozenset[int]) -> tuple[Fraction, int]:
    key = (episode, step, cell, consistent)
    if key not in sol._memo:
        best = None
        for a in range(len(ACTION_DELTAS)):
            total = Fraction(0)
            for prob, reward, terminated, nxt, after in _outcomes(sol, cell, consistent, a):
                if terminated:
                    future = (_value(sol, episode + 1, 0, sol.layout.start, after)
                              if episode + 1 < sol.episodes else Fraction(0))
                else:
                    future = _value(sol, episode, step + 1, nxt, after)
                total += prob * (Fraction(reward, 10) + future)
            if best is None or total > best[0]:
                best = (total, a)
        sol._memo[key] = best
    return sol._memo[key]


def solve_optimal(episodes: int = 2, *, use_sign: bool = True, **layout) -> SignGridSolution:
    """The exact optimal expected return of a SignGrid trial of ``episodes`` episodes (module doc)."""
    import sys

    lay = SignGridLayout(**layout)
    sol = SignGridSolution(lay, check_count(episodes, "episodes"), bool(use_sign))
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * episodes * lay.episode_length + 200))
    try:
        sol.value = _value(sol, 0, 0, lay.start, frozenset(range(len(lay.goals))))
    finally:
        sys.setrecursionlimit(limit)
    return sol
