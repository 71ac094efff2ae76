"""LocalImageStore: the ImageStore port over an OCI layout in the project's `.corral/`.

Layout in state_dir/images, unpacked roots in state_dir/cache/roots/<hex>, step cache in
state_dir/cache/steps; machine-wide caches (debootstrap bases) in cache_dir.
It adapts; building, packing and unpacking live in their own modules.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from corral.errors import ImageError, NotFound
from corral.images.build.builder import Builder
from corral.images.build.config import created_time, runtime_config
from corral.images.build.reproducible import first_difference
from corral.images.build.sbom import LayerScans, merge, spdx_document
from corral.images.fresh import default_cache_dir
from corral.images.gc import collect
from corral.images.oci.layout import MANIFEST_MEDIA_TYPE, REF_NAME, Layout, canonical_json, hex_of
from corral.images.oci.referrers import (
    SBOM_TYPE,
    add_referrer,
    artifact_blob,
    is_artifact,
    referrers_of,
)
from corral.images.roots.compose import compose_root
from corral.ports.image_trust import GcReport, Verdict
from corral.ports.images import Progress
from corral.ports.records import ImageConfig, ImageSummary
from corral.spec.model import ImageSpec

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class LocalImageStore:
    """Images of one project, daemonless, in an OCI image layout."""

    def __init__(self, state_dir: Path, cache_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.cache_dir = cache_dir or default_cache_dir()
        self.layout = Layout(state_dir / "images")
        self.roots = state_dir / "cache" / "roots"
        self.layer_cache = state_dir / "cache" / "layers"
        self.builder = Builder(self.layout, state_dir / "cache" / "steps", self.cache_dir)
        self.scans = LayerScans(self.cache_dir / "sbom")
        self.origins: dict[str, frozenset[str]] = {}  # by image name, of this process's builds

    def build(self, name: str, image: ImageSpec, context: Path, *,
              labels: dict[str, str] | None = None, progress: Progress | None = None,
              dry: bool = False, update_bases: bool = False, insecure: bool = False) -> str:
        from corral.images.build.builder import BuildOptions

        if not _NAME.match(name):
            raise ImageError(f"image name {name!r} is not valid",
                             hint="use lowercase letters, digits, '.', '_' and '-'")
        say = progress or (lambda _: None)
        with self.layout.building():
            digest, size = self.builder.build(image, context, labels, say,
                                              BuildOptions(update_bases, insecure),
                                              scans=None if dry else self.scans)
            if dry:  # `corral plan`: the index (tags, referrers) stays as it was
                return digest
            descriptor = {"mediaType": MANIFEST_MEDIA_TYPE, "digest": digest, "size": size}
            self._attach_sbom(name, descriptor, say)
            self.layout.tag(f"{name}:latest", descriptor)
            self.origins[name] = frozenset(self.builder.origins)
        return digest

    def build_origins(self, name: str) -> frozenset[str] | None:
        return self.origins.get(name)

    def _attach_sbom(self, name: str, descriptor: dict[str, Any], progress: Progress) -> None:
        digest = descriptor["digest"]
        if referrers_of(self.layout, digest, SBOM_TYPE):
            return
        manifest = self._manifest(digest)
        diff_ids = self._config_document(manifest).get("rootfs", {}).get("diff_ids", [])
        scans = [self.scans.scan(self.layout.blob_path(layer["digest"]), str(diff_id))
                 for layer, diff_id in zip(manifest["layers"], diff_ids, strict=True)]
        document = spdx_document(digest, name, merge(scans))
        add_referrer(self.layout, descriptor, SBOM_TYPE, canonical_json(document),
                     {"org.opencontainers.image.title": "sbom.spdx.json"})
        progress(f"sbom: {len(document['files'])} files, {len(document['packages']) - 1} "
                 "packages (SPDX 2.3, attached as a referrer)")

    def descriptor(self, digest: str) -> dict[str, Any]:
        """The manifest descriptor of a stored image (the `subject` of its referrers)."""
        self._manifest(digest)
        return {"mediaType": MANIFEST_MEDIA_TYPE, "digest": digest,
                "size": self.layout.blob_path(digest).stat().st_size}

    def referrers(self, digest: str, artifact_type: str | None = None) -> list[dict[str, Any]]:
        return referrers_of(self.layout, digest, artifact_type)

    def sbom(self, digest: str) -> dict[str, Any]:
        found = referrers_of(self.layout, digest, SBOM_TYPE)
        if not found:
            raise NotFound(f"image {digest[:19]} has no SBOM", hint="build it with corral")
        return dict(json.loads(artifact_blob(self.layout, found[0])))

    def sign(self, digest: str, key_path: Path, now: float) -> dict[str, Any]:
        # Imported here: cryptography costs a cached build ~20 ms of start-up.
        from corral.images.oci.signing import load_private, sign_image

        return sign_image(self.layout, self.descriptor(digest), load_private(key_path), now)

    def verify(self, digest: str, trusted: list[str], folder: Path) -> Verdict:
        """Check `digest`'s signatures against `trusted` keys (ed25519:BASE64 or PEM paths
        relative to `folder`)."""
        from corral.images.oci.signing import load_public, verify_image

        self._manifest(digest)
        return verify_image(self.layout, digest, [load_public(k, folder) for k in trusted])

    def difference(self, digest: str, other: Any, other_digest: str) -> str | None:
        """The first difference between an image here and one in `other` (a local store)."""
        return first_difference(self.layout, digest, other.layout, other_digest)

    def tags(self) -> dict[str, str]:
        """Every tag and the digest it points at."""
        return {str(d["annotations"][REF_NAME]): str(d["digest"])
                for d in self.layout.descriptors() if REF_NAME in d.get("annotations", {})}

    def gc(self, keep: set[str], *, dry_run: bool) -> GcReport:
        """Delete what neither a tag nor `keep` (manifest digests) reaches."""
        gone = collect(self.layout, keep | set(self.tags().values()),
                       self.state_dir / "cache", dry_run=dry_run)
        return GcReport(blobs=gone.blobs, images=tuple(gone.images),
                        unpacked=tuple(str(p) for p in [*gone.roots, *gone.layer_dirs]),
                        freed=gone.freed)

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
        diff_ids = self._config_document(manifest).get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(manifest.get("layers", [])):
            raise ImageError(f"image {digest[:19]}: its config lists {len(diff_ids)} diff_ids "
                             f"for {len(manifest.get('layers', []))} layers")
        layers = []
        for layer, diff_id in zip(manifest.get("layers", []), diff_ids, strict=True):
            path = self.layout.blob_path(layer["digest"])
            if not path.is_file():
                raise ImageError(f"image {digest[:19]} misses its layer {layer['digest'][:19]}",
                                 hint="run `corral build` again to restore it")
            layers.append((path, str(diff_id)))
        return compose_root(layers, self.layer_cache, target)

    def list(self) -> list[ImageSummary]:
        names: dict[str, list[str]] = {}
        for descriptor in self.layout.descriptors():
            if is_artifact(descriptor):
                continue  # an SBOM or a signature, listed with its image's referrers
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
            # With SOURCE_DATE_EPOCH unset, `created` is 0: the age is then when it arrived.
            created = created_time(config) or self.layout.blob_path(digest).stat().st_mtime
            summaries.append(ImageSummary(digest=digest, names=tuple(sorted(tags)), size=size,
                                          created=created))
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
