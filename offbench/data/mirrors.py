"""Checksummed dataset mirrors: publishing a mirror directory and downloading from mirrors.

A *mirror* is an ``http://`` / ``https://`` base URL, a ``file://`` URL or a local directory
holding an ``index.json``::

    {"format": 1, "datasets": {"<id>": {"path": "<id>.hdf5", "size": <bytes>, "sha256": "<hex>"}}}

and the files it names (paths relative to the mirror). :func:`publish_mirror` writes such a
directory from the local cache; any static web server can then serve it.

Downloading (:func:`download_dataset`) follows these rules:

* **Trust anchor.** The expected sha256 is the catalogue card's ``files.sha256``; a mirror's
  index is only a map from ids to paths. An index whose sha256 disagrees with the card is a
  lying index and that mirror is skipped. Only a card without a sha256 makes the download
  fall back on the index's hash, with a warning.
* **Nothing unverified is ever visible.** Bytes stream into ``<dest>.part`` while being
  hashed; only a file whose size and sha256 match is moved onto ``dest`` (``os.replace``).
  An existing ``dest`` is never deleted or overwritten before that, and a ``dest`` that
  already matches is returned without any network traffic.
* **Robust transfers.** Every socket connect and read has a ``timeout``. Dropped connections,
  short reads, timeouts and HTTP 5xx are retried ``retries`` times with exponential backoff
  (``backoff * 2**attempt`` seconds), resuming with ``Range: bytes=N-`` from the bytes already
  in ``.part``; a server that answers 200 to a Range request is read from zero again. HTTP
  4xx gives up on that mirror at once. A ``.part`` left by an earlier run is resumed too; it
  is trusted only through the final sha256 check (on mismatch it is deleted and the download
  restarts from zero once).
* **Fail over.** Mirrors are tried in order; when all fail, one :class:`DownloadError` lists
  every mirror with its reason and says what to do.
* **Hostile indexes are contained.** Entry paths that are absolute or contain ``..`` are
  rejected, so an index cannot make the client read or write outside the mirror and ``dest``.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from tqdm import tqdm

from offbench.data import catalogue
from offbench.data.provenance import read_note
from offbench.errors import DatasetFormatError, DownloadError, OffbenchError

INDEX_NAME = "index.json"
INDEX_FORMAT = 1
CHUNK_SIZE = 1 << 20
# An index is a small JSON file; a larger answer is not an index and is not read into memory.
MAX_INDEX_BYTES = 64 << 20
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
MIRRORS_ENV = "OFFBENCH_MIRRORS"


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks so memory stays bounded."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_list(extra: list[str] | None = None) -> list[str]:
    """The mirrors to try, in order: ``extra`` (``--mirror``), then ``$OFFBENCH_MIRRORS``.

    The environment variable is comma- or whitespace-separated. Duplicates keep their first place.
    """
    from_env = re.split(r"[,\s]+", os.environ.get(MIRRORS_ENV, ""))
    mirrors: list[str] = []
    for item in [*(extra or []), *from_env]:
        item = item.strip()
        if item and item not in mirrors:
            mirrors.append(item)
    return mirrors


# ====================================================================== index entries
@dataclass(frozen=True)
class IndexEntry:
    """One dataset in a mirror's index.json."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> dict:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def check_entry_path(path: object) -> str:
    """Return ``path`` if it is a safe relative POSIX path, else raise ``ValueError``.

    A hostile index must not reach outside the mirror: no absolute paths, no ``..``, no
    backslashes or drive letters, no empty or ``.`` segments.
    """
    if not isinstance(path, str) or not path:
        raise ValueError(f"entry path {path!r} is not a non-empty string")
    segments = path.split("/")
    if (path.startswith("/") or "\\" in path or "\x00" in path or ":" in segments[0]
            or any(s in ("", ".", "..") for s in segments)):
        raise ValueError(f"unsafe entry path {path!r} (absolute or containing '..'): refused")
    return path


