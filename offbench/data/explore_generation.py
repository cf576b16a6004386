r"""Reward-free exploratory datasets (issue 18; ExORL's recipe, Yarats et al. 2022): train an
unsupervised skill-discovery or exploration method, then collect data with it, rewards 0, and
store what downstream tasks need to relabel the rewards later.

Recipe kind ``explore`` (a card's ``[recipe]`` table)::

    kind = "explore"
    env_id = "offbench/PointPlane-v0"
    method = "diayn"          # a name of baselines.skills.registry.TRAINERS: diayn, dads, metra, rnd, random
    episodes = 150            # training episodes; 0: no training (``random`` learns nothing and takes 0)
    run = "explore-point-plane-diayn-s0"   # the training run, $OFFBENCH_HOME/runs/behaviour/<run>
    steps = 100000            # steps collected
    seed = 0
    config = {}               # settings of the method's config class, e.g. {alternatives = 100} (optional)
    env_kwargs = {}           # keyword arguments of gym.make (optional)

**Training.** The method's trainer (``offbench.skill_loop.SkillTrainer``) is built with the
recipe's config and seed and ``fit(episodes, run)`` runs it in the run folder, which it resumes
exactly (a killed build continues where it stopped; a finished run is never trained twice). A
folder holding another configuration, or more episodes than the recipe's, is refused.

**Collection.** Exactly ``steps`` steps, in episodes played from ``env.reset`` to the
environment's own end (the last one cut at the budget and marked truncated). Each episode draws
one skill from the method's prior p(z) and keeps it (``SkillSpace.sample``); actions come from
the stochastic skill policy, SAC's tanh-squashed Gaussian on (s, z), or uniformly from the box
for ``random``. Randomness: the words ``(actions, skills, resets)`` of
``numpy.random.SeedSequence([seed, 1])`` (:func:`collection_seeds`) seed the action stream
(``SkillTrainer.rollout_streams``), the skill stream (``numpy.random.default_rng``, one
``sample`` per episode, in order) and ``env.reset(seed=resets + k)`` of episode k; training's
streams are the trainer's own, so collecting never changes the training run.

**What every step stores.** ``observations``, ``actions``; ``rewards`` = 0 (reward-free);
``terminations`` / ``truncations`` as Gymnasium returned them (PointPlane: truncated after 50
steps, never terminated); ``behaviour_log_prob``, the exact log-density of the action under the
policy that drew it (the squashed Gaussian's change of variables, or the box's uniform density,
``-sum(log(high - low))``); ``policy_id`` 0; ``infos/skill``, the episode's skill: its index
(int64; the policy saw its one-hot) for categorical skills, its vector [D] (float32) for
continuous ones, absent for methods without skills (RND, random); and ``sim_state/*``, the
simulator state of ``offbench.data.collect.simulator_state`` (PointPlane: ``sim_state/state``,
the float64 position that the float32 observation rounds), with each episode's final state. The
goal tasks of ``offbench.envs.tasks`` recompute their rewards from it
(``offbench.data.relabel.relabel_for_task``).
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import gymnasium as gym
import numpy as np

from offbench.errors import OffbenchError

REQUIRED = ("env_id", "method", "episodes", "steps", "seed")
OPTIONAL = ("kind", "run", "config", "env_kwargs")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def trainers() -> dict:
    """``baselines.skills.registry.TRAINERS``: method name -> (trainer class, config class)."""
    from baselines.skills.registry import TRAINERS

    return TRAINERS


@dataclass(frozen=True)
class ExploreRecipe:
    """A checked ``explore`` recipe (module docstring); :meth:`parse` builds one from a card's table."""

    env_id: str
    method: str
    episodes: int
    steps: int
    seed: int
    run: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, recipe: Mapping[str, Any], where: str) -> "ExploreRecipe":
        """Check ``recipe``; every error names ``where`` (the card), the field and its value."""
        missing = [k for k in REQUIRED if k not in recipe]
        if missing:
            raise OffbenchError(f"{where}: explore recipe lacks {missing} (it needs {list(REQUIRED)}, and 'run' "
                                "when episodes > 0)")
        unknown = sorted(set(recipe) - set(REQUIRED) - set(OPTIONAL))
        if unknown:
            raise OffbenchError(f"{where}: explore recipe has unknown fields {unknown} (known: "
                                f"{sorted(REQUIRED + OPTIONAL)})")
        if recipe.get("kind", "explore") != "explore":
            raise OffbenchError(f"{where}: recipe.kind is {recipe['kind']!r}, not 'explore'")
        if recipe["method"] not in trainers():
            raise OffbenchError(f"{where}: recipe.method {recipe['method']!r} is not one of {sorted(trainers())}")
        ints = {}
        for key, low in (("episodes", 0), ("steps", 1), ("seed", 0)):
            value = recipe[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise OffbenchError(f"{where}: recipe.{key} must be an integer >= {low}, got {value!r}")
            ints[key] = int(value)
        run = recipe.get("run")
        if ints["episodes"] > 0 and run is None:
            raise OffbenchError(f"{where}: recipe.run is needed to train {ints['episodes']} episodes (the folder "
                                "name under $OFFBENCH_HOME/runs/behaviour)")
        if run is not None and (not isinstance(run, str) or not RUN_NAME.match(run)):
            raise OffbenchError(f"{where}: recipe.run must be a plain folder name (letters, digits, '.', '_', '-'), "
                                f"got {run!r}")
        for key in ("config", "env_kwargs"):
            if not isinstance(recipe.get(key, {}), Mapping):
                raise OffbenchError(f"{where}: recipe.{key} must be a table, got {recipe[key]!r}")
        parsed = cls(env_id=str(recipe["env_id"]), method=recipe["method"], run=run,
                     config=dict(recipe.get("config", {})), env_kwargs=dict(recipe.get("env_kwargs", {})), **ints)
        parsed.trainer_config(where)  # the settings are checked now, not after a build has started
        return parsed

    def trainer_config(self, where: str):
        """The method's config object with the recipe's settings, checked (``SkillLoopConfig.check``)."""
        config_class = trainers()[self.method][1]
        known = {f.name for f in fields(config_class)}
        unknown = sorted(set(self.config) - known)
        if unknown:
            raise OffbenchError(f"{where}: recipe.config has settings {unknown} that {config_class.__name__} "
                                f"does not know (known: {sorted(known)})")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in self.config.items()}  # TOML arrays
        try:
            config = config_class(**values)
        except TypeError as exc:  # pragma: no cover - unknown names are caught above
            raise OffbenchError(f"{where}: recipe.config: {exc}") from None
        config.check(f"{where}: recipe.config ({self.method})")
        return config

    def run_dir(self) -> Path | None:
        from offbench.data.catalogue import offbench_home

        return None if self.run is None else offbench_home() / "runs" / "behaviour" / self.run

    def make_env(self) -> gym.Env:
        import offbench.envs  # noqa: F401 - registers offbench's environments

        return gym.make(self.env_id, **self.env_kwargs)


