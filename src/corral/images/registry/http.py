"""The registry client's HTTP/1.1 layer, on the standard library's http.client.

- Connections are kept alive per thread and origin; one the server closed while it sat idle
  is replaced and the request sent again.
- A file slice is sent with sendfile(2) on plain http (a read loop under TLS), so a pushed
  layer is never copied through Python.
- Redirects are followed, and credentials never go to another origin.
- Every transport failure (refused, reset, timed out, TLS, cut short) is a TransportError.

httpx did this before, but importing it cost every push and pull 70 to 100 ms of start-up,
because its package imports its own command line.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

CONNECT_TIMEOUT = 10.0
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_READ = 1 << 20
_STALE = (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)


class TransportError(Exception):
    """No whole answer came back: refused, reset, timed out, TLS failed or cut short."""


@dataclass(frozen=True)
class FileSlice:
    """`length` bytes of `path` from `offset`, as a request body."""

    path: Path
    offset: int
    length: int


Body = bytes | FileSlice | None


def with_query(url: str, pairs: list[tuple[str, str]] | dict[str, str]) -> str:
    """`url` with `pairs` added to its query string (existing parameters are kept)."""
    parts = urlsplit(url)
    extra = list(pairs.items()) if isinstance(pairs, dict) else pairs
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True) + extra)
    return urlunsplit(parts._replace(query=query))


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _Plain(http.client.HTTPConnection):
    """Connects within CONNECT_TIMEOUT, then waits up to `timeout` for each read or write."""

    def connect(self) -> None:
        wait, self.timeout = self.timeout, CONNECT_TIMEOUT
        try:
            super().connect()
        finally:
            self.timeout = wait
        self.sock.settimeout(wait)


class _Tls(http.client.HTTPSConnection, _Plain):
    pass


class Response:
    """A status, headers and a body read whole (`content`) or streamed (`iter_raw`).
    Closing a response that was not read to its end drops its connection."""

    def __init__(self, url: str, raw: http.client.HTTPResponse,
                 conn: http.client.HTTPConnection) -> None:
        self.url = url
        self.status_code = raw.status
        self.headers: Message = raw.headers
        self._raw = raw
        self._conn = conn
        self._content: bytes | None = None

    @property
    def content(self) -> bytes:
        return self.read()

    def read(self) -> bytes:
        if self._content is None:
            self._content = b"".join(self.iter_raw())
        return self._content

    def json(self) -> Any:
        return json.loads(self.content)

    def iter_raw(self) -> Iterator[bytes]:
        """The body as it arrives; TransportError if it stops before its length."""
        raw = self._raw
        try:
            while chunk := raw.read(_READ):
                yield chunk
            if raw.length:  # http.client returns b"" when a sized body is cut short
                raise http.client.IncompleteRead(b"", raw.length)
        except (OSError, http.client.HTTPException) as exc:
            self._conn.close()
            raise TransportError(describe(exc)) from None
        finally:
            self.close()

    def close(self) -> None:
        if not self._raw.isclosed():
            self._conn.close()  # unread body left on the wire: the connection is spent
            self._raw.close()


class HttpClient:
    """Kept-alive connections for each thread and origin; safe to share between threads."""

    def __init__(self, *, timeout: float, tls: ssl.SSLContext,
                 user_agent: str = "corral") -> None:
        self.timeout = timeout
        self.tls = tls
        self.user_agent = user_agent
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                body: Body = None) -> Response:
        """Send and return the response with its body unread, following redirects."""
        headers = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(method, url, headers, body)
            location = response.headers.get("location")
            if response.status_code not in _REDIRECTS or not location:
                return response
            response.read()
            target = urljoin(url, location)
            if origin_of(target) != origin_of(url):
                headers.pop("Authorization", None)
            if response.status_code == 303 or (response.status_code in (301, 302)
                                                and method == "POST"):
                method, body = "GET", None
            url = target
        raise TransportError(f"more than {MAX_REDIRECTS} redirects from {url}")

    def _send(self, method: str, url: str, headers: dict[str, str], body: Body) -> Response:
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        conn = self._connection(parts.scheme, parts.netloc)
        for attempt in (1, 2):
            reused = conn.sock is not None
            try:
                _write(conn, method, target, {"User-Agent": self.user_agent, **headers}, body)
                return Response(url, conn.getresponse(), conn)
            except _STALE as exc:
                conn.close()
                if not reused or attempt == 2:  # a kept-alive connection may have gone stale
                    raise TransportError(describe(exc)) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise TransportError(describe(exc)) from None
            except TransportError:
                conn.close()
                raise
        raise AssertionError("unreachable")

    def _connection(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        pool: dict[tuple[str, str], http.client.HTTPConnection] | None = getattr(
            self._local, "pool", None)
        if pool is None:
            pool = self._local.pool = {}
        conn = pool.get((scheme, netloc))
        if conn is None:
            if scheme == "https":
                conn = _Tls(netloc, timeout=self.timeout, context=self.tls)
            elif scheme == "http":
                conn = _Plain(netloc, timeout=self.timeout)
            else:
                raise TransportError(f"unsupported URL scheme {scheme!r}")
            pool[(scheme, netloc)] = conn
            with self._lock:
                self._all.append(conn)
        return conn


def _write(conn: http.client.HTTPConnection, method: str, target: str,
           headers: dict[str, str], body: Body) -> None:
    """The request line, the headers and the body (a file slice through sendfile)."""
    conn.putrequest(method, target, skip_accept_encoding=True)
    length = body.length if isinstance(body, FileSlice) else len(body or b"")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        headers = {**headers, "Content-Length": str(length)}
    for key, value in headers.items():
        conn.putheader(key, value)
    if not isinstance(body, FileSlice):
        conn.endheaders(body)
        return
    conn.endheaders()
    with body.path.open("rb") as handle:
        sent = conn.sock.sendfile(handle, body.offset, body.length) if body.length else 0
    if sent != body.length:
        raise TransportError(f"{body.path} ended {body.length - sent} bytes early "
                             "during an upload")


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
