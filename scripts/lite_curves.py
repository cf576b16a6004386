"""Learning curves of lite-protocol runs, for choosing step budgets (issue 14, item 3).

A resumable, sequential driver: it trains each (algorithm, dataset, seed) run with the lite
protocol's settings for that algorithm (``offbench/protocols/lite.toml``: 2x128 networks, batch
256, CQL's 5 sampled actions, ...) but with its own step count and evaluation interval, one run
at a time in this process, and then writes every evaluation as CSV. A run directory that holds a
``summary.json`` of at least ``--steps`` steps is skipped; any other resumes from its checkpoint
(``offbench.train``), so a finished run can be extended to more steps with the same command and a
larger ``--steps`` (the first steps are identical to those of a shorter run).

    python scripts/lite_curves.py run --algos iql awac --datasets lite/pendulum/medium-v0 \\
        --seeds 0 --steps 32000 --eval-every 2000 --out DIR [--tag NAME] [--set key=value ...]
    python scripts/lite_curves.py collect DIR        # -> DIR/curves.csv, DIR/metrics.csv
    python scripts/lite_curves.py slopes DIR/curves.csv --window 4 [--tag NAME]
    python scripts/lite_curves.py behaviour RUN_DIR ... [--episodes 10]   # Pendulum only
    python scripts/lite_curves.py plot DIR --out FIG.png [--tags default ...]

``behaviour`` rolls out the final checkpoint of each Pendulum run (deterministic policy, fixed
seeds 0..episodes-1) and prints where its episodes spend their time: the mean of cos(theta) (1 =
upright, -1 = hanging), the fraction of steps within 18 degrees of upright, the mean |theta-dot|
and |torque|, and the fraction of steps at full torque.

Runs go to ``DIR/runs/<tag>/<algo>/<dataset with / as __>/seed<S>``; ``--set`` values are
algorithm settings (or training settings such as ``eval_episodes``) on top of the protocol's,
and the tag names the variant (default ``default``). ``slopes`` fits, for every (tag, algo,
dataset) and every evaluation step B, a least-squares line to the seed-mean normalised score of
the last ``window`` evaluations up to B, and prints the slope in points per 1,000 steps with its
standard error (from the residuals), plus the mean of the last two evaluations (the lite
headline window).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

TRAIN_KEYS = {"batch_size", "eval_episodes", "final_eval_episodes", "checkpoint_every", "log_every", "threads"}


def run_dir(out: Path, tag: str, algo: str, dataset: str, seed: int) -> Path:
    return out / "runs" / tag / algo / dataset.replace("/", "__") / f"seed{seed}"


def cmd_run(args) -> None:
    from offbench.cli.common import parse_overrides
    from dataclasses import replace

    from offbench.data import load_dataset
    from offbench.data.recipes import ensure_built
    from offbench.protocol import load_protocol
    from offbench.train import train_run

    protocol = load_protocol(args.protocol)
    extra = parse_overrides(args.set)  # key=value, values parsed as JSON where they can be
    train_extra = {k: v for k, v in extra.items() if k in TRAIN_KEYS}
    settings_extra = {k: v for k, v in extra.items() if k not in TRAIN_KEYS}
    out = Path(args.out)
    for dataset_id in args.datasets:
        ensure_built(dataset_id, progress=False)
        dataset = load_dataset(dataset_id)
        for algo in args.algos:
            for seed in args.seeds:
                directory = run_dir(out, args.tag, algo, dataset_id, seed)
                summary = directory / "summary.json"
                if summary.exists() and json.loads(summary.read_text())["final_step"] >= args.steps:
                    print(f"skip (finished) {directory}", flush=True)
                    continue
                config = protocol.train_config(algo, seed)
                config = replace(config, steps=args.steps, eval_every=args.eval_every,
                                 checkpoint_every=args.eval_every, log_every=min(config.log_every, args.eval_every),
                                 threads=1, **train_extra)
                settings = {**protocol.settings(algo), **settings_extra}
                started = time.perf_counter()
                train_run(algo, dataset, settings, config, directory, progress=False)
                seconds = time.perf_counter() - started
                (directory / "wall_seconds.json").write_text(json.dumps({"seconds": seconds}))
                last = json.loads((directory / "summary.json").read_text())
                print(f"done {args.tag} {algo} {dataset_id} seed{seed} {args.steps} steps in {seconds:.0f} s: "
                      f"final {last['score']:.1f}", flush=True)
    cmd_collect(argparse.Namespace(out=args.out))


def cmd_collect(args) -> None:
    out = Path(args.out)
    curve_rows, metric_rows = [], []
    for summary in sorted(out.glob("runs/*/*/*/seed*/summary.json")):
        directory = summary.parent
        tag, algo, dataset = directory.parts[-4], directory.parts[-3], directory.parts[-2].replace("__", "/")
        seed = int(directory.name[4:])
        seconds = None
        if (directory / "wall_seconds.json").exists():
            seconds = json.loads((directory / "wall_seconds.json").read_text())["seconds"]
        for line in (directory / "evaluations.jsonl").read_text().splitlines():
            row = json.loads(line)
            curve_rows.append({"tag": tag, "algorithm": algo, "dataset": dataset, "seed": seed, "step": row["step"],
                               "episodes": row["episodes"], "return_mean": round(row["return_mean"], 3),
                               "normalized_score": round(row.get("normalized_score", float("nan")), 3),
                               "normalized_stderr": round(float(np.std(row.get("normalized_scores", [0]), ddof=1)
                                                              / np.sqrt(row["episodes"])), 3),
                               "mean_length": float(np.mean(row["lengths"])), "run_seconds": seconds})
        for line in (directory / "metrics.jsonl").read_text().splitlines():
            row = json.loads(line)
            metric_rows.append({"tag": tag, "algorithm": algo, "dataset": dataset, "seed": seed, **row})
    write_csv(out / "curves.csv", curve_rows)
    keys: list[str] = []
    for row in metric_rows:
        keys += [k for k in row if k not in keys]
    write_csv(out / "metrics.csv", metric_rows, keys)
    print(f"wrote {out / 'curves.csv'} ({len(curve_rows)} rows) and {out / 'metrics.csv'} ({len(metric_rows)} rows)")


def write_csv(path: Path, rows: list[dict], keys: list[str] | None = None) -> None:
    if not rows:
        return
    keys = keys or list(rows[0])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def window_slope(steps: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Least-squares slope (points per 1,000 steps) and its standard error."""
    x = steps / 1000.0
    if len(x) < 3:
        return float("nan"), float("nan")
    coef = np.polyfit(x, scores, 1)
    resid = scores - np.polyval(coef, x)
    se = np.sqrt(resid @ resid / (len(x) - 2) / ((x - x.mean()) @ (x - x.mean())))
    return float(coef[0]), float(se)


