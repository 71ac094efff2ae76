"""The client side of the proxy: one asyncio Protocol per client connection, no task per request.

Parses requests with httptools as bytes arrive and hands each one to an Exchange (exchange.py),
one at a time (pipelined requests wait their turn, their bodies buffered with backpressure).
It enforces what protects the router from its clients: a header read timeout, a header size
cap (431), 400 for malformed requests, an idle timeout, and closing the oldest waiting
connections when too many clients sit idle or half-open (slowloris).
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

import httptools

from corral.routers.builtin.exchange import Exchange
from corral.routers.builtin.http1 import error_answer
from corral.routers.builtin.request import Request

if TYPE_CHECKING:
    from corral.routers.builtin.services import Service

IDLE, HEAD, BUSY, TUNNEL, CLOSED = range(5)


class ClientConnection:
    """asyncio.Protocol for one client; `service` holds its routing and its limits."""

    def __init__(self, service: Service, loop: Any, scheme: bytes = b"http") -> None:
        self.service, self.loop, self.scheme = service, loop, scheme
        self.timeouts = service.timeouts
        self.transport: Any = None
        self.client_ip = b"unknown"
        self.state = IDLE
        self.deadline = 0.0
        self.exchange: Exchange | None = None
        self.closing = False  # finish the current request, then close
        self._parser = httptools.HttpRequestParser(self)
        self._reading: Request | None = None  # the request whose head/body is being parsed
        self._queued: deque[Request] = deque()  # pipelined, waiting for the current one
        self._url: list[bytes] = []
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._in_head = False
        self._paused = False
        self.tunnel_early = b""  # bytes after an upgrade request, before the backend's 101

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.client_ip = peer[0].encode()
        self.deadline = self.loop.time() + self.timeouts.header
        self.service.clients.add(self)
        self.service.wait(self)
        if self.service.activity is not None:
            self.service.activity.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = CLOSED
        self.service.clients.discard(self)
        self.service.unwait(self)
        if self.exchange is not None:
            self.exchange.client_gone()
            self.exchange = None

    def pause_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client_paused(True)

    def resume_writing(self) -> None:
        if self.exchange is not None:
            self.exchange.client_paused(False)

    def eof_received(self) -> bool:
        if self.state == TUNNEL and self.exchange is not None:
            self.exchange.client_half_closed()
            return True
        return False

    def data_received(self, data: bytes) -> None:
        if self.state == TUNNEL:
            if self.exchange is not None:
                self.exchange.tunnel_from_client(data)
            return
        if self.state == IDLE:
            self.state = HEAD
            self.deadline = self.loop.time() + self.timeouts.header
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.tunnel_early += data[exc.args[0]:] if exc.args else b""
            self._pause(True)  # nothing after an upgrade request is HTTP
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed request: {exc or type(exc).__name__}")
            return
        if self._in_head and self._head_size > self.timeouts.max_header_bytes:
            self._refuse(431, f"request head larger than {self.timeouts.max_header_bytes} bytes")

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._head_size, self._in_head = [], [], 0, True

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            self._headers.append((name, value))
            self._head_size += len(name) + len(value) + 4
        elif self._reading is not None:
            self._reading.trailers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        request = Request(parser.get_method(), b"".join(self._url), self._headers,
                          parser.get_http_version(), parser.should_keep_alive(),
                          parser.should_upgrade(), self)
        self._reading = request
        if self._head_size > self.timeouts.max_header_bytes:
            request.refuse = 431
        if self.exchange is None and not self._queued:
            self._start(request)
        else:
            self._queued.append(request)

    def on_body(self, body: bytes) -> None:
        if self._reading is not None:
            self._reading.add_body(body)

    def on_message_complete(self) -> None:
        if self._reading is not None:
            self._reading.end_body()
            self._reading = None

    # exchanges
    def _start(self, request: Request) -> None:
        self.state = BUSY
        self.service.unwait(self)
        if request.refuse:
            self._refuse(request.refuse, "request head too large")
            return
        self.exchange = Exchange(self, request)
        self.exchange.begin()

    def exchange_done(self, keep: bool) -> None:
        """The current exchange is over; go on with the next request, or close."""
        self.exchange = None
        if self.state == CLOSED:
            return
        if not keep or self.closing:
            self.close()
            return
        if self._queued:
            self._start(self._queued.popleft())
            return
        self.state = HEAD if self._reading is not None else IDLE
        self.deadline = self.loop.time() + (self.timeouts.header if self.state == HEAD
                                            else self.timeouts.client_idle)
        self.service.wait(self)
        if self._paused:
            self._pause(False)

    def start_tunnel(self) -> None:
        self.state = TUNNEL
        self.deadline = self.loop.time() + self.timeouts.tunnel_idle
        self._pause(False)

    def pause_body(self, paused: bool) -> None:
        """Backpressure from the backend side (or a full body buffer)."""
        self._pause(paused)

    def _pause(self, paused: bool) -> None:
        if paused == self._paused or self.transport is None or self.state == CLOSED:
            return
        self._paused = paused
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.state != CLOSED:
            self.transport.write(data)

    def answer(self, status: int, detail: str, request_id: bytes, *, close: bool,
               head_only: bool = False) -> None:
        self.write(error_answer(status, detail, request_id=request_id, close=close,
                                head_only=head_only))

    def _refuse(self, status: int, detail: str) -> None:
        self.answer(status, detail, self.service.next_request_id(), close=True)
        self.close()

    def close(self) -> None:
        """Close once what was written is flushed."""
        if self.state != CLOSED:
            self.state = CLOSED
            self.transport.close()

    def abort(self) -> None:
        """Cut the connection now: the client must not take a truncated answer as whole."""
        if self.transport is not None:
            self.state = CLOSED
            self.transport.abort()

    # timers (driven by the service's sweep, not one timer per request)
    def check(self, now: float) -> None:
        if self.state == BUSY:
            if self.exchange is not None:
                self.exchange.check(now)
            return
        if self.state == CLOSED or now < self.deadline:
            return
        if self.state == HEAD:
            self._refuse(408, "request head not received in time")
        else:
            self.close()

    def touch_tunnel(self) -> None:
        self.deadline = self.loop.time() + self.timeouts.tunnel_idle

    def stop(self) -> None:
        """Close after the current request; at once if the connection is idle."""
        self.closing = True
        if self.state in (IDLE, HEAD):
            self.close()

    @property
    def busy(self) -> bool:
        return self.state in (BUSY, TUNNEL)
