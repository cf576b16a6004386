"""The trial return of the zero-action policy (the cheetah standing still) on meta/cheetah-vel-v0's held-out tasks,
normalised like every run: the level RL² reached with the GridNavi settings.

    python docs/studies/meta-curves/cheetah_zero_action.py
"""
import json, numpy as np, gymnasium as gym
import offbench.envs.meta  # noqa
from offbench.envs.meta.benchmarks import get_benchmark, eval_tasks
b = get_benchmark("meta/cheetah-vel-v0")
tasks = eval_tasks(b, 200)
env = gym.make(b.env_id, disable_env_checker=True)
totals = []
for i, t in enumerate(tasks):
    tot = 0.0
    for e in range(2):
        env.reset(seed=i if e == 0 else None, options={"task": t})
        done = False
        while not done:
            _, r, te, tr, _ = env.step(np.zeros(6))
            tot += r; done = te or tr
    totals.append(tot)
totals = np.array(totals)
for n in (50, 200):
    ran, ref = b.references(n)
    print(n, totals[:n].mean(), 100 * (totals[:n].mean() - ran) / (ref - ran))
