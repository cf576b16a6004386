"""Build the board: validate every entry, recompute its scores, write README.md and the site.

All or nothing: if any entry is rejected, or the entries folder is missing or empty, nothing is
written. The new board is rendered in memory, staged next to the old one (``OUT/.site.new-*``
and a temporary README) and swapped in by renames, so a failure midway leaves the old board as
it was. The build replaces only what it wrote: a README.md or site/index.html without its mark,
or any other file in site/, stops it. Same entries give byte-identical output (entries sorted,
fixed bootstrap seed, no timestamps, SVG metadata stripped).
"""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

from offbench.errors import OffbenchError
from offbench.leaderboard.files import default_board_dir
from offbench.leaderboard.schema import EntryError
from offbench.leaderboard.validate import validate_file


def load_entries(entries_dir: str | Path) -> list[tuple[dict, object, Path]]:
    """``(entry, protocol, path)`` of every entry file, validated; names unique (case-insensitive).
    A missing folder or one without entries is an error: a board is never built from nothing."""
    entries_dir = Path(entries_dir)
    if not entries_dir.is_dir():
        raise OffbenchError(f"entries folder {entries_dir} does not exist: check the --entries path "
                            "(default OUT/entries, the folder of the entries' *.json files)")
    paths = sorted(entries_dir.glob("*.json"))
    if not paths:
        raise OffbenchError(f"entries folder {entries_dir} holds no entries (*.json): check the --entries path; "
                            "the board is not replaced by an empty one")
    loaded, names = [], {}
    for path in paths:
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
    """One ranked table per (suite, protocol): IQM descending, then name; entries of an algorithm
    the protocol restricts to some of its datasets (``EntryScores.complete`` false) follow, unranked.

    A ``skills`` protocol gets one table per environment instead (its protocol restricted to that
    environment): coverage counts cells of that environment, so it is ranked there and not averaged
    with other environments' cells."""
    from offbench.leaderboard.scoring import score_entry
    from offbench.leaderboard.site import Group

    groups: dict[tuple[str, ...], Group] = {}
    for entry, protocol, _ in loaded:
        if protocol.suite == "skills":
            algorithm = entry["algorithm"]["import_path"]
            tables = [((entry["suite"], protocol.name, environment), protocol.restricted(datasets=[environment]))
                      for environment in protocol.datasets_for(algorithm)]
        else:
            tables = [((entry["suite"], protocol.name), protocol)]
        for key, table_protocol in tables:
            if key not in groups:
                groups[key] = Group(key="--".join([entry["suite"], protocol.name, *map(environment_key, key[2:])]),
                                    suite=entry["suite"], protocol=table_protocol, rows=[])
            groups[key].rows.append((entry, score_entry(entry, table_protocol)))
    for group in groups.values():
        group.rows.sort(key=lambda row: (not row[1].complete,
                                         -(row[1].iqm if row[1].iqm is not None else float("-inf")),
                                         row[0]["name"].lower(), row[0]["name"]))
    return [groups[k] for k in sorted(groups)]


def environment_key(environment_id: str) -> str:
    """A skill environment's part of a table's key (a file name and an HTML id): its id less the
    ``skills/`` prefix, other slashes as ``-`` (``skills/point-plane-v0`` -> ``point-plane-v0``)."""
    return environment_id.removeprefix("skills/").replace("/", "-")


def build_board(entries_dir: str | Path | None = None, out_dir: str | Path | None = None) -> list[Path]:
    """Replace ``OUT/README.md`` and ``OUT/site/`` (``index.html``, ``figures/*.svg``) with a board
    built from ``entries_dir`` (default ``OUT/entries``); returns the paths written."""
    from offbench.leaderboard.site import figure_svgs, render_index, render_readme

    out_dir = Path(out_dir) if out_dir else default_board_dir()
    entries_dir = Path(entries_dir) if entries_dir else out_dir / "entries"
    groups = make_groups(load_entries(entries_dir))  # raises before anything is written
    figures: dict[str, bytes] = {}
    for group in groups:
        figures.update(figure_svgs(group))
    readme = render_readme(groups, figures)
    site = {"index.html": render_index(groups, figures), **{f"figures/{name}": data for name, data in figures.items()}}
    check_replaceable(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _swap_in(out_dir, readme, site)
    return sorted([out_dir / "README.md", *(out_dir / "site" / name for name in site)])


def check_replaceable(out_dir: Path) -> None:
    """Refuse to replace what the build did not write: a README.md or site/index.html without the
    build's mark (``--out`` pointing at the wrong folder), or anything in site/ besides index.html
    and figures/*.svg."""
    from offbench.leaderboard.site import INDEX_MARK, README_MARK

    for path, mark in ((out_dir / "README.md", README_MARK), (out_dir / "site" / "index.html", INDEX_MARK)):
        if path.is_file() and mark not in path.read_text(encoding="utf-8", errors="replace"):
            raise OffbenchError(f"{path} was not written by `offbench leaderboard build` and would be replaced: "
                                "check the --out folder (default: the repository's leaderboard/)")
    site = out_dir / "site"
    foreign = sorted(str(p) for p in site.rglob("*") if p.is_file() and not (
        p.relative_to(site).as_posix() == "index.html"
        or (p.parent == site / "figures" and p.suffix == ".svg"))) if site.is_dir() else []
    if foreign:
        raise OffbenchError(f"{site} holds files the build did not write: {', '.join(foreign)}; the build replaces "
                            f"{site} as a whole, so move them elsewhere first")


def _swap_in(out_dir: Path, readme: str, site_files: dict[str, str | bytes]) -> None:
    """Stage the new site and README next to the old ones, then swap them in by renames; on any
    failure the old README.md and site/ are back in place and the staged files removed."""
    site, readme_path = out_dir / "site", out_dir / "README.md"
    staging = out_dir / f".site.new-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()  # not mkdtemp: site/ keeps the usual permissions (umask), not 0700
    retired = Path(tempfile.mkdtemp(prefix=".site.old-", dir=out_dir))
    staged_readme = out_dir / f".README.md.new-{os.getpid()}"
    try:
        for name, data in site_files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        staged_readme.write_bytes(readme.encode("utf-8"))
        had_site = site.exists()
        if had_site:
            os.rename(site, retired / "site")
        try:
            os.rename(staging, site)
            os.replace(staged_readme, readme_path)
        except BaseException:
            if site.exists() and not staging.exists():  # the new site went in: take it out again
                os.rename(site, staging)
            if had_site:
                os.rename(retired / "site", site)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
        staged_readme.unlink(missing_ok=True)
