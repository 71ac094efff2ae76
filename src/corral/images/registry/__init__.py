"""The registry half of images: an OCI distribution client, push, pull and `oci:` bases.

It moves verified blobs and manifests between a local OCI layout and a registry; it never
builds or unpacks.
"""

from corral.images.registry.base_image import oci_base_manifest
from corral.images.registry.client import DEFAULT_CHUNK, RegistryClient
from corral.images.registry.locations import BlobLocations
from corral.images.registry.pull import PullReport, pull_image
from corral.images.registry.push import PushReport, push_image
from corral.images.registry.reference import Reference, parse_reference

__all__ = ["DEFAULT_CHUNK", "BlobLocations", "PullReport", "PushReport", "Reference",
           "RegistryClient", "oci_base_manifest", "parse_reference", "pull_image",
           "push_image"]
