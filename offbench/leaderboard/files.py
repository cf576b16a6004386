"""Where the board lives and how its files are written (temporary file, then rename)."""
from __future__ import annotations

import os
from pathlib import Path


def default_board_dir() -> Path:
    """The repository's ``leaderboard/`` when run from a checkout, else ``./leaderboard``."""
    repo = Path(__file__).resolve().parents[2] / "leaderboard"
    return repo if repo.is_dir() else Path("leaderboard")


def default_entries_dir() -> Path:
    return default_board_dir() / "entries"


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` so readers see the old or the new file, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            with open(tmp, "w", encoding="utf-8", newline="\n") as f:
                f.write(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
