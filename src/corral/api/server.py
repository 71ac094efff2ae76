"""HTTP/1.1 JSON API of the controller on a unix socket.

Routes live in api/routes.py's table (see ROUTE_MODULES); this module parses requests,
dispatches, and renders answers: JSON, NDJSON streams for long operations, or raw bodies
(e.g. Prometheus text). Errors are {"error": {"type", "message", "hint"}}; a body that
does not validate against its route's model is a 400 BadRequest whose error also names
the "field", answered before any stream starts.
POST /v1/shutdown {"keep_instances": bool} is handled here, since it stops the server.
"""

from __future__ import annotations

import json
import logging
import os
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from corral.api.bodies import BadBody, ShutdownBody, validated
from corral.api.routes import Request, Route, find
from corral.engine.controller import Controller
from corral.errors import CorralError, LockHeld, NotFound

log = logging.getLogger(__name__)


def error_body(exc: CorralError) -> dict[str, Any]:
    return {"error": {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}}


def _status_of(exc: CorralError) -> int:
    if isinstance(exc, NotFound):
        return 404
    return 409 if isinstance(exc, LockHeld) else 400


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api: " + format, *args)

    def address_string(self) -> str:
        return "unix"

    def do_GET(self) -> None:
        self._dispatch("GET", {})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"type": "BadRequest", "message": "body is not JSON"}})
            return
        if self.path == "/v1/shutdown":
            try:
                keep_instances = validated(ShutdownBody, body)["keep_instances"]
            except BadBody as exc:
                self._bad_request(exc)
                return
            self._json(200, {"ok": True})
            self.server.request_shutdown(keep_instances)
            return
        self._dispatch("POST", body)

    def _dispatch(self, method: str, body: dict[str, Any]) -> None:
        url = urlparse(self.path)
        found = find(method, url.path)
        if found is None:
            self._json(404, {"error": {"type": "NotFound", "message": f"{method} {url.path}"}})
            return
        handler, params = found
        try:
            if handler.body is not None:
                body = validated(handler.body, body)
        except BadBody as exc:
            self._bad_request(exc)
            return
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        request = Request(params=params, query=query, body=body)
        if handler.stream:
            self._stream(handler, request)
            return
        try:
            result = handler.handler(self.server.controller, request)
        except BadBody as exc:  # a query parameter the handler could not read
            self._bad_request(exc)
            return
        except CorralError as exc:
            self._json(_status_of(exc), error_body(exc))
            return
        except Exception as exc:
            log.exception("API handler crashed")
            self._json(500, {"error": {"type": "InternalError", "message": repr(exc)}})
            return
        if handler.raw:
            content_type, data = result
            self._send(200, content_type, data)
        else:
            self._json(200, result)

    def _stream(self, handler: Route, request: Request) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        client_gone = False

        def emit(event: dict[str, Any]) -> None:
            nonlocal client_gone
            if client_gone:
                return
            try:
                self.wfile.write(json.dumps(event, default=str).encode() + b"\n")
                self.wfile.flush()
            except OSError:
                client_gone = True  # the operation goes on without its audience

        request.emit = emit
        try:
            handler.handler(self.server.controller, request)
        except CorralError as exc:
            emit({"type": "error", **error_body(exc)})
        except Exception as exc:  # reported to the client, and logged with its traceback
            log.exception("streaming handler crashed")
            emit({"type": "error", "error": {"type": "InternalError", "message": repr(exc),
                                             "hint": "see .corral/run/controller.log"}})

    def _bad_request(self, exc: BadBody) -> None:
        self._json(400, {"error": {"type": "BadRequest", "message": exc.message,
                                   "field": exc.field, "hint": None}})

    def _json(self, status: int, body: Any) -> None:
        self._send(status, "application/json", json.dumps(body, default=str).encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class ApiServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, controller: Controller) -> None:
        path.unlink(missing_ok=True)
        self.controller = controller
        self.shutdown_requested = threading.Event()
        self.keep_instances = False
        super().__init__(str(path), _Handler)
        os.chmod(path, 0o600)

    def request_shutdown(self, keep_instances: bool) -> None:
        self.keep_instances = keep_instances
        self.shutdown_requested.set()
