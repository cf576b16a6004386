"""Policy zoo and ``offbench ope``: ground truth equals StitchGrid's DP values within the rollout
standard error, the zoo resumes, and the ope table's metrics equal dope_metrics by hand."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import torch

from offbench.cli import main
from offbench.envs.gridworld import expected_return
from offbench.errors import OffbenchError
from offbench.evaluation import dope_metrics as dm
from offbench.evaluation.ope_study import SUITE_ROW, stratified_bootstrap
from offbench.evaluation.zoo import behaviour_target, build_zoo, load_zoo, zoo_path

MEDIUM, EXPERT = "lite/stitchgrid/medium-v0", "lite/stitchgrid/expert-v0"


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def bc_run(results, dataset_id=MEDIUM, steps=20):
    """A tiny discrete BC run in a results-directory layout."""
    from offbench.data import load_dataset
    from offbench.data.recipes import ensure_built
    from offbench.train import TrainConfig, train_run

    ensure_built(dataset_id, progress=False)
    ds = load_dataset(dataset_id)
    run = results / "runs" / "bc" / dataset_id.replace("/", "__") / "seed0"
    train_run("bc", ds, {"hidden": [16]}, TrainConfig(steps=steps, batch_size=32, eval_every=steps, eval_episodes=2,
                                                      final_eval_episodes=2, checkpoint_every=steps, log_every=steps),
              run, progress=False)
    return run


def test_zoo_truth_matches_dynamic_programming_and_resumes(tmp_path):
    results = tmp_path / "results"
    bc_run(results)
    zoo = tmp_path / "zoo"
    manifest = build_zoo(MEDIUM, [results], zoo, episodes=200, log=lambda _: None)
    names = [p["name"] for p in manifest["policies"]]
    # the cards of StitchGrid name the uniform policy, the epsilon-greedy optimum and the routes (as two Markov routes)
    assert {"behaviour-uniform_random", "behaviour-stitchgrid_optimal-eps0.1", "behaviour-route_A-eps0.1",
            "behaviour-route_B-eps0.1"} <= set(names)
    run_entry = next(p for p in manifest["policies"] if p["source"] == "run")
    assert (zoo_path(zoo, MEDIUM) / "policies" / run_entry["name"] / "checkpoint.safetensors").is_file()
    from offbench.data import load_dataset
    from offbench.evaluation.zoo import zoo_policy

    ds = load_dataset(MEDIUM)
    for entry in manifest["policies"]:
        policy = zoo_policy(zoo, entry, ds)
        table = policy.probabilities(np.arange(9))  # every zoo policy on StitchGrid is a table
        truth = entry["truth"]
        assert truth["episodes"] == 200 and truth["seed"] > 10**8  # far from training seeds
        for gamma, mean, se in ((1.0, truth["return_mean"], truth["return_stderr"]),
                                (0.99, truth["discounted_mean"], truth["discounted_stderr"])):
            exact = expected_return(table, 10, gamma)
            assert abs(mean - exact) <= 3 * se + 1e-9, (entry["name"], gamma, mean, exact, se)
    # the truth is the stochastic policy's: BC's softmax, not its argmax
    assert manifest["evaluated_policy"].startswith("stochastic")
    messages = []
    again = build_zoo(MEDIUM, [results], zoo, episodes=200, log=messages.append)
    assert "4 policies" not in messages[0] and "0 to evaluate" in messages[0]
    assert again["policies"] == manifest["policies"]


def test_behaviour_specs_are_exact_tables():
    import gymnasium as gym

    pi = behaviour_target({"kind": "stitchgrid_optimal", "epsilon": 0.1}, gym.spaces.Discrete(9))
    assert expected_return(pi.table, 10, 1.0) == pytest.approx(0.874544, abs=1e-6)  # the card's exact value
    with pytest.raises(OffbenchError, match="unknown kind"):
        behaviour_target({"kind": "nope"}, gym.spaces.Discrete(9))


def test_ope_table_equals_dope_metrics_by_hand(tmp_path, capsys):
    zoo = tmp_path / "zoo"
    build_zoo(MEDIUM, [], zoo, episodes=30, log=lambda _: None)
    out = tmp_path / "ope"
    assert main(["ope", MEDIUM, "--zoo", str(zoo), "--estimators", "fqe", "wpdis", "model", "--out", str(out),
                 "--resamples", "200", "--quiet"]) == 0
    est = pd.read_csv(out / "estimates.csv")
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(est.estimator) == {"fqe", "wpdis", "model"}
    # model-based needs Box observations: recorded as a failure, not a crash
    assert est[est.estimator == "model"].estimate.isna().all() and est[est.estimator == "model"].error.str.len().gt(0).all()
    manifest = load_zoo(zoo, MEDIUM)
    truth = {p["name"]: p["truth"]["discounted_mean"] for p in manifest["policies"]}
    for name in ("fqe", "wpdis"):
        g = est[est.estimator == name]
        assert np.allclose(g.truth, [truth[p] for p in g.policy])
        t, e = g.truth.to_numpy(), g.estimate.to_numpy()
        row = metrics[metrics.estimator == name].iloc[0]
        assert row.absolute_error == pytest.approx(dm.absolute_error(t, e))
        assert row.spearman == pytest.approx(dm.spearman(t, e), nan_ok=True)
        assert row["regret@1"] == pytest.approx(dm.regret_at_k(t, e, 1))
        iv = dm.bootstrap(lambda a, b: dm.regret_at_k(a, b, 1), t, e, resamples=200, seed=0)
        assert (row["regret@1_low"], row["regret@1_high"]) == pytest.approx((iv.low, iv.high))
        assert row["regret@5"] == 0.0  # 4 policies: top 5 is everything
    # exact tabular FQE on the behaviour's own data is close to the truth for the policies it covers
    fqe = est[est.estimator == "fqe"].set_index("policy")
    assert fqe.loc["behaviour-route_B-eps0.1", "estimate"] == pytest.approx(truth["behaviour-route_B-eps0.1"], abs=0.05)
    assert metrics[metrics.estimator == "model"].policies.iloc[0] == 0
    assert {"scatter.png", "metrics.png", "table.md"} <= {p.name for p in out.iterdir()}
    assert "regret@1" in (out / "table.md").read_text()


def test_suite_argument_averages_over_datasets(tmp_path):
    zoo = tmp_path / "zoo"
    for d in (MEDIUM, EXPERT):
        build_zoo(d, [], zoo, episodes=20, log=lambda _: None)
    out = tmp_path / "ope"
    assert main(["ope", "lite", "--zoo", str(zoo), "--estimators", "wpdis", "--out", str(out), "--resamples", "100",
                 "--quiet", "--no-figures"]) == 0
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics.dataset) == {MEDIUM, EXPERT, SUITE_ROW}  # only the datasets with a zoo
    per = metrics[metrics.dataset != SUITE_ROW]
    agg = metrics[metrics.dataset == SUITE_ROW].iloc[0]
    assert agg.absolute_error == pytest.approx(per.absolute_error.mean())
    assert agg["regret@1"] == pytest.approx(per["regret@1"].mean())
    est = pd.read_csv(out / "estimates.csv")
    groups = [(g.truth.to_numpy(), g.estimate.to_numpy()) for _, g in est.groupby("dataset")]
    assert (agg.absolute_error_low, agg.absolute_error_high) == pytest.approx(
        stratified_bootstrap(dm.absolute_error, groups, resamples=100, seed=0)[1:])

    # Expected online performance: top-k by the estimate = 1 - regret@k; random = E[max of k]
    eop = pd.read_csv(out / "eop.csv")
    for d, g in est.groupby("dataset"):
        t, e = g.truth.to_numpy(), g.estimate.to_numpy()
        curve = eop[(eop.dataset == d) & (eop.selector == "wpdis")].set_index("k").value
        assert list(curve.index) == list(range(1, len(t) + 1)) and curve.is_monotonic_increasing
        for k in curve.index:
            assert curve[k] == pytest.approx(1 - dm.regret_at_k(t, e, k))
        rand = eop[(eop.dataset == d) & (eop.selector == "random (no OPE)")].set_index("k").value
        assert rand[1] == pytest.approx(dm.normalise(t, t).mean())
        assert rand.iloc[-1] == pytest.approx(dm.expected_max_of_k(dm.normalise(t, t), len(t)))
    mean = eop[eop.dataset == SUITE_ROW]
    assert mean.k.max() == est.groupby("dataset").policy.nunique().min()
    assert "Expected online performance" in (out / "table.md").read_text()

    # Resume: each dataset's estimates are kept with their key; a re-run reuses them untouched,
    # and a changed setting (another seed) estimates again.
    cached = out / "estimates" / "lite__stitchgrid__medium-v0.csv"
    stamp = cached.stat().st_mtime_ns
    messages = []
    from offbench.evaluation.ope_study import run_ope

    again = run_ope("lite", zoo, estimators=["wpdis"], out=out, resamples=100, figures=False, log=messages.append)
    assert cached.stat().st_mtime_ns == stamp and sum("earlier run" in m for m in messages) == 2
    pd.testing.assert_frame_equal(again["metrics"].reset_index(drop=True), metrics, check_dtype=False)
    messages.clear()
    run_ope("lite", zoo, estimators=["wpdis"], out=out, resamples=100, seed=1, figures=False, log=messages.append)
    assert not any("earlier run" in m for m in messages) and cached.stat().st_mtime_ns != stamp


def test_user_mistakes_name_the_problem(tmp_path, capsys):
    assert main(["ope", MEDIUM, "--zoo", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "no zoo for lite/stitchgrid/medium-v0" in capsys.readouterr().err
    assert main(["ope", MEDIUM, "--zoo", str(tmp_path), "--estimators", "magic"]) == 2
    assert "unknown estimators ['magic']" in capsys.readouterr().err
    assert main(["ope", "zoo", MEDIUM, "--from", str(tmp_path / "nope"), "--out", str(tmp_path / "z")]) == 2
    assert "has no runs/ directory" in capsys.readouterr().err
