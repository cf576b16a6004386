"""Every kind of bad input gives one clear error naming the file/field, and nothing is half-written."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from offbench.cli import main
from offbench.data import format as fmt
from offbench.data.catalogue import get_card
from offbench.data.dataset import read_dataset
from offbench.data.writer import DatasetWriter
from offbench.errors import ChecksumError, DatasetFormatError, DatasetNotFoundError
from tests.conftest import BOX_ACT, BOX_OBS


def _mutated(toy_path, tmp_path, mutate):
    bad = tmp_path / "bad.hdf5"
    shutil.copy(toy_path, bad)
    with h5py.File(bad, "r+") as f:
        mutate(f)
    return bad


def _cli_error(capsys, *argv):
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code != 0, "a user error must exit non-zero"
    assert "Traceback" not in err
    return err


def test_truncated_file(toy_path, tmp_path, capsys):
    bad = tmp_path / "truncated.hdf5"
    bad.write_bytes(toy_path.read_bytes()[: toy_path.stat().st_size // 2])
    with pytest.raises(DatasetFormatError, match="truncated or corrupt"):
        read_dataset(bad)
    assert "truncated.hdf5" in _cli_error(capsys, "datasets", "verify", str(bad))


def test_not_hdf5_at_all(tmp_path):
    bad = tmp_path / "junk.hdf5"
    bad.write_bytes(b"this is not hdf5" * 100)
    with pytest.raises(DatasetFormatError, match="junk.hdf5.*not a readable HDF5"):
        read_dataset(bad)


def test_corrupt_array_bytes_fail_checksum(toy_path, tmp_path, capsys):
    def flip(f):
        f["rewards"][3] = f["rewards"][3] + 1.0  # finite, so only the checksum can catch it
    bad = _mutated(toy_path, tmp_path, flip)
    read_dataset(bad, validate=False)  # structural checks alone pass ...
    with pytest.raises(ChecksumError, match=r"\[rewards\].*sha256"):
        read_dataset(bad)  # ... the checksum, verified by default, does not
    err = _cli_error(capsys, "datasets", "verify", str(bad))
    assert "rewards" in err and "sha256" in err


@pytest.mark.parametrize("array", ["actions", "episodes/length", "episodes/final/observations", "observations"])
def test_missing_arrays(toy_path, tmp_path, array):
    bad = _mutated(toy_path, tmp_path, lambda f: f.__delitem__(array))
    with pytest.raises(DatasetFormatError, match=f"\\[{array}\\]:.*missing"):
        read_dataset(bad)


def test_mismatched_lengths(toy_path, tmp_path):
    def shorten(f):
        data = f["actions"][:-1]
        del f["actions"]
        f.create_dataset("actions", data=data)
    bad = _mutated(toy_path, tmp_path, shorten)
    with pytest.raises(DatasetFormatError, match=r"\[actions\]: has 11 rows but the dataset has 12 steps"):
        read_dataset(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_values(toy_path, tmp_path, value):
    def poison(f):
        f["observations"][4, 1] = value
    bad = _mutated(toy_path, tmp_path, poison)
    with pytest.raises(DatasetFormatError, match=r"\[observations\]: non-finite value .* row 4"):
        read_dataset(bad)


def test_inconsistent_episode_index(toy_path, tmp_path):
    def shift(f):
        f["episodes/start"][1] = 4
    with pytest.raises(DatasetFormatError, match=r"\[episodes/start\]: episode 1 does not start"):
        read_dataset(_mutated(toy_path, tmp_path, shift))

    def end_early(f):
        f["terminations"][2] = True
    with pytest.raises(DatasetFormatError, match=r"step 2 ends an episode"):
        read_dataset(_mutated(toy_path, tmp_path, end_early))


def test_newer_format_version(toy_path, tmp_path, capsys):
    bad = _mutated(toy_path, tmp_path, lambda f: f.attrs.__setitem__(fmt.ATTR_FORMAT_VERSION, 99))
    with pytest.raises(DatasetFormatError, match="(?s)format v99, newer .* upgrade offbench"):
        read_dataset(bad)
    assert "upgrade offbench" in _cli_error(capsys, "datasets", "verify", str(bad))


def test_not_an_offbench_file(tmp_path):
    path = tmp_path / "other.hdf5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DatasetFormatError, match="(?s)not an offbench dataset.*import-minari"):
        read_dataset(path)


def test_unknown_id_suggests_closest(capsys):
    with pytest.raises(DatasetNotFoundError, match="did you mean lite/pendulum/random-v0"):
        get_card("lite/pendulum/randm-v0")
    err = _cli_error(capsys, "datasets", "info", "lite/pendlum/random-v0")
    assert "did you mean lite/pendulum/random-v0" in err
    assert "is not a dataset id" in _cli_error(capsys, "datasets", "info", "../../etc/passwd")


def test_writer_rejects_bad_episodes_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.hdf5"
    good = dict(observations=np.zeros((4, 3)), actions=np.zeros((3, 2)), rewards=np.zeros(3),
                terminations=np.array([False, False, True]), truncations=np.zeros(3, bool))
    cases = [
        (dict(observations=np.zeros((3, 3))), "expected T\\+1 = 4"),
        (dict(actions=np.zeros((2, 2))), r"\[actions\].*expected T = 3"),
        (dict(terminations=np.zeros(3, bool)), "neither termination nor truncation"),
        (dict(truncations=np.array([True, False, False])), "before its last step"),
        (dict(rewards=np.array([0.0, np.nan, 0.0])), r"\[rewards\]: non-finite"),
    ]
    for change, message in cases:
        with pytest.raises(DatasetFormatError, match=message):
            with DatasetWriter(target, dataset_id="test/toy/x-v0", env_id="Toy-v0",
                               observation_space=BOX_OBS, action_space=BOX_ACT) as w:
                w.add_episode(**good)
                w.add_episode(**{**good, **change})
        assert not target.exists()
        assert list(tmp_path.iterdir()) == [], "no temporary file may be left behind"


def test_failed_rewrite_keeps_the_good_file(toy_path):
    before = toy_path.read_bytes()
    with pytest.raises(DatasetFormatError):
        with DatasetWriter(toy_path, dataset_id="test/toy/x-v0", env_id="Toy-v0",
                           observation_space=BOX_OBS, action_space=BOX_ACT) as w:
            w.add_episode(observations=np.zeros((2, 3)), actions=np.zeros((1, 2)), rewards=[np.inf],
                          terminations=[True], truncations=[False])
    assert toy_path.read_bytes() == before
