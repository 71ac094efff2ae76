"""Constant loopback load through a router, counting every answer: what the container and
Swarm tests (and bench/swarm.py) report as failed requests during a deploy or a node loss."""

from __future__ import annotations

import http.client
import threading
import time


class Load:
    """GET / at `address` from `workers` threads until stopped; each answer kept as (time,
    status, body), status 0 for a connection that failed."""

    def __init__(self, address: str, workers: int = 2, pause: float = 0.005) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port, self.pause = host, int(port), pause
        self.answers: list[tuple[float, int, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            answer = self._get()
            with self._lock:
                self.answers.append((time.monotonic(), *answer))
            self._stop.wait(self.pause)

    def _get(self) -> tuple[int, str]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException) as error:
            return 0, type(error).__name__
        finally:
            connection.close()

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def failed(self) -> list[tuple[float, int, str]]:
        """Every answer that was not a 200."""
        with self._lock:
            return [a for a in self.answers if a[1] != 200]

    def bodies_since(self, index: int) -> set[str]:
        with self._lock:
            return {body for _, status, body in self.answers[index:] if status == 200}
