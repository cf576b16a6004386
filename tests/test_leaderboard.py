"""The leaderboard: submit from a results directory, validation of bad entries, build, verify."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

import offbench.protocol
from offbench.data.catalogue import get_card
from offbench.errors import OffbenchError

DATASETS = ["lite/pendulum/medium-replay-v0", "lite/pendulum/medium-v0"]
TINY_PROTOCOL = """
name = "tiny"
suite = "lite"
description = "a two-dataset test protocol"
seeds = [0, 1, 2]
datasets = ["lite/pendulum/medium-replay-v0", "lite/pendulum/medium-v0"]
algorithms = ["bc", "iql"]

[train]
steps = 20
eval_every = 10
eval_episodes = 3
final_eval_episodes = 4

[headline]
kind = "mean_last_n"
n = 2
"""


@pytest.fixture
def protocols(tmp_path, monkeypatch):
    """A shipped-protocol directory holding only ``tiny``."""
    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "tiny.toml").write_text(TINY_PROTOCOL)
    monkeypatch.setattr(offbench.protocol, "PROTOCOL_DIR", folder)
    return folder


def write_results(root: Path, *, algorithms=("bc", "iql"), quality=None, seeds=(0, 1, 2)) -> Path:
    """A synthetic ``offbench reproduce`` directory under protocol ``tiny`` with plausible returns."""
    import pandas as pd

    quality = quality or {"bc": 0.4, "iql": 0.6}
    root.mkdir(parents=True, exist_ok=True)
    (root / "protocol.toml").write_text(TINY_PROTOCOL)
    rows, runs = [], []
    for a, algo in enumerate(algorithms):
        for d, dataset in enumerate(DATASETS):
            ref = get_card(dataset).reference_scores
            lo, hi = ref["random"], ref["expert"]
            for seed in seeds:
                rng = np.random.default_rng(1000 * a + 100 * d + seed)
                run_dir = f"runs/{algo}/{dataset.replace('/', '__')}/seed{seed}"
                for step, episodes in ((10, 3), (20, 4)):
                    target = lo + (hi - lo) * (quality[algo] + 0.05 * step / 20 + 0.02 * seed)
                    returns = [round(float(r), 6) for r in target + rng.normal(0, 20, episodes)]
                    scores = [100 * (r - lo) / (hi - lo) for r in returns]
                    rows.append({"algorithm": algo, "dataset": dataset, "suite": "lite", "env_id": "Pendulum-v1",
                                 "seed": seed, "step": step, "final": step == 20, "episodes": episodes,
                                 "eval_seed": 50_000_000 + step, "return_mean": float(np.mean(returns)),
                                 "return_stderr": float(np.std(returns, ddof=1) / math.sqrt(episodes)),
                                 "normalized_score": float(np.mean(scores)), "success_rate": None,
                                 "returns": json.dumps(returns), "run_dir": run_dir})
                runs.append({"key": [algo, dataset, seed], "algorithm": algo, "dataset": dataset, "seed": seed,
                             "status": "finished", "error": None, "run_dir": run_dir})
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    manifest = {"suite": "lite", "protocol": "tiny", "algorithms": list(algorithms), "datasets": DATASETS,
                "seeds": list(seeds), "backend": "local", "workers": 1, "git_commit": "a" * 40,
                "offbench_version": "0.1.0", "dataset_sha256": {d: get_card(d).sha256 for d in DATASETS},
                "wall_time_seconds": 12.5, "run_seconds_total": 20.0, "runs": runs}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def cli(argv: list[str]) -> int:
    from offbench.cli import main

    return main(argv)


@pytest.fixture
def board(tmp_path, protocols):
    """A board directory with entries for bc and iql, submitted through the CLI."""
    results = write_results(tmp_path / "results")
    board = tmp_path / "board"
    (board / "entries").mkdir(parents=True)
    for algo in ("bc", "iql"):
        assert cli(["leaderboard", "submit", str(results), "--name", f"offbench-{algo}", "--algo", algo,
                    "--authors", "offbench team", "--paper", "https://example.org/paper",
                    "--out", str(board / "entries" / f"offbench-{algo}.json")]) == 0
    return board


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------- the happy path
def test_submit_validate_build(board, capsys):
    entry = json.loads((board / "entries" / "offbench-iql.json").read_text())
    assert entry["schema_version"] == 1 and entry["protocol"]["name"] == "tiny"
    assert len(entry["runs"]) == 6 and entry["hyperparameter_selection"] == {"kind": "offline"}
    run = entry["runs"][0]
    assert run["dataset_sha256"] == get_card(run["dataset"]).sha256
    assert [(ev["step"], ev["episodes"]) for ev in run["evaluations"]] == [(10, 3), (20, 4)]
    assert cli(["leaderboard", "validate", str(board / "entries" / "offbench-iql.json"),
                "--entries", str(board / "entries")]) == 0
    assert cli(["leaderboard", "build", "--out", str(board)]) == 0
    readme = (board / "README.md").read_text()
    assert "[SCHEMA.md](SCHEMA.md)" in readme and "offbench\\-iql" not in readme
    assert readme.index("| 1 | offbench-iql") < readme.index("| 2 | offbench-bc")  # iql is better: ranked first
    index = (board / "site" / "index.html").read_text()
    assert 'data-entry="offbench-iql"' in index and 'data-entry="offbench-bc"' in index
    figures = sorted(p.name for p in (board / "site" / "figures").iterdir())
    assert figures == ["lite--tiny-datasets.svg", "lite--tiny-iqm.svg"]


def test_scores_are_recomputed_from_raw_returns(board):
    from offbench.leaderboard.build import load_entries, make_groups
    from offbench.protocol import Headline, headline_score

    (group,) = make_groups(load_entries(board / "entries"))
    entry, scores = next(row for row in group.rows if row[0]["name"] == "offbench-bc")
    ref = get_card(DATASETS[0]).reference_scores
    run = next(r for r in entry["runs"] if r["dataset"] == DATASETS[0] and r["seed"] == 1)
    per_eval = [np.mean([100 * (x - ref["random"]) / (ref["expert"] - ref["random"]) for x in ev["returns"]])
                for ev in run["evaluations"]]
    expected = headline_score(per_eval, Headline("mean_last_n", 2))
    assert scores.datasets[DATASETS[0]].scores[1] == pytest.approx(expected)
    matrix = np.array([scores.datasets[d].scores for d in DATASETS]).T
    from scipy.stats import trim_mean

    assert scores.iqm == pytest.approx(trim_mean(matrix, 0.25, axis=None))
    assert scores.ci[0] <= scores.iqm <= scores.ci[1]


def test_build_is_deterministic(board, tmp_path):
    from offbench.leaderboard.build import build_board

    build_board(board / "entries", board)
    first = snapshot(board)
    other = tmp_path / "other"
    build_board(board / "entries", other)
    build_board(board / "entries", board)
    assert snapshot(board) == first
    assert {k: v for k, v in snapshot(other).items()} == {k: v for k, v in first.items() if not k.startswith("entries")}
    svg = (board / "site" / "figures" / "lite--tiny-iqm.svg").read_text()
    assert "<dc:date>" not in svg


def test_no_entries_is_an_error(tmp_path, protocols):
    from offbench.leaderboard.build import build_board

    (tmp_path / "entries").mkdir()
    with pytest.raises(OffbenchError, match="holds no entries"):
        build_board(tmp_path / "entries", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # tests/test_board_layout.py: an existing board is kept


def test_online_selection_and_links(tmp_path, protocols):
    results = write_results(tmp_path / "results", algorithms=("bc",))
    out = tmp_path / "entries" / "mine.json"
    assert cli(["leaderboard", "submit", str(results), "--name", "mine", "--selection", "online:5 configs x 10 episodes",
                "--code", "https://example.org/code", "--out", str(out)]) == 0
    entry = json.loads(out.read_text())
    assert entry["hyperparameter_selection"] == {"kind": "online", "budget": "5 configs x 10 episodes"}
    assert entry["algorithm"]["import_path"] == "bc"
    assert cli(["leaderboard", "submit", str(results), "--name", "x", "--selection", "sometimes",
                "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------------- rejected entries
def _mutate(entry: dict, change) -> dict:
    entry = json.loads(json.dumps(entry))
    change(entry)
    return entry


def _set_return(value):
    def change(entry):
        entry["runs"][0]["evaluations"][0]["returns"][0] = value
    return change


BAD_ENTRIES = {
    "unknown schema version": (lambda e: e.update(schema_version=99), "schema_version", "unknown schema version"),
    "missing seeds": (lambda e: e["runs"].pop(), "runs", "missing"),
    "string score": (_set_return("12.5"), "runs[0].evaluations[0].returns[0]", "must be a number"),
    "implausible score": (_set_return(1e12), "runs[0].evaluations[0].returns[0]", "implausible"),
    "unknown dataset": (lambda e: e["runs"][0].update(dataset="lite/pendulum/imaginary-v0"), "runs[0].dataset",
                        "unknown dataset"),
    "sha256 mismatch": (lambda e: e["runs"][0].update(dataset_sha256="0" * 64), "runs[0].dataset_sha256",
                        "does not match"),
    "script in name": (lambda e: e.update(name="<script>alert(1)</script>"), "name", "names must match"),
    "path traversal in name": (lambda e: e.update(name="../../etc/passwd"), "name", "names must match"),
    "dots in name": (lambda e: e.update(name="a..b"), "name", ".."),
    "javascript link": (lambda e: e.update(paper="javascript:alert(1)"), "paper", "http(s) URL"),
    "wrong gradient steps": (lambda e: e["runs"][0].update(gradient_steps=19), "runs[0].gradient_steps", "20"),
    "wrong episodes": (lambda e: e["runs"][0]["evaluations"][1].update(episodes=3, returns=[-300.0] * 3),
                       "runs[0].evaluations[1]", "(20, 4)"),
    "unknown protocol": (lambda e: e["protocol"].update(name="nope"), "protocol.name", "unknown protocol"),
    "unknown field": (lambda e: e.update(iqm=99.0), "iqm", "unknown field"),
    "boolean seed": (lambda e: e["runs"][0].update(seed=True), "runs[0].seed", "integer"),
}


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_bad_entries_are_rejected(case, board, tmp_path, capsys):
    change, field, problem = BAD_ENTRIES[case]
    entry = json.loads((board / "entries" / "offbench-bc.json").read_text())
    bad = tmp_path / "incoming" / "bad.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps(_mutate(entry, change)))
    before = snapshot(board)
    code = cli(["leaderboard", "validate", str(bad), "--entries", str(board / "entries")])
    err = capsys.readouterr().err
    assert code == 2
    assert str(bad) in err and f"[{field}]" in err and problem in err and "what to do:" in err
    # the same entry inside the board makes build fail without writing anything
    target = board / "entries" / "zz-bad.json"
    target.write_text(json.dumps(_mutate(entry, lambda e: (change(e), e.update(name=e["name"] if case in (
        "script in name", "path traversal in name", "dots in name") else "zz-bad")))))
    assert cli(["leaderboard", "build", "--out", str(board)]) == 2
    target.unlink()
    assert snapshot(board) == before


@pytest.mark.parametrize("text, problem", [
    ('{"schema_version": 1, "name": "x",}', "malformed JSON at line 1"),
    ('{"schema_version": 1, "runs": [NaN]}', "NaN is not allowed"),
    ('{"schema_version": 1, "runs": [Infinity]}', "Infinity is not allowed"),
    ('[1, 2]', "an entry is a JSON object"),
])
def test_unparseable_entries(text, problem, tmp_path, protocols, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    assert cli(["leaderboard", "validate", str(bad), "--entries", str(tmp_path / "entries")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and problem in err and "what to do:" in err


def test_nan_and_inf_in_real_entry(board, tmp_path, capsys):
    text = (board / "entries" / "offbench-bc.json").read_text()
    entry = json.loads(text)
    for literal in ("NaN", "-Infinity"):
        value = entry["runs"][0]["evaluations"][0]["returns"][0]
        bad = tmp_path / f"bad-{literal}.json"
        bad.write_text(text.replace(json.dumps(value), literal, 1))
        assert cli(["leaderboard", "validate", str(bad), "--entries", str(board / "entries")]) == 2
        assert f"{literal.lstrip('-')} is not allowed" in capsys.readouterr().err


def test_oversized_entry(board, tmp_path, capsys):
    from offbench.leaderboard.schema import MAX_ENTRY_BYTES

    bad = tmp_path / "big.json"
    bad.write_text((board / "entries" / "offbench-bc.json").read_text() + " " * MAX_ENTRY_BYTES)
    assert cli(["leaderboard", "validate", str(bad), "--entries", str(board / "entries")]) == 2
    err = capsys.readouterr().err
    assert "over the 5,242,880-byte limit" in err and str(bad) in err


def test_duplicate_name(board, tmp_path, capsys):
    before = snapshot(board)
    copy = tmp_path / "copy.json"
    entry = json.loads((board / "entries" / "offbench-bc.json").read_text())
    entry["name"] = "OFFBENCH-BC"  # names are unique regardless of case
    copy.write_text(json.dumps(entry))
    assert cli(["leaderboard", "validate", str(copy), "--entries", str(board / "entries")]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "offbench-bc.json" in err and "[name]" in err
    # submitting under an existing name writes nothing
    results = write_results(tmp_path / "results", algorithms=("bc",))
    assert cli(["leaderboard", "submit", str(results), "--name", "offbench-bc",
                "--out", str(board / "entries" / "other.json")]) == 2
    assert "already exists" in capsys.readouterr().err
    # nor does a file renamed into the board under a second name
    (board / "entries" / "twin.json").write_text(json.dumps({**entry, "name": "offbench-iql"}))
    assert cli(["leaderboard", "build", "--out", str(board)]) == 2
    (board / "entries" / "twin.json").unlink()
    assert snapshot(board) == before


def test_submit_rejects_traversal_and_incomplete_results(tmp_path, protocols, capsys):
    results = write_results(tmp_path / "results", algorithms=("bc",), seeds=(0, 1))
    entries = tmp_path / "entries"
    entries.mkdir()
    assert cli(["leaderboard", "submit", str(results), "--name", "../evil", "--out", str(entries / "e.json")]) == 2
    assert "names must match" in capsys.readouterr().err
    assert cli(["leaderboard", "submit", str(results), "--name", "partial", "--out", str(entries / "p.json")]) == 2
    err = capsys.readouterr().err
    assert "[runs]" in err and "seed 2" in err and "offbench reproduce" in err
    assert list(entries.iterdir()) == [] and not (tmp_path / "evil.json").exists()


def test_injection_is_rendered_as_text(board):
    from offbench.leaderboard.build import build_board

    path = board / "entries" / "offbench-bc.json"
    entry = json.loads(path.read_text())
    entry["authors"] = ["<script>window.__pwned = 1</script>", "Eve <img src=x onerror=alert(1)>"]
    entry["algorithm"]["name"] = "BC</td><script>alert(2)</script> | [x](javascript:alert(3))"
    entry["config"] = {"note": "</pre><script>alert(4)</script>"}
    path.write_text(json.dumps(entry))
    build_board(board / "entries", board)
    index = (board / "site" / "index.html").read_text()
    readme = (board / "README.md").read_text()
    assert index.count("<script>") == 1  # the page's own sorting script only
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in index
    assert "<img src=x" not in index and "<img src=x" not in readme and "<script>" not in readme
    assert "](javascript:" not in readme


def test_script_json_is_safe():
    from offbench.leaderboard.site import script_json

    text = script_json({"name": "</script><!-- \u2028 & >"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"name": "</script><!-- \u2028 & >"}


def test_bootstrap_interval():
    """The interval is a stratified bootstrap: resampling runs within each task."""
    from offbench.leaderboard.scoring import bootstrap_ci, iqm

    rng = np.random.default_rng(0)
    matrix = rng.normal(50, 10, (5, 4))
    low, high = bootstrap_ci(matrix)
    assert low < iqm(matrix) < high
    assert bootstrap_ci(matrix) == (low, high)  # fixed seed
    constant = np.full((3, 2), 7.0)
    assert bootstrap_ci(constant) == (7.0, 7.0)


def test_verify_interval_definition():
    from offbench.leaderboard.scoring import DatasetScores

    ds = DatasetScores("d", True, [0, 1, 2], [10.0, 20.0, 15.0], [1.0, 3.0, 2.0])
    assert ds.interval() == (10.0 - 6.0, 20.0 + 6.0)


def test_verify_sampling_is_seeded():
    from offbench.leaderboard.verify import sample_pairs

    entry = {"runs": [{"dataset": d, "seed": s} for d in ("a", "b", "c") for s in range(3)]}
    assert sample_pairs(entry, 3, seed=1) == sample_pairs(entry, 3, seed=1)
    assert len(set(sample_pairs(entry, 3, seed=1))) == 3
    assert len(sample_pairs(entry, 50)) == 9


def test_verify_needs_confirmation(board, monkeypatch, capsys):
    """Without --yes and without a terminal, verify prints what it would run and runs nothing."""
    import offbench.reproduce

    monkeypatch.setattr(offbench.reproduce, "execute_run", lambda spec: pytest.fail("ran without confirmation"))
    monkeypatch.setattr("sys.stdin", open(os.devnull))
    assert cli(["leaderboard", "verify", str(board / "entries" / "offbench-bc.json"), "--seeds", "2"]) == 2
    captured = capsys.readouterr()
    assert "baselines.bc:BC" in captured.out and "module file:" in captured.out and "commit:" in captured.out
    assert "--yes" in captured.err


# ---------------------------------------------------------------------- verify, for real
def _toy_pendulum(path: Path, dataset_id: str) -> None:
    """A small Pendulum dataset stored under a catalogue id (verify does not need the real file)."""
    import gymnasium as gym

    from offbench.data.writer import DatasetWriter

    card = get_card(dataset_id)
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with DatasetWriter(path, dataset_id=dataset_id, env_id="Pendulum-v1", observation_space=env.observation_space,
                       action_space=env.action_space, reference_scores={
                           "random": card.reference_scores["random"], "expert": card.reference_scores["expert"]}) as w:
        for episode in range(2):
            obs, _ = env.reset(seed=episode)
            observations, actions, rewards = [obs], [], []
            for _ in range(50):
                action = rng.uniform(-2, 2, (1,)).astype(np.float32)
                obs, reward, *_ = env.step(action)
                observations.append(obs)
                actions.append(action)
                rewards.append(reward)
            ends = np.zeros(50, bool)
            ends[-1] = True
            w.add_episode(observations=np.array(observations, np.float32), actions=np.array(actions),
                          rewards=np.array(rewards, np.float32), terminations=np.zeros(50, bool), truncations=ends)


VERIFY_PROTOCOL = """
name = "vsmoke"
suite = "lite"
seeds = [0, 1]
datasets = ["lite/pendulum/medium-replay-v0"]
algorithms = ["bc"]

