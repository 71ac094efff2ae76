"""HTTP/1.1 API of the controller: on a unix socket (local users), and on TCP with tokens
(and TLS) for a team, both with one handler.

Routes live in api/routes.py's table (see ROUTE_MODULES); this module parses requests,
checks who calls (engine/access/gate.py) before it reads a body, dispatches, and renders
answers: JSON, NDJSON streams for long operations, server-sent events, or raw bodies.
Errors are {"error": {"type", "message", "hint"}}: a body that does not validate is a 400
whose error also names the "field"; 401/403/429 when the credentials do not let the caller
in. Limits: a body of at most MAX_BODY bytes with a Content-Length, request heads of at
most MAX_HEADER_BYTES, an idle or slow client cut after `timeout` seconds, at most
MAX_CONNECTIONS at once on TCP. No exception text or traceback ever reaches a client: an
unexpected error is logged with its traceback and answered with an error id.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import secrets
import socket
import socketserver
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from corral.api.bodies import BadBody, validated
from corral.api.routes import ANYONE, Answer, Request, Route, find
from corral.core.access import SIGNED
from corral.core.pipeline import is_signed_push
from corral.engine.access.gate import Caller, Gate, admit, unsigned_push
from corral.engine.controller import Controller
from corral.errors import AccessDenied, CorralError, LockHeld, NotFound

log = logging.getLogger(__name__)

MAX_BODY = 1 << 20  # 1 MiB: the largest real body (a deploy's release config) is ~10 KiB
MAX_HEADER_BYTES = 16 << 10
MAX_CONNECTIONS = 256
SESSION_COOKIE = "corral_token"
_CLIENT_GONE = (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError)


def error_body(exc: CorralError) -> dict[str, Any]:
    return {"error": {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}}


def _status_of(exc: CorralError) -> int:
    if isinstance(exc, AccessDenied):
        return exc.status
    if isinstance(exc, NotFound):
        return 404
    return 409 if isinstance(exc, LockHeld) else 400


class _Refused(Exception):
    """A request refused before its handler runs: status, error type, message."""

    def __init__(self, status: int, kind: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.field = status, kind, message, field


class Lifecycle:
    """Whether someone asked the controller to stop (POST /v1/shutdown, a signal), shared
    by the unix and TCP servers."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.keep_instances = False

    def request(self, keep_instances: bool) -> None:
        self.keep_instances = keep_instances
        self.requested.set()


