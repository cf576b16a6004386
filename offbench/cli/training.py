"""``offbench train``, ``offbench eval`` and ``offbench algos``: one offline training run and its checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

from offbench.cli.common import parse_overrides, positive_int
from offbench.errors import OffbenchError


def cmd_train(args) -> int:
    from offbench.algorithm import load_algorithm_class, make_config
    from offbench.cli.common import writable_dir
    from offbench.config import check_positive, split_settings
    from offbench.data import load_dataset
    from offbench.data.catalogue import offbench_home
    from offbench.train import TrainConfig, resolve_device, train_run

    # Everything the user typed is checked before the dataset is read or a step is trained.
    train, algo = split_settings(parse_overrides(args.set), TrainConfig, what="training setting")
    if args.device is not None:
        train["device"] = args.device
    config = TrainConfig(seed=args.seed, **({"steps": args.steps} if args.steps is not None else {}), **train)
    resolve_device(config.device)
    check_positive(config, ("steps", "batch_size", "eval_every", "eval_episodes", "final_eval_episodes",
                            "checkpoint_every", "log_every", "threads"), what="training setting")
    make_config(load_algorithm_class(args.algo), algo)  # unknown or mistyped algorithm settings
    out = writable_dir(args.out) if args.out else None
    dataset = load_dataset(args.dataset)
    if out is None:
        name = args.algo.replace(":", "_").replace(".", "_")
        out = writable_dir(offbench_home() / "runs" / "offline" / name /
                           dataset.metadata.dataset_id.replace("/", "_") / f"seed{args.seed}")
    summary = train_run(args.algo, dataset, algo, config, out, progress=not args.quiet)
    print(json.dumps({"out": str(out), "score_kind": summary["score_kind"], "score": summary["score"],
                      "final_step": summary["final_step"]}))
    return 0


def cmd_eval(args) -> int:
    from offbench.train import evaluate, load_run

    if args.benchmark is None and (args.context is not None or args.context_size is not None):
        raise OffbenchError("--context and --context-size go with --benchmark (a meta-RL benchmark)")
    algorithm, dataset, step = load_run(args.run, args.dataset)
    if args.benchmark is not None:
        from offbench.evaluation.meta_adaptation import adaptation

        result = adaptation(algorithm, dataset, args.benchmark, args.episodes, context=args.context or "online",
                            context_size=args.context_size or 32, seed=args.seed)
        print(json.dumps({"run": str(args.run), "step": step, **result}))
        return 0
    row = evaluate(algorithm, dataset, args.episodes, args.seed)
    print(json.dumps({"run": str(args.run), "step": step, "episodes": args.episodes, "seed": args.seed,
                      **{k: row[k] for k in ("return_mean", "return_stderr", "normalized_score") if k in row}}))
    return 0


def cmd_algos(args) -> int:
    from offbench.algorithm import BUILTIN, load_algorithm_class

    for name in BUILTIN:
        try:
            summary = load_algorithm_class(name).summary
        except OffbenchError:
            summary = "(not available in this version)"
        print(f"{name:<12} {summary}")
    return 0


def register(commands) -> None:
    """Add ``train``, ``eval`` and ``algos`` to the top-level subparsers."""
    from offbench.train import TrainConfig

    defaults = TrainConfig()
    p = commands.add_parser("train", help="train an offline algorithm on a dataset (re-running with the same --out "
                                          "resumes from its last checkpoint)")
    p.add_argument("algo", help="a name from `offbench algos` or an import path package.module:Class")
    p.add_argument("dataset", metavar="DATASET", help="dataset id or path")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument("--steps", type=positive_int, help=f"gradient steps (default {defaults.steps:,})")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training setting (defaults: " + ", ".join(
                       f"{k}={v}" for k, v in vars(defaults).items() if k not in ("steps", "seed")) +
                   ") or an algorithm setting (see docs/algorithms.md)")
    p.add_argument("--device", help="cpu (default), cuda or cuda:N: where the networks and batches live "
                   "(the same as --set device=...)")
    p.add_argument("--out", help="run directory (default: $OFFBENCH_HOME/runs/offline/ALGO/DATASET/seedS)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("eval", help="re-evaluate a training run's latest checkpoint online")
    p.add_argument("run", metavar="RUN_DIR")
    p.add_argument("--episodes", type=positive_int, default=10, help="evaluation episodes (default 10)")
    p.add_argument("--seed", type=int, default=777_000, help="evaluation seed (default 777000)")
    p.add_argument("--dataset", help="dataset id or path, if not the one recorded in the run")
    p.add_argument("--benchmark", metavar="META_BENCHMARK",
                   help="an offline meta-RL run (context_iql): play the benchmark's trials (e.g. meta/gridnavi-v0) "
                        "on --episodes tasks and report the return after each adaptation episode")
    p.add_argument("--context", choices=("online", "offline"),
                   help="with --benchmark: the task context comes from the policy's own transitions in the trial "
                        "(online, default; held-out tasks) or from each task's offline data (offline; the dataset's tasks)")
    p.add_argument("--context-size", type=positive_int, help="with --context offline: transitions per task (default 32)")
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("algos", help="list the algorithms")
    p.set_defaults(func=cmd_algos)
