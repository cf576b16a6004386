"""Dataset integrity that cannot be fooled (issue 14, item 1).

A file that lost an array, whose bytes changed after writing, or whose values lie outside its
recorded spaces never loads silently: ``load_dataset`` and ``offbench datasets verify`` /
``offbench train`` stop with one message naming the file and the array, and a non-zero exit.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

from offbench.cli import main
from offbench.data import load_dataset
from offbench.data.catalogue import get_card
from offbench.data.dataset import compute_checksums
from offbench.data.writer import DatasetWriter
from offbench.errors import ChecksumError, DatasetFormatError
from tests.conftest import BOX_ACT

STITCH_ID = "lite/stitchgrid/random-v0"  # Discrete(9) observations and actions, behaviour_log_prob, sim_state


@pytest.fixture(scope="module")
def stitchgrid_file(tmp_path_factory) -> Path:
    """The real catalogue card's StitchGrid file (10,000 steps), built once for this module."""
    from offbench.data.recipes import build_dataset

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OFFBENCH_HOME", str(tmp_path_factory.mktemp("stitch_home")))
        return build_dataset(STITCH_ID, progress=False)


@pytest.fixture
def stitch(stitchgrid_file, tmp_path) -> Path:
    """A private copy of the StitchGrid file that a test may damage."""
    return Path(shutil.copy(stitchgrid_file, tmp_path / "stitch.hdf5"))


def edit(path: Path, mutate, *, recompute_checksums: bool = False) -> None:
    """Change a file in place with h5py. ``recompute_checksums``: also rewrite the checksum
    table so it matches the new content (a self-consistent file, e.g. written by a buggy tool),
    so only the value checks can catch what changed."""
    with h5py.File(path, "r+") as f:
        mutate(f)
        if recompute_checksums:
            table = json.loads(f.attrs["checksums"])
            for name in table:
                table[name] = hashlib.sha256(np.ascontiguousarray(f[name][()]).data).hexdigest()
            f.attrs["checksums"] = json.dumps(table, sort_keys=True)


def set_value(array: str, index, value):
    def mutate(f):
        data = f[array][()]
        data[index] = value
        f[array][...] = data
    return mutate


