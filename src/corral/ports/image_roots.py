"""Image roots on this machine: an optional image store ability, and the guard over it.

A store that unpacks images into local read-only roots (the OCI layout store) declares
`HasImageRoots`; for such a store the drift watch guards every root in use: a verifier per
root, a watcher reporting changes between checks, a spare (standby) root and a fresh root
in place of a drifted one. A store without local roots (a remote engine's) declares nothing
and file drift is then not checked. Protocols only; the adapters live in images/.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

Change = tuple[str, str]  # ("/etc/passwd", "modified")
WatchReport = dict[str, set[str]]  # watched key -> relative paths that changed (or {"*"})


@runtime_checkable
class HasImageRoots(Protocol):
    """An image store whose images are unpacked into roots on this machine."""

    @property
    def layout(self) -> object:
        """The store's OCI image layout (the blobs a root is checked and repaired from)."""
        ...

    @property
    def roots(self) -> Path:
        """The folder holding one unpacked root per image digest."""
        ...


class RootVerifier(Protocol):
    def verify(self, paths: Iterable[str] | None = None) -> list[Change]:
        """How the root differs from its image's file list (at `paths`, or everywhere)."""
        ...


class RootReplacement(Protocol):
    """What answering one drifted root did."""

    @property
    def quarantined(self) -> Path | None: ...

    @property
    def repaired(self) -> dict[str, list[str]]: ...  # layer hex -> paths

    @property
    def extracted(self) -> list[str]: ...  # layers made again whole


class RootGuard(Protocol):
    """File lists, verifiers, standby and fresh roots for one store's image roots."""

    def root_of(self, digest: str) -> Path | None:
        """The unpacked root of `digest`, None when it is not unpacked."""
        ...

    def verifier(self, digest: str) -> RootVerifier | None: ...

    def replace_root(self, digest: str, changes: list[Change]) -> RootReplacement:
        """Quarantine the drifted root, repair the layer cache under it, compose a fresh
        root in its place."""
        ...

    def standby_of(self, digest: str) -> Path: ...

    def make_standby(self, digest: str) -> Path: ...

    def discard_standby(self, digest: str) -> None: ...


class RootWatcher(Protocol):
    """Reports changes to watched roots between full verifications."""

    def add(self, key: str, root: Path, files: bool = True) -> None: ...

    def remove(self, key: str) -> None: ...

    def poll(self, timeout: float) -> WatchReport: ...

    def close(self) -> None: ...
