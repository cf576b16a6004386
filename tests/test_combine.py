"""``offbench combine``: a table run in parts is the table run at once; what may not be combined is refused."""
from __future__ import annotations

import json

import pytest

from offbench.cli import main
from offbench.errors import OffbenchError
from offbench.evaluation.combine import combine_results
from offbench.reproduce import reproduce
from tests.test_reproduce import DATASET, catalogue, tiny_protocol  # noqa: F401 - fixture

QUIET = {"progress": False, "log": lambda _: None}


@pytest.fixture
def parts(tmp_path, catalogue):  # noqa: F811 - the fixture
    """The tiny protocol run whole (``all``), and in two parts: BC's runs (``a``) and IQL's (``b``)."""
    protocol = tiny_protocol(tmp_path)
    reproduce(protocol, tmp_path / "all", **QUIET)
    reproduce(protocol.restricted(algorithms=["bc"]), tmp_path / "a", **QUIET)
    reproduce(protocol.restricted(algorithms=["iql"]), tmp_path / "b", **QUIET)
    return tmp_path


def edit_manifest(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))


def test_parts_combine_into_the_whole_table(parts, capsys):
    assert main(["combine", str(parts / "a"), str(parts / "b"), "--out", str(parts / "c")]) == 0
    assert "combined 4 finished runs of protocol tiny" in capsys.readouterr().out
    # the same rows, to the byte, as the table run at once (runs are seeded and deterministic)
    assert (parts / "c" / "results.csv").read_bytes() == (parts / "all" / "results.csv").read_bytes()
    combined, whole = (json.loads((parts / d / "manifest.json").read_text()) for d in ("c", "all"))
    assert [r["key"] for r in combined["runs"]] == sorted(r["key"] for r in whole["runs"])
    assert combined["combined"] and combined["dataset_sha256"] == whole["dataset_sha256"]
    assert combined["dataset_files"] == whole["dataset_files"] != {}  # each file's level, for the report's `data`
    assert combined["git_commit"] == whole["git_commit"]  # one checkout made both parts
    assert {r["git_commit"] for r in combined["runs"]} == {whole["git_commit"]}
    assert {r["dataset_sha256"] for r in combined["runs"]} == {whole["dataset_sha256"][DATASET]}
    assert len(combined["sources"]) == 2 and combined["algorithms"] == ["bc", "iql"]
    assert combined["run_seconds_total"] == pytest.approx(
        sum(json.loads((parts / d / "manifest.json").read_text())["run_seconds_total"] for d in "ab"), abs=0.2)
    # the report reads it like any results directory, and says where its runs came from
    assert main(["report", str(parts / "c"), "--no-figures", "--reps", "50"]) == 0
    assert "combined (offbench combine) from runs at" in (parts / "c" / "report" / "README.md").read_text()


def test_a_source_without_file_levels_gets_them_from_the_cache(parts):
    """A part written before reproduce recorded ``dataset_files`` gets the level of the cached file
    with its runs' bytes; a file not cached here (other bytes) stays unrecorded."""
    whole = json.loads((parts / "all" / "manifest.json").read_text())
    edit_manifest(parts / "a", lambda m: m.pop("dataset_files"))
    edit_manifest(parts / "b", lambda m: (m.pop("dataset_files"), m["dataset_sha256"].update({DATASET: "f" * 64})))
    manifest = combine_results([parts / "a", parts / "b"], parts / "c")
    assert manifest["dataset_files"] == whole["dataset_files"] and "f" * 64 not in manifest["dataset_files"]


def test_a_combined_table_is_not_a_run_directory(parts):
    combine_results([parts / "a", parts / "b"], parts / "c")
    with pytest.raises(OffbenchError, match="combined from several results directories"):
        reproduce(tiny_protocol(parts), parts / "c", **QUIET)
    # combining into one of the sources, and a combined table with another part, work
    combine_results([parts / "a", parts / "b"], parts / "a")
    assert (parts / "a" / "results.csv").read_bytes() == (parts / "all" / "results.csv").read_bytes()


