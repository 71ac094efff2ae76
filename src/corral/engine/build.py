"""Building images for a spec and turning a service into a deploy request.

Builds run in the CLI's process (they need no controller); the controller only ever
receives a digest-pinned release config.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from corral.core.release import release_config
from corral.engine.deploy import DeployRequest
from corral.engine.workspace import Workspace, current_actor
from corral.errors import NotFound
from corral.spec.model import DIGEST_PATTERN, ServiceSpec

Progress = Callable[[str], None]


@dataclass(frozen=True)
class GitInfo:
    commit: str | None
    commit_time: float | None
    dirty: bool


def git_info(folder: Path) -> GitInfo:
    """The commit the spec's folder is at, if it is in a git work tree."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                  text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return GitInfo(None, None, False)
    when = git("log", "-1", "--format=%ct")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    return GitInfo(commit, float(when) if when else None, dirty)


def build_image(ws: Workspace, name: str, progress: Progress | None = None) -> str:
    images = ws.loaded.spec.images
    if name not in images:
        known = ", ".join(sorted(images)) or "none"
        raise NotFound(f"no image {name!r} in {ws.loaded.path.name} (images: {known})",
                       hint="add an [images.NAME] section or pick one of those")
    return ws.images.build(name, images[name], ws.folder, progress=progress)


def image_for_service(ws: Workspace, service: str, image: str | None,
                      progress: Progress | None = None) -> str:
    """The digest a service should run: `image` if given, else its spec image, built."""
    spec = _service(ws, service)
    ref = image or spec.image
    if ref in ws.loaded.spec.images and image is None:
        return build_image(ws, ref, progress)
    if re.match(DIGEST_PATTERN, ref):
        ws.images.config(ref)  # raises NotFound with a hint when the image is not here
        return ref
    return ws.images.resolve(ref)


def deploy_request(ws: Workspace, service: str, image: str | None = None,
                   progress: Progress | None = None) -> DeployRequest:
    digest = image_for_service(ws, service, image, progress)
    git = git_info(ws.folder)
    return DeployRequest(service=service, image_digest=digest,
                         config=release_config(_service(ws, service), digest),
                         actor=current_actor(), git_commit=git.commit,
                         git_commit_time=git.commit_time)


def _service(ws: Workspace, service: str) -> ServiceSpec:
    services = ws.loaded.spec.services
    if service not in services:
        known = ", ".join(sorted(services)) or "none"
        raise NotFound(f"no service {service!r} in {ws.loaded.path.name} (services: {known})",
                       hint="check the name, or add a [services.NAME] section")
    return services[service]
