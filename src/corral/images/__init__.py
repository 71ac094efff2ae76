"""images: the daemonless OCI image builder and store (LocalImageStore), and its fake.

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
