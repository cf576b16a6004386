"""Write one leaderboard entry per offbench baseline in a results directory, validate them, build the board.

    python scripts/make_baseline_entries.py RESULTS_DIR [--entries leaderboard/entries] [--out leaderboard]

``RESULTS_DIR`` is an ``offbench reproduce --protocol lite --out RESULTS_DIR`` directory (or one of
another suite: ``offbench reproduce meta ...`` for the meta-RL trainers, with ``--prefix
offbench-meta-``; ``offbench reproduce skills ...`` for the skill-discovery methods, with ``--prefix
offbench-skills-``). It needs only results.csv, manifest.json and protocol.toml, so the committed
skills table makes the skills entries as it is::

    python scripts/make_baseline_entries.py leaderboard/skills --prefix offbench-skills-

Every built-in algorithm in it becomes ``offbench-ALGO`` (e.g. ``offbench-iql``),
authored by the offbench maintainers, hyperparameters chosen offline (the shipped defaults). All entries are
validated before any is written; ``--replace`` overwrites earlier baseline entries of the same
names (re-runs); otherwise an existing name is an error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from offbench.errors import OffbenchError
    from offbench.evaluation.results import load_results
    from offbench.leaderboard.build import build_board
    from offbench.leaderboard.files import default_board_dir, write_atomic
    from offbench.leaderboard.schema import builtin_names, dumps_entry
    from offbench.leaderboard.submit import entry_from_results
    from offbench.leaderboard.validate import validate_entry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", metavar="RESULTS_DIR")
    parser.add_argument("--out", help="board directory (default: the repository's leaderboard/)")
    parser.add_argument("--entries", help="entries directory (default: OUT/entries)")
    parser.add_argument("--prefix", default="offbench-", help="entry name prefix")
    parser.add_argument("--authors", nargs="+", default=["offbench maintainers"])
    parser.add_argument("--code", default=None, help="URL of offbench's code")
    parser.add_argument("--hardware", help="compute used, in words")
    parser.add_argument("--replace", action="store_true", help="overwrite existing entries of the same names")
    args = parser.parse_args(argv)

    out = Path(args.out) if args.out else default_board_dir()
    entries_dir = Path(args.entries) if args.entries else out / "entries"
    try:
        _, _, table = load_results(args.results_dir)
        algorithms = [a for a in sorted(table["algorithm"].astype(str).unique()) if a in builtin_names()]
        if not algorithms:
            raise OffbenchError(f"{args.results_dir} holds no built-in baseline results")
        pending = []
        for algo in algorithms:
            name = f"{args.prefix}{algo}"
            path = entries_dir / f"{name}.json"
            if path.exists() and not args.replace:
                raise OffbenchError(f"{path} exists: pass --replace to overwrite the baseline entries")
            entry = entry_from_results(args.results_dir, name=name, algorithm=algo, display_name=algo.upper(),
                                       authors=args.authors, code=args.code, selection="offline",
                                       hardware=args.hardware)
            # the file being replaced does not count as a duplicate of itself
            validate_entry(entry, path, entries_dir=entries_dir)
            pending.append((path, entry))
        for path, entry in pending:  # everything validated: now write
            write_atomic(path, dumps_entry(entry))
            print(f"wrote {path}")
        for path in build_board(entries_dir, out):
            print(f"wrote {path}")
    except OffbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
