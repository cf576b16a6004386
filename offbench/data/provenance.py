"""How a local rebuild relates to the published data of its card.

A recipe rebuilds its dataset bit for bit on the machine class and library versions that made
the card. Elsewhere the bits can differ although nothing is wrong: torch's matrix products go
through MKL, whose kernels (and so the last bits of a float32 result) depend on the CPU, and one
changed bit in an action sends a chaotic simulator down another trajectory. The rebuild is then
another sample of the same behaviour, not the published file.

So a build that does not match the card's ``content_sha256`` is compared with the card's
statistics instead (``statistics_agree``). When they agree the file is kept and a note is written
beside it (``<file>.rebuild.json``: card hash, this hash, the reason, the comparison), which
``offbench datasets verify`` reads to report the file as a *statistically equal local rebuild*;
``publish`` never serves such a file as the card's data. When they disagree the build is refused:
that is a broken recipe, not a different CPU.
"""
from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np

from offbench.atomic import write_atomic

NOTE_SUFFIX = ".rebuild.json"

# How far a rebuild's mean episode return may sit from the card's, in standard errors of the
# difference. Rollout episodes are independent draws of one policy, so 5 SE is a wide margin.
ROLLOUT_TOLERANCE_SE = 5.0
# A replay buffer retrained on another CPU is another training run of the same configuration:
# its learning curve differs by more than episode noise, so the margin also allows a tenth of the
# card's return range.
REPLAY_TOLERANCE_RANGE = 0.10


def platform_description() -> str:
    """The machine class a build ran on: architecture, CPU model and torch's kernel level."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    except Exception:  # torch missing or too old to say
        capability = "unknown"
    return f"{platform.machine()} {cpu or 'unknown CPU'} (torch kernels: {capability})"


def mismatch_reason(card_files: dict[str, Any], here_versions: dict[str, str], here_commit: str | None = None) -> str:
    """Why a rebuild may differ from the card, and what would make it exact. With the same libraries,
    two causes remain: offbench's own code (the card's ``git_commit`` against ``here_commit``, this
    checkout's; a change to a network's float order changes a retrained behaviour policy's bits) and
    the CPU's floating-point kernels."""
    recorded = card_files.get("library_versions") or {}
    if not recorded:
        return "the card records no library versions to compare"
    differ = [name for name in recorded if name != "offbench" and here_versions.get(name) != recorded[name]]
    if differ:
        found = ", ".join(f"{name} {here_versions.get(name, 'not installed')} here, {recorded[name]} in the card"
                          for name in differ)
        pins = " ".join(f"{name}=={recorded[name].split('+')[0]}" for name in differ)
        return f"{found}: `pip install {pins}` to rebuild it exactly"
    built_on = card_files.get("platform")
    here = platform_description()
    where = f"the card was built on {built_on}, this is {here}" if built_on else f"this machine is {here}"
    card_commit = card_files.get("git_commit")
    code = ""
    if card_commit and here_commit and card_commit != here_commit:
        code = (f"the card was built at commit {card_commit[:7]} and this checkout is {here_commit[:7]}: a change to "
                f"the training code between them (`git log {card_commit[:7]}..{here_commit[:7]} -- offbench baselines`) "
                "changes a retrained network's last bits; or ")
    return (f"same library versions as the card ({', '.join(f'{k} {v}' for k, v in sorted(recorded.items()))}); "
            f"{code}{where}, and the CPU's floating-point kernels (MKL) change the last bits of every network's output")


def statistics_agree(card, returns: np.ndarray, steps: int) -> tuple[bool, str]:
    """Compare a rebuild's size and episode returns with the card's; (agree, one-line account)."""
    kind = card.recipe.get("kind")
    card_steps = int(card.size.get("steps", -1))
    if steps != card_steps:
        return False, f"{steps:,} steps, the card records {card_steps:,}"
    stats = card.returns
    if not stats or "mean" not in stats or len(returns) == 0:
        return False, "the card records no return statistics to compare with"
    n_card, n_here = int(card.size.get("episodes") or 1), len(returns)
    mean_here, std_here = float(np.mean(returns)), float(np.std(returns))
    se = math.sqrt(float(stats["std"]) ** 2 / n_card + std_here**2 / n_here)
    tolerance = ROLLOUT_TOLERANCE_SE * se
    if kind == "replay":
        tolerance += REPLAY_TOLERANCE_RANGE * (float(stats["max"]) - float(stats["min"]))
    gap = abs(mean_here - float(stats["mean"]))
    account = (f"mean episode return {mean_here:.2f} over {n_here:,} episodes, the card's {float(stats['mean']):.2f} "
               f"over {n_card:,} (gap {gap:.2f}, allowed {tolerance:.2f})")
    return gap <= tolerance, account


def note_path(dataset_path: Path) -> Path:
    return dataset_path.with_name(dataset_path.name + NOTE_SUFFIX)


def write_note(dataset_path: Path, *, card, content_sha256: str, reason: str, comparison: str) -> Path:
    """Record beside ``dataset_path`` that it is a statistically equal rebuild, not the card's bytes."""
    path = note_path(dataset_path)
    note = {"dataset_id": card.id, "card_content_sha256": card.content_sha256, "content_sha256": content_sha256,
            "platform": platform_description(), "reason": reason, "comparison": comparison}
    write_atomic(path, json.dumps(note, indent=2) + "\n")
    return path


def read_note(dataset_path: Path) -> dict | None:
    path = note_path(dataset_path)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def vouching_note(dataset_path: Path, card, content_sha256: str) -> dict | None:
    """The note that vouches for ``dataset_path`` as a rebuild of ``card``, if there is one: it must
    describe exactly these bytes and this card's published data."""
    note = read_note(dataset_path)
    if (note and card.content_sha256 and content_sha256 != card.content_sha256
            and note.get("content_sha256") == content_sha256 and note.get("card_content_sha256") == card.content_sha256):
        return note
    return None
