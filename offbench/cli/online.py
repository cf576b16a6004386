"""``offbench online``: train the online agents that generate data (SAC, DQN), measure and export their policies."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from offbench.cli.common import parse_overrides, positive_int


def cmd_train(args) -> int:
    from offbench.cli.common import writable_dir
    from offbench.config import split_settings
    from offbench.online import OnlineConfig, OnlineRun

    loop, agent = split_settings(parse_overrides(args.set), OnlineConfig, what="online loop setting")
    config = OnlineConfig(env_id=args.env, algo=args.algo, steps=args.steps, seed=args.seed,
                          threads=args.threads, agent=agent, **loop)
    out = writable_dir(args.out)
    resuming = (out / "state.json").exists()
    print(f"{'resuming' if resuming else 'starting'} {args.algo} on {args.env} in {out}", file=sys.stderr)
    run = OnlineRun(config, out)
    run.train(progress=not args.quiet)
    last = run.curve[-1] if run.curve else {}
    print(json.dumps({"out": str(out), "step": run.step, **{k: v for k, v in last.items() if k.startswith("return")}}))
    return 0


def cmd_evaluate(args) -> int:
    from offbench.online import behaviour_epsilon, measure_policy, snapshot_policy

    run = Path(args.run)
    steps = args.step or sorted(int(p.stem.split("-")[1]) for p in (run / "snapshots").glob("policy-*.safetensors"))
    for step in steps:
        module, config, agent_config = snapshot_policy(run, step)
        result = measure_policy(module, config.env_id, args.episodes, args.seed, config.env_kwargs,
                                epsilon=behaviour_epsilon(agent_config))
        print(json.dumps({"step": step, **result}), flush=True)
    return 0


def cmd_export_policy(args) -> int:
    from offbench.online import export_policy

    info = export_policy(Path(args.run), args.step, Path(args.dest), name=args.name, episodes=args.episodes,
                         seed=args.seed)
    print(json.dumps({k: info[k] for k in ("name", "env_id", "step", "sha256", "returns")}, indent=2))
    return 0


def register(commands) -> None:
    """Add the ``online`` group to the top-level subparsers."""
    online = commands.add_parser("online", help="train the online agents that generate data (SAC, DQN)")
    sub = online.add_subparsers(dest="online_command", required=True)
    p = sub.add_parser("train", help="train an online agent; re-running with the same --out resumes it")
    p.add_argument("algo", help="sac or dqn")
    p.add_argument("--env", required=True, help="Gymnasium id, e.g. Hopper-v5")
    p.add_argument("--steps", type=positive_int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (1 is fastest per core for 256-wide nets)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a loop setting (eval_every, warmup_steps, ...) or an algorithm setting")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="measure the returns of a run's policy snapshots")
    p.add_argument("run", help="run directory")
    p.add_argument("--step", type=int, action="append", help="snapshot step (repeatable; default: all)")
    p.add_argument("--episodes", type=positive_int, default=10)
    p.add_argument("--seed", type=int, default=123_456, help="evaluation seed (distinct from training seeds)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export-policy", help="write a snapshot as a behaviour checkpoint with measured returns")
    p.add_argument("run", help="run directory")
    p.add_argument("--step", type=int, required=True, help="snapshot step (0: the randomly initialised policy)")
    p.add_argument("--name", required=True, help="e.g. medium, expert, random")
    p.add_argument("--dest", required=True, help="output .safetensors path, e.g. datasets/policies/hopper/medium.safetensors")
    p.add_argument("--episodes", type=positive_int, default=50)
    p.add_argument("--seed", type=int, default=123_456)
    p.set_defaults(func=cmd_export_policy)
