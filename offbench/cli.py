"""The ``offbench`` command line.

User mistakes (bad ids, corrupt files, failed downloads) raise :class:`OffbenchError`; ``main``
prints its message and exits with its code instead of a traceback.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from offbench.errors import OffbenchError


# ---------------------------------------------------------------------- datasets
def _fmt_int(n) -> str:
    return f"{int(n):,}" if n is not None and n != "" else "-"


def cmd_datasets_list(args) -> int:
    from offbench.data.catalogue import cached_path, list_cards

    cards = [c for c in list_cards()
             if (not args.suite or c.suite == args.suite) and (not args.env or c.env_name == args.env)
             and (not args.cached or cached_path(c.id).exists())]
    if args.json:
        print(json.dumps([{"id": c.id, "env_id": c.env_id, "steps": c.size.get("steps"),
                           "cached": cached_path(c.id).exists()} for c in cards], indent=2))
        return 0
    if not cards:
        print("no datasets match")
        return 0
    width = max(len(c.id) for c in cards)
    print(f"{'id':<{width}}  {'env':<22} {'steps':>11}  cached")
    for c in cards:
        cached = "yes" if cached_path(c.id).exists() else "-"
        print(f"{c.id:<{width}}  {c.env_id:<22} {_fmt_int(c.size.get('steps')):>11}  {cached}")
    return 0


def cmd_datasets_info(args) -> int:
    from offbench.data.catalogue import cached_path, get_card

    card = get_card(args.id)
    path = cached_path(card.id)
    info = {**card.to_toml_dict(), "card": str(card.path), "cached": str(path) if path.exists() else None}
    if path.exists():
        from offbench.data.dataset import read_dataset

        ds = read_dataset(path)
        info["file"] = {"steps": ds.num_steps, "episodes": ds.num_episodes,
                        "terminated_episodes": int(ds.terminations[ds.episode_starts + ds.episode_lengths - 1].sum()),
                        "arrays": {p: [list(a.shape), str(a.dtype)] for p, a in sorted(ds.arrays.items())}}
        from offbench.data.provenance import read_note

        info["local_rebuild"] = read_note(path)  # None: the cached file is the card's own data
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    print(f"{card.id}\n  {card.description}\n  env: {card.env_id}\n  card: {card.path}")
    print(f"  recipe: {json.dumps(card.recipe)}")
    if card.reference_scores:
        print(f"  reference scores: random {card.reference_scores.get('random')}, "
              f"expert {card.reference_scores.get('expert')}")
    if card.size:
        print(f"  size: {_fmt_int(card.size.get('steps'))} steps, {_fmt_int(card.size.get('episodes'))} episodes, "
              f"{_fmt_int(card.size.get('bytes'))} bytes")
    if card.returns:
        r = card.returns
        print(f"  episode returns: mean {r['mean']:.2f}, std {r['std']:.2f}, min {r['min']:.2f}, max {r['max']:.2f}")
    if card.sha256:
        print(f"  file sha256: {card.sha256}")
    print(f"  cached: {info['cached'] or 'no (offbench datasets download|build ' + card.id + ')'}")
    if info.get("local_rebuild"):
        print(f"  local rebuild, not the published bytes: {info['local_rebuild'].get('comparison')}")
    if "file" in info:
        for p, (shape, dtype) in info["file"]["arrays"].items():
            print(f"    {p:<34} {str(tuple(shape)):<16} {dtype}")
    for entry in card.changelog:
        print(f"  {entry.get('version')} ({entry.get('date')}): {entry.get('notes')}")
    return 0


def _each(items: list, run, describe) -> int:
    """Run ``run`` on every item; with several, a failure is reported and the rest still run."""
    if len(items) == 1:
        run(items[0])
        return 0
    failed = []
    for item in items:
        try:
            run(item)
        except OffbenchError as exc:
            print(f"offbench: error: {exc}", file=sys.stderr)
            failed.append(describe(item))
    if failed:
        print(f"offbench: {len(failed)} of {len(items)} failed: {', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


def cmd_datasets_build(args) -> int:
    import time

    from offbench.data.catalogue import list_cards, select_cards
    from offbench.data.recipes import build_dataset, update_card

    if bool(args.ids) == args.all:
        raise OffbenchError("name the datasets to build (ids, a suite such as 'lite', or globs), or pass --all")
    cards = list_cards() if args.all else select_cards(args.ids)
    # Mixes last: their sources are then built (or rebuilt under --force) once, not twice.
    cards.sort(key=lambda c: c.recipe.get("kind") == "mix")
    started_all = time.perf_counter()

    def build(card) -> None:
        started = time.perf_counter()
        path = build_dataset(card.id, force=args.force, progress=not args.quiet, allow_mismatch=args.allow_mismatch,
                             strict=args.strict)
        seconds = time.perf_counter() - started
        print(f"built {card.id} -> {path} ({seconds:.1f} s)", flush=True)
        if args.update_card:
            print(f"updated card {update_card(card.id, build_seconds=seconds).path}")

    code = _each(cards, build, lambda c: c.id)
    if len(cards) > 1:
        print(f"{len(cards)} datasets in {time.perf_counter() - started_all:.1f} s")
    return code


def _verify_one(target: str, strict: bool = False) -> None:
    from offbench.data.catalogue import get_card, looks_like_path, resolve_dataset_path
    from offbench.data.dataset import read_dataset
    from offbench.data.mirrors import file_sha256
    from offbench.data.provenance import vouching_note

    path = resolve_dataset_path(target)
    dataset = read_dataset(path, validate=True)  # raises on any structural or checksum problem
    print(f"{path}: {dataset.num_steps:,} steps, {dataset.num_episodes:,} episodes; "
          f"arrays, episode index and {len(dataset.metadata.checksums)} array checksums OK")
    card = None
    if not looks_like_path(target):
        card = get_card(target)
    elif dataset.metadata.dataset_id:
        try:
            card = get_card(dataset.metadata.dataset_id)
        except OffbenchError:
            card = None
    if card is not None:
        digest = dataset.content_sha256()
        note = None if strict else vouching_note(path, card, digest)
        if note:
            print(f"local rebuild of {card.id}, not the published bytes: {note.get('reason')}; checked against the "
                  f"card when built: {note.get('comparison')}")
            return
        if card.content_sha256 and digest != card.content_sha256:
            raise OffbenchError(f"{path}: content sha256 {digest[:16]}… differs from the card of {card.id} "
                                f"({card.content_sha256[:16]}…): this is not the published data; "
                                f"re-download or rebuild it")
        file_digest = file_sha256(path)
        if card.sha256 and file_digest != card.sha256:
            print("note: file sha256 differs from the published file (content identical: rebuilt locally "
                  "with other library versions)")
        elif card.sha256:
            print(f"file sha256 matches the card of {card.id}")


def cmd_datasets_verify(args) -> int:
    from offbench.data.catalogue import cached_path, list_cards, looks_like_path, select_cards

    if bool(args.targets) == args.all:
        raise OffbenchError("name the datasets or files to verify, or pass --all (every cached catalogue dataset)")
    if args.all:
        targets = [c.id for c in list_cards() if cached_path(c.id).exists()]
        if not targets:
            raise OffbenchError("no catalogue dataset is in the cache: build or download some first")
    else:
        targets = [t for target in args.targets
                   for t in ([target] if looks_like_path(target) else [c.id for c in select_cards([target])])]
    code = _each(targets, lambda target: _verify_one(target, strict=args.strict), str)
    if len(targets) > 1 and code == 0:
        print(f"verified {len(targets)} datasets")
    return code


def cmd_datasets_download(args) -> int:
    from offbench.data.catalogue import select_cards
    from offbench.data.mirrors import download_dataset, mirror_list

    mirrors = mirror_list(args.mirror)
    cards = select_cards(args.ids)

    def download(card) -> None:
        path = download_dataset(card.id, mirrors, progress=not args.quiet, timeout=args.timeout)
        print(f"downloaded {card.id} -> {path}", flush=True)

    return _each(cards, download, lambda c: c.id)


def cmd_datasets_publish(args) -> int:
    from offbench.data.catalogue import select_cards
    from offbench.data.mirrors import publish_mirror

    # All or nothing: publish_mirror checks every file before it copies any.
    ids = [c.id for c in select_cards(args.ids)] if args.ids else None
    index = publish_mirror(Path(args.directory), ids)
    print(f"published mirror index {index}")
    return 0


def cmd_datasets_serve(args) -> int:
    from offbench.data.mirror_server import make_server

    server = make_server(args.directory, args.host, args.port, quiet=args.quiet)
    host, port = server.server_address[:2]
    print(f"serving the mirror {Path(args.directory).resolve()} at http://{host}:{port}/ "
          f"(use it with `offbench datasets download ID --mirror http://{host}:{port}/`; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped")
    finally:
        server.server_close()
    return 0


def cmd_datasets_export_minari(args) -> int:
    from offbench.data.minari_interop import export_to_minari

    minari_id = export_to_minari(args.id, args.minari_id, minari_root=args.minari_root, overwrite=args.overwrite)
    print(f"exported {args.id} -> Minari dataset {minari_id}")
    return 0


def cmd_datasets_import_minari(args) -> int:
    from offbench.data.minari_interop import import_from_minari

    path = import_from_minari(args.minari_id, dataset_id=args.id, out=args.out, minari_root=args.minari_root)
    print(f"imported Minari dataset {args.minari_id} -> {path}")
    return 0


# ---------------------------------------------------------------------- online
def _parse_overrides(pairs: list[str] | None) -> dict:
    """``key=value`` pairs; values are parsed as JSON when they can be (numbers, lists, booleans)."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise OffbenchError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def cmd_online_train(args) -> int:
    from dataclasses import fields

    from offbench.online import OnlineConfig, OnlineRun

    overrides = _parse_overrides(args.set)
    loop_keys = {f.name for f in fields(OnlineConfig)}
    loop = {k: v for k, v in overrides.items() if k in loop_keys}
    agent = {k: v for k, v in overrides.items() if k not in loop_keys}
    config = OnlineConfig(env_id=args.env, algo=args.algo, steps=args.steps, seed=args.seed,
                          threads=args.threads, agent=agent, **loop)
    out = Path(args.out)
    resuming = (out / "state.json").exists()
    print(f"{'resuming' if resuming else 'starting'} {args.algo} on {args.env} in {out}", file=sys.stderr)
    run = OnlineRun(config, out)
    run.train(progress=not args.quiet)
    last = run.curve[-1] if run.curve else {}
    print(json.dumps({"out": str(out), "step": run.step, **{k: v for k, v in last.items() if k.startswith("return")}}))
    return 0


