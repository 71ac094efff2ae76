"""The SecretStore port: versioned secrets of one environment, kept as ciphertext.

A store never sees a value in clear: the engine (engine/secrets.py) seals each version
with an AEAD before `add_version` and opens it after `get`. Versions of a name count up
from 1 and are never rewritten; `remove` forgets every version of a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class SecretVersion:
    """One version of a secret: its sealed value (nonce + ciphertext), never the value."""

    name: str
    version: int
    created_at: float
    sealed: bytes = field(repr=False)


class SecretStore(Protocol):
    def add_version(self, name: str, sealed_for: SealFor, created_at: float) -> SecretVersion:
        """Append the next version of `name` (1 for a new name); `sealed_for(version)`
        seals the value bound to that version number, inside the same transaction."""
        ...

    def get(self, name: str, version: int | None = None) -> SecretVersion | None:
        """That version of `name` (None: the newest), or None."""
        ...

    def newest(self) -> list[SecretVersion]:
        """The newest version of every name, by name."""
        ...

    def remove(self, name: str) -> int:
        """Forget every version of `name`; how many there were."""
        ...


class SealFor(Protocol):
    def __call__(self, version: int) -> bytes: ...
