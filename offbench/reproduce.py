"""``offbench reproduce``: run a protocol's algorithm x dataset x seed grid and collect the results.

The schedule is resumable by construction: each run is an ``offbench train`` run directory
(``RESULTS_DIR/runs/ALGO/DATASET_SLUG/seedS``), a finished one is skipped and an interrupted one
resumes from its checkpoint to exactly the parameters of an uninterrupted run. A crashed run
is retried once; failures are recorded in ``manifest.json`` (the full traceback in the run's
``error.log``) and never take the other runs down. Runs execute on a local process pool
(default, one torch thread per worker) or on Ray; every run is seeded and single-threaded, so
both backends give the same numbers. See docs/evaluation.md.

Interrupts: one Ctrl-C (SIGINT) stops everything, leaves resumable state and raises
``KeyboardInterrupt`` (the CLI exits 130). In a terminal SIGINT reaches the whole process group;
``timeout -s INT`` sends it to the main process and then to its group (so the main process may
get it twice); ``kill -INT`` to the main process only. Pool workers therefore ignore SIGINT (from
the moment they start) and the main process alone decides: its handler
(:func:`offbench.train.interrupt_requests`) only sets a request, which the backend polls. The
pool then asks every worker that has trained since its run started to stop at the end of its
current step and write a checkpoint there (up to ``STOP_GRACE_SECONDS``); the others have
nothing to save and are terminated, as is whatever is left at the end (killed if it does not
exit). The manifest and results table are saved either way. A second Ctrl-C skips the wait.
With one worker the run trains in the main process and stops the same way. The progress bar
moves with the training steps the workers report (see :class:`ProgressBar`).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from collections import deque
from contextlib import contextmanager
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from offbench.atomic import write_atomic
from offbench.errors import OffbenchError
from offbench.evaluation.results import dataset_slug, evaluation_rows, write_results_csv
from offbench.protocol import Protocol, schedule_difference, write_protocol

# Rough cost of one gradient step relative to BC at lite sizes (measured on this machine), so the
# pool starts the longest runs first and the progress bar's ETA means something.
RELATIVE_STEP_COST = {"bc": 1.0, "percent_bc": 1.0, "awr": 2.0, "td3_bc": 2.0, "awac": 2.5, "iql": 2.5,
                      "cql": 12.0, "dt": 25.0, "mopo": 6.0, "combo": 14.0,
                      # the goal suite at the `goal` protocol's sizes (2x128, batch 256; CPU time per step)
                      "gcbc": 1.0, "gcivl": 5.5, "gciql": 7.0, "qrl": 16.0, "crl": 11.0, "hiql": 11.0,
                      # the skills suite, per training episode (50 environment steps and updates) at its
                      # methods' default sizes (docs/skills.md, "Measured")
                      "diayn": 220.0, "metra": 230.0, "dads": 950.0, "rnd": 300.0, "random": 3.0}
STOP_GRACE_SECONDS = 15.0  # how long an interrupted pool waits for its workers' checkpoints
PROGRESS_SECONDS = 0.5  # how often a worker reports its training step
ETA_AFTER_SECONDS = 3.0  # of training, before the progress bar shows an ETA
EXIT_SECONDS = 5.0  # how long an idle worker may take to exit before it is terminated


@dataclass
class RunSpec:
    algorithm: str
    dataset: str
    seed: int
    protocol: Protocol
    run_dir: Path
    device: str = "cpu"  # TrainConfig.device of the run (not part of the protocol: results do not depend on it)

    @property
    def key(self) -> tuple[str, str, int]:
        return self.algorithm, self.dataset, self.seed

    @property
    def steps(self) -> int:
        return self.protocol.train_config(self.algorithm, self.seed).steps

    @property
    def step_cost(self) -> float:
        return RELATIVE_STEP_COST.get(self.algorithm, 5.0)

    @property
    def cost(self) -> float:
        return self.steps * self.step_cost

    @property
    def log_path(self) -> Path:
        """Where a failed run's full traceback goes."""
        return self.run_dir / "error.log"


