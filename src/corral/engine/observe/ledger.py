"""Reading, verifying and exporting the ledger; recording the entries the CLI makes (builds).

Reads the store directly, so `corral ledger` works with or without a controller. Verification
streams the rows in chunks through core.ledger; this module only fetches and formats.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from corral.core.ledger import ChainPosition, Verdict, verify_chain
from corral.ports.ledger import EventFilter, RawEvent
from corral.ports.records import Event
from corral.ports.store import Store

CHUNK = 20_000  # rows read per query while verifying or exporting


def entries(store: Store, where: EventFilter) -> list[Event]:
    return store.find_events(where)


def _raw_rows(store: Store) -> Iterator[RawEvent]:
    after = 0
    while True:
        rows = store.raw_events(since_seq=after, limit=CHUNK)
        yield from rows
        if len(rows) < CHUNK:
            return
        after = rows[-1].seq


def verify(store: Store) -> Verdict:
    """The whole chain checked from entry 1."""
    return verify_chain(_raw_rows(store), ChainPosition())


def export_lines(store: Store) -> Iterator[str]:
    """Every entry as one JSON line, exactly as stored (detail parsed when it parses)."""
    for row in _raw_rows(store):
        try:
            detail: Any = json.loads(row.detail)
        except ValueError:
            detail = row.detail
        yield json.dumps({"seq": row.seq, "at": row.at, "actor": row.actor,
                          "action": row.action, "subject": row.subject, "detail": detail,
                          "prev_hash": row.prev_hash, "hash": row.hash},
                         sort_keys=True, separators=(",", ":"))


def entry_view(event: Event, env: str | None = None) -> dict[str, Any]:
    """An entry as `corral ledger` shows it. Each environment keeps its own ledger, whose
    subjects are its service names; shown (and exported) with the environment in front,
    `staging/web`, so entries of two environments never read alike."""
    subject = event.subject if env is None or event.subject.startswith(f"{env}/") \
        else f"{env}/{event.subject}"
    return {"seq": event.seq, "at": event.at, "actor": event.actor, "action": event.action,
            "subject": subject, "detail": event.detail, "hash": event.hash,
            **({"environment": env} if env else {})}


def verdict_view(verdict: Verdict) -> dict[str, Any]:
    return {"ok": verdict.ok, "checked": verdict.checked, "head_seq": verdict.head.seq,
            "head_hash": verdict.head.hash, "first_bad": verdict.first_bad,
            "problem": verdict.problem}


def record_build(store: Store, *, actor: str, at: float, image: str, digest: str,
                 seconds: float, cached: bool) -> None:
    """Append the `image.build` entry the metrics count builds, durations and cache hits from.

    Called only for a build that changed what the image name points at (engine/images/build.py);
    `cached` means the built digest was already in the image store before the build.
    """
    store.append_event(Event(at=at, actor=actor, action="image.build", subject=image,
                             detail={"image": image, "digest": digest,
                                     "seconds": round(seconds, 3), "cached": cached}))
