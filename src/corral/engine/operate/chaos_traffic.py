"""The traffic a chaos run sends through a service's router while it kills: paced
keep-alive GETs from the controller, bounded in time, each answer recorded.

It judges nothing: core/chaos.py counts what went wrong in each kill's window.
"""

from __future__ import annotations

import http.client
import threading
import time

from corral.core.chaos import Record, count_between

RATE = 50.0  # requests per second, all clients together
TAIL = 0.5  # seconds the traffic goes on after the last restore, so its window has answers


class TrafficProbe:
    """Records (wall time, status) per answer; status 0 is a connection failure."""

    def __init__(self, address: str, rate: float = RATE, clients: int = 2,
                 max_seconds: float = 600.0) -> None:
        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        self.interval = clients / rate
        self.records: list[Record] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True, name=f"probe-{n}")
                         for n in range(clients)]
        self._max = max_seconds

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def failures_between(self, start: float, end: float) -> tuple[int, int]:
        """(requests, failures) answered in [start, end)."""
        return count_between(list(self.records), start, end)

    def _client(self) -> None:
        ends = time.monotonic() + self._max
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        while not self._stop.is_set() and time.monotonic() < ends:
            began = time.monotonic()
            try:
                connection.request("GET", "/", headers={"User-Agent": "corral-chaos"})
                response = connection.getresponse()
                response.read()
                status = response.status
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
            self.records.append((time.time(), status))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - began)))
        connection.close()
