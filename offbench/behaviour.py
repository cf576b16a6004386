"""Behaviour policies that generate data, with exact action log-probabilities.

A behaviour policy maps one observation to ``(action, log_prob)``; the log-probability is
of the action actually taken under the policy's own distribution (stored per step for
exact importance-sampling OPE), or NaN-free ``0.0`` with ``deterministic = True`` for
scripted controllers, which only serve to measure reference scores.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from offbench.errors import OffbenchError


class BehaviourPolicy(Protocol):
    name: str
    deterministic: bool

    def act(self, observation: Any, rng: np.random.Generator) -> tuple[Any, float]: ...


class UniformRandomPolicy:
    """Uniform over a bounded Box (log-prob -sum(log(high - low))) or a Discrete space (-log n)."""

    deterministic = False

    def __init__(self, action_space: gym.Space):
        self.name = "uniform_random"
        self.space = action_space
        if isinstance(action_space, gym.spaces.Box):
            if not action_space.is_bounded():
                raise OffbenchError("uniform_random needs a bounded Box action space")
            self._low = action_space.low.astype(np.float64)
            self._high = action_space.high.astype(np.float64)
            self._log_prob = float(-np.sum(np.log(self._high - self._low)))
        elif isinstance(action_space, gym.spaces.Discrete):
            self._log_prob = float(-np.log(action_space.n))
        else:
            raise OffbenchError(f"uniform_random does not support {type(action_space).__name__} actions")

    def act(self, observation, rng: np.random.Generator):
        if isinstance(self.space, gym.spaces.Discrete):
            return int(self.space.start + rng.integers(self.space.n)), self._log_prob
        action = rng.uniform(self._low, self._high).astype(self.space.dtype)
        return action, self._log_prob


class PendulumSwingUpController:
    """A scripted expert for Pendulum-v1: energy pumping far from upright, a PD law near it.

    Used to measure Pendulum's expert reference return without a trained agent.
    Pendulum-v1: theta = 0 is upright, obs = [cos, sin, theta_dot], torque in [-2, 2].
    """

    name = "pendulum_swingup"
    deterministic = True

    def act(self, observation, rng=None):
        cos, sin, theta_dot = (float(x) for x in observation)
        theta = np.arctan2(sin, cos)
        if cos > 0.85:  # near upright: stabilise with a PD law
            torque = -10.0 * theta - 2.0 * theta_dot
        else:
            # Energy relative to upright at rest (m = l = 1, g = 10, I = m l^2 / 3):
            # E = I/2 theta_dot^2 + m g l/2 (cos - 1); pump towards E = 0.
            energy = theta_dot**2 / 6.0 + 5.0 * (cos - 1.0)
            torque = -2.0 * np.sign(theta_dot * energy) if abs(theta_dot) > 1e-3 else 2.0
        return np.array([np.clip(torque, -2.0, 2.0)], dtype=np.float32), 0.0


class PointPlaneGoalController:
    """The scripted expert of the point plane's goal tasks (``offbench/point-plane-goal-<name>-v0``):
    each step moves as far as the action box allows straight towards the goal, ``clip(goal - s, -1, 1)``,
    then stays on it. Measures those tasks' expert reference return without a trained agent."""

    name = "point_plane_goal"
    deterministic = True

    def __init__(self, env: gym.Env):
        reward = getattr(env.unwrapped, "goal_reward", None)
        if reward is None:
            raise OffbenchError(f"point_plane_goal needs a goal-reaching point plane (offbench/point-plane-goal-<name>-v0), "
                                f"not {env.spec.id if env.spec else env}")
        self.goal = np.asarray(reward.goal, np.float64)

    def act(self, observation, rng=None):
        step = np.clip(self.goal - np.asarray(observation, np.float64), -1.0, 1.0)
        return step.astype(np.float32), 0.0


