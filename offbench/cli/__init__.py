"""The ``offbench`` command line: one module per command group, each parsing and calling the library.

- :mod:`offbench.cli.training`: ``train``, ``eval``, ``algos``
- :mod:`offbench.cli.reproduce`: ``reproduce``
- :mod:`offbench.cli.report`: ``report``, ``combine``
- :mod:`offbench.cli.leaderboard`: ``leaderboard submit|validate|verify|build``
- :mod:`offbench.cli.ope`: ``ope``, ``ope zoo``, ``select``
- :mod:`offbench.cli.datasets`: ``datasets list|info|build|verify|download|publish|serve|export-minari|import-minari``
- :mod:`offbench.cli.online`: ``online train|evaluate|export-policy``

A new suite adds its group as a module with a ``register(commands)`` function and one line in
``GROUPS``. User mistakes (bad ids, corrupt files, unwritable folders, failed downloads) raise
:class:`OffbenchError`; :func:`main` prints its message as one line and exits with its code
instead of a traceback. Ctrl-C exits with 130.
"""
from __future__ import annotations

import argparse
import sys

from offbench.cli import datasets, leaderboard, online, ope, report, reproduce, training
from offbench.errors import OffbenchError

# In the order `offbench --help` lists them.
GROUPS = (training, reproduce, report, leaderboard, ope, datasets, online)


def build_parser() -> argparse.ArgumentParser:
    from offbench import __version__

    parser = argparse.ArgumentParser(prog="offbench", description="Offline RL datasets, baselines and evaluation.")
    parser.add_argument("--version", action="version", version=f"offbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:  # the parser too: a Ctrl-C while it imports the libraries is still a clean exit 130
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except OffbenchError as exc:
        print(f"offbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a path the user gave cannot be read or written (full disk, permissions, ...)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"offbench: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("offbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