def parse_index(raw: bytes, where: str) -> dict[str, dict]:
    """The ``datasets`` table of an index.json; raises ``ValueError`` naming the problem."""
    try:
        index = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(index, dict) or not isinstance(index.get("datasets"), dict):
        raise ValueError(f"{where} has no 'datasets' table")
    version = index.get("format", INDEX_FORMAT)
    if not isinstance(version, int) or version > INDEX_FORMAT:
        raise ValueError(f"{where} has index format {version!r}, newer than this offbench reads "
                         f"({INDEX_FORMAT}); upgrade offbench")
    return index["datasets"]


def entry_from_json(dataset_id: str, value: object) -> IndexEntry:
    """Validate one index entry; raises ``ValueError`` naming the problem."""
    if not isinstance(value, dict):
        raise ValueError(f"index entry of {dataset_id} is not a table")
    size, sha = value.get("size"), value.get("sha256")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"index entry of {dataset_id} has an invalid size {size!r}")
    if not isinstance(sha, str) or not SHA256_PATTERN.match(sha):
        raise ValueError(f"index entry of {dataset_id} has an invalid sha256 {sha!r}")
    return IndexEntry(check_entry_path(value.get("path")), size, sha)


# ====================================================================== publishing
def publish_mirror(directory: str | os.PathLike, dataset_ids: list[str] | None = None) -> Path:
    """Copy cached dataset files into a mirror directory and update its ``index.json``.

    ``dataset_ids`` defaults to every catalogue id whose file is in the cache. Every file is
    validated (and checked against its card's sha256) before anything is written, so a
    refused publish leaves the mirror unchanged. Returns the path of the index.
    """
    directory = Path(directory)
    index_path = directory / INDEX_NAME
    existing = _read_local_index(index_path)  # fail on a broken index before copying anything
    cards = ([catalogue.get_card(i) for i in dataset_ids] if dataset_ids is not None
             else [c for c in catalogue.list_cards() if catalogue.cached_path(c.id).is_file()])
    if not cards:
        raise OffbenchError(
            f"nothing to publish: no catalogue dataset is in the cache ({catalogue.offbench_home()}); "
            "build or download datasets first, or name them explicitly")
    checked = [(card.id, *_checked_cached_file(card)) for card in cards]

    directory.mkdir(parents=True, exist_ok=True)
    for dataset_id, source, entry in checked:
        _copy_into_mirror(source, directory / entry.path, entry.sha256)
        existing[dataset_id] = entry.to_json()
    _write_json_atomic(index_path, {"format": INDEX_FORMAT, "datasets": existing})
    return index_path


def _checked_cached_file(card: catalogue.DatasetCard) -> tuple[Path, IndexEntry]:
    """The cached file of ``card`` and its index entry, after validating its content."""
    path = catalogue.cached_path(card.id)
    if not path.is_file():
        raise OffbenchError(f"cannot publish {card.id}: it is not in the cache ({path}); "
                            f"run `offbench datasets build {card.id}` or `offbench datasets download {card.id}`")
    from offbench.data.dataset import read_dataset

    try:
        read_dataset(path, validate=True)
    except DatasetFormatError as exc:
        raise OffbenchError(f"refusing to publish the corrupt file {path} ({card.id}): {exc}") from None
    sha = file_sha256(path)
    if card.sha256 and card.sha256 != sha:
        if read_note(path):
            raise OffbenchError(
                f"refusing to publish {path}: it is a local rebuild of {card.id} whose statistics match the card "
                f"but whose bytes do not (see {path.name}.rebuild.json); a mirror serves only the card's own data. "
                "Publish from a cache that holds the published file, or make this data a new version of the card first")
        raise OffbenchError(
            f"refusing to publish {path}: the card {card.path} and the cached file disagree (card "
            f"sha256 {card.sha256}, file sha256 {sha}); rebuild it with `offbench datasets build "
            f"{card.id}` or re-download it with `offbench datasets download {card.id}`")
    return path, IndexEntry(card.id + ".hdf5", path.stat().st_size, sha)


