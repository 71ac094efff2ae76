"""One upstream (backend) of a service, its keep-alive pool, and the backend connection protocol.

An upstream that lost its weight or its listing is *retired*: it gets no new requests, its
idle connections are closed at once and a connection coming back from a finished request is
closed instead of pooled. It must never hand out a connection it knows is dead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import httptools

MAX_IDLE_PER_UPSTREAM = 64


class ResponseSink(Protocol):
    """What a backend connection reports to while it carries one exchange (see proxy.py)."""

    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                         keep_alive: bool) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_trailer(self, name: bytes, value: bytes) -> None: ...
    def on_response_end(self, keep_alive: bool) -> None: ...
    def on_response_upgraded(self, rest: bytes) -> None: ...
    def on_upstream_failed(self, detail: str, *, parse_error: bool) -> None: ...
    def on_upstream_paused(self, paused: bool) -> None: ...
    def on_read_done(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """A keep-alive connection to a backend; parses its responses with httptools."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.sink: ResponseSink | None = None
        self.alive = False
        self.idle_since = 0.0
        self.reused = False  # True once it came from the pool: a failure may be a stale socket
        self.got_bytes = False  # of the current response
        self.last_read = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._in_head = False
        self._interim = False
        self._tunnel = False

    # lifecycle
    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.alive = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.on_upstream_failed(f"connection lost: {exc}" if exc else "closed by backend",
                                    parse_error=False)

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_upstream_paused(True)

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_upstream_paused(False)

    def start(self, sink: ResponseSink, now: float) -> None:
        """Carry the next exchange: responses read from now on belong to `sink`."""
        self.sink, self.got_bytes, self.last_read = sink, False, now

    def detach(self) -> None:
        self.sink = None

    def close(self) -> None:
        self.sink = None
        self.alive = False
        if self.transport is not None:
            self.transport.close()

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        if self._tunnel:
            if self.sink is not None:
                self.sink.on_response_body(data)
            return
        self.got_bytes = True
        sink = self.sink
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._tunnel = True
            if self.sink is not None:
                self.sink.on_response_upgraded(data[exc.args[0]:] if exc.args else b"")
        except httptools.HttpParserError as exc:
            sink, self.sink = self.sink, None
            self.alive = False
            self.transport.close()
            if sink is not None:
                sink.on_upstream_failed(f"invalid response: {exc}", parse_error=True)
            return
        if sink is not None:
            sink.on_read_done()

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost reports it

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._reason, self._headers, self._in_head = b"", [], True

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            self._headers.append((name, value))
        elif self.sink is not None and not self._interim:
            self.sink.on_response_trailer(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True
            return
        if self.sink is not None:
            self.sink.on_response_head(status, self._reason, self._headers,
                                       self._parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        if not self._interim and self.sink is not None:
            self.sink.on_response_body(body)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        elif self.sink is not None:
            self.sink.on_response_end(self._parser.should_keep_alive())


class ConnectFailed(Exception):
    """The upstream could not be reached (refused, unreachable, timed out)."""


@dataclass(eq=False)
class Upstream:
    """A backend as the router process holds it: its configuration and live counters."""

    address: str
    weight: int
    release: str
    instance: str = ""
    listed: bool = True
    in_flight: int = 0
    idle: deque[UpstreamConnection] = field(default_factory=deque)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.address.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def is_poolable(self) -> bool:
        return self.listed and self.weight > 0

    def take_idle(self, now: float, idle_timeout: float) -> UpstreamConnection | None:
        """A pooled connection that still looks alive, or None."""
        while self.idle:
            conn = self.idle.pop()  # most recently used first: least likely to be stale
            if conn.alive and now - conn.idle_since < idle_timeout:
                conn.reused = True
                return conn
            conn.close()
        return None

    async def connect(self, timeout: float) -> UpstreamConnection:
        host, port = self.host_port
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(UpstreamConnection, host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"{self.address}: {exc or type(exc).__name__}") from exc
        return conn

    def release_connection(self, conn: UpstreamConnection, *, reusable: bool,
                           now: float) -> None:
        conn.detach()
        if reusable and self.is_poolable and conn.alive \
                and len(self.idle) < MAX_IDLE_PER_UPSTREAM:
            conn.idle_since = now
            self.idle.append(conn)
        else:
            conn.close()

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()

    def close_expired(self, now: float, idle_timeout: float) -> None:
        keep: deque[UpstreamConnection] = deque()
        for conn in self.idle:
            if conn.alive and now - conn.idle_since < idle_timeout:
                keep.append(conn)
            else:
                conn.close()
        self.idle = keep
