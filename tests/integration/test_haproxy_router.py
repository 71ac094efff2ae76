"""The haproxy router with real HAProxy and real backends: weights, drains, stats, TLS,
preview maps."""

from __future__ import annotations

import http.client
import shutil
import ssl
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral.ports.records import Backend
from corral.routers.haproxy import HaproxyRouter
from corral.routers.haproxy.runtime import parse_info
from corral.spec.model import RouterSpec
from loopback import free_port, is_listening, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("haproxy") is None, reason="needs haproxy")]

BACKEND = textwrap.dedent('''
    import http.server, sys, time
    PORT, NAME = int(sys.argv[1]), sys.argv[2]

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path == "/slow":
                time.sleep(float(query))
            status = 500 if path == "/fail" else 200
            body = (NAME + " " + self.headers.get("X-Forwarded-Proto", "")).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    server.serve_forever()
''')


@pytest.fixture
def start_backend(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    script = tmp_path / "backend.py"
    script.write_text(BACKEND)
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> str:
        port = free_port()
        started.append(subprocess.Popen([sys.executable, str(script), str(port), name]))
        wait_for(lambda: is_listening(port), what=f"backend {name}")
        return f"127.0.0.1:{port}"

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def router(tmp_path: Path) -> Iterator[HaproxyRouter]:
    router = HaproxyRouter(tmp_path / "run")
    router.ensure_running()
    yield router
    router.stop()


@pytest.fixture
def listen() -> str:
    return f"127.0.0.1:{free_port()}"


def get(listen: str, path: str = "/",
        conn: http.client.HTTPConnection | None = None) -> tuple[int, str]:
    host, port = listen.split(":")
    own = conn or http.client.HTTPConnection(host, int(port), timeout=10)
    own.request("GET", path)
    response = own.getresponse()
    result = response.status, response.read().decode()
    if conn is None:
        own.close()
    return result


def test_traffic_follows_weights_changed_at_runtime_without_a_reload(
        router: HaproxyRouter, listen: str, start_backend: Callable[[str], str]) -> None:
    a, b = start_backend("a"), start_backend("b")
    router.set_backends("web", listen, [Backend(a, 3, "v1"), Backend(b, 1, "v2")])
    worker = router._ask("show info")
    served = Counter(get(listen)[1].split()[0] for _ in range(200))
    assert abs(served["a"] - 150) <= 10 and abs(served["b"] - 50) <= 10, served
    router.set_backends("web", listen, [Backend(a, 0, "v1"), Backend(b, 1, "v2")])
    assert {get(listen)[1].split()[0] for _ in range(20)} == {"b"}
    pid_line = [ln for ln in worker.splitlines() if ln.startswith("Pid:")]
    assert pid_line[0] in router._ask("show info")  # same HAProxy worker: no reload happened


def test_stats_are_kept_per_release(router: HaproxyRouter, listen: str,
                                    start_backend: Callable[[str], str]) -> None:
    a, b = start_backend("a"), start_backend("b")
    router.set_backends("web", listen, [Backend(a, 1, "v1"), Backend(b, 1, "v2")])
    for _ in range(10):
        get(listen)
    stats = router.stats("web")
    assert stats["v1"].requests == 5 and stats["v2"].requests == 5
    router.set_backends("web", listen, [Backend(a, 0, "v1"), Backend(b, 1, "v2")])
    for _ in range(4):
        assert get(listen, "/fail")[0] == 500
    stats = router.stats("web")
    assert (stats["v2"].requests, stats["v2"].errors) == (9, 4)
    assert stats["v1"].requests == 5
    assert stats["v2"].latency_buckets[-1] == (float("inf"), 9)


def test_a_removed_backend_drains_its_in_flight_request(
        router: HaproxyRouter, listen: str, start_backend: Callable[[str], str]) -> None:
    a, b = start_backend("a"), start_backend("b")
    router.set_backends("web", listen, [Backend(a, 1, "v1")])
    result: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: result.append(get(listen, "/slow?1.5")))
    slow.start()
    wait_for(lambda: router.in_flight("web").get(a) == 1, what="the slow request")
    router.set_backends("web", listen, [Backend(b, 1, "v2")])
    assert router.in_flight("web") == {a: 1, b: 0}
    assert get(listen)[1].startswith("b")
    assert router.wait_drained("web", a, 10)
    slow.join(10)
    assert result and result[0][0] == 200
    assert router.in_flight("web") == {b: 0}


def test_tls_is_terminated_with_the_given_certificate(
        tmp_path: Path, listen: str, start_backend: Callable[[str], str]) -> None:
    from test_router_edge_cases import self_signed  # same folder: pytest puts it on sys.path

    cert, key = self_signed(tmp_path)
    spec = RouterSpec.model_validate({"listen": listen, "kind": "haproxy",
                                      "tls": {"cert": cert.name, "key": key.name}})
    router = HaproxyRouter(tmp_path / "run", routing={"web": spec}, base=tmp_path)
    router.ensure_running()
    try:
        router.set_backends("web", listen, [Backend(start_backend("a"), 1, "v1")])
        host, port = listen.split(":")
        conn = http.client.HTTPSConnection(host, int(port), timeout=10,
                                           context=ssl.create_default_context(cafile=str(cert)))
        assert get(listen, conn=conn) == (200, "a https")
        conn.close()
    finally:
        router.stop()


