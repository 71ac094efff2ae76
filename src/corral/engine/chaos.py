"""Chaos: kill random instances (SIGKILL) or change a file in an image root, and time how
long the reconciler takes to restore the service.

The randomness lives here, seeded and recorded in the ledger so a run can be repeated.
A kill is restored when the service again has its replicas ready, one of them new, and the
new one is among the router's weighted backends. It never repairs anything itself.
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.engine.fleet import Fleets
from corral.errors import CorralError, NotFound
from corral.ports.driver import Driver
from corral.ports.records import Event, InstanceState
from corral.ports.router import Router
from corral.ports.runtime import Killable
from corral.ports.store import Store

Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ChaosRequest:
    service: str | None = None
    kill: int = 1
    interval: float = 5.0
    duration: float = 120.0
    drift: bool = False
    seed: int | None = None
    restore_timeout: float = 60.0


@dataclass
class ChaosRun:
    store: Store
    fleets: Fleets
    driver: Driver
    router: Router | None
    guard: Any | None  # images.guard.RootGuard, for --drift
    actor: str
    results: list[dict[str, Any]] = field(default_factory=list)

    def run(self, request: ChaosRequest, emit: Emit) -> dict[str, Any]:
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        rng = random.Random(seed)
        services = self._services(request.service)
        self._event("chaos.start", ",".join(services), {**request.__dict__, "seed": seed})
        emit({"type": "start", "seed": seed, "services": services})
        began = time.monotonic()
        for n in range(request.kill):
            if n and time.monotonic() - began >= request.duration:
                break
            at = time.monotonic()
            service = rng.choice(services)
            result = (self._drift_one(service, rng, request) if request.drift
                      else self._kill_one(service, rng, request))
            result.update(n=n + 1, service=service)
            self.results.append(result)
            emit({"type": "restored" if result.get("restored_s") is not None else "timeout",
                  **result})
            wait = request.interval - (time.monotonic() - at)
            if n + 1 < request.kill and wait > 0:
                time.sleep(min(wait, max(0.0, request.duration - (time.monotonic() - began))))
        summary = {"seed": seed, "kills": self.results,
                   "restored": sum(1 for r in self.results if r.get("restored_s") is not None)}
        self._event("chaos.end", ",".join(services), summary)
        return summary

    def _services(self, service: str | None) -> list[str]:
        live = [s for s in self.store.services() if self.store.live_release(s) is not None]
        if service is None:
            if not live:
                raise NotFound("no service has a live release to bring chaos to",
                               hint="deploy one first: corral deploy")
            return sorted(live)
        if service not in live:
            raise NotFound(f"service {service!r} has no live release",
                           hint=f"deploy it first: corral deploy {service}")
        return [service]

    def _kill_one(self, service: str, rng: random.Random, request: ChaosRequest
                  ) -> dict[str, Any]:
        if not isinstance(self.driver, Killable):
            raise CorralError(f"the {self.driver.name} driver cannot kill instances for chaos")
        ready = sorted(i.id for i in self.fleets.of_service(service)
                       if i.state is InstanceState.READY)
        if not ready:
            return {"kind": "kill", "instance": None, "restored_s": None,
                    "error": "no ready instance to kill"}
        victim = rng.choice(ready)
        before = {i.id for i in self.fleets.of_service(service)}
        at, wall = time.monotonic(), time.time()
        self.driver.kill(victim)
        self._event("chaos.kill", f"{service}/{victim}", {"signal": "SIGKILL"})
        restored = self._await_restored(service, before, {victim}, at, request.restore_timeout)
        return {"kind": "kill", "instance": victim, "at": wall, **restored}

    def _drift_one(self, service: str, rng: random.Random, request: ChaosRequest
                   ) -> dict[str, Any]:
        instances = [i for i in self.fleets.of_service(service)
                     if i.state is InstanceState.READY]
        if self.guard is None or not instances:
            return {"kind": "drift", "file": None, "restored_s": None,
                    "error": "no unpacked image root to change"}
        digest = rng.choice(sorted({i.image_digest for i in instances}))
        root = self.guard.root_of(digest)
        files = sorted(p for p, e in self.guard.file_list(digest).items() if e.kind == "file")
        if root is None or not files:
            return {"kind": "drift", "file": None, "restored_s": None,
                    "error": f"image {digest[:19]} has no unpacked root with files"}
        path = rng.choice(files)
        users = {i.id for i in self.fleets.all() if i.image_digest == digest}
        at, wall = time.monotonic(), time.time()
        with open(root / path, "ab") as f:  # the chaos itself: one byte more
            f.write(b"\n")
        self._event("chaos.drift", f"{service}/{digest[:19]}", {"file": f"/{path}"})
        restored = self._await_restored(service, users, users, at, request.restore_timeout)
        return {"kind": "drift", "file": f"/{path}", "image": digest, "replaced": len(users),
                "at": wall, **restored}

    def _await_restored(self, service: str, before: set[str], gone: set[str], at: float,
                        timeout: float) -> dict[str, Any]:
        """Wait until none of `gone` is live and the replicas are ready and routed."""
        live = self.store.live_release(service)
        release = self.store.get_release(service, live) if live is not None else None
        replicas = release.spec.replicas if release else 0
        deadline = at + timeout
        while time.monotonic() < deadline:
            ready = [i for i in self.fleets.of_service(service)
                     if i.state is InstanceState.READY and i.release == live]
            fresh = [i for i in ready if i.id not in before]
            if (len(ready) >= replicas and fresh and not gone & {i.id for i in ready}
                    and self._routed(service, {i.address for i in fresh})):
                return {"restored_s": round(time.monotonic() - at, 4),
                        "replacements": sorted(i.id for i in fresh)}
            with self.fleets.changed:
                self.fleets.changed.wait(timeout=0.02)
        return {"restored_s": None, "error": f"not restored within {timeout:g}s"}

    def _routed(self, service: str, addresses: set[str]) -> bool:
        if self.router is None or self.fleets.listen_of(service) is None:
            return True
        weighted = {b.address for b in self.router.backends(service) if b.weight > 0}
        return addresses <= weighted

    def _event(self, action: str, subject: str, detail: dict[str, Any]) -> None:
        self.store.append_event(Event(at=time.time(), actor=self.actor, action=action,
                                      subject=subject, detail={**detail, "pid": os.getpid()}))


class TrafficProbe:
    """Paced keep-alive GETs against a router address during chaos, bounded in time.

    Records (wall time, status) per answer; status 0 is a connection failure. It judges
    nothing: `failures_between` counts what went wrong in a window.
    """

    def __init__(self, address: str, rate: float = 50.0, clients: int = 2,
                 max_seconds: float = 600.0) -> None:
        import threading

        self.host, _, port = address.rpartition(":")
        self.port = int(port)
        self.interval = clients / rate
        self.records: list[tuple[float, int]] = []
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
        window = [s for t, s in list(self.records) if start <= t < end]
        return len(window), sum(1 for s in window if not 200 <= s < 400)

    def _client(self) -> None:
        import http.client

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
