"""Evaluation protocols as data: which runs make a table, and how each run is scored.

A protocol is a TOML file (``offbench/protocols/<name>.toml`` ships ``smoke``, ``lite`` and
``full``, for the goal suite ``goal``, ``goal-full`` and ``goal-smoke``, for the meta-RL suite
``meta`` and ``meta-smoke``, for the skill-discovery suite ``skills`` and ``skills-smoke``, and for
the ExORL table ``explore`` and ``explore-smoke``; any path works too)::

    name = "lite"
    suite = "lite"
    description = "..."
    seeds = [0, 1, 2]
    datasets = ["lite/pendulum/medium-v0", ...]
    algorithms = ["bc", "iql", ...]

    [train]                 # offbench.train.TrainConfig fields for every run
    steps = 10000
    eval_every = 1000
    eval_episodes = 10
    final_eval_episodes = 20

    [headline]              # the score of a run: "last" or "mean_last_n" (with n)
    kind = "mean_last_n"
    n = 3

    [overrides.cql]         # per-algorithm exceptions (train, settings, and datasets: a subset)
    train = { steps = 5000 }
    settings = { num_sampled_actions = 4 }

The headline score is never "best over training": that is reported only as a labelled,
optimistic secondary (REFERENCE §3).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from offbench.errors import OffbenchError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROTOCOL_DIR = Path(__file__).resolve().parent / "protocols"
HEADLINE_KINDS = ("last", "mean_last_n")


@dataclass(frozen=True)
class Headline:
    kind: str = "last"
    n: int = 1

    def describe(self) -> str:
        return "last evaluation" if self.kind == "last" else f"mean of the last {self.n} evaluations"


@dataclass
class Protocol:
    name: str
    suite: str
    description: str
    seeds: list[int]
    datasets: list[str]
    algorithms: list[str]
    train: dict[str, Any]
    headline: Headline
    per_algorithm: dict[str, dict[str, Any]] = field(default_factory=dict)
    path: Path | None = None

    def train_config(self, algorithm: str, seed: int):
        """The TrainConfig of one run: protocol ``[train]`` < ``[algorithms.X].train``, seeded."""
        from offbench.train import TrainConfig

        values = {**self.train, **self.per_algorithm.get(algorithm, {}).get("train", {}), "seed": seed}
        return TrainConfig(**values)

    def datasets_for(self, algorithm: str) -> list[str]:
        """The datasets ``algorithm`` runs on: the protocol's, or those its ``[overrides.X].datasets``
        keeps (an algorithm that cannot take some of them, e.g. PEARL's continuous actions)."""
        only = self.per_algorithm.get(algorithm, {}).get("datasets")
        return list(self.datasets) if only is None else [d for d in self.datasets if d in only]

    def settings(self, algorithm: str) -> dict[str, Any]:
        """Algorithm settings the protocol fixes (on top of the algorithm's own defaults)."""
        return dict(self.per_algorithm.get(algorithm, {}).get("settings", {}))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "suite": self.suite, "description": self.description, "seeds": self.seeds,
                "datasets": self.datasets, "algorithms": self.algorithms, "train": self.train,
                "headline": {"kind": self.headline.kind, "n": self.headline.n},
                "overrides": self.per_algorithm}

    def restricted(self, *, algorithms: list[str] | None = None, datasets: list[str] | None = None,
                   seeds: int | list[int] | None = None) -> "Protocol":
        """The same protocol on a subset (or, for seeds, a different count) of runs."""
        import copy

        new = copy.deepcopy(self)
        if algorithms:
            new.algorithms = list(algorithms)
        if datasets:
            new.datasets = list(datasets)
        if seeds is not None:
            new.seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
        return new


#: what must be equal for two protocols' runs to share a table (the grid itself may differ)
SCHEDULE_ATTRIBUTES = ("train", "headline", "per_algorithm", "suite")


def schedule_difference(a: Protocol, b: Protocol) -> str | None:
    """The first of :data:`SCHEDULE_ATTRIBUTES` in which ``a`` and ``b`` differ, or None when their runs
    can share one results table (they may still name different algorithms, datasets or seeds)."""
    return next((attribute for attribute in SCHEDULE_ATTRIBUTES if getattr(a, attribute) != getattr(b, attribute)), None)


def write_protocol(protocol: Protocol, path: Path) -> None:
    """Save ``protocol`` as TOML (what a results directory's ``protocol.toml`` holds)."""
    import tomli_w

    from offbench.atomic import write_atomic

    write_atomic(path, tomli_w.dumps(protocol.to_dict()))


