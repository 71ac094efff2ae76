"""images: the daemonless OCI image builder and store (LocalImageStore), and its fake."""

from corral.images.fake import FakeImageStore
from corral.images.store import LocalImageStore

__all__ = ["FakeImageStore", "LocalImageStore"]
