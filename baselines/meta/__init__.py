"""Online meta-RL baselines on the task families of ``offbench.envs.meta`` (docs/meta-rl.md):
RL² (``rl2.py``: the recurrent PPO of ``baselines/online/ppo.py`` on trials), MAML (``maml.py``), PEARL
(``pearl.py``) and DREAM (``dream.py``); ``offbench/meta_runs.py`` runs them on the protocol loop."""
