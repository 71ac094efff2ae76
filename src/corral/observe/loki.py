"""LokiSink: ships stored log lines to Grafana Loki's push API (POST /loki/api/v1/push, JSON).

Lines are grouped into streams by their labels (service, release, instance, stream, plus
configured extras); values are [nanosecond timestamp string, line]. Sending happens on a
background thread with a bounded queue, so a slow or absent Loki never stalls collection:
when the queue is full the oldest batch is dropped and counted. No retries beyond that.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Sequence
from typing import Any

import httpx

from corral.ports.logs import LogLine

log = logging.getLogger(__name__)

PUSH_PATH = "/loki/api/v1/push"


def push_payload(lines: Sequence[LogLine], extra: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON body Loki's push API takes for `lines`.

    >>> from corral.ports.logs import LogSource
    >>> src = LogSource("web-1", "web", 3, "sha256:ab", "c0ffee")
    >>> push_payload([LogLine(at=1.5, source=src, stream="stdout", message="hi")])["streams"]
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'stream': {'service': 'web', 'release': 'v3', 'instance': 'web-1', 'stream': 'stdout',
                 'git_commit': 'c0ffee'}, 'values': [['1500000000', 'hi']]}]
    """
    streams: dict[tuple[tuple[str, str], ...], list[list[str]]] = {}
    for line in lines:
        labels = {"service": line.source.service, "release": f"v{line.source.release}",
                  "instance": line.source.instance, "stream": line.stream}
        if line.source.git_commit:
            labels["git_commit"] = line.source.git_commit
        labels.update(extra or {})
        key = tuple(labels.items())
        streams.setdefault(key, []).append([str(round(line.at * 1e6) * 1000), line.message])
    return {"streams": [{"stream": dict(key), "values": values}
                        for key, values in streams.items()]}


class LokiSink:
    """A LogSink posting to `url` (Loki's base URL, e.g. http://127.0.0.1:3100)."""

    def __init__(self, url: str, *, labels: dict[str, str] | None = None,
                 max_batches: int = 256, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/") + PUSH_PATH
        self._labels = dict(labels or {})
        self._queue: collections.deque[list[LogLine]] = collections.deque()
        self._max = max_batches
        self._ready = threading.Condition()
        self._closed = False
        self._http = httpx.Client(timeout=timeout)
        self.sent_lines = 0
        self.dropped_lines = 0
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="loki-sink", daemon=True)
        self._thread.start()

    def ship(self, lines: Sequence[LogLine]) -> None:
        if not lines:
            return
        with self._ready:
            if len(self._queue) >= self._max:
                self.dropped_lines += len(self._queue.popleft())
            self._queue.append(list(lines))
            self._ready.notify()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued batch was sent or dropped; False on timeout."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._queue and not self._busy, timeout)

    _busy = False

    def _run(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                batch = self._queue.popleft()
                self._busy = True
            try:
                self._post(batch)
            finally:
                with self._ready:
                    self._busy = False
                    self._ready.notify_all()

    def _post(self, batch: list[LogLine]) -> None:
        try:
            response = self._http.post(self.url, json=push_payload(batch, self._labels))
            if response.status_code >= 300:
                raise httpx.HTTPStatusError(f"Loki answered {response.status_code}: "
                                            f"{response.text[:200]}", request=response.request,
                                            response=response)
            self.sent_lines += len(batch)
        except httpx.HTTPError as exc:
            self.failures += 1
            self.dropped_lines += len(batch)
            log.warning("shipping %d lines to %s failed: %s", len(batch), self.url, exc)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join(timeout=10)
        self._http.close()
