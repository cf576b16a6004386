"""What every command group shares: argument types, ``--set`` parsing, output folders, many-item runs."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from offbench.errors import OffbenchError


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (``--steps 0`` is refused, not read as "default")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_overrides(pairs: list[str] | None) -> dict:
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


def writable_dir(path: str | os.PathLike, flag: str = "--out") -> Path:
    """Create ``path`` if needed and check a file can be written in it, before any work starts."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".offbench-write-check-"):
            pass
    except OSError as exc:
        raise OffbenchError(f"{flag} {path}: cannot write there ({exc.strerror or exc}); "
                            "choose a folder you can write to") from None
    return path


def run_each(items: list, run, describe) -> int:
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
