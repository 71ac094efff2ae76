"""HTTP/1.1 JSON API of the controller on a unix socket.

Routes (all JSON; errors are {"error": {"type", "message", "hint"}}):
    GET  /v1/ping                          controller pid
    GET  /v1/status[?service=NAME]         services, instances, traffic
    GET  /v1/services/NAME/releases        releases, oldest first
    POST /v1/deploy                        body: DeployRequest; answers NDJSON events
    POST /v1/shutdown                      body: {"keep_instances": bool}
It parses and renders only; the controller decides.
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

from corral.engine.controller import Controller
from corral.engine.deploy import DeployRequest
from corral.errors import CorralError, NotFound

log = logging.getLogger(__name__)


def error_body(exc: CorralError) -> dict[str, Any]:
    return {"error": {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}}


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api: " + format, *args)

    def address_string(self) -> str:
        return "unix"

    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        controller = self.server.controller
        try:
            if url.path == "/v1/ping":
                self._json(200, {"ok": True, "pid": os.getpid()})
            elif url.path == "/v1/status":
                service = parse_qs(url.query).get("service", [None])[0]
                self._json(200, controller.status(service))
            elif len(parts) == 4 and parts[:2] == ["v1", "services"] and parts[3] == "releases":
                self._json(200, {"releases": controller.releases(parts[2])})
            else:
                self._json(404, {"error": {"type": "NotFound", "message": url.path}})
        except CorralError as exc:
            self._json(404 if isinstance(exc, NotFound) else 400, error_body(exc))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._json(400, {"error": {"type": "BadRequest", "message": "body is not JSON"}})
            return
        if self.path == "/v1/deploy":
            self._deploy(body)
        elif self.path == "/v1/shutdown":
            self._json(200, {"ok": True})
            self.server.request_shutdown(bool(body.get("keep_instances")))
        else:
            self._json(404, {"error": {"type": "NotFound", "message": self.path}})

    def _deploy(self, body: dict[str, Any]) -> None:
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
                client_gone = True  # the deployment goes on without its audience

        try:
            self.server.controller.deploy(DeployRequest(**body), emit)
        except CorralError as exc:
            emit({"type": "error", **error_body(exc)})
        except Exception as exc:  # reported to the client, and logged with its traceback
            log.exception("deployment crashed")
            emit({"type": "error", "error": {"type": "InternalError", "message": repr(exc),
                                             "hint": "see .corral/run/controller.log"}})

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
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
