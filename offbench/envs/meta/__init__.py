"""Meta-RL task families, registered with Gymnasium on import, with exact references.

Every family implements one task API (:class:`MetaTaskEnv`: ``sample_tasks(n, seed)``,
``set_task(task)``, ``get_task()``, and ``info["task"]`` on every reset and step; see
:mod:`offbench.envs.meta.api`); :class:`MetaTrial` makes one Gymnasium episode a trial of
several episodes of one task.

=================================  ==================================  =========================================
id                                 module                              reference
=================================  ==================================  =========================================
``offbench/BernoulliBandit-v0``    :mod:`.bandits`                     random / UCB1 / TS / Gittins, exact Bayes
                                                                       value for n = 10 (:mod:`.bandit_references`)
``offbench/GridNavi-v0``           :mod:`.gridnavi`                    exact Bayes-optimal (:mod:`.gridnavi_bayes`)
``offbench/PointRobot-v0``         :mod:`.point_robot` (dense)         known-goal optimum
``offbench/SparsePointRobot-v0``   :mod:`.point_robot` (sparse)        known-goal optimum
``offbench/SignGrid-v0``           :mod:`.sign_grid`                   exact optimum, with and without the sign
``offbench/HalfCheetahVel-v0``     :mod:`.cheetah_vel` (MuJoCo)        a per-task oracle: SAC trained on
``offbench/HalfCheetahVelOracle-v0``  the same, the task observed          ``HalfCheetahVelOracle-v0``
=================================  ==================================  =========================================

The families are Gymnasium ids rather than entries of ``offbench.envs.tasks.TASKS``: that
registry describes offline-dataset tasks by a termination function of the *observation*,
and a meta-RL task's defining parameter is hidden from the observation (the goal, the arm
means); SignGrid's termination even depends on it. The ids register lazily (entry-point
strings), so importing this package does not import MuJoCo.
"""
from __future__ import annotations

from gymnasium.envs.registration import register, registry

from offbench.envs.meta.api import MetaTaskEnv, MetaTrial, Task, make_trial_env

_ENVS = {
    "offbench/BernoulliBandit-v0": ("offbench.envs.meta.bandits:BernoulliBanditEnv", {}),
    "offbench/GridNavi-v0": ("offbench.envs.meta.gridnavi:GridNaviEnv", {}),
    "offbench/PointRobot-v0": ("offbench.envs.meta.point_robot:PointRobotEnv", {"sparse": False}),
    "offbench/SparsePointRobot-v0": ("offbench.envs.meta.point_robot:PointRobotEnv", {"sparse": True}),
    "offbench/SignGrid-v0": ("offbench.envs.meta.sign_grid:SignGridEnv", {}),
    "offbench/HalfCheetahVel-v0": ("offbench.envs.meta.cheetah_vel:HalfCheetahVelEnv", {}),
    "offbench/HalfCheetahVelOracle-v0": ("offbench.envs.meta.cheetah_vel:HalfCheetahVelEnv", {"oracle": True}),
}
ENV_IDS = tuple(_ENVS)


def register_envs() -> None:
    """Register the ids (idempotent). The environments apply their own episode limits."""
    for env_id, (entry_point, kwargs) in _ENVS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point, kwargs=dict(kwargs))


register_envs()

__all__ = ["ENV_IDS", "MetaTaskEnv", "MetaTrial", "Task", "make_trial_env", "register_envs"]
