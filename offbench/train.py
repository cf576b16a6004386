"""The one offline training loop: ``fit(algorithm, dataset, config, out)``.

Gradient steps on batches from the algorithm's sampler; an evaluation schedule (batched online
rollouts, normalised scores, raw per-episode returns kept); safetensors checkpoints; exact
resume after a kill; metrics to JSONL (and TensorBoard if asked); a progress bar with steps/s
and ETA. Run directory::

    config.json          resolved algorithm and training configuration, dataset id and hash, versions
    metrics.jsonl        training metrics averaged over each ``log_every`` steps
    evaluations.jsonl    one row per evaluation: step, returns (raw), normalised scores, success
    checkpoint.safetensors / checkpoint.json   latest full state (the JSON is written last)
    summary.json         headline score (last evaluation) and a labelled best-over-training

Interrupts lose no work: the first Ctrl-C (SIGINT), or a ``should_stop`` callback returning
True, stops the loop at the end of the current step, writes a checkpoint there and raises
:class:`TrainingInterrupted` (a ``KeyboardInterrupt``, so the CLI exits 130); running the same
command again resumes from that step. A second Ctrl-C stops at once, from the last checkpoint
(see :func:`interrupt_requests`).
On resume, rows of ``metrics.jsonl`` and ``evaluations.jsonl`` past the checkpoint (or every
row, without one) are dropped, so a row is never written twice.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from offbench.atomic import write_atomic
from offbench.checkpoint import load_checkpoint, save_checkpoint
from offbench.cpu import configure_training_process
from offbench.data.dataset import Dataset
from offbench.errors import OffbenchError
from offbench.nn import seed_everything
from offbench.rollout import rollout


@dataclass
class TrainConfig:
    steps: int = 100_000
    batch_size: int = 256
    seed: int = 0
    eval_every: int = 10_000
    eval_episodes: int = 10
    final_eval_episodes: int = 10  # the headline evaluation at the last step
    checkpoint_every: int = 10_000
    log_every: int = 1_000
    threads: int = 1
    tensorboard: bool = False
    device: str = "cpu"  # where networks, optimiser moments and batches live: cpu, cuda, cuda:N


def resolve_device(name: str) -> torch.device:
    """The torch device a ``--device`` value names, checked before any work starts."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise OffbenchError(f"device {name!r} is not a torch device: use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise OffbenchError(f"device {name!r}: this torch sees no CUDA device (torch.cuda.is_available() is False); "
                            "use --device cpu, or install a CUDA build of torch on a machine with a GPU")
    if device.type not in ("cpu", "cuda"):
        raise OffbenchError(f"device {name!r}: offbench trains on cpu or cuda")
    return device


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on request (Ctrl-C or ``should_stop``) after writing a checkpoint at ``step``."""

    def __init__(self, step: int, out: Path):
        super().__init__(f"interrupted at step {step}; checkpoint written to {out}")
        self.step = step
        self.out = out


DUPLICATE_SIGINT_SECONDS = 0.5


@contextmanager
def interrupt_requests():
    """Make SIGINT (Ctrl-C) a request to stop cleanly, polled through the yielded callable.

    The first SIGINT only sets the request, so the caller stops where its state is consistent
    (``fit``: at the end of a training step, after writing a checkpoint). Another SIGINT within
    ``DUPLICATE_SIGINT_SECONDS`` is the same interrupt delivered twice (``timeout -s INT`` signals
    the process, then its whole process group) and is ignored; a later one raises
    ``KeyboardInterrupt`` at once. Installed only in the main thread and only over Python's default
    handler; elsewhere (an ``offbench reproduce`` worker ignores SIGINT, or a caller already turned
    it into a request) the yielded callable is always False and nothing changes.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield lambda: False
        return
    first: list[float] = []  # when the first SIGINT came

    def handler(signum, frame):
        now = time.monotonic()
        if not first:
            first.append(now)  # nothing printed here: the handler may interrupt a write to stderr
        elif now - first[0] > DUPLICATE_SIGINT_SECONDS:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(first)
    finally:
        signal.signal(signal.SIGINT, previous)


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _truncate_jsonl(path: Path, upto_step: int) -> None:
    """Keep the rows up to ``upto_step``, the step we resume from (later ones will be written again);
    a line cut short by a kill is dropped too."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= upto_step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):
            continue
    write_atomic(path, "".join(kept))


def evaluate(algorithm, dataset: Dataset, episodes: int, seed: int) -> dict:
    """Online evaluation of the algorithm's deterministic policy on the dataset's environment; an
    offline meta-RL agent on a ``meta/<family>/<name>-v0`` dataset plays the family's benchmark
    trials instead (``offbench.evaluation.meta_adaptation.evaluation_row``)."""
    from offbench.envs.meta.benchmarks import benchmark_for_dataset

    was_training = algorithm.training
    algorithm.eval()
    benchmark = benchmark_for_dataset(dataset.metadata.dataset_id)
    if benchmark is not None and hasattr(algorithm, "adapt_and_evaluate"):
        from offbench.evaluation.meta_adaptation import evaluation_row

        try:
            return evaluation_row(algorithm, dataset, benchmark, episodes, seed)
        finally:
            algorithm.train(was_training)
    policy = algorithm.make_eval_policy() if hasattr(algorithm, "make_eval_policy") else algorithm.act
    result = rollout(policy, dataset.metadata.env_id, episodes, seed=seed)
    algorithm.train(was_training)
    row = {"returns": [round(float(r), 6) for r in result.returns], "return_mean": result.mean,
           "return_stderr": result.stderr, "lengths": result.lengths.tolist()}
    if dataset.metadata.reference_scores:
        scores = dataset.normalized_score(result.returns)
        row.update(normalized_scores=[round(float(s), 6) for s in scores], normalized_score=float(scores.mean()))
    if result.success is not None:
        row["success_rate"] = float(result.success.mean())
        row["successes"] = result.success.astype(int).tolist()  # raw per-episode outcomes, as returns
    if result.task_ids is not None:  # goal tasks: which evaluation task each episode played
        row["task_ids"] = result.task_ids.tolist()
        if result.success is not None:
            row["success_rate_per_task"] = {str(t): float(result.success[result.task_ids == t].mean())
                                            for t in sorted(set(result.task_ids.tolist()))}
    return row


def fit(algorithm, dataset: Dataset, config: TrainConfig, out: str | os.PathLike, *, progress: bool = True,
        on_step: Callable[[int], None] | None = None, run_info: dict | None = None,
        should_stop: Callable[[], bool] | None = None) -> dict:
    """Train ``algorithm`` on ``dataset``; resume from ``out`` if it holds a checkpoint. Returns the summary.

    ``on_step(step)`` is called after every step. If Ctrl-C is pressed or ``should_stop()`` returns
    True, a checkpoint is written at the end of the current step and :class:`TrainingInterrupted`
    is raised (see the module docstring)."""
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    configure_training_process(config.threads)
    default_info = {"algorithm": f"{type(algorithm).__module__}:{type(algorithm).__name__}",
                    "algorithm_overrides": {}}  # enough for `offbench eval` to rebuild it
    resolved = {**default_info, **(run_info or {}), "train": asdict(config), "algorithm_config": _jsonable(asdict(algorithm.config)),
                "dataset": {"id": dataset.metadata.dataset_id, "content_sha256": dataset.content_sha256(),
                            "env_id": dataset.metadata.env_id}}
    config_path = out / "config.json"
    if config_path.exists():
        saved = json.loads(config_path.read_text())
        for key in ("algorithm_config", "dataset"):
            if saved.get(key) != _jsonable(resolved[key]):
                raise OffbenchError(f"{out} holds a run with a different {key.replace('_', ' ')}; use another "
                                    "--out or the same settings to resume it")
        if saved.get("train", {}).get("seed") != config.seed:
            raise OffbenchError(f"{out} holds a run with seed {saved['train']['seed']}, not {config.seed}")
    from offbench.data.writer import library_versions
    from offbench.online import git_commit

    resolved.update(library_versions=library_versions(), git_commit=git_commit())
    write_atomic(config_path, json.dumps(_jsonable(resolved), indent=2))

    device = resolve_device(config.device)
    data = algorithm.prepare(dataset)
    if device != getattr(algorithm, "device", torch.device("cpu")):
        if not hasattr(algorithm, "to_device"):
            raise OffbenchError(f"{type(algorithm).__name__} has no to_device(): it trains on the CPU only "
                                "(subclass offbench.algorithm.Algorithm, or use --device cpu)")
        algorithm.to_device(device)  # after prepare: the normalisers it fitted move too
    sampler = algorithm.make_sampler(data, config.batch_size, config.seed)
    generators = {"algorithm": algorithm.generator, "sampler": sampler.generator,
                  "torch_global": torch.default_generator}
    # The metrics of the current ``log_every`` window (sums, steps, seconds) are part of the
    # checkpoint, so a run stopped between two log rows writes the same rows as one that was not.
    step, sums, count, interval_start = 0, {}, 0, time.perf_counter()
    if (out / "checkpoint.json").exists():
        meta = load_checkpoint(out / "checkpoint", modules={"algorithm": algorithm},
                               optimizers=algorithm.optimizers(), generators=generators)
        step = meta["step"]
        window = meta.get("metrics_window", {})
        sums = {k: (float(total), int(n)) for k, (total, n) in window.get("sums", {}).items()}
        count = int(window.get("steps", 0))
        interval_start -= float(window.get("seconds", 0.0))
    # Rows past the checkpoint (all rows, without one) are written again below.
    _truncate_jsonl(out / "metrics.jsonl", step)
    _truncate_jsonl(out / "evaluations.jsonl", step)
    writer = _tensorboard(out) if config.tensorboard else None

    def checkpoint():
        window = {"sums": {k: [float(total), n] for k, (total, n) in sums.items()}, "steps": count,
                  "seconds": time.perf_counter() - interval_start}
        save_checkpoint(out / "checkpoint", modules={"algorithm": algorithm}, optimizers=algorithm.optimizers(),
                        generators=generators, extra={"step": step, "metrics_window": window})

    bar = tqdm(total=config.steps, initial=step, unit="step", disable=not progress, smoothing=0.05,
               desc=type(algorithm).__name__)
    checkpointed = step
    algorithm.train()
    with interrupt_requests() as sigint_received:
        try:
            while step < config.steps:
                metrics = algorithm.update(sampler.sample())
                step += 1
                for key, value in metrics.items():  # a metric some steps skip is averaged over its own steps
                    total, n = sums.get(key, (0.0, 0))
                    if torch.is_tensor(value) and value.device.type != "cpu":
                        value = value.detach().double()  # summed on the device: read back at the log row only
                    else:
                        value = float(value)  # on the CPU a read is cheaper than a tensor addition
                    sums[key] = (total + value, n + 1)
                count += 1
                if step % config.log_every == 0 or step == config.steps:
                    now = time.perf_counter()
                    row = {"step": step, **{k: float(total) / n for k, (total, n) in sums.items()},
                           "steps_per_second": count / max(now - interval_start, 1e-9)}
                    _append_jsonl(out / "metrics.jsonl", row)
                    if writer:
                        for k, v in row.items():
                            if k != "step":
                                writer.add_scalar(f"train/{k}", v, step)
                    sums, count, interval_start = {}, 0, now
                if step % config.eval_every == 0 or step == config.steps:
                    episodes = config.final_eval_episodes if step == config.steps else config.eval_episodes
                    seed = config.seed * 1_000_003 + 50_000_000 + (step // config.eval_every) * episodes
                    row = {"step": step, "episodes": episodes, "seed": seed,
                           **evaluate(algorithm, dataset, episodes, seed)}
                    _append_jsonl(out / "evaluations.jsonl", row)
                    if writer:
                        writer.add_scalar("eval/return_mean", row["return_mean"], step)
                    bar.set_postfix(score=round(row.get("normalized_score", row["return_mean"]), 1))
                if step % config.checkpoint_every == 0 or step == config.steps:
                    checkpoint()
                    checkpointed = step
                bar.update(1)
                if on_step:
                    on_step(step)
                # a stop request is honoured here, between steps, where the state is consistent
                if step < config.steps and (sigint_received() or (should_stop is not None and should_stop())):
                    if checkpointed != step:
                        checkpoint()
                    raise TrainingInterrupted(step, out)
        except TrainingInterrupted as stopped:
            bar.close()
            if progress:
                print(f"stopped at step {stopped.step} of {config.steps}; checkpoint written to {out} "
                      "(run the same command again to resume)", file=sys.stderr, flush=True)
            raise
        finally:
            bar.close()
            if writer:
                writer.close()
    summary = summarise(out)
    write_atomic(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def summarise(out: Path) -> dict:
    """Headline = the last evaluation; best-over-training is reported only as a labelled extra."""
    rows = [json.loads(line) for line in (Path(out) / "evaluations.jsonl").read_text().splitlines()]
    last = rows[-1]
    key = "normalized_score" if "normalized_score" in last else "return_mean"
    best = max(rows, key=lambda r: r[key])
    return {"final_step": last["step"], "headline": "last evaluation", "score_kind": key, "score": last[key],
            "returns": last["returns"], "episodes": last["episodes"],
            "best_over_training (secondary, optimistic)": {"step": best["step"], "score": best[key]}}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def _tensorboard(out: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise OffbenchError("--set tensorboard=true needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(out / "tensorboard"))


# ---------------------------------------------------------------------- construction from names
def build_algorithm(name: str, dataset: Dataset, overrides: dict[str, Any], seed: int):
    """Seed, then construct the named algorithm for the dataset's spaces."""
    from offbench.algorithm import load_algorithm_class, make_config

    cls = load_algorithm_class(name)
    config = make_config(cls, overrides)
    seed_everything(seed)  # weight initialisation draws from the global RNG
    return cls(dataset.observation_space, dataset.action_space, config, seed=seed)


