"""The builtin router as a real process in front of real backend processes on 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from corral.errors import RouterError
from corral.ports.records import Backend
from corral.routers.builtin import BuiltinRouter
from loopback import free_port, is_listening, wait_for

pytestmark = pytest.mark.integration

BACKEND_SOURCE = textwrap.dedent('''
    import http.server, json, sys, threading, time
    PORT, NAME, MODE = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    lock, gate = threading.Lock(), threading.Event()
    connections = 0

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits 40 ms for a delayed ACK

        def setup(self):
            global connections
            with lock:
                connections += 1
            self.served = 0
            super().setup()

        def log_message(self, *args):
            pass

        def reply(self, body, status=200):
            self.send_response(status)
            self.send_header("X-Backend", NAME)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def chunks(self, parts, wait_gate=False):
            self.send_response(200)
            self.send_header("X-Backend", NAME)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i, part in enumerate(parts):
                if wait_gate and i == 1:
                    gate.wait(10)
                self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\\r\\n\\r\\n")

        def body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", ""):
                data = b""
                while (size := int(self.rfile.readline().split(b";")[0], 16)):
                    data += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return data
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def hang_up_if_flaky(self):
            self.served += 1
            if MODE == "flaky" and self.served > 1:
                self.close_connection = True  # the keep-alive race: close, answer nothing
                return True
            return False

        def do_GET(self):
            if self.hang_up_if_flaky():
                return
            path, _, query = self.path.partition("?")
            if path == "/connections":
                self.reply(str(connections).encode())
            elif path == "/slow":
                time.sleep(float(query))
                self.reply(NAME.encode())
            elif path == "/headers":
                self.reply(json.dumps({k.lower(): v for k, v in self.headers.items()}).encode())
            elif path == "/status":
                self.reply(b"status", int(query))
            elif path == "/open":
                gate.set()
                self.reply(b"open")
            elif path == "/gated":
                self.chunks([b"first\\n", b"second\\n"], wait_gate=True)
            else:
                self.reply(NAME.encode())

        def do_POST(self):
            if self.hang_up_if_flaky():
                return
            data = self.body()
            if self.path == "/echo-chunked":
                self.chunks([data[i:i + 1000] for i in range(0, len(data), 1000)])
            else:
                self.reply(data)

        do_PUT = do_POST

    server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    server.serve_forever()
''')


@dataclass
class BackendProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(10)

    def get(self, path: str) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.request("GET", path)
        data = conn.getresponse().read()
        conn.close()
        return data


@pytest.fixture
def start_backend(tmp_path: Path) -> Iterator[Callable[..., BackendProcess]]:
    script = tmp_path / "backend.py"
    script.write_text(BACKEND_SOURCE)
    started: list[BackendProcess] = []

    def start(name: str, mode: str = "normal") -> BackendProcess:
        port = free_port()
        proc = subprocess.Popen([sys.executable, str(script), str(port), name, mode])
        backend = BackendProcess(name, port, proc)
        started.append(backend)
        wait_for(lambda: is_listening(port), what=f"backend {name} to listen")
        return backend

    yield start
    for backend in started:
        backend.stop()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[BuiltinRouter]:
    builtin = BuiltinRouter(tmp_path / "run")
    builtin.ensure_running()
    yield builtin
    builtin.stop()


@pytest.fixture
def listen() -> str:
    return f"127.0.0.1:{free_port()}"


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def backend(self) -> str:
        return self.headers.get("X-Backend", "")


def connection(listen: str) -> http.client.HTTPConnection:
    host, port = listen.split(":")
    return http.client.HTTPConnection(host, int(port), timeout=10)


def send(listen: str, method: str = "GET", path: str = "/", *, body: bytes | None = None,
         headers: dict[str, str] | None = None,
         conn: http.client.HTTPConnection | None = None) -> Reply:
    """One request; on `conn` (kept open) if given, else on a connection of its own."""
    own = conn or connection(listen)
    own.request(method, path, body=body, headers=headers or {})
    response = own.getresponse()
    reply = Reply(response.status, response.headers, response.read())
    if conn is None:
        own.close()
    return reply


def test_requests_are_balanced_by_weight(router: BuiltinRouter, listen: str,
                                         start_backend: Callable[..., BackendProcess]) -> None:
    a, b = start_backend("a"), start_backend("b")
    router.set_backends("web", listen, [Backend(a.address, 3, "v1"), Backend(b.address, 1, "v1")])
    conn = connection(listen)
    served = Counter(send(listen, conn=conn).backend for _ in range(400))
    conn.close()
    assert abs(served["a"] - 300) <= 20 and abs(served["b"] - 100) <= 20, served


def test_a_preview_header_reaches_a_release_without_weight(
        router: BuiltinRouter, listen: str, start_backend: Callable[..., BackendProcess]) -> None:
    stable, preview = start_backend("stable"), start_backend("preview")
    router.set_backends("web", listen, [Backend(stable.address, 1, "v1"),
                                        Backend(preview.address, 0, "v2")])
    assert {send(listen).backend for _ in range(10)} == {"stable"}
    assert send(listen, headers={"X-Corral-Release": "v2"}).backend == "preview"
    assert send(listen, headers={"X-Corral-Release": "v9"}).status == 503


def test_backend_connections_are_kept_alive(router: BuiltinRouter, listen: str,
                                            start_backend: Callable[..., BackendProcess]) -> None:
    a = start_backend("a")
    router.set_backends("web", listen, [Backend(a.address, 1, "v1")])
    for _ in range(50):
        assert send(listen).status == 200  # a new client connection every time
    # the request asking counts itself as one more connection
    assert int(a.get("/connections")) <= 5


def test_client_connections_are_kept_alive(router: BuiltinRouter, listen: str,
                                           start_backend: Callable[..., BackendProcess]) -> None:
    a = start_backend("a")
    router.set_backends("web", listen, [Backend(a.address, 1, "v1")])
    conn = connection(listen)
    assert [send(listen, conn=conn).status for _ in range(5)] == [200] * 5
    first_socket = conn.sock
    send(listen, conn=conn)
    assert conn.sock is first_socket  # http.client reconnects (new socket) if we had closed
    conn.close()


def test_forwarding_headers_are_added_and_hop_by_hop_headers_dropped(
        router: BuiltinRouter, listen: str, start_backend: Callable[..., BackendProcess]) -> None:
    import json
    a = start_backend("a")
    router.set_backends("web", listen, [Backend(a.address, 1, "v1")])
    seen = json.loads(send(listen, path="/headers", headers={
        "X-Request-Id": "req-42", "Connection": "keep-alive, X-Secret", "X-Secret": "1",
        "X-Forwarded-For": "10.0.0.9"}).body)
    assert seen["x-request-id"] == "req-42"
    assert seen["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert "x-secret" not in seen
    generated = send(listen, path="/headers")
    assert json.loads(generated.body)["x-request-id"] == generated.headers["X-Request-Id"]


def test_a_weight_change_under_load_fails_no_request(
        router: BuiltinRouter, listen: str, start_backend: Callable[..., BackendProcess]) -> None:
    a, b = start_backend("a"), start_backend("b")
    router.set_backends("web", listen, [Backend(a.address, 1, "v1"), Backend(b.address, 1, "v2")])
    failures: list[str] = []
    served: list[str] = []
    started_after_drain: list[str] = []  # backends of requests sent once b was drained
    drained = threading.Event()
    stop = threading.Event()

    def client() -> None:
        conn = connection(listen)
        for _ in range(600):
            if stop.is_set():
                break
            try:
                after_drain = drained.is_set()
                reply = send(listen, path="/slow?0.005", conn=conn)
                served.append(reply.backend)
                if after_drain:
                    started_after_drain.append(reply.backend)
                if reply.status != 200:
                    failures.append(f"{reply.status} {reply.body!r}")
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                conn.close()
                conn = connection(listen)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: served.count("b") >= 20, what="b to carry traffic")
        router.set_backends("web", listen, [Backend(a.address, 1, "v1"),
                                            Backend(b.address, 0, "v2")])
        assert router.wait_drained("web", b.address, 10)
        drained.set()
        b.stop()
        wait_for(lambda: len(started_after_drain) >= 200, what="traffic after b stopped")
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert failures == []
    assert "b" not in started_after_drain


def test_a_backend_refusing_connections_is_retried_on_another(
        router: BuiltinRouter, listen: str, start_backend: Callable[..., BackendProcess]) -> None:
    live = start_backend("live")
    dead = f"127.0.0.1:{free_port()}"
    router.set_backends("web", listen, [Backend(dead, 1, "v1"), Backend(live.address, 1, "v1")])
    replies = [send(listen) for _ in range(10)]
    replies += [send(listen, "POST", "/", body=b"x" * 10) for _ in range(4)]
    assert [r.status for r in replies] == [200] * 14
    assert {r.backend for r in replies} == {"live"}


def test_an_idempotent_request_on_a_connection_the_backend_dropped_is_retried(
        tmp_path: Path, listen: str, start_backend: Callable[..., BackendProcess]) -> None:
    # One worker: each worker has its own pool, and with two the POST's client connection
    # could land on a worker that has no pooled upstream connection yet (so it would open a
    # fresh one, get an answer, and the race this test is about would not happen).
    router = BuiltinRouter(tmp_path / "run-one", workers=1)
    router.ensure_running()
    try:
        check_keep_alive_race(router, listen, start_backend("flaky", "flaky"))
    finally:
        router.stop()


def check_keep_alive_race(router: BuiltinRouter, listen: str, flaky: BackendProcess) -> None:
    """`flaky` answers once per connection, then hangs up."""
    router.set_backends("web", listen, [Backend(flaky.address, 1, "v1")])
    assert [send(listen).status for _ in range(3)] == [200, 200, 200]
    # the same race for a POST is not retried: the backend may have acted on it
    assert send(listen, "POST", "/", body=b"order").status == 502


def test_chunked_request_and_response_bodies_stream_through(
        router: BuiltinRouter, listen: str, start_backend: Callable[..., BackendProcess]) -> None:
    a = start_backend("a")
    router.set_backends("web", listen, [Backend(a.address, 1, "v1")])
    payload = [bytes([65 + i % 26]) * 3000 for i in range(20)]
    conn = connection(listen)
    conn.request("POST", "/echo-chunked", body=iter(payload), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    response = conn.getresponse()
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert response.read() == b"".join(payload)
    conn.close()


def test_a_response_streams_to_the_client_before_the_backend_finishes(
        router: BuiltinRouter, listen: str, start_backend: Callable[..., BackendProcess]) -> None:
    a = start_backend("a")
    router.set_backends("web", listen, [Backend(a.address, 1, "v1")])
    conn = connection(listen)
    conn.request("GET", "/gated")
    response = conn.getresponse()
    # the backend holds its second chunk until /open: a buffering router would hang here
    assert response.readline() == b"first\n"
    a.get("/open")
    assert response.read() == b"second\n"
    conn.close()


def test_no_backend_with_weight_gives_503(router: BuiltinRouter, listen: str,
                                          start_backend: Callable[..., BackendProcess]) -> None:
    a = start_backend("a")
    router.set_backends("web", listen, [Backend(a.address, 0, "v1")])
    reply = send(listen)
    assert reply.status == 503
    assert b"no backend" in reply.body


def test_a_malformed_request_gets_400(router: BuiltinRouter, listen: str) -> None:
    router.set_backends("web", listen, [])
    host, port = listen.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_a_listen_address_in_use_raises_router_error(router: BuiltinRouter) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = f"127.0.0.1:{squatter.getsockname()[1]}"
        with pytest.raises(RouterError, match="is already in use by another program") as caught:
            router.set_backends("web", taken, [])
    assert caught.value.hint
    assert router.backends("web") == []


def test_stats_count_requests_errors_and_latency_per_release(
        router: BuiltinRouter, listen: str, start_backend: Callable[..., BackendProcess]) -> None:
    a, b = start_backend("a"), start_backend("b")
    router.set_backends("web", listen, [Backend(a.address, 1, "v1"), Backend(b.address, 0, "v2")])
    for _ in range(5):
        send(listen)
    send(listen, path="/status?500")
    send(listen, headers={"X-Corral-Release": "v2"})
    stats = router.stats("web")
    assert (stats["v1"].requests, stats["v1"].errors, stats["v1"].failed_connections) == (6, 1, 0)
    assert stats["v2"].requests == 1
    bounds = [bound for bound, _ in stats["v1"].latency_buckets]
    counts = [count for _, count in stats["v1"].latency_buckets]
    assert bounds[0] == 0.005 and bounds[-1] == float("inf")
    assert counts == sorted(counts) and counts[-1] == 6
    assert stats["v1"].latency_sum > 0


def test_the_router_outlives_its_starter_and_restarts_with_its_last_backends(
        tmp_path: Path, listen: str, start_backend: Callable[..., BackendProcess]) -> None:
    a = start_backend("a")
    run_dir = tmp_path / "run"
    starter = textwrap.dedent(f'''
        from pathlib import Path
        from corral.ports.records import Backend
        from corral.routers.builtin import BuiltinRouter
        router = BuiltinRouter(Path({str(run_dir)!r}))
        router.ensure_running()
        router.set_backends("web", {listen!r}, [Backend({a.address!r}, 1, "v1")])
    ''')
    subprocess.run([sys.executable, "-c", starter], check=True, timeout=30)
    router = BuiltinRouter(run_dir)
    try:
        assert send(listen).backend == "a"  # the starter process has exited
        pid = router.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # no goodbye: the state file is all that is left
        wait_for(lambda: not router.is_running(), what="the router to die")
        router.ensure_running()
        assert router.pid() != pid
        assert router.backends("web") == [Backend(a.address, 1, "v1")]
        assert send(listen).backend == "a"
    finally:
        router.stop()


def test_a_new_listen_address_moves_the_service_and_removing_it_stops_listening(
        router: BuiltinRouter, listen: str, start_backend: Callable[..., BackendProcess]) -> None:
    a = start_backend("a")
    router.set_backends("web", listen, [Backend(a.address, 1, "v1")])
    moved = f"127.0.0.1:{free_port()}"
    router.set_backends("web", moved, [Backend(a.address, 1, "v1")])
    assert send(moved).backend == "a"
    assert not is_listening(int(listen.split(":")[1]))
    router.remove_service("web")
    assert not is_listening(int(moved.split(":")[1]))


def test_a_second_router_on_the_same_control_socket_refuses_to_start(
        router: BuiltinRouter) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "corral.routers.builtin", "--control", str(router.socket_path),
         "--state", str(router.state_path)], capture_output=True, text=True, timeout=30)
    assert second.returncode == 1
    assert "another router" in second.stderr
    assert router.is_running()


def test_stopping_a_router_that_is_not_running_is_harmless(tmp_path: Path) -> None:
    router = BuiltinRouter(tmp_path / "run")
    router.stop()
    assert not router.is_running()
    with pytest.raises(RouterError, match="does not answer"):
        router.backends("web")
