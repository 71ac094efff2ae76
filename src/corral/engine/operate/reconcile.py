"""The reconcile loop: observe, plan (core.reconcile), act, record, on every fleet change
and on a periodic sweep.

It replaces, never restarts: a new instance is started for each dead, unhealthy, stuck or
drifted one. It never fights a deployment: a service's actions run only while holding that
service's deploy lock, taken briefly under the reconciler's own name, and are skipped if a
deployment holds it. Every action is written to the ledger with its cause.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from corral.core.reconcile import (
    Action,
    Desired,
    Destroy,
    MarkFailed,
    ReconcilePlan,
    Retire,
    StartInstance,
    World,
    backoff_delay,
    plan_reconcile,
    split_starts,
)
from corral.engine.delivery.instances import Instances
from corral.engine.delivery.locks import lock_name, reconciler_holder
from corral.engine.loop import WALL, BackgroundLoop, Timer
from corral.errors import CorralError
from corral.ports.records import Event, Instance, InstanceState, Release
from corral.ports.store import Store
from corral.spec.model import ServiceSpec

log = logging.getLogger(__name__)

LOCK_TTL = 30.0
# A sweep runs at once on every fleet change (a death, a failed check, a condemned
# instance); the periodic one only catches what changes nowhere in the fleet (an unknown
# instance, a store edited behind the controller), so it can be rare: each reads the
# driver's listing and every service's live release.
SWEEP_PERIOD = 15.0
DEPARTURE_MEMORY = 120.0  # seconds a noticed death waits to be named by its replacement


@dataclass
class SweepStats:
    sweeps: int = 0
    last_duration: float = 0.0
    last_actions: int = 0
    last_at: float = 0.0
    planned_at: float = 0.0  # the clock the last sweep planned with
    skipped: list[str] = field(default_factory=list)


class Reconciler:
    """Keeps every service at its live release and replicas; `sweep` is one pass."""

    def __init__(self, store: Store, instances: Instances, actor: str, *,
                 period: float = SWEEP_PERIOD, unknown_grace: float = 10.0,
                 timer: Timer = WALL) -> None:
        self._store = store
        self._fleets = instances.fleets
        self._instances = instances
        self._driver = instances.driver
        self._clock = instances.clock
        self._actor = actor
        self._period = period
        self._unknown_grace = unknown_grace
        self._holder = reconciler_holder(os.getpid())
        self._drifted: dict[str, str] = {}
        self._departed: dict[str, tuple[str, str, float]] = {}  # id -> (service, why, at)
        self._seen: dict[str, Instance] = {}
        self._ours: set[str] = set()  # ids we retired or failed: not departures
        self._pending: dict[str, str] = {}  # started by us, not yet ready -> service
        self._failures: dict[str, int] = {}
        self._not_before: dict[str, float] = {}
        self._wake = threading.Event()
        self._mutex = threading.Lock()  # one sweep at a time (loop, API, tests)
        self._swept_version = -1  # the fleet's version when the last sweep began
        self._next_sweep = float("-inf")
        # The loop sleeps until the next periodic sweep or held-back start is due; a fleet
        # change (an instance added, failed, ready, …) or `wake` ends the sleep at once, so
        # a dead instance is replaced as soon as the health monitor reports it.
        self._loop = BackgroundLoop("reconciler", self._pass, period, timer=timer,
                                    what="reconcile sweep", immediately=True)
        self._fleets.on_change.append(self._loop.wake)
        self.stats = SweepStats()
        self.listeners: list[Callable[[Action, str | None], None]] = []

    # -- life --------------------------------------------------------------------------
    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop(timeout=10)

    def wake(self) -> None:
        self._wake.set()
        self._loop.wake()

    def condemn(self, instance_id: str, detail: str) -> None:
        """Mark an instance as drifted: it is replaced at the next sweep."""
        with self._mutex:
            self._drifted.setdefault(instance_id, detail)
        self.wake()

    def _pass(self) -> float:
        """Sweep when the fleet changed, when woken, or once `period` passed on the clock;
        the seconds until the next sweep is due, unless a change comes first."""
        if self._is_due():
            self._wake.clear()
            self._swept_version = self._fleets.version
            self._next_sweep = self._clock() + self._period
            self.sweep()
        return max(0.0, self._next_due() - self._clock())

    def _is_due(self) -> bool:
        return (self._wake.is_set() or self._clock() >= self._next_sweep
                or self._fleets.version != self._swept_version)

    def _next_due(self) -> float:
        """The next periodic sweep, or sooner the end of a service's back-off (its start
        held back by a failed one is then made without waiting for the period)."""
        now = self._clock()
        held = [t for t in list(self._not_before.values()) if t > now]
        return min([self._next_sweep, *held])

    @property
    def passes(self) -> int:
        """Loop passes run (a test waits for passes, not for time)."""
        return self._loop.passes

    # -- one sweep ---------------------------------------------------------------------
    def sweep(self) -> ReconcilePlan:
        with self._mutex:
            began = time.perf_counter()
            world = self._world()
            plan = plan_reconcile(world)
            # The plan's skipped services; _act adds those whose deploy lock was held.
            self.stats.skipped = list(plan.skipped)
            for service in plan.services():
                self._act(service, [a for a in plan.actions if a.service == service])
            self.stats.sweeps += 1
            self.stats.last_duration = time.perf_counter() - began
            self.stats.last_actions = len(plan.actions)
            self.stats.last_at = self._clock()
            self.stats.planned_at = world.now
            return plan

    def _world(self) -> World:
        now = self._clock()
        observed = self._driver.list()  # before the fleet: see health.py on the order
        fleet = self._fleets.all()
        self._note_departures(fleet, now)
        desired = self._desired()
        held = frozenset(s for s, t in self._not_before.items() if t > now)
        departed: dict[str, list[tuple[str, str]]] = {}
        for old, (service, why, _) in self._departed.items():
            departed.setdefault(service, []).append((old, why))
        live_ids = {i.id for i in fleet}
        self._drifted = {k: v for k, v in self._drifted.items() if k in live_ids}
        remembered = {}
        for seen in observed:
            if seen.id not in live_ids:
                record = self._store.get_instance(seen.id)
                if record is not None:
                    remembered[seen.id] = record.state.value
        return World(desired=desired, fleet=fleet, observed=observed, now=now,
                     drifted=dict(self._drifted), departed=departed, hold_starts=held,
                     unknown_grace=self._unknown_grace, remembered=remembered)

    def _desired(self) -> dict[str, Desired]:
        desired = {}
        for service in self._store.services():
            version = self._store.live_release(service)
            found = self._spec(service, version) if version is not None else None
            if found is not None:
                spec = found[1]
                desired[service] = Desired(service, found[0].version, spec.replicas,
                                           spec.health.start_timeout)
        return desired

    def _spec(self, service: str, version: int) -> tuple[Release, ServiceSpec] | None:
        release = self._fleets.release(service, version)
        return (release, release.spec) if release else None

    def _note_departures(self, fleet: list[Instance], now: float) -> None:
        """Instances the health monitor failed since the last sweep, and our own starts'
        fate (a start that failed before becoming ready backs its service off)."""
        present = {i.id: i for i in fleet}
        for gone in set(self._seen) - set(present):
            instance = self._seen[gone]
            if gone in self._ours:
                self._ours.discard(gone)
                continue
            record = self._store.get_instance(gone)
            if record is not None and record.state is InstanceState.FAILED:
                self._departed[gone] = (instance.service,
                                        f"{gone} {record.reason or 'failed'}", now)
        for started, service in list(self._pending.items()):
            current = present.get(started)
            if current is not None and current.state is InstanceState.READY:
                self._failures.pop(service, None)
                del self._pending[started]
            elif current is None or current.state is InstanceState.UNHEALTHY:
                if started not in self._ours:  # not retired by us: it failed
                    self._failed_start(service, now)
                del self._pending[started]
        self._ours &= set(present)
        self._departed = {k: v for k, v in self._departed.items()
                          if now - v[2] < DEPARTURE_MEMORY}
        self._seen = {i.id: i for i in fleet if i.state is not InstanceState.DRAINING}

    def _failed_start(self, service: str, now: float) -> None:
        failures = self._failures.get(service, 0) + 1
        self._failures[service] = failures
        self._not_before[service] = now + backoff_delay(failures)

    # -- acting ------------------------------------------------------------------------
    def _act(self, service: str, actions: list[Action]) -> None:
        lock = lock_name(service)
        taken = self._store.acquire_lock(lock, self._holder, self._clock(), LOCK_TTL)
        if taken is not None:
            log.info("reconcile: %s is held (%s); leaving it alone", service, taken)
            self.stats.skipped.append(service)
            return
        try:
            # A deployment may have ended between planning and taking the lock: plan this
            # service again under the lock, so a stale plan never fights the new release.
            fresh = plan_reconcile(self._world())
            before, starts, after = split_starts(
                [a for a in fresh.actions if a.service == service])
            for action in before:
                self._try(service, action)
            if starts:
                with ThreadPoolExecutor(max_workers=len(starts)) as pool:
                    list(pool.map(lambda a: self._try(service, a), starts))
            for action in after:
                self._try(service, action)
        finally:
            self._store.release_lock(lock, self._holder)

    def _try(self, service: str, action: Action) -> None:
        try:
            self._execute(action)
        except CorralError as exc:
            log.warning("reconcile: %s failed: %s", action, exc.message)
            self._record("reconcile.error", service, action, {"error": exc.message})
            if isinstance(action, StartInstance):
                self._failed_start(service, self._clock())

    def _execute(self, action: Action) -> None:
        new_id: str | None = None
        if isinstance(action, MarkFailed):
            self._ours.add(action.instance_id)
            self._fleets.move(action.instance_id, InstanceState.FAILED, str(action.cause))
            self._driver.stop(action.instance_id, grace=0)
        elif isinstance(action, StartInstance):
            found = self._spec(action.service, action.release)
            if found is None:
                return
            new_id = self._instances.start(found[0]).id
            self._pending[new_id] = action.service
            if action.replaces is not None:
                self._departed.pop(action.replaces, None)
        elif isinstance(action, Retire):
            self._ours.add(action.instance_id)
            instance = self._fleets.get(action.instance_id)
            spec = self._spec(action.service, instance.release) if instance else None
            drain, grace = (spec[1].drain_timeout, spec[1].stop_grace) if spec else (5.0, 5.0)
            self._instances.drain_in_background(action.instance_id, f"reconcile: {action.cause}",
                                            drain, grace)
        elif isinstance(action, Destroy):
            self._driver.stop(action.instance_id, grace=1.0)
        name = _ACTION_NAMES[type(action)]
        if isinstance(action, StartInstance) and action.replaces is None:
            name = "reconcile.start"
        self._record(name, action.service, action, {"new": new_id})
        for listener in self.listeners:
            listener(action, new_id)

    def _record(self, name: str, service: str, action: Action, extra: dict[str, Any]) -> None:
        detail: dict[str, Any] = {"service": service, "cause": action.cause.kind,
                                  "reason": action.cause.detail}
        if isinstance(action, StartInstance):
            detail.update(release=action.release, replaces=action.replaces)
        else:
            detail["instance"] = action.instance_id
        detail.update({k: v for k, v in extra.items() if v is not None})
        subject = f"{service}/{detail.get('new') or detail.get('instance') or service}"
        self._store.append_event(Event(at=self._clock(), actor=self._actor, action=name,
                                       subject=subject, detail=detail))


_ACTION_NAMES: dict[type, str] = {
    StartInstance: "reconcile.replace", MarkFailed: "reconcile.failed",
    Retire: "reconcile.retire", Destroy: "reconcile.destroy",
}
