"""Errors that name what went wrong and say what to do.

Every error a user can cause derives from :class:`OffbenchError`; the CLI prints its message
and exits non-zero instead of showing a traceback.
"""
from __future__ import annotations


class OffbenchError(Exception):
    """A user-facing error: the message names the file, field or value and says what to do."""

    exit_code = 2


class DatasetFormatError(OffbenchError):
    """A dataset file is unreadable, incomplete or inconsistent."""

    def __init__(self, path, problem: str, *, field: str | None = None, hint: str | None = None):
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{self.path}" + (f" [{field}]" if field else "")
        message = f"{where}: {problem}"
        if hint:
            message += f"\n  what to do: {hint}"
        super().__init__(message)


class ChecksumError(DatasetFormatError):
    """Content does not match its recorded sha256."""


class DatasetNotFoundError(OffbenchError):
    """An id that is neither a catalogue entry nor an existing file."""


class DownloadError(OffbenchError):
    """Every mirror failed; the message lists each mirror and why."""


class CardError(OffbenchError):
    """A dataset card (TOML) is malformed."""
