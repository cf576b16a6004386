r"""DREAM: decoupled exploration and exploitation in meta-RL (Liu, Raghunathan, Liang & Finn,
"Decoupling Exploration and Exploitation for Meta-Reinforcement Learning without Sacrifices",
ICML 2021; course notes §14.2), for families with discrete actions and a task id (SignGrid).

A trial is one *exploration* episode followed by *exploitation* episodes. Two policies, trained
with separate objectives:

- Exploitation (section 4.1): Q_task(s, z, a) is trained by double DQN on the task's reward with
  z drawn around a learned task embedding, z ~ N(f_psi(mu), rho^2 I), mu the task id, under an
  information bottleneck that keeps only what the task's reward needs (eq. 3):

      L_task = E[(Q_task(s, z, a) - (r + gamma (1 - d) Qbar_task(s', z, argmax_a' Q_task(s', z, a'))))^2]
               + lambda ||f_psi(mu)||^2

  (the KL between N(f(mu), rho^2 I) and the prior N(0, rho^2 I) is ||f(mu)||^2 / 2 rho^2: the
  penalty, its constant folded into lambda).
- A decoder g_omega(tau_{:t}), a GRU over the exploration episode's prefix, is trained to predict
  the embedding: L_dec = E_t ||stopgrad f(mu) - g(tau_{:t})||^2 (eq. 5).
- Exploration (section 4.2, eq. 6): a recurrent Q_exp(tau_{:t}, a) trained by DQN on the
  information gain of each step, as the decrease of the decoder's error, minus a step cost c:

      r^exp_t = ||f(mu) - g(tau_{:t})||^2 - ||f(mu) - g(tau_{:t+1})||^2 - c

  Exploration never sees the task's reward, so it is not pulled towards guessing a corner: the
  chicken-and-egg problem of end-to-end methods (RL²) that the course notes describe.

Meta-test: the exploration episode greedily under Q_exp, z^ = g(tau_exp), then the exploitation
episode(s) greedily under Q_task(s, z^, .). The trial's episode returns are (exploration,
exploitation, ...); DREAM's own objective is the exploitation return (episode 2 onwards).

Defaults are small (SignGrid is 5x5): embedding 8, GRUs and MLPs of 64, Adam 1e-3, batch 32,
epsilon from 1 to 0.05 over the first half of training, lambda 0.01, rho 0.1, c 0.01, target
networks copied every 200 updates.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from offbench.checkpoint import load_checkpoint, save_checkpoint
from offbench.cpu import torch_threads
from offbench.errors import OffbenchError
from offbench.nn import mlp, seed_everything
from offbench.resumable import resumable_loop


@dataclass
class DREAMConfig:
    embed_dim: int = 8
    hidden: int = 64
    lr: float = 1e-3
    gamma: float = 0.99
    ib_weight: float = 0.01  # lambda
    embed_noise: float = 0.1  # rho
    step_cost: float = 0.01  # c
    batch_size: int = 32  # episodes (exploration) / transitions x 4 (exploitation)
    buffer_episodes: int = 2000
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    decay_fraction: float = 0.5  # of the run's iterations
    target_every: int = 200
    updates_per_iteration: int = 1
    iterations: int = 4000  # the schedule's length (epsilon decays over a fraction of it)
    threads: int = 1


class RecurrentQ(nn.Module):
    """Q(tau_{:t}, .) over an episode prefix: a GRU over (s_t, a_{t-1} one-hot, r_{t-1})."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, out_dim: int | None = None):
        super().__init__()
        self.n_actions = n_actions
        self.gru = nn.GRU(obs_dim + n_actions + 1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_actions if out_dim is None else out_dim)

    @staticmethod
    def inputs(obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, n_actions: int) -> torch.Tensor:
        """[B, T+1, in] for observations [B, T+1, d] and the T actions and rewards before each."""
        prev_a = torch.cat([torch.zeros_like(actions[:, :1]), actions], 1)
        prev_r = torch.cat([torch.zeros_like(rewards[:, :1]), rewards], 1)
        one_hot = F.one_hot(prev_a.long(), n_actions).float() * (torch.arange(prev_a.shape[1]) > 0)[None, :, None]
        return torch.cat([obs, one_hot, prev_r.unsqueeze(-1)], -1)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None = None):
        out, hidden = self.gru(x, hidden)
        return self.head(out), hidden


