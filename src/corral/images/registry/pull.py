"""Pull an image (and its referrers) from a registry into the local layout.

Every manifest and blob is checked against its digest before it is stored; blobs download
to temporary files beside the blobs and are renamed only once verified, so an interrupted
or corrupt pull leaves nothing visible. Image indexes resolve to the host's platform.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from corral.errors import ImageError, NotFound
from corral.images.oci.layout import INDEX_MEDIA_TYPE, Layout, digest_of
from corral.images.registry.client import RegistryClient, manifest_media_type
from corral.images.registry.platforms import platform_child
from corral.images.registry.push import fallback_tag
from corral.images.registry.reference import Reference

Progress = Callable[[str], None]
_INDEX_TYPES = (INDEX_MEDIA_TYPE, "application/vnd.docker.distribution.manifest.list.v2+json")


@dataclass
class PullReport:
    reference: str
    digest: str = ""
    media_type: str = ""
    size: int = 0
    fetched: int = 0
    present: int = 0
    bytes_received: int = 0
    blobs: list[str] = field(default_factory=list)
    referrers: list[str] = field(default_factory=list)


def pull_image(client: RegistryClient, layout: Layout, ref: Reference, *, jobs: int = 4,
               progress: Progress = lambda _: None) -> PullReport:
    """Pull `ref` into `layout`; return what was stored (the caller tags it)."""
    layout.ensure()
    report = PullReport(reference=str(ref))
    data, media_type = _verified_manifest(client, ref, ref.reference, ref.digest)
    if media_type in _INDEX_TYPES:
        layout.write_blob(data, expected=digest_of(data))  # so a pinned index stays local
        child = platform_child(json.loads(data), ref)
        data, media_type = _verified_manifest(client, ref, child, child)
    digest = digest_of(data)
    manifest = json.loads(data)
    if "config" not in manifest or "layers" not in manifest:
        raise ImageError(f"{ref} is not an image manifest ({media_type or 'no media type'})",
                         hint="corral pulls OCI and Docker v2 schema 2 images")
    blobs = [manifest["config"], *manifest["layers"]]
    _fetch_blobs(client, layout, ref, blobs, jobs, report, progress)
    report.blobs = [str(b["digest"]) for b in blobs]
    layout.write_blob(data, expected=digest)
    report.digest, report.media_type, report.size = digest, media_type, len(data)
    progress(f"manifest {digest[:19]} ← {ref}")
    _pull_referrers(client, layout, ref, digest, jobs, report, progress)
    return report


def _verified_manifest(client: RegistryClient, ref: Reference, reference: str,
                       expected: str | None) -> tuple[bytes, str]:
    found = client.get_manifest(ref.repository, reference)
    if found is None:
        what = f"tag {reference!r}" if expected is None else f"manifest {reference}"
        raise NotFound(f"{what} is not in {ref.registry}/{ref.repository}",
                       hint="check the reference; `skopeo list-tags docker://REPO` lists tags")
    data, header_type = found
    digest = digest_of(data)
    if expected is not None and digest != expected:
        raise ImageError(f"manifest of {ref} does not match its digest {expected} "
                         f"(got {digest})", hint="the registry served other content; "
                         "nothing was stored")
    return data, manifest_media_type(data, header_type)


def _fetch_blobs(client: RegistryClient, layout: Layout, ref: Reference,
                 descriptors: list[dict[str, Any]], jobs: int, report: PullReport,
                 progress: Progress) -> None:
    missing = {}
    for descriptor in descriptors:
        if layout.has_blob(descriptor["digest"]):
            report.present += 1
        else:
            missing[descriptor["digest"]] = descriptor
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_fetch_blob, client, layout, ref, digest)
                   for digest in missing]
        for future in futures:
            digest, size = future.result()
            report.fetched += 1
            report.bytes_received += size
            progress(f"blob {digest[:19]} fetched ({size / 1e6:.1f} MB)")


def _fetch_blob(client: RegistryClient, layout: Layout, ref: Reference,
                digest: str) -> tuple[str, int]:
    tmp, size = client.fetch_blob(ref.repository, digest, layout.blobs)
    layout.adopt_file(tmp, digest)
    return digest, size


def _pull_referrers(client: RegistryClient, layout: Layout, ref: Reference, subject: str,
                    jobs: int, report: PullReport, progress: Progress) -> None:
    listed = client.referrers(ref.repository, subject)
    if listed is None:
        found = client.get_manifest(ref.repository, fallback_tag(subject), (INDEX_MEDIA_TYPE,))
        listed = json.loads(found[0]).get("manifests", []) if found else []
    for descriptor in listed:
        digest = str(descriptor.get("digest", ""))
        data, media_type = _verified_manifest(client, ref, digest, digest)
        manifest = json.loads(data)
        if manifest.get("subject", {}).get("digest") != subject:
            continue  # a stale fallback entry; never store what does not refer to the image
        blobs = [d for d in [manifest.get("config"), *manifest.get("layers", [])] if d]
        _fetch_blobs(client, layout, ref, blobs, jobs, report, progress)
        layout.write_blob(data, expected=digest)
        kind = manifest.get("artifactType") or manifest.get("config", {}).get("mediaType")
        entry = {"mediaType": media_type, "digest": digest, "size": len(data),
                 "artifactType": kind}
        if manifest.get("annotations"):
            entry["annotations"] = manifest["annotations"]
        layout.add_descriptor(entry)
        report.referrers.append(digest)
        progress(f"referrer {digest[:19]} ← {ref.repository}")
