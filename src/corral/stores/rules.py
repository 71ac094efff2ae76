"""The rules every store follows, so the SQL store and the in-memory fake agree exactly:
where the ledger chain starts, how JSON-able data is normalised before it is kept and
hashed, which details a store adds to the events it records, and how a held lock is described.
Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from corral.errors import Fenced
from corral.ports.lease import Lease
from corral.ports.records import Event

GENESIS_HASH = "0" * 64
"""The `prev_hash` of the first ledger entry (seq 1)."""


def as_json_data(value: dict[str, Any]) -> dict[str, Any]:
    """`value` as it reads back from JSON text: tuples become lists, unknown objects strings.

    Events are hashed after this, so an entry read back from the store hashes the same.
    """
    data: dict[str, Any] = json.loads(dump_json(value))
    return data


def dump_json(value: dict[str, Any]) -> str:
    # default=str mirrors Event.compute_hash, so a detail that hashes also stores.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def link_event(event: Event, last_seq: int, last_hash: str | None) -> Event:
    """`event`, normalised and chained as the entry after (`last_seq`, `last_hash`).

    `last_hash` is None for an empty ledger: the first entry is seq 1 after GENESIS_HASH.
    """
    normalised = replace(event, detail=as_json_data(event.detail))
    return normalised.chained(last_seq + 1, last_hash if last_hash is not None else GENESIS_HASH)


def with_detail(event: Event, key: str, value: Any) -> Event:
    """`event` with detail[key] = value unless the caller already set it.

    Stores number releases and deployments themselves, so they add that number to the event
    recording its creation: the ledger then names what it records.
    """
    if key in event.detail:
        return event
    return replace(event, detail={**event.detail, key: value})


def describe_lock_holder(holder: str, expires_at: float) -> str:
    """What a refused `acquire_lock` returns.

    e.g. "held by deploy web@host:4242 until 2024-05-01 12:00:00 UTC"
    """
    until = datetime.fromtimestamp(expires_at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"held by {holder} until {until}"


def grant_lease(current: Lease | None, name: str, holder: str, now: float, ttl: float,
                replacing: Lease | None) -> Lease | None:
    """The lease `acquire_lease` stores, or None if `current` still excludes `holder`.

    e.g. current (a, epoch 3, until 100): b at 90 -> None; b at 101 -> (b, 4, 101 + ttl);
    a at 90 -> (a, 3, 90 + ttl); b at 90 replacing exactly that lease -> (b, 4, 90 + ttl).
    """
    if current is None:
        return Lease(name, holder, 1, now + ttl)
    if current.holder == holder and current.expires_at > now:
        return Lease(name, holder, current.epoch, now + ttl)
    if current.expires_at > now and current != replacing:
        return None
    return Lease(name, holder, current.epoch + 1, now + ttl)


def is_same_lease(stored: Lease | None, held: Lease) -> bool:
    """Whether `held` is still the stored lease (holder and epoch; expiry may have moved)."""
    return stored is not None and (stored.holder, stored.epoch) == (held.holder, held.epoch)


def fenced_error(stored: Lease | None, held: Lease) -> Fenced:
    now_held = f"held by {stored.holder} (epoch {stored.epoch})" if stored else "released"
    return Fenced(f"this controller ({held.holder}, epoch {held.epoch}) lost the "
                  f"{held.name} lease, now {now_held}: it must stop acting",
                  hint="the active controller now runs this project; this one stops")
