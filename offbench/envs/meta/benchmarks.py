r"""The meta-RL suite's benchmarks: a family, its trial, and the two references a score is placed
between (the ``meta`` protocols name them where the offline suites name datasets).

A benchmark id (``meta/gridnavi-v0``) fixes the family (``offbench/GridNavi-v0`` and its
arguments) and the trial (``episodes`` episodes of one task, :class:`~offbench.envs.meta.MetaTrial`).
A run's score on it is the mean *trial return* over held-out tasks, normalised as

    100 (return - random) / (reference - random)

where ``random`` is the expected trial return of the uniformly random policy and ``reference`` the
best achievable one: the exact Bayes-optimal trial return where it can be computed (bandits,
GridNavi), else the per-task oracle's (the known-goal optimum, point robot). 0 = random, 100 = the
reference, which no policy can beat in expectation. The references are computed here, and their
kind is named in reports:

========================  ========================================  =================  ====================
id                        family, trial                             random             reference
========================  ========================================  =================  ====================
``meta/bandit-k5-n10-v0``  BernoulliBandit 5 arms, 10 pulls, 1 ep.   5.0 (n / 2)        6.660 Bayes-optimal
``meta/gridnavi-v0``       GridNavi 5x5, 15 steps x 4 episodes        exact Markov chain 521/14 Bayes-optimal
``meta/point-robot-v0``    PointRobot (dense), 20 steps x 2 episodes  Monte Carlo        oracle, per task
``meta/signgrid-v0``       SignGrid 5x5, 2 episodes of <= 20 steps    exact Markov chain 6/5 Bayes-optimal
``meta/cheetah-vel-v0``    HalfCheetahVel, 200 steps x 2 episodes     measured, 5 trials oracle, measured
========================  ========================================  =================  ====================

The point robot's random policy moves by uniform steps in the action box; its expected return is
computed by Monte Carlo over 20,000 episodes per evaluation task set (standard error below 0.1%),
and its oracle is :func:`~offbench.envs.meta.point_robot.oracle_return` of each task's goal from its
start, so both are means over the same held-out tasks the runs are evaluated on.

HalfCheetahVel's optimum cannot be computed: its reference is a SAC agent trained with the target
velocity in its observation, and both references are measured once per held-out task and read
from a committed card (:mod:`offbench.envs.meta.oracle_references`).

Each benchmark also records its per-step reward bounds and its episodes' time limit (from the
family's module constants; tests/test_leaderboard_meta.py checks them against the environments),
so :meth:`MetaBenchmark.trial_return_bounds` bounds a trial's return as
``offbench.envs.tasks.Task.return_bounds`` bounds an episode's: the leaderboard rejects trial
returns outside them (``offbench.leaderboard.validate.plausible_range``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from offbench.errors import OffbenchError

#: held-out evaluation tasks are ``sample_tasks(EVAL_TASKS, EVAL_TASK_SEED)`` on every benchmark
EVAL_TASK_SEED = 1_000_000


@dataclass(frozen=True)
class MetaBenchmark:
    benchmark_id: str
    env_id: str
    episodes: int  # episodes per trial
    reference_kind: str  # "Bayes-optimal" or "oracle"
    description: str
    env_kwargs: dict = field(default_factory=dict)
    #: bounds on one step's reward (-inf / inf where the family's reward is unbounded on that side)
    reward_bounds: tuple[float, float] = (-math.inf, math.inf)
    #: an episode's time limit (the family's own; an episode may end sooner)
    max_episode_steps: int = 1
    #: at most this many steps of an episode earn a reward above 0 (None: any step may); SignGrid:
    #: 1, entering the goal, which ends the episode
    max_rewarded_steps: int | None = None

    def trial_return_bounds(self) -> tuple[float, float]:
        """Bounds on one trial's undiscounted return: ``episodes`` episodes of 1 to
        ``max_episode_steps`` steps, each rewarded within ``reward_bounds``; -inf/inf where the
        reward is unbounded on that side."""
        low, high = self.reward_bounds
        steps = self.max_episode_steps
        rewarded = steps if self.max_rewarded_steps is None else min(steps, self.max_rewarded_steps)
        return self.episodes * min(low, steps * low), self.episodes * max(high, rewarded * high)

    def references(self, tasks: int) -> tuple[float, float]:
        """(random, reference) expected trial returns, on the ``tasks`` held-out tasks where they
        depend on the task."""
        return _references(self.benchmark_id, tasks)

    def normalise(self, trial_returns, tasks: int) -> np.ndarray:
        random, reference = self.references(tasks)
        return 100.0 * (np.asarray(trial_returns, np.float64) - random) / (reference - random)


BENCHMARKS: dict[str, MetaBenchmark] = {b.benchmark_id: b for b in (
    # reward bounds: a pull pays 0 or 1 (bandits.py); -0.1 off the goal, +1 on it (gridnavi.py STEP_REWARD,
    # GOAL_REWARD); minus the distance to the goal, no floor (point_robot.py); -1 in a wrong corner, -0.1 a
    # step, +1 entering the goal, which ends the episode (sign_grid.py WRONG/STEP/GOAL_TENTHS)
    MetaBenchmark("meta/bandit-k5-n10-v0", "offbench/BernoulliBandit-v0", 1, "Bayes-optimal",
                  "Bernoulli bandits, 5 arms with means U[0, 1], 10 pulls (RL² section 3.1)", {"arms": 5, "pulls": 10},
                  reward_bounds=(0.0, 1.0), max_episode_steps=10),
    MetaBenchmark("meta/gridnavi-v0", "offbench/GridNavi-v0", 4, "Bayes-optimal",
                  "GridNavi 5x5, hidden goal, 4 episodes of 15 steps (VariBAD)",
                  reward_bounds=(-0.1, 1.0), max_episode_steps=15),
    MetaBenchmark("meta/point-robot-v0", "offbench/PointRobot-v0", 2, "oracle",
                  "point robot, dense reward, goals in U[-1, 1]^2, 2 episodes of 20 steps (PEARL)",
                  reward_bounds=(-math.inf, 0.0), max_episode_steps=20),
    MetaBenchmark("meta/signgrid-v0", "offbench/SignGrid-v0", 2, "Bayes-optimal",
                  "SignGrid 5x5: the goal corner is written on a sign off the way, 2 episodes of at most 20 steps",
                  reward_bounds=(-1.0, 1.0), max_episode_steps=20, max_rewarded_steps=1),
    # minus the speed error minus the control cost, both >= 0 (cheetah_vel.py)
    MetaBenchmark("meta/cheetah-vel-v0", "offbench/HalfCheetahVel-v0", 2, "oracle",
                  "HalfCheetahVel, target velocity U[0, 3], 2 episodes of 200 steps (MAML, PEARL)",
                  reward_bounds=(-math.inf, 0.0), max_episode_steps=200),
)}


def get_benchmark(benchmark_id: str) -> MetaBenchmark:
    try:
        return BENCHMARKS[benchmark_id]
    except KeyError:
        raise OffbenchError(f"unknown meta benchmark {benchmark_id!r}: use one of {sorted(BENCHMARKS)}") from None


def is_meta_benchmark(identifier: str) -> bool:
    return identifier in BENCHMARKS


def benchmark_for_dataset(dataset_id: str) -> str | None:
    """The benchmark an offline meta-RL dataset ``meta/<family>/<name>-v0`` is evaluated on,
    ``meta/<family>-v0``, or None for any other id (an offline agent trained on the dataset plays
    that benchmark's trials: ``offbench.evaluation.meta_adaptation``)."""
    parts = dataset_id.split("/")
    if len(parts) != 3 or parts[0] != "meta":
        return None
    candidate = f"meta/{parts[1]}-v0"
    return candidate if candidate in BENCHMARKS else None


def eval_tasks(benchmark: MetaBenchmark, tasks: int) -> list[dict]:
    import gymnasium as gym

    import offbench.envs.meta  # noqa: F401 - registers the ids

    env = gym.make(benchmark.env_id, disable_env_checker=True, **benchmark.env_kwargs)
    try:
        return env.unwrapped.sample_tasks(tasks, EVAL_TASK_SEED)
    finally:
        env.close()


@lru_cache(maxsize=32)
def _references(benchmark_id: str, tasks: int) -> tuple[float, float]:
    benchmark = get_benchmark(benchmark_id)
    if benchmark_id == "meta/bandit-k5-n10-v0":
        from offbench.envs.meta.bandit_references import bayes_optimal_value, random_expected_total

        k, n = benchmark.env_kwargs["arms"], benchmark.env_kwargs["pulls"]
        return random_expected_total(n), bayes_optimal_value(k, n)
    if benchmark_id == "meta/gridnavi-v0":
        from offbench.envs.meta.gridnavi_bayes import solve_bayes_optimal

        return gridnavi_random_return(benchmark.episodes), float(solve_bayes_optimal(episodes=benchmark.episodes).value)
    if benchmark_id == "meta/point-robot-v0":
        return point_robot_references(eval_tasks(benchmark, tasks), benchmark.episodes)
    if benchmark_id == "meta/signgrid-v0":
        from offbench.envs.meta.sign_grid import solve_optimal

        return signgrid_random_return(benchmark.episodes), float(solve_optimal(benchmark.episodes).value)
    if benchmark_id == "meta/cheetah-vel-v0":
        from offbench.envs.meta.oracle_references import card_references

        return card_references(benchmark, eval_tasks(benchmark, tasks), EVAL_TASK_SEED)
    raise OffbenchError(f"no references for {benchmark_id!r}")  # pragma: no cover - every id has them


def gridnavi_random_return(episodes: int, width: int = 5, height: int = 5, length: int = 15) -> float:
    """The uniformly random policy's exact expected trial return on GridNavi: the distribution over
    cells evolves as a Markov chain from the start cell each episode (every action 1/5, moves off
    the grid stay put), and each step pays +1 on the goal and -0.1 elsewhere; averaged over the
    uniform goal prior."""
    from offbench.envs.meta.gridnavi import GOAL_REWARD, START, STEP_REWARD, candidate_goals, move

    cells = [(x, y) for x in range(width) for y in range(height)]
    index = {c: i for i, c in enumerate(cells)}
    step = np.zeros((len(cells), len(cells)))
    for c in cells:
        for a in range(5):
            step[index[c], index[move(c, a, width, height)]] += 0.2
    p = np.zeros(len(cells))
    p[index[START]] = 1.0
    on_cell = np.zeros(len(cells))  # expected number of steps (after a move) spent on each cell
    for _ in range(length):
        p = p @ step
        on_cell += p
    goals = candidate_goals(width, height)
    per_goal = [GOAL_REWARD * on_cell[index[g]] + STEP_REWARD * (length - on_cell[index[g]]) for g in goals]
    return float(episodes * np.mean(per_goal))


def signgrid_random_return(episodes: int) -> float:
    """The uniformly random policy's exact expected trial return on SignGrid (default layout): a
    Markov chain over cells in which the corners absorb; each step into a non-corner cell pays
    -0.1, entering a corner ends the episode with +1 if it is the goal and -1 otherwise, which for
    a policy that ignores the task is -0.5 in expectation over the uniform goal; episodes end after
    20 steps. The same for every episode of the trial (the policy does not learn)."""
    from offbench.envs.meta.sign_grid import SignGridLayout

    lay = SignGridLayout()
    cells = [(x, y) for x in range(lay.width) for y in range(lay.height)]
    index = {c: i for i, c in enumerate(cells)}
    corner = np.array([c in lay.goals for c in cells])
    p = np.zeros(len(cells))
    p[index[lay.start]] = 1.0
    total = 0.0
    for _ in range(lay.episode_length):
        nxt = np.zeros(len(cells))
        for c, prob in zip(cells, p):
            if prob and not corner[index[c]]:
                for a in range(5):
                    nxt[index[lay.move(c, a)]] += prob / 5
        entered = nxt[corner].sum()
        total += -0.1 * (nxt.sum() - entered) - 0.5 * entered
        nxt[corner] = 0.0  # absorbed: the episode is over
        p = nxt
    return float(episodes * total)


def point_robot_references(tasks: list[dict], episodes: int, samples: int = 20_000) -> tuple[float, float]:
    """(random, oracle) mean trial returns of the dense point robot over ``tasks``: starts are drawn
    per episode from U[-1, 1]^2 (the environment's), so both are expectations over starts, by Monte
    Carlo with ``samples`` starts (seeded), the oracle by :func:`oracle_return` from each."""
    from offbench.envs.meta.point_robot import EPISODE_LENGTH, MAX_STEP

    rng = np.random.default_rng(12345)
    goals = np.stack([np.asarray(t["goal"], np.float64) for t in tasks])  # [G, 2]
    starts = rng.uniform(-1.0, 1.0, (samples, 2))
    which = rng.integers(0, len(goals), samples)
    goal = goals[which]
    random_pos, oracle_pos = starts.copy(), starts.copy()
    random_total = oracle_total = np.zeros(samples)
    for _ in range(EPISODE_LENGTH):
        random_pos = random_pos + rng.uniform(-MAX_STEP, MAX_STEP, (samples, 2))
        oracle_pos = oracle_pos + np.clip(goal - oracle_pos, -MAX_STEP, MAX_STEP)
        random_total = random_total - np.linalg.norm(random_pos - goal, axis=1)
        oracle_total = oracle_total - np.linalg.norm(oracle_pos - goal, axis=1)
    return float(episodes * random_total.mean()), float(episodes * oracle_total.mean())
