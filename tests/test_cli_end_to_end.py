"""The whole dataset flow through the CLI on real Pendulum rollouts:
build -> publish -> download over HTTP (127.0.0.1) -> verify -> export-minari -> import-minari."""
from __future__ import annotations

import functools
import http.server
import json
import threading

import numpy as np
import pytest

from offbench import load_dataset
from offbench.cli import main
from offbench.data.catalogue import cached_path
from tests.test_catalogue_cli import catalogue  # noqa: F401  (fixture)


@pytest.fixture
def http_mirror(tmp_path):
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_build_publish_download_verify(catalogue, http_mirror, capsys):  # noqa: F811
    root, url = http_mirror
    dataset_id = "test/pendulum/random-v0"
    assert main(["datasets", "build", dataset_id, "--quiet", "--update-card"]) == 0
    original = cached_path(dataset_id).read_bytes()
    assert main(["datasets", "publish", str(root), dataset_id]) == 0
    index = json.loads((root / "index.json").read_text())
    assert index["datasets"][dataset_id]["size"] == len(original)

    cached_path(dataset_id).unlink()
    assert main(["datasets", "download", dataset_id, "--mirror", url, "--quiet"]) == 0
    assert cached_path(dataset_id).read_bytes() == original
    assert main(["datasets", "verify", dataset_id]) == 0
    assert "file sha256 matches the card" in capsys.readouterr().out

    # Every mirror failing is one clear error, and the good cached file stays.
    cached_path(dataset_id).unlink()
    code = main(["datasets", "download", dataset_id, "--mirror", str(root / "nowhere"),
                 "--mirror", url + "/missing", "--quiet", "--timeout", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and url + "/missing" in err
    assert not cached_path(dataset_id).exists()


def test_minari_round_trip_through_cli(catalogue, tmp_path, capsys):  # noqa: F811
    import minari

    dataset_id = "test/pendulum/random-v0"
    minari_root = tmp_path / "minari"
    assert main(["datasets", "build", dataset_id, "--quiet"]) == 0
    assert main(["datasets", "export-minari", dataset_id, "--minari-root", str(minari_root)]) == 0
    assert main(["datasets", "export-minari", dataset_id, "--minari-root", str(minari_root)]) == 2
    assert "overwrite" in capsys.readouterr().err

    ours = load_dataset(dataset_id)
    import os
    os.environ["MINARI_DATASETS_PATH"] = str(minari_root)
    try:
        theirs = minari.load_dataset(dataset_id)
        assert theirs.total_steps == ours.num_steps and theirs.total_episodes == ours.num_episodes
        assert theirs.storage.metadata["ref_min_score"] == pytest.approx(-1200.0)
        episode = next(iter(theirs.iterate_episodes([3])))
        np.testing.assert_array_equal(episode.observations, ours.episode(3).observations)
        np.testing.assert_array_equal(episode.truncations, ours.episode(3).truncations)
    finally:
        del os.environ["MINARI_DATASETS_PATH"]

    out = tmp_path / "back.hdf5"
    assert main(["datasets", "import-minari", dataset_id, "--minari-root", str(minari_root),
                 "--out", str(out)]) == 0
    back = load_dataset(out, validate=True)
    assert back.content_sha256() == ours.content_sha256()
    assert main(["datasets", "import-minari", "nope/none-v0", "--minari-root", str(minari_root)]) == 2
    assert "nope/none-v0" in capsys.readouterr().err