class _Handler(BaseHTTPRequestHandler):
    server: ApiServer | TcpApiServer
    protocol_version = "HTTP/1.1"
    timeout = 30.0  # a client that sends nothing for this long is cut (slowloris)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("api: " + format, *args)

    def version_string(self) -> str:
        return "corral"  # no Python or library versions to the network

    def address_string(self) -> str:
        return str(self.client_address[0]) if self.client_address else "unix"

    _body_read = True  # the stdlib's own refusals come before any body: never drain one

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The stdlib's own refusals (a malformed request line, too many headers, a method
        no route has) as JSON errors, and the connection closed."""
        self.close_connection = True
        self._json(code, {"error": {"type": "BadRequest" if code < 500 else "InternalError",
                                    "message": message or self.responses.get(code, ("",))[0],
                                    "hint": None}})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        answered = [False]
        self._body_read = False
        self._token: str | None = None
        try:
            self._serve(method, answered)
        except _CLIENT_GONE:
            self.close_connection = True
        except Exception:
            error_id = secrets.token_hex(4)
            log.exception("API request %s %s failed (error id %s)", method, self.path, error_id)
            self.close_connection = True
            if not answered[0]:
                self._json(500, {"error": {
                    "type": "InternalError",
                    "message": f"the controller failed on this request (error id {error_id})",
                    "hint": "its log has the details: .corral/run/controller.log"}})

    def _serve(self, method: str, answered: list[bool]) -> None:
        url = urlparse(self.path)
        try:
            found = self._route(method, url.path)
            route, params = found
            caller = self._caller(route)
            body = self._body(method, route)
        except _Refused as refused:
            answered[0] = True
            self._refuse(refused)
            return
        except AccessDenied as exc:
            answered[0] = True
            self._denied(exc, url.path)
            return
        request = Request(params=params, query={k: v[-1] for k, v in parse_qs(url.query).items()},
                          body=body, actor=caller.actor, role=caller.role,
                          headers={k.lower(): v for k, v in self.headers.items()},
                          lifecycle=self.server.lifecycle, address=self.address_string(),
                          gate=getattr(self.server, "gate", None),
                          secure=getattr(self.server, "tls", None) is not None,
                          is_allowed=self._is_allowed)
        if route.stream:
            answered[0] = True
            self._stream(route, request)
            return
        try:
            result = route.handler(self.server.controller, request)
        except BadBody as exc:  # a query parameter the handler could not read
            answered[0] = True
            self._refuse(_Refused(400, "BadRequest", exc.message, exc.field))
            return
        except CorralError as exc:
            answered[0] = True
            self._json(_status_of(exc), error_body(exc))
            return
        answered[0] = True
        self._answer(route, result)
        for then in request.after:
            then()

    # -- before the handler ----------------------------------------------------------
    def _route(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        size = sum(len(k) + len(v) + 4 for k, v in self.headers.items())
        if size > MAX_HEADER_BYTES:
            raise _Refused(431, "BadRequest", f"the request's headers exceed "
                           f"{MAX_HEADER_BYTES} bytes")
        found = find(method, path)
        if found is None:
            raise _Refused(404, "NotFound", f"{method} {path}")
        return found

    def _caller(self, route: Route) -> Caller:
        if route.role == SIGNED:  # proved by the body's signature, checked once it is read
            if isinstance(self.server, TcpApiServer):
                self.server.gate.refuse_if_blocked(self.address_string())
            return Caller("webhook", SIGNED)
        if isinstance(self.server, ApiServer):  # the unix socket: its peer, by the kernel
            return Gate.local(self.server.peer_user(self.connection))
        token, by_cookie = self._presented_token()
        if route.role == ANYONE:
            return Caller("anonymous", ANYONE)
        caller = self.server.gate.authenticate(token, self.address_string())
        self._token = token
        if by_cookie and route.is_mutating and not self._is_same_site_script():
            raise AccessDenied("a signed-in browser's change must come from the dashboard",
                               status=403, hint="use the dashboard's buttons")
        admit(caller, route.role)
        return caller

    def _is_allowed(self) -> bool:
        """For a long request: whether the caller's token still holds (revoked, expired)."""
        if self._token is None or not isinstance(self.server, TcpApiServer):
            return True
        return self.server.gate.is_still_valid(self._token)

    def _presented_token(self) -> tuple[str | None, bool]:
        """The token from `Authorization: Bearer`, else the dashboard's cookie."""
        authorization = self.headers.get("Authorization", "")
        if authorization.lower().startswith("bearer "):
            return authorization[7:].strip(), False
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == SESSION_COOKIE and value:
                return unquote(value), True
        return None, False

    def _is_same_site_script(self) -> bool:
        """A cookie rides along on any site's form post; a custom header does not (another
        origin cannot set one without a CORS preflight, which this server never grants)."""
        return self.headers.get("HX-Request") == "true" or "X-Corral-Request" in self.headers

    def _body(self, method: str, route: Route) -> dict[str, Any]:
        if "Transfer-Encoding" in self.headers:
            self.close_connection = True
            raise _Refused(411, "BadRequest", "send the body with a Content-Length")
        length_text = self.headers.get("Content-Length", "0").strip()
        if not (length_text.isascii() and length_text.isdigit()):
            self.close_connection = True
            raise _Refused(400, "BadRequest", "Content-Length must be a whole number")
        length = int(length_text)
        if length > MAX_BODY:
            self.close_connection = True  # the body is never read
            raise _Refused(413, "BadRequest", f"the body is {length} bytes; at most "
                           f"{MAX_BODY} are accepted")
        self._body_read = True
        raw = self.rfile.read(length) if length else b""
        if route.role == SIGNED:
            self._check_signature(raw)
        if method == "GET":
            return {}
        if route.form:
            try:
                return {k: v[-1] for k, v in parse_qs(raw.decode(), strict_parsing=False).items()}
            except UnicodeDecodeError:
                raise _Refused(400, "BadRequest", "the form is not UTF-8") from None
        try:
            body = json.loads(raw or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Refused(400, "BadRequest", "the body is not JSON") from None
        assert route.body is not None  # route() requires a model on POST routes
        try:
            return validated(route.body, body)
        except BadBody as exc:
            raise _Refused(400, "BadRequest", exc.message, exc.field) from None

    def _check_signature(self, raw: bytes) -> None:
        """A SIGNED route's body must carry an HMAC signature by the controller's webhook
        secret (engine/pipeline/pushes.py); on TCP a missing or wrong one is counted and
        recorded like a bad token (engine/access/gate.py)."""
        pushes = getattr(self.server.controller, "pushes", None)
        secret = pushes.secret if pushes is not None else b""
        is_signed = is_signed_push(secret, raw, dict(self.headers.items()))
        if isinstance(self.server, TcpApiServer):
            self.server.gate.signed(is_signed, self.address_string())
        elif not is_signed:
            raise unsigned_push()

    # -- answers -----------------------------------------------------------------------
    def _drain(self) -> None:
        """Before refusing: read a body within the limit the client is still sending (closing
        on unread bytes resets the connection, and the client would miss the answer), then
        close, so nothing left is ever parsed as a request."""
        self.close_connection = True
        length = self.headers.get("Content-Length", "0").strip() if self.headers else "0"
        if not self._body_read and length.isdigit() and 0 < int(length) <= MAX_BODY:
            self._body_read = True
            self.rfile.read(int(length))

    def _denied(self, exc: AccessDenied, path: str) -> None:
        self._drain()
        if exc.status == 401 and self.command == "GET" and _is_page(path):
            self._answer_raw(Answer(status=303, headers={"Location": "/ui/signin"}))
            return
        self._json(exc.status, error_body(exc))

    def _refuse(self, refused: _Refused) -> None:
        self._drain()
        error: dict[str, Any] = {"type": refused.kind, "message": refused.message, "hint": None}
        if refused.field is not None:
            error["field"] = refused.field
        self._json(refused.status, {"error": error})

    def _answer(self, route: Route, result: Any) -> None:
        if not route.raw:
            self._json(200, result)
        elif isinstance(result, Answer):
            self._answer_raw(result)
        else:
            content_type, data = result
            self._send(200, content_type, data)

    def _answer_raw(self, answer: Answer) -> None:
        self._send(answer.status, answer.content_type, answer.data, answer.headers)

    def _stream(self, route: Route, request: Request) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream" if route.events
                         else "application/x-ndjson")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        client_gone = threading.Event()
        lock = threading.Lock()
        frame = _sse_frame if route.events else _ndjson_line

        def emit(event: dict[str, Any]) -> None:
            if client_gone.is_set():
                return
            try:
                with lock:
                    self.wfile.write(frame(event))
                    self.wfile.flush()
            except (OSError, ValueError):
                client_gone.set()  # the operation goes on without its audience

        request.emit = emit
        request.is_gone = client_gone.is_set
        try:
            route.handler(self.server.controller, request)
        except CorralError as exc:
            emit({"type": "error", **error_body(exc)})
        except Exception:  # logged with its traceback; the client gets an id only
            error_id = secrets.token_hex(4)
            log.exception("streaming handler %s failed (error id %s)", self.path, error_id)
            emit({"type": "error", "error": {
                "type": "InternalError",
                "message": f"the controller failed on this request (error id {error_id})",
                "hint": "its log has the details: .corral/run/controller.log"}})

    def _json(self, status: int, body: Any) -> None:
        self._send(status, "application/json", json.dumps(body, default=str).encode())

    def _send(self, status: int, content_type: str, data: bytes,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


class _TcpHandler(_Handler):
    # A head and a body written apart would wait for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True


def _is_page(path: str) -> bool:
    return path == "/" or path.startswith("/ui/")


def _ndjson_line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, default=str).encode() + b"\n"