def _copy_into_mirror(source: Path, target: Path, sha256: str) -> None:
    """Copy ``source`` to ``target`` via a temporary file, unless an identical file is there."""
    if target.is_file() and target.stat().st_size == source.stat().st_size and file_sha256(target) == sha256:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        shutil.copyfile(source, tmp)
        # The cache could change under us; never publish bytes other than the ones we checked.
        if file_sha256(tmp) != sha256:
            raise OffbenchError(f"{source} changed while it was being published; publish again")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _read_local_index(index_path: Path) -> dict[str, dict]:
    if not index_path.is_file():
        return {}
    try:
        return dict(parse_index(index_path.read_bytes(), str(index_path)))
    except (OSError, ValueError) as exc:
        raise OffbenchError(f"cannot merge with the existing mirror index: {exc}; fix or delete it") from None


def _write_json_atomic(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(value, sort_keys=True, indent=2) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ====================================================================== mirror access
class _Retryable(Exception):
    """A transient failure (dropped connection, short read, timeout, HTTP 5xx): try again."""


class _RangeUnusable(_Retryable):
    """A partial answer that does not start where we asked: fetch the whole file next time."""


class _MirrorFailed(Exception):
    """This mirror cannot provide the file; the message is the reason shown to the user."""


class _Stream(Protocol):
    def read(self, n: int) -> bytes: ...  # raises _Retryable / _MirrorFailed
    def close(self) -> None: ...


class _Mirror(Protocol):
    label: str

    def read_index(self) -> bytes: ...

    def open(self, entry: IndexEntry, offset: int) -> tuple[_Stream, int]:
        """A stream of the entry's bytes and the offset it actually starts at (0 or ``offset``)."""


class _HttpStream:
    """An HTTP response body whose read errors are classified as transient."""

    def __init__(self, response: http.client.HTTPResponse):
        self._response = response

    def read(self, n: int) -> bytes:
        try:
            return self._response.read(n)
        except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
            raise _Retryable(f"transfer interrupted ({_describe(exc)})") from None

    def close(self) -> None:
        self._response.close()


class _HttpMirror:
    def __init__(self, base: str, timeout: float):
        self.label = base
        self._base = base.rstrip("/") + "/"
        self._timeout = timeout

    def _url(self, relative: str) -> str:
        return self._base + urllib.parse.quote(relative, safe="/")

    def _request(self, url: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        request = urllib.request.Request(url, headers={"User-Agent": "offbench", **headers})
        try:
            # The timeout covers the connect and every single socket read.
            return urllib.request.urlopen(request, timeout=self._timeout)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code} {exc.reason} for {url}") from None
            raise _MirrorFailed(f"HTTP {exc.code} {exc.reason} for {url}") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, socket.gaierror):  # an unknown host does not come back
                raise _MirrorFailed(f"cannot resolve the host of {url} ({exc.reason})") from None
            raise _Retryable(f"cannot connect to {url} ({_describe(exc.reason)})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(f"no answer from {url} ({_describe(exc)})") from None

    def read_index(self) -> bytes:
        url = self._url(INDEX_NAME)
        response = self._request(url, {})
        with contextlib.closing(_HttpStream(response)) as stream:
            raw = _read_all(stream, MAX_INDEX_BYTES + 1)
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and len(raw) < int(length):
            raise _Retryable(f"connection closed after {len(raw)} of {length} bytes of {url}")
        if len(raw) > MAX_INDEX_BYTES:
            raise _MirrorFailed(f"{url} is larger than {MAX_INDEX_BYTES} bytes: not an index")
        return raw

    def open(self, entry: IndexEntry, offset: int) -> tuple[_Stream, int]:
        url = self._url(entry.path)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._request(url, headers)
        try:
            start = self._served_offset(response, url, entry.size, offset)
        except BaseException:
            response.close()
            raise
        return _HttpStream(response), start

    @staticmethod
    def _served_offset(response: http.client.HTTPResponse, url: str, size: int, offset: int) -> int:
        """Where the body starts: ``offset`` for a matching 206, else 0 (a full answer)."""
        if response.status == 206:
            match = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
            if match and match[3] != "*" and int(match[3]) != size:
                raise _MirrorFailed(f"{url} is {match[3]} bytes but the index says {size}")
            if match and int(match[1]) == offset:
                return offset
            raise _RangeUnusable(f"{url} answered a Range request with {match[0] if match else 'no Content-Range'}")
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) != size:
            raise _MirrorFailed(f"{url} is {length} bytes but the index says {size}")
        return 0


