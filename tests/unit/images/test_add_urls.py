"""ADD of a URL, as Docker does it: the file downloaded into the image (mode 0600 unless
--chmod, named by the URL's last path part in a folder destination). With --checksum the
layer is keyed by it, so a cached build fetches nothing, and a download that differs fails
the build at its line; without, every build downloads and keys the layer by what came.
A real HTTP server on loopback; real scratch builds (no processes)."""

from __future__ import annotations

import hashlib
import http.server
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images import LocalImageStore
from corral.images.fresh import VOLATILE
from corral.spec.model import ImageSpec

FILES = {"/tools/tool.sh": b"#!/bin/sh\necho tool\n", "/data.txt": b"data v1\n"}


class Server:
    def __init__(self) -> None:
        self.files = dict(FILES)
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    thread = threading.Thread(target=running.http.serve_forever, daemon=True)
    thread.start()
    yield running
    running.http.shutdown()
    running.http.server_close()


def _build(folder: Path, dockerfile: str) -> tuple[LocalImageStore, str]:
    (folder / "Dockerfile").write_text(dockerfile)
    store = LocalImageStore(folder / ".corral", cache_dir=folder / "machine-cache")
    return store, store.build("app", ImageSpec(dockerfile="Dockerfile"), folder)


def _members(store: LocalImageStore, digest: str) -> dict[str, tuple[int, bytes]]:
    found: dict[str, tuple[int, bytes]] = {}
    for layer in store.layout.read_json(digest)["layers"]:
        with tarfile.open(store.layout.blob_path(layer["digest"])) as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isfile() else None
                found[member.name] = (member.mode, data.read() if data else b"")
    return found


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_a_url_is_downloaded_with_docker_modes_and_names(tmp_path: Path, server: Server) -> None:
    store, digest = _build(tmp_path, f"FROM scratch\nADD {server.url}/tools/tool.sh /bin/\n"
                           f"ADD --chmod=644 {server.url}/data.txt /srv/data\n")
    members = _members(store, digest)
    assert members["bin/tool.sh"] == (0o600, FILES["/tools/tool.sh"])
    assert members["srv/data"] == (0o644, FILES["/data.txt"])


def test_with_a_checksum_a_cached_build_fetches_nothing(tmp_path: Path, server: Server) -> None:
    line = f"ADD --checksum={_sha(FILES['/data.txt'])} {server.url}/data.txt /data.txt\n"
    _, first = _build(tmp_path, "FROM scratch\n" + line)
    assert server.requests == ["/data.txt"]
    assert _build(tmp_path, "FROM scratch\n" + line)[1] == first
    assert server.requests == ["/data.txt"], "a cached step with a checksum downloads nothing"


def test_without_a_checksum_every_build_downloads_and_a_change_shows(
        tmp_path: Path, server: Server) -> None:
    dockerfile = f"FROM scratch\nADD {server.url}/data.txt /data.txt\n"
    _, first = _build(tmp_path, dockerfile)
    assert _build(tmp_path, dockerfile)[1] == first
    assert len(server.requests) == 2
    server.files["/data.txt"] = b"data v2\n"
    store, second = _build(tmp_path, dockerfile)
    assert second != first and _members(store, second)["data.txt"][1] == b"data v2\n"


def test_without_a_checksum_the_build_is_never_recorded_as_fresh(
        tmp_path: Path, server: Server) -> None:
    store, _ = _build(tmp_path, f"FROM scratch\nADD {server.url}/data.txt /data.txt\n")
    origins = store.build_origins("app") or frozenset()
    assert [o for o in origins if o.startswith(VOLATILE)]
    line = f"ADD --checksum={_sha(FILES['/data.txt'])} {server.url}/data.txt /data.txt\n"
    store, _ = _build(tmp_path, "FROM scratch\n" + line)
    origins = store.build_origins("app") or frozenset()
    assert origins and not [o for o in origins if o.startswith(VOLATILE)]


@pytest.mark.parametrize(("line", "message"), [
    ("ADD --checksum=sha256:" + "0" * 64 + " {url}/data.txt /d\n", "not the --checksum"),
    ("ADD {url}/missing.txt /d\n", "the server answered 404"),
    ("ADD http://127.0.0.1:9/x.txt /d\n", "cannot download it"),
])
def test_a_wrong_checksum_or_a_failed_download_fails_at_its_line(
        tmp_path: Path, server: Server, line: str, message: str) -> None:
    with pytest.raises(ImageError, match=f"Dockerfile:2: .*{message}"):
        _build(tmp_path, "FROM scratch\n" + line.format(url=server.url))

