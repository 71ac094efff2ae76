"""The registry client's HTTP layer (images/registry/http.py) against small real HTTP servers
on loopback: file slices sent whole, redirects without credentials leaking to another
origin, stale kept-alive connections replaced, and every broken answer a TransportError."""

from __future__ import annotations

import hashlib
import os
import ssl
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from corral.cli.registry import push
from corral.errors import ImageError
from corral.images.registry.client import DEFAULT_CHUNK, RegistryClient
from corral.images.registry.http import FileSlice, HttpClient, TransportError, with_query
from corral.images.registry.reference import parse_reference
from loopback import free_port

Handle = Callable[[BaseHTTPRequestHandler], None]


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, *_: object) -> None:
        pass  # a client hanging up mid-answer is what some tests do on purpose


class Server:
    """A threaded loopback server answering every request with `handle`; it records the
    requests it saw and how many connections it accepted."""

    def __init__(self, handle: Handle) -> None:
        owner = self
        self.seen: list[tuple[str, str, str | None]] = []
        self.connections = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                owner.connections += 1
                super().setup()

            def log_message(self, *_: object) -> None:
                pass

            def answer(self) -> None:
                owner.seen.append((self.command, self.path, self.headers.get("Authorization")))
                handle(self)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = answer

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
          headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


@pytest.fixture
def serve() -> Iterator[Callable[[Handle], Server]]:
    servers: list[Server] = []

    def start(handle: Handle) -> Server:
        servers.append(Server(handle))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def http() -> Iterator[HttpClient]:
    client = HttpClient(timeout=10, tls=ssl.create_default_context())
    yield client
    client.close()


def test_a_file_slice_is_sent_whole_and_exactly(serve: Callable[[Handle], Server],
                                                http: HttpClient, tmp_path: Path) -> None:
    def digest_of_body(handler: BaseHTTPRequestHandler) -> None:
        data = handler.rfile.read(int(handler.headers["Content-Length"]))
        reply(handler, 201, hashlib.sha256(data).hexdigest().encode())

    server = serve(digest_of_body)
    blob = tmp_path / "blob"
    data = bytes(range(256)) * 40_000  # 10 MB
    blob.write_bytes(data)
    for offset, length in ((0, len(data)), (1_000_003, 4_000_000), (len(data) - 7, 7), (5, 0)):
        response = http.request("PATCH", server.url + "/up", body=FileSlice(blob, offset, length))
        assert response.status_code == 201
        assert response.content == hashlib.sha256(data[offset:offset + length]).hexdigest().encode()
    assert server.connections == 1  # all on one kept-alive connection


def test_a_file_shorter_than_its_slice_is_an_error_never_a_short_upload(
        serve: Callable[[Handle], Server], http: HttpClient, tmp_path: Path) -> None:
    server = serve(lambda handler: reply(handler, 201))
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 100)
    with pytest.raises(TransportError, match="ended 50 bytes early"):
        http.request("PUT", server.url + "/up", body=FileSlice(blob, 50, 100))


def test_a_redirect_to_another_origin_carries_no_credentials(
        serve: Callable[[Handle], Server], http: HttpClient) -> None:
    storage = serve(lambda handler: reply(handler, 200, b"blob bytes"))
    registry = serve(lambda handler: reply(handler, 307, headers={
        "Location": storage.url + "/signed?x=1"} if handler.path == "/blob" else {
        "Location": "/blob"}))
    response = http.request("GET", registry.url + "/start",
                            headers={"Authorization": "Bearer secret"})
    assert response.status_code == 200 and response.content == b"blob bytes"
    # same origin: the credentials go along; another origin: they do not
    assert registry.seen == [("GET", "/start", "Bearer secret"), ("GET", "/blob", "Bearer secret")]
    assert storage.seen == [("GET", "/signed?x=1", None)]


def test_a_see_other_redirect_turns_the_request_into_a_get(
        serve: Callable[[Handle], Server], http: HttpClient) -> None:
    def handle(handler: BaseHTTPRequestHandler) -> None:
        if handler.command == "POST":
            handler.rfile.read(int(handler.headers["Content-Length"]))
            reply(handler, 303, headers={"Location": "/done"})
        else:
            reply(handler, 200, b"done")

    server = serve(handle)
    assert http.request("POST", server.url + "/do", body=b"payload").content == b"done"
    assert [(method, path) for method, path, _ in server.seen] == [("POST", "/do"),
                                                                   ("GET", "/done")]


def test_endless_redirects_are_an_error(serve: Callable[[Handle], Server],
                                        http: HttpClient) -> None:
    server = serve(lambda handler: reply(handler, 302, headers={"Location": handler.path}))
    with pytest.raises(TransportError, match="redirects"):
        http.request("GET", server.url + "/loop")