class DREAM(nn.Module):
    config_class = DREAMConfig

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, tasks: int,
                 config: DREAMConfig = DREAMConfig(), seed: int = 0):
        super().__init__()
        if not isinstance(action_space, gym.spaces.Discrete) or not isinstance(observation_space, gym.spaces.Box):
            raise OffbenchError("DREAM here takes Box observations and Discrete actions (SignGrid, GridNavi)")
        self.config, self.seed = config, int(seed)
        self.obs_dim, self.n_actions = int(np.prod(observation_space.shape)), int(action_space.n)
        seed_everything(seed)
        d, h, k = config.embed_dim, config.hidden, self.n_actions
        self.embedding = nn.Embedding(tasks, d)  # f_psi(mu)
        self.q_task = mlp(self.obs_dim + d, k, (h, h))
        self.q_task_target = copy.deepcopy(self.q_task).requires_grad_(False)
        self.decoder = RecurrentQ(self.obs_dim, k, h, out_dim=d)  # g_omega: prefix -> z
        self.q_explore = RecurrentQ(self.obs_dim, k, h)
        self.q_explore_target = copy.deepcopy(self.q_explore).requires_grad_(False)
        self.optim = torch.optim.Adam(self.parameters(), lr=config.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.updates = 0

    # ------------------------------------------------------------------ losses
    def exploit_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. (3): double-DQN TD error of Q_task with z ~ N(f(mu), rho^2 I), plus lambda ||f(mu)||^2."""
        cfg = self.config
        mean = self.embedding(batch["task"])
        z = mean + cfg.embed_noise * torch.randn(mean.shape, generator=self.generator)
        q = self.q_task(torch.cat([batch["obs"], z], -1)).gather(1, batch["action"][:, None]).squeeze(1)
        with torch.no_grad():
            x2 = torch.cat([batch["next_obs"], z], -1)
            best = self.q_task(x2).argmax(1, keepdim=True)
            target = batch["reward"] + cfg.gamma * (1 - batch["done"]) * self.q_task_target(x2).gather(1, best).squeeze(1)
        return F.mse_loss(q, target) + cfg.ib_weight * (mean ** 2).sum(-1).mean()

    def decoder_errors(self, episodes: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """||f(mu) - g(tau_{:t})||^2 for t = 0..T [B, T+1] (prefix t: the first t transitions)."""
        x = RecurrentQ.inputs(episodes["obs"], episodes["actions"], episodes["rewards"], self.n_actions)
        pred, _ = self.decoder(x)  # the prediction after reading obs_t: prefix with t transitions
        return ((pred - target[:, None, :]) ** 2).sum(-1)

    def information_gain(self, errors: torch.Tensor) -> torch.Tensor:
        """Eq. (6)'s reward [B, T] from the decoder's errors after 0..T transitions [B, T+1]."""
        return errors[:, :-1] - errors[:, 1:] - self.config.step_cost

    def explore_loss(self, episodes: dict[str, torch.Tensor]) -> torch.Tensor:
        """Eq. (5) for the decoder plus eq. (6)'s DQN for Q_exp on the information-gain reward."""
        cfg = self.config
        target_z = self.embedding(episodes["task"]).detach()
        errors = self.decoder_errors(episodes, target_z)  # [B, T+1]
        mask = episodes["mask"]  # [B, T]: step t exists
        valid_prefix = torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
        decoder_loss = (errors * valid_prefix).sum() / valid_prefix.sum()
        with torch.no_grad():
            r_exp = self.information_gain(errors)
        x = RecurrentQ.inputs(episodes["obs"], episodes["actions"], episodes["rewards"], self.n_actions)
        q_all, _ = self.q_explore(x)  # [B, T+1, A]
        q = q_all[:, :-1].gather(2, episodes["actions"].long().unsqueeze(-1)).squeeze(-1)
        with torch.no_grad():
            best = q_all[:, 1:].argmax(-1, keepdim=True)
            q_next = self.q_explore_target(x)[0][:, 1:].gather(2, best).squeeze(-1)
            target = r_exp + cfg.gamma * episodes["continues"] * q_next
        td = ((q - target) ** 2 * mask).sum() / mask.sum()
        return decoder_loss + td

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def exploit_action(self, obs, z: torch.Tensor, epsilon: float) -> int:
        if torch.rand((), generator=self.generator) < epsilon:
            return int(torch.randint(self.n_actions, (), generator=self.generator))
        x = torch.cat([torch.as_tensor(np.asarray(obs), dtype=torch.float32), z])
        return int(self.q_task(x[None]).argmax())


def _pad(episodes: list[dict], obs_dim: int) -> dict[str, torch.Tensor]:
    """Exploration episodes (obs [T+1, d], actions [T], rewards [T], task, terminated) padded to a batch."""
    T = max(len(e["actions"]) for e in episodes)
    B = len(episodes)
    obs = torch.zeros(B, T + 1, obs_dim)
    actions, rewards, mask, continues = (torch.zeros(B, T) for _ in range(4))
    for i, e in enumerate(episodes):
        n = len(e["actions"])
        obs[i, : n + 1] = torch.as_tensor(np.asarray(e["obs"]))
        actions[i, :n] = torch.as_tensor(e["actions"], dtype=torch.float32)
        rewards[i, :n] = torch.as_tensor(e["rewards"], dtype=torch.float32)
        mask[i, :n] = 1.0
        continues[i, : n - 1] = 1.0
        continues[i, n - 1] = 0.0 if e["terminated"] else 1.0  # a time limit bootstraps (Pardo et al. 2018)
    return {"obs": obs, "actions": actions, "rewards": rewards, "mask": mask, "continues": continues,
            "task": torch.as_tensor([e["task"] for e in episodes])}


class DREAMTrainer:
    """DREAM's loop on a family with a task id ``{"goal": j}`` (``make_env``): each iteration an
    exploration episode and an exploitation episode on a sampled task, then updates; ``fit``
    checkpoints every iteration (buffers as JSON-free ``.npz``) and resumes exactly."""

    def __init__(self, make_env: Callable[[], gym.Env], tasks: int, config: DREAMConfig = DREAMConfig(), seed: int = 0):
        self.make_env, self.config, self.seed, self.tasks = make_env, config, int(seed), int(tasks)
        self.env = make_env()
        self.agent = DREAM(self.env.observation_space, self.env.action_space, tasks, config, seed)
        self.explore_buffer: list[dict] = []
        self.exploit_buffer: list[tuple] = []
        self.rng = np.random.default_rng(seed)
        self.iteration = 0

    def epsilon(self) -> float:
        cfg = self.config
        frac = min(1.0, self.iteration / max(1.0, cfg.decay_fraction * cfg.iterations))
        return cfg.epsilon_start + frac * (cfg.epsilon_end - cfg.epsilon_start)

    def explore_episode(self, task: dict, epsilon: float, seed: int) -> dict:
        agent = self.agent
        obs, _ = self.env.reset(seed=seed, options={"task": task})
        episode = {"obs": [obs], "actions": [], "rewards": [], "task": int(task["goal"]), "terminated": False}
        hidden, prev_a, prev_r, done = None, 0, 0.0, False
        while not done:
            with torch.no_grad():  # the step's input, as RecurrentQ.inputs builds it for the whole episode
                first = not episode["actions"]
                x = torch.cat([torch.as_tensor(obs, dtype=torch.float32),
                               F.one_hot(torch.tensor(prev_a), agent.n_actions).float() * (not first),
                               torch.tensor([prev_r * (not first)], dtype=torch.float32)])[None, None]
                q, hidden = agent.q_explore(x, hidden)
            if torch.rand((), generator=agent.generator) < epsilon:
                action = int(torch.randint(agent.n_actions, (), generator=agent.generator))
            else:
                action = int(q[0, -1].argmax())
            obs, reward, terminated, truncated, _ = self.env.step(action)
            episode["obs"].append(obs)
            episode["actions"].append(action)
            episode["rewards"].append(float(reward))
            prev_a, prev_r, done = action, float(reward), terminated or truncated
            episode["terminated"] = bool(terminated)
        return episode

    def exploit_episode(self, task: dict, z: torch.Tensor, epsilon: float, seed: int, store: bool) -> float:
        obs, _ = self.env.reset(seed=seed, options={"task": task})
        total, done = 0.0, False
        while not done:
            action = self.agent.exploit_action(obs, z, epsilon)
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            if store:
                self.exploit_buffer.append((np.asarray(obs, np.float32), action, float(reward),
                                            np.asarray(next_obs, np.float32), float(terminated), int(task["goal"])))
            total += float(reward)
            obs, done = next_obs, terminated or truncated
        return total

    def iterate(self) -> dict:
        cfg, agent = self.config, self.agent
        task = self.env.unwrapped.sample_tasks(1, self.seed * 1_000_003 + self.iteration)[0]
        eps, seed = self.epsilon(), self.seed * 1_000_003 + 2 * self.iteration
        self.explore_buffer.append(self.explore_episode(task, eps, seed))
        with torch.no_grad():
            mean = agent.embedding(torch.tensor(int(task["goal"])))
            z = mean + cfg.embed_noise * torch.randn(mean.shape, generator=agent.generator)
        exploit_return = self.exploit_episode(task, z, eps, seed + 1, store=True)
        self.explore_buffer = self.explore_buffer[-cfg.buffer_episodes:]
        self.exploit_buffer = self.exploit_buffer[-20 * cfg.buffer_episodes:]
        losses = []
        for _ in range(cfg.updates_per_iteration):
            episodes = [self.explore_buffer[i] for i in self.rng.integers(0, len(self.explore_buffer), cfg.batch_size)]
            rows = [self.exploit_buffer[i] for i in self.rng.integers(0, len(self.exploit_buffer), 4 * cfg.batch_size)]
            batch = {"obs": torch.as_tensor(np.stack([r[0] for r in rows])), "action": torch.tensor([r[1] for r in rows]),
                     "reward": torch.tensor([r[2] for r in rows]), "next_obs": torch.as_tensor(np.stack([r[3] for r in rows])),
                     "done": torch.tensor([r[4] for r in rows]), "task": torch.tensor([r[5] for r in rows])}
            loss = agent.exploit_loss(batch) + agent.explore_loss(_pad(episodes, agent.obs_dim))
            agent.optim.zero_grad(set_to_none=True)
            loss.backward()
            agent.optim.step()
            agent.updates += 1
            if agent.updates % cfg.target_every == 0:
                agent.q_task_target.load_state_dict(agent.q_task.state_dict())
                agent.q_explore_target.load_state_dict(agent.q_explore.state_dict())
            losses.append(loss.item())
        self.iteration += 1
        return {"iteration": self.iteration, "epsilon": eps, "exploit_return": exploit_return,
                "loss": float(np.mean(losses))}

    # ---------------------------------------------------------------- meta-test
    def adapt_and_evaluate(self, tasks: list[dict], episodes: int, seed: int) -> np.ndarray:
        """Per-episode returns [tasks, episodes]: the greedy exploration episode, then ``episodes - 1``
        greedy exploitation episodes with z^ = g(tau_exp)."""
        with torch_threads(self.config.threads):  # the run's own thread count, whatever the caller's
            stream, self.agent.generator = self.agent.generator, torch.Generator().manual_seed(seed)
            try:
                out = np.zeros((len(tasks), episodes))
                for i, task in enumerate(tasks):
                    episode = self.explore_episode(task, 0.0, seed + 100 * i)
                    out[i, 0] = sum(episode["rewards"])
                    with torch.no_grad():
                        padded = _pad([episode], self.agent.obs_dim)
                        x = RecurrentQ.inputs(padded["obs"], padded["actions"], padded["rewards"], self.agent.n_actions)
                        z = self.agent.decoder(x)[0][0, -1]
                    for e in range(1, episodes):
                        out[i, e] = self.exploit_episode(task, z, 0.0, seed + 100 * i + e, store=False)
                return out
            finally:
                self.agent.generator = stream

    # ---------------------------------------------------------------- checkpoints
    def _save(self, stem: Path) -> None:
        explore = {"explore_json": np.frombuffer(json.dumps(
            [{**e, "obs": np.asarray(e["obs"]).tolist()} for e in self.explore_buffer]).encode(), np.uint8)}
        rows = self.exploit_buffer
        exploit = {"obs": np.stack([r[0] for r in rows]), "action": np.array([r[1] for r in rows]),
                   "reward": np.array([r[2] for r in rows]), "next_obs": np.stack([r[3] for r in rows]),
                   "done": np.array([r[4] for r in rows]), "task": np.array([r[5] for r in rows])}
        tmp = stem.with_name(f".{stem.name}.npz.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **explore, **exploit)
        tmp.replace(stem.with_suffix(".npz"))
        save_checkpoint(stem, modules={"dream": self.agent}, optimizers={"all": self.agent.optim},
                        generators={"dream": self.agent.generator},
                        extra={"iteration": self.iteration, "updates": self.agent.updates,
                               "numpy_rng": self.rng.bit_generator.state, "config": asdict(self.config)})

    def _load(self, stem: Path) -> None:
        meta = load_checkpoint(stem, modules={"dream": self.agent}, optimizers={"all": self.agent.optim},
                               generators={"dream": self.agent.generator})
        if meta["config"] != json.loads(json.dumps(asdict(self.config))):
            raise OffbenchError(f"{stem.parent} holds a DREAM run with other settings; use another folder")
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
            self.explore_buffer = [{**e, "obs": [np.asarray(o, np.float32) for o in e["obs"]]}
                                   for e in json.loads(data["explore_json"].tobytes().decode())]
            self.exploit_buffer = [(o, int(a), float(r), o2, float(d), int(t)) for o, a, r, o2, d, t in zip(
                data["obs"], data["action"], data["reward"], data["next_obs"], data["done"], data["task"])]
        self.iteration, self.agent.updates = meta["iteration"], meta["updates"]
        self.rng.bit_generator.state = meta["numpy_rng"]

    def fit(self, iterations: int, out: str | Path, on_iteration: Callable[[dict], None] | None = None,
            checkpoint_every: int = 100) -> list[dict]:
        with torch_threads(self.config.threads):  # restored after: no thread count left behind
            return resumable_loop(out, iterations, load=self._load, save=self._save, current=lambda: self.iteration,
                                  step=self.iterate, on_iteration=on_iteration, checkpoint_every=checkpoint_every)
