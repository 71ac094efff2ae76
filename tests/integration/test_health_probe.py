"""The health prober against real loopback servers: http checks reuse one kept-alive
connection per instance, survive the instance closing it, and report what went wrong in the
same words as the one-shot checks; tcp checks connect and let go."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator
from functools import partial
from queue import Queue

import pytest

from corral.drivers.fake import FakeDriver
from corral.engine.operate.health import check_exec
from corral.engine.operate.probe import Prober
from corral.ports.records import Instance, InstanceState
from corral.spec.model import HealthSpec
from loopback import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the answer says close

    def do_GET(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        server.requests += 1
        status = 503 if self.path == "/bad" else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        if self.path == "/close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # many checks at once: none left waiting for a SYN retry
    requests = 0
    connections = 0

    def get_request(self):  # type: ignore[no-untyped-def]
        self.connections += 1
        return super().get_request()


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def prober() -> Iterator[Prober]:
    prober = Prober(FakeDriver(), check_exec)
    yield prober
    prober.stop()


def probe(prober: Prober, address: str, health: HealthSpec) -> str | None:
    results: Queue[str | None] = Queue()
    instance = Instance("web-v1-a", "web", 1, "d", address, InstanceState.READY, 0.0)
    prober.submit(instance, health, results.put)
    return results.get(timeout=10)


def test_http_checks_of_one_instance_share_one_kept_alive_connection(
        server: Server, prober: Prober) -> None:
    address = f"127.0.0.1:{server.server_address[1]}"
    for _ in range(5):
        assert probe(prober, address, HealthSpec(path="/")) is None
    assert server.requests == 5
    assert server.connections == 1


def test_a_connection_the_instance_closed_is_replaced_without_a_failed_check(
        server: Server, prober: Prober) -> None:
    address = f"127.0.0.1:{server.server_address[1]}"
    assert probe(prober, address, HealthSpec(path="/")) is None
    assert probe(prober, address, HealthSpec(path="/close")) is None  # the server closes it
    assert probe(prober, address, HealthSpec(path="/")) is None
    assert server.connections == 2


def test_failures_say_what_went_wrong(server: Server, prober: Prober) -> None:
    address = f"127.0.0.1:{server.server_address[1]}"
    assert probe(prober, address, HealthSpec(path="/bad")) == "GET /bad answered 503"
    closed = f"127.0.0.1:{free_port()}"
    refused = probe(prober, closed, HealthSpec(path="/"))
    assert refused is not None and refused.startswith("GET /: ConnectionRefusedError")
    tcp = probe(prober, closed, HealthSpec(kind="tcp"))
    assert tcp is not None and tcp.startswith(f"connect {closed}: ConnectionRefusedError")


def test_a_tcp_check_passes_when_the_port_accepts(server: Server, prober: Prober) -> None:
    address = f"127.0.0.1:{server.server_address[1]}"
    assert probe(prober, address, HealthSpec(kind="tcp")) is None
    assert server.requests == 0


def test_an_instance_that_never_answers_fails_within_the_timeout(prober: Prober) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts (the kernel does) but never answers
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        error = probe(prober, address, HealthSpec(path="/", timeout=0.3))
    assert error is not None and error.startswith("GET /: TimeoutError")


@contextlib.contextmanager
def raw_server(answer: bytes) -> Iterator[str]:
    """The address of a server that reads a request, writes `answer` and closes, for each
    connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # shut down: the test is over
                return
            with client:
                client.recv(4096)
                client.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # ends the accept at once (close would not)
        listener.close()
        thread.join(5)


def test_an_answer_whose_body_ends_with_the_connection_passes(prober: Prober) -> None:
    with raw_server(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhi") as address:
        assert probe(prober, address, HealthSpec(path="/")) is None
        assert probe(prober, address, HealthSpec(path="/")) is None  # a fresh connection


def test_a_garbled_answer_fails_the_check(prober: Prober) -> None:
    with raw_server(b"SSH-2.0-OpenSSH_9.2\r\n") as address:
        error = probe(prober, address, HealthSpec(path="/"))
    assert error is not None and error.startswith("GET /: HttpParserError")


def test_an_address_with_a_host_name_is_resolved(server: Server, prober: Prober) -> None:
    assert probe(prober, f"localhost:{server.server_address[1]}", HealthSpec(path="/")) is None


def test_checks_of_many_instances_submitted_together_all_come_back(server: Server,
                                                                   prober: Prober) -> None:
    address = f"127.0.0.1:{server.server_address[1]}"
    closed = f"127.0.0.1:{free_port()}"
    results: Queue[tuple[int, str | None]] = Queue()

    def answered(n: int, error: str | None) -> None:
        results.put((n, error))

    for n in range(40):  # one batch: the probe thread takes them in one wake or a few
        instance = Instance(f"web-v1-{n}", "web", 1, "d", closed if n % 4 == 0 else address,
                            InstanceState.READY, 0.0)
        prober.submit(instance, HealthSpec(path="/close"), partial(answered, n))
    answers = dict(results.get(timeout=10) for _ in range(40))
    assert sorted(answers) == list(range(40))
    assert all((answers[n] is None) == (n % 4 != 0) for n in answers)
