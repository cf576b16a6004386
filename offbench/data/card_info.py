"""What ``offbench datasets info`` shows: a catalogue card, and its cached file's arrays when it is built."""
from __future__ import annotations

import json
from typing import Any


def format_count(n) -> str:
    """``12,345``, or ``-`` where a card records no count."""
    return f"{int(n):,}" if n is not None and n != "" else "-"


def card_info(dataset_id: str) -> dict[str, Any]:
    """The card's fields, where it lives, and (when cached) the file's steps, episodes, terminated episodes,
    arrays (shape, dtype) and local-rebuild note (None: the cached file is the card's own data)."""
    from offbench.data.catalogue import cached_path, get_card

    card = get_card(dataset_id)
    path = cached_path(card.id)
    info = {**card.to_toml_dict(), "card": str(card.path), "cached": str(path) if path.exists() else None}
    if path.exists():
        from offbench.data.dataset import read_dataset
        from offbench.data.provenance import read_note

        ds = read_dataset(path)
        info["file"] = {"steps": ds.num_steps, "episodes": ds.num_episodes,
                        "terminated_episodes": int(ds.terminations[ds.episode_starts + ds.episode_lengths - 1].sum()),
                        "arrays": {p: [list(a.shape), str(a.dtype)] for p, a in sorted(ds.arrays.items())}}
        info["local_rebuild"] = read_note(path)
    return info


def card_info_lines(info: dict[str, Any]) -> list[str]:
    """:func:`card_info` as the text ``offbench datasets info`` prints."""
    lines = [info["id"], f"  {info.get('description', '')}", f"  env: {info['env_id']}", f"  card: {info['card']}",
             f"  recipe: {json.dumps(info.get('recipe', {}))}"]
    ref, size, r = info.get("reference_scores"), info.get("size"), info.get("returns")
    if ref:
        lines.append(f"  reference scores: random {ref.get('random')}, expert {ref.get('expert')}")
    if size:
        lines.append(f"  size: {format_count(size.get('steps'))} steps, {format_count(size.get('episodes'))} episodes, "
                     f"{format_count(size.get('bytes'))} bytes")
    if r:
        lines.append(f"  episode returns: mean {r['mean']:.2f}, std {r['std']:.2f}, min {r['min']:.2f}, max {r['max']:.2f}")
    sha = (info.get("files") or {}).get("sha256")
    if sha:
        lines.append(f"  file sha256: {sha}")
    lines.append(f"  cached: {info['cached'] or 'no (offbench datasets download|build ' + info['id'] + ')'}")
    if info.get("local_rebuild"):
        lines.append(f"  local rebuild, not the published bytes: {info['local_rebuild'].get('comparison')}")
    for p, (shape, dtype) in (info.get("file") or {}).get("arrays", {}).items():
        lines.append(f"    {p:<34} {str(tuple(shape)):<16} {dtype}")
    for entry in info.get("changelog", []):
        lines.append(f"  {entry.get('version')} ({entry.get('date')}): {entry.get('notes')}")
    return lines
