"""Check an entry against everything outside it: the catalogue cards (dataset ids, sha256), the
protocol it names (every dataset x seed, gradient steps, evaluation schedule and episodes),
returns possible for the task, and the names of the other entries. Data only: nothing submitted
is imported.

An episode return must lie in the range its task allows (:func:`plausible_range`). Each side of
the range comes from the task registry where the task's reward is bounded on that side
(``Task.return_bounds``: per-step reward bounds times the time limit, derived from the Gymnasium
source in ``offbench/envs/tasks.py``); where it is not (HalfCheetah's forward reward has no
bound), from the dataset card: the span of its reference scores and dataset episode returns
(random, expert, min, max), widened by ``SPANS_BELOW`` spans below and ``SPANS_ABOVE`` above.

A ``meta``-suite protocol names benchmarks (``offbench.envs.meta.benchmarks``) instead of
datasets, and a run's returns are *trial* returns on held-out tasks. The same rule applies one
level up: where the benchmark's per-step reward is bounded, ``MetaBenchmark.trial_return_bounds``
(reward bounds times the episodes' time limit, times the trial's episodes); where it is not (the
point robot's reward, minus a distance, has no floor), the span of the benchmark's random and
reference trial returns on the evaluation's held-out tasks, widened by the same spans. A meta run
has no dataset file (``dataset_sha256`` null) and its algorithm is one of offbench's meta-RL
trainers (``offbench.meta_runs.META_ALGORITHMS``), evaluated on the fixed held-out tasks
(``eval_seed`` ``EVAL_TASK_SEED``).

A ``skills``-suite protocol names skill environments (``offbench.envs.skill_environments``), its
algorithm is one of offbench's skill-discovery methods (``offbench.skill_runs.SKILL_METHODS``) and a
run has no dataset file either. Each evaluation carries the measurements ``offbench.skill_runs``
writes, at the fixed evaluation seed ``EVAL_SEED``: the coverage, a whole number of cells from 1 (the
start) to :func:`coverage_bound` (what that many rollouts of the environment's episodes could visit);
its ``returns``, the rollouts' final distances from the start (at least 0, at most the diagonal of a
bounded plane), with ``final_distance`` their mean; and, for a method with skills, the independent
classifier's accuracy in [0, 1], its chance ``1 / K'`` and ``log_k`` = log K' for the method's K'
evaluation skills (:func:`evaluation_skill_count`, from its settings) and the I(S; Z) bound in
[log eps, log K'] (``offbench.evaluation.skills``); a method without skills has none of them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offbench.errors import OffbenchError
from offbench.leaderboard.schema import SKILL_EVAL_KEYS, EntryError, read_entry

# Where a task's reward is unbounded, returns further than this many spans outside the span of the
# card's reference scores and dataset returns are implausible. Generous below, because a bad policy
# can be far worse than random; above, about a normalised score of 300, beyond any published result
# on these tasks (D4RL-style scores top out near 130).
SPANS_BELOW = 10.0
SPANS_ABOVE = 2.0
# Returns at a task's exact bound pass with this slack: rewards are float32 in some envs and
# recorded returns are rounded to 6 decimals.
BOUND_TOLERANCE = 1e-6
#: the classifier's measurements of a skills evaluation, present exactly for a method with skills
CLASSIFIER_KEYS = ("classifier_accuracy", "classifier_chance", "mi_lower_bound", "log_k")
#: what a protocol of each suite names where the offline suites name datasets
RUN_ITEMS = {"meta": "benchmark", "skills": "environment"}


@dataclass(frozen=True)
class ReturnRange:
    """The episode returns accepted for a dataset: ``[low, high]`` and why (for messages)."""

    low: float
    high: float
    reason: str

    def contains(self, value: float) -> bool:
        """``low <= value <= high``, each bound relaxed by ``BOUND_TOLERANCE`` (relative, and absolute near 0)."""
        return (self.low - BOUND_TOLERANCE * (1.0 + abs(self.low)) <= value
                <= self.high + BOUND_TOLERANCE * (1.0 + abs(self.high)))


@dataclass(frozen=True)
class EvalSlot:
    step: int
    episodes: int


def shipped_protocol(entry: dict[str, Any], path: str | Path):
    """The protocol an entry names, from offbench's shipped protocols (never from the entry)."""
    from offbench.protocol import load_protocol, protocol_names

    name = entry["protocol"]["name"]
    if name not in protocol_names():
        raise EntryError(path, "protocol.name", f"unknown protocol; the board accepts {protocol_names()}",
                         value=name, hint="run `offbench reproduce` with a shipped protocol and submit that")
    protocol = load_protocol(name)
    if entry["suite"] != protocol.suite:
        raise EntryError(path, "suite", f"protocol {name!r} is a {protocol.suite!r}-suite protocol",
                         value=entry["suite"], hint=f"set suite to {protocol.suite!r}")
    declared = entry["protocol"].get("headline")
    if declared is not None and declared != {"kind": protocol.headline.kind, "n": protocol.headline.n}:
        raise EntryError(path, "protocol.headline", f"protocol {name!r} scores runs by the "
                         f"{protocol.headline.describe()}", value=declared,
                         hint="the board recomputes headlines with the protocol's rule; fix or drop the field")
    return protocol


