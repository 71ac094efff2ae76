"""`base = "oci:HOST/REPO:TAG"` or `"oci:HOST/REPO@sha256:…"`: a registry image as a base.

Turns the base into a manifest digest present in the build's layout: a pinned digest from
corral.lock (or the reference's own digest) is used as is when it is local, else pulled
(verified); a bare tag is resolved once and pinned. Building on the result is build/bases.py's job.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from corral.images.oci.layout import Layout
from corral.images.registry.lock import LOCK_NAME, pin, read_pins
from corral.images.registry.platforms import platform_child
from corral.images.registry.reference import Reference, parse_reference

INSECURE_ENV = "CORRAL_INSECURE_REGISTRIES"


def oci_base_manifest(base: str, context: Path, layout: Layout,
                      progress: Callable[[str], None], *, update: bool = False,
                      insecure: bool = False) -> str:
    """The manifest digest of an `oci:` base, pulled into `layout` when missing. `update`
    (`corral build --update-bases`): resolve the tag again and move its pin."""
    ref = parse_reference(base[len("oci:"):])
    before = read_pins(context).get(base)
    pinned = ref.digest or (None if update else before)
    if pinned and layout.has_blob(pinned):
        manifest = layout.read_json(pinned)
        local = platform_child(manifest, ref) if "manifests" in manifest else pinned
        if layout.has_blob(local):
            progress(f"base {base}: {local[:19]} (local)")
            return local
    # Only now the HTTP client (http.client, ssl, auth): a build on a base pulled and pinned
    # before, the usual case, never loads it (a cached build is mostly start-up time).
    from corral.images.registry.client import RegistryClient
    from corral.images.registry.pull import pull_image

    wanted = ref.with_digest(pinned) if pinned else ref
    with RegistryClient(ref, insecure=insecure or _insecure(ref)) as client:
        report = pull_image(client, layout, wanted, progress=progress)
    if pinned and report.digest != pinned:
        # An index was pinned; its platform manifest is what the build uses.
        progress(f"base {base}: index {pinned[:19]} → manifest {report.digest[:19]}")
    if not ref.digest and not pinned and report.digest != before:
        pin(context, base, report.digest)
        moved = f" (was {before[:19]})" if before else ""
        progress(f"base {base}: pinned {report.digest[:19]} in {LOCK_NAME}{moved}")
    return report.digest


def _insecure(ref: Reference) -> bool:
    allowed = {h.strip() for h in os.environ.get(INSECURE_ENV, "").split(",") if h.strip()}
    return ref.registry in allowed or ref.host in allowed
