"""``offbench ope`` (an OPE study on a policy zoo; ``ope zoo`` builds a zoo) and ``offbench select``
(the hyperparameter-selection study of :mod:`offbench.evaluation.selection`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from offbench.cli.common import positive_int
from offbench.errors import OffbenchError
from offbench.evaluation.ope_study import DEFAULT_ESTIMATORS, EstimatorSettings, estimator_names, run_ope


def cmd_ope(args) -> int:
    if args.target == "zoo":
        raise OffbenchError("usage: offbench ope zoo DATASET --from RESULTS_DIR [--from ...] --out ZOO_DIR")
    if not args.zoo:
        raise OffbenchError("offbench ope needs --zoo DIR (a directory written by `offbench ope zoo`)")
    result = run_ope(args.target, args.zoo, estimators=args.estimators, out=args.out, gamma=args.gamma,
                     seed=args.seed, resamples=args.resamples, settings=estimator_settings(args),
                     figures=not args.no_figures,
                     log=(lambda _: None) if args.quiet else (lambda m: print(m, file=sys.stderr)))
    print((result["out"] / "table.md").read_text())
    print(f"ope: {result['out']}")
    return 0


def cmd_zoo(args) -> int:
    from offbench.evaluation.zoo import build_zoo

    manifest = build_zoo(args.dataset, args.results or [], args.out, episodes=args.episodes, gamma=args.gamma,
                         behaviour=not args.no_behaviour, seeds=args.zoo_seeds, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({"zoo": str(Path(args.out)), "dataset": args.dataset, "policies": len(manifest["policies"]),
                      "skipped": sorted(manifest.get("skipped", {}))}))
    return 0


def cmd_select(args) -> int:
    from offbench.evaluation.selection import parse_grid, run_select
    from offbench.protocol import load_protocol

    protocol = load_protocol(args.protocol or args.suite)
    if protocol.suite != args.suite:
        raise OffbenchError(f"protocol {protocol.name!r} is for suite {protocol.suite!r}, not {args.suite!r}")
    result = run_select(args.algo, protocol, parse_grid(args.grid), args.out or f"select/{args.algo}-{args.suite}",
                        datasets=args.datasets, seeds=args.seeds, workers=args.workers or 1,
                        estimators=args.estimators, gamma=args.gamma, holdout=not args.no_holdout, seed=args.seed,
                        figures=not args.no_figures, progress=not args.quiet, settings=estimator_settings(args),
                        log=(lambda _: None) if args.quiet else (lambda m: print(m, file=sys.stderr)))
    print(Path(result["out"], "regret.md").read_text())
    print(f"select: {result['out']}")
    return 0


def estimator_settings(args) -> EstimatorSettings:
    hidden = None
    if args.model_hidden:
        try:
            hidden = tuple(int(h) for h in args.model_hidden.split(","))
        except ValueError:
            raise OffbenchError(f"--model-hidden {args.model_hidden!r}: give layer widths like 200,200,200,200") from None
        if not hidden or min(hidden) < 1:
            raise OffbenchError(f"--model-hidden {args.model_hidden!r}: widths must be positive integers")
    for flag in ("fqe_steps", "dualdice_steps", "model_max_epochs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise OffbenchError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    return EstimatorSettings(fqe_steps=args.fqe_steps, dualdice_steps=args.dualdice_steps, model_hidden=hidden,
                             model_max_epochs=args.model_max_epochs)


def _add_estimator_options(p) -> None:
    p.add_argument("--fqe-steps", type=int, help="neural FQE gradient steps (default 5000)")
    p.add_argument("--dualdice-steps", type=int, help="neural DualDICE steps (default 5000)")
    p.add_argument("--model-hidden", metavar="W1,W2,...", help="model-based OPE: dynamics layers (default 200,200,200,200)")
    p.add_argument("--model-max-epochs", type=int, metavar="N",
                   help="model-based OPE: dynamics training epochs (default: until hold-out early stopping)")


def register(commands) -> None:
    """Add ``offbench ope`` (with ``ope zoo``) and ``offbench select`` to the CLI's subparsers."""
    p = commands.add_parser("ope", help="off-policy evaluation on a policy zoo: estimates vs truth, DOPE metrics "
                                        "(`offbench ope zoo ...` builds a zoo)")
    p.add_argument("target", metavar="DATASET|SUITE|zoo",
                   help="a dataset id, a suite (every dataset of it with a zoo), or `zoo` to build a zoo")
    p.add_argument("dataset", nargs="?", metavar="DATASET", help="(ope zoo) the dataset of the zoo")
    p.add_argument("--zoo", metavar="DIR", help="zoo directory (ZOO_DIR/DATASET_SLUG/manifest.json)")
    p.add_argument("--estimators", nargs="+", default=list(DEFAULT_ESTIMATORS), metavar="NAME",
                   help=f"of {estimator_names()} (default: {' '.join(DEFAULT_ESTIMATORS)})")
    p.add_argument("--out", metavar="DIR", help="output directory (ope: default ZOO/ope/TARGET; ope zoo: the zoo)")
    p.add_argument("--seed", type=int, default=0, help="seed of the estimators and the bootstrap")
    p.add_argument("--gamma", type=float, default=0.99, help="discount of the values compared (default 0.99)")
    p.add_argument("--resamples", type=positive_int, default=1000, help="bootstrap resamples (default 1000)")
    _add_estimator_options(p)
    p.add_argument("--from", dest="results", action="append", metavar="RESULTS_DIR",
                   help="(ope zoo) a results directory whose runs on DATASET join the zoo (repeatable)")
    p.add_argument("--episodes", type=positive_int, default=50, help="(ope zoo) ground-truth episodes per policy")
    p.add_argument("--no-behaviour", action="store_true", help="(ope zoo) leave the behaviour policies out")
    p.add_argument("--seeds", dest="zoo_seeds", type=positive_int, metavar="N",
                   help="(ope zoo) only runs with training seed < N join the zoo (default: every seed)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=lambda args: _ope_dispatch(args))

    p = commands.add_parser("select", help="hyperparameter-selection study: sweep a grid, select per dataset by OPE, "
                                           "critic, CQL workflow and validation TD error; regret vs the oracle")
    p.add_argument("algo", help="algorithm name (iql, cql, ...)")
    p.add_argument("suite", help="suite of the protocol, e.g. lite")
    p.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                   help="an algorithm setting and its values (repeatable: the grid is the product)")
    p.add_argument("--protocol", help="smoke, lite or a protocol TOML path (default: the suite's name)")
    p.add_argument("--datasets", nargs="+", metavar="ID", help="restrict to these datasets")
    p.add_argument("--seeds", type=positive_int, help="number of seeds (0..N-1) instead of the protocol's")
    p.add_argument("--out", help="output directory (default: select/ALGO-SUITE); re-running resumes it")
    p.add_argument("--workers", type=positive_int, help="parallel training runs (default 1)")
    p.add_argument("--estimators", nargs="+", default=["fqe", "wpdis"], metavar="NAME",
                   help=f"OPE criteria, of {estimator_names()} (default: fqe wpdis)")
    p.add_argument("--gamma", type=float, default=0.99, help="discount of the OPE estimates (default 0.99)")
    p.add_argument("--seed", type=int, default=0, help="seed of the estimators and the bootstrap")
    _add_estimator_options(p)
    p.add_argument("--no-holdout", action="store_true",
                   help="train on the whole dataset (the validation TD error is then in-sample)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_select)


def _ope_dispatch(args) -> int:
    if args.target == "zoo":
        if not args.dataset or not args.out:
            raise OffbenchError("usage: offbench ope zoo DATASET --from RESULTS_DIR [--from ...] --out ZOO_DIR "
                                "[--episodes N]")
        return cmd_zoo(args)
    if args.dataset:
        raise OffbenchError(f"unexpected argument {args.dataset!r}: `offbench ope DATASET|SUITE --zoo DIR`")
    return cmd_ope(args)