def cmd_online_evaluate(args) -> int:
    from offbench.online import behaviour_epsilon, measure_policy, snapshot_policy

    run = Path(args.run)
    steps = args.step or sorted(int(p.stem.split("-")[1]) for p in (run / "snapshots").glob("policy-*.safetensors"))
    for step in steps:
        module, config, agent_config = snapshot_policy(run, step)
        result = measure_policy(module, config.env_id, args.episodes, args.seed, config.env_kwargs,
                                epsilon=behaviour_epsilon(agent_config))
        print(json.dumps({"step": step, **result}), flush=True)
    return 0


def cmd_online_export_policy(args) -> int:
    from offbench.online import export_policy

    info = export_policy(Path(args.run), args.step, Path(args.dest), name=args.name, episodes=args.episodes,
                         seed=args.seed)
    print(json.dumps({k: info[k] for k in ("name", "env_id", "step", "sha256", "returns")}, indent=2))
    return 0


# ---------------------------------------------------------------------- offline training
def cmd_train(args) -> int:
    from dataclasses import fields

    from offbench.data import load_dataset
    from offbench.data.catalogue import offbench_home
    from offbench.train import TrainConfig, train_run

    overrides = _parse_overrides(args.set)
    train_keys = {f.name for f in fields(TrainConfig)}
    train = {k: v for k, v in overrides.items() if k in train_keys}
    algo = {k: v for k, v in overrides.items() if k not in train_keys}
    config = TrainConfig(seed=args.seed, **({"steps": args.steps} if args.steps else {}), **train)
    dataset = load_dataset(args.dataset)
    name = args.algo.replace(":", "_").replace(".", "_")
    out = Path(args.out) if args.out else (offbench_home() / "runs" / "offline" / name /
                                            dataset.metadata.dataset_id.replace("/", "_") / f"seed{args.seed}")
    summary = train_run(args.algo, dataset, algo, config, out, progress=not args.quiet)
    print(json.dumps({"out": str(out), "score_kind": summary["score_kind"], "score": summary["score"],
                      "final_step": summary["final_step"]}))
    return 0


