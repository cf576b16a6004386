"""``offbench datasets``: list, inspect, build, verify, download, publish, serve and convert datasets."""
from __future__ import annotations

import json
from pathlib import Path

from offbench.cli.common import run_each
from offbench.errors import OffbenchError


def cmd_list(args) -> int:
    from offbench.data.card_info import format_count
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
        print(f"{c.id:<{width}}  {c.env_id:<22} {format_count(c.size.get('steps')):>11}  {cached}")
    return 0


def cmd_info(args) -> int:
    from offbench.data.card_info import card_info, card_info_lines

    info = card_info(args.id)
    print(json.dumps(info, indent=2, default=str) if args.json else "\n".join(card_info_lines(info)))
    return 0


def cmd_build(args) -> int:
    import time

    from offbench.data.catalogue import list_cards, select_cards
    from offbench.data.recipes import build_dataset, update_card

    if bool(args.ids) == args.all:
        raise OffbenchError("name the datasets to build (ids, a suite such as 'lite', or globs), or pass --all")
    if args.strict and args.allow_mismatch:
        raise OffbenchError("--strict (only the card's exact bytes) and --allow-mismatch (any content) contradict "
                            "each other: pass one of them")
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

    code = run_each(cards, build, lambda c: c.id)
    if len(cards) > 1:
        print(f"{len(cards)} datasets in {time.perf_counter() - started_all:.1f} s")
    return code


def cmd_verify(args) -> int:
    from offbench.data.catalogue import cached_path, list_cards, looks_like_path, select_cards
    from offbench.data.verify import verify_dataset

    if bool(args.targets) == args.all:
        raise OffbenchError("name the datasets or files to verify, or pass --all (every cached catalogue dataset)")
    if args.all:
        targets = [c.id for c in list_cards() if cached_path(c.id).exists()]
        if not targets:
            raise OffbenchError("no catalogue dataset is in the cache: build or download some first")
    else:
        targets = [t for target in args.targets
                   for t in ([target] if looks_like_path(target) else [c.id for c in select_cards([target])])]
    def verify(target: str) -> None:
        for line in verify_dataset(target, strict=args.strict):
            print(line)

    code = run_each(targets, verify, str)
    if len(targets) > 1 and code == 0:
        print(f"verified {len(targets)} datasets")
    return code


def cmd_download(args) -> int:
    from offbench.data.catalogue import select_cards
    from offbench.data.mirrors import download_dataset, mirror_list

    mirrors = mirror_list(args.mirror)
    cards = select_cards(args.ids)

    def download(card) -> None:
        path = download_dataset(card.id, mirrors, progress=not args.quiet, timeout=args.timeout)
        print(f"downloaded {card.id} -> {path}", flush=True)

    return run_each(cards, download, lambda c: c.id)


def cmd_publish(args) -> int:
    from offbench.data.catalogue import select_cards
    from offbench.data.mirrors import publish_mirror

    # All or nothing: publish_mirror checks every file before it copies any.
    ids = [c.id for c in select_cards(args.ids)] if args.ids else None
    index = publish_mirror(Path(args.directory), ids)
    print(f"published mirror index {index}")
    return 0


def cmd_serve(args) -> int:
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


def cmd_relabel(args) -> int:
    from offbench.data.recipes import write_relabelled

    ds, path = write_relabelled(args.id, args.task, args.out, dataset_id=args.new_id, overwrite=args.overwrite)
    print(f"relabelled {args.id} for {args.task} -> {path} ({ds.num_steps:,} steps, env {ds.metadata.env_id}, "
          f"episode return mean {ds.episode_returns().mean():.4g})")
    return 0


def cmd_export_minari(args) -> int:
    from offbench.data.minari_interop import export_to_minari

    minari_id = export_to_minari(args.id, args.minari_id, minari_root=args.minari_root, overwrite=args.overwrite)
    print(f"exported {args.id} -> Minari dataset {minari_id}")
    return 0


def cmd_import_minari(args) -> int:
    from offbench.data.minari_interop import import_from_minari

    path = import_from_minari(args.minari_id, dataset_id=args.id, out=args.out, minari_root=args.minari_root)
    print(f"imported Minari dataset {args.minari_id} -> {path}")
    return 0


def cmd_export_ogbench(args) -> int:
    from offbench.data.ogbench_interop import export_to_ogbench

    path = export_to_ogbench(args.id, args.path, overwrite=args.overwrite)
    print(f"exported {args.id} -> {path} (read it with ogbench.load_dataset)")
    return 0


