"""Decision Transformer (Chen et al. 2021, "Decision Transformer: Reinforcement Learning via
Sequence Modeling", NeurIPS).

DT treats offline RL as conditional sequence modelling. A trajectory is the token sequence

    (R_1, s_1, a_1, R_2, s_2, a_2, ..., R_K, s_K, a_K)

of the last K timesteps (section 3, "Architecture"), where R_t = sum_{t' >= t} r_{t'} is the
undiscounted return-to-go. Each modality has its own linear embedding (discrete actions: an
embedding table; discrete observations: one-hot, then linear); a learned embedding of the
episode timestep t is added to all three tokens of step t ("this is different than the standard
positional embedding used by transformers, as one timestep corresponds to three tokens"); the
sum passes a LayerNorm and the 3K tokens go through a causal GPT (:mod:`offbench.transformer`,
pre-LayerNorm blocks, ReLU MLPs as in the paper's hyperparameter table). The hidden state at the
token of s_t predicts a_t: a linear head, squashed by tanh into the action bounds for continuous
actions, logits for discrete ones.

Loss (section 3, "Training", and Algorithm 1): the prediction head at the s_t token "is trained
to predict a_t - either with cross-entropy loss for discrete actions or mean-squared error for
continuous actions and the losses for each timestep are averaged". Here, over the real (not
padded) steps of a batch of segments::

    continuous: L = sum_{b,t} m_bt * mean_j (a_hat_btj - a_btj)^2 / sum_{b,t} m_bt
    discrete:   L = sum_{b,t} m_bt * (-log softmax(logits_bt)[a_bt]) / sum_{b,t} m_bt

(the mean over action dimensions follows Algorithm 1's ``mean((a_preds - a)**2)``).

Segments come from :class:`offbench.data.sampling.SegmentSampler`: K steps starting at a step
drawn uniformly from the data (the episode chosen proportionally to its length, as in DT),
left-padded with zeros and a mask; returns-to-go are divided by ``return_scale``.

Evaluation (section 3, Algorithm 1): the policy starts an episode with R_1 = ``target_return``,
feeds its last K (return-to-go, state, action, timestep) steps, takes the predicted action and
after each step decrements the return-to-go by the observed reward. :meth:`make_eval_policy`
returns an :class:`offbench.rollout.EpisodicPolicy` that keeps this history for each parallel
environment slot, left-padded to K exactly like training.

Defaults (REFERENCE §4 and the paper's OpenAI-Gym hyperparameter table): context K = 20, 3
layers, 1 head, embedding 128, ReLU, dropout 0.1, AdamW with lr 1e-4 and weight decay 1e-4,
gradient-norm clip 0.25, batch 64 (the loop's ``batch_size``; set it with ``--set batch_size=64``),
and a linear learning-rate warm-up ``lr * min(1, (n + 1) / warmup_steps)`` over the first
``warmup_steps`` = 10,000 updates (REFERENCE §4 says "lr 1e-4 with warm-up"; 10k is the
warm-up length of the commonly used public DT configurations; the paper's table should be
checked if an exact reproduction of its schedule matters). Weight decay applies to the weights
of linear layers only, not to biases, LayerNorm gains or embedding tables (the GPT-2 convention).

Settings that depend on the data
--------------------------------
- ``return_scale``: returns-to-go are divided by it before the linear return embedding, so that
  the network sees numbers of order 1. The usual DT setting for the MuJoCo locomotion tasks
  (returns in the thousands) is 1000; for a task with returns of order 1 (StitchGrid) use 1. The
  default ``None`` takes the largest absolute episode return in the data, so scaled
  returns-to-go lie in about [-1, 1]. Set ``--set return_scale=1000`` to match the usual DT
  setting on locomotion. The value used is saved with the model (buffer ``return_scale``).
- ``target_return``: the return asked for at evaluation. The published settings ask for about
  the best return seen in the data or a bit above, and also for half of it (REFERENCE §4:
  hopper 3600 / 1800, halfcheetah 12000 / 6000, walker 5000 / 2500, "scale with the data").
  The default ``None`` uses the best episode return in the dataset (saved as the buffer
  ``best_return``); override it with ``--set target_return=3600``. Note that the score
  depends on it: report the value used.
- ``max_episode_steps``: size of the timestep embedding table. The default 0 takes the longest
  episode of the dataset in :meth:`prepare` (saved as the buffer ``max_episode_steps`` so a
  reloaded model matches); at evaluation timesteps beyond it are clamped to the last entry.
  The timestep embedding is therefore created in :meth:`prepare` (and added to the optimiser
  there): :meth:`prepare` must run before training or loading a checkpoint, which
  ``offbench.train.fit`` and ``offbench eval`` both do.

Randomness: weight initialisation and dropout draw from torch's global generator (seeded by
``build_algorithm``; its state is saved and restored by the training loop), batches from the
sampler's own generator, so a resumed run matches an uninterrupted one exactly.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from offbench.algorithm import Algorithm
from offbench.data.dataset import Dataset
from offbench.data.sampling import SegmentSampler
from offbench.errors import OffbenchError
from offbench.nn import ObservationEncoder
from offbench.transformer import CausalTransformer


@dataclass
class DTConfig:
    context_length: int = 20  # K, timesteps per segment (3K tokens)
    layers: int = 3
    heads: int = 1
    embed_dim: int = 128
    dropout: float = 0.1
    lr: float = 1e-4
    weight_decay: float = 1e-4  # AdamW, linear-layer weights only
    warmup_steps: int = 10_000  # linear learning-rate warm-up (updates)
    grad_clip: float = 0.25  # max global gradient norm
    return_scale: float | None = None  # None: the largest |episode return| in the data (DT on locomotion: 1000)
    target_return: float | None = None  # None: the best episode return of the data
    max_episode_steps: int = 0  # timestep-embedding size; 0: the dataset's longest episode
    normalize_observations: bool = True  # states standardised with the data's mean/std


class DecisionTransformer(Algorithm):
    config_class = DTConfig
    summary = "Decision Transformer: return-conditioned causal transformer over (R, s, a) tokens"

    def __init__(self, observation_space, action_space, config: DTConfig = DTConfig(), *, seed: int = 0):
        super().__init__(observation_space, action_space, config, seed=seed)
        if isinstance(observation_space, gym.spaces.Dict):
            raise OffbenchError("DecisionTransformer needs Box or Discrete observations, not a Dict space")
        d = config.embed_dim
        self.encoder = ObservationEncoder(observation_space, config.normalize_observations)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.embed_return = nn.Linear(1, d)
        self.embed_state = nn.Linear(self.encoder.dim, d)
        if self.discrete:
            self.action_dim = int(action_space.n)
            self.embed_action = nn.Embedding(self.action_dim, d)
        else:
            self.action_dim = int(np.prod(action_space.shape))
            self.embed_action = nn.Linear(self.action_dim, d)
            low = np.broadcast_to(action_space.low, action_space.shape).reshape(-1)
            high = np.broadcast_to(action_space.high, action_space.shape).reshape(-1)
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise OffbenchError("DecisionTransformer's tanh action head needs finite action bounds")
            self.register_buffer("action_scale", torch.as_tensor((high - low) / 2, dtype=torch.float32))
            self.register_buffer("action_bias", torch.as_tensor((high + low) / 2, dtype=torch.float32))
        # Created in prepare(), once the dataset's longest episode is known.
        self.register_module("embed_timestep", None)
        self.embed_ln = nn.LayerNorm(d)
        self.transformer = CausalTransformer(d, config.layers, config.heads, config.dropout, activation=nn.ReLU)
        self.head = nn.Linear(d, self.action_dim)
        for module in (self.embed_return, self.embed_state, self.embed_action, self.head):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        # Data-derived settings, saved with every checkpoint (filled in by prepare()).
        self.register_buffer("max_episode_steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("best_return", torch.zeros((), dtype=torch.float64))
        self.register_buffer("return_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))  # drives the warm-up
        decay, no_decay = self._parameter_groups()
        self.optim = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                        {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)

    def _parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """Linear-layer weights (decayed) and everything else (biases, LayerNorms, embeddings)."""
        decay_ids = {id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)}
        params = list(self.parameters())
        return [p for p in params if id(p) in decay_ids], [p for p in params if id(p) not in decay_ids]

    # ------------------------------------------------------------------ data
    @property
    def prepared(self) -> bool:
        return self.embed_timestep is not None

    def prepare(self, dataset: Dataset) -> Dataset:
        if dataset.is_dict_observation:
            raise OffbenchError("DecisionTransformer needs Box or Discrete observations, not a Dict space")
        self.encoder.fit(dataset.observations)
        returns = dataset.episode_returns()
        steps = int(self.config.max_episode_steps) or int(dataset.episode_lengths.max())
        scale = self.config.return_scale
        if scale is None:
            scale = float(np.max(np.abs(returns))) or 1.0
        if not scale > 0:
            raise OffbenchError(f"return_scale must be > 0, got {scale}")
        if self.embed_timestep is None:
            self.embed_timestep = nn.Embedding(steps, self.config.embed_dim)
            nn.init.normal_(self.embed_timestep.weight, mean=0.0, std=0.02)
            self.optim.add_param_group({"params": [self.embed_timestep.weight], "weight_decay": 0.0})
        elif self.embed_timestep.num_embeddings != steps:
            raise OffbenchError(f"prepare() was already called with episodes of up to "
                                f"{self.embed_timestep.num_embeddings} steps; this dataset needs {steps}")
        self.max_episode_steps.fill_(steps)
        self.best_return.fill_(float(returns.max()))
        self.return_scale.fill_(float(scale))
        return dataset

    def make_sampler(self, dataset: Dataset, batch_size: int, seed: int) -> SegmentSampler:
        self._require_prepared("make_sampler")
        return SegmentSampler(dataset, self.config.context_length, batch_size, seed=seed, gamma=1.0,
                              return_scale=float(self.return_scale))

    def _require_prepared(self, what: str) -> None:
        if not self.prepared:
            raise OffbenchError(f"DecisionTransformer.{what}: call prepare(dataset) first (it sizes the "
                                "timestep embedding from the data)")

    # ------------------------------------------------------------------ model
    def forward(self, returns_to_go: torch.Tensor, observations: torch.Tensor, actions: torch.Tensor,
                timesteps: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Action predictions at every state token: [B, K, action_dim] (continuous: squashed into
        the bounds; discrete: logits).

        ``returns_to_go`` [B, K] (already divided by ``return_scale``), ``observations`` [B, K, ...],
        ``actions`` [B, K, ...] (the action at a step is never seen by that step's prediction),
        ``timesteps`` [B, K] int, ``mask`` [B, K] (1 = real step, 0 = left padding) or None.
        """
        self._require_prepared("forward")
        b, k = returns_to_go.shape
        states = self.encoder(observations.reshape(b * k, *observations.shape[2:])).view(b, k, -1)
        if self.discrete:
            act = self.embed_action(actions.long().reshape(b, k))
        else:
            act = self.embed_action(actions.reshape(b, k, -1).float())
        t = self.embed_timestep(timesteps.long().clamp(0, self.embed_timestep.num_embeddings - 1))
        tokens = torch.stack([self.embed_return(returns_to_go.float().unsqueeze(-1)) + t,
                              self.embed_state(states) + t, act + t], dim=2)  # [B, K, 3, d]
        tokens = self.embed_ln(tokens.reshape(b, 3 * k, -1))
        padding = None if mask is None else mask.bool().repeat_interleave(3, dim=1)
        hidden = self.transformer(tokens, padding)
        out = self.head(hidden[:, 1::3])  # the s_t tokens predict a_t
        if self.discrete:
            return out
        return torch.tanh(out) * self.action_scale + self.action_bias

    def loss(self, batch) -> torch.Tensor:
        """Masked mean over real steps of the action MSE (continuous) or cross-entropy (discrete)."""
        pred = self(batch.returns_to_go, batch.observations, batch.actions, batch.timesteps, batch.mask)
        mask = batch.mask.float()
        if self.discrete:
            per_step = F.cross_entropy(pred.reshape(-1, self.action_dim), batch.actions.long().reshape(-1),
                                       reduction="none").view(mask.shape)
        else:
            target = batch.actions.reshape(*mask.shape, -1).float()
            per_step = ((pred - target) ** 2).mean(-1)
        return (per_step * mask).sum() / mask.sum().clamp_min(1.0)

    def learning_rate(self) -> float:
        """The warm-up learning rate of the next update."""
        warm = max(int(self.config.warmup_steps), 1)
        return self.config.lr * min(1.0, (int(self.updates) + 1) / warm)

    def update(self, batch) -> dict[str, float]:
        self._require_prepared("update")
        lr = self.learning_rate()
        for group in self.optim.param_groups:
            group["lr"] = lr
        loss = self.loss(batch)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = nn.utils.clip_grad_norm_(self.parameters(), self.config.grad_clip)
        self.optim.step()
        self.updates += 1
        return {"dt_loss": loss.item(), "grad_norm": float(grad_norm), "lr": lr}

    def optimizers(self):
        return {"dt": self.optim}

    # ------------------------------------------------------------------ evaluation
    def make_eval_policy(self, target_return: float | None = None) -> "DTEvalPolicy":
        """An :class:`offbench.rollout.EpisodicPolicy` conditioned on ``target_return`` (default:
        the config's ``target_return``, else the best episode return of the training data)."""
        self._require_prepared("make_eval_policy")
        if target_return is None:
            target_return = self.config.target_return
        if target_return is None:
            target_return = float(self.best_return)
        return DTEvalPolicy(self, float(target_return))

    @torch.no_grad()
    def act(self, observations: np.ndarray) -> np.ndarray:
        raise OffbenchError("DecisionTransformer acts on a history: use make_eval_policy() (an EpisodicPolicy)")


