"""Building images for a spec and turning a service into a deploy request.

Builds run in the CLI's process (they need no controller); the controller only ever
receives a digest-pinned release config.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.engine.workspace import Workspace, current_actor
from corral.errors import NotFound, SpecError
from corral.spec.model import DIGEST_PATTERN, ImageSpec, ServiceSpec

if TYPE_CHECKING:
    from corral.engine.deploy import DeployRequest

# A fully cached `corral build` must start fast (issue 3: < 0.3 s wall), so what only a
# deploy or a recorded build needs (the store's SQLAlchemy, the deploy engine) is imported
# where it is used.

Progress = Callable[[str], None]


@dataclass(frozen=True)
class GitInfo:
    commit: str | None
    commit_time: float | None
    dirty: bool


def git_info(folder: Path) -> GitInfo:
    """The commit the spec's folder is at, if it is in a git work tree (asked once per
    folder per process: a build asks for labels and for SOURCE_DATE_EPOCH)."""
    return _git_info(folder.resolve())


@lru_cache(maxsize=8)
def _git_info(folder: Path) -> GitInfo:
    done = _git(folder, "log", "-1", "--format=%H %ct")
    if not done:
        return GitInfo(None, None, False)
    commit, _, when = done.partition(" ")
    dirty = bool(_git(folder, "status", "--porcelain", "--untracked-files=no"))
    return GitInfo(commit, float(when) if when else None, dirty)


def _git(folder: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_labels(folder: Path) -> dict[str, str]:
    """Provenance labels from git (the image store adds spec digest and builder version):
    the same commit in a clean tree gives the same labels, so digests stay reproducible."""
    git = git_info(folder)
    if git.commit is None:
        return {}
    return {"org.opencontainers.image.revision": git.commit,
            "dev.corral.git.dirty": "true" if git.dirty else "false"}


@contextmanager
def source_date_epoch(commit_time: float | None) -> Iterator[None]:
    """SOURCE_DATE_EPOCH for a build: the caller's if set, else the git commit time (the
    reproducible-builds convention), else unset (the builder then uses 0)."""
    if "SOURCE_DATE_EPOCH" in os.environ or commit_time is None:
        yield
        return
    os.environ["SOURCE_DATE_EPOCH"] = str(int(commit_time))
    try:
        yield
    finally:
        os.environ.pop("SOURCE_DATE_EPOCH", None)


def build_image(ws: Workspace, name: str, progress: Progress | None = None,
                build_args: dict[str, str] | None = None) -> str:
    images = ws.loaded.spec.images
    if name not in images:
        known = ", ".join(sorted(images)) or "none"
        raise NotFound(f"no image {name!r} in {ws.loaded.path.name} (images: {known})",
                       hint="add an [images.NAME] section or pick one of those")
    image = images[name]
    if build_args:  # `corral build --build-arg`: over the spec's build_args
        if not image.dockerfile:
            raise SpecError(f"image {name!r} has no dockerfile: --build-arg sets Dockerfile "
                            "ARGs", hint="drop --build-arg, or build a Dockerfile image")
        image = image.model_copy(update={"build_args": {**image.build_args, **build_args}})
    before = _tagged(ws, name)
    existing = {summary.digest for summary in ws.images.list()}
    started = time.time()
    digest = built_digest(ws, name, image, progress)
    if digest != before:
        # The ledger is where metrics count builds and durations (engine/ledger.py). A
        # rebuild that gives the image the name already had changed nothing and records
        # nothing: a no-change build writes nothing at all (issue 3).
        from corral.engine.ledger import record_build

        record_build(ws.store, actor=current_actor(), at=time.time(), image=name,
                     digest=digest, seconds=time.time() - started, cached=digest in existing)
    return digest


def built_digest(ws: Workspace, name: str, image: ImageSpec, progress: Progress | None = None,
                 *, dry: bool = False) -> str:
    """Build `image` with the inputs every build of the spec uses (git provenance labels,
    SOURCE_DATE_EPOCH from the commit), so `build`, `deploy` and `plan` agree on its digest.
    `dry` (plan): the digest only, no tag moved (ImageStore.build)."""
    with source_date_epoch(git_info(ws.folder).commit_time):
        return ws.images.build(name, image, ws.folder, labels=git_labels(ws.folder),
                               progress=progress, dry=dry)


def _tagged(ws: Workspace, name: str) -> str | None:
    """The digest `name` points at before a build, if any."""
    try:
        return ws.images.resolve(name)
    except NotFound:
        return None


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
    from corral.engine.deploy import DeployRequest
    from corral.engine.images import refuse_unsigned

    digest = image_for_service(ws, service, image, progress)
    git = git_info(ws.folder)
    spec = _service(ws, service)
    # images.signing: refuse an unsigned image here, before the controller sees it.
    refuse_unsigned(ws.images, ws.store, service, spec, digest, current_actor(), time.time(),
                    ws.folder)
    return DeployRequest(service=service, image_digest=digest,
                         config=release_config_of(ws, spec, digest), actor=current_actor(),
                         git_commit=git.commit, git_commit_time=git.commit_time)


def release_config_of(ws: Workspace, service: ServiceSpec, digest: str) -> dict[str, Any]:
    """The release config of `service` running `digest`, as both plan and deploy make it:
    with no `health` in the spec, the image's healthcheck is the readiness check; trusted
    key files are pinned by their content."""
    from corral.core.image_health import with_image_health
    from corral.core.release import release_config
    from corral.engine.images import pin_trusted_keys

    with contextlib.suppress(NotFound):  # not here (yet): a deploy says so when it resolves
        service = with_image_health(service, ws.images.config(digest))
    return pin_trusted_keys(release_config(service, digest), ws.folder)


def _service(ws: Workspace, service: str) -> ServiceSpec:
    services = ws.loaded.spec.services
    if service not in services:
        from corral.spec.locate import did_you_mean

        known = ", ".join(sorted(services)) or "none"
        raise NotFound(f"no service {service!r} in {ws.loaded.path.name} (services: {known})",
                       hint=f"{did_you_mean(service, services)} (or add a [services.NAME] "
                       "section)")
    return services[service]