def test_a_run_in_two_sources_needs_replace(parts):
    with pytest.raises(OffbenchError, match=r"bc t/pendulum/random-v0 seed 0 is in both .*--replace"):
        combine_results([parts / "a", parts / "all"], parts / "c")
    edit_manifest(parts / "a", lambda m: [r.update(wall_time_seconds=1234.5) for r in m["runs"]])
    manifest = combine_results([parts / "all", parts / "a"], parts / "c", replace=True)
    assert [r["wall_time_seconds"] for r in manifest["runs"] if r["algorithm"] == "bc"] == [1234.5, 1234.5]
    assert len(manifest["runs"]) == 4


def test_another_protocol_is_refused(parts, tmp_path):
    other = tiny_protocol(tmp_path, algorithms=("bc",), extra="")
    other.train["steps"] = 30
    reproduce(other, parts / "short", **QUIET)
    with pytest.raises(OffbenchError, match="different protocol .*train differs"):
        combine_results([parts / "b", parts / "short"], parts / "c")


def test_one_column_one_build_of_each_dataset(parts):
    """Two builds of a dataset may serve two algorithms, never two seeds of one algorithm."""
    rebuilt = "f" * 64
    edit_manifest(parts / "b", lambda m: m["dataset_sha256"].update({DATASET: rebuilt}))
    manifest = combine_results([parts / "a", parts / "b"], parts / "c")
    assert manifest["dataset_sha256"] == {DATASET: None}
    assert {r["algorithm"]: r["dataset_sha256"] for r in manifest["runs"]}["iql"] == rebuilt
    assert "rebuilt between those runs" in _report_text(parts / "c")
    # a leaderboard entry carries each run's own build
    from offbench.leaderboard.submit import entry_from_results

    entry = entry_from_results(parts / "c", name="x-iql", algorithm="iql", authors=["x"])
    assert {r["dataset_sha256"] for r in entry["runs"]} == {rebuilt}

    # one algorithm's seeds on two builds: refused
    split = tiny_protocol(parts, algorithms=("bc",))
    reproduce(split.restricted(seeds=[0]), parts / "s0", **QUIET)
    reproduce(split.restricted(seeds=[1]), parts / "s1", **QUIET)
    edit_manifest(parts / "s1", lambda m: m["dataset_sha256"].update({DATASET: rebuilt}))
    with pytest.raises(OffbenchError, match="bc on t/pendulum/random-v0: seed 0 .* seed 1 .*share one build"):
        combine_results([parts / "s0", parts / "s1"], parts / "d")


def _report_text(path) -> str:
    assert main(["report", str(path), "--no-figures", "--reps", "50"]) == 0
    return (path / "report" / "README.md").read_text()


def test_whole_cells_leaves_out_a_part_still_running(parts, capsys):
    """--whole-cells takes from a source only the cells finished on every seed of its protocol: a part
    still running adds what it has finished whole, and with --replace a cell is replaced whole or not."""
    edit_manifest(parts / "b", lambda m: m["runs"][-1].update(status="running"))  # IQL's last seed unfinished
    assert main(["combine", str(parts / "a"), str(parts / "b"), "--out", str(parts / "c"), "--whole-cells"]) == 0
    assert f"left out 1 cell(s) of {parts / 'b'} not finished on every seed: iql {DATASET}" in capsys.readouterr().out
    manifest = json.loads((parts / "c" / "manifest.json").read_text())
    assert {r["algorithm"] for r in manifest["runs"]} == {"bc"} and len(manifest["runs"]) == 2
    # without it, the finished seed of the unfinished cell is taken
    manifest = combine_results([parts / "a", parts / "b"], parts / "c")
    assert sorted((r["algorithm"], r["seed"]) for r in manifest["runs"]) == [("bc", 0), ("bc", 1), ("iql", 0)]
