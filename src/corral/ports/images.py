"""Image store port: build golden images, resolve names to digests, unpack roots.

The local store is an OCI image layout; every image is named by its manifest digest.
An unpacked root is shared read-only by every instance of that digest.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

from corral.ports.records import ImageConfig, ImageSummary
from corral.spec.model import ImageSpec

Progress = Callable[[str], None]


class ImageStore(Protocol):
    def build(self, name: str, image: ImageSpec, context: Path, *,
              labels: dict[str, str] | None = None,
              progress: Progress | None = None, dry: bool = False,
              update_bases: bool = False, insecure: bool = False) -> str:
        """Build `image` with files from `context`; tag it `name:latest`; return the manifest
        digest. The same inputs give the same digest. Raises ImageError.

        Registry bases are pinned by digest in corral.lock beside the spec; `update_bases`
        resolves their tags again and moves the pins; `insecure` allows plain http to a
        registry off loopback.

        `dry` (for `corral plan`): the digest only; no tag moves and nothing is attached
        (content-addressed blobs and the step cache may be written, for the next build)."""
        ...

    def resolve(self, ref: str) -> str:
        """A digest for `ref` ("NAME", "NAME:TAG" or "sha256:…"). Raises NotFound."""
        ...

    def config(self, digest: str) -> ImageConfig:
        """The runtime config of an image. Raises NotFound."""
        ...

    def unpack(self, digest: str) -> Path:
        """A read-only root folder of the image, unpacked once per digest and cached."""
        ...

    def list(self) -> list[ImageSummary]: ...


@runtime_checkable
class RecordsBuildOrigins(Protocol):
    """Says where its last build of an image read what lies outside the project folder, so
    a later `corral build` can tell that nothing changed without building (images/fresh.py
    of the local store)."""

    def build_origins(self, name: str) -> frozenset[str] | None:
        """The origins ("file:PATH", "volatile:WHY") of this process's last build of
        `name`; None if it built none."""
        ...
