"""The controller's live view of every instance, kept in step with the store and the router.

One lock guards every state change, so the health monitor and a deployment never write
over each other; each change is persisted, and any change that moves traffic is mirrored
to the router at once. Decisions (which state, which weights) come from core/.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from corral.core.health import HealthRecord, next_health
from corral.core.weights import backends_for
from corral.errors import RouterError
from corral.ports.records import Event, Instance, InstanceState, Release
from corral.ports.router import Router
from corral.ports.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Fleets:
    """Live instances of every service, in memory, persisted and routed."""

    def __init__(self, store: Store, router: Router | None, clock: Clock, actor: str) -> None:
        self._store = store
        self._router = router
        self._clock = clock
        self._actor = actor
        self._lock = threading.RLock()
        self.changed = threading.Condition(self._lock)
        self._instances: dict[str, Instance] = {}
        self._health: dict[str, HealthRecord] = {}
        self._preview: dict[str, bool] = {}
        self._listen: dict[str, str] = {}
        self._routed: dict[str, str] = {}  # the listen address the router last took
        # Per-fleet traffic (canary, blue-green): release -> percent, and the replicas that
        # carry full load; without an entry every ready instance weighs the same.
        self._weights: dict[str, tuple[dict[int, int], int]] = {}
        # Told of every instance added (the log collector: an instance that dies before
        # its next pass must still be read). Called outside the lock; must not block.
        self.on_add: list[Callable[[Instance], None]] = []
        self._releases: dict[tuple[str, int], Release] = {}  # see `release`
        # Counts changes of which instances there are or of their states (add, move,
        # load): a loop that compares it with the last it saw knows whether to look again
        # without going through every instance (the health monitor, the reconciler).
        self.version = 0
        # Told of each such change, under the lock: a hook only wakes its loop (no blocking).
        self.on_change: list[Callable[[], None]] = []

    def load(self) -> list[Instance]:
        """Take every live instance the store remembers."""
        with self._lock:
            for instance in self._store.list_instances(live_only=True):
                self._instances[instance.id] = instance
            self._changed()
            return list(self._instances.values())

    def release(self, service: str, version: int) -> Release | None:
        """The record of a fleet's release, with its parsed spec, read from the store once:
        a release is written once and never changed, so every health check, sweep and
        deployment step of the process shares one record (the store is not asked again)."""
        found = self._releases.get((service, version))
        if found is None:
            found = self._store.get_release(service, version)
            if found is not None:
                self._releases[(service, version)] = found
        return found

    def set_listen(self, service: str, listen: str | None) -> None:
        with self._lock:
            if listen:
                self._listen[service] = listen
            else:
                self._listen.pop(service, None)

    def listen_of(self, service: str) -> str | None:
        with self._lock:
            return self._listen.get(service)

    def set_fleet_weights(self, service: str, weights: dict[int, int] | None,
                          replicas: int = 0) -> None:
        """Give each fleet its percent (None: equal per ready instance) and re-route now."""
        with self._lock:
            if weights is None:
                self._weights.pop(service, None)
            else:
                self._weights[service] = (dict(weights), replicas)
            self._sync(service)

    def set_preview(self, service: str, enabled: bool) -> None:
        """Whether fleets without weight answer `X-Corral-Release` requests (blue-green's
        `preview`); re-routes now."""
        with self._lock:
            self._preview[service] = enabled
            self._sync(service)

    def fleet_weights_of(self, service: str) -> dict[int, int] | None:
        with self._lock:
            found = self._weights.get(service)
            return dict(found[0]) if found else None

    def of_service(self, service: str) -> list[Instance]:
        with self._lock:
            return [i for i in self._instances.values() if i.service == service]

    def all(self) -> list[Instance]:
        with self._lock:
            return list(self._instances.values())

    def get(self, instance_id: str) -> Instance | None:
        with self._lock:
            return self._instances.get(instance_id)

    def health_of(self, instance_id: str) -> HealthRecord:
        with self._lock:
            return self._health.get(instance_id, HealthRecord())

    def add(self, instance: Instance) -> None:
        with self._lock:
            self._instances[instance.id] = instance
            self._changed()
            self._store.put_instance(instance, self._event("instance.start", instance, {
                "release": instance.release, "image": instance.image_digest,
                "address": instance.address}))
            self._sync(instance.service)
        for hook in self.on_add:
            hook(instance)

    def move(self, instance_id: str, state: InstanceState, reason: str) -> Instance | None:
        """Move an instance to `state`, persist it with an event, and re-route its service."""
        with self._lock:
            current = self._instances.get(instance_id)
            if current is None:
                return None
            moved = current.moved_to(state, now=self._clock(), reason=reason)
            self._store.put_instance(moved, self._event(f"instance.{state.value}", moved,
                                                        {"reason": reason}))
            if state.is_live:
                self._instances[instance_id] = moved
            else:
                self._instances.pop(instance_id, None)
                self._health.pop(instance_id, None)
            self._changed()
            self._sync(moved.service)
            return moved

    def record_check(self, instance_id: str, passed: bool, error: str | None,
                     healthy_after: int, unhealthy_after: int) -> Instance | None:
        """Apply one health check result; returns the instance if its state changed."""
        with self._lock:
            current = self._instances.get(instance_id)
            if current is None:
                return None
            record = self._health.get(instance_id, HealthRecord())
            state, record = next_health(current.state, record, passed, error, healthy_after,
                                        unhealthy_after)
            self._health[instance_id] = record
            if state is current.state:
                if error and current.state is InstanceState.STARTING and error != current.reason:
                    # Keep the latest failure visible so a stuck deploy can say why.
                    self._instances[instance_id] = replace(current, reason=error)
                return None
            reason = "health check passed" if passed else f"health check failed: {error}"
            return self.move(instance_id, state, reason)

    def resync(self, service: str | None = None) -> None:
        """Push the backends of one or every service to the router."""
        with self._lock:
            services = [service] if service else sorted(self._listen)
            for name in services:
                self._sync(name)

    def _changed(self) -> None:
        self.version += 1
        for hook in self.on_change:
            hook()

    def _sync(self, service: str) -> None:
        self.changed.notify_all()
        listen = self._listen.get(service)
        if self._router is None or listen is None:
            return
        weights, replicas = self._weights.get(service, (None, 0))
        backends = backends_for([i for i in self._instances.values() if i.service == service],
                                weights, replicas, preview=self._preview.get(service, True))
        try:
            self._router.set_backends(service, listen, backends)
        except RouterError:
            # A refused new address (taken by another router or program): the router still
            # serves the old one, so later syncs and `status` must use that one too.
            if self._routed.get(service) != listen:
                self.set_listen(service, self._routed.get(service))
            raise
        self._routed[service] = listen

    def _event(self, action: str, instance: Instance, detail: dict[str, object]) -> Event:
        return Event(at=self._clock(), actor=self._actor, action=action,
                     subject=f"{instance.service}/{instance.id}", detail=dict(detail))
