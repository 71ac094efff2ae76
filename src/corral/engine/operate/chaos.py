"""Chaos: kill random instances (SIGKILL) or change a file in an image root, and time how
long the reconciler takes to restore the service.

The randomness lives here, seeded and recorded in the ledger so a run can be repeated.
A kill is restored when the service again has its replicas ready, one of them new, and the
new one is among the router's weighted backends. It never repairs anything itself. With
`load`, traffic flows through the router meanwhile (engine/operate/chaos_traffic.py) and the
summary counts each kill's failed requests (core/chaos.py).
"""

from __future__ import annotations

import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from corral.core.chaos import tally_requests
from corral.engine.fleet import Fleets
from corral.engine.operate.chaos_traffic import TAIL, TrafficProbe
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
    load: bool = False  # send traffic through the router (one service with an address)


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
        probe = self._probe(services, request)
        try:
            self._kills(request, services, rng, emit)
        finally:
            if probe is not None:
                time.sleep(TAIL)
                probe.stop()
        summary = {"seed": seed, "kills": self.results,
                   "restored": sum(1 for r in self.results if r.get("restored_s") is not None)}
        if probe is not None:
            summary.update(tally_requests(self.results, list(probe.records), time.time()))
        self._event("chaos.end", ",".join(services), summary)
        return summary

    def _probe(self, services: list[str], request: ChaosRequest) -> TrafficProbe | None:
        """Traffic through the router of the one service chaos runs on, started; or None."""
        listen = self.fleets.listen_of(services[0]) if len(services) == 1 else None
        if not request.load or listen is None:
            return None
        probe = TrafficProbe(listen, max_seconds=request.duration + 120)
        probe.start()
        return probe

    def _kills(self, request: ChaosRequest, services: list[str], rng: random.Random,
               emit: Emit) -> None:
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
