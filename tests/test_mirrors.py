"""Mirrors: publishing, and downloading through real HTTP servers on 127.0.0.1.

Each test starts its own small ``ThreadingHTTPServer`` with a handler that misbehaves in one
specific way (drops the connection, serves wrong bytes, answers 404/500, hangs, lies in its
index) and checks the client's exact behaviour: bytes on disk, hashes, request counts and
the wording of the error.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from offbench.data import catalogue, mirrors
from offbench.data.mirrors import (
    download_dataset,
    file_sha256,
    mirror_list,
    publish_mirror,
)
from offbench.data.writer import DatasetWriter
from offbench.errors import DownloadError, OffbenchError

ID = "test/toy/random-v0"
FILE_URL_PATH = f"/{ID}.hdf5"
FAST = {"progress": False, "backoff": 0.01}


# ---------------------------------------------------------------------- dataset and catalogue
def write_toy_dataset(path: Path, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    obs_space = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    with DatasetWriter(path, dataset_id=ID, env_id="Toy-v0", observation_space=obs_space,
                       action_space=act_space, compression="gzip") as writer:
        for length in (5, 8, 3):
            writer.add_episode(
                observations=rng.uniform(-1, 1, (length + 1, 3)).astype(np.float32),
                actions=rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                rewards=rng.normal(size=length).astype(np.float32),
                terminations=np.eye(1, length, length - 1, dtype=bool)[0],
                truncations=np.zeros(length, dtype=bool))
    return path.read_bytes()


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, bytes]:
    """Two valid, different dataset files: the current one and an 'old version'."""
    root = tmp_path_factory.mktemp("toy")
    return {"data": write_toy_dataset(root / "a.hdf5", seed=0),
            "old": write_toy_dataset(root / "b.hdf5", seed=1)}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Env:
    data: bytes
    old: bytes
    sha: str
    home: Path
    catalogue: Path
    tmp: Path

    @property
    def cached(self) -> Path:
        return catalogue.cached_path(ID)

    def write_card(self, sha256: str | None) -> Path:
        path = self.catalogue / f"{ID}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        files = f'\n[files]\nsha256 = "{sha256}"\n' if sha256 else ""
        path.write_text(f'id = "{ID}"\nenv_id = "Toy-v0"\ndescription = "toy data"\nformat_version = 1\n'
                        f'\n[recipe]\npolicy = "random"\n{files}')
        return path


@pytest.fixture
def env(toy, tmp_path, monkeypatch) -> Env:
    home, cat = tmp_path / "home", tmp_path / "catalogue"
    monkeypatch.setenv("OFFBENCH_HOME", str(home))
    monkeypatch.setenv("OFFBENCH_CATALOGUE", str(cat))
    monkeypatch.delenv("OFFBENCH_MIRRORS", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    e = Env(toy["data"], toy["old"], sha(toy["data"]), home, cat, tmp_path)
    e.write_card(e.sha)
    return e


def index_json(sha256: str, size: int, path: str = f"{ID}.hdf5") -> bytes:
    return json.dumps({"format": 1, "datasets": {ID: {"path": path, "size": size, "sha256": sha256}}}).encode()


# ---------------------------------------------------------------------- HTTP servers
class MirrorHandler(BaseHTTPRequestHandler):
    """Serves ``files`` (URL path -> bytes) with Range support and records every request."""

    files: dict[str, bytes] = {}
    requests: list[tuple[str, str | None]]
    release: threading.Event

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        self.requests.append((self.path, self.headers.get("Range")))
        self.respond()

    def respond(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])


def file_requests(handler: type[MirrorHandler]) -> list[str | None]:
    """The Range header of every request for the dataset file, in order."""
    return [rng for path, rng in handler.requests if path.endswith(".hdf5")]


class DropOnceHandler(MirrorHandler):
    """First file request: full Content-Length in the headers, half the bytes, then hang up."""

    def respond(self) -> None:
        body = self.files.get(self.path)
        if self.path.endswith(".hdf5") and len(file_requests(type(self))) == 1:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().respond()


class IgnoreRangeHandler(MirrorHandler):
    """Answers every request with 200 and the whole file, Range or not."""

    def respond(self) -> None:
        body = self.files[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class StatusHandler(MirrorHandler):
    status = 500

    def respond(self) -> None:
        self.send_error(self.status)


class HangHandler(MirrorHandler):
    """Accepts the connection, reads the request and never answers (until teardown)."""

    def respond(self) -> None:
        self.release.wait(20)


@pytest.fixture
def serve():
    """``serve(handler_cls, **class_attrs) -> (base_url, handler)``; servers stop at teardown."""
    running = []

    def start(handler_cls: type[MirrorHandler], **attrs) -> tuple[str, type[MirrorHandler]]:
        handler = type(handler_cls.__name__, (handler_cls,),
                       {"requests": [], "release": threading.Event(), **attrs})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append((server, thread, handler))
        return f"http://127.0.0.1:{server.server_address[1]}", handler

    yield start
    for server, thread, handler in running:
        handler.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def good_files(env: Env, data: bytes | None = None, index: bytes | None = None) -> dict[str, bytes]:
    return {"/index.json": index or index_json(env.sha, len(env.data)), FILE_URL_PATH: env.data if data is None else data}


# ---------------------------------------------------------------------- basics
def test_file_sha256_and_mirror_list(env, monkeypatch):
    path = env.tmp / "x.bin"
    path.write_bytes(env.data)
    assert file_sha256(path, chunk_size=1000) == env.sha
    monkeypatch.setenv("OFFBENCH_MIRRORS", "https://a.example/m, /srv/mirror\nfile:///x  https://b.example")
    assert mirror_list(["http://first", "/srv/mirror"]) == [
        "http://first", "/srv/mirror", "https://a.example/m", "file:///x", "https://b.example"]
    monkeypatch.delenv("OFFBENCH_MIRRORS")
    assert mirror_list() == []


def test_no_mirrors_configured(env):
    with pytest.raises(DownloadError) as info:
        download_dataset(ID, [], **FAST)
    assert "--mirror" in str(info.value) and "OFFBENCH_MIRRORS" in str(info.value)
    assert not env.cached.exists()


# ---------------------------------------------------------------------- 1. good server
def test_good_server_download(env, serve):
    url, handler = serve(MirrorHandler, files=good_files(env))
    path = download_dataset(ID, [url], **FAST)
    assert path == env.cached
    assert path.read_bytes() == env.data and file_sha256(path) == env.sha
    assert not path.with_name(path.name + ".part").exists()
    assert [p for p, _ in handler.requests] == ["/index.json", FILE_URL_PATH]
    assert file_requests(handler) == [None]  # nothing to resume: a plain GET


def test_mirrors_default_to_environment(env, serve, monkeypatch):
    url, handler = serve(MirrorHandler, files=good_files(env))
    monkeypatch.setenv("OFFBENCH_MIRRORS", url)
    dest = env.tmp / "out" / "toy.hdf5"
    assert download_dataset(ID, dest=dest, **FAST) == dest
    assert dest.read_bytes() == env.data
    assert len(handler.requests) == 2


# ---------------------------------------------------------------------- 2. dropped connection
def test_dropped_connection_resumes_with_range(env, serve, monkeypatch):
    monkeypatch.setattr(mirrors, "CHUNK_SIZE", 4096)  # many chunks per transfer
    url, handler = serve(DropOnceHandler, files=good_files(env))
    path = download_dataset(ID, [url], **FAST)
    assert path.read_bytes() == env.data
    half = len(env.data) // 2
    assert file_requests(handler) == [None, f"bytes={half}-"]


def test_leftover_part_from_earlier_run_is_resumed(env, serve):
    url, handler = serve(MirrorHandler, files=good_files(env))
    part = env.cached.with_name(env.cached.name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(env.data[:1000])
    download_dataset(ID, [url], **FAST)
    assert env.cached.read_bytes() == env.data and not part.exists()
    assert file_requests(handler) == ["bytes=1000-"]


def test_corrupt_leftover_part_restarts_from_zero_once(env, serve):
    url, handler = serve(MirrorHandler, files=good_files(env))
    part = env.cached.with_name(env.cached.name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # wrong prefix: only the final hash can tell
    download_dataset(ID, [url], **FAST)
    assert env.cached.read_bytes() == env.data and not part.exists()
    assert file_requests(handler) == ["bytes=1000-", None]


def test_server_ignoring_range_restarts_from_zero(env, serve):
    url, handler = serve(IgnoreRangeHandler, files=good_files(env))
    part = env.cached.with_name(env.cached.name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(env.data[:1000])
    download_dataset(ID, [url], **FAST)
    assert env.cached.read_bytes() == env.data  # not the first 1000 bytes twice
    assert file_requests(handler) == ["bytes=1000-"]


# ---------------------------------------------------------------------- 3. wrong bytes
def test_wrong_bytes_rejected_then_next_mirror(env, serve):
    wrong = bytes(b ^ 0xFF for b in env.data)
    bad_url, bad = serve(MirrorHandler, files=good_files(env, data=wrong))
    with pytest.raises(DownloadError) as info:
        download_dataset(ID, [bad_url], **FAST)
    assert bad_url in str(info.value) and sha(wrong) in str(info.value)
    assert not env.cached.exists()
    assert not env.cached.with_name(env.cached.name + ".part").exists()
    assert file_requests(bad) == [None]  # a fresh full download that fails is not retried

    good_url, good = serve(MirrorHandler, files=good_files(env))
    path = download_dataset(ID, [bad_url, good_url], **FAST)
    assert path.read_bytes() == env.data
    assert file_requests(bad) == [None, None] and file_requests(good) == [None]


# ---------------------------------------------------------------------- 4. 404 and 500
def test_404_gives_up_500_retries(env, serve):
    url404, h404 = serve(StatusHandler, status=404)
    url500, h500 = serve(StatusHandler, status=500)
    with pytest.raises(DownloadError) as info:
        download_dataset(ID, [url404, url500], retries=3, **FAST)
    message = str(info.value)
    assert f"{url404}: HTTP 404" in message and f"{url500}: HTTP 500" in message
    assert "gave up after 4 attempts" in message
    assert "offbench datasets build test/toy/random-v0" in message
    assert len(h404.requests) == 1  # 4xx: no retries
    assert len(h500.requests) == 4  # 5xx: the first try and 3 retries
    assert not env.cached.exists()


# ---------------------------------------------------------------------- 5. hanging server
def test_hanging_server_fails_over(env, serve):
    hang_url, hang = serve(HangHandler)
    good_url, good = serve(MirrorHandler, files=good_files(env))
    started = time.monotonic()
    path = download_dataset(ID, [hang_url, good_url], timeout=0.5, retries=1, **FAST)
    elapsed = time.monotonic() - started
    assert path.read_bytes() == env.data
    assert elapsed < 4.0, f"fail-over took {elapsed:.1f}s"
    assert len(hang.requests) == 2  # the first try and one retry, each timing out
    assert file_requests(good) == [None]


# ---------------------------------------------------------------------- 6. lying index
def test_lying_index_is_skipped(env, serve):
    liar_sha = sha(env.old)
    liar_url, liar = serve(MirrorHandler, files={"/index.json": index_json(liar_sha, len(env.old)),
                                                 FILE_URL_PATH: env.old})
    with pytest.raises(DownloadError) as info:
        download_dataset(ID, [liar_url], **FAST)
    message = str(info.value)
    assert liar_url in message and liar_sha in message and env.sha in message
    assert file_requests(liar) == []  # the file of a lying index is never fetched

    good_url, _ = serve(MirrorHandler, files=good_files(env))
    assert download_dataset(ID, [liar_url, good_url], **FAST).read_bytes() == env.data


def test_card_without_sha_trusts_index_with_warning(env, serve):
    env.write_card(None)
    url, _ = serve(MirrorHandler, files=good_files(env))
    with pytest.warns(UserWarning, match="verified only against the mirror's own index"):
        path = download_dataset(ID, [url], **FAST)
    assert path.read_bytes() == env.data


# ---------------------------------------------------------------------- 7. existing files
def test_existing_file_never_overwritten_by_bad_download(env, serve):
    env.cached.parent.mkdir(parents=True)
    env.cached.write_bytes(env.old)  # an older, different version
    wrong = bytes(b ^ 0xFF for b in env.data)
    bad_url, _ = serve(MirrorHandler, files=good_files(env, data=wrong))
    drop_url, _ = serve(StatusHandler, status=503)
    with pytest.raises(DownloadError):
        download_dataset(ID, [bad_url, drop_url], retries=1, **FAST)
    assert env.cached.read_bytes() == env.old
    assert not env.cached.with_name(env.cached.name + ".part").exists()

    good_url, _ = serve(MirrorHandler, files=good_files(env))
    download_dataset(ID, [good_url], **FAST)
    assert env.cached.read_bytes() == env.data  # replaced only by the verified file


def test_verified_existing_file_needs_no_network(env, serve):
    env.cached.parent.mkdir(parents=True)
    env.cached.write_bytes(env.data)
    url, handler = serve(MirrorHandler, files=good_files(env))
    before = env.cached.stat()
    assert download_dataset(ID, [url], **FAST) == env.cached
    assert handler.requests == []
    after = env.cached.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


# ---------------------------------------------------------------------- 8. publish round trip
def put_in_cache(env: Env, data: bytes) -> None:
    env.cached.parent.mkdir(parents=True, exist_ok=True)
    env.cached.write_bytes(data)


def test_publish_then_download_roundtrip(env, serve):
    put_in_cache(env, env.data)
    mirror = env.tmp / "mirror"
    mirror.mkdir()
    (mirror / "index.json").write_text(json.dumps({"format": 1, "datasets": {
        "other/env/x-v0": {"path": "other/env/x-v0.hdf5", "size": 1, "sha256": "0" * 64}}}))

    index_path = publish_mirror(mirror)
    assert index_path == mirror / "index.json"
    index = json.loads(index_path.read_text())
    assert index == {"format": 1, "datasets": {
        "other/env/x-v0": {"path": "other/env/x-v0.hdf5", "size": 1, "sha256": "0" * 64},
        ID: {"path": f"{ID}.hdf5", "size": len(env.data), "sha256": env.sha}}}
    assert index_path.read_text() == json.dumps(index, sort_keys=True, indent=2) + "\n"
    published = mirror / f"{ID}.hdf5"
    assert published.read_bytes() == env.data
    inode = published.stat().st_ino
    publish_mirror(mirror, [ID])  # identical file already there: not copied again
    assert published.stat().st_ino == inode
    assert not [p for p in mirror.rglob("*") if ".tmp-" in p.name]

    # from a directory, a file:// URL and an HTTP server serving that directory
    for source in (str(mirror), mirror.as_uri()):
        dest = env.tmp / "dl" / f"{len(source)}.hdf5"
        assert download_dataset(ID, [source], dest=dest, **FAST).read_bytes() == env.data

    class DirHandler(SimpleHTTPRequestHandler):
        requests: list

        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(mirror), **kwargs)

        def log_message(self, *args) -> None:
            pass

        def do_GET(self):
            self.requests.append((self.path, self.headers.get("Range")))
            super().do_GET()

    url, handler = serve(DirHandler)
    env.cached.unlink()
    assert download_dataset(ID, [url + "/"], **FAST).read_bytes() == env.data
    assert [p for p, _ in handler.requests] == ["/index.json", FILE_URL_PATH]


def test_publish_refuses_corrupt_file_and_leaves_mirror_unchanged(env):
    put_in_cache(env, env.data)
    mirror = env.tmp / "mirror"
    publish_mirror(mirror, [ID])
    snapshot = {p: p.read_bytes() for p in mirror.rglob("*") if p.is_file()}

    corrupt = env.data[: len(env.data) // 2]
    put_in_cache(env, corrupt)
    env.write_card(sha(corrupt))  # card agrees: only validation can catch it
    with pytest.raises(OffbenchError) as info:
        publish_mirror(mirror, [ID])
    assert str(env.cached) in str(info.value) and "corrupt" in str(info.value)
    assert {p: p.read_bytes() for p in mirror.rglob("*") if p.is_file()} == snapshot


def test_publish_refuses_file_that_disagrees_with_card(env):
    put_in_cache(env, env.old)  # valid file, but not the one the card names
    mirror = env.tmp / "mirror"
    with pytest.raises(OffbenchError) as info:
        publish_mirror(mirror)
    message = str(info.value)
    assert "disagree" in message and env.sha in message and sha(env.old) in message
    assert "offbench datasets build" in message
    assert not (mirror / "index.json").exists()
    # a local rebuild kept for its statistics (another CPU) is named as such, and still refused
    (env.cached.parent / (env.cached.name + ".rebuild.json")).write_text('{"content_sha256": "x"}')
    with pytest.raises(OffbenchError, match="local rebuild of .* whose statistics match the card"):
        publish_mirror(mirror)
    assert not (mirror / "index.json").exists()


# ---------------------------------------------------------------------- 9. hostile paths
@pytest.mark.parametrize("bad_path", ["../outside.hdf5", "/etc/outside.hdf5", "a/../../outside.hdf5"])
def test_index_path_escaping_the_mirror_is_rejected(env, serve, bad_path):
    # The target exists with the right bytes: only the path check stops it being used.
    mirror = env.tmp / "mirror"
    mirror.mkdir()
    (env.tmp / "outside.hdf5").write_bytes(env.data)
    (mirror / "index.json").write_bytes(index_json(env.sha, len(env.data), path=bad_path))
    url, handler = serve(MirrorHandler, files={"/index.json": index_json(env.sha, len(env.data), path=bad_path)})
    with pytest.raises(DownloadError) as info:
        download_dataset(ID, [str(mirror), url], **FAST)
    message = str(info.value)
    assert message.count("unsafe entry path") == 2 and repr(bad_path) in message
    assert [p for p, _ in handler.requests] == ["/index.json"]
    assert not env.cached.exists()
    assert not env.cached.parent.exists() or not any(env.cached.parent.iterdir())


def test_served_mirror_resumes_and_serves_only_its_index(env, monkeypatch):
    """`offbench datasets serve`'s server: downloads from it resume with byte ranges, and it
    answers nothing outside the mirror's index (no listing, no traversal, no stray files)."""
    import http.client

    from offbench.cli import main
    from offbench.data.mirror_server import MirrorRequestHandler, make_server, serve_in_thread

    answered = []
    monkeypatch.setattr(MirrorRequestHandler, "log_request",
                        lambda self, code="-", size="-": answered.append((self.path, self.headers.get("Range"), int(code))))
    with pytest.raises(OffbenchError, match="no index.json here; publish a mirror into it first"):
        make_server(env.tmp / "empty", port=0)
    put_in_cache(env, env.data)
    mirror = env.tmp / "mirror"
    assert main(["datasets", "publish", str(mirror)]) == 0
    (mirror / "secret.txt").write_text("not published")
    server = make_server(mirror, port=0, quiet=True)
    serve_in_thread(server)
    host, port = server.server_address[:2]
    try:
        def get(path, headers=None):
            conn = http.client.HTTPConnection(host, port, timeout=5)
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            body = response.read()
            conn.close()
            return response.status, dict(response.getheaders()), body

        status, headers, body = get(FILE_URL_PATH)
        assert status == 200 and body == env.data and headers["Accept-Ranges"] == "bytes"
        status, headers, body = get(FILE_URL_PATH, {"Range": "bytes=100-"})
        assert status == 206 and body == env.data[100:]
        assert headers["Content-Range"] == f"bytes 100-{len(env.data) - 1}/{len(env.data)}"
        assert get(FILE_URL_PATH, {"Range": "bytes=5-9"})[2] == env.data[5:10]
        assert get(FILE_URL_PATH, {"Range": f"bytes={len(env.data)}-"})[0] == 416
        assert json.loads(get("/index.json")[2])["datasets"][ID]["sha256"] == env.sha
        for path in ("/", "/secret.txt", "/test/toy/", "/../home/" + FILE_URL_PATH, "/%2e%2e/catalogue"):
            assert get(path)[0] == 404, path

        # A download interrupted half-way resumes from where its .part stopped.
        env.cached.unlink()
        part = env.cached.with_name(env.cached.name + ".part")
        part.write_bytes(env.data[: len(env.data) // 2])
        url = f"http://{host}:{port}/"
        answered.clear()
        assert main(["datasets", "download", ID, "--mirror", url, "--quiet"]) == 0
        assert env.cached.read_bytes() == env.data and not part.exists()
        assert answered == [("/index.json", None, 200), (FILE_URL_PATH, f"bytes={len(env.data) // 2}-", 206)]
    finally:
        server.shutdown()
        server.server_close()


def test_cli_publishes_and_downloads_a_suite_and_names_what_failed(env, capsys):
    """`publish` and `download` take suites and globs like `build`; with several datasets a
    failed one is named at the end and the others still arrive."""
    from offbench.cli import main
    from offbench.data.mirror_server import make_server, serve_in_thread

    second = "test/toy/expert-v0"
    (env.catalogue / f"{second}.toml").write_text(
        f'id = "{second}"\nenv_id = "Toy-v0"\ndescription = "toy data"\nformat_version = 1\n'
        f'\n[recipe]\npolicy = "random"\n\n[files]\nsha256 = "{sha(env.old)}"\n')
    put_in_cache(env, env.data)
    catalogue.cached_path(second).write_bytes(env.old)
    mirror = env.tmp / "mirror"
    assert main(["datasets", "publish", str(mirror), "test"]) == 0
    assert sorted(json.loads((mirror / "index.json").read_text())["datasets"]) == [second, ID]
    capsys.readouterr()
    assert main(["datasets", "publish", str(env.tmp / "other"), "tests"]) == 2
    assert "'tests' names no catalogue dataset" in capsys.readouterr().err
    assert not (env.tmp / "other").exists()

    server = make_server(mirror, port=0, quiet=True)
    serve_in_thread(server)
    url = "http://%s:%d/" % server.server_address[:2]
    try:
        env.cached.unlink()
        catalogue.cached_path(second).unlink()
        capsys.readouterr()
        assert main(["datasets", "download", "test/toy", "--mirror", url, "--quiet"]) == 0
        assert env.cached.read_bytes() == env.data and catalogue.cached_path(second).read_bytes() == env.old
        assert capsys.readouterr().out.count("downloaded test/toy/") == 2

        # The expert's file vanishes from the mirror: the random one still downloads.
        env.cached.unlink()
        catalogue.cached_path(second).unlink()
        (mirror / f"{second}.hdf5").unlink()
        assert main(["datasets", "download", "test/*/*-v0", "--mirror", url, "--quiet", "--timeout", "5"]) == 2
        assert env.cached.read_bytes() == env.data and not catalogue.cached_path(second).exists()
        assert f"1 of 2 failed: {second}" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()
