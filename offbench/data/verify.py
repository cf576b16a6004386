"""``offbench datasets verify``: is this file intact, and is it the data its card publishes?

Two questions, in order. First the file itself (:func:`read_dataset` with ``validate=True``):
structure, episode index, every recorded array checksum. Then, for a catalogue dataset, its
content against the card: the card's exact bytes, a statistically equal local rebuild vouched
for by a note (:mod:`offbench.data.provenance`), or neither, which is an error.
"""
from __future__ import annotations

from offbench.errors import OffbenchError


def verify_dataset(target: str, *, strict: bool = False) -> list[str]:
    """Verify a dataset id or file; the lines to show the user. Raises :class:`OffbenchError` on failure.

    ``strict``: accept only the card's own bytes, not a local rebuild whose statistics matched.
    """
    from offbench.data.catalogue import get_card, looks_like_path, resolve_dataset_path
    from offbench.data.dataset import read_dataset
    from offbench.data.mirrors import file_sha256
    from offbench.data.provenance import vouching_note

    path = resolve_dataset_path(target)
    dataset = read_dataset(path, validate=True)  # raises on any structural or checksum problem
    lines = [f"{path}: {dataset.num_steps:,} steps, {dataset.num_episodes:,} episodes; "
             f"arrays, episode index and {len(dataset.metadata.checksums)} array checksums OK"]
    card = None
    if not looks_like_path(target):
        card = get_card(target)
    elif dataset.metadata.dataset_id:
        try:
            card = get_card(dataset.metadata.dataset_id)
        except OffbenchError:
            card = None
    if card is None:
        return lines
    digest = dataset.content_sha256()
    note = None if strict else vouching_note(path, card, digest)
    if note:
        lines.append(f"local rebuild of {card.id}, not the published bytes: {note.get('reason')}; checked against "
                     f"the card when built: {note.get('comparison')}")
        return lines
    if card.content_sha256 and digest != card.content_sha256:
        raise OffbenchError(f"{path}: content sha256 {digest[:16]}… differs from the card of {card.id} "
                            f"({card.content_sha256[:16]}…): this is not the published data; "
                            f"re-download or rebuild it")
    file_digest = file_sha256(path)
    if card.sha256 and file_digest != card.sha256:
        lines.append("note: file sha256 differs from the published file (content identical: rebuilt locally "
                     "with other library versions)")
    elif card.sha256:
        lines.append(f"file sha256 matches the card of {card.id}")
    return lines
