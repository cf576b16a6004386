"""The ``offbench leaderboard`` commands: submit, validate, verify, build.

``offbench.cli`` calls :func:`register` with its top-level subparsers object.
"""
from __future__ import annotations

from pathlib import Path

from offbench.cli.common import positive_int
from offbench.errors import OffbenchError


def cmd_submit(args) -> int:
    from offbench.leaderboard.files import default_entries_dir, write_atomic
    from offbench.leaderboard.schema import NAME_PATTERN, EntryError, dumps_entry
    from offbench.leaderboard.submit import entry_from_results
    from offbench.leaderboard.validate import validate_entry

    if not NAME_PATTERN.fullmatch(args.name) or ".." in args.name:
        raise OffbenchError(f"--name {args.name!r}: names must match {NAME_PATTERN.pattern} "
                            "(letters, digits, '.', '_', '-'; no slashes or '..'), e.g. myalgo-v2")
    out = Path(args.out) if args.out else default_entries_dir() / f"{args.name}.json"
    if out.exists():
        raise OffbenchError(f"{out} already exists: choose another --out or --name (or remove the old entry)")
    entry = entry_from_results(args.results_dir, name=args.name, algorithm=args.algo, display_name=args.algo_name,
                               version=args.algo_version, authors=args.authors, paper=args.paper, code=args.code,
                               commit=args.commit, selection=args.selection, hardware=args.hardware)
    text = dumps_entry(entry)
    from offbench.leaderboard.schema import MAX_ENTRY_BYTES

    if len(text.encode()) > MAX_ENTRY_BYTES:
        raise EntryError(out, None, f"the entry would be {len(text.encode()):,} bytes, over the "
                         f"{MAX_ENTRY_BYTES:,}-byte limit", hint="evaluate fewer episodes per evaluation")
    validate_entry(entry, out, entries_dir=out.parent)  # nothing is written unless it passes
    write_atomic(out, text)
    print(f"wrote {out} ({len(entry['runs'])} runs); check it with `offbench leaderboard validate {out}`, "
          "then `offbench leaderboard build`")
    return 0


def cmd_validate(args) -> int:
    from offbench.leaderboard.files import default_entries_dir
    from offbench.leaderboard.validate import validate_file

    entries_dir = Path(args.entries) if args.entries else default_entries_dir()
    entry, protocol = validate_file(args.entry, entries_dir=entries_dir)
    print(f"{args.entry}: valid entry {entry['name']!r} ({len(entry['runs'])} runs, protocol {protocol.name!r}, "
          f"suite {entry['suite']!r})")
    return 0


def cmd_verify(args) -> int:
    from offbench.leaderboard.verify import verify_entry

    ok = verify_entry(args.entry, args.seeds, yes=args.yes, sample_seed=args.sample_seed, work_dir=args.work_dir)
    return 0 if ok else 1


def cmd_build(args) -> int:
    from offbench.leaderboard.build import build_board

    from offbench.cli.common import writable_dir

    if args.out:
        writable_dir(args.out)
    paths = build_board(args.entries, args.out)
    for path in paths:
        print(f"wrote {path}")
    return 0


def register(commands) -> None:
    """Add the ``leaderboard`` group to the top-level ``add_subparsers()`` object."""
    board = commands.add_parser("leaderboard", help="submit, validate, verify and build the leaderboard")
    sub = board.add_subparsers(dest="leaderboard_command", required=True)

    p = sub.add_parser("submit", help="write an entry from an `offbench reproduce` results directory")
    p.add_argument("results_dir", metavar="RESULTS_DIR")
    p.add_argument("--name", required=True, help="entry name, unique on the board (e.g. myalgo-v2)")
    p.add_argument("--algo", metavar="IMPORT_PATH", help="the algorithm in RESULTS_DIR to submit, as scheduled "
                   "(built-in name or package.module:Class; default: the only one)")
    p.add_argument("--algo-name", help="display name of the algorithm (default: --algo)")
    p.add_argument("--algo-version", help="version of the algorithm's code")
    p.add_argument("--authors", nargs="+", default=[], metavar="AUTHOR")
    p.add_argument("--paper", metavar="URL")
    p.add_argument("--code", metavar="URL")
    p.add_argument("--commit", help="git commit of the algorithm's code (default for built-ins: offbench's)")
    p.add_argument("--selection", default="offline", metavar="offline|online:BUDGET",
                   help="how hyperparameters were chosen: offline only, or online with the evaluation budget used")
    p.add_argument("--hardware", help="compute used, in words (e.g. '16 CPU cores, 2 h')")
    p.add_argument("--out", metavar="PATH", help="entry file (default: leaderboard/entries/NAME.json)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("validate", help="check an entry: schema, catalogue hashes, protocol, values, unique name")
    p.add_argument("entry", metavar="ENTRY")
    p.add_argument("--entries", metavar="DIR", help="existing entries, for the unique-name check "
                   "(default: leaderboard/entries)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("verify", help="re-run sampled (dataset, seed) pairs of an entry and compare")
    p.add_argument("entry", metavar="ENTRY")
    p.add_argument("--seeds", type=positive_int, required=True, metavar="K", help="how many (dataset, seed) pairs to re-run")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the pair sampling")
    p.add_argument("--work-dir", help="keep the re-runs here (default: a temporary directory, removed)")
    p.add_argument("--yes", action="store_true", help="run without asking (after reading what will run)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("build", help="recompute every score and write README.md and site/")
    p.add_argument("--entries", metavar="DIR", help="entries directory (default: OUT/entries)")
    p.add_argument("--out", metavar="DIR", help="board directory (default: leaderboard/)")
    p.set_defaults(func=cmd_build)
