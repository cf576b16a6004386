"""The skill-discovery suite's environments by id: the ``skills`` protocols name them where the
offline suites name datasets (``offbench/skill_runs.py`` runs one method on one of them).

An id (``skills/point-plane-v0``) fixes the Gymnasium environment and its arguments, and which
observation coordinates are the agent's x-y position (the plane that coverage counts 1 x 1 cells
of and the trajectory figure draws):

- ``skills/point-plane-v0``: ``offbench/PointPlane-v0``, x-y (0, 1): the reward-free plane [-10, 10]^2,
  50-step episodes;
- ``skills/pointmaze-medium-v0``: ``offbench/PointMazeRewardFree-v0``, x-y (0, 1): OGBench's PointMaze-medium
  without reward, 200-step episodes from one start (needs ``ogbench``); figures draw its walls;
- ``skills/halfcheetah-v0``: ``offbench/halfcheetah-reward-free-v0``, (x, z) at (0, 1): HalfCheetah-v5 with x
  kept and reward 0, 200-step episodes; coverage counts 1 m/s bins of the x velocity (index 9).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from offbench.errors import OffbenchError


@dataclass(frozen=True)
class SkillEnvironment:
    environment_id: str
    env_id: str  # the Gymnasium id
    description: str
    env_kwargs: dict = field(default_factory=dict)
    xy: tuple[int, int] = (0, 1)  # the observation's x-y coordinates (final distance, trajectory figures)
    extent: float | None = None  # positions lie in [-extent, extent]^2 (figures), None if unbounded
    coverage_dims: tuple[int, ...] | None = None  # the coordinates coverage counts cells of (None: ``xy``)
    coverage_cell: float = 1.0  # the cells' width in those coordinates
    #: the environment's time limit in steps (an episode may end sooner), None if unknown; the
    #: leaderboard bounds a submitted coverage with it (``offbench.leaderboard.validate.coverage_bound``)
    max_episode_steps: int | None = None
    maze: str | None = None  # an OGBench point maze's name: the figures draw its walls
    xy_names: tuple[str, str] = ("x", "y")  # what the ``xy`` coordinates are, for the figures' axes

    def walls(self) -> list[tuple[float, float, float, float]]:
        """The environment's wall rectangles ``(x_min, y_min, width, height)`` for figures; none
        but a maze's, and none when ``ogbench`` is not installed (the figure is drawn without)."""
        if self.maze is None:
            return []
        from offbench.envs import pointmaze

        try:
            return pointmaze.maze_walls(self.maze)
        except OffbenchError:
            return []

    @property
    def coverage_coordinates(self) -> tuple[int, ...]:
        return tuple(self.coverage_dims) if self.coverage_dims is not None else tuple(self.xy)

    def make(self):
        import gymnasium as gym

        import offbench.envs  # noqa: F401 - registers offbench's ids

        return gym.make(self.env_id, disable_env_checker=True, **self.env_kwargs)


SKILL_ENVIRONMENTS = {e.environment_id: e for e in (
    SkillEnvironment("skills/point-plane-v0", "offbench/PointPlane-v0",
                     "the reward-free point plane: positions in [-10, 10]^2, actions in [-1, 1]^2, 50-step episodes "
                     "from the origin", extent=10.0, max_episode_steps=50),
    SkillEnvironment("skills/pointmaze-medium-v0", "offbench/PointMazeRewardFree-v0",
                     "OGBench's PointMaze-medium without reward: positions in the maze's corridors (cells 4 wide, "
                     "centres 0 to 24 in x and y), actions in [-1, 1]^2 moving at most 0.2 a step, 200-step episodes "
                     "from the start cell of evaluation task 1", env_kwargs={"maze": "medium", "episode_length": 200},
                     max_episode_steps=200, maze="medium"),
    SkillEnvironment("skills/halfcheetah-v0", "offbench/halfcheetah-reward-free-v0",
                     "Gymnasium's HalfCheetah-v5 with the x position kept in the observation (index 0; the z height "
                     "is 1, the x velocity 9), 200-step episodes, reward 0 (offbench/envs/cheetah_tasks.py). "
                     "Coverage counts distinct 1 m/s bins of the x velocity (the issue's measure for a runner); the "
                     "final distance and the figures use (x, z)",
                     xy=(0, 1), coverage_dims=(9,), coverage_cell=1.0, max_episode_steps=200, xy_names=("x", "z")),
)}


def get_skill_environment(environment_id: str) -> SkillEnvironment:
    """The environment of an id; :class:`OffbenchError` naming the id, close matches and the known ones."""
    try:
        return SKILL_ENVIRONMENTS[environment_id]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(environment_id), list(SKILL_ENVIRONMENTS), n=3)
        raise OffbenchError(f"unknown skill environment {environment_id!r}"
                            + (f" (did you mean {', '.join(close)}?)" if close else "")
                            + f": use one of {sorted(SKILL_ENVIRONMENTS)}") from None


def is_skill_environment(identifier: str) -> bool:
    return identifier in SKILL_ENVIRONMENTS
