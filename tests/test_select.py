"""``offbench select``: selection rules and their regret on a constructed case, the CQL workflow
rule, and a tiny end-to-end sweep (holdout training, criteria, truth = oracle)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from offbench.cli import main
from offbench.errors import OffbenchError
from offbench.evaluation.selection import (cql_workflow_choice, parse_grid, regret_summary, relative_decline,
                                           select_units)
from tests.test_reproduce import DATASET, catalogue, tiny_protocol  # noqa: F401 - the fixture


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def constructed_table():
    """Two units x three settings; truth, a perfect and a reversed criterion, TD error and Q declines."""
    rows = []
    for dataset, truths in (("d1", [10.0, 30.0, 20.0]), ("d2", [5.0, 1.0, 3.0])):
        for i, t in enumerate(truths):
            rows.append({"dataset": dataset, "seed": 0, "point": f"p{i}", "truth": t, "perfect": t, "reversed": -t,
                         "critic": [1.0, 0.0, 2.0][i],  # d1 picks p2 (20: regret 0.5), d2 picks p2 (3: regret 0.5)
                         "validation_td_error": [3.0, 2.0, 1.0][i],  # argmin: p2
                         "q_decline": [0.0, 0.0, 0.5][i]})  # p2 overfits: workflow picks p1 (lowest TD among p0, p1)
    return pd.DataFrame.from_records(rows)


def test_rules_and_regrets_on_a_constructed_case():
    sel = select_units(constructed_table(), ["perfect", "reversed", "critic", "validation_td_error"]).set_index(
        ["dataset", "rule"])
    for d in ("d1", "d2"):
        assert sel.loc[(d, "truth"), "regret"] == 0.0 and sel.loc[(d, "perfect"), "regret"] == 0.0
        assert sel.loc[(d, "reversed"), "regret"] == 1.0  # picks the worst
    assert sel.loc[("d1", "critic"), "chosen"] == "p2" and sel.loc[("d1", "critic"), "regret"] == pytest.approx(0.5)
    assert sel.loc[("d1", "critic"), "raw_regret"] == pytest.approx(10.0)
    assert sel.loc[("d2", "critic"), "regret"] == pytest.approx(0.5)  # (5 - 3) / (5 - 1)
    assert sel.loc[("d1", "cql_workflow"), "chosen"] == "p1"  # regret 0 on d1
    assert sel.loc[("d2", "cql_workflow"), "regret"] == pytest.approx(1.0)  # p1 is d2's worst
    assert sel.loc[("d1", "random"), "regret"] == pytest.approx(np.mean([1.0, 0.0, 0.5]))
    assert ("d1", "default") not in sel.index  # no default point given: no such rule
    with_default = select_units(constructed_table(), ["critic"], default_point="p1").set_index(["dataset", "rule"])
    assert with_default.loc[("d1", "default"), "chosen"] == "p1"
    assert with_default.loc[("d2", "default"), "regret"] == pytest.approx(1.0)  # p1 is d2's worst
    absent = select_units(constructed_table(), ["critic"], default_point="p9").set_index(["dataset", "rule"])
    assert np.isnan(absent.loc[("d1", "default"), "regret"])  # not in the grid: undefined
    summary = regret_summary(sel.reset_index(), resamples=200).set_index("rule")
    assert summary.loc["truth", "regret"] == 0.0 and summary.loc["truth", "oracle_picked"] == 1.0
    assert summary.loc["cql_workflow", "regret"] == pytest.approx(0.5)
    assert summary.loc["critic", "regret_low"] == summary.loc["critic", "regret_high"] == pytest.approx(0.5)


def test_default_point_is_the_protocols_own_setting():
    from offbench.evaluation.selection import default_point_label, grid_points
    from offbench.protocol import load_protocol

    lite = load_protocol("lite")
    grid = grid_points({"expectile": [0.7, 0.9], "beta": [3, 10]})
    assert default_point_label("iql", lite, grid) == "expectile=0.7,beta=3"  # IQLConfig's 0.7 and 3.0
    assert default_point_label("iql", lite, grid_points({"expectile": [0.8, 0.9]})) is None
    hidden = grid_points({"hidden": [[256, 256], [128, 128]]})
    assert default_point_label("iql", lite, hidden) == "hidden=[128, 128]"  # lite's list equals the config's tuple


def test_cql_workflow_rule_and_decline():
    assert relative_decline([1.0, 3.0, 2.0]) == pytest.approx(0.5)  # gave back half its range
    assert relative_decline([1.0, 2.0, 3.0]) == 0.0 and relative_decline([2.0, 2.0]) == 0.0
    assert np.isnan(relative_decline([]))
    # Q that only falls from its initial value toward its fixed point (negative rewards, Q starts
    # at 0): no "peak then decline"; after its lowest point it rose and fell back: that part counts
    assert relative_decline([0.0, -100.0, -200.0, -300.0]) == 0.0
    assert relative_decline([0.0, -300.0, -100.0, -200.0]) == pytest.approx(100.0 / 300.0)
    assert relative_decline([0.0, 5.0, 10.0, 4.0]) == pytest.approx(0.6)  # a positive-reward rise, then a fall
    assert cql_workflow_choice([0.6, 0.3], [1.0, 2.0]) == 1  # all overfit: the smallest decline
    assert cql_workflow_choice([0.0, 0.01, 0.9], [5.0, 2.0, 0.1]) == 1  # non-overfitting, lowest TD
    assert cql_workflow_choice([np.nan, np.nan], [1.0, 2.0]) is None  # no logged Q: undefined


def test_parse_grid():
    assert parse_grid(["expectile=0.7,0.9", "beta=3,10"]) == {"expectile": [0.7, 0.9], "beta": [3, 10]}
    assert parse_grid(["lagrange=true,false"]) == {"lagrange": [True, False]}
    with pytest.raises(OffbenchError, match="KEY=V1,V2"):
        parse_grid(["expectile"])


def test_select_end_to_end(tmp_path, catalogue, capsys):  # noqa: F811 - the fixture
    path = tmp_path / "tiny.toml"
    tiny_protocol(tmp_path, algorithms=("iql",), seeds=(0,))
    out = tmp_path / "select"
    argv = ["select", "iql", "t", "--grid", "expectile=0.6,0.9", "--protocol", str(path), "--seeds", "1",
            "--estimators", "wpdis", "fqe", "--fqe-steps", "50", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    table = pd.read_csv(out / "criteria.csv")
    assert sorted(table.point) == ["expectile=0.6", "expectile=0.9"]
    assert table[["critic", "validation_td_error", "q_decline", "ope:wpdis", "ope:fqe"]].notna().all().all()
    # the truth is each run's headline score from its own results.csv
    for r in table.itertuples():
        results = pd.read_csv(out / "points" / r.point / "results.csv")
        assert r.truth == pytest.approx(results.normalized_score.tail(2).mean())  # mean_last_n, n = 2
    study = json.loads((out / "study.json").read_text())
    assert study["holdout"] and study["trained_as"] == "offbench.evaluation.selection:Holdout_iql"
    config = json.loads(next((out / "points").glob("*/runs/*/*/seed0/config.json")).read_text())
    assert config["algorithm_overrides"]["expectile"] in (0.6, 0.9) and config["algorithm_overrides"]["hidden"] == [16, 16]
    sel = pd.read_csv(out / "selections.csv")
    truth = sel[sel.rule == "truth"].iloc[0]
    assert truth.regret == 0.0 and truth.chosen == truth.oracle
    summary = pd.read_csv(out / "regret.csv").set_index("rule")
    for rule in ("critic", "validation_td_error", "ope:wpdis", "ope:fqe", "cql_workflow", "random"):
        chosen = sel[sel.rule == rule].iloc[0]
        if rule != "random":
            score = table.set_index("point").truth[chosen.chosen]
            spread = table.truth.max() - table.truth.min()
            assert chosen.regret == pytest.approx((table.truth.max() - score) / spread if spread > 0 else 0.0)
        assert summary.loc[rule, "regret"] == pytest.approx(chosen.regret)
    assert (out / "regret.png").is_file() and "cql_workflow" in (out / "regret.md").read_text()
    # resumable: criteria are cached, runs are not retrained
    assert main(argv) == 0
    assert pd.read_csv(out / "criteria.csv").equals(table)


def test_select_rejects_unknown_settings(tmp_path, catalogue, capsys):  # noqa: F811
    tiny_protocol(tmp_path, algorithms=("iql",), seeds=(0,))
    assert main(["select", "iql", "t", "--grid", "nonsense=1,2", "--protocol", str(tmp_path / "tiny.toml"),
                 "--out", str(tmp_path / "s")]) == 2
    assert "unknown IQL settings ['nonsense']" in capsys.readouterr().err
