"""Router port: the traffic entry point of each service.

Shaped after Argo Rollouts' traffic router: the controller states the whole backend set
with weights; the router applies it atomically, drains what lost its weight, and reports
per-release stats. The router runs as its own process and keeps its last configuration
when the controller goes away.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from corral.ports.records import Backend, ReleaseStats


class Router(Protocol):
    def ensure_running(self) -> None:
        """Start the router process if it is not running (idempotent). Raises RouterError."""
        ...

    def set_backends(self, service: str, listen: str, backends: Sequence[Backend]) -> None:
        """Replace the service's backends in one atomic step; start listening on `listen` if
        this is new. Backends with weight 0 get no new requests but finish in-flight ones.
        A backend no longer listed is drained the same way. Raises RouterError if `listen`
        cannot be bound."""
        ...

    def backends(self, service: str) -> list[Backend]:
        """The service's backends as the router has them now."""
        ...

    def listening(self) -> dict[str, str]:
        """Each service's listen address as the router serves it now: a refused change
        leaves the address it had; a service that is not served (yet) is left out."""
        ...

    def in_flight(self, service: str) -> dict[str, int]:
        """Requests in flight per backend address."""
        ...

    def wait_drained(self, service: str, address: str, deadline_seconds: float) -> bool:
        """Wait until `address` has no request in flight; False if the deadline passed."""
        ...

    def stats(self, service: str) -> dict[str, ReleaseStats]:
        """Per-release stats, keyed by release label."""
        ...

    def remove_service(self, service: str) -> None:
        """Stop listening for the service and forget it."""
        ...

    def stop(self) -> None:
        """Stop the router process (used by `corral down`)."""
        ...


@runtime_checkable
class RouterProcess(Protocol):
    """A router that runs as a process of its own (an optional ability)."""

    def pid(self) -> int | None:
        """The router's pid, or None when it is not running."""
        ...
