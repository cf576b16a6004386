"""Online meta-RL baselines on the task families of ``offbench.envs.meta`` (docs/meta-rl.md):
MAML (``maml.py``). RL² is PPO with a recurrent policy on a trial (``baselines/online/ppo.py``)."""
