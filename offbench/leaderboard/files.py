"""Where the board lives; its files are written with :func:`offbench.atomic.write_atomic`."""
from __future__ import annotations

from pathlib import Path

from offbench.atomic import write_atomic  # noqa: F401  (re-exported for the board's modules)


def default_board_dir() -> Path:
    """The repository's ``leaderboard/`` when run from a checkout, else ``./leaderboard``."""
    repo = Path(__file__).resolve().parents[2] / "leaderboard"
    return repo if repo.is_dir() else Path("leaderboard")


def default_entries_dir() -> Path:
    return default_board_dir() / "entries"