def cli_error(capsys, *argv) -> str:
    """Run the CLI in-process; it must fail with one error and no traceback. Returns stderr."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, f"a user error must exit 2, got {code}"
    assert err.startswith("offbench: error: ") and "Traceback" not in err
    return err


def train_error(capsys, path: Path, tmp_path: Path) -> str:
    """`offbench train bc PATH` must refuse the file before anything is trained or written."""
    err = cli_error(capsys, "train", "bc", str(path), "--out", str(tmp_path / "run"), "--steps", "10", "--quiet")
    assert not any((tmp_path / "run").glob("*"))
    return err


# ---------------------------------------------------------------------- missing arrays
@pytest.mark.parametrize("array", ["behaviour_log_prob", "policy_id", "sim_state/state",
                                   "episodes/final/sim_state/state"])
def test_array_with_recorded_checksum_missing_from_the_file(stitch, tmp_path, capsys, array):
    edit(stitch, lambda f: f.__delitem__(array))
    expected = f"{stitch} [{array}]: array is missing, but the file's checksum table records it"
    for validate in (True, False):  # a structural problem: the checksum opt-out does not hide it
        with pytest.raises(DatasetFormatError, match=f"(?s)^{re.escape(expected)}.*download or build it again"):
            load_dataset(stitch, validate=validate)
    err = cli_error(capsys, "datasets", "verify", str(stitch))
    assert err.startswith(f"offbench: error: {expected}")
    assert f"[{array}]" in train_error(capsys, stitch, tmp_path)


def test_deleted_behaviour_log_prob_fails_verify_through_the_console_script(stitch):
    """The issue's report: verify used to pass this file as 'content identical' to the card."""
    edit(stitch, lambda f: f.__delitem__("behaviour_log_prob"))
    script = Path(sys.executable).with_name("offbench")
    done = subprocess.run([str(script), "datasets", "verify", str(stitch)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert f"{stitch} [behaviour_log_prob]: array is missing" in done.stderr
    assert "Traceback" not in done.stderr and "content identical" not in done.stdout


# ---------------------------------------------------------------------- content hash
def test_content_sha256_hashes_the_arrays_present(stitchgrid_file):
    ds = load_dataset(stitchgrid_file)
    table_digest = hashlib.sha256(json.dumps(ds.metadata.checksums, sort_keys=True).encode()).hexdigest()
    # An intact file: the digest of its arrays is the digest of its table, and the card's.
    assert ds.content_sha256() == table_digest == get_card(STITCH_ID).content_sha256

    del ds.arrays["behaviour_log_prob"]
    without = ds.content_sha256()
    assert without != table_digest
    assert without == hashlib.sha256(json.dumps(compute_checksums(ds.arrays), sort_keys=True).encode()).hexdigest()

    ds.arrays["rewards"][5] += 1.0
    assert ds.content_sha256() not in (table_digest, without)


# ---------------------------------------------------------------------- checksums by default
def flip_bit_mid_rewards(path: Path) -> None:
    """Flip the lowest bit of the byte in the middle of the rewards' stored bytes, straight in
    the file (as a disk or a download might): the reward changes by one ulp and stays finite."""
    with h5py.File(path, "r") as f:
        rewards = f["rewards"].id
        middle = rewards.get_chunk_info(rewards.get_num_chunks() // 2)
    offset = middle.byte_offset + (middle.size // 2) // 4 * 4  # the low byte of one float32
    with open(path, "r+b") as raw:
        raw.seek(offset)
        byte = raw.read(1)[0]
        raw.seek(offset)
        raw.write(bytes([byte ^ 1]))


@pytest.mark.parametrize("damage", ["flipped bit", "changed reward"])
def test_changed_content_fails_to_load_by_default(stitch, stitchgrid_file, tmp_path, capsys, damage):
    if damage == "flipped bit":
        flip_bit_mid_rewards(stitch)
    else:
        edit(stitch, set_value("rewards", 4321, 0.9))  # one reward, still a possible StitchGrid reward
    with pytest.raises(ChecksumError) as info:
        load_dataset(stitch)
    assert re.match(f"{re.escape(str(stitch))} \\[rewards\\]: content sha256 .* does not match", str(info.value))
    # Experts may skip the checksums; the data is then read as stored, wrong value included.
    changed = load_dataset(stitch, validate=False).rewards != load_dataset(stitchgrid_file).rewards
    assert changed.sum() == 1
    assert "[rewards]: content sha256" in cli_error(capsys, "datasets", "verify", str(stitch))
    assert "[rewards]: content sha256" in train_error(capsys, stitch, tmp_path)


# ---------------------------------------------------------------------- values within the spaces
@pytest.mark.parametrize("array,value,row,message", [
    ("actions", 9, 17, "value 9 at row 17 is outside the Discrete space's 0..8 (1 of 10000 rows out of range)"),
    ("actions", -1, 0, "value -1 at row 0 is outside the Discrete space's 0..8"),
    ("observations", 9, 250, "value 9 at row 250 is outside the Discrete space's 0..8"),
    ("episodes/final/observations", 12, 3, "value 12 at row 3 is outside the Discrete space's 0..8"),
])
def test_discrete_values_outside_n(stitch, tmp_path, capsys, array, value, row, message):
    edit(stitch, set_value(array, row, value), recompute_checksums=True)
    kind = "action" if array == "actions" else "observation"
    expected = f"{stitch} [{array}]: outside the recorded {kind} space: {message}"
    for validate in (True, False):  # checksums match: the value check alone catches it
        with pytest.raises(DatasetFormatError) as info:
            load_dataset(stitch, validate=validate)
        assert str(info.value).startswith(expected)
    assert cli_error(capsys, "datasets", "verify", str(stitch)).startswith(f"offbench: error: {expected}")
    assert f"[{array}]: outside the recorded {kind} space" in train_error(capsys, stitch, tmp_path)


def test_discrete_space_with_a_start(tmp_path):
    path = tmp_path / "start.hdf5"
    with DatasetWriter(path, dataset_id="test/toy/start-v0", env_id="Toy-v0",
                       observation_space=gym.spaces.Discrete(4, start=10),
                       action_space=gym.spaces.Discrete(3, start=-1)) as w:
        w.add_episode(observations=np.array([10, 11, 12, 13]), actions=np.array([-1, 0, 1]),
                      rewards=np.zeros(3), terminations=np.array([False, False, True]), truncations=np.zeros(3, bool))
    assert load_dataset(path).actions.tolist() == [-1, 0, 1]  # the whole range start .. start + n - 1
    edit(path, set_value("actions", 1, 2), recompute_checksums=True)
    with pytest.raises(DatasetFormatError, match=r"\[actions\]: .* value 2 at row 1 is outside .* -1\.\.1"):
        load_dataset(path)
    edit(path, set_value("actions", 1, 0))
    edit(path, set_value("observations", 0, 9), recompute_checksums=True)
    with pytest.raises(DatasetFormatError, match=r"\[observations\]: .* value 9 at row 0 is outside .* 10\.\.13"):
        load_dataset(path)


def test_box_actions_within_limits_up_to_float_tolerance(toy_path, tmp_path, capsys):
    """BOX_ACT is [-1, 1]: values a few float32 ulps past a bound (tanh rescaling rounds so) load;
    values clearly past it do not, wherever they are."""
    one_ulp = np.nextafter(np.float32(1), np.float32(2))
    edit(toy_path, set_value("actions", (2, 0), one_ulp), recompute_checksums=True)
    edit(toy_path, set_value("actions", (3, 1), -np.float32(1.0000008)), recompute_checksums=True)
    assert load_dataset(toy_path).actions[2, 0] == one_ulp

    edit(toy_path, set_value("actions", (4, 1), 1.5), recompute_checksums=True)
    expected = (f"{toy_path} [actions]: outside the recorded action space: value 1.5 at row 4 at index [1] is "
                "above the high bound 1.0 of the Box space (1 of 12 rows out of bounds)")
    with pytest.raises(DatasetFormatError) as info:
        load_dataset(toy_path)
    assert str(info.value).startswith(expected) and "clip them" in str(info.value)
    assert cli_error(capsys, "datasets", "verify", str(toy_path)).startswith(f"offbench: error: {expected}")
    assert "[actions]: outside the recorded action space" in train_error(capsys, toy_path, tmp_path)

    edit(toy_path, set_value("actions", (4, 1), -1.0001), recompute_checksums=True)
    with pytest.raises(DatasetFormatError, match=r"value -1\.0001 at row 4 at index \[1\] is below the low bound -1"):
        load_dataset(toy_path, validate=False)


def write_bounded(path: Path, space: gym.spaces.Box) -> Path:
    """Two episodes of 2-dim observations inside ``space`` (the writer refuses anything else)."""
    with DatasetWriter(path, dataset_id="test/toy/bounded-v0", env_id="Toy-v0", observation_space=space,
                       action_space=BOX_ACT) as w:
        for T in (3, 2):
            w.add_episode(observations=np.full((T + 1, 2), 0.5, np.float32), actions=np.zeros((T, 2), np.float32),
                          rewards=np.zeros(T), terminations=np.zeros(T, bool), truncations=np.arange(T) == T - 1)
    return path


@pytest.mark.parametrize("array,index,value,message", [
    ("observations", (2, 0), 1.5, "value 1.5 at row 2 at index [0] is above the high bound 1.0"),
    ("observations", (4, 1), -0.25, "value -0.25 at row 4 at index [1] is below the low bound 0.0"),
    ("episodes/final/observations", (1, 1), 2.0, "value 2.0 at row 1 at index [1] is above the high bound 1.0"),
])
def test_bounded_box_observations(tmp_path, capsys, array, index, value, message):
    path = write_bounded(tmp_path / "bounded.hdf5", gym.spaces.Box(0.0, 1.0, (2,), np.float32))
    edit(path, set_value(array, index, value), recompute_checksums=True)
    expected = f"{path} [{array}]: outside the recorded observation space: {message} of the Box space"
    with pytest.raises(DatasetFormatError) as info:
        load_dataset(path)
    assert str(info.value).startswith(expected)
    assert cli_error(capsys, "datasets", "verify", str(path)).startswith(f"offbench: error: {expected}")


def test_infinite_bounds_accept_any_finite_value(tmp_path, toy_path):
    """Unbounded sides (MuJoCo observation spaces are (-inf, inf)) accept every finite value;
    the bounded sides of the same space are still checked."""
    edit(toy_path, set_value("observations", (0, 2), 3e38), recompute_checksums=True)  # BOX_OBS: (-inf, inf)
    edit(toy_path, set_value("episodes/final/observations", (1, 2), -3e38), recompute_checksums=True)
    assert load_dataset(toy_path).observations[0, 2] == np.float32(3e38)

    half = gym.spaces.Box(np.array([0.0, -np.inf], np.float32), np.array([np.inf, 1.0], np.float32))
    path = write_bounded(tmp_path / "half.hdf5", half)
    edit(path, set_value("observations", (1, 0), 1e30), recompute_checksums=True)  # no upper bound
    edit(path, set_value("observations", (2, 1), -1e30), recompute_checksums=True)  # no lower bound
    assert load_dataset(path).observations[1, 0] == np.float32(1e30)
    edit(path, set_value("observations", (3, 1), 1.01), recompute_checksums=True)  # bounded above by 1
    with pytest.raises(DatasetFormatError, match=r"\[observations\]: .* value 1\.01 at row 3 at index \[1\] is above"):
        load_dataset(path)


def test_dict_observation_key_outside_its_box(tmp_path):
    space = gym.spaces.Dict({"observation": gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
                             "desired_goal": gym.spaces.Box(-1.0, 1.0, (2,), np.float32)})
    path = tmp_path / "goal.hdf5"
    with DatasetWriter(path, dataset_id="test/toy/goal-v0", env_id="Toy-v0", observation_space=space,
                       action_space=BOX_ACT) as w:
        w.add_episode(observations={"observation": np.full((3, 2), 50.0), "desired_goal": np.zeros((3, 2))},
                      actions=np.zeros((2, 2)), rewards=np.zeros(2), terminations=np.array([False, True]),
                      truncations=np.zeros(2, bool))
    load_dataset(path)
    edit(path, set_value("observations/desired_goal", (1, 0), -3.0), recompute_checksums=True)
    with pytest.raises(DatasetFormatError, match=r"\[observations/desired_goal\]: outside the recorded observation"):
        load_dataset(path)


# ---------------------------------------------------------------------- the writer agrees with the reader
@pytest.mark.parametrize("field,episode", [("actions", 1), ("observations", 0), ("episodes/final/observations", 1)])
def test_writer_refuses_values_outside_the_spaces(tmp_path, field, episode):
    """A file that would not load is never written: the writer names the episode and the array."""
    path = tmp_path / "out.hdf5"
    space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    with pytest.raises(DatasetFormatError, match=f"\\[{field}\\]: episode {episode}: outside the"):
        with DatasetWriter(path, dataset_id="test/toy/w-v0", env_id="Toy-v0", observation_space=space,
                           action_space=BOX_ACT) as w:
            for e in range(2):
                obs = np.full((4, 2), 0.5)
                act = np.zeros((3, 2))
                if (field, e) == ("observations", episode):
                    obs[1, 0] = 1.2
                if (field, e) == ("episodes/final/observations", episode):
                    obs[-1, 1] = -0.5
                if (field, e) == ("actions", episode):
                    act[2, 1] = 3.0
                w.add_episode(observations=obs, actions=act, rewards=np.zeros(3), terminations=np.zeros(3, bool),
                              truncations=np.array([False, False, True]))
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_writer_refuses_observations_of_another_shape_than_the_space(tmp_path):
    path = tmp_path / "shape.hdf5"
    with pytest.raises(DatasetFormatError, match=r"\[observations\]: element shape \(3,\) does not match .* \(2,\)"):
        with DatasetWriter(path, dataset_id="test/toy/s-v0", env_id="Toy-v0", action_space=BOX_ACT,
                           observation_space=gym.spaces.Box(0.0, 1.0, (2,), np.float32)) as w:
            w.add_episode(observations=np.zeros((3, 3)), actions=np.zeros((2, 2)), rewards=np.zeros(2),
                          terminations=np.array([False, True]), truncations=np.zeros(2, bool))
    assert list(tmp_path.iterdir()) == []
