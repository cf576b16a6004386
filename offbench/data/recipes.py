"""Build a catalogue dataset locally from its card's recipe, deterministically.

Recipe kinds (the ``[recipe]`` table of a card):

- ``rollout``: ``env_id``, ``policy`` (a behaviour policy, see ``offbench.behaviour``),
  ``steps``, ``seed``, optional ``max_episode_steps``. Exactly ``steps`` steps are collected.
- ``replay``: ``run``, ``upto``, ``env_id`` and the run's ``online`` configuration: the
  replay buffer of an online training run up to a step (medium-replay).
- ``mix``: ``sources`` (dataset ids, built first if missing, or policy tables such as
  ``{policy = "uniform_random", steps = 5000, seed = 1}`` rolled out in the card's env),
  optional ``proportions``, ``by`` (episodes | steps), ``total``, ``seed`` (see
  ``offbench.data.compose.mix``).
- ``ogbench_pointmaze``: OGBench's PointMaze navigate / stitch data from its noisy oracle
  (``maze``, ``dataset_type``, ``episodes``, ``first_episode``, ``max_episode_steps``, ``noise``,
  ``seed``, ``ogbench_version``; see ``offbench.data.goal_generation``).
- ``meta_tasks``: per-task trajectories of a meta-RL family (``offbench.data.meta_generation``).
- ``explore``: reward-free data of a skill-discovery or exploration method trained first
  (``env_id``, ``method``, ``episodes``, ``run``, ``steps``, ``seed``, optional ``config``; see
  ``offbench.data.explore_generation``).
- ``relabel``: ``source`` (a dataset id, built first if missing) and ``task`` (a task of
  ``offbench.envs.tasks`` whose reward is recomputed from stored states): the source's
  transitions with that task's rewards (``offbench.data.relabel.relabel_for_task``; ExORL's
  reward relabelling of reward-free data). The card's ``env_id`` must be the task's.

The file is staged beside the cache and moved into place only after it has been validated
and, when the card records one, its content sha256 matches: a rebuild never replaces a good
file with a different one.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

from offbench.behaviour import make_policy
from offbench.cpu import torch_threads
from offbench.data import provenance
from offbench.data.catalogue import DatasetCard, cached_path, get_card
from offbench.data.collect import collect, collect_vectorised
from offbench.data.dataset import Dataset, read_dataset
from offbench.data.writer import DatasetWriter
from offbench.errors import OffbenchError


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", unit_scale=True, disable=not enabled, leave=False)


def _env_spec_json(env: gym.Env) -> dict | None:
    import json

    spec = env.spec
    try:
        return json.loads(spec.to_json()) if spec is not None else None
    except (ValueError, TypeError):  # env kwargs that are not JSON-serialisable
        return {"id": spec.id, "max_episode_steps": spec.max_episode_steps}


def _reference(card: DatasetCard) -> dict | None:
    ref = card.reference_scores
    return dict(ref) if ref and "random" in ref and "expert" in ref else None


def _rollout_into(path: Path, *, dataset_id: str, description: str, recipe: dict, reference: dict | None,
                  progress: bool) -> None:
    """Collect ``recipe['steps']`` steps of ``recipe['policy']`` in ``recipe['env_id']`` into ``path``."""
    for key in ("env_id", "policy", "steps", "seed"):
        if key not in recipe:
            raise OffbenchError(f"{dataset_id}: rollout recipe lacks {key!r} (it needs env_id, policy, steps, seed)")
    kwargs = {"max_episode_steps": recipe["max_episode_steps"]} if "max_episode_steps" in recipe else {}
    env = gym.make(recipe["env_id"], **kwargs)
    policy = make_policy(recipe["policy"], env, seed=int(recipe["seed"]))
    behaviour = [{"name": policy.name, "checkpoint_sha256": getattr(policy, "sha256", None),
                  "return": getattr(policy, "info", {}).get("returns", {}).get("mean")}]
    with DatasetWriter(path, dataset_id=dataset_id, env_id=recipe["env_id"], observation_space=env.observation_space,
                       action_space=env.action_space, env_spec=_env_spec_json(env), recipe=recipe,
                       behaviour_policies=behaviour, reference_scores=reference,
                       description=description) as writer, \
            _progress(int(recipe["steps"]), dataset_id, progress) as bar:
        if hasattr(policy, "act_batch"):  # networks: many envs, one batched forward pass per step
            with torch_threads(1):  # fast on a shared machine, and the same bits on any core count (cpu.py)
                collect_vectorised(recipe["env_id"], policy, writer, num_steps=int(recipe["steps"]),
                                   seed=int(recipe["seed"]), num_envs=int(recipe.get("num_envs", 8)),
                                   env_kwargs=kwargs, on_step=bar.update)
        else:
            collect(env, policy, writer, num_steps=int(recipe["steps"]), seed=int(recipe["seed"]),
                    on_step=bar.update)
    env.close()


def _build_replay(card: DatasetCard, path: Path, progress: bool) -> None:
    """The replay buffer of an online run up to step ``upto`` (D4RL's medium-replay).

    Reads ``$OFFBENCH_HOME/runs/behaviour/<run>/buffer``; if that run is not on this machine, or
    stopped before ``upto`` steps (a build that was interrupted), trains or resumes it from the
    recorded ``online`` configuration up to ``upto`` steps — hours for locomotion tasks. The online loop is deterministic for a seed, so on the card's CPU class the
    buffer is the same; on another CPU it is another run of the same configuration, which
    ``build_dataset`` then compares with the card statistically.
    """
    from offbench.data.catalogue import offbench_home
    from offbench.online import OnlineConfig, OnlineRun, read_replay_rows, saved_replay_rows

    r = card.recipe
    upto = int(r["upto"])
    run_dir = offbench_home() / "runs" / "behaviour" / r["run"]
    if not (run_dir / "state.json").exists() or saved_replay_rows(run_dir / "buffer") < upto:
        if "online" not in r:
            raise OffbenchError(f"{card.path}: run {r['run']!r} is not in {run_dir.parent} (or holds fewer than "
                                f"{upto} steps) and the recipe has no 'online' configuration to retrain it")
        OnlineRun(OnlineConfig(**{**r["online"], "steps": upto}), run_dir).train(progress=progress)
    rows = read_replay_rows(run_dir / "buffer", upto)
    env = gym.make(r["env_id"])
    with DatasetWriter(path, dataset_id=card.id, env_id=r["env_id"], observation_space=env.observation_space,
                       action_space=env.action_space, env_spec=_env_spec_json(env), recipe=r,
                       behaviour_policies=[{"name": f"{r['run']} replay buffer (steps 0-{upto})",
                                            "checkpoint_sha256": None, "return": None}],
                       reference_scores=_reference(card), description=card.description) as writer:
        write_replay_rows(rows, writer)
    env.close()


def write_replay_rows(rows: dict[str, np.ndarray], writer: DatasetWriter) -> None:
    """Split replay rows into episodes at their end flags and write them; a final episode cut
    mid-way (the buffer stops at ``upto``) is marked truncated, its final observation kept."""
    n = len(rows["rewards"])
    done = rows["terminations"] | rows["truncations"]
    truncations = rows["truncations"].copy()
    if not done[-1]:
        truncations[-1] = True
    ends = np.flatnonzero(done | (np.arange(n) == n - 1)) + 1
    sim_keys = [k.split("/", 1)[1] for k in rows if k.startswith("sim_state/")]
    start = 0
    for end in ends:
        sl = slice(start, end)
        last = end - 1
        writer.add_episode(
            observations=np.concatenate([rows["observations"][sl], rows["next_observations"][last:end]]),
            actions=rows["actions"][sl], rewards=rows["rewards"][sl], terminations=rows["terminations"][sl],
            truncations=truncations[sl], behaviour_log_prob=rows["behaviour_log_prob"][sl], policy_id=0,
            sim_state={k: np.concatenate([rows[f"sim_state/{k}"][sl], rows[f"next_sim_state/{k}"][last:end]])
                       for k in sim_keys} or None)
        start = end


def _build_rollout(card: DatasetCard, path: Path, progress: bool) -> None:
    _rollout_into(path, dataset_id=card.id, description=card.description, recipe=card.recipe,
                  reference=_reference(card), progress=progress)


def _mix_source(card: DatasetCard, source, index: int, staging: Path, progress: bool) -> Dataset:
    """A mix source: a dataset id (built first if missing) or a policy table rolled out here,
    e.g. ``{policy = "uniform_random", steps = 5000, seed = 1}`` (env from the card)."""
    if isinstance(source, str):
        return read_dataset(ensure_built(source, progress=progress))
    if isinstance(source, dict) and "policy" in source:
        recipe = {"kind": "rollout", "env_id": card.recipe.get("env_id", card.env_id), **source}
        part = staging.with_name(f"{staging.name}.source{index}")
        try:
            _rollout_into(part, dataset_id=f"{card.id}#source{index}", description="", recipe=recipe,
                          reference=_reference(card), progress=progress)
            dataset = read_dataset(part)
        finally:
            part.unlink(missing_ok=True)
        dataset.metadata.sources = [{"policy": source["policy"], "recipe": recipe}]
        return dataset
    raise OffbenchError(f"{card.path}: a mix source must be a dataset id or a table with 'policy', got {source!r}")


def _build_mix(card: DatasetCard, path: Path, progress: bool) -> None:
    from offbench.data.compose import mix

    r = card.recipe
    sources = [_mix_source(card, s, i, path, progress) for i, s in enumerate(r["sources"])]
    mixed = mix(sources, r.get("proportions"), by=r.get("by", "episodes"), total=r.get("total"),
                seed=int(r.get("seed", 0)), dataset_id=card.id)
    mixed.metadata.recipe = dict(r)
    mixed.metadata.description = card.description
    mixed.metadata.reference_scores = _reference(card) or mixed.metadata.reference_scores
    mixed.save(path)


def _build_ogbench_pointmaze(card: DatasetCard, path: Path, progress: bool) -> None:
    from offbench.data.goal_generation import build_from_card

    build_from_card(card, path, progress)


def _build_meta_tasks(card: DatasetCard, path: Path, progress: bool) -> None:
    from offbench.data.meta_generation import build_from_card

    build_from_card(card, path, progress)


def _build_explore(card: DatasetCard, path: Path, progress: bool) -> None:
    from offbench.data.explore_generation import build_from_card

    build_from_card(card, path, progress)


def relabel_into_task(source: Dataset, task: str, dataset_id: str | None = None) -> Dataset:
    """``source`` with the rewards of the registered task ``task`` (``relabel_for_task``), as a dataset of
    the task's environment: its ``env_id`` and ``env_spec`` are the task's, where it is evaluated."""
    from offbench.data.relabel import relabel_for_task
    from offbench.envs.tasks import get_task

    found = get_task(task)
    relabelled = relabel_for_task(source, found.name, dataset_id=dataset_id)
    env = gym.make(found.env_id)
    relabelled.metadata.env_id, relabelled.metadata.env_spec = found.env_id, _env_spec_json(env)
    env.close()
    return relabelled


def write_relabelled(source: str | os.PathLike, task: str, out: str | os.PathLike, *, dataset_id: str | None = None,
                     overwrite: bool = False) -> tuple[Dataset, Path]:
    """``offbench datasets relabel``: the dataset ``source`` (an id or a file) relabelled for ``task``
    (:func:`relabel_into_task`) and written to ``out`` (a temporary file, then renamed), refusing to
    replace an existing file unless ``overwrite``."""
    from offbench.data import load_dataset

    out = Path(out)
    if out.exists() and not overwrite:
        raise OffbenchError(f"--out {out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise OffbenchError(f"--out {out}: the folder {out.parent} does not exist")
    relabelled = relabel_into_task(load_dataset(source), task, dataset_id=dataset_id)
    return relabelled, relabelled.save(out)


def _build_relabel(card: DatasetCard, path: Path, progress: bool) -> None:
    from offbench.envs.tasks import get_task

    r = card.recipe
    for key in ("source", "task"):
        if key not in r:
            raise OffbenchError(f"{card.path}: relabel recipe lacks {key!r} (it needs source and task)")
    task = get_task(r["task"])
    if card.env_id != task.env_id:
        raise OffbenchError(f"{card.path}: env_id {card.env_id!r} is not the env of task {task.name!r} "
                            f"({task.env_id!r}); a relabelled dataset is evaluated in its task's env")
    source = read_dataset(ensure_built(r["source"], progress=progress))
    relabelled = relabel_into_task(source, task.name, dataset_id=card.id)
    relabelled.metadata.recipe = {**r, "reward": relabelled.metadata.recipe["reward"],
                                  "source_recipe": source.metadata.recipe}
    relabelled.metadata.description = card.description
    relabelled.metadata.reference_scores = _reference(card)
    relabelled.save(path)


BUILDERS = {"rollout": _build_rollout, "mix": _build_mix, "replay": _build_replay,
            "ogbench_pointmaze": _build_ogbench_pointmaze, "meta_tasks": _build_meta_tasks,
            "explore": _build_explore, "relabel": _build_relabel}


def build_dataset(dataset_id: str, *, force: bool = False, progress: bool = True,
                  allow_mismatch: bool = False, strict: bool = False, out: Path | None = None) -> Path:
    """Build ``dataset_id`` from its card's recipe into the cache (or ``out``); return the path.

    An existing cached file is kept unless ``force``. If the card records a ``content_sha256``
    the new file should match it. One that does not is kept only if its size and returns agree
    with the card's (another CPU or library release; see ``offbench.data.provenance``), with a
    note beside it; ``strict`` refuses any difference, ``allow_mismatch`` keeps any file.
    """
    from offbench.data.writer import library_versions

    card = get_card(dataset_id)
    target = Path(out) if out else cached_path(card.id)
    if target.exists() and not force:
        return target
    kind = card.recipe.get("kind")
    if kind not in BUILDERS:
        raise OffbenchError(f"{card.path}: unknown recipe kind {kind!r} (known: {sorted(BUILDERS)})")
    staging = target.with_name(f".{target.name}.staging-{os.getpid()}")
    try:
        BUILDERS[kind](card, staging, progress)
        built = read_dataset(staging, validate=True)
        digest = built.content_sha256()
        exact = not card.content_sha256 or digest == card.content_sha256
        noted = False
        if not exact and not allow_mismatch:
            from offbench.online import git_commit

            reason = provenance.mismatch_reason(card.files, library_versions(), git_commit())
            differs = (f"rebuilt {card.id} has content sha256 {digest[:16]}…, but its card ({card.path}) records "
                       f"{card.content_sha256[:16]}…: {reason}.")
            if strict:
                raise OffbenchError(f"{differs} Nothing was written (--strict); without it a rebuild whose size "
                                    "and returns agree with the card is kept.")
            agree, comparison = provenance.statistics_agree(card, built.episode_returns(), built.num_steps)
            if not agree:
                raise OffbenchError(f"{differs} Its statistics disagree with the card too ({comparison}): the recipe "
                                    "is not reproducing the published data. Nothing was written; pass "
                                    "--allow-mismatch to keep it anyway.")
            provenance.write_note(target, card=card, content_sha256=digest, reason=reason, comparison=comparison)
            noted = True
            print(f"note: {differs} Its statistics agree with the card ({comparison}), so it is kept as a local "
                  "rebuild: equal in distribution, not the published bytes (`offbench datasets download` gets those "
                  "from a mirror).", file=sys.stderr, flush=True)
        os.replace(staging, target)
        if not noted:  # a note left by an earlier build would describe other bytes
            provenance.note_path(target).unlink(missing_ok=True)
    finally:
        staging.unlink(missing_ok=True)
    return target


def ensure_built(dataset_id: str, *, progress: bool = True) -> Path:
    path = cached_path(dataset_id)
    return path if path.exists() else build_dataset(dataset_id, progress=progress)


def card_statistics(dataset: Dataset, path: Path) -> dict:
    """The statistics a card records about its file (size, returns, hashes, where it was built)."""
    from offbench.data.mirrors import file_sha256

    returns = dataset.episode_returns()
    return {
        "size": {"steps": dataset.num_steps, "episodes": dataset.num_episodes, "bytes": path.stat().st_size},
        "returns": {"mean": float(np.mean(returns)), "std": float(np.std(returns)),
                    "min": float(np.min(returns)), "max": float(np.max(returns))},
        "files": {"sha256": file_sha256(path), "content_sha256": dataset.content_sha256(),
                  "library_versions": dataset.metadata.library_versions,
                  "platform": provenance.platform_description()},
    }


def update_card(dataset_id: str, *, build_seconds: float | None = None) -> DatasetCard:
    """Record the cached file's statistics, hashes, generation time and code version in the card."""
    from offbench.online import git_commit

    card = get_card(dataset_id)
    path = cached_path(card.id)
    dataset = read_dataset(path, validate=True)
    stats = card_statistics(dataset, path)
    card.size, card.returns, card.files = stats["size"], stats["returns"], stats["files"]
    provenance.note_path(path).unlink(missing_ok=True)  # the cached file is now the card's own data
    if build_seconds is not None:
        card.files["build_seconds"] = round(build_seconds, 1)
    commit = git_commit()
    if commit:
        card.files["git_commit"] = commit
    card.save()
    return card
