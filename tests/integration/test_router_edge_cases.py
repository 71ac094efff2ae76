"""The builtin router as a real multi-worker process: upgrades, big and streaming bodies, TLS,
slow and hostile clients, a backend dying mid-answer, workers dying, ports taken at restart."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.ports.records import Backend
from corral.routers.builtin import BuiltinRouter
from corral.spec.model import RouterSpec
from loopback import free_port, is_listening, self_signed, wait_for

pytestmark = pytest.mark.integration

BACKEND = textwrap.dedent(r'''
    import asyncio, sys
    PORT = int(sys.argv[1])

    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *fields = head.decode("latin-1").split("\r\n")
                method, path, _ = line.split(" ")
                headers = {k.lower(): v.strip() for k, _, v in
                           (f.partition(":") for f in fields if f)}
                if path == "/ws":
                    writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\n\r\nwelcome;")
                    await writer.drain()
                    while data := await reader.read(65536):
                        writer.write(data.upper())
                        await writer.drain()
                    break
                if path == "/half":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
                    await writer.drain()
                    writer.transport.abort()
                    return
                if path == "/count":  # streams back the size of the body as it reads it
                    size = int(headers.get("content-length", "0"))
                    seen = 0
                    while seen < size:
                        seen += len(await reader.read(min(65536, size - seen)))
                    body = str(seen).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))
                elif path == "/early":  # answers before reading the body, then drains it
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
                    await writer.drain()
                    size = int(headers.get("content-length", "0"))
                    while size > 0:
                        size -= len(await reader.read(min(65536, size)))
                else:
                    body = (headers.get("x-forwarded-proto", "") + " " + path).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", PORT)
        await server.serve_forever()

    asyncio.run(main())
''')


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[str]:
    script = tmp_path / "backend.py"
    script.write_text(BACKEND)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(script), str(port)])
    try:
        wait_for(lambda: is_listening(port), what="the backend to listen")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def make_router(tmp_path: Path, **spec: object) -> BuiltinRouter:
    routing = {"web": RouterSpec.model_validate({"listen": "127.0.0.1:1", **spec})}
    router = BuiltinRouter(tmp_path / "run", workers=2, routing=routing, base=tmp_path)
    router.ensure_running()
    return router


@pytest.fixture
def router(tmp_path: Path) -> Iterator[BuiltinRouter]:
    router = make_router(tmp_path, timeouts={"header": "1s"})
    yield router
    router.stop()


@pytest.fixture
def listen() -> str:
    return f"127.0.0.1:{free_port()}"


def raw(listen: str) -> socket.socket:
    host, port = listen.split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    parts = []
    try:
        while data := sock.recv(65536):
            parts.append(data)
    except OSError:
        pass
    return b"".join(parts)


def get(listen: str, path: str = "/") -> tuple[int, bytes]:
    host, port = listen.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    result = response.status, response.read()
    conn.close()
    return result


def test_a_websocket_upgrade_becomes_a_two_way_byte_tunnel(
        router: BuiltinRouter, listen: str, backend: str) -> None:
    router.set_backends("web", listen, [Backend(backend, 1, "v1")])
    with raw(listen) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n")
        answer = b""
        while b"welcome;" not in answer:
            answer += sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 101 ")
        assert b"upgrade: websocket" in answer.lower()
        for word in (b"ping", b"pong"):
            sock.sendall(word)
            assert sock.recv(4096) == word.upper()


def test_a_large_upload_streams_through_without_being_retried_or_buffered_whole(
        router: BuiltinRouter, listen: str, backend: str) -> None:
    router.set_backends("web", listen, [Backend(backend, 1, "v1")])
    size = 50 * 1024 * 1024
    host, port = listen.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    block = b"z" * (1 << 20)
    conn.request("PUT", "/count", body=iter([block] * 50), headers={"Content-Length": str(size)})
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, str(size).encode())
    conn.close()


def test_an_answer_can_arrive_while_the_request_body_is_still_being_sent(
        router: BuiltinRouter, listen: str, backend: str) -> None:
    router.set_backends("web", listen, [Backend(backend, 1, "v1")])
    with raw(listen) as sock:
        sock.sendall(b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n"
                     + b"a" * 1000)
        head = sock.recv(4096)  # a router that sends the whole body first would hang here
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"early")


def test_a_backend_dying_mid_answer_cuts_only_that_client(
        router: BuiltinRouter, listen: str, backend: str) -> None:
    router.set_backends("web", listen, [Backend(backend, 1, "v1")])
    host, port = listen.split(":")
    healthy = http.client.HTTPConnection(host, int(port), timeout=10)
    healthy.request("GET", "/before")
    assert healthy.getresponse().read() == b"http /before"
    with raw(listen) as sock:
        sock.sendall(b"GET /half HTTP/1.1\r\nHost: t\r\n\r\n")
        got = read_all(sock)  # ends: the router closed this client's connection
    assert got.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 100000" in got
    assert len(got.partition(b"\r\n\r\n")[2]) < 100000
    healthy.request("GET", "/after")  # the other client's keep-alive connection still works
    assert healthy.getresponse().read() == b"http /after"
    healthy.close()
    assert router.stats("web")["v1"].failed_connections == 1


def test_oversized_and_malformed_heads_are_refused_and_closed(
        router: BuiltinRouter, listen: str, backend: str) -> None:
    router.set_backends("web", listen, [Backend(backend, 1, "v1")])
    with raw(listen) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"b" * 70000 + b"\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 431 ")
    with raw(listen) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost t\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 400 ")
    assert get(listen)[0] == 200


def test_slow_clients_are_cut_off_and_do_not_starve_others(
        router: BuiltinRouter, listen: str, backend: str) -> None:
    router.set_backends("web", listen, [Backend(backend, 1, "v1")])
    slow = [raw(listen) for _ in range(50)]
    for sock in slow:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")  # never finished
    assert get(listen) == (200, b"http /")  # served while 50 heads hang
    for sock in slow:  # the 1 s header timeout answers 408 and closes each of them
        assert read_all(sock).startswith(b"HTTP/1.1 408 ")
        sock.close()


def test_idle_and_half_open_connections_past_the_cap_close_oldest_first(
        tmp_path: Path, listen: str, backend: str) -> None:
    router = make_router(tmp_path, timeouts={"header": "30s"})
    try:
        router.set_backends("web", listen, [Backend(backend, 1, "v1")])
        # the cap is per worker and service; lower it through the control socket's timeouts
        from corral.routers.builtin.control import call
        reply = call(str(router.socket_path), {
            "op": "set_backends", "service": "web", "listen": listen,
            "backends": [{"address": backend, "weight": 1, "release": "v1"}],
            "timeouts": {"header": 30, "max_waiting": 5}})
        assert reply["ok"], reply
        crowd = [raw(listen) for _ in range(40)]
        for sock in crowd:
            sock.sendall(b"GET / HTTP/1.1\r\n")
        wait_for(lambda: sum(_is_closed(s) for s in crowd) >= 30,
                 what="connections past the cap to be closed")
        assert get(listen) == (200, b"http /")
        for sock in crowd:
            sock.close()
    finally:
        router.stop()


def _is_closed(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(65536) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def test_tls_is_terminated_with_the_given_certificate(tmp_path: Path, listen: str,
                                                      backend: str) -> None:
    cert, key = self_signed(tmp_path)
    router = make_router(tmp_path, tls={"cert": cert.name, "key": key.name})
    try:
        router.set_backends("web", listen, [Backend(backend, 1, "v1")])
        context = ssl.create_default_context(cafile=str(cert))
        host, port = listen.split(":")
        conn = http.client.HTTPSConnection(host, int(port), timeout=10, context=context)
        conn.request("GET", "/secure")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"https /secure")
        conn.close()
    finally:
        router.stop()


def test_every_worker_applies_a_change_before_it_returns(
        router: BuiltinRouter, listen: str, backend: str, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    assert len(json.loads(json.dumps(router_status(router)))["workers"]) == 2
    router.set_backends("web", listen, [Backend(dead, 1, "v1")])
    router.set_backends("web", listen, [Backend(backend, 1, "v2")])
    # new connections land on either worker (SO_REUSEPORT): all must route to v2 at once
    replies = [get(listen)[0] for _ in range(60)]
    assert replies == [200] * 60
    stats = router.stats("web")
    assert stats["v2"].requests == 60 and "v1" not in stats  # added up over both workers


def router_status(router: BuiltinRouter) -> dict[str, object]:
    from corral.routers.builtin.control import call
    return call(str(router.socket_path), {"op": "ping"})["result"]  # type: ignore[no-any-return]


def test_a_dead_worker_is_restarted_with_the_current_routing(
        router: BuiltinRouter, listen: str, backend: str) -> None:
    router.set_backends("web", listen, [Backend(backend, 1, "v1")])
    victim = router_status(router)["workers"][0]  # type: ignore[index]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: victim not in router_status(router)["workers"]  # type: ignore[operator]
             and None not in router_status(router)["workers"],  # type: ignore[operator]
             what="the worker to be replaced")
    failures = [status for status, _ in (get(listen) for _ in range(40)) if status != 200]
    assert failures == []


def test_a_restored_service_whose_port_is_taken_stays_and_listens_once_it_is_free(
        tmp_path: Path, listen: str, backend: str) -> None:
    router = make_router(tmp_path)
    router.set_backends("web", listen, [Backend(backend, 1, "v1")])
    router.stop()
    host, port = listen.split(":")
    squatter = socket.socket()
    squatter.bind((host, int(port)))
    squatter.listen()
    try:
        router.ensure_running()
        assert router_status(router)["unbound"] == ["web"]
        assert "web" in json.loads(router.state_path.read_text())["services"]
        squatter.close()
        wait_for(lambda: router_status(router)["unbound"] == [], what="the retry to bind")
        assert get(listen) == (200, b"http /")
    finally:
        squatter.close()
        router.stop()


def test_a_restored_service_waits_while_another_router_serves_its_port_and_never_shares_it(
        tmp_path: Path, listen: str, backend: str) -> None:
    router = make_router(tmp_path / "shop")
    router.set_backends("web", listen, [Backend(backend, 1, "v1")])
    router.stop()
    other = make_router(tmp_path / "blog")
    try:
        other.set_backends("web", listen, [])  # no backend: the blog answers 503
        router.ensure_running()
        assert router_status(router)["unbound"] == ["web"]
        assert router.listening() == {}
        assert {get(listen)[0] for _ in range(40)} == {503}, "the two routers shared the port"
        other.stop()
        wait_for(lambda: router.listening() == {"web": listen}, what="the retry to bind")
        assert {get(listen)[0] for _ in range(40)} == {200}
    finally:
        other.stop()
        router.stop()


def test_concurrent_clients_all_get_answers_across_workers(
        router: BuiltinRouter, listen: str, backend: str) -> None:
    router.set_backends("web", listen, [Backend(backend, 1, "v1")])
    errors: list[str] = []

    def client() -> None:
        for _ in range(50):
            try:
                if get(listen)[0] != 200:
                    errors.append("status")
            except OSError as exc:
                errors.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert router.stats("web")["v1"].requests == 400
