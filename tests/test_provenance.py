"""How a rebuild that is not bit-identical is compared with its card (offbench.data.provenance)."""
from __future__ import annotations

import numpy as np

from offbench.data import provenance
from offbench.data.catalogue import DatasetCard


def card(kind="rollout", steps=1000, episodes=100, mean=10.0, std=2.0, low=5.0, high=15.0, **files):
    return DatasetCard(id="test/x/medium-v0", env_id="X", description="", recipe={"kind": kind},
                       size={"steps": steps, "episodes": episodes},
                       returns={"mean": mean, "std": std, "min": low, "max": high}, files=files)


def test_rollout_margin_is_five_standard_errors_of_the_difference():
    returns = np.full(100, 10.0)
    # SE of the difference: sqrt(2^2 / 100 + 0 / 100) = 0.2, so the margin is 1.0
    agree, account = provenance.statistics_agree(card(), returns + 0.99, steps=1000)
    assert agree and "gap 0.99, allowed 1.00" in account
    agree, account = provenance.statistics_agree(card(), returns + 1.01, steps=1000)
    assert not agree and "mean episode return 11.01 over 100 episodes, the card's 10.00 over 100" in account


def test_a_replay_buffer_also_gets_a_tenth_of_the_return_range():
    returns = np.full(100, 11.9)  # margin 1.0 + 0.1 * (15 - 5) = 2.0
    assert provenance.statistics_agree(card(kind="replay"), returns, steps=1000)[0]
    assert not provenance.statistics_agree(card(kind="rollout"), returns, steps=1000)[0]
    assert not provenance.statistics_agree(card(kind="replay"), returns + 0.2, steps=1000)[0]


def test_the_step_count_must_be_equal():
    agree, account = provenance.statistics_agree(card(), np.full(100, 10.0), steps=999)
    assert not agree and account == "999 steps, the card records 1,000"


def test_a_card_without_statistics_cannot_vouch_for_a_rebuild():
    bare = card()
    bare.returns = {}
    assert provenance.statistics_agree(bare, np.full(100, 10.0), steps=1000) == (
        False, "the card records no return statistics to compare with")


def test_the_reason_names_differing_libraries_and_their_pins():
    recorded = {"offbench": "0.0.1", "numpy": "1.0.0", "torch": "2.13.0+cpu", "mujoco": "4.0.0"}
    here = {"offbench": "0.1.0", "numpy": "2.4.6", "torch": "2.13.0+cpu"}
    reason = provenance.mismatch_reason({"library_versions": recorded}, here)
    assert "numpy 2.4.6 here, 1.0.0 in the card" in reason and "mujoco not installed here, 4.0.0 in the card" in reason
    assert "`pip install numpy==1.0.0 mujoco==4.0.0`" in reason and "offbench" not in reason and "torch" not in reason
    same = provenance.mismatch_reason({"library_versions": here, "platform": "aarch64 Some CPU"}, dict(here))
    assert same.startswith("same library versions as the card") and "the card was built on aarch64 Some CPU" in same
    assert provenance.mismatch_reason({}, here) == "the card records no library versions to compare"
    # a card built at another commit: the code between the two is named as a cause before the CPU
    moved = provenance.mismatch_reason({"library_versions": here, "git_commit": "5d473a9ad1"}, dict(here), "4f89dda0c")
    assert "the card was built at commit 5d473a9 and this checkout is 4f89dda" in moved
    assert "`git log 5d473a9..4f89dda -- offbench baselines`" in moved and moved.endswith("every network's output")
    assert "built at commit" not in provenance.mismatch_reason(
        {"library_versions": here, "git_commit": "5d473a9ad1"}, dict(here), "5d473a9ad1")


def test_notes_round_trip_beside_the_file(tmp_path):
    path = tmp_path / "medium-v0.hdf5"
    c = card(content_sha256="a" * 64)
    written = provenance.write_note(path, card=c, content_sha256="b" * 64, reason="r", comparison="c")
    assert written == tmp_path / "medium-v0.hdf5.rebuild.json"
    note = provenance.read_note(path)
    assert note["card_content_sha256"] == "a" * 64 and note["content_sha256"] == "b" * 64
    assert note["platform"] == provenance.platform_description()
    written.write_text("{not json")
    assert provenance.read_note(path) is None
