"""MemoryStore: the in-memory fake of the Store port, for engine and core tests.

It follows the same rules as SqlStore (rules.py): the same genesis hash, the same JSON
normalisation, the same numbering and errors, so it passes the same contract suite.
It must not persist anything or be shared between processes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from corral.errors import NotFound
from corral.ports.lease import Lease
from corral.ports.ledger import EventFilter, RawEvent
from corral.ports.records import (
    Deployment,
    DeploymentOutcome,
    DeploymentStep,
    Event,
    Instance,
    InstanceState,
    Release,
    UsageTally,
)
from corral.stores.rules import (
    as_json_data,
    describe_lock_holder,
    dump_json,
    fenced_error,
    grant_lease,
    is_same_lease,
    link_event,
    with_detail,
)


class MemoryStore:
    """All state in dicts and lists, guarded by one lock (the engine may use threads)."""

    def __init__(self) -> None:
        self._guard = threading.RLock()
        self._releases: dict[str, list[Release]] = {}
        self._live: dict[str, int | None] = {}
        self._instances: dict[str, Instance] = {}
        self._deployments: dict[int, Deployment] = {}
        self._steps: dict[int, list[DeploymentStep]] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._ledger: list[Event] = []
        self._progress: dict[int, dict[str, Any]] = {}
        self._traffic: dict[str, dict[str, Any]] = {}
        self._marks: dict[tuple[str, int], str] = {}
        self._leases: dict[str, Lease] = {}
        self._usage: dict[tuple[str, float], UsageTally] = {}
        self._fence: Lease | None = None

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """The guard of a write, refused (Fenced) once the fence lease has passed on."""
        with self._guard:
            if self._fence is not None:
                stored = self._leases.get(self._fence.name)
                if not is_same_lease(stored, self._fence):
                    raise fenced_error(stored, self._fence)
            yield

    def _append(self, event: Event) -> Event:
        last = self._ledger[-1] if self._ledger else None
        linked = link_event(event, last.seq if last else 0, last.hash if last else None)
        self._ledger.append(linked)
        return linked

    # -- releases ----------------------------------------------------------------------
    def add_release(self, service: str, image_digest: str, config_digest: str,
                    config: dict[str, Any], created_at: float, event: Event,
                    git_commit: str | None = None,
                    git_commit_time: float | None = None) -> Release:
        with self._writing():
            known = self._releases.setdefault(service, [])
            release = Release(service=service, version=len(known) + 1,
                              image_digest=image_digest, config_digest=config_digest,
                              config=as_json_data(config), created_at=created_at,
                              git_commit=git_commit, git_commit_time=git_commit_time)
            known.append(release)
            self._append(with_detail(event, "version", release.version))
            return _copy_release(release)

    def find_release(self, service: str, image_digest: str,
                     config_digest: str) -> Release | None:
        with self._guard:
            for release in reversed(self._releases.get(service, [])):
                if (release.image_digest, release.config_digest) == (image_digest,
                                                                     config_digest):
                    return _copy_release(release)
        return None

    def get_release(self, service: str, version: int) -> Release | None:
        with self._guard:
            known = self._releases.get(service, [])
            if 1 <= version <= len(known):
                return _copy_release(known[version - 1])
        return None

    def list_releases(self, service: str) -> list[Release]:
        with self._guard:
            return [_copy_release(r) for r in self._releases.get(service, [])]

    # -- service: which release is live ---------------------------------------------
    def set_live_release(self, service: str, version: int | None, event: Event) -> None:
        with self._writing():
            if version is not None and self.get_release(service, version) is None:
                raise NotFound(f"service {service!r} has no release v{version}",
                               hint=f"`corral releases {service}` lists its releases")
            self._live[service] = version
            self._append(event)

    def live_release(self, service: str) -> int | None:
        with self._guard:
            return self._live.get(service)

    def services(self) -> list[str]:
        with self._guard:
            return sorted(name for name, known in self._releases.items() if known)

    # -- instances -------------------------------------------------------------------
    def put_instance(self, instance: Instance, event: Event | None = None) -> None:
        with self._writing():
            self._instances[instance.id] = replace(instance,
                                                   state=InstanceState(instance.state))
            if event is not None:
                self._append(event)

    def get_instance(self, instance_id: str) -> Instance | None:
        with self._guard:
            return self._instances.get(instance_id)

    def list_instances(self, service: str | None = None, *,
                       live_only: bool = True) -> list[Instance]:
        with self._guard:
            chosen = [i for i in self._instances.values()
                      if (service is None or i.service == service)
                      and (not live_only or i.state.is_live)]
        return sorted(chosen, key=lambda i: (i.created_at, i.id))

    # -- deployments -----------------------------------------------------------------
    def create_deployment(self, service: str, strategy: str, from_release: int | None,
                          to_release: int, replicas: int, started_at: float,
                          event: Event) -> Deployment:
        with self._writing():
            deployment = Deployment(id=len(self._deployments) + 1, service=service,
                                    strategy=strategy, from_release=from_release,
                                    to_release=to_release, outcome=DeploymentOutcome.RUNNING,
                                    started_at=started_at, replicas=replicas)
            self._deployments[deployment.id] = deployment
            self._steps[deployment.id] = []
            self._append(with_detail(event, "deployment", deployment.id))
            return deployment

    def finish_deployment(self, deployment_id: int, outcome: DeploymentOutcome,
                          ended_at: float, reason: str | None, event: Event) -> Deployment:
        with self._writing():
            if deployment_id not in self._deployments:
                raise _no_deployment(deployment_id)
            finished = replace(self._deployments[deployment_id],
                               outcome=DeploymentOutcome(outcome), ended_at=ended_at,
                               reason=reason)
            self._deployments[deployment_id] = finished
            self._append(event)
            return finished

    def add_step(self, deployment_id: int, kind: str, detail: dict[str, Any],
                 at: float) -> DeploymentStep:
        with self._writing():
            if deployment_id not in self._steps:
                raise _no_deployment(deployment_id)
            steps = self._steps[deployment_id]
            step = DeploymentStep(deployment_id=deployment_id, seq=len(steps) + 1, kind=kind,
                                  detail=as_json_data(detail), at=at)
            steps.append(step)
            return _copy_step(step)

    def get_deployment(self, deployment_id: int) -> Deployment | None:
        with self._guard:
            return self._deployments.get(deployment_id)

    def list_deployments(self, service: str | None = None) -> list[Deployment]:
        with self._guard:
            return [d for d in sorted(self._deployments.values(), key=lambda d: -d.id)
                    if service is None or d.service == service]

    def list_steps(self, deployment_id: int) -> list[DeploymentStep]:
        with self._guard:
            return [_copy_step(s) for s in self._steps.get(deployment_id, [])]

    # -- progressive delivery ----------------------------------------------------------
    def save_progress(self, deployment_id: int, progress: dict[str, Any], at: float) -> None:
        with self._writing():
            if deployment_id not in self._deployments:
                raise _no_deployment(deployment_id)
            self._progress[deployment_id] = as_json_data(progress)

    def get_progress(self, deployment_id: int) -> dict[str, Any] | None:
        with self._guard:
            found = self._progress.get(deployment_id)
            return as_json_data(found) if found is not None else None

    def set_traffic(self, service: str, traffic: dict[str, Any] | None, event: Event) -> None:
        with self._writing():
            if traffic is None:
                self._traffic.pop(service, None)
            else:
                self._traffic[service] = as_json_data(traffic)
            self._append(event)

    def get_traffic(self, service: str) -> dict[str, Any] | None:
        with self._guard:
            found = self._traffic.get(service)
            return as_json_data(found) if found is not None else None

    def set_release_mark(self, service: str, version: int, bad: str | None,
                         event: Event) -> None:
        with self._writing():
            if self.get_release(service, version) is None:
                raise NotFound(f"release {service} v{version} does not exist",
                               hint=f"`corral releases {service}` lists them")
            if bad is None:
                self._marks.pop((service, version), None)
            else:
                self._marks[(service, version)] = bad
            self._append(event)

    def bad_releases(self, service: str) -> dict[int, str]:
        with self._guard:
            return {v: bad for (s, v), bad in self._marks.items() if s == service}

    # -- locks -----------------------------------------------------------------------
    def acquire_lock(self, name: str, holder: str, now: float, ttl: float) -> str | None:
        with self._writing():
            current = self._locks.get(name)
            if current is not None and current[0] != holder and current[1] > now:
                return describe_lock_holder(*current)
            self._locks[name] = (holder, now + ttl)
            return None

    def release_lock(self, name: str, holder: str) -> None:
        with self._writing():
            if name in self._locks and self._locks[name][0] == holder:
                del self._locks[name]

    # -- the controller lease -------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, now: float, ttl: float, *,
                      replacing: Lease | None = None) -> Lease | None:
        with self._guard:
            granted = grant_lease(self._leases.get(name), name, holder, now, ttl, replacing)
            if granted is not None:
                self._leases[name] = granted
            return granted

    def renew_lease(self, lease: Lease, now: float, ttl: float) -> Lease | None:
        with self._guard:
            stored = self._leases.get(lease.name)
            if not is_same_lease(stored, lease) or stored is None or stored.expires_at <= now:
                return None
            self._leases[lease.name] = replace(lease, expires_at=now + ttl)
            return self._leases[lease.name]

    def release_lease(self, lease: Lease) -> None:
        with self._guard:
            if is_same_lease(self._leases.get(lease.name), lease):
                del self._leases[lease.name]

    def current_lease(self, name: str) -> Lease | None:
        with self._guard:
            return self._leases.get(name)

    def fence(self, lease: Lease | None) -> None:
        self._fence = lease

    # -- sampled usage -----------------------------------------------------------------
    def add_usage(self, tallies: list[UsageTally]) -> None:
        with self._writing():
            for tally in tallies:
                key = (tally.instance_id, tally.hour)
                known = self._usage.get(key)
                self._usage[key] = tally if known is None else replace(
                    known, samples=known.samples + tally.samples,
                    seconds=known.seconds + tally.seconds,
                    memory_byte_seconds=known.memory_byte_seconds + tally.memory_byte_seconds,
                    cpu_seconds=known.cpu_seconds + tally.cpu_seconds)

    def list_usage(self, since: float, until: float,
                   service: str | None = None) -> list[UsageTally]:
        with self._guard:
            found = [t for t in self._usage.values() if since <= t.hour < until
                     and (service is None or t.service == service)]
        return sorted(found, key=lambda t: (t.hour, t.instance_id))

    # -- ledger ----------------------------------------------------------------------
    def append_event(self, event: Event) -> Event:
        with self._writing():
            return _copy_event(self._append(event))

    def events(self, since_seq: int = 0, limit: int | None = None) -> list[Event]:
        with self._guard:
            chosen = [_copy_event(e) for e in self._ledger if e.seq > since_seq]
        return chosen if limit is None else chosen[:limit]

    def find_events(self, where: EventFilter) -> list[Event]:
        with self._guard:
            chosen = [_copy_event(e) for e in self._ledger if where.matches(e)]
        return chosen if where.limit is None else chosen[max(0, len(chosen) - where.limit):]

    def raw_events(self, since_seq: int = 0, limit: int | None = None) -> list[RawEvent]:
        with self._guard:
            chosen = [RawEvent(e.seq, e.at, e.actor, e.action, e.subject, dump_json(e.detail),
                               e.prev_hash, e.hash) for e in self._ledger if e.seq > since_seq]
        return chosen if limit is None else chosen[:limit]

    def close(self) -> None:
        """Nothing to release; kept for the port."""


# Records are frozen but their dicts are not: hand out copies, as a database would, so a
# caller mutating what it read cannot rewrite the store (or a hashed ledger entry).
def _copy_release(release: Release) -> Release:
    return replace(release, config=as_json_data(release.config))


def _copy_step(step: DeploymentStep) -> DeploymentStep:
    return replace(step, detail=as_json_data(step.detail))


def _copy_event(event: Event) -> Event:
    return replace(event, detail=as_json_data(event.detail))


def _no_deployment(deployment_id: int) -> NotFound:
    return NotFound(f"deployment {deployment_id} does not exist",
                    hint="`corral status` lists the deployments of each service")
