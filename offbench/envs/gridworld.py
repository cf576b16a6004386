r"""StitchGrid: a 3x3 deterministic tabular MDP that makes *stitching* testable exactly.

Offline RL's edge over behaviour cloning is stitching: combining the first half of one
trajectory with the second half of another. StitchGrid is the classic "X" figure:

::

    row 0     s1 . . . . s2 . . . . s3       route A (start s1):  s1 -SE-> s5 -NE-> s3, then STAY
                \                  /          route B (start s7):  s7 -NE-> s5 -SE-> s9 (goal)
                  \              /
    row 1     s4 . . . . s5 . . . . s6       stitched (optimal):  s1 -SE-> s5 -SE-> s9
                  /              \
                /                  \
    row 2     s7 . . . . s8 . . . . s9 [goal, terminal]

Both behaviour routes pass through the shared middle state s5 but leave it in different
directions. The data therefore holds s1->s5 (route A) and s5->s9 (route B) but (noise aside)
no episode that goes from s1 to s9. Dynamic programming on the data joins the two halves;
behaviour cloning copies the majority action at s5, which is route A's (route A starts are
the majority, see below), and walks from s1 to s3, where route A waits out the clock.

Exact semantics
---------------
- States: cells s1..s9 in row-major order; the state *index* is ``i = 3 * row + col``, so
  s1 = 0, s5 = 4, s7 = 6, s9 = 8 (``cell_name(i)`` gives ``"s{i+1}"``).
- Actions (``Discrete(9)``, king moves): 0 STAY, 1 N, 2 NE, 3 E, 4 SE, 5 S, 6 SW, 7 W, 8 NW.
  A move whose target lies off the grid (also a diagonal that leaves it in one axis only)
  leaves the agent where it is: the border is a wall.
- Transitions are deterministic. s9 is the only terminal state: entering it ends the episode
  with ``terminated=True``. In the matrices, s9 is absorbing with reward 0.
- Reward: ``goal_reward`` (+1) on the step that enters s9, ``step_cost`` (-0.1) on every
  other step (staying put included), so shorter routes to the goal score higher even
  undiscounted. ``R[s, a]`` is the (here deterministic) expected reward of taking a in s.
- Start distribution: s1 with probability 2/3, s7 with 1/3. The asymmetry is deliberate: with
  50/50 starts the two routes would visit s5 equally often and "the most frequent action at
  s5" (tabular BC) would be decided by sampling noise; with 2:1, BC follows route A at s5
  by a wide margin, while route B still supplies hundreds of s5 -> s9 transitions.
- Time limit: the environment itself truncates (``truncated=True``, ``terminated=False``)
  after ``horizon`` = 10 steps, so a directly constructed env is the whole task. Change it
  with ``gym.make("offbench/StitchGrid-v0", horizon=H)``, not ``max_episode_steps=`` (that
  would only add an outer ``TimeLimit`` on top of the env's own limit).
- Discount: ``gamma = 0.99`` is the task's discount for *learning* (value iteration, FQE,
  Q-learning). Scores (dataset returns, reference scores, normalised scores) are
  **undiscounted** sums of rewards over one time-limited episode.
- Optimal behaviour: the goal is at most two king moves from every cell. From s1 the
  only 2-step path is SE, SE through s5 (return -0.1 + 1 = 0.9); from s7, E-E (via s8) and
  NE-SE (via s5) tie and the greedy tie-break (lowest action index) picks NE, i.e. s5.

The true value used for OPE
---------------------------
For this discounted, time-limited task the value of a policy is
``expected_return(policy, horizon=10, gamma)``: the expected discounted sum of rewards of
one episode that ends at the goal or after 10 steps, averaged over the start distribution,
computed exactly by backward induction over the horizon (:func:`finite_horizon_value`). It is
*not* the infinite-horizon ``V`` from :func:`value_iteration` / :func:`policy_evaluation`,
which ignores the time limit (those are the fixed points that learning methods with
``gamma`` target when they bootstrap through truncations).

Behaviour policies with known probabilities
-------------------------------------------
- :class:`StitchGridRoutePolicy` (``stitchgrid_routes``): route A in episodes that start in
  the top row, route B otherwise, each mixed with uniform noise:
  ``pi(a | s) = (1 - epsilon) [a = route(s)] + epsilon / 9``. The route is a function of the
  episode's start state, which is part of the environment's true state (and recorded in
  ``sim_state/state``) but not of the observation: the behaviour is Markov in
  (cell, start cell), not in the cell. That is exactly what makes stitching necessary: a
  behaviour that is Markov in the cell would sometimes go s5 -> s9 after starting at s1.
- :class:`EpsilonGreedyPolicy` (``stitchgrid_optimal``): epsilon-greedy on the value-iteration
  optimum (the expert).
Both give ``action_probabilities(state)`` (the whole distribution, for OPE) and return the
exact log-probability of each sampled action.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np

from offbench.errors import OffbenchError

# ---------------------------------------------------------------------- layout
ROWS = COLS = 3
N_STATES = ROWS * COLS
ACTION_NAMES = ("STAY", "N", "NE", "E", "SE", "S", "SW", "W", "NW")
# (d_row, d_col) per action; rows grow downwards, so N is d_row = -1.
ACTION_DELTAS = ((0, 0), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))
N_ACTIONS = len(ACTION_NAMES)
STAY, N, NE, E, SE, S, SW, W, NW = range(N_ACTIONS)

S1, S2, S3, S4, S5, S6, S7, S8, S9 = range(N_STATES)
GOAL = S9
SHARED_STATE = S5
START_DISTRIBUTION = (2 / 3, 0.0, 0.0, 0.0, 0.0, 0.0, 1 / 3, 0.0, 0.0)  # s1: 2/3, s7: 1/3
HORIZON = 10
GAMMA = 0.99
STEP_COST = -0.1
GOAL_REWARD = 1.0

# Noise-free route actions for every cell (noise can knock the agent off its route, so each
# route is a full policy: route A heads for s3 and waits there, route B heads for s9).
#                 s1  s2  s3    s4  s5  s6  s7  s8  s9
ROUTE_A = np.array([SE, E, STAY, NE, NE, N, NE, NE, STAY])
ROUTE_B = np.array([SE, S, S, E, SE, S, NE, E, STAY])


def cell_name(state: int) -> str:
    """``"s1"`` .. ``"s9"`` for state index 0 .. 8."""
    return f"s{int(state) + 1}"


def next_cell(state: int, action: int) -> int:
    """The deterministic successor: the target cell, or ``state`` if the move leaves the grid."""
    row, col = divmod(int(state), COLS)
    d_row, d_col = ACTION_DELTAS[int(action)]
    r, c = row + d_row, col + d_col
    return r * COLS + c if 0 <= r < ROWS and 0 <= c < COLS else int(state)


# ---------------------------------------------------------------------- the MDP as arrays
@dataclass(frozen=True)
class TabularMDP:
    """A finite MDP as arrays: ``P`` [S, A, S], ``R`` [S, A] (expected reward), ``terminal``
    [S] bool (absorbing, reward 0), ``start`` [S], the learning discount and the time limit."""

    P: np.ndarray
    R: np.ndarray
    terminal: np.ndarray
    start: np.ndarray
    gamma: float
    horizon: int

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]


def stitch_grid_mdp(*, step_cost: float = STEP_COST, goal_reward: float = GOAL_REWARD,
                    gamma: float = GAMMA, horizon: int = HORIZON) -> TabularMDP:
    """The StitchGrid MDP (see the module docstring) with the given reward constants."""
    P = np.zeros((N_STATES, N_ACTIONS, N_STATES))
    R = np.zeros((N_STATES, N_ACTIONS))
    terminal = np.zeros(N_STATES, dtype=bool)
    terminal[GOAL] = True
    for s in range(N_STATES):
        for a in range(N_ACTIONS):
            if terminal[s]:  # absorbing, no reward: the episode is over
                P[s, a, s] = 1.0
                continue
            nxt = next_cell(s, a)
            P[s, a, nxt] = 1.0
            R[s, a] = goal_reward if nxt == GOAL else step_cost
    mdp = TabularMDP(P=P, R=R, terminal=terminal, start=np.array(START_DISTRIBUTION, dtype=np.float64),
                     gamma=float(gamma), horizon=int(horizon))
    for arr in (mdp.P, mdp.R, mdp.terminal, mdp.start):
        arr.setflags(write=False)  # shared by every env and policy: nobody may edit it in place
    return mdp


@lru_cache(maxsize=None)
def default_mdp() -> TabularMDP:
    """The registered task's MDP (step cost -0.1, goal +1, gamma 0.99, horizon 10)."""
    return stitch_grid_mdp()