class _LocalStream:
    def __init__(self, file: BinaryIO, path: Path):
        self._file, self._path = file, path

    def read(self, n: int) -> bytes:
        try:
            return self._file.read(n)
        except OSError as exc:
            raise _MirrorFailed(f"cannot read {self._path} ({exc})") from None

    def close(self) -> None:
        self._file.close()


class _LocalMirror:
    def __init__(self, label: str, root: Path):
        self.label = label
        self._root = root

    def read_index(self) -> bytes:
        path = self._root / INDEX_NAME
        if not self._root.is_dir():
            raise _MirrorFailed("no such directory")
        try:
            if path.stat().st_size > MAX_INDEX_BYTES:
                raise _MirrorFailed(f"{path} is larger than {MAX_INDEX_BYTES} bytes: not an index")
            return path.read_bytes()
        except FileNotFoundError:
            raise _MirrorFailed(f"no {INDEX_NAME} in {self._root}") from None
        except OSError as exc:
            raise _MirrorFailed(f"cannot read {path} ({exc})") from None

    def open(self, entry: IndexEntry, offset: int) -> tuple[_Stream, int]:
        path = self._root / check_entry_path(entry.path)
        try:
            file = open(path, "rb")
        except OSError as exc:
            raise _MirrorFailed(f"cannot open {path} ({exc.strerror or exc})") from None
        size = os.fstat(file.fileno()).st_size
        if size != entry.size:  # a local file cannot grow back: no point retrying
            file.close()
            raise _MirrorFailed(f"{path} is {size} bytes but the index says {entry.size}")
        file.seek(offset)
        return _LocalStream(file, path), offset


def _open_mirror(mirror: str, timeout: float) -> _Mirror:
    scheme = urllib.parse.urlsplit(mirror).scheme.lower()
    if scheme in ("http", "https"):
        return _HttpMirror(mirror, timeout)
    if scheme == "file":
        return _LocalMirror(mirror, Path(urllib.request.url2pathname(urllib.parse.urlsplit(mirror).path)))
    if "://" in mirror:
        raise _MirrorFailed(f"unsupported mirror scheme {scheme!r}; use http(s)://, file:// or a directory")
    return _LocalMirror(mirror, Path(mirror).expanduser())


def _describe(exc: BaseException | str) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(exc) or type(exc).__name__


