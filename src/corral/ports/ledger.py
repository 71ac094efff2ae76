"""Ledger records beyond Event: a filter for reading entries, and an entry exactly as stored.

`RawEvent` keeps the detail as the stored JSON text, so `ledger verify` can judge a row that
someone edited into something that no longer parses. Plain data; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from corral.ports.records import Event


@dataclass(frozen=True)
class EventFilter:
    """Which ledger entries to read. `service` matches the subject "web" and "web/…";
    `action` matches itself and its sub-actions ("deployment" matches "deployment.start")."""

    service: str | None = None
    action: str | None = None
    actor: str | None = None
    since: float | None = None  # at >= since
    until: float | None = None  # at < until
    limit: int | None = None  # the newest `limit` entries (still returned oldest first)

    def matches(self, event: Event) -> bool:
        """The rule both stores follow.

        >>> e = Event(at=5, actor="ann", action="deployment.start", subject="web")
        >>> EventFilter(service="web", action="deployment").matches(e)
        True
        >>> EventFilter(action="deploy").matches(e), EventFilter(since=6).matches(e)
        (False, False)
        """
        subject = event.subject
        return ((self.service is None or subject == self.service
                 or subject.startswith(self.service + "/"))
                and (self.action is None or event.action == self.action
                     or event.action.startswith(self.action + "."))
                and (self.actor is None or event.actor == self.actor)
                and (self.since is None or event.at >= self.since)
                and (self.until is None or event.at < self.until))


class RawEvent(NamedTuple):
    """One ledger row as stored: `detail` is the stored JSON text, unparsed. A NamedTuple,
    not a dataclass: `ledger verify` makes 100,000s of them and tuples are 10x cheaper."""

    seq: int
    at: float
    actor: str
    action: str
    subject: str
    detail: str
    prev_hash: str
    hash: str