def expected_schedule(protocol, algorithm: str, seed: int) -> tuple[int, list[EvalSlot]]:
    """Gradient steps and the evaluations (step, episodes) ``offbench.train.fit`` makes under the protocol."""
    cfg = protocol.train_config(algorithm, seed)
    steps = list(range(cfg.eval_every, cfg.steps + 1, cfg.eval_every))
    if not steps or steps[-1] != cfg.steps:
        steps.append(cfg.steps)
    return cfg.steps, [EvalSlot(s, cfg.final_eval_episodes if s == cfg.steps else cfg.eval_episodes) for s in steps]


def run_source(protocol, dataset: str):
    """What a run of ``protocol`` on ``dataset`` is scored against: the ``MetaBenchmark`` of a
    ``meta``-suite protocol's benchmark id, the ``SkillEnvironment`` of a ``skills``-suite protocol's
    environment id, else the dataset's catalogue card. Raises :class:`OffbenchError` for an unknown id."""
    if protocol.suite == "meta":
        from offbench.envs.meta.benchmarks import get_benchmark

        return get_benchmark(dataset)
    if protocol.suite == "skills":
        from offbench.envs.skill_environments import get_skill_environment

        return get_skill_environment(dataset)
    from offbench.data.catalogue import get_card

    return get_card(dataset)


def plausible_range(source, trials: int = 1) -> ReturnRange | None:
    """The returns accepted for ``source`` (see the module docstring), or None where nothing bounds
    them: a catalogue card's episode returns, a meta benchmark's (``MetaBenchmark``) trial returns in
    an evaluation on ``trials`` held-out tasks (the point robot's references depend on them), or a
    skill environment's (``SkillEnvironment``) final distances (:func:`final_distance_range`)."""
    from offbench.envs.meta.benchmarks import MetaBenchmark
    from offbench.envs.skill_environments import SkillEnvironment

    if isinstance(source, SkillEnvironment):
        return final_distance_range(source)
    if isinstance(source, MetaBenchmark):
        low, high = source.trial_return_bounds()
        bounded = f"{source.env_id} rewards lie in [{source.reward_bounds[0]:.6g}, {source.reward_bounds[1]:.6g}] " \
                  f"per step, over {source.episodes} episode(s) of at most {source.max_episode_steps} steps"
        where = "the benchmark's random and reference trial returns"

        def points() -> list[float]:
            return [float(v) for v in source.references(trials)]
    else:
        from offbench.envs.tasks import task_for_dataset

        try:
            task = task_for_dataset(source.id)
        except OffbenchError:  # a card of a task the registry does not know: the card alone decides
            task = None
        bounds = task.return_bounds() if task is not None else None
        low, high = bounds if bounds is not None else (-math.inf, math.inf)
        bounded = "" if bounds is None else (f"{task.env_id} rewards lie in [{task.reward_bounds[0]:.6g}, "
                                             f"{task.reward_bounds[1]:.6g}] per step, over at most "
                                             f"{task.max_episode_steps} steps")
        where = "the card's reference and dataset returns"

        def points() -> list[float]:
            found = []
            ref = source.reference_scores or {}
            if ref.get("random") is not None and ref.get("expert") is not None:
                found += [float(ref["random"]), float(ref["expert"])]
            if source.returns.get("min") is not None and source.returns.get("max") is not None:
                found += [float(source.returns["min"]), float(source.returns["max"])]
            return found
    reasons = [bounded] if math.isfinite(low) or math.isfinite(high) else []
    if not (math.isfinite(low) and math.isfinite(high)):
        found = points()
        if found:
            span = max(max(found) - min(found), 1.0)
            if not math.isfinite(low):
                low = min(found) - SPANS_BELOW * span
                reasons.append(f"below: {SPANS_BELOW:g} spans under {where}")
            if not math.isfinite(high):
                high = max(found) + SPANS_ABOVE * span
                reasons.append(f"above: {SPANS_ABOVE:g} spans over {where}")
    if not (math.isfinite(low) or math.isfinite(high)):
        return None
    return ReturnRange(low, high, "; ".join(reasons))


