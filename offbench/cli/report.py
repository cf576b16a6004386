"""``offbench report``: tables, rliable statistics and figures from a results directory."""
from __future__ import annotations

from pathlib import Path

from offbench.cli.common import positive_int


def cmd_report(args) -> int:
    from offbench.cli.common import writable_dir
    from offbench.evaluation.report import write_report

    if args.out:
        writable_dir(args.out)
    out = write_report(args.results_dir, args.out, reps=args.reps, seed=args.seed, figures=not args.no_figures)
    print((Path(out["out_dir"]) / "table.md").read_text())
    for r in out["missing_runs"]:
        print(f"missing: {r['algorithm']} {r['dataset']} seed {r['seed']}: {r['reason']}")
    print(f"report: {out['out_dir']} ({', '.join(out['files'])})")
    return 0


def register(commands) -> None:
    """Add ``offbench report`` to the CLI's subparsers (argparse ``add_subparsers`` object)."""
    p = commands.add_parser("report", help="tables, rliable statistics and figures from a results directory")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a directory written by `offbench reproduce`")
    p.add_argument("--out", metavar="DIR", help="report directory (default: RESULTS_DIR/report)")
    p.add_argument("--reps", type=positive_int, default=2000, help="bootstrap replicates per interval (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (same seed, same intervals)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures (faster)")
    p.set_defaults(func=cmd_report)
