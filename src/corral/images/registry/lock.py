"""`corral.lock`: registry bases pinned by digest, beside the spec.

JSON, one entry per `oci:HOST/REPO:TAG` base: {"bases": {"oci:…:TAG": "sha256:…"}}. A tag is
resolved once and pinned; later builds use the digest and need no registry when the image is
local. Delete an entry (or the file) to re-pin on the next build.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from corral.errors import ImageError

LOCK_NAME = "corral.lock"


def read_pins(folder: Path) -> dict[str, str]:
    path = folder / LOCK_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path} is not valid JSON: {exc}",
                         hint=f"fix it, or delete {LOCK_NAME} to re-pin every base") from None
    bases = data.get("bases", {}) if isinstance(data, dict) else None
    if not isinstance(bases, dict):
        raise ImageError(f"{path} has no \"bases\" table",
                         hint=f"delete {LOCK_NAME} to re-pin every base")
    return {str(k): str(v) for k, v in bases.items()}


def pin(folder: Path, base: str, digest: str) -> None:
    """Record `base` → `digest`, keeping every other pin; written atomically."""
    pins = {**read_pins(folder), base: digest}
    document = {"version": 1,
                "comment": "written by corral build; delete a line to re-pin that base",
                "bases": dict(sorted(pins.items()))}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".corral.lock.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(document, indent=2) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, folder / LOCK_NAME)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
