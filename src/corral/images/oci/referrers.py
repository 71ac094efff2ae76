"""OCI 1.1 referrers in a local layout: artifacts (SBOM, signature) that point at an image.

An artifact is an image manifest with an `artifactType`, the empty config, one layer (the
artifact's blob) and a `subject` naming the image's manifest; it is stored in the layout and
listed, untagged, in index.json. `referrers_of` answers like the registry referrers API.
"""

from __future__ import annotations

from typing import Any

from corral.errors import ImageError, NotFound
from corral.images.oci.layout import MANIFEST_MEDIA_TYPE, Layout, canonical_json, digest_of

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY = b"{}"
SBOM_TYPE = "application/spdx+json"
SIGNATURE_TYPE = "application/vnd.dev.corral.signature.v1+json"


def add_referrer(layout: Layout, subject: dict[str, Any], artifact_type: str, blob: bytes,
                 annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """Store `blob` as an artifact referring to `subject` (a manifest descriptor); return the
    artifact's descriptor (as listed in index.json). Idempotent: same input, same digest."""
    blob_digest, blob_size = layout.write_blob(blob)
    empty_digest, empty_size = layout.write_blob(EMPTY)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": empty_digest, "size": empty_size},
        "layers": [{"mediaType": artifact_type, "digest": blob_digest, "size": blob_size}],
        "subject": {"mediaType": subject.get("mediaType", MANIFEST_MEDIA_TYPE),
                    "digest": subject["digest"], "size": subject["size"]},
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    digest, size = layout.write_blob(canonical_json(manifest))
    descriptor: dict[str, Any] = {"mediaType": MANIFEST_MEDIA_TYPE, "digest": digest,
                                  "size": size, "artifactType": artifact_type}
    if annotations:
        descriptor["annotations"] = dict(annotations)
    layout.add_descriptor(descriptor)
    return descriptor


def referrers_of(layout: Layout, digest: str,
                 artifact_type: str | None = None) -> list[dict[str, Any]]:
    """Descriptors of the artifacts in `layout` whose subject is `digest`, sorted by digest."""
    found: dict[str, dict[str, Any]] = {}
    for descriptor in layout.descriptors():
        kind = descriptor.get("artifactType")
        if not kind or (artifact_type and kind != artifact_type):
            continue
        try:
            manifest = layout.read_json(str(descriptor["digest"]))
        except (NotFound, ImageError):
            continue  # gc removed it, or it is damaged: it refers to nothing
        if manifest.get("subject", {}).get("digest") == digest:
            found[str(descriptor["digest"])] = {
                "mediaType": MANIFEST_MEDIA_TYPE, "digest": descriptor["digest"],
                "size": descriptor["size"], "artifactType": kind,
                **({"annotations": manifest["annotations"]} if manifest.get("annotations")
                   else {})}
    return [found[key] for key in sorted(found)]


def artifact_blob(layout: Layout, descriptor: dict[str, Any]) -> bytes:
    """The content of a one-layer artifact."""
    manifest = layout.read_json(str(descriptor["digest"]))
    layers = manifest.get("layers") or []
    if len(layers) != 1:
        raise ImageError(f"artifact {descriptor['digest'][:19]} has {len(layers)} blobs, not 1")
    data = layout.read_blob(layers[0]["digest"])

    if digest_of(data) != layers[0]["digest"]:
        raise ImageError(f"artifact blob {layers[0]['digest'][:19]} does not match its digest")
    return data


def is_artifact(descriptor: dict[str, Any]) -> bool:
    return bool(descriptor.get("artifactType"))
