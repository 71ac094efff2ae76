"""The token book: API tokens of a project, kept in .corral/tokens.json (0600).

A token is shown once, when made; the book keeps only its SHA-256 (a token carries 256
random bits, so a fast hash is enough: there is nothing to guess, unlike a password).
The controller and `corral token` both use this module, so a token made while no controller
runs works once one starts; the controller re-reads the file when it changes. Decisions
(roles, expiry, refusal) are core/access.py's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from corral.core.access import ROLES, TOKEN_NAME_PATTERN, TokenRecord, is_token_name, refusal
from corral.errors import AccessDenied, CorralError, NotFound
from corral.ports.records import Event
from corral.ports.store import Store

TOKEN_PREFIX = "corral_"
TOKENS_FILE = "tokens.json"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBook:
    """Tokens of the project whose state folder is `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / TOKENS_FILE
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # inode, mtime_ns, size of the file read
        self._by_digest: dict[str, TokenRecord] = {}

    # -- reading ---------------------------------------------------------------------
    def records(self) -> list[TokenRecord]:
        with self._lock:
            self._refresh()
            return sorted(self._by_digest.values(), key=lambda r: r.created_at)

    def authenticate(self, token: str, now: float) -> TokenRecord:
        """The record of a valid `token`; raises AccessDenied (401) saying why not."""
        with self._lock:
            self._refresh()
            record = self._by_digest.get(token_digest(token))
        why = refusal(record, now)
        if why is not None or record is None:
            raise AccessDenied(f"the token is {why}", status=401,
                               hint="ask an admin for a token: corral token create NAME")
        return record

    # -- changing --------------------------------------------------------------------
    def create(self, name: str, role: str, now: float, ttl: float | None) -> str:
        """Record a new token and return it: the only time it is ever seen."""
        if not is_token_name(name):
            raise CorralError(f"token name {name!r} must match {TOKEN_NAME_PATTERN}",
                              hint="use lowercase letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise CorralError(f"role {role!r} is not one of {', '.join(ROLES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._editing() as records:
            if any(r.name == name and r.revoked_at is None for r in records):
                raise CorralError(f"a token named {name!r} exists",
                                  hint=f"revoke it first: corral token revoke {name}")
            records.append(TokenRecord(name, role, token_digest(token), now,
                                       None if ttl is None else now + ttl))
        return token

    def revoke(self, name: str, now: float) -> TokenRecord:
        with self._editing() as records:
            for index, record in enumerate(records):
                if record.name == name and record.revoked_at is None:
                    records[index] = TokenRecord(**{**asdict(record), "revoked_at": now})
                    return records[index]
        raise NotFound(f"no live token named {name!r}", hint="see them: corral token list")

    @contextlib.contextmanager
    def _editing(self) -> Iterator[list[TokenRecord]]:
        """The records, under an exclusive lock on the file, written back atomically."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock_fd = os.open(self.path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            records = _read(self.path)
            yield records
            _write(self.path, records)
        finally:
            os.close(lock_fd)

    def _refresh(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._by_digest = None, {}
            return
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            self._by_digest = {r.digest: r for r in _read(self.path)}
            self._seen = seen


def _read(path: Path) -> list[TokenRecord]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise CorralError(f"cannot read the token book {path}: {exc}",
                          hint="restore it from a backup, or remove it and make new tokens"
                          ) from None
    return [TokenRecord(**row) for row in data.get("tokens", [])]


def _write(path: Path, records: list[TokenRecord]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump({"tokens": [asdict(r) for r in records]}, file, indent=1)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def token_view(record: TokenRecord, now: float) -> dict[str, Any]:
    """A token as `token list` shows it: never its digest."""
    return {"name": record.name, "role": record.role, "created_at": record.created_at,
            "expires_at": record.expires_at, "revoked_at": record.revoked_at,
            "state": refusal(record, now) or "valid"}


def create_token(book: TokenBook, store: Store, actor: str, name: str, role: str,
                 ttl: float | None, now: float) -> str:
    """Make a token and record who made it in the ledger (never the token itself)."""
    token = book.create(name, role, now, ttl)
    store.append_event(Event(at=now, actor=actor, action="token.create", subject=name,
                             detail={"role": role,
                                     "expires_at": None if ttl is None else now + ttl}))
    return token


def revoke_token(book: TokenBook, store: Store, actor: str, name: str, now: float) -> TokenRecord:
    record = book.revoke(name, now)
    store.append_event(Event(at=now, actor=actor, action="token.revoke", subject=name,
                             detail={"role": record.role}))
    return record