class CheckpointPolicy:
    """A trained policy network loaded from ``NAME.safetensors`` with its sidecar ``NAME.json``.

    The sidecar is data (never code): ``{"module": "TanhGaussianPolicy", "obs_dim", "act_dim",
    "hidden", "env_id", "step", "returns": {...}}`` (a DQN's ``QNetwork`` adds ``n_states`` and
    its behaviour ``epsilon``); the module class comes from a fixed allow-list. The file's sha256
    is checked against the recipe's before loading. Actions are sampled from the stochastic
    policy (D4RL's recipe; a Q-network acts epsilon-greedily) with a torch generator seeded by
    the recipe, and ``act_batch`` serves many environments with one forward pass.
    """

    deterministic = False

    def __init__(self, path: str | Path, *, sha256: str | None = None, seed: int = 0, deterministic: bool = False,
                 epsilon: float | None = None):
        import json

        import torch

        from offbench.checkpoint import load_module
        from offbench.data.mirrors import file_sha256

        path = Path(path)
        if not path.is_file():
            raise OffbenchError(f"behaviour checkpoint {path} not found (is the repository's datasets/policies/ "
                                "directory present?)")
        digest = file_sha256(path)
        if sha256 and digest != sha256:
            raise OffbenchError(f"behaviour checkpoint {path} has sha256 {digest[:16]}…, the recipe expects "
                                f"{sha256[:16]}…: the file was changed; restore it from git")
        self.info = json.loads(path.with_suffix(".json").read_text())
        self.network = load_module(path, policy_network(self.info, path)).eval()
        self.name = self.info.get("name", path.stem)
        self.sha256 = digest
        self.deterministic = deterministic
        self.epsilon = float(self.info.get("epsilon", 0.0) if epsilon is None else epsilon)
        self.generator = torch.Generator().manual_seed(seed)

    def act_batch(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        obs = torch.as_tensor(np.asarray(observations), dtype=torch.float32)
        action, log_prob = sample_actions(self.network, obs, deterministic=self.deterministic,
                                          generator=self.generator, epsilon=self.epsilon)
        return action.numpy(), log_prob.double().numpy()

    def act(self, observation, rng=None):
        actions, log_probs = self.act_batch(np.asarray(observation)[None])
        return actions[0], float(log_probs[0])


def policy_network(info: dict, where: object = "behaviour checkpoint"):
    """An untrained network of the class a sidecar names, from a fixed allow-list (never an import path)."""
    from baselines.online.dqn import QNetwork
    from offbench.nn import TanhGaussianPolicy

    name = info.get("module")
    try:
        if name == "TanhGaussianPolicy":  # SAC's actor
            return TanhGaussianPolicy(info["obs_dim"], info["act_dim"], tuple(info["hidden"]))
        if name == "QNetwork":  # DQN's Q-network; act_dim is the number of actions
            return QNetwork(info["obs_dim"], info["act_dim"], tuple(info["hidden"]), info.get("n_states"))
    except KeyError as exc:
        raise OffbenchError(f"{where}: its sidecar lacks the field {exc.args[0]!r}") from None
    raise OffbenchError(f"{where}: unknown policy module {name!r}; known: QNetwork, TanhGaussianPolicy")


def sample_actions(network, obs, *, deterministic: bool, generator, epsilon: float = 0.0):
    """Actions and their exact log-probabilities under a behaviour network: SAC's actor samples
    its squashed Gaussian (deterministic: the squashed mean); a Q-network acts epsilon-greedily
    (deterministic: greedy, log-prob 0)."""
    import torch

    from baselines.online.dqn import QNetwork

    with torch.no_grad():
        if isinstance(network, QNetwork):
            return network.epsilon_greedy(obs, 0.0 if deterministic else epsilon, generator)
        return network(obs, deterministic, generator)


def make_policy(spec: str | dict, env: gym.Env, *, seed: int = 0, root: Path | None = None) -> BehaviourPolicy:
    """A behaviour policy from a recipe's ``policy`` entry (a name or a table with ``kind``).

    ``{kind = "checkpoint", path = "policies/hopper/medium.safetensors", sha256 = "..."}``
    loads a trained policy; ``path`` is relative to ``root`` (default: the catalogue directory).
    A DQN checkpoint acts epsilon-greedily with its sidecar's ``epsilon`` unless the table gives one.
    """
    kind = spec if isinstance(spec, str) else spec.get("kind")
    if kind == "checkpoint":
        from offbench.data.catalogue import catalogue_dir

        if "path" not in spec:
            raise OffbenchError(f"checkpoint policy spec needs a 'path': {spec!r}")
        return CheckpointPolicy(Path(root or catalogue_dir()) / spec["path"], sha256=spec.get("sha256"), seed=seed,
                                deterministic=bool(spec.get("deterministic", False)), epsilon=spec.get("epsilon"))
    if kind == "uniform_random":
        return UniformRandomPolicy(env.action_space)
    if kind == "pendulum_swingup":
        return PendulumSwingUpController()
    if kind == "point_plane_goal":
        return PointPlaneGoalController(env)
    if kind == "maze_goal":
        from offbench.envs.maze_tasks import MazeGoalController

        return MazeGoalController(env)
    if kind in ("stitchgrid_routes", "stitchgrid_optimal"):
        from offbench.envs.gridworld import EpsilonGreedyPolicy, StitchGridRoutePolicy

        # Table specs pass their parameters, e.g. { kind = "stitchgrid_routes", epsilon = 0.1 }.
        params = {} if isinstance(spec, str) else {k: v for k, v in spec.items() if k != "kind"}
        cls = StitchGridRoutePolicy if kind == "stitchgrid_routes" else EpsilonGreedyPolicy
        if set(params) - {"epsilon"}:
            raise OffbenchError(f"behaviour policy {kind!r} takes only 'epsilon'; got {sorted(params)}")
        return cls(env, **params)
    raise OffbenchError(f"unknown behaviour policy {kind!r} (known: uniform_random, pendulum_swingup, "
                        "point_plane_goal, maze_goal, stitchgrid_routes, stitchgrid_optimal, checkpoint)")
