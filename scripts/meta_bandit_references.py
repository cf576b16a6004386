"""Bernoulli-bandit references for RL²'s Table 1 settings (docs/meta-rl.md).

For every (n pulls, k arms) of Duan et al. 2016 Table 1: tune UCB1's ``c`` and the Gittins
discount on tuning seeds (Duan et al. grid-searched each method's hyperparameters per
setting), then evaluate random, UCB1, Thompson sampling and Gittins with the chosen values on
separate evaluation seeds, and add the exact Bayes-optimal value where it is tractable
(n = 10). Writes one JSON line per setting to ``--out`` and prints a Markdown table.

    nice -n 10 python scripts/meta_bandit_references.py --out docs/bench/meta_bandit_references.jsonl
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from offbench.envs.meta.bandit_references import RL2_TABLE1, bayes_optimal_value, evaluate

UCB1_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)
GAMMA_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.997, 0.998)
TUNE_SEED, EVAL_SEED = 1001, 7


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tune-trials", type=int, default=2000)
    parser.add_argument("--eval-trials", type=int, default=10000)
    parser.add_argument("--settings", default=",".join(f"{n}x{k}" for n, k in RL2_TABLE1))
    args = parser.parse_args()
    settings = [tuple(int(x) for x in s.split("x")) for s in args.settings.split(",")]
    rows = []
    for n, k in settings:
        t0 = time.time()
        tune = {}
        for c in UCB1_GRID:
            tune[("ucb1", c)] = evaluate("ucb1", k, n, args.tune_trials, TUNE_SEED, c=c).mean
        for gamma in GAMMA_GRID:
            tune[("gittins", gamma)] = evaluate("gittins", k, n, args.tune_trials, TUNE_SEED, gamma=gamma).mean
        best_c = max(UCB1_GRID, key=lambda c: tune[("ucb1", c)])
        best_gamma = max(GAMMA_GRID, key=lambda g: tune[("gittins", g)])
        row = {"n": n, "k": k, "ucb1_c": best_c, "gittins_gamma": best_gamma, "eval_trials": args.eval_trials,
               "eval_seed": EVAL_SEED, "tune_trials": args.tune_trials, "tune_seed": TUNE_SEED,
               "tuning": {f"{name}:{value}": round(score, 4) for (name, value), score in tune.items()}}
        for name, params in (("random", {}), ("ucb1", {"c": best_c}), ("thompson", {}),
                             ("gittins", {"gamma": best_gamma})):
            result = evaluate(name, k, n, args.eval_trials, EVAL_SEED, **params)
            row[name] = {"mean": round(result.mean, 4), "stderr": round(result.stderr, 4),
                         "std": round(float(result.totals.std(ddof=1)), 4)}
        if n <= 10:
            row["bayes_optimal"] = bayes_optimal_value(k, n)
        row["paper"] = RL2_TABLE1[(n, k)]
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        print(json.dumps({key: row[key] for key in row if key != "tuning"}), flush=True)
    with open(args.out, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print("\n| n, k | random | UCB1 (c) | TS | Gittins (gamma) | Bayes-optimal |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        p = r["paper"]

        def cell(name):
            return f"{r[name]['mean']:.2f} ± {r[name]['stderr']:.2f} ({p[name]})"
        bayes = f"{r['bayes_optimal']:.4f}" if "bayes_optimal" in r else "-"
        print(f"| {r['n']}, {r['k']} | {cell('random')} | {cell('ucb1')} c={r['ucb1_c']} | {cell('thompson')} | "
              f"{cell('gittins')} γ={r['gittins_gamma']} | {bayes} |")


if __name__ == "__main__":
    main()
