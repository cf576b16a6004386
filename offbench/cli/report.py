"""``offbench report``: tables, rliable statistics and figures from a results directory;
``offbench combine``: one results directory from several of one protocol."""
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


def cmd_combine(args) -> int:
    from offbench.cli.common import writable_dir
    from offbench.evaluation.combine import combine_results

    writable_dir(args.out)
    manifest = combine_results(args.results_dirs, args.out, replace=args.replace, whole_cells=args.whole_cells)
    runs = manifest["runs"]
    for source, cells in (manifest.get("partial_cells_left") or {}).items():
        print(f"left out {len(cells)} cell(s) of {source} not finished on every seed: "
              + ", ".join(f"{a} {d}" for a, d in cells))
    print(f"combined {len(runs)} finished runs of protocol {manifest['protocol']} from {len(args.results_dirs)} "
          f"directories into {args.out} (commits: {', '.join(sorted({str(r.get('git_commit'))[:7] for r in runs}))})")
    mixed = [d for d, h in manifest["dataset_sha256"].items() if h is None]
    if mixed:
        print(f"{len(mixed)} dataset(s) were trained on as different builds by different algorithms "
              f"(each run records its own SHA-256): {', '.join(mixed)}")
    print(f"next: offbench report {args.out}")
    return 0


def register(commands) -> None:
    """Add ``offbench report`` and ``offbench combine`` to the CLI's subparsers (argparse ``add_subparsers`` object)."""
    p = commands.add_parser("report", help="tables, rliable statistics and figures from a results directory")
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="a directory written by `offbench reproduce`")
    p.add_argument("--out", metavar="DIR", help="report directory (default: RESULTS_DIR/report)")
    p.add_argument("--reps", type=positive_int, default=2000, help="bootstrap replicates per interval (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (same seed, same intervals)")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures (faster)")
    p.set_defaults(func=cmd_report)

    p = commands.add_parser("combine", help="one results directory from several of one protocol (a table run in parts)")
    p.add_argument("results_dirs", metavar="RESULTS_DIR", nargs="+", help="directories written by `offbench reproduce` "
                   "(or combined earlier)")
    p.add_argument("--out", metavar="DIR", required=True, help="the combined directory (may be one of the sources)")
    p.add_argument("--replace", action="store_true",
                   help="a run in several sources: keep the last source's (a run done again) instead of an error")
    p.add_argument("--whole-cells", action="store_true",
                   help="take from each source only the cells (algorithm, dataset) finished on every seed of its "
                        "protocol: a part still running, or a cell to be replaced whole")
    p.set_defaults(func=cmd_combine)