def cmd_import_ogbench(args) -> int:
    from offbench.data.ogbench_interop import import_from_ogbench

    path = import_from_ogbench(args.path, dataset_id=args.id, out=args.out, env_id=args.env)
    print(f"imported {args.path} -> {path} (load it with offbench.load_dataset({args.id!r}))")
    return 0


def register(commands) -> None:
    """Add the ``datasets`` group to the top-level subparsers."""
    datasets = commands.add_parser("datasets", help="list, build, download, verify and convert datasets")
    sub = datasets.add_subparsers(dest="datasets_command", required=True)

    p = sub.add_parser("list", help="list catalogue datasets")
    p.add_argument("--suite", help="only this suite (e.g. lite, locomotion)")
    p.add_argument("--env", help="only this environment name (e.g. hopper)")
    p.add_argument("--cached", action="store_true", help="only datasets in the local cache")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="show a dataset's card (and its cached file)")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_info)

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
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("verify", help="check cached datasets or files: structure and checksums")
    p.add_argument("targets", nargs="*", metavar="ID|PATH", help="ids, suites, prefixes or globs as for build, or files")
    p.add_argument("--all", action="store_true", help="every cached catalogue dataset")
    p.add_argument("--strict", action="store_true",
                   help="accept only the published data, not a local rebuild whose statistics matched the card")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("download", help="download datasets from a mirror, checking their sha256")
    p.add_argument("ids", nargs="+", metavar="ID", help="ids, suites, prefixes or globs as for build")
    p.add_argument("--mirror", action="append", help="mirror base URL or directory (repeatable; "
                   "tried before $OFFBENCH_MIRRORS)")
    p.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("publish", help="write a mirror directory: files plus index.json")
    p.add_argument("directory")
    p.add_argument("ids", nargs="*", metavar="ID",
                   help="ids, suites, prefixes or globs as for build (default: every cached catalogue dataset)")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("serve", help="serve a published mirror directory over HTTP (with byte ranges)")
    p.add_argument("directory")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--quiet", action="store_true", help="do not log each request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("relabel", help="write a copy of a dataset with a task's rewards, recomputed from its "
                       "stored states (e.g. reward-free exploratory data for a downstream task)")
    p.add_argument("id", metavar="ID|PATH")
    p.add_argument("--task", required=True, help="a task with a reward offbench recomputes from stored data, e.g. "
                   "halfcheetah-jump or point-plane-goal-top-right (offbench/envs/tasks.py)")
    p.add_argument("--out", required=True, metavar="FILE.hdf5", help="the relabelled dataset's file")
    p.add_argument("--new-id", help="the dataset id to record (default: ID+TASK)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_relabel)

    p = sub.add_parser("export-minari", help="write a dataset in Minari's format")
    p.add_argument("id", metavar="ID|PATH")
    p.add_argument("--minari-id", help="Minari dataset id (default: the offbench id)")
    p.add_argument("--minari-root", help="Minari's datasets directory (default: $MINARI_DATASETS_PATH)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export_minari)

    p = sub.add_parser("import-minari", help="convert a local Minari dataset into the offbench store")
    p.add_argument("minari_id")
    p.add_argument("--id", help="offbench dataset id to record (default: derived from the Minari id)")
    p.add_argument("--out", help="output file (default: the cache)")
    p.add_argument("--minari-root", help="Minari's datasets directory (default: $MINARI_DATASETS_PATH)")
    p.set_defaults(func=cmd_import_minari)

    p = sub.add_parser("export-ogbench", help="write a goal-conditioned dataset as an OGBench .npz file")
    p.add_argument("id", metavar="ID|PATH")
    p.add_argument("path", metavar="FILE.npz", help="name a validation split <name>-val.npz, as OGBench expects")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_export_ogbench)

    p = sub.add_parser("import-ogbench", help="convert an OGBench .npz file into the offbench store")
    p.add_argument("path", metavar="FILE.npz")
    p.add_argument("--id", required=True, help="offbench dataset id to record, e.g. goal/pointmaze-medium/mydata-v0")
    p.add_argument("--env", help="environment id (default: from an OGBench file name such as "
                   "pointmaze-medium-navigate-v0.npz)")
    p.add_argument("--out", help="output file (default: the cache)")
    p.set_defaults(func=cmd_import_ogbench)