def algorithm_dirname(algorithm: str) -> str:
    return algorithm.replace(":", "_").replace("/", "_")


def plan(protocol: Protocol, results_dir: Path, device: str = "cpu") -> list[RunSpec]:
    """Every (algorithm, dataset, seed) of the protocol, longest first."""
    specs = [RunSpec(a, d, s, protocol, results_dir / "runs" / algorithm_dirname(a) / dataset_slug(d) / f"seed{s}",
                     device)
             for a in protocol.algorithms for d in protocol.datasets_for(a) for s in protocol.seeds]
    return sorted(specs, key=lambda spec: -spec.cost)


def is_finished(spec: RunSpec) -> bool:
    summary = spec.run_dir / "summary.json"
    if not summary.is_file():
        return False
    try:
        return json.loads(summary.read_text()).get("final_step") == spec.steps
    except (OSError, json.JSONDecodeError):
        return False


def _checkpoint_step(spec: RunSpec) -> int:
    """The step a run resumes from (0 without a checkpoint)."""
    try:
        return int(json.loads((spec.run_dir / "checkpoint.json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _rows(spec: RunSpec, dataset) -> list[dict]:
    return evaluation_rows(spec.run_dir, algorithm=spec.algorithm, dataset=spec.dataset, suite=spec.protocol.suite,
                           env_id=dataset.metadata.env_id, seed=spec.seed, final_step=spec.steps,
                           results_dir=spec.run_dir.parents[3])


def failed_result(spec: RunSpec, error: str, log_text: str, seconds: float = 0.0) -> dict:
    """The result of a failed run; its full log goes to ``spec.log_path``."""
    try:
        write_atomic(spec.log_path, f"{spec.algorithm} {spec.dataset} seed {spec.seed} failed\n\n{log_text}\n")
        log = str(spec.log_path)
    except OSError:  # e.g. the disk is full: the manifest still has the error
        log = None
    return {"key": list(spec.key), "status": "failed", "error": error, "log": log, "skipped": False,
            "seconds": seconds, "rows": []}


def execute_run(spec: RunSpec, *, on_start: Callable[[int], None] | None = None,
                on_step: Callable[[int], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> dict:
    """Train and evaluate one run (or pick up its finished results). Never raises for a run's own
    failure: returns ``{"status": "finished"|"failed", "error": str|None, "rows": [...], ...}``.

    ``on_start(step)`` is called with the step training starts from (its checkpoint's), and
    ``on_step``/``should_stop`` are passed to :func:`offbench.train.fit`; an interrupt (Ctrl-C or
    ``should_stop``) propagates as ``KeyboardInterrupt`` after the run wrote its checkpoint."""
    started = time.perf_counter()
    try:
        if spec.protocol.suite in ("meta", "skills"):  # a benchmark or an environment, not a dataset
            return _execute_online_run(spec, started, on_start, on_step, should_stop)
        from offbench.data import load_dataset
        from offbench.data.recipes import ensure_built
        from offbench.train import train_run

        ensure_built(spec.dataset, progress=False)
        dataset = load_dataset(spec.dataset)
        skipped = is_finished(spec)
        if not skipped:
            if on_start:
                on_start(_checkpoint_step(spec))
            config = dataclasses.replace(spec.protocol.train_config(spec.algorithm, spec.seed), device=spec.device)
            train_run(spec.algorithm, dataset, spec.protocol.settings(spec.algorithm), config, spec.run_dir, progress=False,
                      on_step=on_step, should_stop=should_stop)
            spec.log_path.unlink(missing_ok=True)  # a failure of an earlier try is history now
        return {"key": list(spec.key), "status": "finished", "error": None, "log": None, "skipped": skipped,
                "seconds": time.perf_counter() - started, "rows": _rows(spec, dataset)}
    except BaseException as exc:  # noqa: BLE001 - a run's crash is data for the report
        if isinstance(exc, KeyboardInterrupt):
            raise
        detail = "".join(traceback.format_exception(exc)[-3:]).strip()
        return failed_result(spec, f"{type(exc).__name__}: {exc}\n{detail}", "".join(traceback.format_exception(exc)),
                             time.perf_counter() - started)


def _execute_online_run(spec: RunSpec, started: float, on_start, on_step, should_stop) -> dict:
    """:func:`execute_run` for the suites that train online in an environment instead of on a dataset:
    ``meta`` (a benchmark, ``offbench.meta_runs``) and ``skills`` (an environment,
    ``offbench.skill_runs``); the same result shape."""
    if spec.protocol.suite == "meta":
        from offbench.envs.meta.benchmarks import get_benchmark
        from offbench.meta_runs import train_meta_run as train

        env_id, resume_step = get_benchmark(spec.dataset).env_id, lambda: 0
    else:
        from offbench.envs.skill_environments import get_skill_environment
        from offbench.skill_runs import resume_point, train_skill_run as train

        env_id, resume_step = get_skill_environment(spec.dataset).env_id, lambda: resume_point(spec.run_dir)
    skipped = is_finished(spec)
    if not skipped:
        if on_start:
            on_start(resume_step())
        train(spec.algorithm, spec.dataset, spec.protocol.settings(spec.algorithm),
              spec.protocol.train_config(spec.algorithm, spec.seed), spec.run_dir,
              on_step=on_step, should_stop=should_stop)
        spec.log_path.unlink(missing_ok=True)
    rows = evaluation_rows(spec.run_dir, algorithm=spec.algorithm, dataset=spec.dataset, suite=spec.protocol.suite,
                           env_id=env_id, seed=spec.seed, final_step=spec.steps, results_dir=spec.run_dir.parents[3])
    return {"key": list(spec.key), "status": "finished", "error": None, "log": None, "skipped": skipped,
            "seconds": time.perf_counter() - started, "rows": rows}


class _Throttled:
    """Calls ``callback(step)`` at most every ``seconds``."""

    def __init__(self, callback: Callable[[int], None], seconds: float = PROGRESS_SECONDS):
        self.callback, self.seconds, self.last = callback, seconds, float("-inf")

    def __call__(self, step: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.seconds:
            self.last = now
            self.callback(step)


@dataclass
class Scheduler:
    """What a backend takes runs from and reports to. ``result`` may put a failed run back on
    ``queue`` (its one retry); ``start`` and ``step`` drive the progress bar."""

    queue: deque  # of RunSpec, longest first
    start: Callable[[RunSpec, int], None]  # (run, the step it starts from)
    step: Callable[[RunSpec, int], None]  # (run, the step it reached)
    result: Callable[[RunSpec, dict], None]  # (run, execute_run's result)
    interrupted: Callable[[], bool] = lambda: False  # Ctrl-C: stop the runs, start no more


# ---------------------------------------------------------------------- backends
def _run_sequential(scheduler: Scheduler) -> None:
    """In this process, one run after another; on an interrupt the running one checkpoints and stops."""
    while scheduler.queue and not scheduler.interrupted():
        spec = scheduler.queue.popleft()
        result = execute_run(spec, on_start=lambda step: scheduler.start(spec, step),
                             on_step=_Throttled(lambda step: scheduler.step(spec, step)),
                             should_stop=scheduler.interrupted)
        scheduler.result(spec, result)


@contextmanager
def _sigint_blocked():
    """Hold SIGINT back (delivered on exit): a process started meanwhile inherits the blocked
    mask, so it cannot be interrupted before its own code ignores SIGINT."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_main(conn, stop) -> None:
    """A pool worker: run each spec the parent sends, until it sends ``None`` or goes away.

    Messages to the parent: ``("start", step)``, ``("step", step)`` every ``PROGRESS_SECONDS``,
    then ``("result", dict)`` or, once ``stop`` is set, ``("interrupted", step)`` after the run
    wrote its checkpoint. SIGINT is ignored: the parent stops the workers (module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    import threading

    from tqdm.std import tqdm

    # A tqdm bar, even a disabled one, otherwise creates a multiprocessing lock: a named semaphore
    # that, unless the process shuts down normally, the resource tracker reports as leaked.
    tqdm.set_lock(threading.RLock())
    from offbench.train import TrainingInterrupted

    try:
        while True:
            spec = conn.recv()
            if spec is None:
                break
            if stop.value:  # sent just before the interrupt: not started, nothing to save
                conn.send(("interrupted", 0))
                continue
            try:
                result = execute_run(spec, on_start=lambda step: conn.send(("start", step)),
                                     on_step=_Throttled(lambda step: conn.send(("step", step))),
                                     should_stop=lambda: bool(stop.value))
            except TrainingInterrupted as stopped:
                conn.send(("interrupted", stopped.step))
                continue
            conn.send(("result", result))
    except (EOFError, OSError):  # the parent is gone: there is nobody to report to
        pass
    # Skip Python's shutdown: with torch loaded it takes 1.5 s here, 5 s on a loaded machine,
    # and the parent waits for it. Nothing is left for it to do: every file the run wrote is
    # complete (written to a temporary file and renamed, or appended and closed) and every
    # message is sent (a Connection writes synchronously).
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)


class _Worker:
    """One pool process, its end of the pipe, and the run it is on (None when idle)."""

    def __init__(self, context, stop):
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child_conn, stop), daemon=True,
                                       name="offbench-reproduce-worker")
        with _sigint_blocked():
            self.process.start()
        child_conn.close()  # so the parent sees EOF when the worker dies
        self.spec: RunSpec | None = None
        self.stepped = False  # has the run trained a step in this process (is there work to save)?

    def assign(self, spec: RunSpec) -> None:
        self.spec, self.stepped = spec, False
        try:
            self.conn.send(spec)
        except OSError:  # it died: messages() reports that, and the run as failed
            pass

    def messages(self):
        """The messages waiting on the pipe; ``("died", exitcode)`` last if the worker is gone."""
        try:
            while self.conn.poll():
                yield self.conn.recv()
        except (EOFError, OSError):
            pass
        if not self.process.is_alive():
            self.process.join()
            yield "died", self.process.exitcode


class LocalPool:
    """``workers`` spawned processes (spawn, not fork: the parent may hold torch's thread pools),
    each fed one run at a time over its own pipe, so a worker that dies takes only its run with it.
    Always leave through :meth:`close`."""

    def __init__(self, workers: int):
        import multiprocessing

        self.size = workers
        self.context = multiprocessing.get_context("spawn")
        self.stop = self.context.RawValue("b", 0)  # lock-free: read by every worker after every step
        self.workers: list[_Worker] = []
        self.closing = False

    def run(self, scheduler: Scheduler) -> None:
        """Until every run has a result, or ``scheduler.interrupted()``."""
        while (scheduler.queue or any(w.spec is not None for w in self.workers)) and not scheduler.interrupted():
            for worker in self.workers:  # idle workers take the next runs, longest first
                if worker.spec is None and scheduler.queue:
                    worker.assign(scheduler.queue.popleft())
            if scheduler.queue and len(self.workers) < self.size:
                self.workers.append(_Worker(self.context, self.stop))
                continue
            self._receive(scheduler, timeout=0.25)  # a SIGINT sets a flag: it does not end the wait

    def _receive(self, scheduler: Scheduler | None, timeout: float) -> None:
        """Wait up to ``timeout`` for messages or a worker's exit, and act on them."""
        from multiprocessing.connection import wait

        wait([w.conn for w in self.workers] + [w.process.sentinel for w in self.workers], timeout=timeout)
        for worker in list(self.workers):
            for kind, value in worker.messages():
                self._handle(worker, kind, value, scheduler)

    def _handle(self, worker: _Worker, kind: str, value, scheduler: Scheduler | None) -> None:
        spec = worker.spec
        if kind == "died":
            self.workers.remove(worker)
            worker.conn.close()
            worker.process.close()  # reaped in messages(): release its handles
            if spec is not None and scheduler is not None and not self.closing:
                error = (f"worker process died (exit code {value}: killed by signal {-value}, e.g. for memory)"
                         if value and value < 0 else f"worker process died (exit code {value})")
                scheduler.result(spec, failed_result(spec, error, error))
        elif spec is None or scheduler is None:
            return
        elif kind == "start":
            scheduler.start(spec, value)
        elif kind == "step":
            worker.stepped = True
            scheduler.step(spec, value)
        elif kind in ("result", "interrupted"):
            worker.spec = None
            if kind == "result":
                scheduler.result(spec, value)

    def close(self, scheduler: Scheduler | None = None, *, grace: float = 0.0,
              log: Callable[[str], None] = print) -> None:
        """Stop every worker and reap it. A worker whose run has trained steps since it started is
        asked to stop at its next step and checkpoint (up to ``grace`` seconds; runs that finish
        meanwhile still reach ``scheduler``); the others have nothing to save and are terminated
        at once. Whatever is left then is terminated, and killed if it does not exit."""
        self.closing = True
        self.stop.value = 1
        try:
            self._receive(scheduler, timeout=0)  # what arrived before the interrupt, steps included
        except KeyboardInterrupt:
            pass
        for worker in self.workers:
            try:
                worker.conn.send(None)  # an idle worker exits now, a busy one after its checkpoint
            except OSError:
                pass
        if grace > 0:
            for worker in self.workers:
                if worker.spec is not None and not worker.stepped:
                    worker.process.terminate()
        saving = sum(w.spec is not None and w.stepped for w in self.workers)
        if saving and grace > 0:
            log(f"stopping {saving} running run{'s' if saving != 1 else ''} at the next training step and "
                f"writing checkpoints (up to {grace:.0f} s; Ctrl-C again to stop at once)")
        deadline = time.monotonic() + (grace if saving else EXIT_SECONDS)
        try:
            while self.workers and time.monotonic() < deadline:
                self._receive(scheduler, timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        except KeyboardInterrupt:  # a second Ctrl-C: no more waiting
            pass
        with _sigint_blocked():  # this teardown must not be cut short
            for worker in self.workers:
                worker.process.terminate()
            for worker in self.workers:
                worker.process.join(timeout=EXIT_SECONDS)
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join()
            for worker in self.workers:
                worker.conn.close()
            self.workers = []


def _run_local(scheduler: Scheduler, workers: int, log: Callable[[str], None]) -> None:
    if workers <= 1:
        _run_sequential(scheduler)
        return
    pool = LocalPool(workers)
    done = False
    try:
        pool.run(scheduler)
        done = not scheduler.interrupted()
    finally:  # interrupted (or an error here): the running runs get a chance to checkpoint
        if done:
            pool.close()
        else:
            pool.close(scheduler, grace=STOP_GRACE_SECONDS, log=log)


def _run_ray(scheduler: Scheduler, workers: int, address: str | None) -> None:
    try:
        import ray
    except ImportError:
        raise OffbenchError("--backend ray needs Ray: pip install 'offbench[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local Ray on demand, one CPU per worker
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    pending = {}
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(execute_run)
        while (scheduler.queue or pending) and not scheduler.interrupted():
            while scheduler.queue:
                spec = scheduler.queue.popleft()
                pending[remote.remote(spec)] = spec
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            for ref in done:
                spec = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as exc:  # a node or worker lost
                    result = failed_result(spec, f"ray task failed: {exc!r}", traceback.format_exc())
                scheduler.result(spec, result)
    finally:  # on Ctrl-C or any error: no task keeps running (runs resume from their last checkpoint)
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()


def _training_rate_bar(**kwargs):
    """A tqdm bar whose ETA uses the average rate since the first training step was reported
    (``origin``), not since the bar was created: the workers' start-up (seconds of importing
    torch) is no training, and counting it made the first ETAs hours long. No ETA ("?") before
    ``ETA_AFTER_SECONDS`` of training."""
    from tqdm.auto import tqdm

    class TrainingRateBar(tqdm):
        origin: tuple[float, float] | None = None  # (time, n) of the first step report

        @property
        def format_dict(self):
            d = super().format_dict
            if self.origin is not None and time.time() - self.origin[0] >= ETA_AFTER_SECONDS:
                d["rate"] = (self.n - self.origin[1]) / (time.time() - self.origin[0])
            else:
                d["rate"] = 0  # shown as "?"
            return d

    return TrainingRateBar(**kwargs)


class ProgressBar:
    """The ``reproduce`` bar. It counts work in BC-step equivalents (steps x RELATIVE_STEP_COST)
    and moves with every run's training steps. The steps a resumed run did before this call are
    not in its total, and the ETA uses the average training rate of this call (not a smoothed
    one; see :func:`_training_rate_bar`), so it settles instead of jumping. The postfix counts
    runs: ``3/36 runs done, 2 running``."""

    def __init__(self, todo: list[RunSpec], runs: int, finished: int, enabled: bool):
        self.runs, self.finished, self.failed = runs, finished, 0
        self.total = {s.key: s.cost for s in todo}  # this call's work per run
        self.done = {s.key: 0.0 for s in todo}
        self.origin: dict[tuple, tuple[int, float]] = {}  # run -> (start step, work done before it)
        self.running: set[tuple] = set()
        # tqdm puts ", " before the postfix itself
        self.bar = _training_rate_bar(total=sum(self.total.values()), disable=not enabled or not todo,
                                      desc="reproduce", miniters=0, postfix=self._postfix_text(),
                                      bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")

    def _postfix_text(self) -> str:
        text = f"{self.finished}/{self.runs} runs done"
        if self.failed:
            text += f", {self.failed} failed"
        if self.running:
            text += f", {len(self.running)} running"
        return text

    def _postfix(self) -> None:
        self.bar.set_postfix_str(self._postfix_text(), refresh=False)

    def _set(self, key: tuple, *, done: float | None = None, total: float | None = None) -> None:
        if total is not None:
            self.bar.total += total - self.total[key]
            self.total[key] = total
        if done is not None:
            self.bar.update(done - self.done[key])
            self.done[key] = done

    def start(self, spec: RunSpec, step: int) -> None:
        # from here the run needs (steps - step) steps more; what it did earlier in this call stays counted
        done = self.done[spec.key]
        self.origin[spec.key] = (step, done)
        self.running.add(spec.key)
        self._set(spec.key, total=done + (spec.steps - step) * spec.step_cost)
        self._postfix()

    def step(self, spec: RunSpec, step: int) -> None:
        if self.bar.origin is None:
            self.bar.origin = (time.time(), self.bar.n)
        start, done = self.origin.get(spec.key, (0, 0.0))
        self._set(spec.key, done=min(done + (step - start) * spec.step_cost, self.total[spec.key]))

    def end(self, spec: RunSpec, status: str | None) -> None:
        """``status``: finished, failed (for good), or None (failed, to be retried)."""
        self.running.discard(spec.key)
        if status == "finished":
            self.finished += 1
            self._set(spec.key, done=self.total[spec.key])
        elif status == "failed":
            self.failed += 1
            self._set(spec.key, total=self.done[spec.key])
        self._postfix()
        self.bar.refresh()

    def write(self, log: Callable[[str], None], message: str) -> None:
        """``log(message)`` with the bar cleared first and redrawn after."""
        with self.bar.external_write_mode():
            log(message)

    def close(self) -> None:
        self.bar.close()


# ---------------------------------------------------------------------- the schedule


def reproduce(protocol: Protocol, out: str | os.PathLike, *, backend: str = "local", workers: int = 1,
              address: str | None = None, progress: bool = True, log: Callable[[str], None] = print,
              device: str = "cpu") -> dict:
    """Run (or finish) the protocol's grid into ``out``; returns the manifest. ``device``: where each
    run trains (``TrainConfig.device``; a GPU's numbers differ from the CPU's in float rounding and in
    the random streams, see docs/algorithms.md "GPU")."""
    from offbench.data.recipes import ensure_built
    from offbench.data.writer import library_versions
    from offbench.online import git_commit, git_dirty
    from offbench import __version__

    if backend not in ("local", "ray"):
        raise OffbenchError(f"unknown backend {backend!r}: use local or ray")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    protocol_path = out / "protocol.toml"
    requested = protocol
    if (out / "manifest.json").is_file() and json.loads((out / "manifest.json").read_text()).get("combined"):
        raise OffbenchError(f"{out} is a table combined from several results directories (offbench combine), not a "
                            "run directory: reproduce into a new --out, then combine the two")
    if protocol_path.exists():
        from offbench.protocol import load_protocol

        previous = load_protocol(protocol_path)
        differs = schedule_difference(previous, protocol)
        if differs:
            raise OffbenchError(f"{out} holds results of a different protocol ({differs} differs); "
                                "use another --out, or the same protocol to resume")
        # the directory's protocol is the union of every schedule run into it; this call runs
        # only what was asked for, but the table keeps every finished run
        protocol = protocol.restricted(
            algorithms=list(dict.fromkeys(previous.algorithms + protocol.algorithms)),
            datasets=list(dict.fromkeys(previous.datasets + protocol.datasets)),
            seeds=sorted(set(previous.seeds) | set(protocol.seeds)))
    # Every dataset must be known before anything is written (a card to build it from, or the cache);
    # the meta suite names benchmarks (offbench.envs.meta.benchmarks) instead, the skills suite
    # environments (offbench.envs.skill_environments), and they build nothing.
    from offbench.data.catalogue import cached_path, get_card

    online = protocol.suite in ("meta", "skills")
    if protocol.suite == "meta":
        from offbench.envs.meta.benchmarks import get_benchmark

        for benchmark_id in requested.datasets:
            get_benchmark(benchmark_id)  # raises, naming the id
    elif online:
        from offbench.envs.skill_environments import get_skill_environment

        for environment_id in requested.datasets:
            get_skill_environment(environment_id)  # raises, naming the id
    for dataset_id in [] if online else requested.datasets:
        if not cached_path(dataset_id).exists():
            get_card(dataset_id)  # raises, naming the id, if there is no card
    write_protocol(protocol, protocol_path)

    # Datasets first (in this process: builds are deterministic and shared by all runs).
    from offbench.data.mirrors import file_sha256
    from offbench.evaluation.results import dataset_file_record

    for dataset_id in [] if online else requested.datasets:
        if not cached_path(dataset_id).exists():
            log(f"building {dataset_id} (not in the cache)")
            ensure_built(dataset_id, progress=progress)
    dataset_hashes = {} if online else {d: file_sha256(cached_path(d)) for d in protocol.datasets
                                      if cached_path(d).exists()}
    # each file's level (mean episode return), for tables whose runs trained on a local rebuild
    dataset_files = {h: dataset_file_record(d) for d, h in dataset_hashes.items()}

    specs = plan(protocol, out, device)  # every run of the directory, for the table and the manifest
    manifest_path = out / "manifest.json"
    previous_runs, previous_wall = {}, 0.0
    if manifest_path.exists():
        previous = json.loads(manifest_path.read_text())
        previous_runs = {tuple(r["key"]): r for r in previous.get("runs", [])}
        previous_wall = float(previous.get("wall_time_seconds") or 0.0)
    manifest = {"suite": protocol.suite, "protocol": protocol.name, "algorithms": protocol.algorithms,
                "datasets": protocol.datasets, "seeds": protocol.seeds, "backend": backend, "device": device, "workers": workers,
                "git_commit": git_commit(), "git_dirty": git_dirty(), "offbench_version": __version__, "library_versions": library_versions(),
                "dataset_sha256": dataset_hashes,
                "dataset_files": {h: r for h, r in sorted(dataset_files.items()) if r}, "wall_time_seconds": None, "runs": []}
    results: dict[tuple, dict] = {}
    for spec in specs:  # cheap: reads finished run directories
        if is_finished(spec):
            results[spec.key] = execute_run(spec)
    todo = [s for s in plan(requested, out) if s.key not in results]
    log(f"{len(specs)} runs in {out}: {len(results)} finished earlier, {len(todo)} to run now "
        f"({backend} backend, {workers} worker{'s' if workers != 1 else ''})")
    started = time.perf_counter()
    bar = ProgressBar(todo, runs=len(specs), finished=len(results), enabled=progress)
    retried: set[tuple] = set()

    def say(message: str) -> None:
        bar.write(log, message)

    def save_manifest():
        runs = []
        for spec in specs:
            r = results.get(spec.key)
            if r is None:
                continue
            earlier = previous_runs.get(spec.key, {})
            seconds = r["seconds"] if not r.get("skipped") else earlier.get("wall_time_seconds", r["seconds"])
            runs.append({"key": list(spec.key), "algorithm": spec.algorithm, "dataset": spec.dataset,
                         "seed": spec.seed, "status": r["status"], "error": r["error"],
                         "retried": spec.key in retried, "wall_time_seconds": round(seconds, 2),
                         "run_dir": str(spec.run_dir.relative_to(out)),
                         **({"log": str(spec.log_path.relative_to(out))} if r.get("log") else {})})
        manifest["runs"] = runs
        # wall time accumulates over the invocations that resumed this directory
        manifest["wall_time_seconds"] = round(previous_wall + time.perf_counter() - started, 1)
        manifest["run_seconds_total"] = round(sum(r["wall_time_seconds"] for r in runs), 1)
        write_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True))

    def on_result(spec: RunSpec, result: dict) -> None:
        if result["status"] == "failed" and spec.key not in retried:
            retried.add(spec.key)
            bar.end(spec, None)
            say(f"run {spec.algorithm} {spec.dataset} seed {spec.seed} failed; retrying once:\n  "
                f"{result['error'].splitlines()[0]}")
            scheduler.queue.append(spec)
            return
        results[spec.key] = result
        bar.end(spec, result["status"])
        save_manifest()
        write_results_table(out, [results[s.key] for s in specs if s.key in results])

    from offbench.train import interrupt_requests

    try:
        with interrupt_requests() as interrupted:  # Ctrl-C becomes a request the backends poll
            scheduler = Scheduler(queue=deque(todo), start=bar.start, step=bar.step, result=on_result,
                                  interrupted=interrupted)
            if backend == "ray":
                _run_ray(scheduler, workers, address)
            else:
                _run_local(scheduler, workers, say)
            if interrupted():
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        say("run the same command again to resume: finished runs are kept, the others continue from "
            "their checkpoints")
        raise
    finally:  # also on Ctrl-C: what finished is in the manifest and the table, the rest resumes
        bar.close()
        save_manifest()
        write_results_table(out, [results[s.key] for s in specs if s.key in results])
    failed = [r for r in manifest["runs"] if r["status"] == "failed"]
    if failed:
        log(f"{len(failed)} of {len(manifest['runs'])} runs failed (each one's full traceback is in its error.log):")
    for r in failed:
        log(f"FAILED {r['algorithm']} {r['dataset']} seed {r['seed']}: {r['error'].splitlines()[0]}"
            + (f"\n  log: {out / r['log']}" if r.get("log") else ""))
    return manifest


def write_results_table(out: Path, results: Iterable[dict]) -> Path:
    """``results.csv`` of the runs' results (:func:`offbench.evaluation.results.write_results_csv`)."""
    return write_results_csv(out, [row for r in results for row in r["rows"]])
