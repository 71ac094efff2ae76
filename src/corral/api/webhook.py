"""The push webhook of `corral watch`: `POST /webhook` with an HMAC-SHA256 signature by the
shared secret (as GitHub, Gitea and Forgejo sign pushes) makes the watcher look at the
branch at once, without waiting for its next poll. Unsigned or badly signed requests get
401 and change nothing; a push to another branch gets 202 and is ignored."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from corral.core.pipeline import is_push_to, is_signed_push

MAX_BODY = 1 << 20


class WebhookServer:
    def __init__(self, listen: str, secret: bytes, branch: str,
                 on_push: Callable[[], None]) -> None:
        host, _, port = listen.rpartition(":")
        self.host = host.strip("[]")
        handler = _handler(secret, branch, on_push)
        self.server = ThreadingHTTPServer((self.host, int(port)), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="webhook",
                                       daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.server.server_port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(secret: bytes, branch: str,
             on_push: Callable[[], None]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if self.path.split("?")[0] != "/webhook" or length > MAX_BODY:
                self._answer(404 if length <= MAX_BODY else 413)
                return
            body = self.rfile.read(length)
            if not is_signed_push(secret, body, dict(self.headers.items())):
                self._answer(401)
                return
            if not is_push_to(_ref_of(body), branch):
                self._answer(202)
                return
            on_push()
            self._answer(204)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return  # the watcher says what a push started

    return Handler


def _ref_of(body: bytes) -> str | None:
    try:
        ref = json.loads(body).get("ref")
    except (ValueError, AttributeError):
        return None
    return ref if isinstance(ref, str) else None
