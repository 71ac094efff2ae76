"""The project's images as `corral images` lists them (with the releases using each) and
`corral gc` collects them (keeping what a rollback or an instance still needs).

It decides which digests are retained (from the store); the image store does the reading
and deleting, and engine/adapters.py sweeps quarantined roots.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from corral.core.rollback import reachable_releases
from corral.engine.adapters import sweep_quarantine
from corral.engine.images.trust import trusted
from corral.engine.workspace import Workspace, current_actor, other_environment, store_if_any
from corral.ports.image_trust import GcReport, TrustedImageStore
from corral.ports.records import Event
from corral.ports.store import Store


@dataclass(frozen=True)
class ImageRow:
    digest: str
    names: tuple[str, ...]
    size: int
    created: float
    releases: tuple[str, ...]  # "web v3 (live)"
    signed: bool


def list_images(ws: Workspace) -> list[ImageRow]:
    users: dict[str, list[str]] = {}
    for service in ws.store.services():
        live = ws.store.live_release(service)
        for release in ws.store.list_releases(service):
            mark = " (live)" if release.version == live else ""
            users.setdefault(release.image_digest, []).append(
                f"{service} {release.label}{mark}")
    images = ws.images
    rows = []
    for image in images.list():
        signed = isinstance(images, TrustedImageStore) and bool(
            images.referrers(image.digest, "application/vnd.dev.corral.signature.v1+json"))
        rows.append(ImageRow(image.digest, image.names, image.size, image.created,
                             tuple(users.get(image.digest, ())), signed))
    return rows


def retained(store: Store, keep_last: int, keep_for: float = 0.0,
             now: float | None = None) -> dict[str, str]:
    """Digests gc must keep, with why: every release a rollback can still reach (the live
    one, the last `keep_last` of each service, every one live or made in the last
    `keep_for` seconds: core.rollback.reachable_releases) and the release of every
    instance not yet gone."""
    at = time.time() if now is None else now
    keep: dict[str, str] = {}
    for service in store.services():
        releases = store.list_releases(service)
        why = reachable_releases(releases, store.list_deployments(service),
                                 store.live_release(service), keep_last, keep_for, at)
        for release in releases:
            if release.version in why:
                reason = f"{service} {release.label} ({why[release.version]})"
                # "live" wins over any other reason for an image several releases share.
                if why[release.version] == "live" or release.image_digest not in keep:
                    keep[release.image_digest] = reason
    for instance in store.list_instances(live_only=True):
        keep.setdefault(instance.image_digest, f"instance {instance.id}")
    return keep


def gc(ws: Workspace, *, dry_run: bool, keep_last: int | None = None,
       keep_for: float | None = None,
       say: Callable[[str], None] | None = None) -> tuple[GcReport, dict[str, str]]:
    """Collect what no tag, reachable release or instance needs. `keep_last` and
    `keep_for` default to the spec's [gc] keep_releases and keep_for."""
    policy = ws.loaded.spec.gc
    keep: dict[str, str] = {}
    for store in _every_environments_store(ws):  # images are shared by environments
        keep.update(retained(store, policy.keep_releases if keep_last is None else keep_last,
                             policy.keep_for if keep_for is None else keep_for))
    report = with_quarantine(trusted(ws.images).gc(set(keep), dry_run=dry_run),
                             ws.image_dir / "cache", dry_run)
    if not dry_run and (report.blobs or report.unpacked or report.quarantined):
        ws.store.append_event(Event(at=time.time(), actor=current_actor(), action="image.gc",
                                    subject=str(ws.image_dir / "images"), detail={
                                        "blobs": len(report.blobs), "freed": report.freed,
                                        "images": list(report.images),
                                        "quarantined": sorted(report.quarantined)}))
    return report, keep


def _every_environments_store(ws: Workspace) -> list[Store]:
    """The stores whose releases reach the shared images: the workspace's own, else (a
    spec with environments) each environment's that was ever used."""
    if ws.env is None:
        return [ws.store]
    stores = (store_if_any(other_environment(ws, env))
              for env in sorted(ws.loaded.spec.environments))
    return [store for store in stores if store is not None]


def with_quarantine(report: GcReport, cache: Path, dry_run: bool) -> GcReport:
    """`report` plus the quarantined (drifted) roots no process has mounted any more."""
    sweep = sweep_quarantine(cache, dry_run=dry_run)
    return replace(report, freed=report.freed + sweep.freed,
                   quarantined={str(p): n for p, n in sweep.deleted.items()},
                   still_mounted=tuple(str(p) for p in sweep.mounted))
