"""Skill discovery and reward-free exploration (issue 18, course notes §16): DIAYN (``diayn.py``),
DADS (``dads.py``), METRA (``metra.py``), and the exploration baselines RND (``rnd.py``) and uniform
random actions (``uniform.py``); ``registry.TRAINERS`` names them. They share one loop,
``offbench/skill_loop.py``. Metrics the agents cannot game are in ``offbench/evaluation/skills.py``;
the reward-free point plane is ``offbench/PointPlane-v0``."""
