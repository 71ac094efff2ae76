"""The CLI's client for the controller API: on its unix socket, or on a remote
controller's URL (`--server` / CORRAL_SERVER) with a token (CORRAL_TOKEN).

Plain http.client over AF_UNIX or TCP: every CLI command pays its client's import before
it can ask anything, and httpx costs ~50 ms of start-up where http.client costs ~15 ms.
An https server's certificate is checked against the system's CAs (or SSL_CERT_FILE).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from corral.errors import AccessDenied, ControllerError, CorralError, LockHeld, NotFound

_ERRORS: dict[str, type[CorralError]] = {"NotFound": NotFound, "LockHeld": LockHeld,
                                          "AccessDenied": AccessDenied}
_UNREACHABLE = (OSError, http.client.HTTPException)  # refused, no socket, timeout, cut off


def raise_error(error: dict[str, Any], status: int = 400) -> None:
    kind = _ERRORS.get(str(error.get("type")), CorralError)
    if kind is AccessDenied:
        raise AccessDenied(str(error.get("message")), status=status, hint=error.get("hint"))
    raise kind(str(error.get("message")), hint=error.get("hint"))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: Path, timeout: float | None) -> None:
        super().__init__("corral", timeout=timeout)
        self._socket_path = str(socket_path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class ControllerClient:
    def __init__(self, socket_path: Path | None, timeout: float = 30.0,
                 server: str | None = None, token: str | None = None) -> None:
        self.socket_path = socket_path
        self.timeout = timeout
        self.server = urlsplit(server) if server else None
        self.token = token
        if self.server is not None and self.server.scheme not in ("http", "https"):
            raise ControllerError(f"--server {server!r} is not an http:// or https:// URL",
                                  hint="e.g. --server https://corral.example.com:8443")

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self.server is None:
            assert self.socket_path is not None
            return _UnixConnection(self.socket_path, timeout)
        host, port = self.server.hostname or "localhost", self.server.port
        if self.server.scheme == "https":
            import ssl  # only remote https pays for it

            return http.client.HTTPSConnection(host, port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(host, port, timeout=timeout)

    def is_up(self) -> bool:
        try:
            status, data = self._request("GET", "/v1/ping", None, timeout=2.0)
        except _UNREACHABLE:
            return False
        if status in (401, 403, 429):  # up, but refusing us: say why, not "not running"
            self._answer(lambda: (status, data))
        return status == 200

    def get(self, path: str, **params: Any) -> Any:
        query = f"{path}?{urlencode(params)}" if params else path
        return self._answer(lambda: self._request("GET", query, None))

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._answer(lambda: self._request("POST", path, body))

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST and yield each NDJSON event; raises the error event as a CorralError."""
        connection = self._connection(None)
        try:
            response = self._send(connection, "POST", path, body)
            if response.status >= 400:  # refused before the stream began (e.g. a bad body)
                self._answer(lambda: (response.status, response.read()))
            for line in response:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "error":
                    raise_error(event["error"])
                yield event
        except _UNREACHABLE as exc:
            raise self._unreachable(exc) from None
        finally:
            connection.close()

    def _request(self, method: str, path: str, body: dict[str, Any] | None,
                 timeout: float | None = None) -> tuple[int, bytes]:
        connection = self._connection(timeout or self.timeout)
        try:
            response = self._send(connection, method, path, body)
            return response.status, response.read()
        finally:
            connection.close()

    def _send(self, connection: http.client.HTTPConnection, method: str, path: str,
              body: dict[str, Any] | None) -> http.client.HTTPResponse:
        data = None if body is None else json.dumps(body).encode()
        headers = {} if data is None else {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        connection.request(method, path, body=data, headers=headers)
        return connection.getresponse()

    def _answer(self, call: Callable[[], tuple[int, bytes]]) -> Any:
        try:
            status, data = call()
        except _UNREACHABLE as exc:
            raise self._unreachable(exc) from None
        try:
            body = json.loads(data)
        except ValueError:
            raise ControllerError(f"the controller answered {status} with something not JSON",
                                  hint="is --server the controller's URL?") from None
        if status >= 400 and isinstance(body, dict) and "error" in body:
            raise_error(body["error"], status)
        return body

    def _unreachable(self, exc: Exception) -> ControllerError:
        if self.server is not None:
            return ControllerError(f"no answer from the controller at {self.server.geturl()} "
                                   f"({exc})", hint="check --server / CORRAL_SERVER")
        return ControllerError(f"the controller is not running (no answer on {self.socket_path})",
                               hint="start it with `corral up -d`")

    def close(self) -> None:
        """Nothing to release: each request has its own connection."""
