"""images: the daemonless OCI image builder and store (LocalImageStore), and its fake.

Laid out by area, each sub-package importing only those below it (an import-linter
contract): build/ (specs and Dockerfiles made into images) over roots/ (the unpacked roots
instances run from, and their guard) and registry/ (push, pull, `oci:` bases), both over
oci/ (the layout on disk, referrers, signing). store.py adapts them to the ImageStore port
and gc.py collects what no root reaches.

The names are loaded on first use, so `corral pull` or `corral push` do not pay for
importing the builder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.images.fake import FakeImageStore
    from corral.images.store import LocalImageStore

__all__ = ["FakeImageStore", "LocalImageStore"]


def __getattr__(name: str) -> Any:
    if name == "LocalImageStore":
        from corral.images.store import LocalImageStore

        return LocalImageStore
    if name == "FakeImageStore":
        from corral.images.fake import FakeImageStore

        return FakeImageStore
    raise AttributeError(name)
