"""The benchmark's load generator (run as its own process) and the arithmetic over its records.

Run as a script it sends paced keep-alive GETs to one URL from a few threads until SIGTERM or
--max-seconds, and writes one line per answer: monotonic time, status, X-App-Version. It knows
nothing about corral or Swarm; the parent process decides what the records mean.
"""

from __future__ import annotations

import argparse
import http.client
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

Record = tuple[float, int, str]  # (time.monotonic() at the answer, HTTP status or 0, version)


@dataclass(frozen=True)
class Outcome:
    """What one timed deploy looked like from the client side."""

    requests: int
    failed: int
    switch_s: float | None  # deploy start -> last answer not from the new version; None: never
    new_answers_after: int  # answers from the new version after the switch (a sanity check)


def summarise(records: list[Record], started: float, new_version: str) -> Outcome:
    """Count requests and failures; find when the last answer not from `new_version` came.

    `started` is the monotonic time the deploy command began (time.monotonic() is one clock for
    every process on Linux, so the loader's stamps compare with the parent's).
    Worked example: answers v1@10.0, v1@10.4, v2@10.5, v1@10.9, v2@11.0 with started=10.1 give
    switch_s=0.8 (the v1 at 10.9) and new_answers_after=1. With no answer from the new version
    at all, switch_s is None: traffic never moved.
    """
    failed = sum(1 for _, status, _ in records if not 200 <= status < 300)
    ok = [(t, version) for t, status, version in records if 200 <= status < 300]
    if not any(version == new_version for _, version in ok):
        return Outcome(len(records), failed, None, 0)
    last_other = max((t for t, version in ok if version != new_version), default=started)
    after = sum(1 for t, version in ok if t > last_other and version == new_version)
    return Outcome(len(records), failed, max(0.0, last_other - started), after)


def read_records(path: Path) -> list[Record]:
    records: list[Record] = []
    for line in path.read_text().splitlines():
        stamp, status, version = line.split(" ", 2)
        records.append((float(stamp), int(status), version))
    return records


class Loader:
    """Paced clients: each keeps one connection and sends at rate/clients per second."""

    def __init__(self, url: str, rate: float, clients: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/"
        self.interval = clients / rate
        self.clients = clients
        self.stop = threading.Event()
        self.records: list[Record] = []
        self.lock = threading.Lock()

    def run(self, max_seconds: float) -> None:
        threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                   for i in range(self.clients)]
        for thread in threads:
            thread.start()
        self.stop.wait(max_seconds)
        self.stop.set()
        for thread in threads:
            thread.join(timeout=10)

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=5)

    def _client(self, index: int) -> None:
        connection = self._connect()
        # Spread the clients over one interval so their requests do not arrive in bursts.
        next_at = time.monotonic() + self.interval * index / self.clients
        while not self.stop.is_set():
            delay = next_at - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                break
            # A slow answer must not be followed by a burst: skip the missed slots.
            next_at = max(next_at + self.interval, time.monotonic())
            record, healthy = self._one(connection)
            with self.lock:
                self.records.append(record)
            if not healthy:
                connection.close()
                connection = self._connect()
        connection.close()

    def _one(self, connection: http.client.HTTPConnection) -> tuple[Record, bool]:
        try:
            connection.request("GET", self.path)
            response = connection.getresponse()
            response.read()
            version = response.getheader("X-App-Version", "-")
            keep = not response.will_close
            return (time.monotonic(), response.status, version), keep
        except (OSError, http.client.HTTPException) as exc:
            return (time.monotonic(), 0, type(exc).__name__), False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=300.0, help="requests per second, total")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="hard bound: stop by itself after this long")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    loader = Loader(args.url, args.rate, args.clients)
    signal.signal(signal.SIGTERM, lambda *_: loader.stop.set())
    signal.signal(signal.SIGINT, lambda *_: loader.stop.set())
    loader.run(args.max_seconds)
    with loader.lock:
        lines = [f"{t:.6f} {status} {version}\n" for t, status, version in loader.records]
    args.out.write_text("".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
