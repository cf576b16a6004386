"""MOPO (Yu et al. 2020, "MOPO: Model-based Offline Policy Optimization"), and the model-based
SAC machinery COMBO shares (``ModelBasedSAC``).

A probabilistic dynamics ensemble (``offbench.dynamics.DynamicsEnsemble``: 7 Gaussian MLPs,
4x200 swish, 5 elites, REFERENCE §4) is trained on the dataset in ``prepare``. Every
``rollout_every`` gradient steps, ``rollout_batch_size`` states drawn uniformly from the dataset
are rolled out ``rollout_horizon`` steps in the model with the current (stochastic) policy; each
step samples s' and r from a random elite, stops a branch where the task's TRUE termination
rule (``offbench.envs.tasks``) says the real environment would end, and stores the transitions
in a model buffer (a tensor ring buffer holding the last ``retain_rollouts`` rollouts). SAC
then trains on batches of which a fraction ``real_ratio`` (0.05) is dataset transitions and the
rest model transitions (MBPO's scheme, which MOPO builds on).

MOPO's one change to this MBPO-style loop is the uncertainty-penalised reward of its
Algorithm 2, the practical form of eq. 8/9 (r~ = r - lambda u, with u an admissible error
estimator):

    r~(s, a) = r^(s, a) - lambda * u(s, a),     u(s, a) = max_{i in elites} || sigma_i(s, a) ||_2

where sigma_i is elite i's predicted standard deviation over all outputs ``[s' - s, r]``. This
is the "max aleatoric" estimator of the paper's practical algorithm; the paper writes the norm
of the learned covariance Sigma_i, and its released setting uses the standard deviation, as
here. The penalty is applied once, when a model transition is stored.

SAC (Haarnoja et al. 2018; same structure as ``baselines/online/sac.py``): twin critics on
y = r + gamma (1 - d) (min_j Qbar_j(s', a') - alpha log pi(a'|s')), a' ~ pi(.|s'); actor
minimising alpha log pi(a~|s) - min_j Q_j(s, a~); temperature towards entropy -|A|.

Defaults and sources: 2x256 actor and critics, lr 3e-4, tau 0.005, gamma 0.99 (SAC, REFERENCE
§4); real ratio 0.05, horizon 5 (REFERENCE §4 gives 1-5), rollouts of 50 000 states every 1000
steps kept for 5 rollouts (MBPO/MOPO's rollout batch and retention); lambda 1.0 (the paper
tunes lambda per dataset, between 0.5 and 5 in its D4RL table). Continuous actions only.

Resume and the dynamics model: the dynamics weights are part of the module state (so every
checkpoint holds them), and so are the model buffer, its ring pointer and the update counter,
so a resumed run continues exactly. ``fit`` calls ``prepare`` again on resume before loading
the checkpoint, and ``offbench eval`` calls it too; to make that cheap, the trained ensemble is
cached under ``$OFFBENCH_HOME/cache/dynamics/`` keyed by the dataset's content hash, the seed and
every model setting (``cache_dynamics``), and ``prepare`` loads it instead of retraining.
Training draws only from its own generator (derived from the seed) and the ensemble is
initialised from its own seeded stream, so whether ``prepare`` trained or loaded leaves every
other random stream, and therefore the whole run, unchanged.
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import asdict, dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from offbench.algorithm import Algorithm
from offbench.data.dataset import Dataset
from offbench.data.sampling import TransitionSampler
from offbench.dynamics import DynamicsEnsemble, Prediction
from offbench.errors import OffbenchError
from offbench.nn import adam, ObservationEncoder, QEnsemble, TanhGaussianPolicy, soft_update

log = logging.getLogger(__name__)

#: Bump when the ensemble's training changes, so cached models are not reused across versions.
DYNAMICS_CACHE_VERSION = 1
#: Offsets of the seeds of the ensemble's initialisation and of its training generator.
_INIT_SEED_OFFSET, _TRAIN_SEED_OFFSET = 7_919, 104_729


@dataclass
class ModelBasedConfig:
    """Settings shared by MOPO and COMBO (each subclass documents its own defaults)."""

    # SAC
    hidden: tuple[int, ...] = (256, 256)  # actor and critics
    critics: int = 2
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    init_alpha: float = 1.0
    target_entropy: float | None = None  # None: -|A|
    backup_entropy: bool = True  # subtract alpha log pi(a'|s') in the critic target
    normalize_observations: bool = True  # actor/critic inputs: dataset mean/std (offbench convention)
    # model data
    real_ratio: float = 0.05  # fraction of each batch from the dataset
    rollout_horizon: int = 5
    rollout_every: int = 1000  # gradient steps between rollouts (the first is at step 0)
    rollout_batch_size: int = 50_000  # dataset states each rollout starts from
    retain_rollouts: int = 5  # buffer capacity = rollout_batch_size * rollout_horizon * retain_rollouts
    # dynamics ensemble
    model_members: int = 7
    model_elites: int = 5
    model_hidden: tuple[int, ...] = (200, 200, 200, 200)
    model_lr: float = 1e-3
    model_batch_size: int = 256
    model_holdout_fraction: float = 0.1  # whole episodes, at most model_max_holdout transitions
    model_max_holdout: int = 5000
    model_patience: int = 5  # epochs without a >1% hold-out improvement of any member
    model_max_epochs: int | None = None  # None: until early stopping
    cache_dynamics: bool = True  # reuse a trained ensemble from $OFFBENCH_HOME/cache/dynamics


@dataclass
class MOPOConfig(ModelBasedConfig):
    penalty_coef: float = 1.0  # lambda of r~ = r - lambda * max_i ||sigma_i||


def mopo_penalty(stds: torch.Tensor) -> torch.Tensor:
    """u(s, a) = max over elites of the L2 norm of the predicted std: ``[E, B, D]`` -> ``[B]``."""
    return stds.norm(dim=-1).max(dim=0).values


def _model_cache_dir():
    from offbench.data.catalogue import offbench_home

    return offbench_home() / "cache" / "dynamics"


class ModelBasedSAC(Algorithm):
    """Dynamics ensemble + model rollouts + SAC on mixed real/model batches.

    Subclasses choose the reward stored for model transitions (:meth:`model_reward`) and may
    add to the critic loss (:meth:`critic_loss`).
    """

    config_class = ModelBasedConfig

    def __init__(self, observation_space, action_space, config: ModelBasedConfig, *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        name = type(self).__name__
        if not isinstance(action_space, gym.spaces.Box):
            raise OffbenchError(f"{name} needs continuous (Box) actions, not {action_space}; for discrete actions "
                                "use bc, percent_bc, awr or cql (discrete Q-learning)")
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise OffbenchError(f"{name} needs flat Box observations (a dynamics model predicts them), "
                                f"not {observation_space}")
        if not 0.0 < config.real_ratio <= 1.0:
            raise OffbenchError(f"{name}: real_ratio must be in (0, 1], got {config.real_ratio}")
        for key in ("rollout_horizon", "rollout_every", "rollout_batch_size", "retain_rollouts"):
            if getattr(config, key) < 1:
                raise OffbenchError(f"{name}: {key} must be >= 1, got {getattr(config, key)}")
        self.seed = int(seed)
        obs_dim, act_dim = int(observation_space.shape[0]), int(np.prod(action_space.shape))
        self.obs_dim, self.act_dim = obs_dim, act_dim
        # The ensemble's initial weights come from a stream of their own, so they depend only on
        # the seed, and the networks below draw exactly what they would without a model.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed + _INIT_SEED_OFFSET)
            self.dynamics = DynamicsEnsemble(obs_dim, act_dim, config.model_members, config.model_elites,
                                             config.model_hidden)
        self.encoder = ObservationEncoder(observation_space, config.normalize_observations)
        self.actor = TanhGaussianPolicy(obs_dim, act_dim, config.hidden, action_space.low, action_space.high)
        self.critic = QEnsemble(obs_dim, act_dim, config.critics, config.hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(np.log(config.init_alpha))))
        self.target_entropy = -float(act_dim) if config.target_entropy is None else float(config.target_entropy)
        self.actor_optim = adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_optim = adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_optim = adam([self.log_alpha], lr=config.alpha_lr)
        # Model buffer: rows [s (O), a (A), r~ (1), s' (O), terminated (1)], a ring of fixed capacity.
        capacity = config.rollout_batch_size * config.rollout_horizon * config.retain_rollouts
        self.register_buffer("model_buffer", torch.zeros(capacity, 2 * obs_dim + act_dim + 2))
        self.register_buffer("model_buffer_next", torch.zeros((), dtype=torch.int64))
        self.register_buffer("model_buffer_size", torch.zeros((), dtype=torch.int64))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.int64))
        #: [mean stored model reward, mean penalty, fraction of branches terminated, transitions added]
        self.register_buffer("rollout_stats", torch.zeros(4))
        self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32), persistent=False)
        self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32), persistent=False)
        self._start_obs: torch.Tensor | None = None
        self._model_batch: int | None = None
        self.dynamics_info: dict = {}

    # ------------------------------------------------------------------ preparation
    def prepare(self, dataset: Dataset) -> Dataset:
        self.encoder.fit(dataset.observations)
        self.dynamics.task = self._task(dataset)
        self._start_obs = torch.as_tensor(np.asarray(dataset.observations), dtype=torch.float32)
        self.train_dynamics(dataset)
        return dataset

    def _task(self, dataset: Dataset):
        from offbench.envs.tasks import get_task, task_for_dataset

        try:
            task = get_task(dataset.metadata.env_id)
        except OffbenchError:
            try:
                task = task_for_dataset(dataset.metadata.dataset_id)
            except OffbenchError:
                raise OffbenchError(
                    f"{type(self).__name__} needs the true termination rule of {dataset.metadata.env_id!r} for its "
                    "model rollouts, and offbench.envs.tasks does not know this environment; add a Task for it "
                    "there") from None
        if task.observation_dim is not None and task.observation_dim != self.obs_dim:
            raise OffbenchError(f"{dataset.metadata.dataset_id}: observations have {self.obs_dim} dims but the "
                                f"termination rule of {task.name} expects {task.observation_dim}")
        return task

    def dynamics_key(self, dataset: Dataset) -> str:
        """The cache key of the trained ensemble: everything its training depends on."""
        cfg = self.config
        model_settings = {k: v for k, v in asdict(cfg).items() if k.startswith("model_")}
        fields = {"version": DYNAMICS_CACHE_VERSION, "dataset": dataset.content_sha256(), "seed": self.seed,
                  "obs_dim": self.obs_dim, "act_dim": self.act_dim, "torch": torch.__version__,
                  "model": json.loads(json.dumps(model_settings, default=list))}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]

    def train_dynamics(self, dataset: Dataset) -> dict:
        """Fit the ensemble on the dataset's transitions (or load the cached identical fit)."""
        from offbench.checkpoint import load_checkpoint, save_checkpoint

        cfg = self.config
        stem = _model_cache_dir() / self.dynamics_key(dataset) if cfg.cache_dynamics else None
        if stem is not None and stem.with_suffix(".json").exists():
            initial = {k: v.clone() for k, v in self.dynamics.state_dict().items()}
            try:
                meta = load_checkpoint(stem, modules={"dynamics": self.dynamics})
                self.dynamics_info = {**meta.get("info", {}), "cached": str(stem)}
                return self.dynamics_info
            except (OffbenchError, RuntimeError) as exc:  # unreadable or stale: train again, from the seeded init
                log.warning("ignoring the cached dynamics model %s: %s", stem, exc)
                self.dynamics.load_state_dict(initial)
        from tqdm.auto import tqdm

        obs = torch.as_tensor(np.asarray(dataset.observations), dtype=torch.float32)
        next_obs = torch.as_tensor(np.asarray(dataset.next_observations), dtype=torch.float32)
        actions = torch.as_tensor(np.asarray(dataset.actions), dtype=torch.float32).reshape(len(obs), -1)
        rewards = torch.as_tensor(np.asarray(dataset.rewards), dtype=torch.float32)
        generator = torch.Generator().manual_seed(self.seed + _TRAIN_SEED_OFFSET)
        bar = tqdm(total=cfg.model_max_epochs, unit="epoch", disable=None, desc=f"{type(self).__name__} dynamics")

        def progress(epoch, info):
            bar.update(1)
            bar.set_postfix(holdout_mse=f"{min(info['holdout_mse']):.4g}")

        try:
            info = self.dynamics.fit(obs, actions, next_obs, rewards, dataset.episode_of_step, generator=generator,
                                     lr=cfg.model_lr, batch_size=cfg.model_batch_size,
                                     holdout_fraction=cfg.model_holdout_fraction, max_holdout=cfg.model_max_holdout,
                                     patience=cfg.model_patience, max_epochs=cfg.model_max_epochs, log=progress)
        finally:
            bar.close()
        info = {k: v for k, v in info.items() if k != "history"}
        log.info("dynamics ensemble: %d epochs in %.1f s, elites %s, elite hold-out MSE %.4g", info["epochs"],
                 info["seconds"], info["elites"], info["elite_holdout_mse"])
        if stem is not None:
            save_checkpoint(stem, modules={"dynamics": self.dynamics},
                            extra={"info": info, "dataset_id": dataset.metadata.dataset_id, "seed": self.seed})
        self.dynamics_info = info
        return info

    def make_sampler(self, dataset: Dataset, batch_size: int, seed: int):
        """Real transitions only: ``round(real_ratio * batch_size)`` per batch (at least 1);
        ``update`` adds the rest from the model buffer."""
        real = max(1, int(round(self.config.real_ratio * batch_size)))
        self._model_batch = max(0, batch_size - real)
        return TransitionSampler(dataset, batch_size=real, seed=seed, gamma=self.config.gamma)

    # ------------------------------------------------------------------ model data
    def model_reward(self, prediction: Prediction) -> tuple[torch.Tensor, torch.Tensor]:
        """(reward stored for model transitions [B], penalty [B]); the plain model reward here."""
        return prediction.rewards, torch.zeros_like(prediction.rewards)

    def _store(self, rows: torch.Tensor) -> None:
        capacity = self.model_buffer.shape[0]
        rows = rows[-capacity:]
        start = int(self.model_buffer_next)
        positions = (start + torch.arange(len(rows))) % capacity
        self.model_buffer.index_copy_(0, positions, rows)
        self.model_buffer_next.fill_((start + len(rows)) % capacity)
        self.model_buffer_size.fill_(min(int(self.model_buffer_size) + len(rows), capacity))

    @torch.no_grad()
    def rollout(self) -> None:
        """Branch ``rollout_batch_size`` model rollouts of ``rollout_horizon`` steps from dataset states."""
        if self._start_obs is None:
            raise OffbenchError(f"{type(self).__name__}.prepare(dataset) must run before training")
        cfg = self.config
        start = torch.randint(len(self._start_obs), (cfg.rollout_batch_size,), generator=self.generator)
        obs = self._start_obs[start]
        reward_sum = penalty_sum = 0.0
        added = 0
        for _ in range(cfg.rollout_horizon):
            action, _ = self.actor(self.encoder(obs), generator=self.generator)
            next_obs, _, terminated, prediction = self.dynamics.step(obs, action, self.generator)
            reward, penalty = self.model_reward(prediction)
            valid = torch.isfinite(next_obs).all(-1) & torch.isfinite(reward)
            rows = torch.cat([obs, action, reward[:, None], next_obs, terminated[:, None].float()], dim=1)[valid]
            self._store(rows)
            added += len(rows)
            reward_sum += float(reward[valid].sum())
            penalty_sum += float(penalty[valid].sum())
            obs = next_obs[~terminated]
            if len(obs) == 0:
                break
        self.rollout_stats.copy_(torch.tensor([reward_sum / max(added, 1), penalty_sum / max(added, 1),
                                               1.0 - len(obs) / cfg.rollout_batch_size, float(added)]))

    def sample_model(self, count: int) -> dict[str, torch.Tensor]:
        """``count`` uniform transitions from the model buffer."""
        size = int(self.model_buffer_size)
        if count > 0 and size == 0:
            raise OffbenchError(f"{type(self).__name__}: the model buffer is empty (no rollout has run)")
        index = torch.randint(max(size, 1), (count,), generator=self.generator)
        rows = self.model_buffer.index_select(0, index)
        o, a = self.obs_dim, self.act_dim
        return {"observations": rows[:, :o], "actions": rows[:, o:o + a], "rewards": rows[:, o + a],
                "next_observations": rows[:, o + a + 1:2 * o + a + 1], "terminations": rows[:, -1]}

    # ------------------------------------------------------------------ SAC
    def critic_target_values(self, next_obs: torch.Tensor, rewards: torch.Tensor, terminations: torch.Tensor,
                             alpha: torch.Tensor) -> torch.Tensor:
        """y = r + gamma (1 - d) (min_j Qbar_j(s', a') [- alpha log pi(a'|s')]), a' ~ pi(.|s')."""
        with torch.no_grad():
            next_action, next_log_prob = self.actor(next_obs, generator=self.generator)
            next_q = self.critic_target(next_obs, next_action).min(0).values
            if self.config.backup_entropy:
                next_q = next_q - alpha * next_log_prob
            return rewards + self.config.gamma * (1.0 - terminations) * next_q

    def critic_loss(self, obs: torch.Tensor, actions: torch.Tensor, q: torch.Tensor, target: torch.Tensor,
                    num_real: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Bellman error 1/2 E[(Q_j - y)^2] summed over critics (``obs`` encoded, real rows first)."""
        return 0.5 * ((q - target) ** 2).mean(1).sum(), {}

    def sac_step(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, next_obs: torch.Tensor,
                 terminations: torch.Tensor, num_real: int) -> dict[str, float]:
        """One SAC update (critics, actor, temperature, targets) on encoded observations."""
        alpha = self.log_alpha.exp().detach()
        target = self.critic_target_values(next_obs, rewards, terminations, alpha)
        q = self.critic(obs, actions)
        critic_loss, info = self.critic_loss(obs, actions, q, target, num_real)
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optim.step()

        new_action, log_prob = self.actor(obs, generator=self.generator)
        q_new = self.critic(obs, new_action).min(0).values
        actor_loss = (alpha * log_prob - q_new).mean()
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optim.step()

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_optim.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_optim.step()

        soft_update(self.critic_target, self.critic, self.config.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha": alpha.item(),
                "q_mean": q.detach().mean().item(), "entropy": -log_prob.detach().mean().item(),
                **{k: float(v) for k, v in info.items()}}

    def update(self, batch) -> dict[str, float]:
        cfg = self.config
        if int(self.num_updates) % cfg.rollout_every == 0:
            self.rollout()
        self.num_updates += 1
        num_real = len(batch.rewards)
        num_model = self._model_batch
        if num_model is None:  # a batch not from make_sampler: keep the configured ratio
            num_model = int(round(num_real * (1.0 - cfg.real_ratio) / cfg.real_ratio))
        if int(self.model_buffer_size) == 0:
            num_model = 0
        model = self.sample_model(num_model)
        obs = torch.cat([batch.observations.float(), model["observations"]])
        next_obs = torch.cat([batch.next_observations.float(), model["next_observations"]])
        actions = torch.cat([batch.actions.float().reshape(num_real, -1), model["actions"]])
        rewards = torch.cat([batch.rewards, model["rewards"]])
        terminations = torch.cat([batch.terminations, model["terminations"]])
        metrics = self.sac_step(self.encoder(obs), actions, rewards, self.encoder(next_obs), terminations, num_real)
        stats = self.rollout_stats.tolist()
        return {**metrics, "model_reward": stats[0], "model_penalty": stats[1], "rollout_terminated": stats[2],
                "model_buffer": float(self.model_buffer_size)}

    # ------------------------------------------------------------------ acting / persistence
    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        """tanh of the Gaussian's mean (deterministic evaluation)."""
        features = self.encoder(torch.as_tensor(np.asarray(observations)))
        return self.actor(features, deterministic=True)[0].numpy()

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_optim, "critic": self.critic_optim, "alpha": self.alpha_optim}


class MOPO(ModelBasedSAC):
    config_class = MOPOConfig
    summary = "MOPO: SAC on model rollouts with reward r - lambda * max_i ||sigma_i(s, a)|| (uncertainty penalty)"

    def __init__(self, observation_space, action_space, config: MOPOConfig = MOPOConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)

    def model_reward(self, prediction: Prediction) -> tuple[torch.Tensor, torch.Tensor]:
        """r~ = r^ - lambda * u(s, a), u = max over elites of ||sigma_i(s, a)||_2 (eq. 8/9, Algorithm 2)."""
        penalty = mopo_penalty(prediction.stds)
        return prediction.rewards - self.config.penalty_coef * penalty, penalty


__all__ = ["MOPO", "MOPOConfig", "ModelBasedConfig", "ModelBasedSAC", "mopo_penalty"]
