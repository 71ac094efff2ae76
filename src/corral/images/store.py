"""LocalImageStore: the ImageStore port over an OCI layout in the project's `.corral/`.

Layout in state_dir/images, unpacked roots in state_dir/cache/roots/<hex>, step cache in
state_dir/cache/steps; machine-wide caches (debootstrap bases) in cache_dir.
It adapts; building, packing and unpacking live in their own modules.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from corral.errors import ImageError, NotFound
from corral.images.builder import Builder
from corral.images.config import created_time, runtime_config
from corral.images.layout import MANIFEST_MEDIA_TYPE, REF_NAME, Layout, hex_of
from corral.images.unpack import unpack_image
from corral.ports.images import Progress
from corral.ports.records import ImageConfig, ImageSummary
from corral.spec.model import ImageSpec

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def default_cache_dir() -> Path:
    return Path(os.environ.get("CORRAL_CACHE") or Path.home() / ".cache" / "corral")


class LocalImageStore:
    """Images of one project, daemonless, in an OCI image layout."""

    def __init__(self, state_dir: Path, cache_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.cache_dir = cache_dir or default_cache_dir()
        self.layout = Layout(state_dir / "images")
        self.roots = state_dir / "cache" / "roots"
        self.builder = Builder(self.layout, state_dir / "cache" / "steps", self.cache_dir)

    def build(self, name: str, image: ImageSpec, context: Path, *,
              labels: dict[str, str] | None = None, progress: Progress | None = None) -> str:
        if not _NAME.match(name):
            raise ImageError(f"image name {name!r} is not valid",
                             hint="use lowercase letters, digits, '.', '_' and '-'")
        digest, size = self.builder.build(image, context, labels, progress or (lambda _: None))
        self.layout.tag(f"{name}:latest",
                        {"mediaType": MANIFEST_MEDIA_TYPE, "digest": digest, "size": size})
        return digest

    def resolve(self, ref: str) -> str:
        if ref.startswith("sha256:"):
            if _DIGEST.match(ref) and self.layout.has_blob(ref):
                return ref
            raise NotFound(f"image {ref} is not in {self.layout.root}",
                           hint="run `corral build` or `corral images` to see what exists")
        full = ref if ":" in ref else f"{ref}:latest"
        found = self.layout.find_tag(full)
        if found is None:
            raise NotFound(f"no image named {full!r} in {self.layout.root}",
                           hint=f"run `corral build {ref.partition(':')[0]}` first")
        return str(found["digest"])

    def config(self, digest: str) -> ImageConfig:
        return runtime_config(digest, self._config_document(self._manifest(digest)))

    def unpack(self, digest: str) -> Path:
        target = self.roots / hex_of(digest)
        if target.is_dir():
            return target
        manifest = self._manifest(digest)
        paths = []
        for layer in manifest.get("layers", []):
            path = self.layout.blob_path(layer["digest"])
            if not path.is_file():
                raise ImageError(f"image {digest[:19]} misses its layer {layer['digest'][:19]}",
                                 hint="run `corral build` again to restore it")
            paths.append(path)
        return unpack_image(paths, target)

    def list(self) -> list[ImageSummary]:
        names: dict[str, list[str]] = {}
        for descriptor in self.layout.descriptors():
            tags = names.setdefault(str(descriptor.get("digest")), [])
            ref = descriptor.get("annotations", {}).get(REF_NAME)
            if ref:
                tags.append(str(ref))
        summaries = []
        for digest, tags in names.items():
            try:
                manifest = self._manifest(digest)
                config = self._config_document(manifest)
            except (NotFound, ImageError):
                continue  # a dangling tag is not an image; `corral gc` cleans it up
            size = manifest["config"]["size"] + sum(x["size"] for x in manifest["layers"])
            summaries.append(ImageSummary(digest=digest, names=tuple(sorted(tags)), size=size,
                                          created=created_time(config)))
        return sorted(summaries, key=lambda s: (s.names, s.digest))

    def _manifest(self, digest: str) -> dict[str, Any]:
        if not _DIGEST.match(digest):
            raise NotFound(f"{digest!r} is not an image digest",
                           hint="digests look like sha256:<64 hex digits>")
        manifest = self.layout.read_json(digest)
        if "config" not in manifest or "layers" not in manifest:
            raise NotFound(f"{digest} is not an image manifest")
        return manifest

    def _config_document(self, manifest: dict[str, Any]) -> dict[str, Any]:
        return self.layout.read_json(manifest["config"]["digest"])
