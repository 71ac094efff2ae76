"""Push a local image, then its referrers, to a registry repository.

Each blob is HEADed first; a blob known to be in another repository of the same registry is
mounted; the rest are uploaded, in parallel. The manifest goes last, so a registry never
holds a manifest whose blobs are missing. Referrers without a referrers API use the OCI 1.1
fallback tag `sha256-<hex>`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from typing import Any

from corral.errors import ImageError
from corral.images.oci.layout import INDEX_MEDIA_TYPE, Layout, canonical_json, digest_of
from corral.images.oci.referrers import referrers_of
from corral.images.registry.client import RegistryClient, manifest_media_type
from corral.images.registry.locations import BlobLocations
from corral.images.registry.reference import Reference

Progress = Callable[[str], None]


@dataclass
class PushReport:
    reference: str
    digest: str
    uploaded: int = 0
    mounted: int = 0
    present: int = 0
    bytes_sent: int = 0
    referrers: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, outcome: str, size: int = 0) -> None:
        with self._lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
            self.bytes_sent += size

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not f.name.startswith("_")}


def push_image(client: RegistryClient, layout: Layout, ref: Reference, digest: str, *,
               locations: BlobLocations, jobs: int = 4,
               progress: Progress = lambda _: None) -> PushReport:
    """Push manifest `digest` from `layout` to `ref` (by its tag, else by digest)."""
    report = PushReport(reference=str(ref), digest=digest)
    data, manifest = _manifest(layout, digest)
    if manifest.get("mediaType") == INDEX_MEDIA_TYPE or "layers" not in manifest:
        raise ImageError(f"{digest[:19]} is not an image manifest; only images can be pushed")
    _push_blobs(client, layout, ref, manifest, locations, jobs, report, progress)
    client.put_manifest(ref.repository, ref.tag or digest, data,
                        manifest_media_type(data, ""))
    progress(f"manifest {digest[:19]} → {ref}")
    _push_referrers(client, layout, ref, digest, locations, jobs, report, progress)
    locations.save()
    return report


def _manifest(layout: Layout, digest: str) -> tuple[bytes, dict[str, Any]]:
    data = layout.read_blob(digest)
    if digest_of(data) != digest:
        raise ImageError(f"manifest {digest} in {layout.root} does not match its digest",
                         hint="rebuild the image")
    return data, json.loads(data)


def _push_blobs(client: RegistryClient, layout: Layout, ref: Reference,
                manifest: dict[str, Any], locations: BlobLocations, jobs: int,
                report: PushReport, progress: Progress) -> None:
    blobs = {d["digest"]: int(d["size"]) for d in [manifest["config"], *manifest["layers"]]}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(_push_blob, client, layout, ref, digest, size, locations,
                               report, progress) for digest, size in blobs.items()]
        for future in futures:
            future.result()


def _push_blob(client: RegistryClient, layout: Layout, ref: Reference, digest: str,
               size: int, locations: BlobLocations, report: PushReport,
               progress: Progress) -> None:
    repo = ref.repository
    if client.has_blob(repo, digest):
        report.count("present")
        locations.add(client.registry, digest, repo)
        return
    location = None
    for source in locations.where(client.registry, digest):
        if source == repo:
            continue
        location = client.mount(repo, digest, source)
        if location is None:
            report.count("mounted")
            progress(f"blob {digest[:19]} mounted from {source}")
            locations.add(client.registry, digest, repo)
            return
        break  # the registry opened an upload instead; use it
    path = layout.blob_path(digest)
    if not path.is_file():
        raise ImageError(f"blob {digest[:19]} is missing from {layout.root}",
                         hint="rebuild the image, or pull it again")
    client.upload(repo, path, digest, size, location)
    report.count("uploaded", size)
    locations.add(client.registry, digest, repo)
    progress(f"blob {digest[:19]} uploaded ({size / 1e6:.1f} MB)")


def _push_referrers(client: RegistryClient, layout: Layout, ref: Reference, subject: str,
                    locations: BlobLocations, jobs: int, report: PushReport,
                    progress: Progress) -> None:
    referrers = referrers_of(layout, subject)
    indexed = False
    for descriptor in referrers:
        data, manifest = _manifest(layout, descriptor["digest"])
        if "layers" in manifest:
            _push_blobs(client, layout, ref, manifest, locations, jobs, report, progress)
        headers = client.put_manifest(ref.repository, descriptor["digest"], data,
                                      descriptor["mediaType"])
        indexed = indexed or headers.get("oci-subject") == subject
        report.referrers.append(descriptor["digest"])
        progress(f"referrer {descriptor['artifactType'] or 'artifact'} "
                 f"{descriptor['digest'][:19]} → {ref.repository}")
    if referrers and not indexed:
        _update_fallback_tag(client, ref, subject, referrers)


def fallback_tag(subject: str) -> str:
    return subject.replace(":", "-")


def _update_fallback_tag(client: RegistryClient, ref: Reference, subject: str,
                         referrers: list[dict[str, Any]]) -> None:
    """OCI 1.1 referrers tag schema: an index tagged `sha256-<hex>` listing the referrers."""
    tag = fallback_tag(subject)
    found = client.get_manifest(ref.repository, tag, (INDEX_MEDIA_TYPE,))
    listed: list[dict[str, Any]] = []
    if found is not None:
        existing = json.loads(found[0])
        listed = [m for m in existing.get("manifests", []) if isinstance(m, dict)]
    known = {m.get("digest") for m in listed}
    listed += [r for r in referrers if r["digest"] not in known]
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": listed}
    client.put_manifest(ref.repository, tag, canonical_json(index), INDEX_MEDIA_TYPE)
