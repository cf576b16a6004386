"""Issue 13, items 3 and 7: the board build never destroys committed work, and the board and the
report agree (cells, ranks, colours) and read well at 1400 px and on a phone.

The layout check loads the board built from the shipped entries in Debian's headless Chromium
(as tests/test_leaderboard_browser.py does) and saves screenshots; set OFFBENCH_SCREENSHOTS=DIR
to keep them (docs/screenshots/ holds the committed ones, see its README).
"""
from __future__ import annotations

import io
import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from test_leaderboard import board, cli, protocols, snapshot  # noqa: F401  (fixtures)
from test_report import CURVES, make_results

from offbench.errors import OffbenchError
from offbench.leaderboard.site import competition_ranks

REPO = Path(__file__).resolve().parents[1]
SHIPPED_ENTRIES = REPO / "leaderboard" / "entries"
SHIPPED_RESULTS = REPO / "leaderboard" / "lite"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def shipped_board(tmp_path_factory):
    """The board built from the shipped entries (leaderboard/entries), in a temporary folder."""
    from offbench.leaderboard.build import build_board

    out = tmp_path_factory.mktemp("shipped")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OFFBENCH_HOME", str(out / "home"))
        build_board(SHIPPED_ENTRIES, out / "board")
    return out / "board"


def board_files(folder: Path) -> dict[str, bytes]:
    """Everything in a board folder except its entries."""
    return {k: v for k, v in snapshot(folder).items() if not k.startswith("entries")}


# ---------------------------------------------------------------------- item 3: nothing destroyed
@pytest.mark.parametrize("make_folder", [False, True], ids=["missing", "empty"])
def test_entries_folder_missing_or_empty_is_an_error(board, capsys, make_folder):  # noqa: F811
    assert cli(["leaderboard", "build", "--out", str(board)]) == 0
    before = snapshot(board)
    typo = board / "entrys"
    if make_folder:
        typo.mkdir()
    assert cli(["leaderboard", "build", "--entries", str(typo), "--out", str(board)]) == 2
    err = capsys.readouterr().err
    assert str(typo) in err and "--entries" in err
    if make_folder:
        typo.rmdir()
    assert snapshot(board) == before  # README, site and figures untouched


@pytest.mark.parametrize("failing_call", [1, 2, 3])
def test_a_failure_midway_leaves_the_old_board(board, failing_call):  # noqa: F811
    """Every rename or replace of a build in turn fails once (the disk fills up, say): the board
    stays the old one, whole, with no staged files left beside it."""
    from offbench.leaderboard.build import build_board

    build_board(board / "entries", board)
    before = board_files(board)
    path = board / "entries" / "offbench-bc.json"
    entry = json.loads(path.read_text())
    entry["authors"] = ["someone new"]  # the next build's README and index.html differ
    path.write_text(json.dumps(entry))

    calls = []

    def flaky(real):
        def call(src, dst):
            calls.append(dst)
            if len(calls) == failing_call:
                raise OSError(28, "No space left on device")
            return real(src, dst)
        return call

    with pytest.MonkeyPatch.context() as patch, pytest.raises(OSError, match="No space left"):
        patch.setattr(os, "rename", flaky(os.rename))
        patch.setattr(os, "replace", flaky(os.replace))
        build_board(board / "entries", board)
    assert board_files(board) == before
    assert sorted(p.name for p in board.iterdir()) == ["README.md", "entries", "site"]
    build_board(board / "entries", board)  # and the next build goes through
    assert "someone new" in (board / "README.md").read_text()


def test_build_replaces_only_what_it_wrote(board, tmp_path):  # noqa: F811
    from offbench.leaderboard.build import build_board

    elsewhere = tmp_path / "project"
    (elsewhere / "site").mkdir(parents=True)
    (elsewhere / "README.md").write_text("# my project\n")
    with pytest.raises(OffbenchError, match="README.md was not written by `offbench leaderboard build`"):
        build_board(board / "entries", elsewhere)
    assert (elsewhere / "README.md").read_text() == "# my project\n"

    build_board(board / "entries", board)
    (board / "site" / "CNAME").write_text("board.example.org\n")
    before = snapshot(board)
    with pytest.raises(OffbenchError, match="CNAME"):
        build_board(board / "entries", board)
    assert snapshot(board) == before


# ---------------------------------------------------------------------- item 7: ranks
def test_competition_ranks():
    from offbench.leaderboard.site import competition_ranks

    assert competition_ranks(["9.0", "8.0", "8.0", "7.0"]) == [1, 2, 2, 4]
    assert competition_ranks(["5.0", "5.0", "5.0"]) == [1, 1, 1]
    assert competition_ranks(["3.0", "2.0", "-", "-"]) == [1, 2, 3, 3]
    assert competition_ranks([]) == []


