"""HTTP/1.1 message framing for the proxy: header filtering, heads, chunks, error answers.

Pure byte building, no sockets. Hop-by-hop headers (RFC 9110 §7.6.1) never cross the proxy;
the proxy frames each side itself (Content-Length kept, otherwise chunked or close-delimited).
"""

from __future__ import annotations

from http import HTTPStatus

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"proxy-authenticate",
    b"proxy-authorization", b"te", b"trailer", b"transfer-encoding", b"upgrade",
})
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})


def header_value(headers: Headers, name: bytes) -> bytes | None:
    """The first value of `name` (lower-case), or None."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def end_to_end(headers: Headers) -> Headers:
    """Headers without hop-by-hop ones, including those the Connection header names.

    Content-Length is dropped too: the proxy writes its own framing for each side.
    """
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    drop = HOP_BY_HOP | named | {b"content-length"}
    return [(k, v) for k, v in headers if k.lower() not in drop]


def response_head(status: int, reason: bytes, headers: Headers) -> bytes:
    if not reason:
        reason = _phrase(status).encode()
    lines = [b"HTTP/1.1 %d " % status + reason]
    lines.extend(k + b": " + v for k, v in headers)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


LAST_CHUNK = b"0\r\n\r\n"


def error_answer(status: int, detail: str, *, request_id: bytes, close: bool,
                 head_only: bool = False) -> bytes:
    """A small plain-text answer the router itself gives (400, 502, 503, 504, ...)."""
    body = f"{status} {_phrase(status)}: {detail}\n".encode()
    headers: Headers = [(b"Content-Type", b"text/plain; charset=utf-8"),
                        (b"Content-Length", b"%d" % len(body)),
                        (b"X-Request-Id", request_id),
                        (b"Connection", b"close" if close else b"keep-alive")]
    head = response_head(status, b"", headers)
    return head if head_only else head + body


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
