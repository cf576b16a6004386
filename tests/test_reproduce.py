"""``offbench reproduce``: the schedule, the tidy table, skip/resume, retry and failure, Ray = local."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

from offbench.cli import main
from offbench.errors import OffbenchError
from offbench.protocol import Headline, headline_score, load_protocol, parse_protocol
from offbench.reproduce import reproduce
from tests.test_catalogue_cli import CARD

DATASET = "t/pendulum/random-v0"


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    """A one-card catalogue: 1,000 random Pendulum steps (built by reproduce itself)."""
    root = tmp_path / "catalogue"
    (root / "t" / "pendulum").mkdir(parents=True)
    (root / "t" / "pendulum" / "random-v0.toml").write_text(CARD.format(
        id=DATASET, recipe='kind = "rollout"\nenv_id = "Pendulum-v1"\npolicy = "uniform_random"\n'
                           'steps = 1000\nseed = 0'))
    monkeypatch.setenv("OFFBENCH_CATALOGUE", str(root))
    return root


def tiny_protocol(tmp_path, algorithms=("bc", "iql"), seeds=(0, 1), extra=""):
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(f"""\
        name = "tiny"
        suite = "t"
        seeds = {list(seeds)}
        datasets = ["{DATASET}"]
        algorithms = {json.dumps(list(algorithms))}
        [train]
        steps = 60
        batch_size = 32
        eval_every = 30
        eval_episodes = 2
        final_eval_episodes = 3
        checkpoint_every = 30
        log_every = 30
        [headline]
        kind = "mean_last_n"
        n = 2
        [overrides.bc]
        settings = {{ hidden = [16, 16] }}
        [overrides.iql]
        settings = {{ hidden = [16, 16] }}
        """) + extra)
    return load_protocol(path)


def test_local_schedule_writes_the_tidy_table(tmp_path, catalogue):
    out = tmp_path / "results"
    manifest = reproduce(tiny_protocol(tmp_path), out, workers=2, progress=False, log=lambda _: None)
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 2 * 2 * 2  # algorithms x seeds x evaluations (steps 30 and 60)
    assert sorted(table.step.unique()) == [30, 60]
    assert table[table.step == 60].final.all() and not table[table.step == 30].final.any()
    assert (table[table.final].episodes == 3).all() and (table[~table.final].episodes == 2).all()
    # every number is recomputable from the raw returns, with the card's reference scores
    for _, row in table.iterrows():
        returns = np.array(json.loads(row.returns))
        assert len(returns) == row.episodes
        assert row.return_mean == pytest.approx(returns.mean())
        assert row.normalized_score == pytest.approx(100 * (returns.mean() + 1200) / (-150 + 1200))
    # evaluation seeds differ from the training seeds and between evaluations of one run
    assert not set(table.eval_seed) & {0, 1}
    assert table.groupby(["algorithm", "seed"]).eval_seed.nunique().eq(2).all()
    assert [r["status"] for r in manifest["runs"]] == ["finished"] * 4
    assert set(manifest["dataset_sha256"]) == {DATASET} and manifest["git_commit"]
    assert (out / "protocol.toml").is_file() and load_protocol(out / "protocol.toml").name == "tiny"


def test_finished_runs_are_skipped_and_a_killed_run_resumes_exactly(tmp_path, catalogue, monkeypatch):
    import offbench.train as train_module

    protocol = tiny_protocol(tmp_path, algorithms=("bc",), seeds=(0,))
    reference = tmp_path / "uninterrupted"
    reproduce(protocol, reference, progress=False, log=lambda _: None)

    real_train_run = train_module.train_run

    def killed_at_45(*args, on_step=None, **kwargs):  # stands in for a kill: no checkpoint at 45
        def kill(step):
            if step == 45:
                raise KeyboardInterrupt
        return real_train_run(*args, **kwargs, on_step=kill)

    out = tmp_path / "interrupted"
    monkeypatch.setattr(train_module, "train_run", killed_at_45)
    with pytest.raises(KeyboardInterrupt):
        reproduce(protocol, out, progress=False, log=lambda _: None)
    monkeypatch.setattr(train_module, "train_run", real_train_run)
    assert json.loads((out / "runs/bc/t__pendulum__random-v0/seed0/checkpoint.json").read_text())["step"] == 30
    reproduce(protocol, out, progress=False, log=lambda _: None)  # resumes from step 30
    assert (out / "results.csv").read_bytes() == (reference / "results.csv").read_bytes()

    checkpoint = out / "runs/bc/t__pendulum__random-v0/seed0/checkpoint.safetensors"
    before = checkpoint.stat().st_mtime_ns
    messages = []
    reproduce(protocol, out, progress=False, log=messages.append)
    assert checkpoint.stat().st_mtime_ns == before  # finished: not retrained
    assert "1 finished earlier, 0 to run now" in messages[0]


FLAKY = '''
from pathlib import Path
from baselines.bc import BC

class FailsOnce(BC):
    """Crashes on its first update in a fresh run directory's process, then works."""
    marker = Path(__file__).with_name("failed_once")

    def update(self, batch):
        if not self.marker.exists():
            self.marker.write_text("x")
            raise RuntimeError("transient failure")
        return super().update(batch)