def test_tied_iqms_share_a_rank(shipped_board):
    """IQMs equal as shown share a standard competition rank (1, 1, 3); the shipped board (no ties since the
    re-run lite table) ranks %BC 68.9, AWR 68.3, CQL 65.4 first to third and shows the ranks in its HTML."""
    assert competition_ranks(["68.4", "68.4", "54.4", "54.2", "54.2", "51.0"]) == [1, 1, 3, 4, 4, 6]
    readme = (shipped_board / "README.md").read_text()
    rows = [line.split(" | ")[:4] for line in readme.splitlines() if line.startswith("| ") and "offbench-" in line
            and "[" in line and not any(f"offbench-{suite}-" in line for suite in ("goal", "skills", "meta"))]  # the lite table
    assert [(r[0], r[1], r[3].split(" ")[0]) for r in rows[:3]] == [
        ("| 1", "offbench-percent\\_bc", "68.9"), ("| 2", "offbench-awr", "68.3"), ("| 3", "offbench-cql", "65.4")]
    assert [int(r[0][2:]) for r in rows] == list(range(1, 11))
    index = (shipped_board / "site" / "index.html").read_text()
    assert '<tr data-order="2" data-entry="offbench-awr"><td data-sort="2" class="num">2</td>' in index
    assert '<tr data-order="3" data-entry="offbench-cql"><td data-sort="3" class="num">3</td>' in index


