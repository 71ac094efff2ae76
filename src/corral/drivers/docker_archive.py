"""Hand an image of corral's OCI layout to a Docker engine (dockerd, podman) as it is.

A `docker load` archive (manifest.json, the config blob, the layer blobs) is written from the
layout's own blobs, so the engine's image id is the image's config digest: the same bytes,
never rebuilt or recompressed. Reads the layout as the OCI image-layout spec describes it
(it does not import corral's image store: drivers depend on ports only). Decides nothing.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from corral.errors import DriverError


def read_manifest(layout: Path, digest: str) -> dict[str, Any]:
    """The image manifest `digest` of the OCI layout at `layout`. Raises DriverError."""
    path = _blob(layout, digest)
    try:
        manifest = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:
        raise DriverError(f"image {digest} is not in the image layout {layout} ({error})",
                          hint="build or pull the image first (corral build, corral pull)"
                          ) from None
    if not isinstance(manifest, dict) or "config" not in manifest:
        raise DriverError(f"{digest} in {layout} is not an image manifest",
                          hint="give the digest of an image, not of an index or a blob")
    return manifest


def config_digest(layout: Path, digest: str) -> str:
    """The config digest of image `digest`: the id a Docker engine gives the loaded image."""
    return str(read_manifest(layout, digest)["config"]["digest"])


def write_archive(layout: Path, digest: str, into: tempfile.SpooledTemporaryFile[bytes] |
                  io.BufferedRandom) -> None:
    """Write the `docker load` archive of image `digest` into the open file `into`."""
    manifest = read_manifest(layout, digest)
    config = str(manifest["config"]["digest"])
    layers = [str(layer["digest"]) for layer in manifest.get("layers", [])]
    entry = [{"Config": _name(config), "RepoTags": None,
              "Layers": [_name(layer) for layer in layers]}]
    with tarfile.open(fileobj=into, mode="w") as archive:
        for blob in (config, *layers):
            archive.add(_blob(layout, blob), arcname=_name(blob))
        data = json.dumps(entry).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    into.seek(0)


def _name(digest: str) -> str:
    return "blobs/sha256/" + digest.partition(":")[2]


def _blob(layout: Path, digest: str) -> Path:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm != "sha256" or len(hexpart) != 64 or not hexpart.isalnum():
        raise DriverError(f"{digest!r} is not a sha256 digest",
                          hint="digests look like sha256:<64 hex digits>")
    return layout / "blobs" / "sha256" / hexpart
