"""The base an image starts from: nothing (scratch), a debootstrap root, or a local layout.

Resolves `ImageSpec.base` into base layers (their blobs brought into the target layout,
verified) and the base's runtime config. Registry (`oci:`) bases are pulled and pinned by
images/registry/base_image.py, then read like a layout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from corral.errors import ImageError, NotFound
from corral.images.build.debian import DebianBase, debian_layer, host_architecture
from corral.images.build.layer import Compression, Layer
from corral.images.fresh import file_origin, tag_origin
from corral.images.oci.layout import INDEX_MEDIA_TYPE, REF_NAME, Layout, copy_tree_blob
from corral.spec.model import ImageSpec

SUPPORTED_LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
)


@dataclass(frozen=True)
class Base:
    chain: str  # identity of the layers so far; the seed of every step cache key above it
    layers: tuple[Layer, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)  # the base's runtime "config"
    # Where it was read from, for a later build's freshness check (images/fresh.py); ""
    # for scratch and registry bases (pinned in corral.lock, in the project folder).
    origin: str = ""


def next_chain(chain: str, layer: Layer) -> str:
    return hashlib.sha256(f"{chain}\n{layer.diff_id}".encode()).hexdigest()


def resolve_base(image: ImageSpec, context: Path, layout: Layout, cache_dir: Path,
                 progress: Callable[[str], None], compression: Compression = "none", *,
                 update: bool = False, insecure: bool = False) -> Base:
    """The base's layers and config; a debian base is packed with `compression`, the
    layers of an OCI base are kept as they come. `update` re-resolves a registry base's tag
    (moving its corral.lock pin); `insecure` allows plain http off loopback."""
    if image.base == "scratch":
        return Base(chain="scratch")
    if image.base.startswith("debian:"):
        return _debian(image, layout, cache_dir, progress, compression)
    if image.base.startswith("layout:"):
        return _from_layout(image.base, context, layout, progress)
    if image.base.startswith("oci:"):
        # Imported here: the registry client is only needed for oci: bases.
        from corral.images.registry.base_image import oci_base_manifest

        digest = oci_base_manifest(image.base, context, layout, progress, update=update,
                                   insecure=insecure)
        return _from_manifest(layout, layout, digest, image.base, progress)
    raise ImageError(f"base {image.base!r} is not supported",
                     hint='use "scratch", "debian:SUITE", "oci:REF" or "layout:PATH:TAG"')


def _debian(image: ImageSpec, layout: Layout, cache_dir: Path,
            progress: Callable[[str], None], compression: Compression) -> Base:
    suite = image.base.partition(":")[2]
    if not suite:
        raise ImageError(f"base {image.base!r} names no suite",
                         hint='e.g. base = "debian:bookworm"')
    spec = DebianBase(suite=suite, packages=tuple(sorted(set(image.packages))),
                      mirror=image.mirror, arch=host_architecture(), compression=compression)
    layer, blob = debian_layer(spec, cache_dir, progress)
    layout.link_in(blob, layer.digest)  # verified by debian_layer
    return Base(chain=next_chain("scratch", layer), layers=(layer,),
                origin=file_origin(blob.with_name("layer.json")))


def _from_layout(base: str, context: Path, target: Layout,
                 progress: Callable[[str], None]) -> Base:
    folder, _, tag = base[len("layout:"):].partition(":")
    source = Layout((context / folder).resolve())
    if not (source.root / "index.json").is_file():
        raise ImageError(f"base {base!r}: {source.root} is not an OCI image layout",
                         hint="point at a folder holding index.json and blobs/")
    found = _from_manifest(source, target, _manifest_of(source, tag, base), base, progress)
    ref = next((r for r in (tag, f"{tag}:latest") if tag and source.find_tag(r)), None)
    return replace(found, origin=tag_origin(source, ref) if ref else
                   file_origin(source.root / "index.json"))  # its one image, untagged


def _from_manifest(source: Layout, target: Layout, manifest_digest: str, base: str,
                   progress: Callable[[str], None]) -> Base:
    manifest = source.read_json(manifest_digest)
    config = source.read_json(manifest["config"]["digest"])
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(manifest.get("layers", [])):
        raise ImageError(f"base {base!r}: its config lists {len(diff_ids)} diff_ids for "
                         f"{len(manifest.get('layers', []))} layers")
    layers, chain = [], "scratch"
    for descriptor, diff_id in zip(manifest["layers"], diff_ids, strict=True):
        if descriptor["mediaType"] not in SUPPORTED_LAYER_TYPES:
            raise ImageError(f"base {base!r}: layer type {descriptor['mediaType']} is not "
                             "supported", hint="re-export the base with gzip layers")
        size = copy_tree_blob(source, target, descriptor["digest"])
        layer = Layer(digest=descriptor["digest"], diff_id=diff_id, size=size,
                      media_type=descriptor["mediaType"])
        layers.append(layer)
        chain = next_chain(chain, layer)
    progress(f"base {base}: {len(layers)} layers from {manifest_digest[:19]}")
    return Base(chain=chain, layers=tuple(layers), config=dict(config.get("config") or {}))


def _manifest_of(source: Layout, tag: str, base: str) -> str:
    descriptors = source.descriptors()
    if tag:
        found = source.find_tag(tag) or source.find_tag(f"{tag}:latest")
    else:
        found = descriptors[0] if len(descriptors) == 1 else None
    if found is None:
        tags = sorted(d.get("annotations", {}).get(REF_NAME, "?") for d in descriptors)
        raise NotFound(f"base {base!r}: no image tagged {tag!r} in {source.root}",
                       hint=f"tags there: {', '.join(tags) or 'none'}")
    if found.get("mediaType") == INDEX_MEDIA_TYPE:
        return _platform_manifest(source, found["digest"], base)
    return str(found["digest"])


def _platform_manifest(source: Layout, index_digest: str, base: str) -> str:
    arch = host_architecture()
    for descriptor in source.read_json(index_digest).get("manifests", []):
        platform = descriptor.get("platform", {})
        if platform.get("architecture") == arch and platform.get("os", "linux") == "linux":
            return str(descriptor["digest"])
    raise ImageError(f"base {base!r} has no image for linux/{arch}")