def test_more_backends_than_slots_grow_the_backend(
        router: HaproxyRouter, listen: str, start_backend: Callable[[str], str]) -> None:
    a = start_backend("a")
    ports: set[int] = set()
    while len(ports) < 20:  # free_port() may give one port twice: 20 distinct backends
        ports.add(free_port())
    many = [Backend(f"127.0.0.1:{port}", 0, "v0") for port in sorted(ports)]
    router.set_backends("web", listen, [Backend(a, 1, "v1")])
    router.set_backends("web", listen, [Backend(a, 1, "v1"), *many])
    assert len(router.backends("web")) == 21
    assert get(listen)[1].startswith("a")


def get_release(listen: str, release: str, path: str = "/") -> tuple[int, str]:
    """A request with `X-Corral-Release`: the status and the first word of the answer."""
    host, port = listen.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path, headers={"X-Corral-Release": release})
    response = conn.getresponse()
    result = response.status, response.read().decode().split(" ")[0]
    conn.close()
    return result


def worker_pid(router: HaproxyRouter) -> str:
    return parse_info(router._ask("show info"))["Pid"]


def test_preview_maps_follow_backend_changes_without_a_reload(
        router: HaproxyRouter, listen: str, start_backend: Callable[[str], str]) -> None:
    a, b, c = start_backend("a"), start_backend("b"), start_backend("c")
    router.set_backends("web", listen, [Backend(a, 1, "v1"), Backend(b, 0, "v2")])
    worker = worker_pid(router)
    assert get_release(listen, "v2") == (200, "b")
    router.set_backends("web", listen, [Backend(a, 1, "v1"), Backend(c, 0, "v2")])
    assert {get_release(listen, "v2")[1] for _ in range(10)} == {"c"}
    router.set_backends("web", listen, [Backend(a, 1, "v1")])
    assert get_release(listen, "v2")[0] == 503
    assert worker_pid(router) == worker
    assert router._ask(f"show map {router.state.map_dir}/web.map").count(" v1") == 2


def test_a_reload_rebuilds_the_preview_map_from_state(
        router: HaproxyRouter, listen: str, start_backend: Callable[[str], str]) -> None:
    a, b = start_backend("a"), start_backend("b")
    router.set_backends("web", listen, [Backend(a, 1, "v1")])
    router.set_backends("web", listen, [Backend(a, 1, "v1"), Backend(b, 0, "v2")])
    worker = worker_pid(router)
    router.set_backends("api", f"127.0.0.1:{free_port()}", [])  # a new service reloads
    assert worker_pid(router) != worker
    assert get_release(listen, "v2") == (200, "b")
    router.stop()
    router.ensure_running()  # a fresh HAProxy starts from the state file too
    assert get_release(listen, "v2") == (200, "b")


def test_a_running_haproxy_without_the_preview_map_is_reloaded_with_it(
        router: HaproxyRouter, listen: str, start_backend: Callable[[str], str]) -> None:
    a, b = start_backend("a"), start_backend("b")
    router.set_backends("web", listen, [Backend(a, 1, "v1")])
    worker = worker_pid(router)
    router.state.map_dir = router.state.map_dir.with_name("maps-new")  # unknown to HAProxy
    router.set_backends("web", listen, [Backend(a, 1, "v1"), Backend(b, 0, "v2")])
    assert worker_pid(router) != worker
    assert get_release(listen, "v2") == (200, "b")


def test_a_preview_request_is_not_sent_to_another_release_when_its_backend_fails(
        router: HaproxyRouter, listen: str, start_backend: Callable[[str], str]) -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there
    router.set_backends("web", listen, [Backend(start_backend("a"), 1, "v1"),
                                        Backend(closed, 0, "v2")])
    assert [get_release(listen, "v2")[0] for _ in range(3)] == [503] * 3


def test_preview_requests_count_for_their_release_and_are_drained(
        router: HaproxyRouter, listen: str, start_backend: Callable[[str], str]) -> None:
    a, b = start_backend("a"), start_backend("b")
    router.set_backends("web", listen, [Backend(a, 1, "v1"), Backend(b, 0, "v2")])
    for _ in range(3):
        get_release(listen, "v2")
    assert router.stats("web")["v2"].requests == 3
    result: list[tuple[int, str]] = []
    slow = threading.Thread(target=lambda: result.append(get_release(listen, "v2", "/slow?1.5")))
    slow.start()
    wait_for(lambda: router.in_flight("web").get(b) == 1, what="the slow preview request")
    router.set_backends("web", listen, [Backend(a, 1, "v1")])
    assert get_release(listen, "v2")[0] == 503
    assert router.wait_drained("web", b, 10)
    slow.join(10)
    assert result == [(200, "b")]
