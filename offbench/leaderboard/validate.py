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
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from offbench.errors import OffbenchError
from offbench.leaderboard.schema import EntryError, read_entry

# Where a task's reward is unbounded, returns further than this many spans outside the span of the
# card's reference scores and dataset returns are implausible. Generous below, because a bad policy
# can be far worse than random; above, about a normalised score of 300, beyond any published result
# on these tasks (D4RL-style scores top out near 130).
SPANS_BELOW = 10.0
SPANS_ABOVE = 2.0
# Returns at a task's exact bound pass with this slack: rewards are float32 in some envs and
# recorded returns are rounded to 6 decimals.
BOUND_TOLERANCE = 1e-6


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
    ``meta``-suite protocol's benchmark id, else the dataset's catalogue card. Raises
    :class:`OffbenchError` for an unknown id."""
    if protocol.suite == "meta":
        from offbench.envs.meta.benchmarks import get_benchmark

        return get_benchmark(dataset)
    from offbench.data.catalogue import get_card

    return get_card(dataset)


def plausible_range(source, trials: int = 1) -> ReturnRange | None:
    """The returns accepted for ``source`` (see the module docstring), or None where nothing bounds
    them: a catalogue card's episode returns, or a meta benchmark's (``MetaBenchmark``) trial
    returns in an evaluation on ``trials`` held-out tasks (the point robot's references depend on them)."""
    from offbench.envs.meta.benchmarks import MetaBenchmark

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


def validate_entry(entry: dict[str, Any], path: str | Path, *, entries_dir: str | Path | None = None,
                   check_unique: bool = True):
    """Raise :class:`EntryError` at the first problem; returns the shipped protocol on success."""
    protocol = shipped_protocol(entry, path)
    algorithm = entry["algorithm"]["import_path"]
    meta = protocol.suite == "meta"
    kind = "benchmark" if meta else "dataset"  # a meta protocol names benchmarks where others name datasets
    _check_algorithm(path, algorithm, protocol)
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
                raise EntryError(path, f"{where}.dataset", f"unknown {'meta benchmark' if meta else 'dataset'} id",
                                 value=dataset, hint=str(exc)) from None
        if dataset not in protocol.datasets:
            raise EntryError(path, f"{where}.dataset", f"{kind} is not part of protocol {protocol.name!r}",
                             value=dataset, hint="remove runs outside the protocol")
        if dataset not in planned:
            raise EntryError(path, f"{where}.dataset", f"protocol {protocol.name!r} runs {algorithm} on "
                             f"{planned} only ([overrides.{algorithm}].datasets)", value=dataset,
                             hint="remove runs outside the protocol")
        if meta:
            _check_meta_run(path, where, run)
        else:
            _check_dataset_file(path, where, run, cards[dataset])
        if seed not in protocol.seeds:
            raise EntryError(path, f"{where}.seed", f"protocol {protocol.name!r} uses seeds {protocol.seeds}",
                             value=seed, hint="remove runs with other seeds")
        _check_schedule(path, where, run, protocol, algorithm)
        _check_values(path, where, run, cards[dataset])
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
    """A ``meta`` protocol's runs come from offbench's meta-RL trainers, and only from them."""
    from offbench.meta_runs import META_ALGORITHMS

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


def _check_meta_run(path, where: str, run: dict) -> None:
    """A meta run has no dataset file, and is evaluated on the fixed held-out tasks."""
    from offbench.envs.meta.benchmarks import EVAL_TASK_SEED

    for key in ("dataset_sha256", "content_sha256"):
        if run.get(key) is not None:
            raise EntryError(path, f"{where}.{key}", f"must be null: {run['dataset']} is a meta benchmark (an "
                             "environment), not a dataset file", value=run[key], hint="set it to null")
    for j, ev in enumerate(run["evaluations"]):
        if ev.get("eval_seed") is not None and ev["eval_seed"] != EVAL_TASK_SEED:
            raise EntryError(path, f"{where}.evaluations[{j}].eval_seed", f"meta runs are evaluated on the held-out "
                             f"tasks sample_tasks(n, {EVAL_TASK_SEED}) of every benchmark", value=ev["eval_seed"],
                             hint="evaluate on the benchmark's held-out tasks, as `offbench reproduce meta` does")


def _check_schedule(path, where: str, run: dict, protocol, algorithm: str) -> None:
    steps, slots = expected_schedule(protocol, algorithm, run["seed"])
    if run["gradient_steps"] != steps:
        unit = "outer updates" if protocol.suite == "meta" else "gradient steps"
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
    """Every return possible for the card's task or the benchmark (:func:`plausible_range`); success
    flags and rate in agreement."""
    from offbench.envs.meta.benchmarks import MetaBenchmark

    meta = isinstance(source, MetaBenchmark)
    name, what = (source.benchmark_id, "trial return") if meta else (source.id, "return")
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
                                     f"{accepted.high:.6g}] ({accepted.reason})", value=r,
                                     hint=f"submit raw undiscounted {what}s, not normalised scores; a {what} "
                                          f"the {'benchmark' if meta else 'task'} cannot give means a bug in the "
                                          "evaluation")
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
