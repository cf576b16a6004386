"""Build the board: validate every entry, recompute its scores, write README.md and the site.

All or nothing: if any entry is rejected, nothing is written. Same entries give byte-identical
output (entries sorted, fixed bootstrap seed, no timestamps, SVG metadata stripped).
"""
from __future__ import annotations

from pathlib import Path

from offbench.leaderboard.files import default_board_dir, write_atomic
from offbench.leaderboard.schema import EntryError
from offbench.leaderboard.validate import validate_file


def load_entries(entries_dir: str | Path) -> list[tuple[dict, object, Path]]:
    """``(entry, protocol, path)`` of every entry file, validated; names unique (case-insensitive)."""
    entries_dir = Path(entries_dir)
    loaded, names = [], {}
    for path in sorted(entries_dir.glob("*.json")) if entries_dir.is_dir() else []:
        entry, protocol = validate_file(path, check_unique=False)
        key = entry["name"].lower()
        if key in names:
            raise EntryError(path, "name", f"duplicate of the entry in {names[key]}", value=entry["name"],
                             hint="entry names are unique (case-insensitive): rename or remove one")
        if path.name != f"{entry['name']}.json":
            raise EntryError(path, "name", f"an entry must be stored as {entry['name']}.json", value=entry["name"],
                             hint=f"rename the file to {entry['name']}.json")
        names[key] = path
        loaded.append((entry, protocol, path))
    return loaded


def make_groups(loaded) -> list:
    """One ranked table per (suite, protocol): IQM descending, then name."""
    from offbench.leaderboard.scoring import score_entry
    from offbench.leaderboard.site import Group

    groups: dict[tuple[str, str], Group] = {}
    for entry, protocol, _ in loaded:
        key = (entry["suite"], protocol.name)
        if key not in groups:
            groups[key] = Group(key=f"{entry['suite']}--{protocol.name}", suite=entry["suite"], protocol=protocol,
                                rows=[])
        groups[key].rows.append((entry, score_entry(entry, protocol)))
    for group in groups.values():
        group.rows.sort(key=lambda row: (-(row[1].iqm if row[1].iqm is not None else float("-inf")),
                                         row[0]["name"].lower(), row[0]["name"]))
    return [groups[k] for k in sorted(groups)]


def build_board(entries_dir: str | Path | None = None, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``OUT/README.md``, ``OUT/site/index.html`` and ``OUT/site/figures/*.svg``; returns the paths."""
    from offbench.leaderboard.site import figure_svgs, render_index, render_readme

    out_dir = Path(out_dir) if out_dir else default_board_dir()
    entries_dir = Path(entries_dir) if entries_dir else out_dir / "entries"
    groups = make_groups(load_entries(entries_dir))  # raises before anything is written
    figures: dict[str, bytes] = {}
    for group in groups:
        figures.update(figure_svgs(group))
    outputs: dict[Path, str | bytes] = {out_dir / "README.md": render_readme(groups, figures),
                                        out_dir / "site" / "index.html": render_index(groups, figures)}
    outputs.update({out_dir / "site" / "figures" / name: data for name, data in figures.items()})
    for path, data in sorted(outputs.items()):
        write_atomic(path, data)
    figure_dir = out_dir / "site" / "figures"
    for stale in sorted(figure_dir.glob("*.svg")):  # figures of suites that no longer have entries
        if stale.name not in figures:
            stale.unlink()
    return sorted(outputs)
