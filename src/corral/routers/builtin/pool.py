"""One upstream (backend) of a service and its keep-alive connection pool.

An upstream that lost its weight or its listing is *retired*: it gets no new requests,
its idle connections are closed at once and a connection coming back from a finished
request is closed instead of pooled. It must never hand out a connection it knows is dead.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

MAX_IDLE_PER_UPSTREAM = 64


@dataclass(eq=False)
class UpstreamConnection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0
    reused: bool = False  # True once it came from the pool: a failure may be a stale socket

    def is_usable(self) -> bool:
        return not (self.reader.at_eof() or self.writer.is_closing()
                    or self.reader.exception() is not None)

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


class ConnectFailed(Exception):
    """The upstream could not be reached (refused, unreachable, timed out)."""


@dataclass
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

    async def acquire(self, *, connect_timeout: float, idle_timeout: float,
                      fresh: bool = False) -> UpstreamConnection:
        """A pooled connection that still looks alive, else a new one."""
        now = time.monotonic()
        while self.idle and not fresh:
            conn = self.idle.pop()  # most recently used first: least likely to be stale
            if conn.is_usable() and now - conn.idle_since < idle_timeout:
                conn.reused = True
                return conn
            conn.close()
        host, port = self.host_port
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, limit=2**16), connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"{self.address}: {exc or type(exc).__name__}") from exc
        return UpstreamConnection(reader, writer)

    def release_connection(self, conn: UpstreamConnection, *, reusable: bool) -> None:
        if reusable and self.is_poolable and conn.is_usable() \
                and len(self.idle) < MAX_IDLE_PER_UPSTREAM:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            conn.close()

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()

    def close_expired(self, idle_timeout: float) -> None:
        now = time.monotonic()
        keep: deque[UpstreamConnection] = deque()
        for conn in self.idle:
            if conn.is_usable() and now - conn.idle_since < idle_timeout:
                keep.append(conn)
            else:
                conn.close()
        self.idle = keep