def load_run(run: str | os.PathLike, dataset: str | os.PathLike | None = None):
    """``(algorithm, dataset, step)``: a training run's algorithm at its latest checkpoint, in eval
    mode, and the dataset it trained on (``dataset``: another id or path with the same content)."""
    from offbench.checkpoint import load_checkpoint
    from offbench.data import load_dataset

    run = Path(run)
    if not (run / "checkpoint.json").exists():
        raise OffbenchError(f"{run} has no checkpoint (checkpoint.json); is it an `offbench train` run directory?")
    config = json.loads((run / "config.json").read_text())
    data = load_dataset(dataset or config["dataset"]["id"])
    if data.content_sha256() != config["dataset"]["content_sha256"]:
        raise OffbenchError(f"the dataset {data.metadata.dataset_id} differs from the one the run trained on")
    algorithm = build_algorithm(config["algorithm"], data, config["algorithm_overrides"], config["train"]["seed"])
    algorithm.prepare(data)
    meta = load_checkpoint(run / "checkpoint", modules={"algorithm": algorithm})
    algorithm.eval()
    return algorithm, data, int(meta["step"])


def train_run(name: str, dataset: Dataset, overrides: dict[str, Any], config: TrainConfig, out: Path, *,
              progress: bool = True, on_step=None, should_stop: Callable[[], bool] | None = None) -> dict:
    """Defaults < ``baselines/configs/<name>.toml`` entries matching the dataset < ``overrides``.
    ``on_step`` and ``should_stop`` are passed to :func:`fit`."""
    from offbench.algorithm import dataset_overrides

    settings = {**dataset_overrides(name, dataset.metadata.dataset_id), **overrides}
    algorithm = build_algorithm(name, dataset, settings, config.seed)
    return fit(algorithm, dataset, config, out, progress=progress, on_step=on_step, should_stop=should_stop,
               run_info={"algorithm": name, "algorithm_overrides": settings})
