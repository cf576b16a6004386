"""Plain-text tables shared by the study reports (OPE, selection): intervals and Markdown."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def interval_text(value: float, low: float, high: float) -> str:
    """``0.123 [0.100, 0.150]``; ``n/a`` for a non-finite value, the value alone without an interval."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.3f} [{low:.3f}, {high:.3f}]" if np.isfinite(low) else f"{value:.3f}"


def markdown_table(table, columns: Sequence[str]) -> str:
    """A pandas frame's ``columns`` as a Markdown table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"