def protocol_for_suite(suite: str, protocol: str | Path | None = None) -> Protocol:
    """The protocol ``offbench reproduce SUITE`` runs: ``protocol`` if given, else the suite's own.

    The suite's own is the shipped protocol named after it (``lite``), else the one shipped for
    it (``full`` for ``locomotion``); ``smoke`` is never a default. A shipped name with a variant
    for the suite, ``SUITE-NAME``, means that variant: ``--protocol smoke`` of suite ``goal`` is
    ``goal-smoke``, ``--protocol full`` is ``goal-full``.
    """
    if protocol:
        variant = f"{suite}-{protocol}"
        if isinstance(protocol, str) and protocol in protocol_names() and variant in protocol_names():
            protocol = variant
        chosen = load_protocol(protocol)
        if chosen.suite != suite:
            raise OffbenchError(f"protocol {chosen.name!r} is for suite {chosen.suite!r}, not {suite!r}")
        return chosen
    matching = [n for n in protocol_names() if n != "smoke" and not n.endswith("-smoke")
                and load_protocol(n).suite == suite]
    if not matching:
        smoke = [n for n in protocol_names() if (n == "smoke" or n.endswith("-smoke")) and load_protocol(n).suite == suite]
        if smoke:
            raise OffbenchError(f"suite {suite!r} has no table protocol yet, only {smoke[0]!r}: "
                                f"run `offbench reproduce {suite} --protocol smoke`, or pass --protocol PATH")
        suites = sorted({load_protocol(n).suite for n in protocol_names()})
        raise OffbenchError(f"no shipped protocol for suite {suite!r}: the suites are {suites}; "
                            "pass --protocol PATH to run another")
    return load_protocol(suite if suite in matching else matching[0])


