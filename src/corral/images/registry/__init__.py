"""The registry half of images: an OCI distribution client, push, pull and `oci:` bases.

It moves verified blobs and manifests between a local OCI layout and a registry; it never
builds or unpacks. Names are loaded when first used (PEP 562), so reading a pinned base's
lock entry does not load the HTTP client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.images.registry.base_image import oci_base_manifest
    from corral.images.registry.client import DEFAULT_CHUNK, RegistryClient
    from corral.images.registry.locations import BlobLocations
    from corral.images.registry.pull import PullReport, pull_image
    from corral.images.registry.push import PushReport, push_image
    from corral.images.registry.reference import Reference, parse_reference

_MODULE_OF = {
    "oci_base_manifest": "base_image", "DEFAULT_CHUNK": "client", "RegistryClient": "client",
    "BlobLocations": "locations", "PullReport": "pull", "pull_image": "pull",
    "PushReport": "push", "push_image": "push", "Reference": "reference",
    "parse_reference": "reference",
}

__all__ = ["DEFAULT_CHUNK", "BlobLocations", "PullReport", "PushReport", "Reference",
           "RegistryClient", "oci_base_manifest", "parse_reference", "pull_image",
           "push_image"]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