class AlwaysFails(BC):
    def update(self, batch):
        raise ValueError("this algorithm is broken")
'''


def test_a_crash_is_retried_once_and_failures_do_not_stop_the_others(tmp_path, catalogue, monkeypatch):
    pkg = tmp_path / "plugins"
    pkg.mkdir()
    (pkg / "flaky_algos.py").write_text(FLAKY)
    monkeypatch.syspath_prepend(str(pkg))
    protocol = tiny_protocol(tmp_path, algorithms=("bc", "flaky_algos:FailsOnce", "flaky_algos:AlwaysFails"),
                             seeds=(0,))
    out = tmp_path / "results"
    messages = []
    manifest = reproduce(protocol, out, progress=False, log=messages.append)
    runs = {r["algorithm"]: r for r in manifest["runs"]}
    assert runs["bc"]["status"] == "finished" and not runs["bc"]["retried"]
    assert runs["flaky_algos:FailsOnce"]["status"] == "finished" and runs["flaky_algos:FailsOnce"]["retried"]
    failed = runs["flaky_algos:AlwaysFails"]
    assert failed["status"] == "failed" and failed["retried"] and "this algorithm is broken" in failed["error"]
    assert any(m.startswith("FAILED flaky_algos:AlwaysFails") for m in messages)
    table = pd.read_csv(out / "results.csv")
    assert set(table.algorithm) == {"bc", "flaky_algos:FailsOnce"}


KILLED = '''
import os
import signal
from pathlib import Path

from baselines.bc import BC


class KilledOnce(BC):
    """Its process is killed (SIGKILL, as by the kernel's out-of-memory killer) on its first update."""
    marker = Path(__file__).with_name("killed_once")

    def update(self, batch):
        if not self.marker.exists():
            self.marker.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().update(batch)