def cmd_eval(args) -> int:
    from offbench.checkpoint import load_checkpoint
    from offbench.data import load_dataset
    from offbench.train import build_algorithm, evaluate

    run = Path(args.run)
    if not (run / "checkpoint.json").exists():
        raise OffbenchError(f"{run} has no checkpoint (checkpoint.json); is it an `offbench train` run directory?")
    config = json.loads((run / "config.json").read_text())
    dataset = load_dataset(args.dataset or config["dataset"]["id"])
    if dataset.content_sha256() != config["dataset"]["content_sha256"]:
        raise OffbenchError(f"the dataset {dataset.metadata.dataset_id} differs from the one the run trained on")
    algorithm = build_algorithm(config["algorithm"], dataset, config["algorithm_overrides"], config["train"]["seed"])
    algorithm.prepare(dataset)
    meta = load_checkpoint(run / "checkpoint", modules={"algorithm": algorithm})
    row = evaluate(algorithm, dataset, args.episodes, args.seed)
    print(json.dumps({"run": str(run), "step": meta["step"], "episodes": args.episodes, "seed": args.seed,
                      **{k: row[k] for k in ("return_mean", "return_stderr", "normalized_score") if k in row}}))
    return 0


def cmd_algos(args) -> int:
    from offbench.algorithm import BUILTIN, load_algorithm_class

    for name in BUILTIN:
        try:
            summary = load_algorithm_class(name).summary
        except OffbenchError:
            summary = "(not available in this version)"
        print(f"{name:<12} {summary}")
    return 0