def slopes_table(curves_csv: Path, window: int, tag: str | None = None) -> list[dict]:
    import pandas as pd

    curves = pd.read_csv(curves_csv)
    if tag is not None:
        curves = curves[curves.tag == tag]
    rows = []
    for (t, algo, dataset), group in curves.groupby(["tag", "algorithm", "dataset"]):
        mean = group.groupby("step").normalized_score.agg(["mean", "count"]).sort_index()
        steps, scores = mean.index.to_numpy(dtype=float), mean["mean"].to_numpy()
        for i in range(len(steps)):
            lo = max(0, i - window + 1)
            slope, se = window_slope(steps[lo:i + 1], scores[lo:i + 1])
            rows.append({"tag": t, "algorithm": algo, "dataset": dataset, "budget": int(steps[i]),
                         "seeds": int(mean["count"].iloc[i]), "headline_last2": round(float(scores[max(0, i - 1):i + 1].mean()), 2),
                         "slope_per_1k": round(slope, 3), "slope_se": round(se, 3),
                         "window_steps": f"{int(steps[lo])}-{int(steps[i])}"})
    return rows


def cmd_slopes(args) -> None:
    rows = slopes_table(Path(args.curves), args.window, args.tag)
    out = Path(args.curves).with_name(f"slopes_w{args.window}.csv")
    write_csv(out, rows)
    for row in rows:
        print(row)
    print(f"wrote {out}")


