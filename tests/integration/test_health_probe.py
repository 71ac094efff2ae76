"""The health prober against real loopback servers: http checks reuse one kept-alive
connection per instance, survive the instance closing it, and report what went wrong in the
same words as the one-shot checks; tcp checks connect and let go."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
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
