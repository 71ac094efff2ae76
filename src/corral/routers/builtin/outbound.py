"""The backend side of one proxied request: read the response and relay it to the client.

Streams as it reads (never buffers a whole body). It reports how the attempt ended so the
session can decide about a retry, and it must never let a retry happen once any byte of a
response has reached the client.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

import httptools

from corral.routers.builtin.http1 import (
    LAST_CHUNK,
    Headers,
    chunk,
    end_to_end,
    header_value,
    response_head,
)
from corral.routers.builtin.inbound import READ_SIZE, RequestHead
from corral.routers.builtin.pool import UpstreamConnection


class Outcome(enum.Enum):
    DONE = "done"  # the whole response reached the client
    CONNECT_FAILED = "connect failed"  # nothing was sent: safe to retry any method
    NO_RESPONSE = "no response"  # request sent, not one byte back: retry if idempotent
    BAD_RESPONSE = "bad response"  # some bytes back, nothing relayed yet: answer 502
    TIMEOUT = "timeout"  # nothing relayed yet: answer 504
    BROKEN = "broken"  # failed after the client got part of the response: drop the client
    CLIENT_GONE = "client gone"


@dataclass
class Attempt:
    outcome: Outcome
    detail: str = ""
    status: int = 0  # the backend's status once its head arrived
    keep_client: bool = False
    upstream_reusable: bool = False


@dataclass
class ResponseHead:
    status: int
    reason: bytes
    headers: Headers


class _End:
    pass


_END = _End()


class ResponseReader:
    """httptools callbacks for one backend response; interim 1xx answers are skipped."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.events: list[ResponseHead | bytes | _End] = []
        self._reason = b""
        self._headers: Headers = []
        self._interim = False
        self.keep_alive = False  # read at message end: llhttp forgets it once it resets

    def on_message_begin(self) -> None:
        self._reason, self._headers = b"", []

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True
            return
        self.events.append(ResponseHead(status, self._reason, self._headers))

    def on_body(self, body: bytes) -> None:
        if not self._interim:
            self.events.append(bytes(body))

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
        else:
            self.keep_alive = self.parser.should_keep_alive()
            self.events.append(_END)


class Framing(enum.Enum):
    NONE = "none"
    RAW = "raw"  # bytes as they come: Content-Length, or close-delimited to an HTTP/1.0 client
    CHUNKED = "chunked"


class Relay:
    """Relays one backend response to the client writer."""

    def __init__(self, conn: UpstreamConnection, client: asyncio.StreamWriter,
                 request: RequestHead, request_id: bytes, *, keep_client: bool,
                 first_byte_timeout: float, read_timeout: float) -> None:
        self._conn, self._client, self._request = conn, client, request
        self._request_id = request_id
        self._keep_client = keep_client
        self._first_byte_timeout, self._read_timeout = first_byte_timeout, read_timeout
        self._reader = ResponseReader()
        self._framing = Framing.NONE
        self._upstream_close_delimited = False
        self._status = 0
        self._sent = False

    async def run(self) -> Attempt:
        got_bytes = False
        while True:
            timeout = self._read_timeout if self._sent else self._first_byte_timeout
            try:
                async with asyncio.timeout(timeout):
                    data = await self._conn.reader.read(READ_SIZE)
            except TimeoutError:
                return self._failed(Outcome.TIMEOUT, f"no answer within {timeout:g}s")
            except (ConnectionError, OSError) as exc:
                if not got_bytes:
                    return Attempt(Outcome.NO_RESPONSE, f"connection failed: {exc}")
                return self._failed(Outcome.BAD_RESPONSE, f"connection failed: {exc}")
            if not data:
                return await self._at_eof(got_bytes)
            got_bytes = True
            try:
                self._reader.parser.feed_data(data)
            except httptools.HttpParserError as exc:
                return self._failed(Outcome.BAD_RESPONSE, f"invalid response: {exc}")
            try:
                done = await self._relay_events()
            except (ConnectionError, OSError, TimeoutError):
                return Attempt(Outcome.CLIENT_GONE, status=self._status)
            if done:
                reusable = self._reader.keep_alive and self._request.method != b"HEAD"
                return Attempt(Outcome.DONE, status=self._status, keep_client=self._keep_client,
                               upstream_reusable=reusable)

    def _failed(self, outcome: Outcome, detail: str) -> Attempt:
        if self._sent:
            return Attempt(Outcome.BROKEN, detail, status=self._status)
        return Attempt(outcome, detail)

    async def _at_eof(self, got_bytes: bool) -> Attempt:
        if not got_bytes:
            return Attempt(Outcome.NO_RESPONSE, "backend closed the connection without answering")
        if self._sent and self._upstream_close_delimited:
            if self._framing is Framing.CHUNKED:
                self._client.write(LAST_CHUNK)
            try:
                await self._drain_client()
            except (ConnectionError, OSError, TimeoutError):
                return Attempt(Outcome.CLIENT_GONE, status=self._status)
            return Attempt(Outcome.DONE, status=self._status, keep_client=self._keep_client)
        return self._failed(Outcome.BAD_RESPONSE, "backend closed the connection mid-response")

    async def _relay_events(self) -> bool:
        done = False
        out: list[bytes] = []  # one write per read: head and body leave in one segment
        for event in self._reader.events:
            if isinstance(event, ResponseHead):
                done = self._write_head(event, out)
            elif isinstance(event, bytes):
                if event and self._framing is not Framing.NONE:
                    out.append(chunk(event) if self._framing is Framing.CHUNKED else event)
            else:
                if self._framing is Framing.CHUNKED:
                    out.append(LAST_CHUNK)
                done = True
            if done:
                break
        self._reader.events.clear()
        if out:
            self._client.write(b"".join(out))
        await self._drain_client()
        return done

    async def _drain_client(self) -> None:
        async with asyncio.timeout(self._read_timeout):
            await self._client.drain()

    def _write_head(self, head: ResponseHead, out: list[bytes]) -> bool:
        """Send the client the response head with our own framing; True if no body follows."""
        self._status = head.status
        headers = end_to_end(head.headers)
        length = header_value(head.headers, b"content-length")
        upstream_chunked = header_value(head.headers, b"transfer-encoding") is not None
        no_body = self._request.method == b"HEAD" or head.status in (204, 304)
        if no_body:
            if length is not None and head.status != 204:
                headers.append((b"Content-Length", length))
        elif length is not None and not upstream_chunked:
            headers.append((b"Content-Length", length))
            self._framing = Framing.RAW
        elif self._request.version == "1.1":
            headers.append((b"Transfer-Encoding", b"chunked"))
            self._framing = Framing.CHUNKED
        else:
            self._framing = Framing.RAW
            self._keep_client = False
        self._upstream_close_delimited = not no_body and length is None and not upstream_chunked
        if header_value(headers, b"x-request-id") is None:
            headers.append((b"X-Request-Id", self._request_id))
        if not self._keep_client:
            headers.append((b"Connection", b"close"))
        elif self._request.version == "1.0":
            headers.append((b"Connection", b"keep-alive"))
        out.append(response_head(head.status, head.reason.strip(), headers))
        self._sent = True
        return no_body and self._request.method == b"HEAD"
