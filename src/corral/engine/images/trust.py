"""Which images are trusted: signing keys, `corral sign` and `corral verify`, the keys a
release pins, and the refusal of an unsigned image a service requires signed.

It decides which keys are trusted (from the spec and the release); the image store checks
signatures and keeps them; key files are engine/adapters.py's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from corral.engine.adapters import generate_key, inline_public_key
from corral.engine.workspace import Workspace, current_actor
from corral.errors import DeployError, ImageError
from corral.ports.image_trust import TrustedImageStore, Verdict
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
