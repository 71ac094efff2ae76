"""Provenance labels every image carries: where it came from, in OCI and corral label keys.

The builder adds the spec digest (of this image's section only, plus its Dockerfile) and
its own version; the engine adds REVISION and DIRTY from git (engine/images/provenance.py).
Same commit, clean tree, same section: same labels, so the digest stays reproducible.
No I/O beyond reading the Dockerfile.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from corral import __version__
from corral.images.oci.layout import canonical_json
from corral.spec.model import ImageSpec

REVISION = "org.opencontainers.image.revision"
DIRTY = "dev.corral.git.dirty"
SPEC_DIGEST = "dev.corral.spec.digest"
BUILDER = "dev.corral.builder.version"


def spec_digest(image: ImageSpec, context: Path) -> str:
    """sha256 of the image's section as data, and of its Dockerfile when it has one."""
    # build_args stay out: those an ARG consumes change the steps or config anyway, and an
    # unconsumed one must change nothing (as in Docker).
    # Keys added later stay out while unset, so older specs keep their digests.
    unset = {key for key in ("target", "default_registry") if getattr(image, key) is None}
    material: dict[str, object] = {"image": image.model_dump(
        mode="json", by_alias=True, exclude={"build_args", *unset})}
    if image.dockerfile:
        try:
            material["dockerfile"] = hashlib.sha256(
                (context / image.dockerfile).read_bytes()).hexdigest()
        except OSError:
            material["dockerfile"] = None  # the plan reports the missing file
    return "sha256:" + hashlib.sha256(canonical_json(material)).hexdigest()


def provenance_labels(image: ImageSpec, context: Path) -> dict[str, str]:
    return {SPEC_DIGEST: spec_digest(image, context), BUILDER: f"corral {__version__}"}