def final_distance_range(environment) -> ReturnRange:
    """The ``returns`` accepted for a skills run on ``environment`` (a ``SkillEnvironment``): each is
    a rollout's x-y distance from its start to its end (``offbench.skill_runs``), so at least 0, and on
    a bounded plane (positions in ``[-extent, extent]^2``) at most its diagonal ``2 sqrt(2) extent``."""
    if environment.extent is None:
        return ReturnRange(0.0, math.inf, "a final distance from the start is at least 0")
    high = 2.0 * math.sqrt(2.0) * float(environment.extent)
    return ReturnRange(0.0, high, f"a final distance from the start lies between 0 and the diagonal of the plane "
                                  f"[-{environment.extent:g}, {environment.extent:g}]^2")


def coverage_bound(environment, rollouts: int) -> tuple[int | None, str]:
    """``(bound, why)``: the largest coverage that ``rollouts`` rollouts (an evaluation's N) of
    ``environment`` (a ``SkillEnvironment``) can reach, and the reason in words; ``(None, why)``
    where nothing bounds it."""
    # Coverage counts the distinct cells that hold at least one of the evaluation's observations
    # (offbench.evaluation.skills.coverage on the rollouts' [N, T + 1, d] observations). An episode
    # has at most T = max_episode_steps steps, so a rollout has at most T + 1 observations (its start
    # included), each in one cell: N rollouts visit at most N (T + 1) cells, whatever the dynamics (no
    # assumption of a shared start or of a top speed). Where the coverage coordinates are a bounded
    # plane (``extent`` E: positions clipped to [-E, E]^2, cells of width c), the plane's own cells
    # bound it too: floor(v / c) takes floor(E / c) - floor(-E / c) + 1 values per coordinate, 21 on
    # the point plane's [-10, 10] with 1 x 1 cells, so 441 cells in all (METRA's data visits all of
    # them). The bound is whichever is smaller.
    bounds: list[tuple[int, str]] = []
    if environment.max_episode_steps is not None:
        steps = int(environment.max_episode_steps)
        bounds.append((int(rollouts) * (steps + 1), f"{rollouts} rollouts of at most {steps} steps visit at most "
                                                    f"{rollouts} x {steps + 1} cells"))
    dims = environment.coverage_coordinates
    if environment.extent is not None and tuple(dims) == tuple(environment.xy):
        extent, cell = float(environment.extent), float(environment.coverage_cell)
        per_axis = math.floor(extent / cell) - math.floor(-extent / cell) + 1
        bounds.append((per_axis ** len(dims), f"the plane [-{extent:g}, {extent:g}]^{len(dims)} holds "
                                              f"{per_axis}^{len(dims)} cells of width {cell:g}"))
    if not bounds:
        return None, "nothing bounds the coverage of this environment"
    return min(bounds)


