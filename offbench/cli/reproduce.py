"""``offbench reproduce``: run a protocol's algorithm x dataset x seed table, resumably, then report it."""
from __future__ import annotations

import sys
from pathlib import Path

from offbench.cli.common import positive_int
from offbench.errors import OffbenchError


def cmd_reproduce(args) -> int:
    import os

    from offbench.cli.common import writable_dir
    from offbench.protocol import check_runnable, protocol_for_suite
    from offbench.reproduce import reproduce

    # Every name, id, seed count and flag is checked before a dataset is built or a run starts.
    if args.address and args.backend != "ray":
        raise OffbenchError(f"--address is a Ray cluster address; it needs --backend ray (got --backend {args.backend})")
    from offbench.train import resolve_device

    resolve_device(args.device)
    protocol = protocol_for_suite(args.suite, args.protocol)
    unknown = sorted(set(args.datasets or []) - set(protocol.datasets))
    protocol = protocol.restricted(algorithms=args.algos, datasets=args.datasets, seeds=args.seeds)
    check_runnable(protocol)
    if unknown:
        print(f"note: datasets {unknown} are not in protocol {protocol.name!r}; running them under its settings",
              file=sys.stderr)
    workers = args.workers or max(1, min(len(protocol.algorithms) * len(protocol.datasets) * len(protocol.seeds),
                                         os.cpu_count() or 1))
    out = writable_dir(args.out if args.out else Path("results") / protocol.name)
    manifest = reproduce(protocol, out, backend=args.backend, workers=workers, address=args.address,
                         progress=not args.quiet, device=args.device)
    failed = [r for r in manifest["runs"] if r["status"] == "failed"]
    print(f"results: {out / 'results.csv'} ({len(manifest['runs']) - len(failed)} runs finished, "
          f"{len(failed)} failed, {manifest['wall_time_seconds']} s)")
    if len(failed) == len(manifest["runs"]):
        for run in failed[:10]:
            print(f"failed: {run.get('algorithm')} {run.get('dataset')} seed {run.get('seed')}: "
                  f"{(run.get('error') or 'see its log').splitlines()[0]}", file=sys.stderr)
        raise OffbenchError(f"every run failed, so there is nothing to report; the runs' logs are under {out}")
    if not args.no_report:
        from offbench.evaluation.report import write_report

        report = write_report(out)
        table = Path(report["out_dir"]) / "table.md"
        if table.exists():
            print(table.read_text())
        print(f"report: {report['out_dir']}")
    return 1 if failed else 0


def register(commands) -> None:
    """Add ``reproduce`` to the top-level subparsers."""
    p = commands.add_parser("reproduce", help="run a protocol's algorithm x dataset x seed table (resumable)")
    p.add_argument("suite", help="suite name, e.g. lite")
    from offbench.protocol import protocol_names

    p.add_argument("--protocol", help=f"{', '.join(protocol_names())} (bundled in offbench/protocols/) or a protocol "
                   "TOML path (default: the suite's protocol: lite for lite, full for locomotion, goal for goal, meta "
                   "for meta, skills for skills, explore for explore); smoke of suites goal, meta, meta-offline, "
                   "skills and explore means SUITE-smoke, full of suite goal goal-full")
    p.add_argument("--algos", nargs="+", metavar="ALGO", help="restrict to these algorithms")
    p.add_argument("--datasets", nargs="+", metavar="ID", help="restrict to these datasets")
    p.add_argument("--seeds", type=positive_int, help="number of seeds (0..N-1) instead of the protocol's")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--workers", type=positive_int, help="parallel runs (default: the number of CPU cores, at most "
                   "one per run)")
    p.add_argument("--address", help="Ray cluster address, with --backend ray (default: start a local Ray)")
    p.add_argument("--out", help="results directory (default: results/PROTOCOL); re-running resumes it")
    p.add_argument("--device", default="cpu", help="where every run trains: cpu (default), cuda or cuda:N "
                   "(one device shared by the workers)")
    p.add_argument("--no-report", action="store_true", help="skip `offbench report` at the end")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_reproduce)
