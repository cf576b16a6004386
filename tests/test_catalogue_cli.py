"""The catalogue and the `offbench datasets` commands, end to end on real rollouts."""
from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from offbench import load_dataset
from offbench.cli import main
from offbench.data import provenance
from offbench.data.catalogue import cached_path, get_card, list_cards, read_card
from offbench.errors import DatasetNotFoundError, OffbenchError


CARD = """\
id = "{id}"
env_id = "Pendulum-v1"
description = "test card"
format_version = 1

[recipe]
{recipe}

[reference_scores]
random = -1200.0
expert = -150.0

[[changelog]]
version = "v0"
date = "2026-11-24"
notes = "test"
"""


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    root = tmp_path / "catalogue"
    monkeypatch.setenv("OFFBENCH_CATALOGUE", str(root))

    def add(dataset_id, recipe):
        path = root / (dataset_id + ".toml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(CARD.format(id=dataset_id, recipe=textwrap.dedent(recipe)))
        return path

    add("test/pendulum/random-v0", 'kind = "rollout"\nenv_id = "Pendulum-v1"\npolicy = "uniform_random"\n'
                                   'steps = 650\nseed = 3\nmax_episode_steps = 200')
    add("test/pendulum/expert-v0", 'kind = "rollout"\nenv_id = "Pendulum-v1"\npolicy = "pendulum_swingup"\n'
                                   'steps = 400\nseed = 4')
    add("test/pendulum/random-b-v0", 'kind = "rollout"\nenv_id = "Pendulum-v1"\npolicy = "uniform_random"\n'
                                     'steps = 400\nseed = 5')
    add("test/pendulum/mixed-v0", 'kind = "mix"\nsources = ["test/pendulum/random-v0", "test/pendulum/random-b-v0"]')
    add("test/pendulum/policymix-v0", 'kind = "mix"\nenv_id = "Pendulum-v1"\nsources = ["test/pendulum/random-v0", '
                                      '{ policy = "uniform_random", steps = 400, seed = 9 }]\n'
                                      'proportions = [0.5, 0.5]\nby = "steps"\ntotal = 600\nseed = 2')
    add("test/pendulum/badmix-v0", 'kind = "mix"\nsources = ["test/pendulum/random-v0", "test/pendulum/expert-v0"]')
    return add


def test_build_rollout_semantics(catalogue, capsys):
    assert main(["datasets", "build", "test/pendulum/random-v0", "--quiet"]) == 0
    ds = load_dataset("test/pendulum/random-v0", validate=True)
    assert ds.num_steps == 650 and ds.episode_lengths.tolist() == [200, 200, 200, 50]
    ends = ds.episode_starts + ds.episode_lengths - 1
    assert ds.truncations[ends].all() and not ds.terminations.any()  # time limits and the budget cut
    # Exact behaviour log-probs of the uniform policy on [-2, 2]: log(1/4).
    np.testing.assert_allclose(ds.extra("behaviour_log_prob"), np.log(0.25))
    # Stored simulator state reproduces the observation: obs = [cos th, sin th, th_dot].
    th, thdot = ds.arrays["sim_state/state"].T
    np.testing.assert_allclose(ds.observations, np.stack([np.cos(th), np.sin(th), thdot], 1), atol=1e-6)
    np.testing.assert_allclose(ds.next_state("sim_state/state")[ends[0]], ds.arrays["episodes/final/sim_state/state"][0])
    # Rewards are Pendulum's cost of the stored state and action.
    wrapped = (th + np.pi) % (2 * np.pi) - np.pi
    cost = wrapped**2 + 0.1 * thdot**2 + 0.001 * ds.actions[:, 0].astype(np.float64) ** 2
    np.testing.assert_allclose(ds.rewards, -cost, rtol=1e-5, atol=1e-5)
    assert ds.metadata.reference_scores == {"random": -1200.0, "expert": -150.0}
    assert ds.metadata.env_spec["id"] == "Pendulum-v1"


def test_build_is_deterministic_and_checked_against_the_card(catalogue, capsys):
    assert main(["datasets", "build", "test/pendulum/random-v0", "--quiet", "--update-card"]) == 0
    card = get_card("test/pendulum/random-v0")
    assert card.size == {"steps": 650, "episodes": 4, "bytes": cached_path(card.id).stat().st_size}
    first = cached_path(card.id).read_bytes()
    assert main(["datasets", "build", "test/pendulum/random-v0", "--quiet", "--force"]) == 0
    assert cached_path(card.id).read_bytes() == first  # byte-identical rebuild
    assert provenance.read_note(cached_path(card.id)) is None  # an exact build carries no note
    # A card whose recorded content differs (another CPU made it) but whose statistics this build
    # matches: --strict refuses it and keeps the cached file ...
    card.files["content_sha256"] = "0" * 64
    card.save()
    assert main(["datasets", "build", "test/pendulum/random-v0", "--quiet", "--force", "--strict"]) == 2
    err = capsys.readouterr().err
    assert "records 0000000000000000" in err and "same library versions as the card" in err and "--strict" in err
    assert cached_path(card.id).read_bytes() == first
    assert not list(cached_path(card.id).parent.glob(".*staging*"))
    assert main(["datasets", "verify", card.id]) == 2  # the cached file is not the card's data
    capsys.readouterr()
    # ... by default it is kept as a local rebuild, with a note that verify reads
    assert main(["datasets", "build", "test/pendulum/random-v0", "--quiet", "--force"]) == 0
    err = capsys.readouterr().err
    assert "statistics agree with the card" in err and "gap 0.00" in err
    note = provenance.read_note(cached_path(card.id))
    assert note["card_content_sha256"] == "0" * 64 and note["content_sha256"] == load_dataset(card.id).content_sha256()
    assert main(["datasets", "verify", card.id]) == 0
    assert "local rebuild of test/pendulum/random-v0, not the published bytes" in capsys.readouterr().out
    assert main(["datasets", "info", card.id]) == 0
    assert "local rebuild, not the published bytes: mean episode return" in capsys.readouterr().out
    assert main(["datasets", "verify", card.id, "--strict"]) == 2
    capsys.readouterr()
    # --allow-mismatch keeps the file unchecked and unvouched: no note, and verify refuses it
    assert main(["datasets", "build", "test/pendulum/random-v0", "--quiet", "--force", "--allow-mismatch"]) == 0
    assert provenance.read_note(cached_path(card.id)) is None
    assert main(["datasets", "verify", card.id]) == 2
    capsys.readouterr()
    # A card whose returns the recipe does not reproduce: refused, with the comparison.
    card.returns["mean"] += 10 * card.returns["std"]
    card.save()
    assert main(["datasets", "build", "test/pendulum/random-v0", "--quiet", "--force"]) == 2
    err = capsys.readouterr().err
    assert "statistics disagree with the card" in err and "allowed" in err
    # A card built with another library release: the error names the library and the pin to install.
    card.files["library_versions"] = dict(card.files["library_versions"], numpy="1.0.0")
    card.save()
    assert main(["datasets", "build", "test/pendulum/random-v0", "--quiet", "--force", "--strict"]) == 2
    err = capsys.readouterr().err
    assert f"numpy {np.__version__} here, 1.0.0 in the card" in err and "pip install numpy==1.0.0" in err
    # Building it exactly again removes the note.
    card.files["content_sha256"] = note["content_sha256"]
    card.save()
    assert main(["datasets", "build", "test/pendulum/random-v0", "--quiet", "--force"]) == 0
    assert provenance.read_note(cached_path(card.id)) is None


def test_mix_recipe_builds_sources_first(catalogue):
    assert main(["datasets", "build", "test/pendulum/mixed-v0", "--quiet"]) == 0
    ds = load_dataset("test/pendulum/mixed-v0", validate=True)
    assert ds.num_steps == 1050
    assert ds.episode_sources.tolist() == [0, 0, 0, 0, 1, 1]
    assert [p["name"] for p in ds.metadata.behaviour_policies] == ["uniform_random", "uniform_random"]
    assert cached_path("test/pendulum/random-v0").exists() and cached_path("test/pendulum/random-b-v0").exists()
    assert ds.extra("policy_id").tolist() == [0] * 650 + [1] * 400
    assert [s["mixed_from"] for s in ds.metadata.sources] == ["test/pendulum/random-v0", "test/pendulum/random-b-v0"]


def test_mix_recipe_with_a_policy_source(catalogue):
    assert main(["datasets", "build", "test/pendulum/policymix-v0", "--quiet"]) == 0
    ds = load_dataset("test/pendulum/policymix-v0", validate=True)
    steps_per_source = np.bincount(ds.episode_sources, weights=ds.episode_lengths, minlength=2)
    assert steps_per_source[0] >= 300 and steps_per_source[1] >= 300  # whole episodes, >= 50% of 600 each
    assert ds.metadata.sources[1]["policy"] == "uniform_random"
    assert ds.metadata.sources[1]["recipe"]["seed"] == 9
    assert not list(cached_path("test/pendulum/policymix-v0").parent.glob("*source*"))


def test_mix_refuses_sources_with_different_arrays(catalogue, capsys):
    # The scripted expert is deterministic, so it stores no behaviour log-probs; a mix with a
    # stochastic source would silently lose them, so it is refused.
    assert main(["datasets", "build", "test/pendulum/badmix-v0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "cannot mix datasets with different arrays" in err and "behaviour_log_prob" in err
    assert not cached_path("test/pendulum/badmix-v0").exists()


def test_list_info_verify(catalogue, capsys):
    main(["datasets", "build", "test/pendulum/random-v0", "--quiet"])
    capsys.readouterr()
    assert main(["datasets", "list", "--json"]) == 0
    listed = {d["id"]: d["cached"] for d in json.loads(capsys.readouterr().out)}
    assert listed["test/pendulum/random-v0"] is True and listed["test/pendulum/expert-v0"] is False
    assert len(listed) == 6
    assert main(["datasets", "list", "--cached"]) == 0
    out = capsys.readouterr().out
    assert "test/pendulum/random-v0" in out and "expert" not in out
    assert main(["datasets", "info", "test/pendulum/random-v0", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["file"]["steps"] == 650 and info["file"]["arrays"]["actions"] == [[650, 1], "float32"]
    assert info["local_rebuild"] is None
    assert main(["datasets", "verify", "test/pendulum/random-v0"]) == 0
    assert "checksums OK" in capsys.readouterr().out
    assert main(["datasets", "verify", str(cached_path("test/pendulum/random-v0"))]) == 0


def test_select_cards_by_id_prefix_and_glob(catalogue):
    from offbench.data.catalogue import select_cards

    def ids(*patterns):
        return [c.id for c in select_cards(list(patterns))]

    assert ids("test/pendulum/random-v0") == ["test/pendulum/random-v0"]
    assert len(ids("test")) == len(ids("test/pendulum")) == len(ids("test/*")) == 6
    assert ids("test/*/random*") == ["test/pendulum/random-b-v0", "test/pendulum/random-v0"]
    assert ids("test/pendulum/expert-v0", "test/*/expert-v0") == ["test/pendulum/expert-v0"]  # once each
    with pytest.raises(DatasetNotFoundError, match="did you mean test/pendulum/expert-v0"):
        select_cards(["test/pendulum/exprt-v0"])
    with pytest.raises(DatasetNotFoundError, match="'locomotoin' names no catalogue dataset.*suite \\(test\\)"):
        select_cards(["locomotoin"])


def test_build_and_verify_many(catalogue, capsys):
    """`build` takes suites and globs; mixes go after their sources; a failing dataset is reported
    by id while the others still build, and the exit code says something failed."""
    assert main(["datasets", "build", "--quiet"]) == 2
    assert "or pass --all" in capsys.readouterr().err
    assert main(["datasets", "build", "test/pendulum/mixed-v0", "test/*/random*", "--quiet"]) == 0
    out = capsys.readouterr().out
    built = [line.split()[1] for line in out.splitlines() if line.startswith("built ")]
    assert built == ["test/pendulum/random-b-v0", "test/pendulum/random-v0", "test/pendulum/mixed-v0"]
    assert "3 datasets in" in out
    assert main(["datasets", "verify", "test/*/random*", "test/pendulum/mixed-v0"]) == 0
    assert "verified 3 datasets" in capsys.readouterr().out

    assert main(["datasets", "build", "--all", "--quiet"]) == 2  # badmix cannot be built
    captured = capsys.readouterr()
    assert "1 of 6 failed: test/pendulum/badmix-v0" in captured.err
    assert "cannot mix datasets with different arrays" in captured.err
    assert cached_path("test/pendulum/policymix-v0").exists() and not cached_path("test/pendulum/badmix-v0").exists()
    # verify --all checks every cached catalogue dataset; a corrupted one is named, the rest pass.
    import h5py

    with h5py.File(cached_path("test/pendulum/expert-v0"), "r+") as f:
        f["rewards"][3] = f["rewards"][3] + 1.0
    assert main(["datasets", "verify", "--all"]) == 2
    err = capsys.readouterr().err
    assert "[rewards]" in err and "1 of 5 failed: " in err and err.splitlines()[-1].endswith("expert-v0")


def test_not_cached_and_unknown(catalogue):
    with pytest.raises(DatasetNotFoundError, match="not in the cache.*offbench datasets build"):
        load_dataset("test/pendulum/expert-v0")
    with pytest.raises(DatasetNotFoundError, match="did you mean test/pendulum/expert-v0"):
        load_dataset("test/pendulum/exprt-v0")


def test_card_errors(catalogue, tmp_path):
    bad = catalogue("test/pendulum/broken-v0", "kind = 'rollout'")
    bad.write_text("id = 'test/pendulum/broken-v0'\nenv_id = \n")
    with pytest.raises(OffbenchError, match="broken-v0.toml: cannot read dataset card"):
        read_card(bad)
    bad.write_text("id = 'test/pendulum/broken-v0'\nenv_id = 'X'\ndescription = ''\n")
    with pytest.raises(OffbenchError, match="lacks the required field 'recipe'"):
        read_card(bad)


def test_shipped_cards_are_valid(monkeypatch):
    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    cards = list_cards()
    assert "lite/pendulum/random-v0" in {c.id for c in cards}
    for card in cards:
        if card.recipe.get("kind") == "explore":  # reward-free data: no scores to normalise
            assert not card.reference_scores, card.id
        else:
            assert card.reference_scores["random"] < card.reference_scores["expert"], card.id
        assert card.changelog and card.changelog[-1]["version"] == card.id.rsplit("-", 1)[1]


def test_shipped_pendulum_card_rebuilds_exactly(monkeypatch):
    """Uniform random actions and numpy dynamics involve no CPU-dependent kernel: the real card's
    recipe reproduces the recorded content hash on every machine (CI too)."""
    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    card = get_card("lite/pendulum/random-v0")
    assert card.content_sha256, "the card records the content hash of its data"
    assert main(["datasets", "build", card.id, "--quiet", "--strict"]) == 0  # raises on a content mismatch
    ds = load_dataset(card.id, validate=True)
    assert ds.num_steps == card.size["steps"] == 100_000
    assert abs(ds.episode_returns().mean() - card.returns["mean"]) < 1e-6


def _check_shipped_rebuild(dataset_id):
    """Built from the committed checkpoints: the card's data exactly, or (on another CPU, whose
    MKL kernels change the policy's last bits) a rebuild whose statistics agree, with its note."""
    card = get_card(dataset_id)
    assert main(["datasets", "build", dataset_id, "--quiet"]) == 0
    ds = load_dataset(dataset_id, validate=True)
    assert ds.num_steps == card.size["steps"]
    note = provenance.read_note(cached_path(dataset_id))
    if ds.content_sha256() == card.content_sha256:
        assert note is None and ds.num_episodes == card.size["episodes"]
    else:
        assert note["content_sha256"] == ds.content_sha256() and note["card_content_sha256"] == card.content_sha256
        assert note["reason"]
        agree, _ = provenance.statistics_agree(card, ds.episode_returns(), ds.num_steps)
        assert agree
    if "mujoco" in card.files.get("library_versions", {}):  # pyproject pins the cards' simulator release
        import importlib.metadata

        assert importlib.metadata.version("mujoco") == card.files["library_versions"]["mujoco"]
    assert main(["datasets", "verify", dataset_id]) == 0


def test_shipped_checkpoint_card_rebuilds(monkeypatch):
    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    _check_shipped_rebuild("lite/pendulum/medium-v0")


@pytest.mark.slow
@pytest.mark.parametrize("dataset_id", ["lite/pendulum/expert-v0", "lite/pendulum/medium-expert-v0",
                                        "lite/reacher/medium-v0", "lite/invdoublependulum/expert-v0"])
def test_shipped_checkpoint_cards_rebuild(dataset_id, monkeypatch):
    monkeypatch.delenv("OFFBENCH_CATALOGUE", raising=False)
    _check_shipped_rebuild(dataset_id)
