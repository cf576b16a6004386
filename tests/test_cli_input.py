"""The command line checks what the user typed before any work starts, and answers a mistake with
one clear line and a non-zero exit, never a traceback (issue 13, items 2 and 4)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from offbench.cli import main


def _refused(capsys, *argv) -> str:
    """Run the CLI in-process; it must exit non-zero with one ``offbench: error:`` line and no traceback."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own refusals (bad types) exit 2 with a usage line
        code = exc.code
    err = capsys.readouterr().err
    assert code not in (0, None), f"{argv} was accepted"
    assert "Traceback" not in err
    return err


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "plain-file"
    path.write_text("not a folder\n")
    return path


BAD_OUT_COMMANDS = {
    "train": ["train", "bc", "lite/pendulum/medium-v0", "--steps", "10"],
    "reproduce": ["reproduce", "lite", "--algos", "bc", "--datasets", "lite/pendulum/medium-v0", "--seeds", "1"],
    "report": ["report", "results-that-do-not-matter"],
    "leaderboard build": ["leaderboard", "build", "--entries", "leaderboard/entries"],
    "online train": ["online", "train", "sac", "--env", "Pendulum-v1", "--steps", "10"],
}


@pytest.mark.parametrize("command", sorted(BAD_OUT_COMMANDS))
@pytest.mark.parametrize("where", ["under-a-file", "in-proc"])
def test_unwritable_out_is_one_clear_line(command, where, a_file, capsys, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])  # the shipped entries and cards
    out = str(a_file / "sub") if where == "under-a-file" else "/proc/offbench-cannot-write-here"
    err = _refused(capsys, *BAD_OUT_COMMANDS[command], "--out", out)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("offbench: error:"), err
    assert out in lines[0] and "cannot write" in lines[0]


def test_unknown_algorithm_is_refused_before_any_dataset_is_built(tmp_path, capsys, isolated_home):
    err = _refused(capsys, "reproduce", "lite", "--algos", "iqll", "--out", str(tmp_path / "out"))
    assert "unknown algorithm 'iqll'" in err
    assert not (tmp_path / "out").exists(), "nothing may be written before the input is checked"
    assert not any(isolated_home.rglob("*.hdf5")), "no dataset may be built for a run that cannot start"


@pytest.mark.parametrize("argv, message", [
    (["reproduce", "lite", "--datasets", "lite/pendulum/mediun-v0"], "unknown dataset id 'lite/pendulum/mediun-v0'"),
    (["reproduce", "lite", "--seeds", "0"], "must be at least 1"),
    (["reproduce", "lite", "--workers", "0"], "must be at least 1"),
    (["reproduce", "lite", "--backend", "local", "--address", "ray://x:10001"], "needs --backend ray"),
    (["reproduce", "nosuchsuite"], "no shipped protocol for suite 'nosuchsuite'"),
    (["reproduce", "lite", "--protocol", "smoke-typo"], "unknown protocol 'smoke-typo'"),
    (["datasets", "build", "lite/pendulum/medium-v0", "--strict", "--allow-mismatch"], "contradict"),
    (["train", "bc", "lite/pendulum/medium-v0", "--steps", "0"], "must be at least 1"),
    (["train", "bc", "lite/pendulum/medium-v0", "--steps", "-5"], "must be at least 1"),
    (["train", "bc", "lite/pendulum/medium-v0", "--set", "eval_every=abc"], "eval_every='abc': expected int"),
    (["train", "bc", "lite/pendulum/medium-v0", "--set", "eval_every=0"], "eval_every=0: must be at least 1"),
    (["train", "iql", "lite/pendulum/medium-v0", "--set", "expectile=high"], "expectile='high': expected float"),
    (["train", "iql", "lite/pendulum/medium-v0", "--set", "expectilee=0.7"], "unknown IQL settings ['expectilee']"),
    (["eval", "some-run", "--episodes", "0"], "must be at least 1"),
    (["train", "bc", "lite/pendulum/medium-v0", "--device", "tpu"], "device 'tpu' is not a torch device"),
    (["train", "bc", "lite/pendulum/medium-v0", "--set", "device=gpu"], "device 'gpu' is not a torch device"),
    (["reproduce", "lite", "--device", "cuda:x"], "device 'cuda:x' is not a torch device"),
    (["reproduce", "meta", "--protocol", "lite"], "protocol 'lite' is for suite 'lite', not 'meta'"),
    (["reproduce", "meta", "--protocol", "smoke", "--algos", "pearl", "--datasets", "meta/gridnavi-v0"],
     "pearl runs on ['meta/cheetah-vel-v0', 'meta/point-robot-v0'] only"),
    (["reproduce", "meta", "--protocol", "smoke", "--datasets", "meta/gridnavy-v0"], "unknown meta benchmark"),
    pytest.param(["train", "bc", "lite/pendulum/medium-v0", "--device", "cuda"], "sees no CUDA device",
                 marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is present")),
    pytest.param(["reproduce", "lite", "--device", "cuda"], "sees no CUDA device",
                 marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA device is present")),
])
def test_bad_input_is_refused_up_front(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anything written by mistake would land here
    err = _refused(capsys, *argv)
    assert message in err, err
    assert not list(tmp_path.iterdir()), "nothing may be written before the input is checked"


def test_help_states_the_defaults():
    text = subprocess.run([sys.executable, "-m", "offbench.cli", "train", "--help"], capture_output=True,
                          text=True, check=True).stdout
    assert "default 100,000" in " ".join(text.split()) and "eval_every=10000" in text