def collection_seeds(seed: int) -> tuple[int, int, int]:
    """The collection's (actions, skills, resets) seeds: the words of ``SeedSequence([seed, 1])``."""
    actions, skills, resets = np.random.SeedSequence([int(seed), 1]).generate_state(3)
    return int(actions), int(skills), int(resets)


def trained_behaviour(recipe: ExploreRecipe, where: str, progress: bool = False):
    """The recipe's trainer after its ``episodes`` training episodes (trained, resumed or loaded from
    the run folder); with ``episodes`` 0 the freshly seeded trainer, and no folder is made."""
    from offbench.cpu import torch_threads

    trainer_class, _ = trainers()[recipe.method]
    trainer = trainer_class(recipe.make_env, recipe.trainer_config(where), seed=recipe.seed)
    if recipe.episodes == 0:
        return trainer
    from tqdm.auto import tqdm

    with torch_threads(trainer.config.threads), \
            tqdm(total=recipe.episodes, desc=f"train {recipe.method}", unit="episode", disable=not progress,
                 leave=False) as bar:
        trainer.fit(recipe.episodes, recipe.run_dir(), on_iteration=lambda row: bar.update(row["iteration"] - bar.n))
    if trainer.episodes != recipe.episodes:
        raise OffbenchError(f"{where}: the run folder {recipe.run_dir()} holds {trainer.episodes} training episodes, "
                            f"not the recipe's {recipe.episodes}; give recipe.run another name")
    return trainer


