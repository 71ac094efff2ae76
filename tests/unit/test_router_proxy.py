"""The proxy's edge cases, in-process: routing table and scripted backends on 127.0.0.1.

No subprocess here, so timeouts can be short and each backend can misbehave on cue.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from corral.routers.builtin.services import Timeouts
from corral.routers.builtin.table import RoutingTable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start_backend(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"127.0.0.1:{server.sockets[0].getsockname()[1]}"


def answering(answer: Callable[[bytes], bytes], heads: list[bytes] | None = None) -> Handler:
    """A keep-alive backend: reads each request (head and Content-Length body), answers it."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if heads is not None:
                    heads.append(head)
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                writer.write(answer(head))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
    return handle


async def routed(tmp_path: Path, address: str, **timeouts: float) -> tuple[RoutingTable, str]:
    table = RoutingTable(Timeouts(shutdown_grace=1, **timeouts))
    listen = f"127.0.0.1:{free_port()}"
    await table.set_backends("web", listen, [{"address": address, "weight": 1,
                                              "release": "v1"}])
    return table, listen


async def exchange(listen: str, raw: bytes) -> bytes:
    """Send raw bytes, read until the router closes the connection."""
    host, port = listen.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw)
    data = await reader.read(-1)
    writer.close()
    return data


GET_CLOSE = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def test_a_backend_that_does_not_answer_in_time_gives_504(tmp_path: Path) -> None:
    async def scenario() -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(10)
        backend, address = await start_backend(silent)
        table, listen = await routed(tmp_path, address, first_byte=0.3)
        answer = await exchange(listen, GET_CLOSE)
        assert answer.startswith(b"HTTP/1.1 504 ")
        assert table.services["web"].stats["v1"].failed_connections == 1
        await table.shutdown()
        backend.close()
    run(scenario())


def test_a_garbage_answer_gives_502(tmp_path: Path) -> None:
    async def scenario() -> None:
        backend, address = await start_backend(answering(lambda head: b"NONSENSE\r\n\r\n"))
        table, listen = await routed(tmp_path, address)
        assert (await exchange(listen, GET_CLOSE)).startswith(b"HTTP/1.1 502 ")
        await table.shutdown()
        backend.close()
    run(scenario())


def test_a_close_delimited_answer_is_chunked_for_http11_and_raw_for_http10(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        async def old_style(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.0 200 OK\r\n\r\nhello")
            await writer.drain()
            writer.close()
        backend, address = await start_backend(old_style)
        table, listen = await routed(tmp_path, address)
        modern = await exchange(listen, GET_CLOSE)
        assert b"Transfer-Encoding: chunked" in modern
        assert modern.endswith(b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        legacy = await exchange(listen, b"GET / HTTP/1.0\r\n\r\n")
        assert b"Transfer-Encoding" not in legacy and legacy.endswith(b"\r\n\r\nhello")
        await table.shutdown()
        backend.close()
    run(scenario())


def test_pipelined_head_204_and_get_answers_arrive_in_order_on_one_connection(
        tmp_path: Path) -> None:
    def answer(head: bytes) -> bytes:
        if head.startswith(b"HEAD"):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        if head.startswith(b"GET /empty"):
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        return OK

    async def scenario() -> None:
        backend, address = await start_backend(answering(answer))
        table, listen = await routed(tmp_path, address)
        answers = await exchange(listen, b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
                                         b"GET /empty HTTP/1.1\r\nHost: t\r\n\r\n" + GET_CLOSE)
        statuses = [line.split(b" ")[1] for line in answers.split(b"\r\n")
                    if line.startswith(b"HTTP/1.1 ")]
        assert statuses == [b"200", b"204", b"200"]
        assert b"Content-Length: 5" in answers and answers.endswith(b"\r\n\r\nok")
        await table.shutdown()
        backend.close()
    run(scenario())


def test_expect_100_continue_is_answered_by_the_router(tmp_path: Path) -> None:
    heads: list[bytes] = []

    async def scenario() -> None:
        backend, address = await start_backend(answering(lambda head: OK, heads))
        table, listen = await routed(tmp_path, address)
        host, port = listen.split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        assert (await reader.read(-1)).startswith(b"HTTP/1.1 200 ")
        writer.close()
        await table.shutdown()
        backend.close()
    run(scenario())
    assert b"expect" not in heads[0].lower()


def test_an_upgrade_the_backend_refuses_is_relayed_and_the_connection_closed(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        backend, address = await start_backend(answering(lambda head: OK))
        table, listen = await routed(tmp_path, address)
        answer = await exchange(listen, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\n"
                                        b"Upgrade: websocket\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 200 ") and b"Connection: close" in answer
        await table.shutdown()
        backend.close()
    run(scenario())


def test_a_backend_losing_its_weight_has_its_idle_connection_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        hung_up = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await answering(lambda head: OK)(reader, writer)
            hung_up.set()  # the router closed its pooled connection
        backend, address = await start_backend(handle)
        table, listen = await routed(tmp_path, address)
        assert (await exchange(listen, GET_CLOSE)).endswith(b"ok")
        assert not hung_up.is_set()
        await table.set_backends("web", listen, [{"address": address, "weight": 0,
                                                  "release": "v1"}])
        await asyncio.wait_for(hung_up.wait(), 5)
        await table.shutdown()
        backend.close()
    run(scenario())


def test_a_removed_backend_finishes_the_request_it_is_serving(tmp_path: Path) -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await release.wait()
            writer.write(OK)
            await writer.drain()
        backend, address = await start_backend(held)
        table, listen = await routed(tmp_path, address)
        request = asyncio.create_task(exchange(listen, GET_CLOSE))
        service = table.services["web"]
        while service.in_flight() != {address: 1}:
            await asyncio.sleep(0.01)
        await table.set_backends("web", listen, [])
        assert service.in_flight() == {address: 1}
        release.set()
        assert (await request).endswith(b"ok")
        assert service.in_flight() == {}
        await table.shutdown()
        backend.close()
    run(scenario())
