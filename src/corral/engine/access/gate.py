"""The gate of the controller's API: who a caller is, from a token or the unix socket's
peer, and whether that caller may call a route.

A token names its caller (its name is the ledger's actor); the unix socket's peer is a
local user the socket's 0600 mode already let in, who acts as `unix:USER` with the admin
role. Failed authentication is counted per client address (core/access.py FailureWindow):
past the limit the address gets 429 whatever it sends, and each counted failure is a
ledger entry (`api.auth_failed`), so a spray costs the ledger at most `limit` entries per
address and window.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from corral.core.access import SIGNED, FailureWindow, can
from corral.engine.access.tokens import TokenBook
from corral.errors import AccessDenied
from corral.ports.records import Event
from corral.ports.store import Store

log = logging.getLogger(__name__)

TOKEN_HINT = ("send a token (CORRAL_TOKEN, or the header 'Authorization: Bearer TOKEN'); "
              "an admin makes one with `corral token create NAME --role viewer`")


@dataclass(frozen=True)
class Caller:
    """Who calls: `actor` goes into the ledger, `role` bounds what they may call."""

    actor: str
    role: str


class Gate:
    def __init__(self, tokens: TokenBook, store: Store, clock: Callable[[], float],
                 failures: FailureWindow) -> None:
        self._tokens = tokens
        self._store = store
        self._clock = clock
        self._failures = failures
        self._lock = threading.Lock()  # the window is shared by every request thread

    @staticmethod
    def local(user: str) -> Caller:
        """The peer of the unix socket: a local user the socket's mode let in."""
        return Caller(f"unix:{user}", "admin")

    def authenticate(self, token: str | None, address: str) -> Caller:
        """The caller `token` names; raises AccessDenied (401, or 429 once `address` has
        failed too often)."""
        self.refuse_if_blocked(address)
        if not token:
            raise AccessDenied("this request needs a token", status=401, hint=TOKEN_HINT)
        try:
            record = self._tokens.authenticate(token, self._clock())
        except AccessDenied as exc:
            self._record_failure(address, exc.message, self._clock())
            raise
        return Caller(record.name, record.role)

    def refuse_if_blocked(self, address: str) -> None:
        """AccessDenied (429) once `address` has failed too often, whatever it sends."""
        with self._lock:
            if self._failures.is_blocked(address, self._clock()):
                raise AccessDenied(f"too many failed sign-ins from {address}", status=429,
                                   hint="wait a minute, then try again with a valid token")

    def signed(self, is_signed: bool, address: str) -> Caller:
        """The caller of a SIGNED route (a git host's push webhook): `is_signed` says whether
        the body carries a valid HMAC signature. A missing or wrong one is a failed
        authentication, counted and recorded as a bad token is."""
        self.refuse_if_blocked(address)
        if not is_signed:
            self._record_failure(address, "no valid push signature", self._clock())
            raise unsigned_push()
        return Caller("webhook", SIGNED)

    def is_still_valid(self, token: str) -> bool:
        """Whether a token that got a long request in (an event stream) still holds: a
        revoked or expired one ends the stream. Not a sign-in: nothing is counted."""
        try:
            self._tokens.authenticate(token, self._clock())
        except AccessDenied:
            return False
        return True

    def _record_failure(self, address: str, reason: str, now: float) -> None:
        with self._lock:
            count = self._failures.fail(address, now)
        log.warning("api: refused a token from %s (%s; %d recent)", address, reason, count)
        if count <= self._failures.limit:
            self._store.append_event(Event(at=now, actor="anonymous", action="api.auth_failed",
                                           subject=address,
                                           detail={"reason": reason, "failures": count}))


def unsigned_push() -> AccessDenied:
    return AccessDenied("this push is not signed with the controller's webhook secret",
                        status=401, hint="sign it with HMAC-SHA256 of the body (header "
                        "X-Hub-Signature-256: sha256=HEX, or X-Gitea-Signature: HEX) using the "
                        "secret in the controller's CORRAL_WEBHOOK_SECRET")


def admit(caller: Caller, needed: str) -> None:
    """Raise AccessDenied (403) unless `caller` may call a route that needs `needed`."""
    if not can(caller.role, needed):
        raise AccessDenied(f"{caller.actor} has the {caller.role} role; this needs {needed}",
                           status=403, hint="ask an admin for a token with that role")