def collect_episodes(trainer, recipe: ExploreRecipe, progress: bool = False):
    """Yield the collection's episodes as ``DatasetWriter.add_episode`` keyword arguments (module docstring)."""
    from offbench.cpu import torch_threads
    from offbench.data.collect import simulator_state
    from tqdm.auto import tqdm

    action_seed, skill_seed, reset_seed = collection_seeds(recipe.seed)
    skills = np.random.default_rng(skill_seed)
    space = trainer.skill_space
    steps, k = 0, 0
    with torch_threads(1), trainer.rollout_streams(action_seed), \
            tqdm(total=recipe.steps, desc=f"collect {recipe.method}", unit="step", unit_scale=True,
                 disable=not progress, leave=False) as bar:
        while steps < recipe.steps:
            skill = space.sample(skills)
            episode = trainer.play_episode(skill, reset_seed + k, max_steps=recipe.steps - steps,
                                           state=simulator_state)
            T = len(episode["actions"])
            truncations = episode["truncations"] & ~episode["terminations"]
            if not (episode["terminations"][-1] or episode["truncations"][-1]):
                truncations[-1] = True  # the data budget cuts the last episode
            infos = {}
            if space.prior != "none":
                infos["skill"] = (np.full(T, skill, np.int64) if space.categorical
                                  else np.repeat(np.asarray(skill, np.float32)[None], T, axis=0))
            yield {"observations": episode["observations"], "actions": episode["actions"],
                   "rewards": np.zeros(T, np.float32), "terminations": episode["terminations"],
                   "truncations": truncations, "behaviour_log_prob": episode["log_probs"], "policy_id": 0,
                   "sim_state": episode["states"] or None, "infos": infos or None}
            steps, k = steps + T, k + 1
            bar.update(T)


def write_explore_dataset(path: Path, recipe: Mapping[str, Any], *, dataset_id: str, description: str = "",
                          where: str | None = None, progress: bool = False) -> Path:
    """Train (or resume) the recipe's method and write its reward-free data to ``path`` (a temporary
    file renamed into place by ``DatasetWriter``)."""
    from offbench.data.writer import DatasetWriter

    where = where or dataset_id
    r = ExploreRecipe.parse(recipe, where)
    trainer = trained_behaviour(r, where, progress)
    space = trainer.skill_space
    behaviour = [{"name": f"{r.method} ({trainer.name}) after {r.episodes} training episodes, seed {r.seed}",
                  "checkpoint_sha256": None, "return": None, "run": r.run, "training_episodes": r.episodes,
                  "skill_prior": space.prior, "skill_dim": space.dim, "config": asdict(trainer.config)}]
    try:
        with DatasetWriter(path, dataset_id=dataset_id, env_id=r.env_id,
                           observation_space=trainer.env.observation_space, action_space=trainer.env.action_space,
                           recipe=dict(recipe), behaviour_policies=behaviour, reference_scores=None,
                           description=description) as writer:
            for episode in collect_episodes(trainer, r, progress):
                writer.add_episode(**episode)
    finally:
        trainer.env.close()
    return Path(path)


def build_from_card(card, path: Path, progress: bool) -> None:
    """The ``explore`` builder of ``offbench.data.recipes``."""
    where = str(card.path)
    r = ExploreRecipe.parse(card.recipe, where)
    if card.env_id != r.env_id:
        raise OffbenchError(f"{where}: env_id {card.env_id!r} must be the recipe's env_id {r.env_id!r}")
    if card.reference_scores:
        raise OffbenchError(f"{where}: reward-free data has no reference scores; remove [reference_scores]")
    write_explore_dataset(path, card.recipe, dataset_id=card.id, description=card.description, where=where,
                          progress=progress)