# ---------------------------------------------------------------------- exact solvers
def _terminal_mask(terminal: np.ndarray, n_states: int) -> np.ndarray:
    """Accept a bool mask [S] or a list of terminal state indices."""
    terminal = np.asarray(terminal)
    if terminal.dtype == bool and terminal.shape == (n_states,):
        return terminal
    mask = np.zeros(n_states, dtype=bool)
    mask[terminal.astype(np.int64)] = True
    return mask


def _greedy(Q: np.ndarray, atol: float = 1e-9) -> np.ndarray:
    """Greedy actions with a deterministic tie-break: the lowest index within ``atol`` of the max
    (plain argmax would let 1-ulp rounding differences decide between truly equal actions)."""
    return np.argmax(Q >= Q.max(axis=1, keepdims=True) - atol, axis=1)


def value_iteration(P: np.ndarray, R: np.ndarray, gamma: float, terminal: np.ndarray,
                    tol: float = 1e-10, max_iterations: int = 100_000
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal infinite-horizon discounted values: ``(V [S], Q [S, A], greedy_policy [S])``.

    Terminal states have value 0 (nothing is bootstrapped from them). Stops when the
    largest change of V is below ``tol``. Ties in the greedy policy go to the lowest action
    index.
    """
    if not 0.0 <= gamma < 1.0:
        raise OffbenchError(f"value_iteration needs 0 <= gamma < 1 to converge, got {gamma}; "
                            "for gamma = 1 use finite_horizon_value with a horizon")
    alive = ~_terminal_mask(terminal, P.shape[0])
    V = np.zeros(P.shape[0])
    for _ in range(max_iterations):
        Q = R + gamma * (P @ (V * alive))  # [S, A, S] @ [S] -> [S, A]
        new = np.where(alive, Q.max(axis=1), 0.0)
        if np.max(np.abs(new - V)) < tol:
            V = new
            break
        V = new
    else:  # pragma: no cover - a contraction with gamma < 1 always converges
        raise OffbenchError(f"value_iteration did not converge in {max_iterations} iterations")
    Q = R + gamma * (P @ (V * alive))
    Q[~alive] = 0.0
    return V, Q, _greedy(Q)


def policy_evaluation(P: np.ndarray, R: np.ndarray, gamma: float, terminal: np.ndarray,
                      policy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact infinite-horizon discounted ``(V [S], Q [S, A])`` of a stochastic ``policy`` [S, A].

    Solves the linear system ``(I - gamma P_pi) V = R_pi`` with terminal rows replaced by
    ``V = 0``. With ``gamma = 1`` the system is singular unless every state reaches a
    terminal state surely; use :func:`finite_horizon_value` for time-limited returns.
    """
    policy = _check_policy(policy, P.shape[0], P.shape[1])
    alive = ~_terminal_mask(terminal, P.shape[0])
    P_pi = np.einsum("sa,sat->st", policy, P) * alive[None, :]  # no bootstrapping from terminals
    R_pi = np.sum(policy * R, axis=1)
    A = np.eye(P.shape[0]) - gamma * P_pi
    A[~alive] = np.eye(P.shape[0])[~alive]
    b = np.where(alive, R_pi, 0.0)
    try:
        V = np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        raise OffbenchError("policy_evaluation: the linear system is singular (gamma = 1 and a policy that "
                            "can avoid the terminal states forever?); use finite_horizon_value") from None
    Q = R + gamma * (P @ (V * alive))
    Q[~alive] = 0.0
    return V, Q


def finite_horizon_value(P: np.ndarray, R: np.ndarray, terminal: np.ndarray, policy: np.ndarray | None,
                         horizon: int, gamma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact time-limited values by backward induction: ``(V [horizon + 1, S], Q [horizon, S, A])``.

    ``V[t, s]`` is the expected discounted sum of the rewards of steps ``t .. horizon - 1``
    from state ``s`` at step ``t`` (``V[horizon] = 0``: the time limit ends the episode and
    nothing is added after it; terminal states are worth 0). ``policy`` is a stationary
    [S, A] table, a time-dependent [horizon, S, A] table, or ``None`` for the optimal
    finite-horizon values (a max over actions at every step).
    """
    n_states, n_actions = P.shape[:2]
    alive = ~_terminal_mask(terminal, n_states)
    if policy is not None:
        policy = np.asarray(policy, dtype=np.float64)
        if policy.ndim == 2:
            policy = np.broadcast_to(_check_policy(policy, n_states, n_actions), (horizon, n_states, n_actions))
        elif policy.shape != (horizon, n_states, n_actions):
            raise OffbenchError(f"policy has shape {policy.shape}; expected [S, A] = {(n_states, n_actions)} "
                                f"or [horizon, S, A] = {(horizon, n_states, n_actions)}")
    V = np.zeros((horizon + 1, n_states))
    Q = np.zeros((horizon, n_states, n_actions))
    for t in range(horizon - 1, -1, -1):
        Q[t] = (R + gamma * (P @ V[t + 1])) * alive[:, None]
        V[t] = Q[t].max(axis=1) if policy is None else np.sum(policy[t] * Q[t], axis=1)
    return V, Q


def expected_return(policy: Any, horizon: int = HORIZON, gamma: float = 1.0, *, mdp: TabularMDP | None = None,
                    start_distribution: np.ndarray | None = None) -> float:
    """The exact expected (discounted) return of one time-limited episode from the start distribution.

    ``policy`` is an [S, A] (or [horizon, S, A]) probability table, or a policy object with
    ``action_probability_table(start_state) -> [S, A]`` (the route behaviour depends on the
    episode's start state). ``gamma = 1`` gives the undiscounted score that reference scores
    and dataset returns use. ``mdp`` defaults to the registered StitchGrid task.
    """
    mdp = mdp or default_mdp()
    start = mdp.start if start_distribution is None else np.asarray(start_distribution, dtype=np.float64)
    table_of = getattr(policy, "action_probability_table", None)
    if table_of is None:
        V, _ = finite_horizon_value(mdp.P, mdp.R, mdp.terminal, policy, horizon, gamma)
        return float(start @ V[0])
    total = 0.0
    for s0 in np.flatnonzero(start):  # one backward induction per start state: tiny
        V, _ = finite_horizon_value(mdp.P, mdp.R, mdp.terminal, table_of(int(s0)), horizon, gamma)
        total += float(start[s0] * V[0, s0])
    return total


def uniform_policy_table(n_states: int = N_STATES, n_actions: int = N_ACTIONS) -> np.ndarray:
    """The uniform random policy as an [S, A] table."""
    return np.full((n_states, n_actions), 1.0 / n_actions)


def _check_policy(policy: np.ndarray, n_states: int, n_actions: int) -> np.ndarray:
    policy = np.asarray(policy, dtype=np.float64)
    if policy.shape != (n_states, n_actions):
        raise OffbenchError(f"policy table has shape {policy.shape}, expected [S, A] = {(n_states, n_actions)}")
    if np.any(policy < 0) or not np.allclose(policy.sum(axis=1), 1.0, atol=1e-9):
        raise OffbenchError("policy table rows must be probability distributions (non-negative, summing to 1)")
    return policy


# ---------------------------------------------------------------------- the environment
def observation_to_state(observation: Any) -> int:
    """The state index of an integer or one-hot observation."""
    arr = np.asarray(observation)
    return int(arr) if arr.ndim == 0 else int(np.argmax(arr))


class StitchGridEnv(gym.Env):
    """The StitchGrid task (module docstring) as a Gymnasium env.

    ``one_hot=False``: observation ``Discrete(9)`` (the state index); ``one_hot=True``: a
    float32 one-hot ``Box(0, 1, (9,))`` for neural methods. ``reset(options={"state": i})``
    starts from cell ``i`` instead of the start distribution (tests, per-state evaluation).
    """

    metadata = {"render_modes": []}

    def __init__(self, one_hot: bool = False, horizon: int = HORIZON, step_cost: float = STEP_COST,
                 goal_reward: float = GOAL_REWARD, gamma: float = GAMMA):
        if int(horizon) < 1:
            raise OffbenchError(f"StitchGrid horizon must be at least 1, got {horizon}")
        self.one_hot = bool(one_hot)
        self.mdp = stitch_grid_mdp(step_cost=step_cost, goal_reward=goal_reward, gamma=gamma, horizon=horizon)
        self.action_space = gym.spaces.Discrete(N_ACTIONS)
        self.observation_space = (gym.spaces.Box(0.0, 1.0, (N_STATES,), np.float32) if self.one_hot
                                  else gym.spaces.Discrete(N_STATES))
        self._cell: int | None = None
        self._start_cell: int | None = None
        self._t = 0

    # -- the task as arrays (what exact solvers and OPE need)
    @property
    def transition_matrix(self) -> np.ndarray:
        return self.mdp.P

    @property
    def reward_matrix(self) -> np.ndarray:
        return self.mdp.R

    @property
    def terminal_states(self) -> np.ndarray:
        """Indices of the terminal states (``[8]``: s9)."""
        return np.flatnonzero(self.mdp.terminal)

    @property
    def start_distribution(self) -> np.ndarray:
        return self.mdp.start

    @property
    def gamma(self) -> float:
        return self.mdp.gamma

    @property
    def max_episode_steps(self) -> int:
        return self.mdp.horizon

    # -- the true state
    @property
    def cell(self) -> int | None:
        """The current state index (None before the first reset)."""
        return self._cell

    @property
    def start_cell(self) -> int | None:
        """The state this episode started from (the route behaviour policy depends on it)."""
        return self._start_cell

    @property
    def state(self) -> np.ndarray | None:
        """``[cell, start cell, steps taken]``: the full state, stored as ``sim_state/state`` by
        the collector (the start cell decides the route behaviour; the step count the time left)."""
        if self._cell is None:
            return None
        return np.array([self._cell, self._start_cell, self._t], dtype=np.int64)

    def _observation(self) -> Any:
        if self.one_hot:
            obs = np.zeros(N_STATES, dtype=np.float32)
            obs[self._cell] = 1.0
            return obs
        return int(self._cell)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if options and options.get("state") is not None:
            cell = int(options["state"])
            if not 0 <= cell < N_STATES:
                raise OffbenchError(f"reset(options={{'state': {cell}}}): states are 0..{N_STATES - 1}")
        else:
            cell = int(self.np_random.choice(N_STATES, p=self.mdp.start))
        self._cell, self._start_cell, self._t = cell, cell, 0
        return self._observation(), {"start": cell}

    def step(self, action):
        if self._cell is None:
            raise OffbenchError("StitchGridEnv.step called before reset")
        a = int(action)
        if not 0 <= a < N_ACTIONS:
            raise OffbenchError(
                f"StitchGrid actions are 0..{N_ACTIONS - 1} ({', '.join(ACTION_NAMES)}); got {action!r}")
        s = self._cell
        # The same arrays the solvers use define the dynamics, so env and matrices cannot drift.
        nxt = int(np.argmax(self.mdp.P[s, a]))
        reward = float(self.mdp.R[s, a])
        self._cell = nxt
        self._t += 1
        terminated = bool(self.mdp.terminal[nxt])
        truncated = self._t >= self.mdp.horizon and not terminated
        return self._observation(), reward, terminated, truncated, {"start": self._start_cell}


# ---------------------------------------------------------------------- behaviour policies
def _epsilon_mix(actions: np.ndarray, epsilon: float) -> np.ndarray:
    """[S, A] table of ``(1 - epsilon) [a = actions[s]] + epsilon / A``."""
    table = np.full((len(actions), N_ACTIONS), epsilon / N_ACTIONS)
    table[np.arange(len(actions)), actions] += 1.0 - epsilon
    return table


def _check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not 0.0 <= epsilon <= 1.0:
        raise OffbenchError(f"epsilon must be in [0, 1], got {epsilon}")
    return epsilon


def _unwrapped_grid(env: gym.Env | None, kind: str) -> StitchGridEnv | None:
    if env is None:
        return None
    inner = env.unwrapped
    if not isinstance(inner, StitchGridEnv):
        raise OffbenchError(f"behaviour policy {kind!r} only works in offbench/StitchGrid environments, "
                            f"not {type(inner).__name__}")
    return inner


class _TabularBehaviour:
    """Shared sampling: draw from the exact action distribution and return its log-probability."""

    name: str
    epsilon: float

    @property
    def deterministic(self) -> bool:
        return self.epsilon == 0.0

    def action_probability_table(self, start_state: int | None = None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def action_probabilities(self, state: int, start_state: int | None = None) -> np.ndarray:
        """The distribution over the 9 actions in ``state`` (a state index or an observation)."""
        return self.action_probability_table(start_state)[observation_to_state(state)]

    def act(self, observation: Any, rng: np.random.Generator) -> tuple[int, float]:
        probs = self.action_probabilities(observation)
        action = int(rng.choice(N_ACTIONS, p=probs))
        return action, float(np.log(probs[action]))

    def expected_return(self, horizon: int = HORIZON, gamma: float = 1.0, *, mdp: TabularMDP | None = None) -> float:
        """Exact expected return of this policy (see :func:`expected_return`)."""
        return expected_return(self, horizon, gamma, mdp=mdp)


class StitchGridRoutePolicy(_TabularBehaviour):
    """The data that needs stitching: route A in episodes that start in the top row (s1),
    route B otherwise (s7), each with probability ``epsilon`` of a uniformly random action.

    The route depends on the episode's start state, which ``act`` reads from the env given
    at construction (``env.unwrapped.start_cell``); ``action_probabilities(state, start_state)``
    takes it explicitly (default: the env's current episode).
    """

    name = "stitchgrid_routes"

    def __init__(self, env: gym.Env | None = None, epsilon: float = 0.1):
        self.epsilon = _check_epsilon(epsilon)
        self._env = _unwrapped_grid(env, self.name)
        self._tables = {"A": _epsilon_mix(ROUTE_A, self.epsilon), "B": _epsilon_mix(ROUTE_B, self.epsilon)}

    @staticmethod
    def route_of(start_state: int) -> str:
        """``"A"`` for episodes that start in the top row (s1..s3), ``"B"`` otherwise."""
        return "A" if int(start_state) < COLS else "B"

    def action_probability_table(self, start_state: int | None = None) -> np.ndarray:
        if start_state is None:
            if self._env is None or self._env.start_cell is None:
                raise OffbenchError("stitchgrid_routes depends on the episode's start state: pass start_state, "
                                    "or build the policy with the env and reset it first")
            start_state = self._env.start_cell
        return self._tables[self.route_of(start_state)]


class EpsilonGreedyPolicy(_TabularBehaviour):
    """Epsilon-greedy on the value-iteration optimum of the env's MDP (the expert data)."""

    name = "stitchgrid_optimal"

    def __init__(self, env: gym.Env | None = None, epsilon: float = 0.1):
        self.epsilon = _check_epsilon(epsilon)
        inner = _unwrapped_grid(env, self.name)
        mdp = inner.mdp if inner is not None else default_mdp()
        _, _, self.greedy = value_iteration(mdp.P, mdp.R, mdp.gamma, mdp.terminal)
        self._table = _epsilon_mix(self.greedy, self.epsilon)

    def action_probability_table(self, start_state: int | None = None) -> np.ndarray:
        return self._table  # Markov in the cell: the start state does not matter