def _read_all(stream: _Stream, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit and (chunk := stream.read(min(CHUNK_SIZE, limit - total))):
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


# ====================================================================== retries
class _RetryBudget:
    """Counts failed attempts against ``retries`` and sleeps ``backoff * 2**attempt`` between them.

    One budget covers a whole mirror (index and file), so a flaky mirror cannot retry forever.
    """

    def __init__(self, retries: int, backoff: float):
        self.retries, self.backoff, self.attempt = max(0, retries), backoff, 0

    @property
    def left(self) -> bool:
        return self.attempt < self.retries

    def spend(self, reason: str) -> None:
        """Sleep before the next attempt, or raise :class:`_MirrorFailed` if none is left."""
        if not self.left:
            raise _MirrorFailed(f"{reason} (gave up after {self.attempt + 1} attempts)")
        time.sleep(self.backoff * 2 ** self.attempt)
        self.attempt += 1


def _read_index_with_retries(mirror: _Mirror, budget: _RetryBudget) -> bytes:
    while True:
        try:
            return mirror.read_index()
        except _Retryable as exc:
            budget.spend(str(exc))


# ====================================================================== downloading
@dataclass
class _Options:
    dataset_id: str
    progress: bool
    timeout: float
    retries: int
    backoff: float


def download_dataset(
    dataset_id: str,
    mirrors: list[str] | None = None,
    *,
    dest: Path | None = None,
    progress: bool = True,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """Download the file of ``dataset_id`` into ``dest`` (default: its cache path), verified.

    ``mirrors`` defaults to :func:`mirror_list` (``$OFFBENCH_MIRRORS``); a list is used as
    given. See the module docstring for the verification, retry and fail-over rules. Raises
    :class:`DownloadError` listing every mirror's failure when none could provide the file.
    """
    card = catalogue.get_card(dataset_id)
    dest = Path(dest) if dest is not None else catalogue.cached_path(card.id)
    expected = card.sha256
    if expected and dest.is_file() and file_sha256(dest) == expected:
        return dest
    mirrors = mirror_list() if mirrors is None else [m for m in mirrors if m.strip()]
    if not mirrors:
        raise DownloadError(
            f"cannot download {card.id}: no mirrors are configured; pass --mirror URL (http(s)://, "
            f"file:// or a directory) or set {MIRRORS_ENV}, or build it locally with "
            f"`offbench datasets build {card.id}`")
    if not expected:
        warnings.warn(f"the card of {card.id} records no files.sha256: {dest} is verified only against "
                      "the mirror's own index.json", stacklevel=2)
    options = _Options(card.id, progress, timeout, retries, backoff)
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[tuple[str, str]] = []
    for mirror in mirrors:
        try:
            return _download_from_mirror(mirror, dest, expected, options)
        except _MirrorFailed as exc:
            failures.append((mirror, str(exc)))
    raise DownloadError(_failure_message(card.id, failures))


def _failure_message(dataset_id: str, failures: list[tuple[str, str]]) -> str:
    lines = [f"cannot download {dataset_id}: every mirror failed"]
    lines += [f"  - {mirror}: {reason}" for mirror, reason in failures]
    lines.append(f"  what to do: check the mirror URLs (--mirror / {MIRRORS_ENV}) and your network, "
                 f"or rebuild the dataset locally with `offbench datasets build {dataset_id}`")
    return "\n".join(lines)


def _download_from_mirror(label: str, dest: Path, expected: str | None, options: _Options) -> Path:
    """Fetch, verify and install ``dest`` from one mirror; raises :class:`_MirrorFailed`."""
    mirror = _open_mirror(label, options.timeout)
    budget = _RetryBudget(options.retries, options.backoff)
    entry = _index_entry(mirror, _read_index_with_retries(mirror, budget), options.dataset_id, expected)
    if not expected and dest.is_file() and file_sha256(dest) == entry.sha256:
        return dest  # already there, as far as this mirror's index can tell
    part = dest.with_name(dest.name + ".part")
    _fetch_verified(mirror, entry, part, budget, options)
    os.replace(part, dest)
    return dest


def _index_entry(mirror: _Mirror, raw: bytes, dataset_id: str, expected: str | None) -> IndexEntry:
    where = f"{mirror.label.rstrip('/')}/{INDEX_NAME}"
    try:
        datasets = parse_index(raw, where)
        if dataset_id not in datasets:
            raise _MirrorFailed(f"{where} has no entry for {dataset_id}")
        entry = entry_from_json(dataset_id, datasets[dataset_id])
    except ValueError as exc:
        raise _MirrorFailed(str(exc)) from None
    if expected and entry.sha256 != expected:
        raise _MirrorFailed(
            f"the index of mirror {mirror.label} lists sha256 {entry.sha256} for {dataset_id} but the "
            f"catalogue card says {expected}: the index is wrong or stale, skipping this mirror")
    return entry


def _fetch_verified(mirror: _Mirror, entry: IndexEntry, part: Path, budget: _RetryBudget,
                    options: _Options) -> None:
    """Leave exactly the entry's verified bytes in ``part``, or raise :class:`_MirrorFailed`.

    Resumed bytes (from an earlier run or an earlier attempt) are only trusted through the
    final hash: if that fails after a resume, the part is dropped and fetched once from zero.
    """
    restarted = False
    while True:
        digest, resumed = _fill_part(mirror, entry, part, budget, options)
        if digest == entry.sha256:
            return
        part.unlink(missing_ok=True)
        reason = (f"downloaded file has sha256 {digest} but {entry.sha256} was expected "
                  f"(the mirror's file is corrupt or altered)")
        if not resumed or restarted or not budget.left:
            raise _MirrorFailed(reason)
        budget.spend(reason + "; restarting from zero")
        restarted = True


def _hash_part(part: Path, size: int) -> tuple[int, "hashlib._Hash"]:
    """Bytes already in ``part`` and their running hash; a part longer than the file is dropped."""
    digest = hashlib.sha256()
    if not part.is_file():
        return 0, digest
    if part.stat().st_size > size:
        part.unlink()
        return 0, digest
    have = 0
    with open(part, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
            have += len(chunk)
    return have, digest


def _fill_part(mirror: _Mirror, entry: IndexEntry, part: Path, budget: _RetryBudget,
               options: _Options) -> tuple[str, bool]:
    """Transfer until ``part`` holds ``entry.size`` bytes, retrying transient failures.

    Returns the sha256 of the part and whether any bytes were resumed rather than fetched
    in one piece.
    """
    resumed = False
    with tqdm(total=entry.size, unit="B", unit_scale=True, unit_divisor=1024, desc=options.dataset_id,
              disable=not options.progress, leave=False) as bar:
        while True:
            have, digest = _hash_part(part, entry.size)  # re-hash: the part is our only state
            bar.n = have
            bar.refresh()
            if have == entry.size:
                return digest.hexdigest(), resumed or have > 0
            try:
                stream, start = mirror.open(entry, have)
                try:
                    if start != have:  # the server ignored the Range header: start over
                        have, digest = 0, hashlib.sha256()
                        bar.reset(total=entry.size)
                    resumed = resumed or start > 0
                    _stream_into(stream, part, have, digest, entry.size, bar)
                finally:
                    stream.close()
                return digest.hexdigest(), resumed
            except _RangeUnusable as exc:
                part.unlink(missing_ok=True)  # the next attempt asks for the whole file
                budget.spend(str(exc))
            except _Retryable as exc:
                budget.spend(str(exc))


def _stream_into(stream: _Stream, part: Path, have: int, digest: "hashlib._Hash", size: int, bar: tqdm) -> None:
    """Append the stream to ``part`` (truncated to ``have`` bytes) up to ``size`` bytes, hashing."""
    try:
        out = open(part, "r+b" if have else "wb")
    except OSError as exc:
        raise OffbenchError(f"cannot write {part} ({exc}); check the permissions of its directory") from None
    with out:
        out.truncate(have)
        out.seek(have)
        while have < size:
            chunk = stream.read(min(CHUNK_SIZE, size - have))
            if not chunk:
                raise _Retryable(f"connection closed after {have} of {size} bytes")
            try:
                out.write(chunk)
            except OSError as exc:
                raise OffbenchError(f"cannot write {part} ({exc}); free disk space and try again") from None
            digest.update(chunk)
            have += len(chunk)
            bar.update(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    extra = b""
    with contextlib.suppress(_Retryable, _MirrorFailed):
        # Only an extra byte counts; an error after the full size does not spoil the file.
        extra = stream.read(1)
    if extra:
        part.unlink(missing_ok=True)
        raise _MirrorFailed(f"the mirror served more than the {size} bytes its index lists")
