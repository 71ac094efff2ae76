"""Store ports: where corral's state lives (SQLite by default, PostgreSQL for teams).

One narrow Protocol per thing stored (releases, instances, deployments, traffic, locks,
ledger, sampled usage), so a caller names what it needs and a second store can be written,
and tested by its contract suite in tests/contracts/, one part at a time. `Store` is all of
them at once: what stores/ implement and what the engine is handed.

Every mutating method takes the `Event` that records it; the store appends that event to
the hash-chained ledger in the same transaction as the change, so the ledger can never
disagree with the state. Releases are insert-only.
"""

from __future__ import annotations

from typing import Any, Protocol

from corral.ports.ledger import EventFilter, RawEvent
from corral.ports.records import (
    Deployment,
    DeploymentOutcome,
    DeploymentStep,
    Event,
    Instance,
    Release,
    UsageTally,
)


class ReleaseStore(Protocol):
    """Releases (insert-only), which one is live, and which are marked bad."""

    def add_release(self, service: str, image_digest: str, config_digest: str,
                    config: dict[str, Any], created_at: float, event: Event,
                    git_commit: str | None = None,
                    git_commit_time: float | None = None) -> Release:
        """Record the next release (version = highest + 1, starting at 1)."""
        ...

    def find_release(self, service: str, image_digest: str,
                     config_digest: str) -> Release | None:
        """The newest release with exactly these digests, if any."""
        ...

    def get_release(self, service: str, version: int) -> Release | None: ...

    def list_releases(self, service: str) -> list[Release]:
        """Oldest first."""
        ...

    def set_live_release(self, service: str, version: int | None, event: Event) -> None: ...

    def live_release(self, service: str) -> int | None: ...

    def services(self) -> list[str]:
        """Services that have at least one release."""
        ...

    def set_release_mark(self, service: str, version: int, bad: str | None,
                         event: Event) -> None:
        """Mark a release bad with the reason (None clears the mark)."""
        ...

    def bad_releases(self, service: str) -> dict[int, str]:
        """Version -> why it was marked bad."""
        ...


class InstanceStore(Protocol):
    """The instances the engine started, live or ended."""

    def put_instance(self, instance: Instance, event: Event | None = None) -> None:
        """Insert or replace the instance's row (its id is the key). State changes that
        matter to an audit pass an event; health flaps may pass None."""
        ...

    def get_instance(self, instance_id: str) -> Instance | None: ...

    def list_instances(self, service: str | None = None, *,
                       live_only: bool = True) -> list[Instance]:
        """Instances, oldest first; `live_only` keeps those whose state `is_live`."""
        ...


class DeploymentStore(Protocol):
    """Deployments, their steps, and the progress a resumed deployment starts from."""

    def create_deployment(self, service: str, strategy: str, from_release: int | None,
                          to_release: int, replicas: int, started_at: float,
                          event: Event) -> Deployment: ...

    def finish_deployment(self, deployment_id: int, outcome: DeploymentOutcome,
                          ended_at: float, reason: str | None, event: Event) -> Deployment: ...

    def add_step(self, deployment_id: int, kind: str, detail: dict[str, Any],
                 at: float) -> DeploymentStep: ...

    def get_deployment(self, deployment_id: int) -> Deployment | None: ...

    def list_deployments(self, service: str | None = None) -> list[Deployment]:
        """Newest first."""
        ...

    def list_steps(self, deployment_id: int) -> list[DeploymentStep]: ...

    def save_progress(self, deployment_id: int, progress: dict[str, Any], at: float) -> None:
        """Replace the deployment's saved progress (what a resumed deployment starts from)."""
        ...

    def get_progress(self, deployment_id: int) -> dict[str, Any] | None: ...


class TrafficStore(Protocol):
    """Each service's traffic policy: fleet weights and the fleet kept warm."""

    def set_traffic(self, service: str, traffic: dict[str, Any] | None, event: Event) -> None:
        """Replace (None: forget) the service's traffic policy: fleet weights, warm fleet."""
        ...

    def get_traffic(self, service: str) -> dict[str, Any] | None: ...


class LockStore(Protocol):
    """Named locks with an expiry, so two deploys of a service never race."""

    def acquire_lock(self, name: str, holder: str, now: float, ttl: float) -> str | None:
        """Take the named lock for `ttl` seconds. Returns None on success, or the current
        holder's description if someone else holds an unexpired lock. Re-acquiring a lock
        you hold extends it."""
        ...

    def release_lock(self, name: str, holder: str) -> None: ...


class LedgerStore(Protocol):
    """The append-only, hash-chained ledger."""

    def append_event(self, event: Event) -> Event:
        """Append an event that records no other change; returns it chained."""
        ...

    def events(self, since_seq: int = 0, limit: int | None = None) -> list[Event]:
        """Ledger entries in order, seq > since_seq."""
        ...

    def find_events(self, where: EventFilter) -> list[Event]:
        """Ledger entries matching `where` (EventFilter.matches), oldest first."""
        ...

    def raw_events(self, since_seq: int = 0, limit: int | None = None) -> list[RawEvent]:
        """Ledger rows exactly as stored (detail as text), in seq order, seq > since_seq;
        for `ledger verify`, which must judge rows that no longer parse."""
        ...


class UsageStore(Protocol):
    """Sampled usage per instance and clock hour (compact aggregates, not every sample)."""

    def add_usage(self, tallies: list[UsageTally]) -> None:
        """Add each tally to its (instance, hour) row: seconds, memory, CPU and samples
        are summed, so sampling the same hour again accumulates. Not in the ledger: usage
        is a measurement, not a change of state."""
        ...

    def list_usage(self, since: float, until: float,
                   service: str | None = None) -> list[UsageTally]:
        """Rows whose hour starts in [since, until), ordered by hour and instance."""
        ...


class Store(ReleaseStore, InstanceStore, DeploymentStore, TrafficStore, LockStore,
            LedgerStore, UsageStore, Protocol):
    """Everything stored, in one database: the ledger row of a change is written in the
    same transaction as the change."""

    def close(self) -> None: ...
