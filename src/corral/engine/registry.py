"""`corral push` and `corral pull`: move images between the project's layout and registries.

Picks the local image, wires the registry client to the workspace's layout and blob-location
cache, and tags what was pulled. Transfers themselves live in images/registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from corral.engine.workspace import Workspace
from corral.errors import ImageError, NotFound
from corral.images.layout import Layout
from corral.images.registry import (
    DEFAULT_CHUNK,
    BlobLocations,
    RegistryClient,
    parse_reference,
    pull_image,
    push_image,
)

Progress = Callable[[str], None]
LOCATIONS_FILE = "registry-blobs.json"


def _layout(ws: Workspace) -> Layout:
    return Layout(ws.state_dir / "images")


def _locations(ws: Workspace) -> BlobLocations:
    return BlobLocations(ws.state_dir / LOCATIONS_FILE)


def local_image(ws: Workspace, name: str, tag: str | None, image: str | None) -> str:
    """The digest to push: `image` if given, else NAME:TAG if it exists, else NAME:latest."""
    if image:
        return ws.images.resolve(image)
    if tag:
        try:
            return ws.images.resolve(f"{name}:{tag}")
        except NotFound:
            pass
    return ws.images.resolve(name)


def push(ws: Workspace, ref_text: str, image: str | None = None, *, insecure: bool = False,
         jobs: int = 4, chunk_size: int = DEFAULT_CHUNK,
         progress: Progress | None = None) -> dict[str, Any]:
    ref = parse_reference(ref_text)
    digest = local_image(ws, ref.name, ref.tag if not ref.digest else None, image)
    if ref.digest and ref.digest != digest:
        raise ImageError(f"{ref_text} names digest {ref.digest[:19]} but the local image is "
                         f"{digest[:19]}", hint="push by tag, or name the matching image")
    with RegistryClient(ref, insecure=insecure, chunk_size=chunk_size) as client:
        report = push_image(client, _layout(ws), ref, digest, locations=_locations(ws),
                            jobs=jobs, progress=progress or (lambda _: None))
    return report.as_dict()


def pull(ws: Workspace, ref_text: str, *, insecure: bool = False, jobs: int = 4,
         progress: Progress | None = None) -> dict[str, Any]:
    ref = parse_reference(ref_text)
    layout = _layout(ws)
    locations = _locations(ws)
    local = f"{ref.name}:{ref.tag}" if ref.tag and not ref.digest else None
    # Held until the image is listed in index.json, so gc never takes its blobs meanwhile.
    with layout.building(), RegistryClient(ref, insecure=insecure) as client:
        report = pull_image(client, layout, ref, jobs=jobs,
                            progress=progress or (lambda _: None))
        descriptor = {"mediaType": report.media_type, "digest": report.digest,
                      "size": report.size}
        if local:
            layout.tag(local, descriptor)
        else:
            layout.add_descriptor(descriptor)
    for blob in report.blobs:
        locations.add(ref.registry, blob, ref.repository)
    locations.save()
    return {**asdict(report), "local": local or report.digest}
