"""The engine side of images: signing keys, signature checks before a deploy, the image list
with the releases using each image, and gc that keeps what releases need.

It decides which digests are retained (from the store) and which keys are trusted (from
the spec); the image store does the reading and deleting.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from corral.core.rollback import reachable_releases
from corral.engine.adapters import generate_key, inline_public_key, sweep_quarantine
from corral.engine.workspace import Workspace, current_actor
from corral.errors import DeployError, ImageError
from corral.ports.image_trust import GcReport, TrustedImageStore, Verdict
from corral.ports.images import ImageStore
from corral.ports.records import Event
from corral.ports.store import Store
from corral.spec.model import ServiceSpec

KEY_NAME = "default.key"


def default_key_path() -> Path:
    """$CORRAL_SIGNING_KEY, else $XDG_CONFIG_HOME/corral/keys/default.key (~/.config/…)."""
    if os.environ.get("CORRAL_SIGNING_KEY"):
        return Path(os.environ["CORRAL_SIGNING_KEY"])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "corral" / "keys" / KEY_NAME


def trusted(images: ImageStore) -> TrustedImageStore:
    if not isinstance(images, TrustedImageStore):
        raise ImageError("this image store cannot sign, verify or collect images",
                         hint="use the local OCI layout store (the default)")
    return images


def keygen(out: Path | None) -> tuple[Path, Path, str, str]:
    """Make a key pair; return (private path, public path, key id, inline public key).
    Key files are no image store's business: engine.adapters names the signing functions."""
    private = out or default_key_path()
    public, key_id = generate_key(private)
    return private, public, key_id, inline_public_key(str(public), Path.cwd())


def sign(ws: Workspace, ref: str, key: Path | None) -> tuple[str, dict[str, Any]]:
    images = trusted(ws.images)
    digest = images.resolve(ref)
    descriptor = images.sign(digest, key or default_key_path(), time.time())
    ws.store.append_event(Event(at=time.time(), actor=current_actor(), action="image.signed",
                                subject=digest, detail={
                                    "signature": descriptor["digest"],
                                    "key": descriptor.get("annotations", {}).get(
                                        "dev.corral.signature.key")}))
    return digest, descriptor


def keys_for(ws: Workspace, digest_or_name: str) -> list[str]:
    """The keys `corral verify` trusts without --key: those of the services running this
    image name, else of every service, plus the default public key if it exists."""
    services = ws.loaded.spec.services.values()
    mine = [s for s in services if s.image == digest_or_name] or list(services)
    keys = sorted({key for s in mine for key in s.trusted_keys})
    default = default_key_path().with_suffix(".pub")
    return keys + ([str(default)] if default.is_file() else [])


def verify(ws: Workspace, ref: str, keys: list[str]) -> Verdict:
    images = trusted(ws.images)
    chosen = keys or keys_for(ws, ref)
    if not chosen:
        raise ImageError("no key to verify with",
                         hint="pass --key PUB, list trusted_keys in the spec, or run "
                         "`corral keygen`")
    return images.verify(images.resolve(ref), chosen, ws.folder)


def pin_trusted_keys(config: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The release config with trusted key files replaced by their inline form, so the
    release pins the key material itself and the controller needs no spec folder."""
    if not config.get("trusted_keys"):
        return config
    keys = [inline_public_key(k, folder) for k in config["trusted_keys"]]
    return {**config, "trusted_keys": sorted(set(keys))}


def refuse_unsigned(images: ImageStore, store: Store, name: str, service: ServiceSpec,
                    digest: str, actor: str, at: float, folder: Path) -> None:
    """Raise DeployError (and write a `deploy.refused` event) when the service requires a
    signature that the image does not have. Called before a deploy reaches the controller
    and again by the controller's Deployer."""
    if not service.require_signature:
        return
    verdict = trusted(images).verify(digest, list(service.trusted_keys), folder)
    if verdict.ok:
        return
    store.append_event(Event(at=at, actor=actor, action="deploy.refused", subject=name,
                             detail={"image": digest, "reason": verdict.reason(),
                                     "trusted_keys": len(service.trusted_keys)}))
    raise DeployError(f"{name}: refusing to deploy {digest[:19]}: {verdict.reason()}",
                      hint=f"sign it with a trusted key (`corral sign {digest[:19]}…`) or "
                      f"check trusted_keys of [services.{name}]")


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
    keep = retained(ws.store, policy.keep_releases if keep_last is None else keep_last,
                    policy.keep_for if keep_for is None else keep_for)
    report = with_quarantine(trusted(ws.images).gc(set(keep), dry_run=dry_run),
                             ws.state_dir / "cache", dry_run)
    if not dry_run and (report.blobs or report.unpacked or report.quarantined):
        ws.store.append_event(Event(at=time.time(), actor=current_actor(), action="image.gc",
                                    subject=str(ws.state_dir / "images"), detail={
                                        "blobs": len(report.blobs), "freed": report.freed,
                                        "images": list(report.images),
                                        "quarantined": sorted(report.quarantined)}))
    return report, keep


def with_quarantine(report: GcReport, cache: Path, dry_run: bool) -> GcReport:
    """`report` plus the quarantined (drifted) roots no process has mounted any more."""
    sweep = sweep_quarantine(cache, dry_run=dry_run)
    return replace(report, freed=report.freed + sweep.freed,
                   quarantined={str(p): n for p, n in sweep.deleted.items()},
                   still_mounted=tuple(str(p) for p in sweep.mounted))


@dataclass
class _ScratchWorkspace(Workspace):
    """A workspace whose state lives in a folder of its own (for a rebuild from nothing)."""

    scratch_state: Path = Path()

    @property
    def state_dir(self) -> Path:
        return self.scratch_state


def check_reproducible(ws: Workspace, name: str, digest: str,
                       say: Callable[[str], None] | None = None) -> str | None:
    """Rebuild image `name` from nothing in a copy of the spec's folder (empty layout and
    step cache; the machine-wide base cache stays) and compare it with `digest`. Returns
    None when the digests are equal, else the first difference."""
    from corral.engine.build import git_info, git_labels, source_date_epoch

    say = say or (lambda _: None)
    with tempfile.TemporaryDirectory(prefix="corral-repro-") as tmp:
        copy = Path(tmp) / "context"
        shutil.copytree(ws.folder, copy, symlinks=True,
                        ignore=shutil.ignore_patterns(".corral", ".git"))
        other = _ScratchWorkspace(Workspace.open(copy / ws.loaded.path.name).loaded,
                                  scratch_state=Path(tmp) / "state")
        say(f"rebuilding {name} from nothing in {copy}")
        # The copy is outside git: give it the original's commit time and labels.
        with source_date_epoch(git_info(ws.folder).commit_time):
            again = other.images.build(name, other.loaded.spec.images[name], copy,
                                       labels=git_labels(ws.folder), progress=say)
        return trusted(ws.images).difference(digest, other.images, again)
