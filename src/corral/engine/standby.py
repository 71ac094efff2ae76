"""The controller lease: exactly one controller of a project acts, others wait as standbys.

A controller acquires the `controller` lease before it touches the router, an instance or
the store, fences its store with it (a write after the lease passed on is refused in the
database), and renews it every third of its time to live. If a renewal fails, or none has
succeeded for FENCE_SHARE of the time to live (the store unreachable), it stops acting at
once: `on_lost` ends the process, leaving instances and the router serving. A standby takes
over only when the lease expired, or at once when its holder is a dead process on this
machine, so the old controller has always stopped before the new one starts.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from corral.engine.settings import seconds_from_env
from corral.errors import ControllerError, StoreError
from corral.ports.lease import Lease, LeaseStore
from corral.ports.store import Store
from corral.processes import is_running

log = logging.getLogger(__name__)

LEASE = "controller"
DEFAULT_TTL = 10.0
FENCE_SHARE = 0.7
"""Stop acting once no renewal succeeded for this share of the TTL: the lease, renewed at
the start of that renewal, still has 30% of its life left by then (clock drift margin)."""


def lease_ttl() -> float:
    """CORRAL_LEASE_TTL seconds (tests use ~2), else DEFAULT_TTL."""
    return seconds_from_env("CORRAL_LEASE_TTL", DEFAULT_TTL)


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def is_dead_here(holder: str) -> bool:
    """Whether `holder` ("host:pid") is a process of this machine that no longer runs."""
    host, _, pid = holder.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not is_running(int(pid))  # a killed process not yet reaped has exited too


class LeaseKeeper:
    def __init__(self, store: Store, *, ttl: float | None = None, holder: str | None = None,
                 on_lost: Callable[[str], None]) -> None:
        if not isinstance(store, LeaseStore):
            raise StoreError("this store cannot hold the controller lease",
                             hint="use the SQLite or PostgreSQL store")
        self._store: LeaseStore = store
        self.ttl = ttl or lease_ttl()
        self.holder = holder or holder_id()
        self._on_lost = on_lost
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lease: Lease | None = None

    def acquire(self, *, standby: bool, stopping: threading.Event,
                waiting: Callable[[Lease], None] = lambda _: None) -> Lease | None:
        """The lease, once granted; None if `stopping` is set first. Without `standby`, a
        lease held by a live controller is a ControllerError naming it."""
        told = False
        while not stopping.is_set():
            current = self._store.current_lease(LEASE)
            replacing = current if current and is_dead_here(current.holder) else None
            granted = self._store.acquire_lease(LEASE, self.holder, time.time(), self.ttl,
                                                replacing=replacing)
            if granted is not None:
                self.lease = granted
                self._store.fence(granted)
                return granted
            assert current is not None
            if not standby:
                raise _held_error(current)
            if not told:
                waiting(current)
                told = True
            stopping.wait(self.ttl / 4)
        return None

    def start(self) -> None:
        """Renew in the background until stop()."""
        self._thread = threading.Thread(target=self._renew_until_stopped, name="lease",
                                        daemon=True)
        self._thread.start()

    def _renew_until_stopped(self) -> None:
        last_ok = time.monotonic()
        while not self._stop.wait(self.ttl / 3):
            attempt = time.monotonic()
            held = self.lease
            assert held is not None
            try:
                renewed = self._store.renew_lease(held, time.time(), self.ttl)
            except StoreError as exc:
                if time.monotonic() - last_ok > self.ttl * FENCE_SHARE:
                    return self._lose(f"the store has been unreachable too long: {exc}")
                log.warning("lease renewal failed, retrying: %s", exc)
                continue
            if renewed is None:
                return self._lose("another controller holds the lease")
            self.lease, last_ok = renewed, attempt
        return None

    def _lose(self, why: str) -> None:
        log.critical("controller lease lost (%s): this controller stops acting", why)
        self._on_lost(why)

    def stop(self) -> None:
        """Stop renewing and give the lease up, so a standby takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl)
        if self.lease is not None:
            try:
                self._store.fence(None)
                self._store.release_lease(self.lease)
            except StoreError as exc:
                log.warning("could not release the controller lease: %s", exc)


def _held_error(current: Lease) -> ControllerError:
    until = datetime.fromtimestamp(current.expires_at, tz=UTC).strftime("%H:%M:%S UTC")
    return ControllerError(
        f"controller {current.holder} is active for this project (its lease runs until "
        f"{until} and is renewed while it lives)",
        hint="use that controller, stop it (`corral down` on its machine), or run this one "
             "as its standby: `corral up --standby`")
