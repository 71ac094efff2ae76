"""One client request inside the router: its head as parsed, and its body as it streams in.

The body goes to the backend as it arrives (the Exchange is its sink) and is kept, up to
REPLAY_LIMIT, so a retry can send it again. Without a sink (connecting, or a pipelined
request waiting its turn) it is buffered, and the client is paused once the buffer is full.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from corral.routers.builtin.http1 import HOP_BY_HOP

if TYPE_CHECKING:
    from corral.routers.builtin.downstream import Downstream

REPLAY_LIMIT = 1 << 20  # request bodies up to 1 MiB are kept so a retry can resend them
_NOT_FORWARDED = HOP_BY_HOP | {b"expect", b"x-forwarded-for", b"x-request-id", b"host",
                               b"content-length", b"x-forwarded-proto"}
_CONNECTION_TOKENS = {b"close", b"keep-alive", b"upgrade", b""}


class BodySink(Protocol):
    def send_body(self, data: bytes) -> None: ...
    def end_body(self, trailers: list[tuple[bytes, bytes]]) -> None: ...


class Request:
    __slots__ = (
        "body_done",
        "chunked",
        "chunks",
        "client",
        "content_length",
        "expect_continue",
        "forward",
        "has_body",
        "host",
        "keep_alive",
        "method",
        "refuse",
        "release",
        "replayable",
        "request_id",
        "sink",
        "size",
        "target",
        "trailers",
        "upgrade",
        "upgrade_to",
        "version",
        "xff",
        "xfp",
    )

    def __init__(self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                 version: str, keep_alive: bool, upgrade: bool,
                 client: Downstream) -> None:
        self.method, self.target, self.version = method, target, version
        self.keep_alive, self.upgrade, self.client = keep_alive, upgrade, client
        self.refuse = 0
        self.trailers: list[tuple[bytes, bytes]] = []
        self.host: bytes | None = None
        self.xff: bytes | None = None
        self.xfp: bytes | None = None
        self.request_id: bytes | None = None
        self.release: str | None = None
        self.content_length: bytes | None = None
        self.upgrade_to: bytes | None = None
        self.chunked = self.expect_continue = False
        self._read_head(headers)
        self.has_body = self.chunked or self.content_length not in (None, b"0")
        self.body_done = not self.has_body
        self.chunks: list[bytes] = []
        self.size = 0
        self.replayable = True
        self.sink: BodySink | None = None

    def _read_head(self, headers: list[tuple[bytes, bytes]]) -> None:
        forward = []
        named: set[bytes] = set()
        for key, value in headers:
            name = key.lower()
            if name not in _NOT_FORWARDED:
                if name == b"x-corral-release":
                    self.release = value.decode("latin-1").strip()
                forward.append((key, value))
            elif name == b"host":
                self.host = value
            elif name == b"content-length":
                self.content_length = value.strip()
            elif name == b"transfer-encoding":
                self.chunked = True
            elif name == b"connection":
                named.update(t.strip().lower() for t in value.split(b","))
            elif name == b"x-forwarded-for":
                self.xff = value
            elif name == b"x-forwarded-proto":
                self.xfp = value
            elif name == b"x-request-id":
                self.request_id = value
            elif name == b"expect":
                self.expect_continue = value.lower() == b"100-continue" and self.version == "1.1"
            elif name == b"upgrade":
                self.upgrade_to = value
        named -= _CONNECTION_TOKENS
        if named:
            forward = [(k, v) for k, v in forward if k.lower() not in named]
        self.forward = forward
        if self.chunked:
            self.content_length = None

    def upstream_head(self, request_id: bytes, address: str, scheme: bytes) -> bytes:
        """The head sent to the backend: HTTP/1.1, our framing, forwarding headers."""
        client_ip = self.client.client_ip
        lines = [self.method + b" " + self.target + b" HTTP/1.1",
                 b"Host: " + (self.host if self.host is not None else address.encode())]
        lines += [k + b": " + v for k, v in self.forward]
        lines.append(b"X-Forwarded-For: " + (self.xff + b", " + client_ip if self.xff
                                             else client_ip))
        lines.append(b"X-Forwarded-Proto: " + (self.xfp if self.xfp is not None else scheme))
        lines.append(b"X-Request-Id: " + request_id)
        if self.chunked:
            lines.append(b"Transfer-Encoding: chunked")
        elif self.content_length is not None:
            lines.append(b"Content-Length: " + self.content_length)
        if self.upgrade and self.upgrade_to is not None:
            lines.append(b"Connection: Upgrade")
            lines.append(b"Upgrade: " + self.upgrade_to)
        return b"\r\n".join(lines) + b"\r\n\r\n"

    # the body
    def add_body(self, data: bytes) -> None:
        if self.sink is not None:
            self.sink.send_body(data)
            if self.replayable:
                self._keep(data)
            return
        self.chunks.append(data)
        self.size += len(data)
        if self.size > REPLAY_LIMIT:
            self.replayable = False
            self.client.pause_body(True)  # held until a backend takes it

    def _keep(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > REPLAY_LIMIT:
            self.replayable = False
            self.chunks.clear()

    def end_body(self) -> None:
        self.body_done = True
        if self.sink is not None and self.has_body:
            self.sink.end_body(self.trailers)

    def attach(self, sink: BodySink) -> None:
        """Send what arrived so far to `sink`, then stream the rest to it."""
        self.sink = sink
        for data in self.chunks:
            sink.send_body(data)
        if not self.replayable:
            self.chunks.clear()
            self.client.pause_body(False)
        if self.body_done and self.has_body:
            sink.end_body(self.trailers)

    def detach(self) -> None:
        self.sink = None
