"""One routed service inside a router worker: its upstreams, selection, counters, clients.

Applying a new backend set is one synchronous step on the event loop, so no request ever
sees half of it. Upstreams that lose their weight or listing are retired, never cut off:
their in-flight requests finish and they are forgotten once idle.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from corral.routers.builtin.balance import SmoothWeighted
from corral.routers.builtin.pool import Upstream
from corral.routers.builtin.stats import ReleaseCounters

log = logging.getLogger("corral.router")


@dataclass(frozen=True)
class Timeouts:
    """Seconds, and the limits that protect the router from its clients.

    `first_byte` is the request timeout: how long a backend may think. `header` bounds how
    long a client may take to send a request head (slowloris); `max_waiting` caps the
    connections that sit idle or half-open per worker: past it, the oldest are closed.
    """

    connect: float = 3.0
    first_byte: float = 60.0
    read: float = 60.0  # between two reads of a response body
    client_idle: float = 75.0  # a keep-alive client may wait this long between requests
    header: float = 10.0  # from a request's first byte to the end of its head
    tunnel_idle: float = 3600.0  # an upgraded connection (websocket) with no byte either way
    pool_idle: float = 4.0  # below the usual 5 s backend keep-alive, so we close first
    shutdown_grace: float = 10.0
    max_header_bytes: int = 65536  # a bigger request head gets 431
    max_waiting: int = 4096

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Timeouts:
        """Known keys only; unknown keys are ignored so an older router accepts newer ones."""
        if not data:
            return cls()
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {k: (int(v) if known[k] == "int" else float(v))
                                  for k, v in data.items() if k in known}
        return cls(**values)


_ID_PREFIX = os.urandom(6).hex().encode()


@dataclass
class Service:
    name: str
    listen: str
    server: asyncio.Server | None = None
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    retired: dict[str, Upstream] = field(default_factory=dict)
    stats: dict[str, ReleaseCounters] = field(default_factory=dict)
    timeouts: Timeouts = field(default_factory=Timeouts)
    tls: dict[str, str] | None = None  # {"cert": path, "key": path} when it terminates TLS
    clients: set[Any] = field(default_factory=set)  # proxy.ClientConnection, typed loosely
    waiting: dict[Any, None] = field(default_factory=dict)  # idle or half-open, oldest first
    closed: bool = False
    activity: asyncio.Event | None = None  # set when a client connects (wakes the sweep)
    _served: int = 0
    _balancer: SmoothWeighted = field(default_factory=SmoothWeighted)
    _preview: dict[str, SmoothWeighted] = field(default_factory=dict)

    def apply(self, backends: Iterable[dict[str, Any]]) -> None:
        """Replace the backend set. Dropped or weightless upstreams lose their idle pool."""
        wanted = {b["address"]: b for b in backends}
        for address in [a for a in self.upstreams if a not in wanted]:
            gone = self.upstreams.pop(address)
            gone.listed = False
            gone.close_idle()
            if gone.in_flight:
                self.retired[address] = gone
        for address, b in wanted.items():
            upstream = self.upstreams.get(address) or self.retired.pop(address, None)
            if upstream is None:
                upstream = Upstream(address=address, weight=0, release="")
            upstream.weight = int(b["weight"])
            upstream.release = str(b["release"])
            upstream.instance = str(b.get("instance", ""))
            upstream.listed = True
            if upstream.weight <= 0:
                upstream.close_idle()
            self.upstreams[address] = upstream
        self._balancer.forget_except(set(self.upstreams))

    def choose(self, release: str | None, exclude: set[str]) -> Upstream | None:
        """The next upstream for a request; a release header narrows to that release's
        backends whatever their weight (preview routing)."""
        if release is not None:
            matching = [u for u in self.upstreams.values()
                        if u.release == release and u.address not in exclude]
            balancer = self._preview.setdefault(release, SmoothWeighted())
            picked = balancer.pick([(u.address, max(u.weight, 1)) for u in matching])
        else:
            picked = self._balancer.pick([(u.address, u.weight) for u in self.upstreams.values()
                                          if u.weight > 0 and u.address not in exclude])
        return self.upstreams[picked] if picked is not None else None

    def is_eligible(self, upstream: Upstream, release: str | None) -> bool:
        """May this upstream still take a new request (used for a same-backend retry)?"""
        if not upstream.listed or self.upstreams.get(upstream.address) is not upstream:
            return False
        return upstream.release == release if release is not None else upstream.weight > 0

    def finish(self, upstream: Upstream) -> None:
        upstream.in_flight -= 1
        if upstream.in_flight <= 0 and not upstream.listed:
            upstream.close_idle()
            self.retired.pop(upstream.address, None)

    def counters(self, release: str) -> ReleaseCounters:
        return self.stats.setdefault(release, ReleaseCounters())

    def backends_json(self) -> list[dict[str, Any]]:
        return [{"address": u.address, "weight": u.weight, "release": u.release,
                 "instance": u.instance} for u in self.upstreams.values()]

    def in_flight(self) -> dict[str, int]:
        counts = {u.address: u.in_flight for u in self.upstreams.values()}
        counts.update({u.address: u.in_flight for u in self.retired.values()})
        return counts

    def expire_idle(self, now: float) -> None:
        for upstream in self.upstreams.values():
            upstream.close_expired(now, self.timeouts.pool_idle)

    def sweep(self, now: float) -> None:
        """Enforce every client and exchange deadline (one timer for all, not one each)."""
        for client in list(self.clients):
            client.check(now)

    def wait(self, client: Any) -> None:
        """`client` is idle or reading a head; past the cap the oldest such one is closed."""
        self.waiting[client] = None
        while len(self.waiting) > self.timeouts.max_waiting:
            oldest = next(iter(self.waiting))
            self.waiting.pop(oldest)
            oldest.close()

    def unwait(self, client: Any) -> None:
        self.waiting.pop(client, None)

    def next_request_id(self) -> bytes:
        self._served += 1
        return _ID_PREFIX + b"%010x" % self._served

    def log_retry(self, failed: str, target: str, what: str, detail: str) -> None:
        log.info("%s %s: retrying after %s on %s (%s)", self.name, failed, what, target, detail)

    def log_failure(self, address: str, what: str, detail: str) -> None:
        log.warning("%s %s: %s (%s)", self.name, address, what, detail)
