"""Building images for a spec: `corral build`, the digest a deploy or a plan would run, and
the service spec a command names.

Builds run in the CLI's process (they need no controller); the controller only ever
receives a digest-pinned release config (engine/delivery/request.py makes it).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from corral.engine.images.provenance import git_info, git_labels, source_date_epoch
from corral.engine.workspace import Workspace, current_actor
from corral.errors import NotFound, SpecError
from corral.spec.model import DIGEST_PATTERN, ImageSpec, ServiceSpec

# A fully cached `corral build` must start fast (issue 3: < 0.3 s wall), so what only a
# recorded build needs (the store's SQLAlchemy) is imported where it is used.

Progress = Callable[[str], None]


def build_image(ws: Workspace, name: str, progress: Progress | None = None,
                build_args: dict[str, str] | None = None, *, target: str | None = None,
                update_bases: bool = False, insecure: bool = False) -> str:
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
    if target is not None:  # `corral build --target`: over the spec's target
        if not image.dockerfile:
            raise SpecError(f"image {name!r} has no dockerfile: --target names a Dockerfile "
                            "stage", hint="drop --target, or build a Dockerfile image")
        image = image.model_copy(update={"target": target})
    before = _tagged(ws, name)
    existing = {summary.digest for summary in ws.images.list()}
    started = time.time()
    digest = built_digest(ws, name, image, progress, update_bases=update_bases,
                          insecure=insecure)
    if digest != before:
        # The ledger is where metrics count builds and durations (engine/observe/ledger.py). A
        # rebuild that gives the image the name already had changed nothing and records
        # nothing: a no-change build writes nothing at all (issue 3).
        from corral.engine.observe.ledger import record_build

        record_build(ws.store, actor=current_actor(), at=time.time(), image=name,
                     digest=digest, seconds=time.time() - started, cached=digest in existing)
    return digest


def built_digest(ws: Workspace, name: str, image: ImageSpec, progress: Progress | None = None,
                 *, dry: bool = False, update_bases: bool = False,
                 insecure: bool = False) -> str:
    """Build `image` with the inputs every build of the spec uses (git provenance labels,
    SOURCE_DATE_EPOCH from the commit), so `build`, `deploy` and `plan` agree on its digest.
    `dry` (plan): the digest only, no tag moved (ImageStore.build)."""
    with source_date_epoch(git_info(ws.folder).commit_time):
        return ws.images.build(name, image, ws.folder, labels=git_labels(ws.folder),
                               progress=progress, dry=dry, update_bases=update_bases,
                               insecure=insecure)


def _tagged(ws: Workspace, name: str) -> str | None:
    """The digest `name` points at before a build, if any."""
    try:
        return ws.images.resolve(name)
    except NotFound:
        return None


def image_for_service(ws: Workspace, service: str, image: str | None,
                      progress: Progress | None = None) -> str:
    """The digest a service should run: `image` if given, else its spec image, built."""
    spec = service_spec(ws, service)
    ref = image or spec.image
    if ref in ws.loaded.spec.images and image is None:
        return build_image(ws, ref, progress)
    if re.match(DIGEST_PATTERN, ref):
        ws.images.config(ref)  # raises NotFound with a hint when the image is not here
        return ref
    return ws.images.resolve(ref)


def service_spec(ws: Workspace, service: str) -> ServiceSpec:
    services = ws.loaded.spec.services
    if service not in services:
        from corral.spec.locate import did_you_mean

        known = ", ".join(sorted(services)) or "none"
        raise NotFound(f"no service {service!r} in {ws.loaded.path.name} (services: {known})",
                       hint=f"{did_you_mean(service, services)} (or add a [services.NAME] "
                       "section)")
    return services[service]