# ---------------------------------------------------------------------- item 7: board and report agree
def _markdown_rows(text: str, first_header: str) -> dict[str, dict[str, str]]:
    """``{row label: {column: cell}}`` of the Markdown table whose header starts with ``first_header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    header = [c.strip().replace("\\_", "_") for c in lines[start].strip("|").split("|")]
    rows = {}
    for line in itertools.takewhile(lambda line: line.startswith("|"), lines[start + 2:]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header[1:], cells[1:]))
    return rows


def test_board_and_report_show_the_same_cells_for_the_shipped_data(shipped_board):
    """Every per-dataset cell of the board (built from leaderboard/entries) shows what the
    report's table (from leaderboard/lite/results.csv) shows: mean ± standard error over the 3
    seeds, equal numerically and as printed; the IQM and mean over datasets agree too."""
    from offbench.evaluation.report import build_report, render_table_md
    from offbench.leaderboard.build import load_entries, make_groups

    report = build_report(SHIPPED_RESULTS, reps=10)  # means and standard errors do not depend on reps
    table_md = render_table_md(report)
    board_md = (shipped_board / "README.md").read_text()
    board_md = board_md[board_md.index("## Suite `lite`"):]  # the lite section (the goal suite has its own)
    report_cells = _markdown_rows(table_md, "dataset")
    board_cells = _markdown_rows(board_md, "dataset")
    (group,) = [g for g in make_groups(load_entries(SHIPPED_ENTRIES)) if g.suite == "lite"]  # the lite table
    assert len(group.rows) == len(report["algorithms"]) == 10 and len(board_cells) == 9
    for entry, scores in group.rows:
        algorithm = entry["algorithm"]["import_path"]
        for dataset in group.datasets:
            shown_by_report = report_cells[dataset][algorithm].split(" [")[0]  # less the interval
            assert board_cells[dataset][entry["name"]] == shown_by_report, (algorithm, dataset)
            cell, board_cell = report["cells"]["headline"][dataset][algorithm], scores.datasets[dataset]
            assert cell["seeds"] == board_cell.seeds == [0, 1, 2]
            assert cell["mean"] == pytest.approx(board_cell.mean, abs=1e-6)
            assert cell["stderr"] == pytest.approx(board_cell.stderr, abs=1e-6)
            assert cell["stderr"] == pytest.approx(np.std(cell["scores"], ddof=1) / np.sqrt(3))
        aggregate = report["aggregates"]["headline"]["lite"][algorithm]
        assert aggregate["iqm"]["value"] == pytest.approx(scores.iqm, abs=1e-6)
        assert aggregate["mean"]["value"] == pytest.approx(scores.mean, abs=1e-6)
    assert board_cells["lite/pendulum/medium-v0"]["offbench-percent_bc"] == "47.8 ± 1.6"
    # both headers say what a cell is
    assert "Cells: mean ± standard error over 3 seeds" in table_md
    assert "Per-dataset headline scores (mean ± standard error over the 3 seeds" in board_md


def test_board_and_report_give_identical_iqm_intervals_for_the_shipped_data():
    """The board (leaderboard/entries) and the report (leaderboard/lite/results.csv) draw their
    aggregate intervals through stats.aggregate_estimates with the same seed and replicates, so they
    resample the same runs: the intervals agree to the precision of the scores themselves (the
    entries keep returns to 6 decimals, results.csv's scores come from the unrounded returns; they
    differ by about 1e-8) and print the same."""
    from offbench.evaluation.report import build_report
    from offbench.leaderboard.build import load_entries, make_groups
    from offbench.leaderboard.site import iqm_ci_text

    report = build_report(SHIPPED_RESULTS)  # the defaults: 2000 replicates, seed 0
    (group,) = [g for g in make_groups(load_entries(SHIPPED_ENTRIES)) if g.suite == "lite"]  # the lite table
    for entry, scores in group.rows:
        aggregate = report["aggregates"]["headline"]["lite"][entry["algorithm"]["import_path"]]["iqm"]
        assert (scores.iqm, *scores.ci) == pytest.approx((aggregate["value"], aggregate["low"], aggregate["high"]),
                                                         abs=1e-6)
        shown = f"{aggregate['value']:.1f} [{aggregate['low']:.1f}, {aggregate['high']:.1f}]"
        assert iqm_ci_text(scores.iqm, scores.ci) == shown
    percent_bc = report["aggregates"]["headline"]["lite"]["percent_bc"]["iqm"]
    assert (round(percent_bc["value"], 1), round(percent_bc["low"], 1), round(percent_bc["high"], 1)) == (
        68.9, 66.8, 71.0)


def test_aggregate_intervals_depend_on_the_scores_and_seed_only():
    """stats.aggregate_estimates: the same matrix and seed give the same intervals whatever the
    metrics asked for, and equal interval_estimates with a generator seeded by the seed."""
    from offbench.evaluation import stats

    matrix = np.random.default_rng(5).normal(50, 10, (3, 9))
    full = stats.aggregate_estimates(matrix, reps=500, seed=7)
    assert stats.aggregate_estimates(matrix, ["iqm"], reps=500, seed=7) == {"iqm": full["iqm"]}
    direct = stats.interval_estimates({"anything": matrix}, reps=500, rng=np.random.default_rng(7))["anything"]
    assert full == direct
    assert stats.aggregate_estimates(matrix, reps=500, seed=8)["iqm"] != full["iqm"]


# ---------------------------------------------------------------------- item 7: colours
def _lab(color: str) -> np.ndarray:
    """CIELAB (D65) of an sRGB hex colour."""
    rgb = np.array([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ linear
    f = np.cbrt(xyz / [0.95047, 1.0, 1.08883])  # every colour of the palette is above the linear toe
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_palette_is_distinguishable_and_stable():
    from offbench.algorithm import BUILTIN
    from offbench.evaluation.colors import BUILTIN_SLOTS, PALETTE, SUITE_GROUPS, assign_colors
    from offbench.skill_runs import SKILL_METHODS

    assert len(PALETTE) == 12
    for a, b in itertools.combinations(PALETTE, 2):
        assert np.linalg.norm(_lab(a) - _lab(b)) >= 25, (a, b)  # CIE76 distance: clearly different
    builtin = [*BUILTIN, *SKILL_METHODS]  # the offline baselines, then the skills suite's methods
    assert list(BUILTIN_SLOTS) == builtin and sorted(a for g in SUITE_GROUPS for a in g) == sorted(builtin)
    for group in SUITE_GROUPS:  # the baselines that share figures have distinct colours
        assert len({BUILTIN_SLOTS[a] for a in group}) == len(group)
    lite_names = list(SUITE_GROUPS[0])
    # by name, not by position: adding or reordering algorithms keeps everyone's colour
    lite = assign_colors(lite_names)
    assert assign_colors(["iql", "percent_bc"]) == {"iql": lite["iql"], "percent_bc": lite["percent_bc"]}
    more = assign_colors(["mine.algo:X", *reversed(lite_names), "theirs:Y"])
    assert {a: more[a] for a in lite_names} == lite and len(set(more.values())) == 12
    # two leaderboard entries of one algorithm differ; the first by name keeps the algorithm's colour
    entries = assign_colors(["zz-bc", "offbench-bc", "offbench-iql"],
                            {"zz-bc": "bc", "offbench-bc": "bc", "offbench-iql": "iql"})
    assert entries["offbench-bc"] == lite["bc"] and entries["offbench-iql"] == lite["iql"]
    assert len(set(entries.values())) == 3


def _pixels_near(png: bytes, color: str) -> int:
    import matplotlib.image

    image = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3]
    target = np.array([int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(image - target).max(axis=-1) < 3 / 255).sum())


def test_report_and_board_draw_an_algorithm_in_the_same_colour(tmp_path, shipped_board):
    from offbench.evaluation.colors import assign_colors
    from offbench.evaluation.report import build_report, render_figures

    curves = {("percent_bc" if a == "bc" else a, d, s): v for (a, d, s), v in CURVES.items()}
    report = build_report(make_results(tmp_path / "results", curves), reps=20)
    colors = assign_colors(["percent_bc", "iql"])
    assert np.linalg.norm(_lab(colors["percent_bc"]) - _lab(colors["iql"])) >= 25
    pngs = render_figures(report)
    for figure in ("learning_curves", "performance_profiles"):
        for algorithm in ("percent_bc", "iql"):
            assert _pixels_near(pngs[figure], colors[algorithm]) > 50, (figure, algorithm)
    # the shipped board draws each entry in its algorithm's colour (every built-in: no clashes)
    svg = (shipped_board / "site" / "figures" / "lite--lite-datasets.svg").read_text()
    iqm_svg = (shipped_board / "site" / "figures" / "lite--lite-iqm.svg").read_text()
    for algorithm, color in assign_colors(json.loads(p.read_text())["algorithm"]["import_path"]
                                          for p in SHIPPED_ENTRIES.glob("*.json")
                                          if json.loads(p.read_text())["suite"] == "lite").items():
        assert f"fill: {color}" in svg and f"fill: {color}" in iqm_svg, algorithm


def test_per_dataset_figure_is_wide_with_the_legend_outside(shipped_board):
    from offbench.leaderboard.build import load_entries, make_groups
    from offbench.leaderboard.site import datasets_figure

    (group,) = [g for g in make_groups(load_entries(SHIPPED_ENTRIES)) if g.suite == "lite"]  # the lite table
    fig = datasets_figure(group)
    assert fig.get_figwidth() >= 10
    fig.draw_without_rendering()
    renderer = fig._get_renderer()
    (ax,), (legend,) = fig.axes, fig.legends
    axes_box, legend_box = ax.get_window_extent(renderer), legend.get_window_extent(renderer)
    assert legend_box.x0 >= axes_box.x1  # right of the plot, covering none of it
    assert axes_box.width >= 0.5 * fig.bbox.width  # the plot, not its labels, takes most of the width
    assert [t.get_text() for t in legend.get_texts()] == [entry["name"] for entry, _ in group.rows]
    assert len({line.get_color() for line in ax.get_lines() if line.get_marker() == "o"}) == 10


# ---------------------------------------------------------------------- item 7: the page in Chromium
OVERFLOW = """() => {
  for (const d of document.querySelectorAll("details")) { d.open = true; }
  const page = document.documentElement;
  return {page: page.scrollWidth - page.clientWidth, body: document.body.scrollWidth - page.clientWidth,
          tables: Array.from(document.querySelectorAll(".scroll")).map(
            s => [s.querySelector("table").id || s.querySelector("table").className, s.scrollWidth - s.clientWidth])};
}"""


@pytest.mark.skipif(not os.path.exists(CHROMIUM),
                    reason=f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)")
def test_board_fits_1400px_and_a_phone(shipped_board, tmp_path):
    """No horizontal scrolling of the page at 1400 px or 390 px; at 1400 px every table fits
    whole (on a phone the wide ones scroll inside their own box). Screenshots are the record."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    shots = Path(os.environ.get("OFFBENCH_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for width in (1400, 390):
                page = browser.new_page(viewport={"width": width, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto((shipped_board / "site" / "index.html").as_uri(), wait_until="load")
                page.screenshot(path=str(shots / f"board-{width}.png"), full_page=True)
                overflow = page.evaluate(OVERFLOW)
                assert overflow["page"] <= 0 and overflow["body"] <= 0, (width, overflow)
                # per suite: the board, the per-dataset table and one per entry, all in a scroll box
                assert len(overflow["tables"]) == 12 + 8 + 7 + 7 + 7 + 7 + 6  # lite: 10 entries; goal: 6; skills (plane, cheetah, maze): 5 each; meta: 4 + references; meta-cheetah: 3 + references
                extra = dict(overflow["tables"])
                if width == 1400:
                    assert all(v <= 0 for v in extra.values()), overflow["tables"]
                else:  # the 10-entry tables scroll inside their boxes, not the page
                    assert extra["datasets-lite--lite"] > 0 and extra["board-lite--lite"] > 0
                assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
                assert errors == []
                page.close()
        finally:
            browser.close()
    assert (shots / "board-1400.png").stat().st_size > 10_000 and (shots / "board-390.png").stat().st_size > 10_000
