"""One proxied request: pick a backend, send the request, relay the response, or retry.

Request body and response stream both ways at once. A failed connect is retried on each
other backend in turn (nothing was sent; a lost node may hold several); an idempotent
request that got no response byte is retried once (another backend, else a fresh connection
to the same one). Once the client has seen a byte of a response nothing is retried: a
backend failing mid-response cuts that one client off.
After a 101 the exchange becomes a byte tunnel (websockets) until either side closes.
"""

from __future__ import annotations

import enum
import time
from typing import TYPE_CHECKING

from corral.routers.builtin.http1 import (
    HOP_BY_HOP,
    IDEMPOTENT_METHODS,
    LAST_CHUNK,
    chunk,
    end_to_end,
    response_head,
)
from corral.routers.builtin.pool import ConnectFailed, Upstream, UpstreamConnection

if TYPE_CHECKING:
    import asyncio

    from corral.routers.builtin.downstream import Downstream
    from corral.routers.builtin.request import Request

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
NEVER = float("inf")


class Failure(enum.Enum):
    CONNECT_FAILED = "connect failed"  # nothing was sent: safe to retry any method
    NO_RESPONSE = "no response"  # request sent, not one byte back: retry if idempotent
    BAD_RESPONSE = "bad response"  # bytes back but nothing relayed yet: 502
    TIMEOUT = "timeout"  # 504 if nothing was relayed yet


