"""The generated site in a real browser: Debian's headless Chromium driven by Playwright.

Needs ``/usr/bin/chromium`` (Debian package ``chromium``) and the ``playwright`` Python package
(no Playwright-downloaded browser); skipped with the reason when either is missing.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from test_leaderboard import cli, protocols, write_results  # noqa: F401  (fixtures)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)"),
]


@pytest.fixture
def site(tmp_path, protocols):  # noqa: F811
    """A built board with three entries, one of them carrying markup in its text fields."""
    results = write_results(tmp_path / "results", algorithms=("bc", "iql"))
    other = write_results(tmp_path / "results2", algorithms=("bc",), quality={"bc": 0.8})
    board = tmp_path / "board"
    entries = board / "entries"
    for name, source, algo in (("offbench-bc", results, "bc"), ("offbench-iql", results, "iql"),
                               ("zz-best", other, "bc")):
        assert cli(["leaderboard", "submit", str(source), "--name", name, "--algo", algo,
                    "--out", str(entries / f"{name}.json")]) == 0
    evil = json.loads((entries / "zz-best.json").read_text())
    evil["authors"] = ["<script>window.__pwned = true</script>", "Mallory <img src=x onerror=\"window.__pwned=1\">"]
    evil["algorithm"]["name"] = "<b>bold</b><script>window.__pwned = 2</script>"
    (entries / "zz-best.json").write_text(json.dumps(evil))
    assert cli(["leaderboard", "build", "--out", str(board)]) == 0
    return board / "site"


@pytest.fixture
def server(site):
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def _column(page, table: str, index: int) -> list[str]:
    return page.eval_on_selector_all(f"#{table} tbody tr",
                                     f"rows => rows.map(r => r.cells[{index}].textContent.trim())")


def test_site_in_chromium(server):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
                    if msg.type in ("error", "warning") else None)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            failed: list[str] = []
            page.on("requestfailed", lambda req: failed.append(req.url))
            page.on("response", lambda res: failed.append(res.url) if res.status >= 400 else None)
            page.goto(server, wait_until="load")

            table = "board-lite--tiny"
            names = _column(page, table, 1)
            assert sorted(names) == ["offbench-bc", "offbench-iql", "zz-best"]
            assert names[0] == "zz-best"  # ranked by IQM, best first
            # click "entry": ascending by name; again: descending
            page.click(f"#{table} thead th:nth-child(2)")
            assert _column(page, table, 1) == ["offbench-bc", "offbench-iql", "zz-best"]
            page.click(f"#{table} thead th:nth-child(2)")
            assert _column(page, table, 1) == ["zz-best", "offbench-iql", "offbench-bc"]
            # click "IQM": ascending numerically
            page.click(f"#{table} thead th:nth-child(4)")
            iqms = [float(v) for v in _column(page, table, 3)]
            assert iqms == sorted(iqms) and _column(page, table, 1)[0] == "offbench-bc"
            assert page.get_attribute(f"#{table} thead th:nth-child(4)", "aria-sort") == "ascending"

            # markup in submitted text is shown as text and never runs
            assert page.evaluate("typeof window.__pwned") == "undefined"
            row = page.locator(f"#{table} tbody tr[data-entry='zz-best']")
            assert "<script>window.__pwned = true</script>" in row.inner_text()
            assert "<b>bold</b>" in row.inner_text()
            assert page.locator("b", has_text="bold").count() == 0
            assert page.locator("img[src='x']").count() == 0

            # figures load from local files; the per-entry details open
            assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            page.click("summary:has-text('offbench-iql')")
            assert page.locator("details[open] table.seeds tbody tr").count() == 2
            assert problems == [] and failed == []
        finally:
            browser.close()


def test_site_works_from_file_url(site):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(Path(site / "index.html").as_uri())
            page.click("#board-lite--tiny thead th:nth-child(2)")
            assert _column(page, "board-lite--tiny", 1)[0] == "offbench-bc"
            assert errors == [] and page.evaluate("typeof window.__pwned") == "undefined"
        finally:
            browser.close()