def cmd_behaviour(args) -> None:
    import gymnasium as gym
    import torch

    from offbench.checkpoint import load_checkpoint
    from offbench.data import load_dataset
    from offbench.train import build_algorithm

    rows = []
    for run in args.runs:
        run = Path(run)
        config = json.loads((run / "config.json").read_text())
        dataset = load_dataset(config["dataset"]["id"])
        if dataset.metadata.env_id != "Pendulum-v1":
            raise SystemExit(f"{run}: behaviour is for Pendulum-v1 runs only")
        algorithm = build_algorithm(config["algorithm"], dataset, config["algorithm_overrides"], config["train"]["seed"])
        algorithm.prepare(dataset)
        meta = load_checkpoint(run / "checkpoint", modules={"algorithm": algorithm})
        algorithm.eval()
        env = gym.make("Pendulum-v1")
        obs_log, act_log, returns = [], [], []
        for episode in range(args.episodes):
            obs, _ = env.reset(seed=episode)
            total, done = 0.0, False
            while not done:
                with torch.no_grad():
                    action = np.asarray(algorithm.act(obs[None].astype(np.float32)))[0]
                obs_log.append(obs)
                act_log.append(action)
                obs, reward, terminated, truncated, _ = env.step(action)
                total += reward
                done = terminated or truncated
            returns.append(total)
        obs_arr, act_arr = np.array(obs_log), np.abs(np.array(act_log)).reshape(len(act_log), -1)[:, 0]
        row = {"run": str(run), "step": meta["step"], "return_mean": round(float(np.mean(returns)), 1),
               "normalized": round(float(dataset.normalized_score(np.array(returns)).mean()), 1),
               "mean_cos_theta": round(float(obs_arr[:, 0].mean()), 3),
               "frac_upright": round(float((obs_arr[:, 0] > np.cos(np.pi / 10)).mean()), 3),
               "mean_abs_thetadot": round(float(np.abs(obs_arr[:, 2]).mean()), 2),
               "mean_abs_torque": round(float(act_arr.mean()), 2),
               "frac_full_torque": round(float((act_arr > 1.9).mean()), 3)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.csv:
        write_csv(Path(args.csv), rows)


def cmd_plot(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out = Path(args.dir)
    curves, metrics = pd.read_csv(out / "curves.csv"), pd.read_csv(out / "metrics.csv")
    curves, metrics = curves[curves.tag.isin(args.tags)], metrics[metrics.tag.isin(args.tags)]
    datasets = sorted(curves.dataset.unique())
    keys = sorted({(t, a) for t, a in zip(curves.tag, curves.algorithm)})
    palette = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    colours = {key: palette(i % palette.N) for i, key in enumerate(keys)}
    fig, axes = plt.subplots(2, len(datasets), figsize=(5 * len(datasets), 7), squeeze=False)
    for j, dataset in enumerate(datasets):
        for (tag, algo), group in curves[curves.dataset == dataset].groupby(["tag", "algorithm"]):
            label = algo if tag == "default" else f"{algo} ({tag})"
            seeds = group.seed.nunique()
            label += f" ({seeds} seeds)" if seeds > 1 else ""
            colour = colours[(tag, algo)]
            mean = group.groupby("step").normalized_score.mean()
            axes[0, j].plot(mean.index / 1000, mean.values, marker=".", label=label, color=colour)
            m = metrics[(metrics.dataset == dataset) & (metrics.tag == tag) & (metrics.algorithm == algo)]
            column = "q_data_mean" if algo == "cql" else "q_mean"
            if column in m:
                q = m.groupby("step")[column].mean()
                axes[1, j].plot(q.index / 1000, q.values, label=label, color=colour)
        axes[0, j].set_title(dataset.replace("lite/", ""))
        axes[0, j].set_xlabel("gradient steps (thousands)")
        axes[0, j].set_ylabel("normalised score (10 episodes; mean over seeds)")
        axes[0, j].axvline(8, color="grey", lw=0.8, ls="--")
        axes[0, j].legend(fontsize=7)
        axes[1, j].set_xlabel("gradient steps (thousands)")
        axes[1, j].set_ylabel("mean Q(s, a_data), training reward units")
        axes[1, j].set_yscale("symlog", linthresh=10)
        axes[1, j].axvline(8, color="grey", lw=0.8, ls="--")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--algos", nargs="+", required=True)
    run.add_argument("--datasets", nargs="+", required=True)
    run.add_argument("--seeds", nargs="+", type=int, default=[0])
    run.add_argument("--steps", type=int, required=True)
    run.add_argument("--eval-every", type=int, default=2000)
    run.add_argument("--protocol", default="lite")
    run.add_argument("--tag", default="default")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--out", required=True)
    collect = sub.add_parser("collect")
    collect.add_argument("out")
    slopes = sub.add_parser("slopes")
    slopes.add_argument("curves")
    slopes.add_argument("--window", type=int, default=4)
    slopes.add_argument("--tag")
    behaviour = sub.add_parser("behaviour")
    behaviour.add_argument("runs", nargs="+")
    behaviour.add_argument("--episodes", type=int, default=10)
    behaviour.add_argument("--csv")
    plot = sub.add_parser("plot")
    plot.add_argument("dir")
    plot.add_argument("--out", required=True)
    plot.add_argument("--tags", nargs="+", default=["default"])
    args = parser.parse_args(argv)
    {"run": cmd_run, "collect": cmd_collect, "slopes": cmd_slopes, "behaviour": cmd_behaviour,
     "plot": cmd_plot}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
