"""The Router port's contract, run on every router: the in-memory fake, builtin and haproxy."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import shutil
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.errors import RouterError
from corral.ports.records import Backend
from corral.ports.router import Router
from corral.routers.builtin import BuiltinRouter
from corral.routers.fake import FakeRouter
from corral.routers.haproxy import HaproxyRouter


def free_listen() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture(params=["fake", pytest.param("builtin", marks=pytest.mark.integration),
                        pytest.param("haproxy", marks=pytest.mark.integration)])
def router(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Router]:
    if request.param == "fake":
        fake = FakeRouter()
        fake.ensure_running()
        yield fake
        return
    yield from _running(request.param, tmp_path)


def _running(kind: str, tmp_path: Path) -> Iterator[Router]:
    """A real router of `kind` ("builtin" or "haproxy"), stopped after the test."""
    if kind == "haproxy" and shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed")
    real: BuiltinRouter | HaproxyRouter = (
        BuiltinRouter(tmp_path / "run") if kind == "builtin" else HaproxyRouter(tmp_path / "run"))
    real.ensure_running()
    try:
        yield real
    finally:
        real.stop()


BLUE = [Backend("127.0.0.1:9101", 1, "v1", "web-1-a"),
        Backend("127.0.0.1:9102", 1, "v1", "web-1-b")]
GREEN = [Backend("127.0.0.1:9201", 3, "v2", "web-2-a"),
         Backend("127.0.0.1:9101", 0, "v1", "web-1-a")]


def test_set_backends_then_backends_returns_them(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    assert sorted(router.backends("web"), key=lambda b: b.address) == BLUE


def test_setting_backends_again_replaces_the_whole_set(router: Router) -> None:
    listen = free_listen()
    router.set_backends("web", listen, BLUE)
    router.set_backends("web", listen, GREEN)
    assert sorted(router.backends("web"), key=lambda b: b.address) == \
        sorted(GREEN, key=lambda b: b.address)


def test_an_empty_backend_set_is_allowed(router: Router) -> None:
    listen = free_listen()
    router.set_backends("web", listen, BLUE)
    router.set_backends("web", listen, [])
    assert router.backends("web") == []


def test_services_keep_separate_backends(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    router.set_backends("api", free_listen(), GREEN[:1])
    assert router.backends("api") == GREEN[:1]
    assert len(router.backends("web")) == 2


def test_a_removed_service_has_no_backends(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    router.remove_service("web")
    assert router.backends("web") == []
    assert router.in_flight("web") == {}


def test_removing_an_unknown_service_is_not_an_error(router: Router) -> None:
    router.remove_service("nothing")
    assert router.backends("nothing") == []


def test_a_removed_service_frees_its_listen_address_for_another(router: Router) -> None:
    listen = free_listen()
    router.set_backends("web", listen, BLUE)
    router.remove_service("web")
    router.set_backends("api", listen, GREEN)
    assert len(router.backends("api")) == 2


def test_stats_are_empty_for_a_new_service(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    assert router.stats("web") == {}
    assert router.stats("unknown") == {}


def test_in_flight_has_a_zero_for_every_backend_of_an_idle_service(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    assert router.in_flight("web") == {"127.0.0.1:9101": 0, "127.0.0.1:9102": 0}


def test_an_idle_backend_is_drained_at_once(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    assert router.wait_drained("web", "127.0.0.1:9101", 0.0) is True


def test_two_services_cannot_share_a_listen_address(router: Router) -> None:
    listen = free_listen()
    router.set_backends("web", listen, BLUE)
    with pytest.raises(RouterError, match="already"):
        router.set_backends("api", listen, GREEN)
    assert router.backends("api") == []


def test_listening_names_the_address_each_service_is_served_on(router: Router) -> None:
    web, api = free_listen(), free_listen()
    router.set_backends("web", web, BLUE)
    router.set_backends("api", api, GREEN)
    assert router.listening() == {"api": api, "web": web}
    router.remove_service("api")
    assert router.listening() == {"web": web}


def test_a_refused_listen_change_leaves_the_service_on_its_old_address(
        router: Router) -> None:
    web, api = free_listen(), free_listen()
    router.set_backends("web", web, BLUE)
    router.set_backends("api", api, GREEN)
    with pytest.raises(RouterError, match="already"):
        router.set_backends("web", api, BLUE)
    assert router.listening() == {"api": api, "web": web}
    assert len(router.backends("web")) == 2


def test_ensure_running_twice_is_harmless(router: Router) -> None:
    router.set_backends("web", free_listen(), BLUE)
    router.ensure_running()
    assert len(router.backends("web")) == 2


# Preview routing: `X-Corral-Release: vN` reaches release vN only, whatever its weights.
# Only routers that carry traffic take part (the fake proxies nothing).

@pytest.fixture(params=[pytest.param("builtin", marks=pytest.mark.integration),
                        pytest.param("haproxy", marks=pytest.mark.integration)])
def proxying_router(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Router]:
    yield from _running(request.param, tmp_path)


class _NamedServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str) -> None:
        super().__init__(("127.0.0.1", 0), _Named)
        self.name = name

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a router closing an idle kept-alive connection is no error


class _Named(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _NamedServer

    def do_GET(self) -> None:
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backend() -> Iterator[Callable[[str], str]]:
    """Start an HTTP server that answers its name; returns its address."""
    servers: list[_NamedServer] = []

    def start(name: str) -> str:
        server = _NamedServer(name)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def ask(listen: str, release: str | None = None) -> tuple[int, str]:
    host, port = listen.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/", headers={"X-Corral-Release": release} if release else {})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def served(listen: str, release: str | None = None, times: int = 20) -> set[str]:
    answers = [ask(listen, release) for _ in range(times)]
    assert {status for status, _ in answers} == {200}, answers
    return {body for _, body in answers}


def test_a_release_header_reaches_a_backend_without_weight(
        proxying_router: Router, backend: Callable[[str], str]) -> None:
    listen = free_listen()
    stable, hidden = backend("stable"), backend("hidden")
    proxying_router.set_backends("web", listen, [Backend(stable, 1, "v1"),
                                                 Backend(hidden, 0, "v2")])
    assert served(listen) == {"stable"}
    assert served(listen, "v2") == {"hidden"}


def test_a_release_header_naming_a_release_without_backends_gets_503(
        proxying_router: Router, backend: Callable[[str], str]) -> None:
    listen = free_listen()
    proxying_router.set_backends("web", listen, [Backend(backend("stable"), 1, "v1")])
    assert ask(listen, "v9") == (503, "503 Service Unavailable: no backend of release v9\n")
    assert served(listen, "v1") == {"stable"}


def test_a_release_header_on_a_weighted_release_stays_within_that_release(
        proxying_router: Router, backend: Callable[[str], str]) -> None:
    listen = free_listen()
    proxying_router.set_backends("web", listen, [
        Backend(backend("old"), 1, "v1"), Backend(backend("new-a"), 3, "v2"),
        Backend(backend("new-b"), 3, "v2")])
    assert served(listen, "v1") == {"old"}
    assert served(listen, "v2", times=60) == {"new-a", "new-b"}


def test_a_release_header_follows_the_release_as_its_backends_change(
        proxying_router: Router, backend: Callable[[str], str]) -> None:
    listen = free_listen()
    stable, first, second = backend("stable"), backend("first"), backend("second")
    proxying_router.set_backends("web", listen, [Backend(stable, 1, "v1"),
                                                 Backend(first, 0, "v2")])
    assert served(listen, "v2") == {"first"}
    proxying_router.set_backends("web", listen, [Backend(stable, 1, "v1"),
                                                 Backend(second, 0, "v2")])
    assert served(listen, "v2") == {"second"}
    proxying_router.set_backends("web", listen, [Backend(stable, 0, "v1"),
                                                 Backend(second, 1, "v2"),
                                                 Backend(first, 0, "v3")])
    assert served(listen, "v1") == {"stable"}
    assert served(listen, "v3") == {"first"}
    proxying_router.set_backends("web", listen, [Backend(second, 1, "v2")])
    assert ask(listen, "v1")[0] == 503
    assert served(listen) == {"second"}


# One listen address, one router: another project's router (builtin or haproxy) must not
# join a port through SO_REUSEPORT and take part of its traffic.

@pytest.mark.integration
@pytest.mark.parametrize(("first", "second"), [("builtin", "builtin"), ("builtin", "haproxy"),
                                               ("haproxy", "builtin"), ("haproxy", "haproxy")])
def test_a_second_router_is_refused_the_address_another_router_serves(
        first: str, second: str, tmp_path: Path, backend: Callable[[str], str]) -> None:
    listen = free_listen()
    running = contextlib.contextmanager(_running)
    with running(first, tmp_path / "shop" / ".corral") as one, \
            running(second, tmp_path / "blog" / ".corral") as other:
        one.set_backends("web", listen, [Backend(backend("shop"), 1, "v1")])
        with pytest.raises(RouterError) as refused:
            other.set_backends("web", listen, [Backend(backend("blog"), 1, "v1")])
        message = str(refused.value)
        assert f"{listen} is already in use by the corral router" in message
        assert f"of project {tmp_path / 'shop'} (pid " in message
        assert other.listening() == {}
        assert served(listen, times=40) == {"shop"}