def cmd_reproduce(args) -> int:
    import os

    from offbench.protocol import load_protocol
    from offbench.reproduce import reproduce

    if args.protocol:
        protocol = load_protocol(args.protocol)
    else:  # the suite's own protocol: lite -> lite.toml, locomotion -> full.toml (the one shipped for it)
        from offbench.protocol import protocol_names

        matching = [n for n in protocol_names() if n != "smoke" and load_protocol(n).suite == args.suite]
        if not matching:
            raise OffbenchError(f"no shipped protocol for suite {args.suite!r}; pass --protocol PATH "
                                f"(shipped: {protocol_names()})")
        protocol = load_protocol(args.suite if args.suite in matching else matching[0])
    if args.protocol and protocol.suite != args.suite:
        raise OffbenchError(f"protocol {protocol.name!r} is for suite {protocol.suite!r}, not {args.suite!r}")
    unknown = sorted(set(args.datasets or []) - set(protocol.datasets))
    if unknown:
        print(f"note: datasets {unknown} are not in protocol {protocol.name!r}; running them under its settings",
              file=sys.stderr)
    protocol = protocol.restricted(algorithms=args.algos, datasets=args.datasets, seeds=args.seeds)
    workers = args.workers or max(1, min(len(protocol.algorithms) * len(protocol.datasets) * len(protocol.seeds),
                                         os.cpu_count() or 1))
    out = Path(args.out) if args.out else Path("results") / protocol.name
    manifest = reproduce(protocol, out, backend=args.backend, workers=workers, address=args.address,
                         progress=not args.quiet)
    failed = [r for r in manifest["runs"] if r["status"] == "failed"]
    print(f"results: {out / 'results.csv'} ({len(manifest['runs']) - len(failed)} runs finished, "
          f"{len(failed)} failed, {manifest['wall_time_seconds']} s)")
    if not args.no_report:
        from offbench.evaluation.report import write_report

        report = write_report(out)
        table = Path(report["out_dir"]) / "table.md"
        if table.exists():
            print(table.read_text())
        print(f"report: {report['out_dir']}")
    return 1 if failed else 0


