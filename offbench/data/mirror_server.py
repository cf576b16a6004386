"""Serve a published mirror directory over HTTP (``offbench datasets serve``).

A lab that builds the datasets once can share them: ``offbench datasets publish DIR`` writes
the files and ``index.json``; ``offbench datasets serve DIR`` answers ``download``'s requests.

Only ``index.json`` and the files its entries name are served (read at each request, so a
publish into the served directory shows up at once, atomically). There is no directory
listing, and an entry path that is not a safe relative path is never opened. Single byte
ranges (``Range: bytes=N-`` and ``bytes=N-M``) are answered with 206, so an interrupted
download resumes where it stopped instead of starting again.
"""
from __future__ import annotations

import os
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from offbench.data.mirrors import INDEX_NAME, check_entry_path, parse_index
from offbench.errors import OffbenchError

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_CHUNK = 1 << 20


class MirrorRequestHandler(BaseHTTPRequestHandler):
    """Read-only GET/HEAD for one mirror directory (``root``, set by :func:`make_server`)."""

    root: Path
    server_version = "offbench-mirror"
    quiet = False

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        if not self.quiet:
            super().log_message(format, *args)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def _served_file(self) -> Path | None:
        """The file a request names, if the current index lists it (or it is the index)."""
        relative = unquote(urlsplit(self.path).path).lstrip("/")
        index_path = self.root / INDEX_NAME
        if relative == INDEX_NAME:
            return index_path if index_path.is_file() else None
        try:
            entries = parse_index(index_path.read_bytes(), str(index_path))
        except (OSError, ValueError):
            return None
        for entry in entries.values():
            path = entry.get("path") if isinstance(entry, dict) else None
            try:
                if check_entry_path(path) == relative:
                    return self.root / relative
            except ValueError:
                continue
        return None

    def _serve(self, send_body: bool) -> None:
        path = self._served_file()
        try:
            file = open(path, "rb") if path is not None else None
        except OSError:
            file = None
        if file is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not in this mirror's index")
            return
        with file:
            size = os.fstat(file.fileno()).st_size
            start, end = 0, size - 1
            match = _RANGE.fullmatch(self.headers.get("Range", "").strip())
            if match:
                start = int(match[1])
                end = min(int(match[2]), size - 1) if match[2] else size - 1
                if start >= size or start > end:
                    self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(HTTPStatus.PARTIAL_CONTENT)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                self.send_response(HTTPStatus.OK)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/json" if path.name == INDEX_NAME
                             else "application/octet-stream")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            if not send_body:
                return
            file.seek(start)
            left = end - start + 1
            try:
                while left > 0:
                    chunk = file.read(min(_CHUNK, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client went away; it resumes with a Range request


def make_server(directory: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000, *,
                quiet: bool = False) -> ThreadingHTTPServer:
    """A threaded HTTP server for a published mirror (port 0 picks a free port)."""
    root = Path(directory).resolve()
    if not (root / INDEX_NAME).is_file():
        raise OffbenchError(f"{root}: no {INDEX_NAME} here; publish a mirror into it first "
                            f"(`offbench datasets publish {directory}`)")
    handler = type("BoundMirrorRequestHandler", (MirrorRequestHandler,), {"root": root, "quiet": quiet})
    try:
        return ThreadingHTTPServer((host, port), handler)
    except OSError as exc:
        raise OffbenchError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port") from None


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    """Run ``server`` in a daemon thread (tests, notebooks); stop it with ``server.shutdown()``."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return thread

