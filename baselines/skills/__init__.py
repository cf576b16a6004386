"""Skill discovery (issue 18, course notes §16): DIAYN (``diayn.py``). Metrics the agents cannot game
are in ``offbench/evaluation/skills.py``; the reward-free point plane is ``offbench/PointPlane-v0``."""