# Command groups that live beside their code and register themselves.
COMMAND_MODULES = ("offbench.evaluation.report", "offbench.leaderboard.cli", "offbench.evaluation.ope_cli")


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offbench", description="Offline RL datasets, baselines and evaluation.")
    parser.add_argument("--version", action="version", version=f"offbench {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train an offline algorithm on a dataset")
    p.add_argument("algo", help="a name from `offbench algos` or an import path package.module:Class")
    p.add_argument("dataset", metavar="DATASET", help="dataset id or path")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, help="gradient steps (default: the training config's)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training setting (eval_every, batch_size, threads, ...) or an algorithm setting")
    p.add_argument("--out", help="run directory (default: $OFFBENCH_HOME/runs/offline/ALGO/DATASET/seedS)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("eval", help="re-evaluate a training run's latest checkpoint online")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=777_000, help="evaluation seed")
    p.add_argument("--dataset", help="dataset id or path, if not the one recorded in the run")
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("algos", help="list the algorithms")
    p.set_defaults(func=cmd_algos)

    p = commands.add_parser("reproduce", help="run a protocol's algorithm x dataset x seed table (resumable)")
    p.add_argument("suite", help="suite name, e.g. lite")
    p.add_argument("--protocol", help="smoke, lite, full or a protocol TOML path (default: the suite's protocol: "
                   "lite for lite, full for locomotion)")
    p.add_argument("--algos", nargs="+", metavar="ALGO", help="restrict to these algorithms")
    p.add_argument("--datasets", nargs="+", metavar="ID", help="restrict to these datasets")
    p.add_argument("--seeds", type=int, help="number of seeds (0..N-1) instead of the protocol's")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--workers", type=int, help="parallel runs (default: the number of CPU cores)")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--out", help="results directory (default: results/PROTOCOL); re-running resumes it")
    p.add_argument("--no-report", action="store_true", help="skip `offbench report` at the end")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_reproduce)

    import importlib
    import importlib.util

    for module_name in COMMAND_MODULES:
        try:
            found = importlib.util.find_spec(module_name) is not None
        except ModuleNotFoundError:  # its package is not there
            found = False
        if found:
            importlib.import_module(module_name).register_commands(commands)

    datasets = commands.add_parser("datasets", help="list, build, download, verify and convert datasets")
    sub = datasets.add_subparsers(dest="datasets_command", required=True)

    p = sub.add_parser("list", help="list catalogue datasets")
    p.add_argument("--suite", help="only this suite (e.g. lite, locomotion)")
    p.add_argument("--env", help="only this environment name (e.g. hopper)")
    p.add_argument("--cached", action="store_true", help="only datasets in the local cache")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_datasets_list)

    p = sub.add_parser("info", help="show a dataset's card (and its cached file)")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_datasets_info)

    p = sub.add_parser("build", help="regenerate datasets locally from their cards' recipes")
    p.add_argument("ids", nargs="*", metavar="ID",
                   help="dataset ids, suites or suite/env prefixes (locomotion, lite/pendulum) or globs ('lite/*/expert-v0')")
    p.add_argument("--all", action="store_true", help="every catalogue dataset")
    p.add_argument("--force", action="store_true", help="rebuild even if the file is cached")
    p.add_argument("--allow-mismatch", action="store_true",
                   help="keep a rebuild whose content differs from the card's content_sha256, whatever its statistics")
    p.add_argument("--strict", action="store_true",
                   help="refuse a rebuild that is not bit-identical to the card's data, even if its statistics agree")
    p.add_argument("--update-card", action="store_true", help="record size, returns and hashes in the card")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_datasets_build)

    p = sub.add_parser("verify", help="check cached datasets or files: structure and checksums")
    p.add_argument("targets", nargs="*", metavar="ID|PATH", help="ids, suites, prefixes or globs as for build, or files")
    p.add_argument("--all", action="store_true", help="every cached catalogue dataset")
    p.add_argument("--strict", action="store_true",
                   help="accept only the published data, not a local rebuild whose statistics matched the card")
    p.set_defaults(func=cmd_datasets_verify)

    p = sub.add_parser("download", help="download datasets from a mirror, checking their sha256")
    p.add_argument("ids", nargs="+", metavar="ID", help="ids, suites, prefixes or globs as for build")
    p.add_argument("--mirror", action="append", help="mirror base URL or directory (repeatable; "
                   "tried before $OFFBENCH_MIRRORS)")
    p.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_datasets_download)

    p = sub.add_parser("publish", help="write a mirror directory: files plus index.json")
    p.add_argument("directory")
    p.add_argument("ids", nargs="*", metavar="ID",
                   help="ids, suites, prefixes or globs as for build (default: every cached catalogue dataset)")
    p.set_defaults(func=cmd_datasets_publish)

    p = sub.add_parser("serve", help="serve a published mirror directory over HTTP (with byte ranges)")
    p.add_argument("directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    p.set_defaults(func=cmd_datasets_serve)

    p = sub.add_parser("export-minari", help="write a dataset in Minari's format")
    p.add_argument("id", metavar="ID|PATH")
    p.add_argument("--minari-id", help="Minari dataset id (default: the offbench id)")
    p.add_argument("--minari-root", help="Minari's datasets directory (default: $MINARI_DATASETS_PATH)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_datasets_export_minari)

    p = sub.add_parser("import-minari", help="convert a local Minari dataset into the offbench store")
    p.add_argument("minari_id")
    p.add_argument("--id", help="offbench dataset id to record (default: derived from the Minari id)")
    p.add_argument("--out", help="output file (default: the cache)")
    p.add_argument("--minari-root", help="Minari's datasets directory (default: $MINARI_DATASETS_PATH)")
    p.set_defaults(func=cmd_datasets_import_minari)

    online = commands.add_parser("online", help="train the online agents that generate data (SAC, DQN)")
    sub = online.add_subparsers(dest="online_command", required=True)
    p = sub.add_parser("train", help="train an online agent; re-running with the same --out resumes it")
    p.add_argument("algo", help="sac or dqn")
    p.add_argument("--env", required=True, help="Gymnasium id, e.g. Hopper-v5")
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest per core for 256-wide nets)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a loop setting (eval_every, warmup_steps, ...) or an algorithm setting")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_online_train)

    p = sub.add_parser("evaluate", help="measure the returns of a run's policy snapshots")
    p.add_argument("run", help="run directory")
    p.add_argument("--step", type=int, action="append", help="snapshot step (repeatable; default: all)")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=123_456, help="evaluation seed (distinct from training seeds)")
    p.set_defaults(func=cmd_online_evaluate)

    p = sub.add_parser("export-policy", help="write a snapshot as a behaviour checkpoint with measured returns")
    p.add_argument("run", help="run directory")
    p.add_argument("--step", type=int, required=True, help="snapshot step (0: the randomly initialised policy)")
    p.add_argument("--name", required=True, help="e.g. medium, expert, random")
    p.add_argument("--dest", required=True, help="output .safetensors path, e.g. datasets/policies/hopper/medium.safetensors")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=123_456)
    p.set_defaults(func=cmd_online_export_policy)
    return parser


def _version() -> str:
    from offbench import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except OffbenchError as exc:
        print(f"offbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("offbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