def _sse_frame(event: dict[str, Any]) -> bytes:
    """{"event": NAME, "data": TEXT} as one server-sent event; {"comment": …} keeps the
    connection alive. An error event carries its JSON."""
    if "comment" in event:
        return f": {event['comment']}\n\n".encode()
    data = event.get("data", json.dumps(event, default=str))
    lines = "".join(f"data: {line}\n" for line in str(data).split("\n"))
    return f"event: {event.get('event', event.get('type', 'message'))}\n{lines}\n".encode()


class ApiServer(socketserver.ThreadingUnixStreamServer):
    """The API on the project's unix socket (0600): the controller user's, and root's."""

    daemon_threads = True

    def __init__(self, path: Path, controller: Controller,
                 lifecycle: Lifecycle | None = None) -> None:
        path.unlink(missing_ok=True)
        self.controller = controller
        self.lifecycle = lifecycle or Lifecycle()
        super().__init__(str(path), _Handler)
        os.chmod(path, 0o600)

    def peer_user(self, connection: socket.socket) -> str:
        """The user at the other end, as the kernel saw it connect (SO_PEERCRED)."""
        creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                      struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return f"uid{uid}"

    @property
    def shutdown_requested(self) -> threading.Event:
        return self.lifecycle.requested

    @property
    def keep_instances(self) -> bool:
        return self.lifecycle.keep_instances

    def request_shutdown(self, keep_instances: bool) -> None:
        self.lifecycle.request(keep_instances)


class TcpApiServer(socketserver.ThreadingTCPServer):
    """The API on HOST:PORT, for tokens only; TLS when given a context. The TLS handshake
    happens in the connection's own thread, so a slow client never holds up the others."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, controller: Controller, gate: Gate,
                 lifecycle: Lifecycle, tls: ssl.SSLContext | None = None) -> None:
        self.controller = controller
        self.gate = gate
        self.lifecycle = lifecycle
        self.tls = tls
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        host = host.strip("[]")
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _TcpHandler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # full: refuse rather than queue threads
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if self.tls is not None:
                request.settimeout(_Handler.timeout)
                try:
                    request = self.tls.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError):
                    self.shutdown_request(request)
                    return
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for `cert` and `key` (PEM), TLS 1.2 or later."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise CorralError(f"cannot load the controller's TLS certificate {cert} and key {key}: "
                          f"{exc}", hint="check [controller] tls = { cert, key }") from None
    return context

