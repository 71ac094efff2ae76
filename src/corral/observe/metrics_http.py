"""MetricsHttpServer: /metrics over TCP on a loopback address, for a Prometheus server.

The controller's API lives on a unix socket that Prometheus cannot scrape; this serves the
same registry on e.g. 127.0.0.1:9464. Loopback only: metrics name services and commits.
It serves what the registry gives; it computes nothing.
"""

from __future__ import annotations

import ipaddress
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from corral.errors import CorralError


def parse_loopback(listen: str) -> tuple[str, int]:
    """("127.0.0.1", 9464) from "127.0.0.1:9464"; refuses any non-loopback host.

    >>> parse_loopback("127.0.0.1:9464"), parse_loopback("localhost:1")
    (('127.0.0.1', 9464), ('127.0.0.1', 1))
    """
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
        number = int(port)
    except ValueError:
        loopback, number = False, 0
    if not loopback or not 0 < number < 65536:
        raise CorralError(f"metrics address {listen!r} is not a loopback HOST:PORT",
                          hint="use e.g. 127.0.0.1:9464 (observe.metrics_listen or "
                               "CORRAL_METRICS_LISTEN)")
    return host, number


class MetricsHttpServer:
    """A controller Loop: start() listens, stop() closes."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        self.host, self.port = parse_loopback(listen)
        self._registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(self.port, self.host,
                                                           self._registry)
        except OSError as exc:
            raise CorralError(f"cannot serve metrics on {self.host}:{self.port}: "
                              f"{exc.strerror}", hint="pick a free port") from exc

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