def evaluation_skill_count(algorithm: str, settings: dict[str, Any]) -> int | None:
    """K', the number of evaluation skills the independent classifier tells apart for skill method
    ``algorithm`` with ``settings`` (``offbench.skill_runs.evaluate_skills``): every skill of a
    categorical method (DIAYN's ``skills``, discrete METRA's ``skill_dim``), ``eval_skills`` of a
    continuous one (DADS, METRA); None for a method without skills (RND, uniform random). Reads the
    method's config only (no trainer or environment is built); raises :class:`OffbenchError` for an
    unknown method or setting."""
    from types import SimpleNamespace

    from offbench.skill_runs import method_config

    trainer_class, config = method_config(algorithm, settings)
    space = trainer_class.make_skill_space(SimpleNamespace(config=config))  # a function of the config alone
    if space.prior == "none":
        return None
    return int(space.dim) if space.categorical else int(config.eval_skills)


def validate_entry(entry: dict[str, Any], path: str | Path, *, entries_dir: str | Path | None = None,
                   check_unique: bool = True):
    """Raise :class:`EntryError` at the first problem; returns the shipped protocol on success."""
    protocol = shipped_protocol(entry, path)
    algorithm = entry["algorithm"]["import_path"]
    if protocol.suite == "meta-offline":  # scored by trials of a benchmark, which the board does not do yet
        raise EntryError(path, "protocol", f"protocol {protocol.name!r} (suite meta-offline) is not on the board yet: "
                         "its runs are scored by trials of each dataset's family benchmark, not by the dataset's "
                         "references, and the board scores offline entries by the latter", value=protocol.name,
                         hint="publish the table from `offbench reproduce meta-offline` and its report instead")
    meta, skills = protocol.suite == "meta", protocol.suite == "skills"
    kind = RUN_ITEMS.get(protocol.suite, "dataset")  # what the protocol names where others name datasets
    _check_algorithm(path, algorithm, protocol)
    skill_count = _skill_count(path, entry, protocol) if skills else None
    planned = protocol.datasets_for(algorithm)  # an [overrides.X].datasets restriction, else every dataset
    cards: dict[str, Any] = {}
    seen: dict[tuple[str, int], int] = {}
    for i, run in enumerate(entry["runs"]):
        where = f"runs[{i}]"
        dataset, seed = run["dataset"], run["seed"]
        if (dataset, seed) in seen:
            raise EntryError(path, where, f"duplicate run: runs[{seen[dataset, seed]}] has the same dataset and seed",
                             value=[dataset, seed], hint="keep one run per (dataset, seed)")
        seen[dataset, seed] = i
        if dataset not in cards:
            try:
                cards[dataset] = run_source(protocol, dataset)
            except OffbenchError as exc:
                what = {"meta": "meta benchmark", "skills": "skill environment"}.get(protocol.suite, "dataset")
                raise EntryError(path, f"{where}.dataset", f"unknown {what} id", value=dataset,
                                 hint=str(exc)) from None
        if dataset not in protocol.datasets:
            raise EntryError(path, f"{where}.dataset", f"{kind} is not part of protocol {protocol.name!r}",
                             value=dataset, hint="remove runs outside the protocol")
        if dataset not in planned:
            raise EntryError(path, f"{where}.dataset", f"protocol {protocol.name!r} runs {algorithm} on "
                             f"{planned} only ([overrides.{algorithm}].datasets)", value=dataset,
                             hint="remove runs outside the protocol")
        if meta:
            _check_meta_run(path, where, run)
        elif skills:
            _check_skill_run(path, where, run)
        else:
            _check_dataset_file(path, where, run, cards[dataset])
        if seed not in protocol.seeds:
            raise EntryError(path, f"{where}.seed", f"protocol {protocol.name!r} uses seeds {protocol.seeds}",
                             value=seed, hint="remove runs with other seeds")
        _check_schedule(path, where, run, protocol, algorithm)
        _check_values(path, where, run, cards[dataset])
        if skills:
            _check_skill_measurements(path, where, run, cards[dataset], algorithm, skill_count)
        else:
            _check_no_skill_measurements(path, where, run, protocol)
    missing = [(d, s) for d in planned for s in protocol.seeds if (d, s) not in seen]
    if missing:
        shown = ", ".join(f"{d} seed {s}" for d, s in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise EntryError(path, "runs", f"protocol {protocol.name!r} needs every {kind} x seed; "
                         f"{len(missing)} missing: {shown}",
                         hint="finish the runs (`offbench reproduce` resumes) and submit again")
    if check_unique and entries_dir is not None:
        check_unique_name(entry["name"], path, entries_dir)
    return protocol


def _check_algorithm(path, algorithm: str, protocol) -> None:
    """A ``meta`` protocol's runs come from offbench's meta-RL trainers, and only from them; a
    ``skills`` protocol's from offbench's skill-discovery methods, and only from them."""
    from offbench.meta_runs import META_ALGORITHMS
    from offbench.skill_runs import SKILL_METHODS

    if protocol.suite == "skills" and algorithm not in SKILL_METHODS:
        raise EntryError(path, "algorithm.import_path", f"protocol {protocol.name!r} is a skill-discovery protocol: "
                         f"its runs are made by offbench's skill methods {list(SKILL_METHODS)} "
                         "(offbench/skill_runs.py)", value=algorithm,
                         hint="submit a results directory of `offbench reproduce skills`")
    if protocol.suite != "skills" and algorithm in SKILL_METHODS:
        raise EntryError(path, "algorithm.import_path", f"{algorithm!r} is a skill-discovery method: it runs on "
                         f"skills-suite protocols only, not on {protocol.suite!r}-suite protocol {protocol.name!r}",
                         value=algorithm, hint="submit it under a skills protocol (suite 'skills')")
    if protocol.suite == "meta" and algorithm not in META_ALGORITHMS:
        raise EntryError(path, "algorithm.import_path", f"protocol {protocol.name!r} is a meta-RL protocol: its runs "
                         f"are made by offbench's meta-RL trainers {list(META_ALGORITHMS)} (offbench/meta_runs.py)",
                         value=algorithm, hint="submit a results directory of `offbench reproduce meta`")
    if protocol.suite != "meta" and algorithm in META_ALGORITHMS:
        raise EntryError(path, "algorithm.import_path", f"{algorithm!r} is an online meta-RL algorithm: it runs on "
                         f"meta-suite protocols only, not on {protocol.suite!r}-suite protocol {protocol.name!r}",
                         value=algorithm, hint="submit it under a meta protocol (suite 'meta')")


def _check_dataset_file(path, where: str, run: dict, card) -> None:
    """The run's dataset file is the catalogue's (its sha256 and, if given, its content hash)."""
    dataset = card.id
    if run["dataset_sha256"] is None:
        raise EntryError(path, f"{where}.dataset_sha256", f"required for a dataset run: the sha256 of {dataset}'s "
                         "file", value=None,
                         hint="submit the runs with `offbench leaderboard submit`, which records it")
    if not card.sha256:
        raise EntryError(path, f"{where}.dataset_sha256", f"the catalogue card of {dataset} records no sha256, "
                         "so the file cannot be checked", hint="use a catalogue dataset with a published file")
    if run["dataset_sha256"] != card.sha256:
        raise EntryError(path, f"{where}.dataset_sha256", f"does not match the catalogue card of {dataset} "
                         f"({card.sha256})", value=run["dataset_sha256"],
                         hint=f"re-run on the catalogue file (`offbench datasets verify {dataset}`; re-download it "
                              "if the check fails)")
    content = run.get("content_sha256")
    if content is not None and card.content_sha256 and content != card.content_sha256:
        raise EntryError(path, f"{where}.content_sha256", f"does not match the catalogue card of {dataset} "
                         f"({card.content_sha256})", value=content, hint="re-run on the catalogue dataset")


def _check_no_dataset_file(path, where: str, run: dict, what: str) -> None:
    """An online suite's run (meta, skills) trains on an environment: it has no dataset file to hash."""
    for key in ("dataset_sha256", "content_sha256"):
        if run.get(key) is not None:
            raise EntryError(path, f"{where}.{key}", f"must be null: {run['dataset']} is {what}, not a dataset "
                             "file", value=run[key], hint="set it to null")


def _check_meta_run(path, where: str, run: dict) -> None:
    """A meta run has no dataset file, and is evaluated on the fixed held-out tasks."""
    from offbench.envs.meta.benchmarks import EVAL_TASK_SEED

    _check_no_dataset_file(path, where, run, "a meta benchmark (an environment)")
    for j, ev in enumerate(run["evaluations"]):
        if ev.get("eval_seed") is not None and ev["eval_seed"] != EVAL_TASK_SEED:
            raise EntryError(path, f"{where}.evaluations[{j}].eval_seed", f"meta runs are evaluated on the held-out "
                             f"tasks sample_tasks(n, {EVAL_TASK_SEED}) of every benchmark", value=ev["eval_seed"],
                             hint="evaluate on the benchmark's held-out tasks, as `offbench reproduce meta` does")


def _skill_count(path, entry: dict, protocol) -> int | None:
    """K' of a skills entry's method (:func:`evaluation_skill_count`) with the settings its runs
    used: the entry's ``config`` under the protocol's fixed settings, as ``verify`` re-runs it."""
    algorithm = entry["algorithm"]["import_path"]
    try:
        return evaluation_skill_count(algorithm, {**entry["config"], **protocol.settings(algorithm)})
    except OffbenchError as exc:
        raise EntryError(path, "config", f"not settings of skill method {algorithm!r}: {exc}", value=entry["config"],
                         hint="give the method's settings as `offbench reproduce skills` applies them (the "
                              "fields of its config class), or {}") from None


def _check_skill_run(path, where: str, run: dict) -> None:
    """A skills run has no dataset file, and every evaluation plays the fixed seeded rollouts."""
    from offbench.skill_runs import EVAL_SEED

    _check_no_dataset_file(path, where, run, "a skill environment")
    for j, ev in enumerate(run["evaluations"]):
        if ev.get("eval_seed") != EVAL_SEED:
            raise EntryError(path, f"{where}.evaluations[{j}].eval_seed", f"skills runs are evaluated on rollouts "
                             f"seeded by offbench.skill_runs.EVAL_SEED = {EVAL_SEED} (coverage depends on the "
                             "rollouts played)", value=ev.get("eval_seed"),
                             hint="evaluate with `offbench reproduce skills`, which seeds every evaluation so")


def _check_skill_measurements(path, where: str, run: dict, environment, algorithm: str,
                              skill_count: int | None) -> None:
    """Each evaluation's coverage, final distance and classifier measurements: present, and possible
    for the environment and the method (module docstring)."""
    from offbench.evaluation.skills import SMOOTHING

    name = environment.environment_id
    for j, ev in enumerate(run["evaluations"]):
        w = f"{where}.evaluations[{j}]"
        context = f"for {name} seed {run['seed']} (run {where}, evaluation at step {ev['step']})"
        for key in ("success", "success_rate"):
            if ev.get(key) is not None:
                raise EntryError(path, f"{w}.{key}", "must be null: the skills suite has no task to succeed at",
                                 value=ev[key], hint="drop it")
        missing = [key for key in ("coverage", "final_distance") + (CLASSIFIER_KEYS if skill_count else ())
                   if ev.get(key) is None]
        if missing:
            raise EntryError(path, f"{w}.{missing[0]}", f"required for a skills run of {algorithm}: the "
                             "evaluation's measurements of offbench.skill_runs (results.csv's columns of the same "
                             "names)", hint="submit the results directory of `offbench reproduce skills` with "
                                            "`offbench leaderboard submit`")
        coverage = ev["coverage"]
        high, why = coverage_bound(environment, ev["episodes"])
        if coverage < 1 or (high is not None and coverage > high):
            raise EntryError(path, f"{w}.coverage", f"implausible coverage {context}: a coverage lies in [1, "
                             f"{high if high is not None else 'inf'}] cells (the start's cell is always visited; "
                             f"{why})", value=coverage,
                             hint="submit the number of distinct cells the evaluation's rollouts visited, as "
                                  "offbench.skill_runs counts them")
        mean = sum(ev["returns"]) / len(ev["returns"])
        if not math.isclose(ev["final_distance"], mean, rel_tol=BOUND_TOLERANCE, abs_tol=BOUND_TOLERANCE):
            raise EntryError(path, f"{w}.final_distance", f"is not the mean of the evaluation's returns (its "
                             f"rollouts' final distances, mean {mean:.6g}) {context}", value=ev["final_distance"],
                             hint="submit the rollouts' final distances as returns and their mean as final_distance")
        if not skill_count:
            present = next((key for key in CLASSIFIER_KEYS if ev.get(key) is not None), None)
            if present is not None:
                raise EntryError(path, f"{w}.{present}", f"must be null: {algorithm} has no skills, so there is "
                                 "nothing for the independent classifier to tell apart", value=ev[present],
                                 hint="set it to null")
            continue
        accuracy, chance, bound, log_k = (ev[key] for key in CLASSIFIER_KEYS)
        if not 0.0 <= accuracy <= 1.0:
            raise EntryError(path, f"{w}.classifier_accuracy", f"implausible accuracy {context}: an accuracy lies "
                             "in [0, 1]", value=accuracy, hint="submit the held-out accuracy as a fraction")
        if not math.isclose(chance, 1.0 / skill_count, rel_tol=1e-9):
            raise EntryError(path, f"{w}.classifier_chance", f"{algorithm} plays K' = {skill_count} evaluation "
                             f"skills with these settings, so chance is 1 / {skill_count} = {1.0 / skill_count:.6g}",
                             value=chance, hint="submit the evaluation as offbench.skill_runs measured it")
        if not math.isclose(log_k, math.log(skill_count), rel_tol=1e-9, abs_tol=1e-12):
            raise EntryError(path, f"{w}.log_k", f"{algorithm} plays K' = {skill_count} evaluation skills, so "
                             f"log K' = {math.log(skill_count):.6g}", value=log_k,
                             hint="submit the evaluation as offbench.skill_runs measured it")
        low = math.log(SMOOTHING)  # each state's log q(z | s) is at least log(eps / K')
        if not low - BOUND_TOLERANCE <= bound <= log_k + BOUND_TOLERANCE:
            raise EntryError(path, f"{w}.mi_lower_bound", f"implausible I(S; Z) bound {context}: it lies in "
                             f"[log {SMOOTHING:g}, log K'] = [{low:.4g}, {log_k:.4g}] nats "
                             "(offbench.evaluation.skills)", value=bound,
                             hint="submit the bound in nats as offbench.skill_runs measured it")


def _check_no_skill_measurements(path, where: str, run: dict, protocol) -> None:
    """Runs of the other suites carry none of a skills evaluation's measurements."""
    for j, ev in enumerate(run["evaluations"]):
        present = next((key for key in SKILL_EVAL_KEYS if ev.get(key) is not None), None)
        if present is not None:
            raise EntryError(path, f"{where}.evaluations[{j}].{present}", f"a skills-suite measurement, but protocol "
                             f"{protocol.name!r} is a {protocol.suite!r}-suite protocol", value=ev[present],
                             hint="remove it (or submit the runs under a skills protocol)")


def _check_schedule(path, where: str, run: dict, protocol, algorithm: str) -> None:
    steps, slots = expected_schedule(protocol, algorithm, run["seed"])
    if run["gradient_steps"] != steps:
        unit = {"meta": "outer updates", "skills": "training episodes"}.get(protocol.suite, "gradient steps")
        raise EntryError(path, f"{where}.gradient_steps", f"protocol {protocol.name!r} trains {algorithm} for "
                         f"{steps} {unit}", value=run["gradient_steps"],
                         hint="re-run under the protocol's settings")
    got = [(ev["step"], ev["episodes"]) for ev in run["evaluations"]]
    want = [(s.step, s.episodes) for s in slots]
    if got != want:
        first = next((j for j, (g, w) in enumerate(zip(got, want)) if g != w), min(len(got), len(want)))
        field = f"{where}.evaluations[{first}]" if first < len(got) else f"{where}.evaluations"
        value = got[first] if first < len(got) else f"{len(got)} evaluations"
        expected = want[first] if first < len(want) else "no more evaluations"
        raise EntryError(path, field, f"protocol {protocol.name!r} evaluates (step, episodes) = "
                         f"{expected} here ({len(want)} evaluations in all)", value=value,
                         hint="submit the evaluations exactly as the protocol's run made them")


def _check_values(path, where: str, run: dict, source) -> None:
    """Every return possible for the card's task, the benchmark or the skill environment
    (:func:`plausible_range`); success flags and rate in agreement."""
    from offbench.envs.meta.benchmarks import MetaBenchmark
    from offbench.envs.skill_environments import SkillEnvironment

    meta = isinstance(source, MetaBenchmark)
    if isinstance(source, SkillEnvironment):  # a skills run's returns: its rollouts' final distances
        name, what = source.environment_id, "final distance"
        hint = "submit the rollouts' final distances from their start, as offbench.skill_runs records them"
    else:
        name, what = (source.benchmark_id, "trial return") if meta else (source.id, "return")
        hint = (f"submit raw undiscounted {what}s, not normalised scores; a {what} the "
                f"{'benchmark' if meta else 'task'} cannot give means a bug in the evaluation")
    ranges: dict[int, ReturnRange | None] = {}
    for j, ev in enumerate(run["evaluations"]):
        trials = len(ev["returns"]) if meta else 1  # a benchmark's references depend on its held-out tasks
        if trials not in ranges:
            ranges[trials] = plausible_range(source, trials)
        accepted = ranges[trials]
        if accepted is not None:
            for k, r in enumerate(ev["returns"]):
                if not accepted.contains(r):
                    raise EntryError(path, f"{where}.evaluations[{j}].returns[{k}]",
                                     f"implausible {what} for {name} seed {run['seed']} (run {where}, evaluation at "
                                     f"step {ev['step']}): outside the accepted range [{accepted.low:.6g}, "
                                     f"{accepted.high:.6g}] ({accepted.reason})", value=r, hint=hint)
        success, rate = ev.get("success"), ev.get("success_rate")
        if success is not None and rate is not None and abs(sum(success) / len(success) - rate) > 1e-6:
            raise EntryError(path, f"{where}.evaluations[{j}].success_rate", "disagrees with the success flags",
                             value=rate)


def entry_names(entries_dir: str | Path, *, exclude: str | Path | None = None) -> dict[str, Path]:
    """Lower-cased name -> file of every readable entry in ``entries_dir`` (other than ``exclude``)."""
    names: dict[str, Path] = {}
    root = Path(entries_dir)
    if not root.is_dir():
        return names
    skip = Path(exclude).resolve() if exclude else None
    for p in sorted(root.glob("*.json")):
        if skip is not None and p.resolve() == skip:
            continue
        try:
            name = json.loads(p.read_text(encoding="utf-8")).get("name")
        except (OSError, ValueError, AttributeError, RecursionError):  # unreadable: its own validation says why
            name = None
        names[str(name or p.stem).lower()] = p
    return names


def check_unique_name(name: str, path: str | Path, entries_dir: str | Path) -> None:
    # case-insensitive: entries become files, and some file systems fold case
    other = entry_names(entries_dir, exclude=path).get(name.lower())
    if other is not None:
        raise EntryError(path, "name", f"an entry with this name already exists ({other})", value=name,
                         hint="choose another --name (names are unique and case-insensitive)")
    root = Path(entries_dir).resolve()
    if Path(path).resolve().parent == root and Path(path).name != f"{name}.json":
        raise EntryError(path, "name", f"an entry in {entries_dir} must be stored as {name}.json", value=name,
                         hint=f"rename the file to {name}.json")


def validate_file(path: str | Path, *, entries_dir: str | Path | None = None, check_unique: bool = True):
    """Read, shape-check and validate one entry file: ``(entry, protocol)``."""
    entry = read_entry(path)
    protocol = validate_entry(entry, path, entries_dir=entries_dir, check_unique=check_unique)
    return entry, protocol
