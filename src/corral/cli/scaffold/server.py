"""A small web app for corral: answers / with its version, /healthz for health checks, and
404 on any other path (so a health check pointed at a wrong path fails, as it should).

It listens on the port corral gives it in PORT, speaks HTTP/1.1 with keep-alive, and
finishes in-flight requests when it receives SIGTERM.
"""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("APP_VERSION", "1")
GREETING = os.environ.get("GREETING", "hello")
INSTANCE = os.environ.get("CORRAL_INSTANCE", "local")
# A knob for demos and tests: a release with FAIL_HEALTH=1 never passes its health check.
FAIL_HEALTH = os.environ.get("FAIL_HEALTH") == "1"
# Another: FAIL_RATE=0.2 answers 500 on one request in five (a bad canary), health aside.
FAIL_RATE = float(os.environ.get("FAIL_RATE", "0") or 0)
_served = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without this, Nagle's algorithm holds the
    # second one back for the peer's delayed ACK (~40 ms per keep-alive request).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        if self.path == "/healthz":
            body, status = (b"failing on purpose\n", 503) if FAIL_HEALTH else (b"ok\n", 200)
        elif self.path.split("?")[0] != "/":
            body, status = b"not found\n", 404
        elif FAIL_RATE and self._is_failure():
            body, status = b"failing on purpose\n", 500
        else:
            payload = {"greeting": GREETING, "version": VERSION, "instance": INSTANCE}
            body, status = (json.dumps(payload) + "\n").encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-App-Version", VERSION)
        self.end_headers()
        self.wfile.write(body)

    def _is_failure(self) -> bool:
        _served[0] += 1  # deterministic: exactly FAIL_RATE of the requests, evenly spread
        return int(_served[0] * FAIL_RATE) != int((_served[0] - 1) * FAIL_RATE)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8000"))), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"app v{VERSION} listening on {server.server_address[1]}", flush=True)
    server.serve_forever()
    print("app stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