def test_a_kept_alive_connection_the_server_dropped_is_replaced(
        serve: Callable[[Handle], Server], http: HttpClient) -> None:
    def once_per_connection(handler: BaseHTTPRequestHandler) -> None:
        reply(handler, 200, b"ok")  # says nothing about closing, then hangs up anyway
        handler.close_connection = True

    server = serve(once_per_connection)
    for _ in range(3):
        assert http.request("PUT", server.url + "/x", body=b"data").content == b"ok"
    assert server.connections == 3
    assert len(server.seen) == 3  # each request reached the server exactly once


def test_a_body_cut_short_is_a_transport_error(serve: Callable[[Handle], Server],
                                               http: HttpClient) -> None:
    def truncated(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b"y" * 300)
        handler.close_connection = True

    server = serve(truncated)
    response = http.request("GET", server.url + "/blob")
    with pytest.raises(TransportError, match="IncompleteRead"):
        b"".join(response.iter_raw())
    with pytest.raises(TransportError):
        http.request("GET", server.url + "/blob").read()


def test_a_response_closed_unread_does_not_spoil_the_next_request(
        serve: Callable[[Handle], Server], http: HttpClient) -> None:
    server = serve(lambda handler: reply(handler, 200, b"z" * 3_000_000))
    http.request("GET", server.url + "/big").close()
    assert len(http.request("GET", server.url + "/big").content) == 3_000_000


def test_nothing_listening_is_a_transport_error(http: HttpClient) -> None:
    with pytest.raises(TransportError, match="ConnectionRefused"):
        http.request("GET", f"http://127.0.0.1:{free_port()}/v2/")


def test_query_parameters_are_added_to_those_already_there() -> None:
    assert with_query("http://r/v2/up/1?_state=abc", {"digest": "sha256:12"}) \
        == "http://r/v2/up/1?_state=abc&digest=sha256%3A12"
    assert with_query("https://auth/token", [("scope", "a"), ("scope", "b")]) \
        == "https://auth/token?scope=a&scope=b"


class Uploads:
    """The upload half of the distribution API, refusing bodies over `limit` with 413 as a
    proxy in front of a registry does (after reading them, like nginx's lingering close)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sessions: dict[str, bytearray] = {}
        self.stored: dict[str, bytes] = {}
        self.deleted: list[str] = []

    def __call__(self, handler: BaseHTTPRequestHandler) -> None:
        path, _, query = handler.path.partition("?")
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if handler.command == "POST":
            self.sessions[name := f"/v2/team/web/blobs/uploads/{len(self.sessions)}"] = bytearray()
            return reply(handler, 202, headers={"Location": name})
        if handler.command == "DELETE":
            self.deleted.append(path)
            return reply(handler, 204)
        if len(body) > self.limit:
            return reply(handler, 413)
        self.sessions[path] += body
        if handler.command == "PATCH":
            return reply(handler, 202, headers={"Location": path})
        digest = query.removeprefix("digest=").replace("%3A", ":")
        data = bytes(self.sessions[path])
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            return reply(handler, 400)
        self.stored[digest] = data
        return reply(handler, 201)


def test_an_upload_refused_as_too_large_starts_over_in_smaller_chunks(
        serve: Callable[[Handle], Server], tmp_path: Path) -> None:
    uploads = Uploads(limit=3 << 20)
    server = serve(uploads)
    blob = tmp_path / "blob"
    blob.write_bytes(data := os.urandom(20 << 20))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    ref = parse_reference(server.url.removeprefix("http://") + "/team/web:1")
    with RegistryClient(ref, chunk_size=64 << 20) as client:
        client.upload("team/web", blob, digest, len(data))
    assert uploads.stored == {digest: data}
    # 64 MiB: the whole blob, refused; then 5 MiB chunks, refused; then 1.25 MiB chunks
    assert uploads.deleted == ["/v2/team/web/blobs/uploads/0", "/v2/team/web/blobs/uploads/1"]
    assert [m for m, _, _ in server.seen].count("PATCH") == 1 + 16


def test_an_upload_refused_even_in_the_smallest_chunks_is_a_clear_error(
        serve: Callable[[Handle], Server], tmp_path: Path) -> None:
    server = serve(Uploads(limit=1000))
    blob = tmp_path / "blob"
    blob.write_bytes(data := os.urandom(3 << 20))
    ref = parse_reference(server.url.removeprefix("http://") + "/team/web:1")
    with RegistryClient(ref) as client, pytest.raises(ImageError, match="answered 413"):
        client.upload("team/web", blob, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))


def test_the_cli_default_chunk_size_is_the_clients() -> None:
    option = next(p for p in push.params if p.name == "chunk_size")
    assert option.default << 20 == DEFAULT_CHUNK
