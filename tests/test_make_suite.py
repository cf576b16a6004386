"""scripts/make_suite.py: how the medium and expert snapshots of a behaviour run are chosen."""
from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from offbench.online import OnlineConfig, OnlineRun, measure_policy, snapshot_policy

spec = importlib.util.spec_from_file_location("make_suite", Path(__file__).resolve().parents[1] / "scripts" / "make_suite.py")
make_suite = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_suite)


def curve(*returns):
    return [{"step": str(1000 * (i + 1)), "return_stochastic": str(r)} for i, r in enumerate(returns)]


def test_medium_is_closest_to_a_third_up_to_the_first_that_reaches_it():
    steps = {1000, 2000, 3000, 4000, 5000}
    # random 0, expert 300: the threshold is 100. Step 3000 (110) is the first to reach it;
    # 2000 (95) is closer, so it is the medium. The later 100.0 at 5000 is never considered.
    assert make_suite.choose_medium(curve(10, 95, 110, 250, 100), steps, 0.0, 300.0) == 2000
    # Negative-return tasks: one third of the way from random -1200 to expert -150 is -850.
    assert make_suite.choose_medium(curve(-1100, -900, -840, -300), steps, -1200.0, -150.0) == 3000
    # Only snapshots count (a curve row without a snapshot cannot be exported).
    assert make_suite.choose_medium(curve(10, 95, 110, 250), {1000, 3000, 4000}, 0.0, 300.0) == 3000
    with pytest.raises(SystemExit, match="no snapshot reaches one third"):
        make_suite.choose_medium(curve(10, 20), steps, 0.0, 300.0)


def test_expert_is_the_best_candidate_by_fresh_episodes(tmp_path):
    config = OnlineConfig(env_id="Pendulum-v1", algo="sac", steps=600, seed=3, warmup_steps=250, batch_size=64,
                          eval_every=200, eval_episodes=2, snapshot_every=200, checkpoint_every=200,
                          agent={"hidden": (32, 32)})
    run = tmp_path / "run"
    OnlineRun(config, run).train(progress=False)
    rows = list(csv.DictReader(open(run / "curve.csv")))
    steps = {200, 400, 600}
    chosen = make_suite.choose_expert(run, rows, steps, candidates=3, episodes=3)
    measured = {s: measure_policy(snapshot_policy(run, s)[0], "Pendulum-v1", 3, make_suite.SELECTION_SEED)
                ["stochastic"]["mean"] for s in steps}
    assert chosen == max(measured, key=measured.get)
    # With one candidate, the curve's best snapshot is taken as it is.
    best_in_curve = max((r for r in rows if int(r["step"]) in steps), key=lambda r: float(r["return_stochastic"]))
    assert make_suite.choose_expert(run, rows, steps, candidates=1, episodes=3) == int(best_in_curve["step"])
