"""A tiny keep-alive HTTP backend for bench/router.py: uvloop + one fixed answer.

Fast enough that the router, not the backend, is what the bench measures (it is measured
direct first). It parses only enough to count requests: each head ends at a blank line.
Run: python bench/_fast_backend.py PORT
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import uvloop

BODY = b"hello from the bench backend\n"
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n"
          % len(BODY)) + BODY


class Answering(asyncio.Protocol):
    def __init__(self) -> None:
        self._pending = b""
        self._transport: Any = None

    def connection_made(self, transport: Any) -> None:  # uvloop's TCPTransport
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        data = self._pending + data
        count = data.count(b"\r\n\r\n")  # bench requests are GETs without a body
        self._pending = data[data.rfind(b"\r\n\r\n") + 4:] if count else data
        if count and self._transport is not None:
            self._transport.write(ANSWER * count)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answering, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
