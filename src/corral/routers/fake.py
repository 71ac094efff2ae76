"""FakeRouter: an in-memory Router for tests. Same contract as the builtin router, no sockets.

Tests feed it traffic with `record(...)`; it never proxies anything. It must not be used
outside tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from corral.errors import RouterError
from corral.ports.records import Backend, ReleaseStats
from corral.routers.builtin.stats import ReleaseCounters, release_stats_from_json


@dataclass
class _Service:
    listen: str
    backends: list[Backend]
    in_flight: dict[str, int] = field(default_factory=dict)
    stats: dict[str, ReleaseCounters] = field(default_factory=dict)


class FakeRouter:
    def __init__(self) -> None:
        self.running = False
        self._services: dict[str, _Service] = {}
        self.history: list[tuple[str, tuple[Backend, ...]]] = []  # every set_backends call

    def ensure_running(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def set_backends(self, service: str, listen: str, backends: Sequence[Backend]) -> None:
        self._check_running()
        for name, other in self._services.items():
            if name != service and other.listen == listen:
                raise RouterError(f"{listen} is already the listen address of service {name}",
                                  hint=f"give service {service} its own router.listen address")
        current = self._services.get(service)
        in_flight = {b.address: (current.in_flight.get(b.address, 0) if current else 0)
                     for b in backends}
        if current is not None:  # unlisted backends stay visible until they drain
            in_flight.update({a: n for a, n in current.in_flight.items() if n > 0})
        stats = current.stats if current is not None else {}
        self._services[service] = _Service(listen, list(backends), in_flight, stats)
        self.history.append((service, tuple(backends)))

    def backends(self, service: str) -> list[Backend]:
        self._check_running()
        entry = self._services.get(service)
        return list(entry.backends) if entry else []

    def listening(self) -> dict[str, str]:
        self._check_running()
        return {name: entry.listen for name, entry in sorted(self._services.items())}

    def in_flight(self, service: str) -> dict[str, int]:
        self._check_running()
        entry = self._services.get(service)
        return dict(entry.in_flight) if entry else {}

    def stats(self, service: str) -> dict[str, ReleaseStats]:
        self._check_running()
        entry = self._services.get(service)
        if entry is None:
            return {}
        return {r: release_stats_from_json(c.to_json()) for r, c in entry.stats.items()}

    def remove_service(self, service: str) -> None:
        self._check_running()
        self._services.pop(service, None)

    # test-only
    def record(self, service: str, release: str, status: int, seconds: float, *,
               failed_connection: bool = False) -> None:
        """Count one request as if the router had proxied it."""
        entry = self._services[service]
        counters = entry.stats.setdefault(release, ReleaseCounters())
        counters.observe(status, seconds, failed_connection=failed_connection)

    def set_in_flight(self, service: str, address: str, count: int) -> None:
        self._services[service].in_flight[address] = count

    def wait_drained(self, service: str, address: str, deadline_seconds: float) -> bool:
        return self.in_flight(service).get(address, 0) == 0

    def _check_running(self) -> None:
        if not self.running:
            raise RouterError("the router is not running", hint="call ensure_running() first")
