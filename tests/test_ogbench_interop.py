"""OGBench's .npz layout: ogbench.load_dataset reads offbench's export; offbench imports a file laid
out exactly as OGBench's data script writes it; the round trip keeps every transition."""
from __future__ import annotations

from collections import defaultdict

import gymnasium as gym
import numpy as np
import pytest

ogbench = pytest.importorskip("ogbench", reason="PointMaze needs `pip install --no-deps ogbench==1.2.2`")

from offbench.data.dataset import read_dataset  # noqa: E402
from offbench.data.goal_generation import write_pointmaze  # noqa: E402
from offbench.data.ogbench_interop import export_to_ogbench, import_from_ogbench  # noqa: E402
from offbench.errors import OffbenchError  # noqa: E402

RECIPE = dict(kind="ogbench_pointmaze", maze="medium", dataset_type="navigate", episodes=3, first_episode=0,
              max_episode_steps=40, noise=0.5, seed=0, ogbench_version="1.2.2")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "small.hdf5"
    return read_dataset(write_pointmaze(path, RECIPE, dataset_id="goal/pointmaze-medium/navigate-v0"))


def write_like_ogbench(path, episodes: int, steps: int, seed: int = 0) -> None:
    """What ogbench's data_gen_scripts/generate_locomaze.py records and saves, with OGBench's own
    environment: per step the observation, the action, `terminals = done`, `qpos`/`qvel` from
    `info['prev_qpos']` / `info['prev_qvel']`; arrays as float32 (bool terminals), savez_compressed."""
    env = gym.make("pointmaze-medium-v0", terminate_at_goal=False, max_episode_steps=steps)
    rng = np.random.default_rng(seed)
    np.random.seed(seed)
    data = defaultdict(list)
    for _ in range(episodes):
        ob, _ = env.reset()
        done = False
        while not done:
            action = np.clip(rng.normal(0.0, 0.7, 2), -1, 1)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            data["observations"].append(ob)
            data["actions"].append(action)
            data["terminals"].append(done)
            data["qpos"].append(info["prev_qpos"])
            data["qvel"].append(info["prev_qvel"])
            ob = next_ob
    arrays = {k: np.array(v, dtype=bool if k == "terminals" else np.float32) for k, v in data.items()}
    np.savez_compressed(path, **arrays)


def test_ogbench_load_dataset_reads_an_offbench_export(small, tmp_path):
    path = export_to_ogbench(small, tmp_path / "pointmaze-medium-navigate-v0.npz")
    regular = ogbench.load_dataset(str(path))
    ours = small.observations["observation"]
    np.testing.assert_array_equal(regular["observations"], ours)
    np.testing.assert_array_equal(regular["next_observations"], small.next_observations["observation"])
    np.testing.assert_array_equal(regular["actions"], small.actions)
    ends = small.episode_starts + small.episode_lengths - 1
    np.testing.assert_array_equal(np.flatnonzero(regular["terminals"]), ends)
    compact = ogbench.load_dataset(str(path), compact_dataset=True, add_info=True)
    assert compact["valids"].sum() == small.num_steps  # one invalid (final) row per episode
    np.testing.assert_array_equal(compact["qpos"][compact["valids"] > 0],
                                  small.arrays["sim_state/qpos"].astype(np.float32))
    # OGBench's own entry point finds the training file and its -val sibling.
    export_to_ogbench(small, tmp_path / "pointmaze-medium-navigate-v0-val.npz")
    env, train, val = ogbench.make_env_and_datasets("pointmaze-medium-navigate-v0", dataset_path=str(path))
    assert len(train["observations"]) == len(val["observations"]) == small.num_steps
    with pytest.raises(OffbenchError, match="exists"):
        export_to_ogbench(small, path)


