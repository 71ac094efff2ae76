"""The proxy: one session per client connection, serving its requests one after another.

Chooses a backend, forwards the request, relays the response and decides about retries:
a failed connect is retried once on another backend; an idempotent request that got no
response byte is retried once (another backend, else a fresh connection to the same one).
It never retries once the client has seen a byte of a response.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from corral.routers.builtin.http1 import (
    IDEMPOTENT_METHODS,
    LAST_CHUNK,
    Headers,
    chunk,
    end_to_end,
    error_answer,
    header_value,
    request_head,
)
from corral.routers.builtin.inbound import (
    CLIENT_EOF,
    END,
    ClientGone,
    ParseFailed,
    RequestBody,
    RequestHead,
    RequestReader,
)
from corral.routers.builtin.outbound import Attempt, Outcome, Relay
from corral.routers.builtin.pool import ConnectFailed, Upstream, UpstreamConnection
from corral.routers.builtin.services import Service, Timeouts

log = logging.getLogger("corral.router")
_NOT_FORWARDED = {b"expect", b"x-forwarded-for", b"x-request-id"}


class ClientSession:
    def __init__(self, service: Service, timeouts: Timeouts, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self._service, self._timeouts = service, timeouts
        self._writer = writer
        self._inbound = RequestReader(reader)
        peer = writer.get_extra_info("peername")
        self._client_ip = (peer[0] if isinstance(peer, tuple) else "unknown").encode()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self.closing = False

    def stop(self) -> None:
        """Close after the current request; at once if the connection is idle."""
        self.closing = True
        if not self._busy and self._task is not None:
            self._task.cancel()

    def abort(self) -> None:
        """Cut the connection now, busy or not (the shutdown grace is over)."""
        self.closing = True
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> None:
        self._task = asyncio.current_task()
        self._service.sessions.add(self)
        feeder = asyncio.create_task(self._inbound.feed())
        try:
            await self._serve_requests()
        except (asyncio.CancelledError, TimeoutError, ConnectionError, OSError):
            pass  # an idle client timed out, went away, or the router is shutting down
        finally:
            feeder.cancel()
            self._service.sessions.discard(self)
            self._writer.close()

    async def _serve_requests(self) -> None:
        while not self.closing:
            async with asyncio.timeout(self._timeouts.client_idle):
                event = await self._inbound.queue.get()
            if event is END:
                continue  # the end of a request that had no body to read
            if isinstance(event, ParseFailed):
                await self._write(error_answer(400, event.reason, close=True,
                                               request_id=uuid.uuid4().hex.encode()))
                return
            if event is CLIENT_EOF or not isinstance(event, RequestHead):
                return
            self._busy = True
            keep = await self._serve(event)
            self._busy = False
            if not keep:
                return

    async def _serve(self, head: RequestHead) -> bool:
        """Answer one request; True if the connection can carry the next one."""
        started = time.monotonic()
        request_id = header_value(head.headers, b"x-request-id") or uuid.uuid4().hex.encode()
        body = RequestBody(self._inbound.queue, head, self._timeouts.read,
                           self._continue_if_expected(head))
        if head.upgrade:
            # the parser stopped at the upgrade: nothing after it on this connection is HTTP
            return await self._answer(501, "protocol upgrades are not supported", request_id,
                                      head, body, close=True)
        wanted = header_value(head.headers, b"x-corral-release")
        release = wanted.decode("latin-1").strip() if wanted is not None else None
        upstream = self._service.choose(release, set())
        if upstream is None:
            detail = (f"no backend of release {release}" if release is not None
                      else f"service {self._service.name} has no backend with weight")
            return await self._answer(503, detail, request_id, head, body)
        return await self._forward(head, body, request_id, release, upstream, started)

    async def _forward(self, head: RequestHead, body: RequestBody, request_id: bytes,
                       release: str | None, upstream: Upstream, started: float) -> bool:
        tried: set[str] = set()
        retries, fresh = 1, False
        while True:
            upstream.in_flight += 1
            try:
                attempt = await self._attempt(upstream, head, body, request_id, fresh=fresh)
            finally:
                self._service.finish(upstream)
            counters = self._service.counters(upstream.release)
            elapsed = time.monotonic() - started
            if attempt.outcome is Outcome.DONE:
                counters.observe(attempt.status, elapsed)
                return attempt.keep_client and not body.pending and not self.closing
            if attempt.outcome in (Outcome.BROKEN, Outcome.CLIENT_GONE):
                if attempt.status:
                    counters.observe(attempt.status, elapsed,
                                     failed_connection=attempt.outcome is Outcome.BROKEN)
                return False
            retry_to = self._retry_target(attempt, head, body, release, upstream, tried) \
                if retries else None
            if retry_to is not None:
                log.info("%s %s: retrying after %s on %s (%s)", self._service.name,
                         upstream.address, attempt.outcome.value, retry_to.address,
                         attempt.detail)
                retries -= 1
                fresh = retry_to is upstream
                upstream = retry_to
                continue
            status = 504 if attempt.outcome is Outcome.TIMEOUT else 502
            counters.observe(status, elapsed, failed_connection=True)
            log.warning("%s %s: %s (%s)", self._service.name, upstream.address,
                        attempt.outcome.value, attempt.detail)
            return await self._answer(status, f"backend {upstream.address}: {attempt.detail}",
                                      request_id, head, body)

    def _retry_target(self, attempt: Attempt, head: RequestHead, body: RequestBody,
                      release: str | None, failed: Upstream, tried: set[str]) -> Upstream | None:
        if attempt.outcome is Outcome.CONNECT_FAILED:
            tried.add(failed.address)
            return self._service.choose(release, tried)
        if attempt.outcome is not Outcome.NO_RESPONSE:
            return None
        if head.method not in IDEMPOTENT_METHODS or not body.replayable:
            return None
        tried.add(failed.address)
        other = self._service.choose(release, tried)
        if other is None and self._service.is_eligible(failed, release):
            return failed  # the only backend: a fresh connection is worth one more try
        return other

    async def _attempt(self, upstream: Upstream, head: RequestHead, body: RequestBody,
                       request_id: bytes, *, fresh: bool) -> Attempt:
        try:
            conn = await upstream.acquire(connect_timeout=self._timeouts.connect,
                                          idle_timeout=self._timeouts.pool_idle, fresh=fresh)
        except ConnectFailed as exc:
            return Attempt(Outcome.CONNECT_FAILED, str(exc))
        attempt = Attempt(Outcome.CLIENT_GONE)
        try:
            conn.writer.write(request_head(head.method, head.target,
                                           self._upstream_headers(head, request_id, upstream)))
            try:
                await self._send_body(conn, head, body)
            except (ConnectionError, OSError) as exc:
                attempt = Attempt(Outcome.NO_RESPONSE, f"sending the request failed: {exc}")
                return attempt
            except TimeoutError:
                attempt = Attempt(Outcome.TIMEOUT, "backend stopped reading the request")
                return attempt
            attempt = await Relay(conn, self._writer, head, request_id,
                                  keep_client=head.keep_alive and not self.closing,
                                  first_byte_timeout=self._timeouts.first_byte,
                                  read_timeout=self._timeouts.read).run()
            return attempt
        except ClientGone:
            return attempt
        finally:
            upstream.release_connection(conn, reusable=attempt.upstream_reusable)

    async def _send_body(self, conn: UpstreamConnection, head: RequestHead,
                         body: RequestBody) -> None:
        writer = conn.writer
        if head.has_body:
            async for data in body.chunks():
                if data:
                    writer.write(chunk(data) if head.chunked else data)
                    async with asyncio.timeout(self._timeouts.read):
                        await writer.drain()
            if head.chunked:
                writer.write(LAST_CHUNK)
        async with asyncio.timeout(self._timeouts.read):
            await writer.drain()

    def _upstream_headers(self, head: RequestHead, request_id: bytes,
                          upstream: Upstream) -> Headers:
        headers = [(k, v) for k, v in end_to_end(head.headers) if k.lower() not in _NOT_FORWARDED]
        forwarded = header_value(head.headers, b"x-forwarded-for")
        headers.append((b"X-Forwarded-For",
                        forwarded + b", " + self._client_ip if forwarded else self._client_ip))
        if header_value(head.headers, b"x-forwarded-proto") is None:
            headers.append((b"X-Forwarded-Proto", b"http"))
        headers.append((b"X-Request-Id", request_id))
        if header_value(head.headers, b"host") is None:
            headers.append((b"Host", upstream.address.encode()))
        if head.chunked:
            headers.append((b"Transfer-Encoding", b"chunked"))
        elif head.content_length is not None:
            headers.append((b"Content-Length", head.content_length))
        return headers

    def _continue_if_expected(self, head: RequestHead) -> Callable[[], Awaitable[None]]:
        expect = header_value(head.headers, b"expect")

        async def send_continue() -> None:
            # We told the backend nothing about Expect, so the 100 is ours to give.
            if expect is not None and expect.lower() == b"100-continue" and head.version == "1.1":
                await self._write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return send_continue

    async def _answer(self, status: int, detail: str, request_id: bytes, head: RequestHead,
                      body: RequestBody, *, close: bool = False) -> bool:
        close = close or body.pending or not head.keep_alive or self.closing
        await self._write(error_answer(status, detail, request_id=request_id, close=close,
                                       head_only=head.method == b"HEAD"))
        return not close

    async def _write(self, data: bytes) -> None:
        self._writer.write(data)
        async with asyncio.timeout(self._timeouts.read):
            await self._writer.drain()
