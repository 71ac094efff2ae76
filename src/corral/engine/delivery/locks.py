"""Who holds a service's deploy lock, as data: the holder names written and read in one place.

A store keeps a lock's holder as text and a refused `acquire_lock` returns "held by HOLDER
until TIME". Every holder name is made here (`deployment_holder`, `rollback_holder`,
`RECONCILER`, `WARM_KEEPER`) and read back here (`holder_kind`), so the engine asks what
kind of holder it met (a deployment holds the lock for its whole run; a background loop
only for a moment) and never looks for words in the text. It takes no lock itself.
"""

from __future__ import annotations

import re
from enum import Enum


class HolderKind(Enum):
    DEPLOYMENT = "deployment"
    ROLLBACK = "rollback"
    RECONCILER = "reconciler"
    WARM_KEEPER = "warm keeper"
    OTHER = "other"  # a name corral did not write (an older version, an operator)

    @property
    def is_brief(self) -> bool:
        """A background loop's hold, released within a sweep: worth waiting out."""
        return self in (HolderKind.RECONCILER, HolderKind.WARM_KEEPER)


WARM_KEEPER = "warm-keeper"


def lock_name(service: str) -> str:
    return f"deploy/{service}"


def deployment_holder(actor: str, service: str, label: str, token: str) -> str:
    """e.g. "alice, deploying web v3 #a1b2c3" (the token makes each request's hold its own)."""
    return f"{actor}, deploying {service} {label} #{token}"


def resumed_holder(deployment_id: int) -> str:
    """A resumed deployment that saved no holder of its own: "deployment #7"."""
    return f"deployment #{deployment_id}"


def rollback_holder(actor: str, service: str, version: int, token: str) -> str:
    """e.g. "alice, rolling web back to v2 #a1b2c3"."""
    return f"{actor}, rolling {service} back to v{version} #{token}"


def reconciler_holder(pid: int) -> str:
    """e.g. "reconciler (pid 4242)"."""
    return f"reconciler (pid {pid})"


_FORMS: tuple[tuple[HolderKind, re.Pattern[str]], ...] = (
    (HolderKind.DEPLOYMENT, re.compile(r".*, deploying \S+ \S+ #[0-9a-f]+")),
    (HolderKind.DEPLOYMENT, re.compile(r"deployment #\d+")),
    (HolderKind.ROLLBACK, re.compile(r".*, rolling \S+ back to v\d+ #[0-9a-f]+")),
    (HolderKind.RECONCILER, re.compile(r"reconciler \(pid \d+\)")),
    (HolderKind.WARM_KEEPER, re.compile(re.escape(WARM_KEEPER))),
)
_REFUSAL = re.compile(r"held by (?P<holder>.*) until [^()]*", re.DOTALL)


def holder_kind(holder_or_refusal: str) -> HolderKind:
    """The kind of a holder name, or of the holder a refused `acquire_lock` names.

    >>> holder_kind("held by reconciler (pid 12) until 2026-01-01 00:00:00 UTC").is_brief
    True
    >>> holder_kind(deployment_holder("alice", "web", "v3", "a1b2c3"))
    <HolderKind.DEPLOYMENT: 'deployment'>
    >>> holder_kind("someone else")
    <HolderKind.OTHER: 'other'>
    """
    refusal = _REFUSAL.fullmatch(holder_or_refusal)
    holder = refusal.group("holder") if refusal else holder_or_refusal
    for kind, form in _FORMS:
        if form.fullmatch(holder):
            return kind
    return HolderKind.OTHER