@dataclass
class _SlotHistory:
    """One environment slot's episode so far: its last K steps, the four deques aligned step by step."""

    return_to_go: float  # unscaled, for the next step
    timestep: int  # of the next step
    observations: deque
    actions: deque  # the newest entry is 0 until act() has chosen it
    returns_to_go: deque
    timesteps: deque


class DTEvalPolicy:
    """Decision Transformer's evaluation loop (paper, Algorithm 1) for several parallel slots.

    ``reset(slot)`` starts an episode with return-to-go ``target_return`` at timestep 0;
    ``act(observations, slots)`` appends each slot's observation (with its current return-to-go
    and timestep, and a 0 placeholder for the action still to be chosen) to that slot's history,
    keeps the last K steps, left-pads them to K like the training segments, and returns the
    action predicted at the newest state token (argmax for discrete actions), which then
    replaces the placeholder; ``observe(slots, rewards)`` subtracts each reward from the slot's
    return-to-go and advances its timestep. The model runs in eval mode (no dropout) inside
    ``act`` whatever its mode outside, and slots never see each other's histories.
    """

    def __init__(self, model: DecisionTransformer, target_return: float):
        self.model = model
        self.target_return = float(target_return)
        self.context_length = int(model.config.context_length)
        self.histories: dict[int, _SlotHistory] = {}

    def reset(self, slot: int) -> None:
        k = self.context_length
        self.histories[slot] = _SlotHistory(self.target_return, 0, deque(maxlen=k), deque(maxlen=k),
                                            deque(maxlen=k), deque(maxlen=k))

    def inputs(self, slots: list[int]) -> dict[str, torch.Tensor]:
        """The left-padded model inputs of ``slots`` as their histories stand, each [n, K, ...]:
        ``returns_to_go`` (divided by the model's ``return_scale``), ``observations``, ``actions``,
        ``timesteps``, ``mask`` (1 for the real steps, which fill the right end)."""
        k = self.context_length
        n = len(slots)
        first = np.asarray(self.histories[slots[0]].observations[-1])
        obs = np.zeros((n, k, *first.shape), dtype=first.dtype)
        if self.model.discrete:
            actions = np.zeros((n, k), dtype=np.int64)
        else:
            actions = np.zeros((n, k, self.model.action_dim), dtype=np.float32)
        rtg = np.zeros((n, k), dtype=np.float64)
        steps = np.zeros((n, k), dtype=np.int64)
        mask = np.zeros((n, k), dtype=np.float32)
        for i, slot in enumerate(slots):
            h = self.histories[slot]
            m = len(h.observations)
            obs[i, k - m:] = np.stack(h.observations)
            actions[i, k - m:] = np.stack(h.actions).reshape(actions[i, k - m:].shape)
            rtg[i, k - m:] = h.returns_to_go
            steps[i, k - m:] = h.timesteps
            mask[i, k - m:] = 1.0
        scale = float(self.model.return_scale)
        return {"returns_to_go": torch.as_tensor(rtg / scale, dtype=torch.float32),
                "observations": torch.as_tensor(obs), "actions": torch.as_tensor(actions),
                "timesteps": torch.as_tensor(steps), "mask": torch.as_tensor(mask)}

    @torch.no_grad()
    def act(self, observations: np.ndarray, slots: list[int]) -> np.ndarray:
        placeholder = 0 if self.model.discrete else np.zeros(self.model.action_dim, dtype=np.float32)
        for obs, slot in zip(observations, slots):
            h = self.histories[slot]
            h.observations.append(np.array(obs, copy=True))
            h.actions.append(placeholder)
            h.returns_to_go.append(h.return_to_go)
            h.timesteps.append(h.timestep)
        x = self.inputs(list(slots))
        was_training = self.model.training
        self.model.eval()
        try:
            pred = self.model(x["returns_to_go"], x["observations"], x["actions"], x["timesteps"], x["mask"])
        finally:
            self.model.train(was_training)
        last = pred[:, -1]
        if self.model.discrete:
            actions = last.argmax(-1).numpy()
        else:
            actions = last.numpy().astype(np.float32).reshape(len(slots), *self.model.action_space.shape)
        for action, slot in zip(actions, slots):
            self.histories[slot].actions[-1] = np.array(action, copy=True)
        return actions

    def observe(self, slots: list[int], rewards: np.ndarray) -> None:
        for slot, reward in zip(slots, rewards):
            h = self.histories[slot]
            h.return_to_go -= float(reward)
            h.timestep += 1
