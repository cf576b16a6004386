"""Reference returns of the literature, to put offbench's scores on the literature's scale.

offbench normalises a dataset's scores with the dataset's own reference returns (its card's
``reference_scores``: the returns of a uniformly random policy and of the expert that made the
data, both measured here). Papers on D4RL normalise with D4RL's constants instead, so the same return gives
a different number. For tasks that D4RL also has, ``offbench report`` and the leaderboard add a
second, labelled table normalised with D4RL's constants, for comparison with papers; the
headline stays the dataset's own normalisation.

The constants belong to the task (the environment), not to a dataset file, so they are keyed
by task name (``offbench.envs.tasks``). They are ``REF_MIN_SCORE`` / ``REF_MAX_SCORE`` of D4RL's
``d4rl/infos.py`` for its v2 locomotion datasets (REFERENCE.md section 1). D4RL measured them on
Gym's v2 MuJoCo tasks under mujoco-py; offbench's tasks are Gymnasium's v5, whose rewards and
models differ in places (docs/evaluation.md, "Scores on D4RL's scale"), so a D4RL-normalised
score here is on D4RL's scale but is not a score on D4RL's environments or datasets.
"""
from __future__ import annotations

from dataclasses import dataclass

from offbench.errors import OffbenchError

D4RL_SOURCE = "d4rl/infos.py: REF_MIN_SCORE and REF_MAX_SCORE of D4RL's v2 locomotion datasets"
#: The title of the D4RL-normalised table, in reports and on the board.
D4RL_TITLE = "D4RL-normalised headline score (D4RL's reference returns, for comparison with papers)"


@dataclass(frozen=True)
class LiteratureReference:
    """A task's random and expert returns as a benchmark of the literature published them."""

    benchmark: str  # "D4RL"
    task: str  # offbench's task name (``hopper``)
    literature_env_id: str  # the environment the returns were measured on (``Hopper-v2``)
    random: float
    expert: float

    def normalise(self, value: float) -> float:
        """``100 (value - random) / (expert - random)``: 0 = random, 100 = expert."""
        return 100.0 * (float(value) - self.random) / (self.expert - self.random)


#: D4RL's reference returns per offbench task (d4rl/infos.py).
D4RL_REFERENCES: dict[str, LiteratureReference] = {
    ref.task: ref for ref in (
        LiteratureReference("D4RL", "halfcheetah", "HalfCheetah-v2", random=-280.178953, expert=12135.0),
        LiteratureReference("D4RL", "hopper", "Hopper-v2", random=-20.272305, expert=3234.3),
        LiteratureReference("D4RL", "walker2d", "Walker2d-v2", random=1.629008, expert=4592.3),
    )
}


def d4rl_reference(dataset_id: str) -> LiteratureReference | None:
    """D4RL's reference returns for the task of ``dataset_id`` (``locomotion/hopper/medium-v0``),
    or None where D4RL has no such task or the id names no known task."""
    from offbench.envs.tasks import task_for_dataset

    try:
        task = task_for_dataset(dataset_id)
    except OffbenchError:
        return None
    return D4RL_REFERENCES.get(task.name)


# ---------------------------------------------------------------------- OGBench's published success rates
OGBENCH_SOURCE = ("OGBench (Park et al., ICLR 2025), Table 2: success rate (%), mean ± std over 8 seeds, "
                  "1M steps at batch 1024, 3x512 networks, the mean of the evaluations at 800k, 900k and 1M steps")
#: The title of the published-results table in reports of goal datasets.
OGBENCH_TITLE = "Published: OGBench Table 2 (success rate %, for comparison; not offbench's runs)"

_OGBENCH_ALGOS = ("gcbc", "gcivl", "gciql", "qrl", "crl", "hiql")
_OGBENCH_TABLE2 = {  # dataset: (mean, std) per algorithm in _OGBENCH_ALGOS order (REFERENCE.md section 7)
    "goal/pointmaze-medium/navigate-v0": ((9, 6), (63, 6), (53, 8), (82, 5), (29, 7), (79, 5)),
    "goal/pointmaze-large/navigate-v0": ((29, 6), (45, 5), (34, 3), (86, 9), (39, 7), (58, 5)),
    "goal/pointmaze-giant/navigate-v0": ((1, 2), (0, 0), (0, 0), (68, 7), (27, 10), (46, 9)),
    "goal/pointmaze-medium/stitch-v0": ((23, 18), (70, 14), (21, 9), (80, 12), (0, 1), (74, 6)),
    "goal/pointmaze-large/stitch-v0": ((7, 5), (12, 6), (31, 2), (84, 15), (0, 0), (13, 6)),
    "goal/pointmaze-giant/stitch-v0": ((0, 0), (0, 0), (0, 0), (50, 8), (0, 0), (0, 0)),
}


def ogbench_success(dataset_id: str, algorithm: str) -> tuple[float, float] | None:
    """OGBench's published (mean, std) success rate in % for an offbench goal dataset and baseline
    (``goal/pointmaze-medium/navigate-v0``, ``hiql``), or None where Table 2 has no such cell
    (teleport, other datasets, other algorithms)."""
    row = _OGBENCH_TABLE2.get(dataset_id)
    if row is None or algorithm not in _OGBENCH_ALGOS:
        return None
    mean, std = row[_OGBENCH_ALGOS.index(algorithm)]
    return float(mean), float(std)