class Exchange:
    __slots__ = (
        "_continued",
        "_out",
        "_trailers",
        "chunked_out",
        "client",
        "close_delimited",
        "conn",
        "connecting",
        "deadline",
        "done",
        "keep_client",
        "loop",
        "request",
        "request_id",
        "retries",
        "sent",
        "service",
        "started",
        "status",
        "timeouts",
        "tried",
        "tunnel",
        "upstream",
    )

    def __init__(self, client: Downstream, request: Request) -> None:
        self.client, self.request = client, request
        self.service, self.timeouts, self.loop = client.service, client.timeouts, client.loop
        # Latency by the monotonic clock: uvloop's loop.time() is libuv's cached millisecond
        # tick, which often reads 0 for a loopback request and is never finer than 1 ms.
        self.started = time.monotonic()
        self.request_id = request.request_id or self.service.next_request_id()
        self.upstream: Upstream | None = None
        self.conn: UpstreamConnection | None = None
        self.connecting: asyncio.Task[None] | None = None
        self.tried: set[str] = set()
        self.retries = 1
        self.status = 0
        self.sent = False  # a byte of the response reached the client: no retry from here
        self.chunked_out = False
        self.close_delimited = False
        self.tunnel = False
        self.done = False
        self.deadline = NEVER
        self.keep_client = request.keep_alive and not request.upgrade
        self._out: list[bytes] = []
        self._trailers: list[tuple[bytes, bytes]] = []
        self._continued = False

    # the request
    def begin(self) -> None:
        upstream = self.service.choose(self.request.release, self.tried)
        if upstream is None:
            release = self.request.release
            detail = (f"no backend of release {release}" if release is not None
                      else f"service {self.service.name} has no backend with weight")
            self._answer(503, detail)
            return
        self._attempt(upstream, fresh=False)

    def _attempt(self, upstream: Upstream, *, fresh: bool) -> None:
        self.upstream = upstream
        upstream.in_flight += 1
        now = self.loop.time()
        conn = None if fresh else upstream.take_idle(now, self.timeouts.pool_idle)
        if conn is not None:
            self._attach(conn, now)
            return
        self.deadline = NEVER  # the connect has its own timeout
        self.connecting = self.loop.create_task(self._connect(upstream))

    async def _connect(self, upstream: Upstream) -> None:
        try:
            conn = await upstream.connect(self.timeouts.connect)
        except ConnectFailed as exc:
            if not self.done:
                self._failed(Failure.CONNECT_FAILED, str(exc))
            return
        finally:
            self.connecting = None
        if self.done or upstream is not self.upstream:
            conn.close()
            return
        self._attach(conn, self.loop.time())

    def _attach(self, conn: UpstreamConnection, now: float) -> None:
        assert self.upstream is not None
        self.conn = conn
        conn.start(self, now)
        conn.write(self.request.upstream_head(self.request_id, self.upstream.address,
                                              self.client.scheme))
        if self.request.expect_continue and not self._continued and not self.request.body_done:
            self._continued = True  # we told the backend nothing about Expect: ours to give
            self.client.write(CONTINUE)
        self.deadline = now + self.timeouts.first_byte
        self.request.attach(self)

    def send_body(self, data: bytes) -> None:
        if self.conn is not None and data:
            self.conn.write(chunk(data) if self.request.chunked else data)

    def end_body(self, trailers: list[tuple[bytes, bytes]]) -> None:
        if self.conn is not None and self.request.chunked:
            self.conn.write(_last_chunk(trailers))

    # the response
    def on_response_head(self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                         keep_alive: bool) -> None:
        self.status = status
        self.deadline = self.loop.time() + self.timeouts.read
        if status == 101 and self.request.upgrade:
            self._out.append(response_head(101, reason.strip(), headers))
            self.sent = True
            return
        request = self.request
        out, length, upstream_chunked, has_id = _response_headers(headers)
        head_only = request.method == b"HEAD"
        no_body = head_only or status in (204, 304)
        if no_body:
            if length is not None and status != 204:
                out.append((b"Content-Length", length))
        elif length is not None and not upstream_chunked:
            out.append((b"Content-Length", length))
        elif request.version == "1.1":
            out.append((b"Transfer-Encoding", b"chunked"))
            self.chunked_out = True
        else:
            self.keep_client = False  # close-delimited to an HTTP/1.0 client
        self.close_delimited = not no_body and length is None and not upstream_chunked
        if not has_id:
            out.append((b"X-Request-Id", self.request_id))
        if not self.keep_client or self.client.closing:
            out.append((b"Connection", b"close"))
        elif request.version == "1.0":
            out.append((b"Connection", b"keep-alive"))
        self._out.append(response_head(status, reason.strip(), out))
        self.sent = True
        if head_only:  # llhttp would wait for a body: end here, and drop this connection
            self._flush()
            self._finish(reusable=False)

    def on_response_body(self, data: bytes) -> None:
        if self.tunnel:
            self.client.write(data)
            self.client.touch_tunnel()
        elif self.chunked_out:
            self._out.append(chunk(data))
        else:
            self._out.append(data)

    def on_response_trailer(self, name: bytes, value: bytes) -> None:
        self._trailers.append((name, value))

    def on_response_end(self, keep_alive: bool) -> None:
        if self.done or self.status == 101:
            return
        if self.chunked_out:
            self._out.append(_last_chunk(self._trailers))
        self._flush()
        self._finish(reusable=keep_alive and self.request.body_done)

    def on_read_done(self) -> None:
        """End of one read from the backend: one write to the client per read."""
        self._flush()
        if not self.done:
            self.deadline = self.loop.time() + self.timeouts.read

    def on_response_upgraded(self, rest: bytes) -> None:
        if self.status != 101 or not self.request.upgrade:
            self.on_upstream_failed("unexpected protocol switch", parse_error=True)
            return
        self.tunnel = True
        self.deadline = NEVER
        self._flush()
        self.service.counters(self._release()).observe(101, time.monotonic() - self.started)
        self.client.start_tunnel()
        if rest:
            self.client.write(rest)
        early, self.client.tunnel_early = self.client.tunnel_early, b""
        if early and self.conn is not None:
            self.conn.write(early)

    def _flush(self) -> None:
        if self._out:
            self.client.write(b"".join(self._out))
            self._out.clear()

    # tunnel (after a 101)
    def tunnel_from_client(self, data: bytes) -> None:
        if self.conn is not None:
            self.conn.write(data)
            self.client.touch_tunnel()

    def client_half_closed(self) -> None:
        if self.conn is not None and self.conn.transport.can_write_eof():
            self.conn.transport.write_eof()

    # backpressure
    def client_paused(self, paused: bool) -> None:
        if self.conn is not None and self.conn.transport is not None:
            if paused:
                self.conn.transport.pause_reading()
            else:
                self.conn.transport.resume_reading()

    def on_upstream_paused(self, paused: bool) -> None:
        self.client.pause_body(paused)

    # failures and timeouts
    def on_upstream_failed(self, detail: str, *, parse_error: bool) -> None:
        if self.done:
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        if self.tunnel:
            self._finish_tunnel()
        elif parse_error:
            self._failed(Failure.BAD_RESPONSE, detail)
        elif conn is not None and not conn.got_bytes:
            self._failed(Failure.NO_RESPONSE, detail)
        elif self.sent and self.close_delimited:
            if self.chunked_out:
                self._out.append(LAST_CHUNK)
            self._flush()
            self._finish(reusable=False)
        else:
            self._failed(Failure.BAD_RESPONSE, f"backend closed mid-response ({detail})")

    def check(self, now: float) -> None:
        if self.done or now < self.deadline:
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        waited = self.timeouts.read if self.status else self.timeouts.first_byte
        self._failed(Failure.TIMEOUT, f"no answer within {waited:g}s")

    def _failed(self, failure: Failure, detail: str) -> None:
        upstream = self.upstream
        assert upstream is not None
        self.request.detach()
        self.service.finish(upstream)
        counters = self.service.counters(upstream.release)
        elapsed = time.monotonic() - self.started
        if self.sent:  # the client has part of an answer: cut it so it cannot take it as whole
            self.done = True
            counters.observe(self.status, elapsed, failed_connection=True)
            self.service.log_failure(upstream.address, "broken", detail)
            self.client.abort()
            self.client.exchange_done(False)
            return
        connect = failure is Failure.CONNECT_FAILED  # bounded by the backends not yet tried
        target = self._retry_target(failure, upstream) if self.retries or connect else None
        if target is not None:
            self.retries -= 0 if connect else 1
            self.service.log_retry(upstream.address, target.address, failure.value, detail)
            self._attempt(target, fresh=target is upstream)
            return
        status = 504 if failure is Failure.TIMEOUT else 502
        counters.observe(status, elapsed, failed_connection=True)
        self.service.log_failure(upstream.address, failure.value, detail)
        self.upstream = None
        self._answer(status, f"backend {upstream.address}: {detail}")

    def _retry_target(self, failure: Failure, failed: Upstream) -> Upstream | None:
        release = self.request.release
        if failure is Failure.CONNECT_FAILED:
            self.tried.add(failed.address)
            return self.service.choose(release, self.tried)
        if failure is not Failure.NO_RESPONSE:
            return None
        if self.request.method not in IDEMPOTENT_METHODS or not self.request.replayable:
            return None
        self.tried.add(failed.address)
        other = self.service.choose(release, self.tried)
        if other is None and self.service.is_eligible(failed, release):
            return failed  # the only backend: a fresh connection is worth one more try
        return other

    # endings
    def _answer(self, status: int, detail: str) -> None:
        """Our own answer (502/503/504); the connection closes if a body is still coming."""
        self.done = True
        request = self.request
        close = not request.body_done or not self.keep_client or self.client.closing
        self.client.answer(status, detail, self.request_id, close=close,
                           head_only=request.method == b"HEAD")
        self.client.exchange_done(not close)

    def _release(self) -> str:
        return self.upstream.release if self.upstream is not None else ""

    def _finish(self, *, reusable: bool) -> None:
        if self.done:
            return
        self.done = True
        upstream = self.upstream
        assert upstream is not None
        now = self.loop.time()
        elapsed = time.monotonic() - self.started
        self.service.counters(upstream.release).observe(self.status, elapsed)
        conn, self.conn = self.conn, None
        if conn is not None:
            upstream.release_connection(conn, reusable=reusable, now=now)
        self.service.finish(upstream)
        self.request.detach()
        self.client.exchange_done(self.keep_client and self.request.body_done)

    def _finish_tunnel(self) -> None:
        self.done = True
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        if self.upstream is not None:
            self.service.finish(self.upstream)
        self.client.close()
        self.client.exchange_done(False)

    def client_gone(self) -> None:
        """The client connection closed (or was cut) in the middle of this exchange."""
        if self.done:
            return
        self.done = True
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.close()
        if self.upstream is not None:
            if self.status and not self.tunnel:
                self.service.counters(self.upstream.release).observe(
                    self.status, time.monotonic() - self.started)
            self.service.finish(self.upstream)
        self.request.detach()


def _response_headers(headers: list[tuple[bytes, bytes]]
                      ) -> tuple[list[tuple[bytes, bytes]], bytes | None, bool, bool]:
    """One pass: end-to-end headers (our framing is added later), Content-Length, whether
    the backend chunked, whether it set X-Request-Id."""
    out = []
    length: bytes | None = None
    chunked = has_id = named = False
    for key, value in headers:
        name = key.lower()
        if name == b"content-length":
            length = value.strip()
        elif name == b"transfer-encoding":
            chunked = True
        elif name in HOP_BY_HOP:
            named = named or name == b"connection"
        else:
            has_id = has_id or name == b"x-request-id"
            out.append((key, value))
    if named:  # headers the Connection header names are hop-by-hop too
        out = [h for h in end_to_end(headers) if h[0].lower() not in (b"content-length",)]
    return out, length, chunked, has_id


def _last_chunk(trailers: list[tuple[bytes, bytes]]) -> bytes:
    if not trailers:
        return LAST_CHUNK
    return b"0\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in trailers) + b"\r\n"
