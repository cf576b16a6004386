"""Online meta-RL baselines on the task families of ``offbench.envs.meta`` (docs/meta-rl.md):
RL² (``rl2.py``: the recurrent PPO of ``baselines/online/ppo.py`` on trials) and MAML (``maml.py``)."""
