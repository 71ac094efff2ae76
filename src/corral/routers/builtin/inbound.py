"""The client side of the proxy: parse requests off a socket into an event queue.

A feeder task turns bytes into events (request head, body chunk, end, failure); the session
consumes them one request at a time. The bounded queue is the backpressure: a client that
uploads faster than the backend reads waits on its socket, not in the router's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httptools

from corral.routers.builtin.http1 import Headers, header_value

READ_SIZE = 65536
QUEUE_DEPTH = 8
REPLAY_LIMIT = 1 << 20  # request bodies up to 1 MiB are kept so a retry can resend them


@dataclass
class RequestHead:
    method: bytes
    target: bytes
    headers: Headers
    version: str
    keep_alive: bool
    has_body: bool
    chunked: bool
    content_length: bytes | None
    upgrade: bool = False


class _End:
    """The current request's body is complete."""


class ClientGone(Exception):
    """The client closed, stalled or sent garbage in the middle of a request."""


@dataclass
class ParseFailed:
    reason: str


END = _End()
CLIENT_EOF = object()
Event = Any  # RequestHead | bytes | _End | ParseFailed | CLIENT_EOF


class RequestReader:
    """httptools callbacks collecting events; `feed` runs as the session's feeder task."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_DEPTH)
        self._reader = reader
        self._parser = httptools.HttpRequestParser(self)
        self._events: list[Event] = []
        self._url: list[bytes] = []
        self._headers: Headers = []

    async def feed(self) -> None:
        try:
            while True:
                data = await self._reader.read(READ_SIZE)
                if not data:
                    self._events.append(CLIENT_EOF)
                    await self._flush()
                    return
                failed = self._parse(data)
                await self._flush()
                if failed:
                    return
        except (ConnectionError, OSError):
            self._events.append(CLIENT_EOF)
            await self._flush()

    def _parse(self, data: bytes) -> bool:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            heads = [e for e in self._events if isinstance(e, RequestHead)]
            if heads:
                heads[-1].upgrade = True
                del self._events[self._events.index(heads[-1]) + 1:]
            return True
        except httptools.HttpParserError as exc:
            self._events.append(ParseFailed(str(exc) or type(exc).__name__))
            return True
        return False

    async def _flush(self) -> None:
        for event in self._events:
            await self.queue.put(event)
        self._events.clear()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers = [], []

    def on_url(self, url: bytes) -> None:
        self._url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        headers = self._headers
        length = header_value(headers, b"content-length")
        chunked = header_value(headers, b"transfer-encoding") is not None
        has_body = chunked or (length is not None and length.strip() not in (b"0", b""))
        self._events.append(RequestHead(
            method=self._parser.get_method(), target=b"".join(self._url), headers=headers,
            version=self._parser.get_http_version(), keep_alive=self._parser.should_keep_alive(),
            has_body=has_body, chunked=chunked, content_length=None if chunked else length))

    def on_body(self, body: bytes) -> None:
        self._events.append(bytes(body))

    def on_message_complete(self) -> None:
        self._events.append(END)


class RequestBody:
    """The body of the current request, readable more than once while it fits in memory."""

    def __init__(self, queue: asyncio.Queue[Event], head: RequestHead, read_timeout: float,
                 before_first_read: Callable[[], Awaitable[None]]) -> None:
        self._queue = queue
        self._read_timeout = read_timeout
        self._before_first_read: Callable[[], Awaitable[None]] | None = before_first_read
        self.pending = head.has_body  # bytes still to come from the client
        self._kept: list[bytes] = []
        self._kept_size = 0
        self.replayable = True

    async def chunks(self) -> AsyncIterator[bytes]:
        for data in list(self._kept):
            yield data
        while self.pending:
            if self._before_first_read is not None:
                await self._before_first_read()
                self._before_first_read = None
            try:
                async with asyncio.timeout(self._read_timeout):
                    event = await self._queue.get()
            except TimeoutError as exc:
                raise ClientGone("client stalled while sending the request body") from exc
            if event is END:
                self.pending = False
                return
            if not isinstance(event, bytes):
                raise ClientGone("client went away in the middle of the request body")
            self._keep(event)
            yield event

    def _keep(self, data: bytes) -> None:
        if not self.replayable:
            return
        self._kept.append(data)
        self._kept_size += len(data)
        if self._kept_size > REPLAY_LIMIT:
            self.replayable = False
            self._kept.clear()
