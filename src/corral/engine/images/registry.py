"""`corral push` and `corral pull`: move images between the project's layout and registries.

Picks the local image, wires the registry client to the project's layout and blob-location
cache, and tags what was pulled. Transfers themselves live in images/registry. It works from
the state folder alone, never from the parsed spec: images move whatever the spec says.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.engine.adapters import (
    blob_locations,
    image_layout,
    parse_reference,
    pull_image,
    push_image,
    registry_client,
)
from corral.errors import ImageError, NotFound

if TYPE_CHECKING:
    from corral.engine.adapters import BlobLocations, Layout

Progress = Callable[[str], None]
LOCATIONS_FILE = "registry-blobs.json"
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _layout(state_dir: Path) -> Layout:
    return image_layout(state_dir / "images")


def _locations(state_dir: Path) -> BlobLocations:
    return blob_locations(state_dir / LOCATIONS_FILE)


def _resolve(layout: Layout, ref: str) -> str:
    """LocalImageStore.resolve on the layout alone, so a push does not import the builder."""
    if ref.startswith("sha256:"):
        if _DIGEST.match(ref) and layout.has_blob(ref):
            return ref
        raise NotFound(f"image {ref} is not in {layout.root}",
                       hint="run `corral build` or `corral images` to see what exists")
    full = ref if ":" in ref else f"{ref}:latest"
    found = layout.find_tag(full)
    if found is None:
        raise NotFound(f"no image named {full!r} in {layout.root}",
                       hint=f"run `corral build {ref.partition(':')[0]}` first")
    return str(found["digest"])


def local_image(layout: Layout, name: str, tag: str | None, image: str | None) -> str:
    """The digest to push: `image` if given, else NAME:TAG if it exists, else NAME:latest."""
    if image:
        return _resolve(layout, image)
    if tag:
        try:
            return _resolve(layout, f"{name}:{tag}")
        except NotFound:
            pass
    return _resolve(layout, name)


def push(state_dir: Path, ref_text: str, image: str | None = None, *, insecure: bool = False,
         jobs: int = 4, chunk_size: int | None = None,
         progress: Progress | None = None) -> dict[str, Any]:
    """Push; the report's `seconds` is the transfer alone, without the process start-up."""
    started = time.monotonic()
    ref = parse_reference(ref_text)
    layout = _layout(state_dir)
    digest = local_image(layout, ref.name, ref.tag if not ref.digest else None, image)
    if ref.digest and ref.digest != digest:
        raise ImageError(f"{ref_text} names digest {ref.digest[:19]} but the local image is "
                         f"{digest[:19]}", hint="push by tag, or name the matching image")
    locations = _locations(state_dir)
    with registry_client(ref, insecure=insecure, chunk_size=chunk_size) as client:
        report = push_image(client, layout, ref, digest, locations=locations,
                            jobs=jobs, progress=progress or (lambda _: None))
    # The manifest too: a rollback to an image gc took names where to pull it back from.
    locations.add(ref.registry, digest, ref.repository)
    locations.save()
    return {**report.as_dict(), "seconds": round(time.monotonic() - started, 3)}


def pull(state_dir: Path, ref_text: str, *, insecure: bool = False, jobs: int = 4,
         progress: Progress | None = None) -> dict[str, Any]:
    """Pull and tag; the report's `seconds` is the transfer alone, as for push."""
    started = time.monotonic()
    ref = parse_reference(ref_text)
    layout = _layout(state_dir)
    locations = _locations(state_dir)
    local = f"{ref.name}:{ref.tag}" if ref.tag and not ref.digest else None
    # Held until the image is listed in index.json, so gc never takes its blobs meanwhile.
    with layout.building(), registry_client(ref, insecure=insecure) as client:
        report = pull_image(client, layout, ref, jobs=jobs,
                            progress=progress or (lambda _: None))
        descriptor = {"mediaType": report.media_type, "digest": report.digest,
                      "size": report.size}
        if local:
            layout.tag(local, descriptor)
        else:
            layout.add_descriptor(descriptor)
    for blob in [*report.blobs, report.digest]:
        locations.add(ref.registry, blob, ref.repository)
    locations.save()
    return {**asdict(report), "local": local or report.digest,
            "seconds": round(time.monotonic() - started, 3)}


def pull_references(state_dir: Path, digest: str) -> list[str]:
    """`REGISTRY/REPO@DIGEST` for each place image `digest` was pushed to or pulled from
    (as remembered in .corral/registry-blobs.json), most recent repository first."""
    try:
        known = json.loads((state_dir / LOCATIONS_FILE).read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(known, dict):
        return []
    return [f"{registry}/{repo}@{digest}" for registry, blobs in sorted(known.items())
            if isinstance(blobs, dict) for repo in blobs.get(digest) or []]


def publisher(image_dir: Path, driver: object) -> Callable[[str, str], None] | None:
    """What pushes a release's image where a PullsFromRegistry driver's nodes pull it (the
    Swarm driver's registry); None for a driver that runs images from this machine."""
    from corral.ports.driver import PullsFromRegistry

    if not isinstance(driver, PullsFromRegistry):
        return None
    insecure = driver.insecure_registry

    def publish(reference: str, digest: str) -> None:
        push(image_dir, reference, image=digest, insecure=insecure)
    return publish