def test_an_ogbench_written_file_imports_with_its_transitions(tmp_path):
    path = tmp_path / "pointmaze-medium-navigate-v0.npz"
    write_like_ogbench(path, episodes=3, steps=25)
    out = import_from_ogbench(path, dataset_id="imported/pointmaze-medium/navigate-v0", out=tmp_path / "imp.hdf5")
    ds = read_dataset(out)
    assert ds.metadata.env_id == "offbench/pointmaze-medium-v0"
    assert ds.num_episodes == 3 and (ds.episode_lengths == 24).all()  # 25 rows: 24 transitions + final
    assert ds.truncations.sum() == 3 and not ds.terminations.any()
    theirs = ogbench.load_dataset(str(path))  # OGBench's own reading of the same file
    np.testing.assert_array_equal(ds.observations["observation"], theirs["observations"])
    np.testing.assert_array_equal(ds.next_observations["observation"], theirs["next_observations"])
    np.testing.assert_array_equal(ds.actions, theirs["actions"])
    raw = np.load(path)
    last = raw["terminals"]
    np.testing.assert_array_equal(ds.arrays["sim_state/qpos"], raw["qpos"][~last])
    np.testing.assert_array_equal(ds.arrays["episodes/final/observations/observation"], raw["observations"][last])
    # No goals in OGBench's files: desired_goal is each episode's final observation, as the recipe says.
    for e in range(3):
        ep = ds.episode(e)
        assert (ep.observations["desired_goal"] == ep.observations["observation"][-1]).all()
    assert "final observation" in ds.metadata.recipe["desired_goal"]


def test_round_trip_keeps_observations_actions_and_states(small, tmp_path):
    path = export_to_ogbench(small, tmp_path / "x.npz")
    back = read_dataset(import_from_ogbench(path, dataset_id="imported/pointmaze-medium/x-v0",
                                            env_id="offbench/pointmaze-medium-v0", out=tmp_path / "back.hdf5"))
    np.testing.assert_array_equal(back.episode_lengths, small.episode_lengths)
    for path_ in ("observations/observation", "observations/achieved_goal", "actions"):
        np.testing.assert_array_equal(back.arrays[path_], small.arrays[path_])
        final = f"episodes/final/{path_}"
        if final in small.arrays:
            np.testing.assert_array_equal(back.arrays[final], small.arrays[final])
    np.testing.assert_array_equal(back.arrays["sim_state/qpos"], small.arrays["sim_state/qpos"].astype(np.float32))


def test_malformed_files_are_refused(tmp_path):
    def save(name, **arrays):
        path = tmp_path / name
        np.savez(path, **arrays)
        return path

    obs = np.zeros((4, 2), np.float32)
    act = np.zeros((4, 2), np.float32)
    cases = [
        (save("a.npz", observations=obs, actions=act, terminals=np.array([0, 0, 0, 0], bool)), "last row"),
        (save("b.npz", observations=obs, actions=act, terminals=np.array([1, 0, 0, 1], bool)), "single row"),
        (save("c.npz", observations=obs, terminals=np.array([0, 0, 0, 1], bool)), "'actions'"),
        (save("d.npz", observations=obs, actions=act * 3 + 2, terminals=np.array([0, 0, 0, 1], bool)), r"\[-1, 1\]"),
    ]
    for path, words in cases:
        with pytest.raises(OffbenchError, match=words):
            import_from_ogbench(path, dataset_id="imported/x/y-v0", env_id="X-v0", out=tmp_path / "o.hdf5")
    with pytest.raises(OffbenchError, match="env_id"):
        import_from_ogbench(cases[0][0], dataset_id="imported/x/y-v0", out=tmp_path / "o.hdf5")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(OffbenchError, match="not a readable"):
        import_from_ogbench(tmp_path / "junk.npz", dataset_id="imported/x/y-v0", env_id="X-v0")


def test_cli_round_trip_and_a_missing_file(small, tmp_path, capsys):
    """``offbench datasets export-ogbench`` / ``import-ogbench`` call the same functions; bad input is one line."""
    from offbench.cli import main

    npz = tmp_path / "pointmaze-medium-navigate-v0.npz"
    assert main(["datasets", "export-ogbench", str(small.path), str(npz)]) == 0
    back = tmp_path / "back.hdf5"
    assert main(["datasets", "import-ogbench", str(npz), "--id", "goal/pointmaze-medium/mine-v0",
                 "--out", str(back)]) == 0
    imported = read_dataset(back)
    np.testing.assert_array_equal(imported.observations["observation"] if isinstance(imported.observations, dict)
                                  else imported.observations, ogbench.load_dataset(str(npz))["observations"])
    assert main(["datasets", "export-ogbench", str(small.path), str(npz)]) == 2  # exists: --overwrite
    assert main(["datasets", "import-ogbench", str(tmp_path / "nope.npz"), "--id", "goal/x/y-v0"]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "nope.npz: no such file" in err and "Traceback" not in err