[train]
steps = 4
eval_every = 2
eval_episodes = 1
final_eval_episodes = 2
batch_size = 16
log_every = 2
checkpoint_every = 4

[headline]
kind = "last"
"""


def test_verify_reruns_a_real_entry(tmp_path, monkeypatch, isolated_home, capsys):
    from offbench.data.catalogue import cached_path
    from offbench.protocol import load_protocol
    from offbench.reproduce import reproduce

    reproduce_api = pytest.importorskip("offbench.reproduce")
    if not hasattr(reproduce_api, "execute_run"):
        pytest.skip("offbench.reproduce.execute_run is not there yet")
    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "vsmoke.toml").write_text(VERIFY_PROTOCOL)
    monkeypatch.setattr(offbench.protocol, "PROTOCOL_DIR", folder)
    dataset = "lite/pendulum/medium-replay-v0"
    _toy_pendulum(cached_path(dataset), dataset)
    results = tmp_path / "results"
    reproduce(load_protocol("vsmoke"), results, progress=False, log=lambda _: None)
    manifest = json.loads((results / "manifest.json").read_text())
    assert all(r["status"] == "finished" for r in manifest["runs"]), manifest["runs"]
    manifest["dataset_sha256"][dataset] = get_card(dataset).sha256  # the toy file stands in for the real one
    (results / "manifest.json").write_text(json.dumps(manifest))
    for config in results.glob("runs/*/*/*/config.json"):
        info = json.loads(config.read_text())
        info["dataset"]["content_sha256"] = get_card(dataset).content_sha256
        config.write_text(json.dumps(info))
    entry_path = tmp_path / "entries" / "bc-smoke.json"
    assert cli(["leaderboard", "submit", str(results), "--name", "bc-smoke", "--out", str(entry_path)]) == 0
    capsys.readouterr()
    assert cli(["leaderboard", "verify", str(entry_path), "--seeds", "1", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "module file:" in out and "ok   lite/pendulum/medium-replay-v0" in out and "verified" in out
    # an entry claiming far better returns than its code gives is caught
    entry = json.loads(entry_path.read_text())
    for run in entry["runs"]:
        for ev in run["evaluations"]:
            ev["returns"] = [-160.0] * len(ev["returns"])  # expert-level, every episode
    entry_path.write_text(json.dumps(entry))
    assert cli(["leaderboard", "verify", str(entry_path), "--seeds", "1", "--yes"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_make_baseline_entries_script(tmp_path, protocols, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_baseline_entries",
                                                  Path(__file__).parents[1] / "scripts" / "make_baseline_entries.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    results = write_results(tmp_path / "results")
    out = tmp_path / "board"
    assert script.main([str(results), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "entries").iterdir()) == ["offbench-bc.json", "offbench-iql.json"]
    assert "offbench-iql" in (out / "README.md").read_text()
    assert script.main([str(results), "--out", str(out)]) == 2  # exists: needs --replace
    assert "--replace" in capsys.readouterr().err
    assert script.main([str(results), "--out", str(out), "--replace"]) == 0
