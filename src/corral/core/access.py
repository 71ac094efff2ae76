"""Who may do what through the controller's API: roles, token names, and when an address
that keeps failing to authenticate is refused for a while.

Pure decisions over data: the token book (engine/access/tokens.py) and the API server
(api/auth.py) pass in records, roles and the time; nothing here reads a clock or a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ROLES = ("viewer", "deployer", "admin")
"""Each role may do everything the roles before it may: viewer reads everything except
secrets; deployer also deploys, promotes, aborts, rolls back and approves; admin also
manages tokens, secrets and chaos."""

SIGNED = "signed"
"""Not a role: what a route declares when its caller proves itself by an HMAC signature of
the body with a shared secret (a git host's push webhook), never by a token. Any token,
even an admin's, gets nothing from such a route without the signature."""

TOKEN_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_TOKEN_NAME = re.compile(TOKEN_NAME_PATTERN)


def can(role: str, needed: str) -> bool:
    """Whether `role` is at least `needed`.

    >>> can("admin", "deployer"), can("deployer", "deployer"), can("viewer", "deployer")
    (True, True, False)
    """
    return ROLES.index(role) >= ROLES.index(needed)


def is_token_name(name: str) -> bool:
    """A token's name is the ledger's actor: no colon, so no token can pass for the unix
    socket's `unix:USER` actors, and nothing a terminal or a log would misread.

    >>> is_token_name("ci-main"), is_token_name("unix:root"), is_token_name("")
    (True, False, False)
    """
    return bool(_TOKEN_NAME.match(name))


@dataclass(frozen=True)
class TokenRecord:
    """What the book keeps of a token: never the token, only its SHA-256."""

    name: str
    role: str
    digest: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None


def refusal(record: TokenRecord | None, now: float) -> str | None:
    """Why a presented token is refused ("unknown", "revoked", "expired"), or None.

    >>> rec = TokenRecord("ci", "deployer", "ab", created_at=0.0, expires_at=100.0)
    >>> refusal(rec, 50.0), refusal(rec, 100.0), refusal(None, 0.0)
    (None, 'expired', 'unknown')
    """
    if record is None:
        return "unknown"
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and now >= record.expires_at:
        return "expired"
    return None


@dataclass
class FailureWindow:
    """Failed authentications per client address in a sliding window: after `limit`
    failures within `window` seconds the address is refused until the oldest of them
    leaves the window, whatever it presents (a right token included).

    >>> w = FailureWindow(limit=2, window=60.0)
    >>> w.fail("10.0.0.9", 0.0), w.fail("10.0.0.9", 1.0), w.is_blocked("10.0.0.9", 2.0)
    (1, 2, True)
    >>> w.is_blocked("10.0.0.9", 60.5), w.is_blocked("10.0.0.7", 2.0)
    (False, False)
    """

    limit: int
    window: float
    _failures: dict[str, list[float]] = field(default_factory=dict)

    def fail(self, address: str, now: float) -> int:
        """Record one failure; the failures of `address` now within the window."""
        recent = self._recent(address, now)
        recent.append(now)
        self._failures[address] = recent
        if len(self._failures) > 10_000:  # a spray from many addresses: forget the idle ones
            self._forget_idle(now)
        return len(recent)

    def is_blocked(self, address: str, now: float) -> bool:
        return len(self._recent(address, now)) >= self.limit

    def _recent(self, address: str, now: float) -> list[float]:
        return [t for t in self._failures.get(address, []) if now - t < self.window]

    def _forget_idle(self, now: float) -> None:
        for address in list(self._failures):
            if not self._recent(address, now):
                del self._failures[address]
