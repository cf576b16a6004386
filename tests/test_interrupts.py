"""Interrupts never hang or lose work (issue 13, item 1), checked with real signals.

Each test runs the ``offbench`` console script in its own session, waits until training has
demonstrably started (a row in ``metrics.jsonl``), then interrupts it as a user does: Ctrl-C in
a terminal (SIGINT to every process of the foreground group, workers included) or
``timeout -s INT`` (SIGINT to the main process, then to its whole group: the main process gets
it twice, a few microseconds apart).
The algorithm is BC slowed down by a sleep after each update, so the signal lands mid-run;
its numbers are BC's, so a run trained without the sleep is the reference.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from offbench.reproduce import ProgressBar, RunSpec, reproduce
from offbench.train import TrainConfig, train_run

OFFBENCH = str(Path(sys.executable).with_name("offbench"))
DATASET = "t/pendulum/random-v0"  # conftest's ``pendulum`` fixture builds it
SLOW = '''
import os
import time

from baselines.bc import BC


class SlowBC(BC):
    """BC, sleeping OFFBENCH_TEST_SLEEP seconds after every update (0 when unset)."""

    def update(self, batch):
        metrics = super().update(batch)
        time.sleep(float(os.environ.get("OFFBENCH_TEST_SLEEP", "0")))
        return metrics
'''
ALGO = "slow_algos:SlowBC"
SETTINGS = {"hidden": [16, 16]}
# no periodic checkpoint before step 10,000: a checkpoint in these runs is the interrupt's
TRAIN = {"steps": 300, "batch_size": 32, "log_every": 20, "eval_every": 150, "eval_episodes": 2,
         "final_eval_episodes": 2, "checkpoint_every": 10_000}


@pytest.fixture
def slow_algorithm(tmp_path, monkeypatch):
    """``slow_algos:SlowBC`` importable here and in subprocesses; returns the subprocess env."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow_algos.py").write_text(SLOW)
    monkeypatch.syspath_prepend(str(plugins))
    root = Path(__file__).resolve().parents[1]  # baselines/ is imported from the checkout
    path = os.pathsep.join([str(plugins), str(root), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def _default_sigint() -> None:
    """SIGINT's default disposition in the child: a test run started as a shell's background job
    (``pytest &``) ignores SIGINT, and an ignored SIGINT is inherited (Python then keeps it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(command: list[str], env: dict, sleep: float) -> subprocess.Popen:
    """``offbench COMMAND`` in a new session (so a group signal reaches it and its workers only),
    with SIGINT's default disposition whatever this process's is, as a terminal's command has."""
    return subprocess.Popen([OFFBENCH, *command], env={**env, "OFFBENCH_TEST_SLEEP": str(sleep)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)


@pytest.fixture
def python_sigint_handler():
    """Python's own SIGINT handler in this process for the test, as in a terminal (a background job's
    pytest starts with SIGINT ignored, and interrupt_requests then, rightly, changes nothing)."""
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def wait_for_rows(paths: list[Path], proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until every ``metrics.jsonl`` in ``paths`` has a row (training has started)."""
    deadline = time.monotonic() + timeout
    while not all(p.is_file() and p.read_text().strip() for p in paths):
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited ({proc.returncode}) before training started:\n{out}\n{err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"training did not start within {timeout} s")
        time.sleep(0.05)


def finish(proc: subprocess.Popen, timeout: float = 90.0) -> tuple[int, str, str]:
    """The exit status and output; fails (and kills the group) if the process hangs."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"still running {timeout} s after SIGINT (hung):\n{out}\n{err}")
    return proc.returncode, out, err


def interrupt(proc: subprocess.Popen, how: str) -> None:
    if how == "timeout -s INT":  # what coreutils timeout does, without --foreground
        proc.send_signal(signal.SIGINT)
        os.killpg(proc.pid, signal.SIGINT)
    else:  # Ctrl-C in a terminal
        assert how == "Ctrl-C"
        os.killpg(proc.pid, signal.SIGINT)


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # a zombie has exited; only its parent's wait is missing


def metric_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "steps_per_second"} for row in rows]


# ---------------------------------------------------------------------- offbench train
def test_sigint_becomes_a_request_a_duplicate_is_ignored_and_a_second_one_interrupts(python_sigint_handler):
    from offbench.train import DUPLICATE_SIGINT_SECONDS, interrupt_requests

    with interrupt_requests() as requested:
        assert not requested()
        os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode: no KeyboardInterrupt
        time.sleep(0.01)
        assert requested()
        os.kill(os.getpid(), signal.SIGINT)  # `timeout -s INT` delivers one interrupt twice
        time.sleep(0.01)
        time.sleep(DUPLICATE_SIGINT_SECONDS)
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C: stop at once
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_train_writes_a_checkpoint_and_the_rerun_resumes_exactly(pendulum, tmp_path,
                                                                                slow_algorithm):
    out = tmp_path / "run"
    command = ["train", ALGO, DATASET, "--steps", str(TRAIN["steps"]), "--out", str(out),
               *[a for k, v in TRAIN.items() if k != "steps" for a in ("--set", f"{k}={json.dumps(v)}")],
               "--set", f"hidden={json.dumps(SETTINGS['hidden'])}"]
    proc = start(command, slow_algorithm, sleep=0.02)
    wait_for_rows([out / "metrics.jsonl"], proc)
    interrupt(proc, "timeout -s INT")  # the second SIGINT is the same interrupt: still a checkpoint
    code, _, err = finish(proc)

    assert code == 130, err
    assert "Traceback" not in err
    step = json.loads((out / "checkpoint.json").read_text())["step"]
    assert TRAIN["log_every"] <= step < TRAIN["steps"]  # written by the interrupt, where it stopped
    assert f"stopped at step {step} of {TRAIN['steps']}; checkpoint written" in err
    before = (out / "metrics.jsonl").read_text().splitlines()
    assert before and all(json.loads(line)["step"] <= step for line in before)

    # the same command again (in this process, to save a start-up): it resumes at the checkpoint
    train_run(ALGO, pendulum, SETTINGS, TrainConfig(**TRAIN), out, progress=False)
    after = (out / "metrics.jsonl").read_text().splitlines()
    assert after[:len(before)] == before  # the rows up to the checkpoint are kept as they were
    steps = [json.loads(line)["step"] for line in after]
    assert steps == list(range(20, 301, 20))  # every row once

    # bit-identical to a run that was never interrupted: parameters, optimiser, RNG states, rows
    straight = tmp_path / "straight"
    train_run(ALGO, pendulum, SETTINGS, TrainConfig(**TRAIN), straight, progress=False)
    a, b = load_file(str(straight / "checkpoint.safetensors")), load_file(str(out / "checkpoint.safetensors"))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    assert without_timing(metric_rows(out / "metrics.jsonl")) == without_timing(metric_rows(straight / "metrics.jsonl"))
    assert metric_rows(out / "evaluations.jsonl") == metric_rows(straight / "evaluations.jsonl")


def test_a_rerun_without_a_checkpoint_rewrites_rows_instead_of_duplicating_them(pendulum, tmp_path, slow_algorithm):
    """A run killed before its first checkpoint (and mid-write) starts again from step 0."""
    out = tmp_path / "run"
    config = TrainConfig(**TRAIN)

    def killed(step):
        if step == 70:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        train_run(ALGO, pendulum, SETTINGS, config, out, progress=False, on_step=killed)
    assert not (out / "checkpoint.json").exists()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 80, "loss": 0.')  # a row cut short by the kill
    train_run(ALGO, pendulum, SETTINGS, config, out, progress=False)
    assert [r["step"] for r in metric_rows(out / "metrics.jsonl")] == list(range(20, 301, 20))
    assert [r["step"] for r in metric_rows(out / "evaluations.jsonl")] == [150, 300]


def test_a_kill_between_the_checkpoint_files_resumes_with_the_tensors_own_step(tmp_path):
    """The tensors are renamed into place before the JSON: a kill in between leaves the JSON of
    the previous checkpoint, and loading must not pair it with the newer tensors."""
    import torch

    from offbench.checkpoint import load_checkpoint, save_checkpoint

    module = torch.nn.Linear(2, 2)
    save_checkpoint(tmp_path / "checkpoint", modules={"m": module}, extra={"step": 10})
    earlier_json = (tmp_path / "checkpoint.json").read_text()
    with torch.no_grad():
        module.weight.add_(1.0)
    save_checkpoint(tmp_path / "checkpoint", modules={"m": module}, extra={"step": 20})
    (tmp_path / "checkpoint.json").write_text(earlier_json)  # as if killed before the JSON's rename
    restored = torch.nn.Linear(2, 2)
    assert load_checkpoint(tmp_path / "checkpoint", modules={"m": restored})["step"] == 20
    assert restored.weight.equal(module.weight)


# ---------------------------------------------------------------------- offbench reproduce
def write_protocol(tmp_path: Path, seeds=(0, 1)) -> Path:
    path = tmp_path / "slow.toml"
    path.write_text(textwrap.dedent(f"""\
        name = "slow"
        suite = "t"
        seeds = {list(seeds)}
        datasets = ["{DATASET}"]
        algorithms = ["{ALGO}"]
        [train]
        {chr(10).join(f"{k} = {v}" for k, v in TRAIN.items())}
        [headline]
        kind = "last"
        [overrides."{ALGO}"]
        settings = {{ hidden = {SETTINGS['hidden']} }}
        """))
    return path


@pytest.mark.parametrize("how, workers", [("timeout -s INT", 2), ("Ctrl-C", 2), ("Ctrl-C", 1)])
def test_one_ctrl_c_stops_reproduce_cleanly_and_it_resumes_to_the_uninterrupted_table(
        pendulum, tmp_path, slow_algorithm, how, workers):
    """Either way: exit 130, no traceback, no worker left running, a checkpoint where each
    running run stopped, the manifest and table written; and the same command again finishes
    the table exactly as an uninterrupted reproduce does."""
    protocol_path, out = write_protocol(tmp_path), tmp_path / "results"
    proc = start(["reproduce", "t", "--protocol", str(protocol_path), "--out", str(out), "--workers", str(workers),
                  "--no-report"], slow_algorithm, sleep=0.02)
    runs = [out / "runs" / "slow_algos_SlowBC" / "t__pendulum__random-v0" / f"seed{s}" for s in (0, 1)]
    started = runs[:workers]  # one run at a time with one worker
    wait_for_rows([run / "metrics.jsonl" for run in started], proc)
    worker_pids = children(proc.pid)
    assert len(worker_pids) >= workers - 1  # the pool's processes (none with one worker)
    interrupt(proc, how)
    code, out_text, err = finish(proc)

    assert code == 130, err
    assert "Traceback" not in err + out_text
    assert err.rstrip().endswith("offbench: interrupted")
    deadline = time.monotonic() + 10
    while not all(gone(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(pid) for pid in worker_pids), "a worker outlived the interrupted reproduce"
    for run in started:  # each running run stopped at a step boundary and checkpointed there
        step = json.loads((run / "checkpoint.json").read_text())["step"]
        assert TRAIN["log_every"] <= step < TRAIN["steps"]
        assert all(r["step"] <= step for r in metric_rows(run / "metrics.jsonl"))
    assert json.loads((out / "manifest.json").read_text())["runs"] == []  # none finished, none failed
    assert (out / "results.csv").is_file()

    # the same schedule again (in this process, to save a start-up) resumes and finishes the table
    from offbench.protocol import load_protocol

    messages = []
    reproduce(load_protocol(protocol_path), out, progress=False, log=messages.append)
    assert "0 finished earlier, 2 to run now" in messages[0]
    reference = tmp_path / "reference"
    reproduce(load_protocol(protocol_path), reference, progress=False, log=lambda _: None)
    assert (out / "results.csv").read_bytes() == (reference / "results.csv").read_bytes()
    for run in runs:
        assert without_timing(metric_rows(run / "metrics.jsonl")) == \
            without_timing(metric_rows(reference / run.relative_to(out) / "metrics.jsonl"))


# ---------------------------------------------------------------------- the progress bar
def test_the_bar_moves_with_training_steps_and_counts_runs(tmp_path, capsys):
    from offbench.protocol import load_protocol

    protocol = load_protocol(write_protocol(tmp_path, seeds=(0, 1, 2)))
    specs = [RunSpec(ALGO, DATASET, s, protocol, tmp_path / f"seed{s}") for s in (0, 1, 2)]
    bar = ProgressBar(specs[:2], runs=3, finished=1, enabled=True)  # seed 2 finished in an earlier call
    cost = specs[0].step_cost
    assert bar.bar.total == 2 * 300 * cost
    bar.start(specs[0], 0)
    bar.start(specs[1], 100)  # resumed: its first 100 steps are not this call's work
    assert bar.bar.total == (300 + 200) * cost
    bar.step(specs[0], 150)
    bar.step(specs[1], 200)
    assert bar.bar.n == (150 + 100) * cost  # 50 %
    text = str(bar.bar)
    assert " 50%" in text and text.endswith(", 1/3 runs done, 2 running]"), text
    bar.end(specs[1], "failed")  # gave up at step 200: its last 100 steps leave the total
    bar.end(specs[0], "finished")
    assert bar.bar.n == bar.bar.total == (300 + 100) * cost
    assert str(bar.bar).endswith(", 2/3 runs done, 1 failed]")
    bar.close()
    assert " , " not in capsys.readouterr().err
