"""The lease ability of a store: which controller is active, with fencing.

Two controllers share one store (PostgreSQL, or one SQLite file); exactly one holds the
`controller` lease and acts. Each grant to a new holder (or after an expiry) has a higher
`epoch`: the fencing token. A store told to `fence` itself with a lease refuses every later
write (Fenced) once the stored lease has another holder or epoch, inside the write's own
transaction, so a controller that lost its lease cannot change state after its successor
began, however late its writes arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    epoch: int
    expires_at: float


@runtime_checkable
class LeaseStore(Protocol):
    def acquire_lease(self, name: str, holder: str, now: float, ttl: float, *,
                      replacing: Lease | None = None) -> Lease | None:
        """Grant `name` to `holder` until now + ttl, or None while another holder's lease
        is unexpired. `replacing`: take it over even unexpired if it is still exactly that
        lease (its holder is known dead). A holder re-acquiring its unexpired lease keeps
        the epoch; any other grant gets the next one."""
        ...

    def renew_lease(self, lease: Lease, now: float, ttl: float) -> Lease | None:
        """Extend `lease` to now + ttl; None if it is lost (another holder or epoch, or
        expired at `now`): its holder must stop acting."""
        ...

    def release_lease(self, lease: Lease) -> None:
        """Give the lease up (a standby may take it at once); no-op if already lost."""
        ...

    def current_lease(self, name: str) -> Lease | None: ...

    def fence(self, lease: Lease | None) -> None:
        """Refuse (Fenced) every later write of this store object unless the stored lease
        is still `lease` (same holder and epoch); None lifts the fence."""
        ...