'''


def test_a_killed_worker_fails_only_its_run_which_is_retried(tmp_path, catalogue, monkeypatch):
    pkg = tmp_path / "plugins"
    pkg.mkdir()
    (pkg / "killed_algos.py").write_text(KILLED)
    monkeypatch.syspath_prepend(str(pkg))  # spawned workers get this process's sys.path
    out = tmp_path / "results"
    messages = []
    manifest = reproduce(tiny_protocol(tmp_path, algorithms=("bc", "killed_algos:KilledOnce"), seeds=(0,)), out,
                         workers=2, progress=False, log=messages.append)
    runs = {r["algorithm"]: r for r in manifest["runs"]}
    assert runs["bc"]["status"] == "finished" and not runs["bc"]["retried"]
    assert runs["killed_algos:KilledOnce"]["status"] == "finished" and runs["killed_algos:KilledOnce"]["retried"]
    assert any("worker process died (exit code -9: killed by signal 9" in m for m in messages)
    assert set(pd.read_csv(out / "results.csv").algorithm) == {"bc", "killed_algos:KilledOnce"}


def test_when_every_run_fails_the_summary_names_the_runs_and_their_logs(tmp_path, catalogue, monkeypatch, capsys):
    pkg = tmp_path / "plugins"
    pkg.mkdir()
    (pkg / "flaky_algos.py").write_text(FLAKY)
    monkeypatch.syspath_prepend(str(pkg))
    out = tmp_path / "results"
    messages = []
    manifest = reproduce(tiny_protocol(tmp_path, algorithms=("flaky_algos:AlwaysFails",)), out, progress=False,
                         log=messages.append)
    assert [r["status"] for r in manifest["runs"]] == ["failed", "failed"]
    assert "2 of 2 runs failed" in "\n".join(messages)
    for run in manifest["runs"]:
        log = out / run["log"]
        assert log.parent == out / run["run_dir"]
        assert f"FAILED flaky_algos:AlwaysFails {DATASET} seed {run['seed']}: ValueError: this algorithm is broken" \
               f"\n  log: {log}" in messages
        text = log.read_text()  # the whole traceback, not only its last lines
        assert "Traceback (most recent call last)" in text and "in update" in text and "this algorithm is broken" in text
    # the report refuses, saying why, instead of a KeyError from an empty table
    with pytest.raises(OffbenchError, match="no finished runs to report .*seed 0: failed: ValueError: this algorithm"):
        from offbench.evaluation.report import build_report

        build_report(out)
    assert main(["report", str(out)]) == 2
    assert "no finished runs to report" in capsys.readouterr().err
    assert main(["reproduce", "t", "--protocol", str(tmp_path / "tiny.toml"), "--out", str(out), "--workers", "1", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert "every run failed" in captured.err and "Traceback" not in captured.err


def test_ray_backend_gives_the_same_table(tmp_path, catalogue):
    pytest.importorskip("ray")
    protocol = tiny_protocol(tmp_path)
    reproduce(protocol, tmp_path / "local", workers=2, progress=False, log=lambda _: None)
    manifest = reproduce(protocol, tmp_path / "ray", backend="ray", workers=2, progress=False, log=lambda _: None)
    assert manifest["backend"] == "ray"
    assert (tmp_path / "ray" / "results.csv").read_bytes() == (tmp_path / "local" / "results.csv").read_bytes()


def test_a_directory_refuses_a_different_protocol(tmp_path, catalogue):
    out = tmp_path / "results"
    reproduce(tiny_protocol(tmp_path, algorithms=("bc",), seeds=(0,)), out, progress=False, log=lambda _: None)
    other = tiny_protocol(tmp_path, algorithms=("bc",), seeds=(0,)).restricted()
    other.train["steps"] = 90
    with pytest.raises(OffbenchError, match="different protocol"):
        reproduce(other, out, progress=False, log=lambda _: None)


def test_headline_rules():
    scores = [10.0, 50.0, 20.0, 30.0]
    assert headline_score(scores, Headline("last")) == 30.0
    assert headline_score(scores, Headline("mean_last_n", 2)) == 25.0
    assert headline_score(scores, Headline("mean_last_n", 10)) == 27.5  # fewer evaluations than n: all


@pytest.mark.parametrize("raw, message", [
    ({"suite": "x", "seeds": 1, "datasets": [], "algorithms": []}, "missing field 'name'"),
    ({"name": "p", "suite": "x", "seeds": [0, 0], "datasets": [], "algorithms": []}, "distinct seeds"),
    ({"name": "p", "suite": "x", "seeds": 1, "datasets": [], "algorithms": [], "train": {"stepz": 3}},
     "unknown training settings"),
    ({"name": "p", "suite": "x", "seeds": 1, "datasets": [], "algorithms": [], "headline": {"kind": "best"}},
     "headline.kind"),
    ({"name": "p", "suite": "x", "seeds": 1, "datasets": [], "algorithms": [], "overrides": {"bc": {"sets": {}}}},
     "unknown keys"),
])
def test_bad_protocols_are_named(raw, message):
    with pytest.raises(OffbenchError, match=message):
        parse_protocol(raw)


def test_shipped_protocols_resolve_every_setting():
    from offbench.algorithm import load_algorithm_class, make_config

    for name in ("smoke", "lite", "full"):
        protocol = load_protocol(name)
        for algorithm in protocol.algorithms:
            make_config(load_algorithm_class(algorithm), protocol.settings(algorithm))
            assert protocol.train_config(algorithm, 0).steps > 0
    lite = load_protocol("lite")
    assert len(lite.algorithms) == 10 and len(lite.datasets) == 9 and lite.seeds == [0, 1, 2]


def test_cli_errors(tmp_path, capsys):
    assert main(["reproduce", "lite", "--protocol", "nope", "--out", str(tmp_path / "r")]) == 2
    assert "unknown protocol 'nope'" in capsys.readouterr().err
    assert main(["reproduce", "locomotion", "--protocol", "lite", "--out", str(tmp_path / "r")]) == 2
    assert "is for suite 'lite'" in capsys.readouterr().err
    assert main(["reproduce", "atari", "--out", str(tmp_path / "r")]) == 2
    assert "no shipped protocol for suite 'atari'" in capsys.readouterr().err
    # a dataset with neither a card nor a cached file is refused, by name, before anything is written
    # (not `reproduce locomotion`: with every locomotion card shipped, that starts the real full table)
    assert main(["reproduce", "lite", "--datasets", "lite/pendulum/nope-v0", "--out", str(tmp_path / "r"),
                 "--no-report"]) == 2
    assert "lite/pendulum/nope-v0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())  # nothing half-written


def test_locomotion_resolves_to_the_full_protocol_and_every_dataset_has_a_card():
    from offbench.data.catalogue import get_card
    from offbench.protocol import load_protocol

    full = load_protocol("full")
    assert full.suite == "locomotion"
    assert len(full.datasets) == 9  # medium, medium-replay, medium-expert of three tasks (D4RL's table)
    for dataset_id in full.datasets:
        card = get_card(dataset_id)
        assert card.id == dataset_id
