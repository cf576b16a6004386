"""File format v1 of offbench's HDF5 trajectory store: names, layout and attributes.

The full specification for users is ``docs/dataset-format.md``; this module is its single
source of truth in code. Layout (N steps, E episodes)::

    /observations                 [N, ...]   or a group of such arrays for Dict observations
    /actions                      [N, ...]
    /rewards                      [N] float32
    /terminations                 [N] bool   true MDP end: bootstrap with 0
    /truncations                  [N] bool   time limit or data cut: bootstrap from next obs
    /behaviour_log_prob           [N] float64  optional
    /policy_id                    [N] int32    optional, index into attr behaviour_policies
    /task_id                      [N] int32    optional
    /sim_state/{qpos,qvel,...}    [N, ...]     optional simulator state
    /infos/<name>                 [N, ...]     optional
    /episodes/start               [E] int64
    /episodes/length              [E] int64
    /episodes/source              [E] int32    index into attr sources (provenance)
    /episodes/final/observations  [E, ...]   (group for Dict) final observation of each episode
    /episodes/final/sim_state/*   [E, ...]   final simulator state of each episode

Steps of episode e are ``start[e] : start[e] + length[e]``; episodes are stored back to
back in order. The next observation of step i is observations[i + 1] inside an episode
and ``episodes/final/observations[e]`` at its last step, so it is exact at truncations.
"""
from __future__ import annotations

FORMAT_VERSION = 1

# Per-step arrays every file has.
REQUIRED_STEP_ARRAYS = ("actions", "rewards", "terminations", "truncations")
# Optional per-step arrays with a fixed meaning.
OPTIONAL_STEP_ARRAYS = ("behaviour_log_prob", "policy_id", "task_id")
# Groups whose members are "state" arrays: stored per step, plus a final value per episode.
STATE_GROUPS = ("observations", "sim_state")
INFO_GROUP = "infos"
EPISODE_GROUP = "episodes"
FINAL_PREFIX = "episodes/final/"

# Fixed storage dtypes (observations and actions follow their spaces).
FIXED_DTYPES = {
    "rewards": "float32",
    "terminations": "bool",
    "truncations": "bool",
    "behaviour_log_prob": "float64",
    "policy_id": "int32",
    "task_id": "int32",
    "episodes/start": "int64",
    "episodes/length": "int64",
    "episodes/source": "int32",
}

# Root attributes. JSON-valued ones hold UTF-8 JSON text.
ATTR_FORMAT_VERSION = "offbench_format_version"
JSON_ATTRS = (
    "env_spec",
    "observation_space",
    "action_space",
    "recipe",
    "behaviour_policies",
    "reference_scores",
    "library_versions",
    "checksums",
    "sources",
)
TEXT_ATTRS = ("dataset_id", "env_id", "description")

# Largest HDF5 chunk: big enough that a full read is a few sequential passes (chunks are
# also capped at the rows of the first block written, so small files stay small).
CHUNK_BYTES = 1024 * 1024


def final_path(state_path: str) -> str:
    """Where the per-episode final value of a state array lives."""
    return FINAL_PREFIX + state_path


def is_state_path(path: str) -> bool:
    return path.split("/", 1)[0] in STATE_GROUPS
