"""One colour per algorithm, the same in ``offbench report``'s figures and on the leaderboard.

The palette is matplotlib's ``tab10`` plus a dark teal and a dark olive: twelve colours that
stay distinct side by side (every pair at least 25 apart in CIELAB, where the seaborn
"colorblind" palette used before put two oranges 21 apart). Colours are assigned per algorithm
name, not per position in a figure, so an algorithm keeps its colour when others are added:

- offbench's own baselines have fixed slots (``BUILTIN_SLOTS``);
- any other algorithm prefers the slot given by a hash of its name; if that slot is taken it
  gets the next free one (others sorted by label, so the result is deterministic);
- a second label with the same algorithm (two leaderboard entries of IQL, say) gets a free slot
  of its own the same way, so every label in a figure is distinct up to twelve labels.

Past twelve labels colours repeat: no palette keeps more lines apart.
"""
from __future__ import annotations

import zlib
from typing import Iterable, Mapping

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
           "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#005544", "#665500")

# offbench.algorithm.BUILTIN, in its order, then the skills suite's methods (offbench.skill_runs.SKILL_METHODS;
# a test checks they agree). Slots are distinct within a suite's baselines, which share figures; the goal
# suite's six reuse the first six colours, the skills suite's five the first four and grey for random actions.
BUILTIN_SLOTS = {"bc": 0, "percent_bc": 1, "awr": 2, "awac": 3, "td3_bc": 4, "td3": 10, "cql": 5, "iql": 6, "dt": 7,
                 "mopo": 8, "combo": 9,
                 "gcbc": 0, "gcivl": 1, "gciql": 2, "qrl": 3, "crl": 4, "hiql": 5,
                 "context_iql": 10,
                 "diayn": 0, "dads": 1, "metra": 2, "rnd": 3, "random": 7}
#: the baselines that appear in the same figures (one suite each)
SUITE_GROUPS = (("bc", "percent_bc", "awr", "awac", "td3_bc", "cql", "iql", "dt", "mopo", "combo", "td3"),
                ("gcbc", "gcivl", "gciql", "qrl", "crl", "hiql"), ("context_iql",),
                ("diayn", "dads", "metra", "rnd", "random"))


def preferred_slot(algorithm: str) -> int:
    """The palette index an algorithm gets unless another label already holds it."""
    if algorithm in BUILTIN_SLOTS:
        return BUILTIN_SLOTS[algorithm]
    return zlib.crc32(algorithm.encode()) % len(PALETTE)


def assign_colors(labels: Iterable[str], algorithms: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{label: hex colour}`` for the labels of one figure; ``algorithms`` maps a label to its
    algorithm name (default: the label is the algorithm, as in ``offbench report``)."""
    labels = list(dict.fromkeys(labels))
    algorithm_of = {label: (algorithms or {}).get(label, label) for label in labels}
    colors: dict[str, str] = {}
    taken: set[int] = set()
    # first the baselines, each at its fixed slot (the first label of a baseline, by name)
    for label in sorted(labels):
        slot = BUILTIN_SLOTS.get(algorithm_of[label])
        if slot is not None and slot not in taken:
            colors[label] = PALETTE[slot]
            taken.add(slot)
    # then everything else: its preferred slot, else the next free one
    for label in sorted(set(labels) - set(colors)):
        slot = preferred_slot(algorithm_of[label])
        free = [s % len(PALETTE) for s in range(slot, slot + len(PALETTE)) if s % len(PALETTE) not in taken]
        slot = free[0] if free else slot
        colors[label] = PALETTE[slot]
        taken.add(slot)
    return {label: colors[label] for label in labels}