def check_runnable(protocol: Protocol) -> None:
    """Refuse, before any work starts, a protocol whose algorithms, datasets or seeds cannot run.

    Algorithms must be built-in names or importable ``module:Class`` paths of an Algorithm; datasets
    catalogue ids (cards, or cached imports) or existing files; seeds non-empty, distinct and non-negative.
    """
    from offbench.algorithm import load_algorithm_class
    from offbench.data.catalogue import cached_path, get_card, looks_like_path

    if not protocol.algorithms:
        raise OffbenchError(f"protocol {protocol.name!r} names no algorithms")
    if not protocol.datasets:
        raise OffbenchError(f"protocol {protocol.name!r} names no datasets")
    if protocol.suite == "meta":  # online meta-RL algorithms on benchmarks (offbench.meta_runs)
        from offbench.envs.meta.benchmarks import get_benchmark
        from offbench.meta_runs import META_ALGORITHMS

        for name in protocol.algorithms:
            if name not in META_ALGORITHMS:
                raise OffbenchError(f"unknown meta-RL algorithm {name!r}: use one of {list(META_ALGORITHMS)}")
        for benchmark_id in protocol.datasets:
            get_benchmark(benchmark_id)  # raises, naming the id and the known ones
    if protocol.suite == "skills":  # skill-discovery methods on environments (offbench.skill_runs)
        from offbench.envs.skill_environments import get_skill_environment
        from offbench.skill_runs import method_config

        for name in protocol.algorithms:
            method_config(name, protocol.settings(name))  # raises, naming the method, setting or value
        for environment_id in protocol.datasets:
            get_skill_environment(environment_id)  # raises, naming the id and the known ones
    if protocol.suite == "meta-offline":  # offline meta-RL: each dataset is played on its family's benchmark
        from offbench.envs.meta.benchmarks import benchmark_for_dataset

        for dataset_id in protocol.datasets:
            if benchmark_for_dataset(dataset_id) is None:
                raise OffbenchError(f"protocol {protocol.name!r} (suite meta-offline): {dataset_id!r} is not an offline "
                                    "meta-RL dataset meta/<family>/<name>-v0 of a benchmark's family (offbench "
                                    "datasets list meta)")
    online = protocol.suite in ("meta", "skills")  # no datasets to load or build
    for name in [] if online else protocol.algorithms:
        load_algorithm_class(name)  # raises, naming the algorithm and the known ones
    for dataset_id in [] if online else protocol.datasets:
        if looks_like_path(dataset_id):
            if not Path(dataset_id).is_file():
                raise OffbenchError(f"dataset file {dataset_id} does not exist")
        elif not cached_path(dataset_id).is_file():  # a cached dataset without a card (an import) runs too
            get_card(dataset_id)  # raises, naming the id and close matches
    if not any(protocol.datasets_for(a) for a in protocol.algorithms):
        only = {a: protocol.per_algorithm[a]["datasets"] for a in protocol.algorithms
                if "datasets" in protocol.per_algorithm.get(a, {})}
        raise OffbenchError(f"protocol {protocol.name!r} has no runs for this selection: "
                            f"{', '.join(f'{a} runs on {d} only' for a, d in only.items()) or 'no datasets'}")
    seeds = protocol.seeds
    if not seeds:
        raise OffbenchError("--seeds must be at least 1 (the number of seeds 0..N-1 to run)")
    if any(not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise OffbenchError(f"protocol {protocol.name!r}: seeds must be distinct non-negative integers, got {seeds}")


def protocol_names() -> list[str]:
    return sorted(p.stem for p in PROTOCOL_DIR.glob("*.toml"))


def load_protocol(name_or_path: str | Path) -> Protocol:
    """A shipped protocol by name (``lite``) or a TOML file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = PROTOCOL_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise OffbenchError(f"unknown protocol {str(name_or_path)!r}: use one of {protocol_names()} "
                                "or the path of a protocol TOML file")
    if not path.is_file():
        raise OffbenchError(f"protocol file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise OffbenchError(f"{path}: invalid TOML ({exc})") from None
    return parse_protocol(raw, path)


def parse_protocol(raw: dict[str, Any], path: Path | None = None) -> Protocol:
    where = str(path) if path else "protocol"
    from offbench.train import TrainConfig

    def need(key, kind):
        if key not in raw:
            raise OffbenchError(f"{where}: missing field {key!r}")
        if not isinstance(raw[key], kind):
            raise OffbenchError(f"{where}: field {key!r} must be a {kind.__name__}")
        return raw[key]

    train_fields = {f.name for f in fields(TrainConfig)} - {"seed"}

    def check_train(values: dict, context: str) -> dict:
        unknown = sorted(set(values) - train_fields)
        if unknown:
            raise OffbenchError(f"{where}: {context} has unknown training settings {unknown}; "
                                f"known: {sorted(train_fields)}")
        return dict(values)

    seeds = need("seeds", (list, int))
    seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise OffbenchError(f"{where}: 'seeds' must be a positive count or a list of distinct seeds")
    headline_raw = raw.get("headline", {})
    headline = Headline(kind=str(headline_raw.get("kind", "last")), n=int(headline_raw.get("n", 1)))
    if headline.kind not in HEADLINE_KINDS or headline.n < 1:
        raise OffbenchError(f"{where}: headline.kind must be one of {HEADLINE_KINDS} and headline.n >= 1")
    per_algorithm = {}
    for name, table in raw.get("overrides", {}).items():
        unknown = sorted(set(table) - {"train", "settings", "datasets"})
        if unknown:
            raise OffbenchError(f"{where}: [overrides.{name}] has unknown keys {unknown}; "
                                "use 'train', 'settings' and 'datasets'")
        per_algorithm[name] = {"train": check_train(table.get("train", {}), f"[overrides.{name}].train"),
                               "settings": dict(table.get("settings", {}))}
        if "datasets" in table:  # this algorithm runs on these of the protocol's datasets only
            only = table["datasets"]
            datasets = list(raw.get("datasets", []))
            if not isinstance(only, list) or not only or any(d not in datasets for d in only):
                raise OffbenchError(f"{where}: [overrides.{name}].datasets must be a non-empty list of the "
                                    f"protocol's datasets {datasets}, got {only!r}")
            per_algorithm[name]["datasets"] = list(only)
    return Protocol(name=need("name", str), suite=need("suite", str), description=str(raw.get("description", "")),
                    seeds=seeds, datasets=list(need("datasets", list)), algorithms=list(need("algorithms", list)),
                    train=check_train(raw.get("train", {}), "[train]"), headline=headline,
                    per_algorithm=per_algorithm, path=path)


def headline_score(scores: list[float], headline: Headline) -> float:
    """A run's score from its evaluation scores in step order (one number per evaluation)."""
    if not scores:
        raise ValueError("a run with no evaluations has no score")
    if headline.kind == "last":
        return float(scores[-1])
    tail = scores[-headline.n:]
    return float(sum(tail) / len(tail))
