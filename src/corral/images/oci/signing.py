"""ed25519 signatures of images, stored as OCI 1.1 referrers of the image manifest.

A signature artifact holds {payload, signature, key}: the payload names the manifest digest
(so a signature cannot be moved to another image), the key is the signer's key id (sha256 of
the raw public key). Keys: private PEM (PKCS#8, mode 0600), public PEM or `ed25519:BASE64`.
Time is passed in. It signs and checks; which keys to trust is the caller's business.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from corral.errors import ImageError, NotFound
from corral.images.oci.layout import MANIFEST_MEDIA_TYPE, Layout, canonical_json
from corral.images.oci.referrers import SIGNATURE_TYPE, add_referrer, artifact_blob, referrers_of
from corral.ports.image_trust import Verdict

PAYLOAD_TYPE = "dev.corral.signature.v1"
INLINE_PREFIX = "ed25519:"


def generate_key(private_path: Path) -> tuple[Path, str]:
    """Write a new private key (0600) and its `.pub` beside it; return (pub path, key id).
    Refuses to overwrite an existing key."""
    public_path = private_path.with_suffix(".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise ImageError(f"{path} already exists; no key was written",
                             hint="pick another --out, or delete the old key on purpose")
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public = key.public_key()
    public_path.write_bytes(public.public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    return public_path, key_id(public)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise NotFound(f"no signing key at {path}",
                       hint="create one with `corral keygen`, or pass --key PATH") from None
    except (ValueError, TypeError) as exc:
        raise ImageError(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImageError(f"{path} is not an ed25519 key", hint="make one with `corral keygen`")
    if path.stat().st_mode & 0o077:
        raise ImageError(f"{path} can be read by other users (mode "
                         f"{path.stat().st_mode & 0o777:o})", hint=f"chmod 600 {path}")
    return key


def load_public(source: str, folder: Path) -> Ed25519PublicKey:
    """A public key from `ed25519:BASE64` (raw 32 bytes) or a PEM file (relative to folder)."""
    if source.startswith(INLINE_PREFIX):
        try:
            return Ed25519PublicKey.from_public_bytes(
                base64.b64decode(source[len(INLINE_PREFIX):], validate=True))
        except (ValueError, binascii.Error):
            raise ImageError(f"trusted key {source[:24]}… is not ed25519:BASE64 of 32 bytes",
                             hint="print one with `corral keygen` (it shows the inline form)"
                             ) from None
    path = folder / source
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise NotFound(f"trusted key file {path} does not exist",
                       hint="paths in trusted_keys are relative to the spec's folder") from None
    except ValueError as exc:
        raise ImageError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ImageError(f"{path} is not an ed25519 public key")
    return key


def inline_form(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return INLINE_PREFIX + base64.b64encode(raw).decode()


def sign_image(layout: Layout, subject: dict[str, Any], key: Ed25519PrivateKey,
               now: float) -> dict[str, Any]:
    """Sign the manifest `subject` (a descriptor); store and return the signature artifact."""
    signer = key_id(key.public_key())
    payload = canonical_json({
        "type": PAYLOAD_TYPE, "key": signer,
        "image": {"digest": subject["digest"], "mediaType": subject.get("mediaType",
                                                                          MANIFEST_MEDIA_TYPE)},
        "signed_at": datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    blob = canonical_json({"payload": base64.b64encode(payload).decode(),
                           "signature": base64.b64encode(key.sign(payload)).decode(),
                           "key": signer})
    return add_referrer(layout, subject, SIGNATURE_TYPE, blob,
                        {"dev.corral.signature.key": signer})


def verify_image(layout: Layout, digest: str, trusted: list[Ed25519PublicKey]) -> Verdict:
    keys = {key_id(k): k for k in trusted}
    valid, problems = [], []
    found = referrers_of(layout, digest, SIGNATURE_TYPE)
    for descriptor in found:
        try:
            signer = _check(artifact_blob(layout, descriptor), digest, keys)
        except (ImageError, NotFound, ValueError, KeyError, binascii.Error) as exc:
            problems.append(str(exc) if not isinstance(exc, ImageError) else exc.message)
            continue
        valid.append(signer)
    return Verdict(digest, tuple(sorted(set(valid))), len(found), tuple(problems))


def _check(blob: bytes, digest: str, keys: dict[str, Ed25519PublicKey]) -> str:
    envelope = json.loads(blob)
    payload = base64.b64decode(envelope["payload"], validate=True)
    claims = json.loads(payload)
    signer = str(claims.get("key"))
    if claims.get("type") != PAYLOAD_TYPE or claims.get("image", {}).get("digest") != digest:
        raise ImageError(f"a signature by {signer[:19]} is for another image")
    if signer not in keys:
        raise ImageError(f"a signature by {signer[:19]}, which is not a trusted key")
    try:
        keys[signer].verify(base64.b64decode(envelope["signature"], validate=True), payload)
    except InvalidSignature:
        raise ImageError(f"the signature by {signer[:19]} does not verify (tampered)") from None
    return signer
