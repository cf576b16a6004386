"""Skill-discovery and exploration trainers by name: (trainer class, config class). Every trainer
has the shared surface of ``offbench.skill_loop.SkillTrainer`` (``fit``, ``skill_rollouts``)."""
from baselines.skills.dads import DADSConfig, DADSTrainer
from baselines.skills.diayn import DIAYNConfig, DIAYNTrainer
from baselines.skills.metra import METRAConfig, METRATrainer
from baselines.skills.rnd import RNDConfig, RNDTrainer
from baselines.skills.uniform import UniformRandomCollector
from offbench.skill_loop import SkillLoopConfig

TRAINERS = {
    "diayn": (DIAYNTrainer, DIAYNConfig),
    "dads": (DADSTrainer, DADSConfig),
    "metra": (METRATrainer, METRAConfig),
    "rnd": (RNDTrainer, RNDConfig),
    "random": (UniformRandomCollector, SkillLoopConfig),
}
