"""What an image store can do beyond building and running: referrers, signatures, gc.

A separate Protocol from ImageStore so stores (and fakes) that cannot sign still satisfy the
base port; the engine asks `isinstance(store, TrustedImageStore)` before using these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from corral.ports.images import ImageStore


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking an image's signatures against trusted keys."""

    digest: str
    valid_keys: tuple[str, ...]  # ids (sha256 of the raw key) of trusted keys that signed it
    signatures: int  # signature artifacts found
    problems: tuple[str, ...] = ()  # why the others did not count

    @property
    def ok(self) -> bool:
        return bool(self.valid_keys)

    def reason(self) -> str:
        if self.ok:
            return f"signed by {', '.join(k[:19] for k in self.valid_keys)}"
        if not self.signatures:
            return f"image {self.digest[:19]} has no signature"
        return (f"image {self.digest[:19]} has {self.signatures} signature(s), none valid "
                f"for a trusted key: {'; '.join(self.problems)}")


@dataclass(frozen=True)
class GcReport:
    """What gc removed (or would remove, on a dry run)."""

    blobs: dict[str, int] = field(default_factory=dict)  # digest -> bytes
    images: tuple[str, ...] = ()  # manifest digests dropped from the index
    unpacked: tuple[str, ...] = ()  # unpacked roots and extracted layers removed
    freed: int = 0  # bytes of blobs, partial files and quarantined roots
    quarantined: dict[str, int] = field(default_factory=dict)  # drifted root -> bytes freed
    still_mounted: tuple[str, ...] = ()  # quarantined roots kept: a process still runs on them


@runtime_checkable
class TrustedImageStore(ImageStore, Protocol):
    def descriptor(self, digest: str) -> dict[str, Any]: ...

    def referrers(self, digest: str,
                  artifact_type: str | None = None) -> list[dict[str, Any]]: ...

    def sbom(self, digest: str) -> dict[str, Any]: ...

    def sign(self, digest: str, key_path: Path, now: float) -> dict[str, Any]:
        """Sign with the ed25519 private key at `key_path`; return the signature descriptor."""
        ...

    def verify(self, digest: str, trusted: list[str], folder: Path) -> Verdict:
        """Check signatures against `trusted` ("ed25519:BASE64" or PEM paths from `folder`)."""
        ...

    def difference(self, digest: str, other: Any, other_digest: str) -> str | None:
        """None if equal, else the first differing layer entry (or config key) between
        `digest` here and `other_digest` in `other`, a store of the same kind."""
        ...

    def tags(self) -> dict[str, str]: ...

    def gc(self, keep: set[str], *, dry_run: bool) -> GcReport:
        """Delete what neither a tag nor `keep` (manifest digests) reaches."""
        ...
