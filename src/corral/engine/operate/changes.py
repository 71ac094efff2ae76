"""`corral plan` in the engine: gather the spec's wanted services (building their images
dry, with the same inputs as `build` and `deploy`: the digest a deploy would run) and what
runs, then ask core.plan.

Reads the store and the driver's listing directly: no controller needed. It changes
nothing that runs and moves no tag; the only writes are the build cache and
content-addressed blobs, which the next build reuses (and `gc` removes if none does).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from corral.core.plan import Running, SpecPlan, Wanted, plan_changes
from corral.engine.delivery.request import release_config_of
from corral.engine.images.build import built_digest
from corral.engine.workspace import Workspace
from corral.errors import NotFound
from corral.spec.model import DIGEST_PATTERN

Progress = Callable[[str], None]


def wanted_services(ws: Workspace, progress: Progress | None = None) -> dict[str, Wanted]:
    """Every service of the spec, its image resolved: built once per image name."""
    digests: dict[str, str] = {}
    wanted = {}
    for name, service in sorted(ws.loaded.spec.services.items()):
        ref = service.image
        if ref not in digests:
            digests[ref] = _digest_of(ws, ref, progress)
        digest = digests[ref]
        config = release_config_of(ws, service, digest, name)
        wanted[name] = Wanted(name, digest, config, service.replicas)
    return wanted


def _digest_of(ws: Workspace, ref: str, progress: Progress | None) -> str:
    images = ws.loaded.spec.images
    if ref in images:
        return built_digest(ws, ref, images[ref], progress, dry=True)
    if re.match(DIGEST_PATTERN, ref):
        return ref
    try:
        return ws.images.resolve(ref)
    except NotFound:
        raise NotFound(f"image {ref!r} is neither in [images] nor in the local store",
                       hint=f"build or pull it first: corral pull {ref}") from None


def running_services(ws: Workspace, names: set[str], ask_driver: bool = True
                     ) -> dict[str, Running]:
    store = ws.store
    running_ids = frozenset(o.id for o in ws.driver.list() if o.running) if ask_driver \
        else None
    instances = store.list_instances(live_only=True)
    found = {}
    for name in sorted(set(store.services()) | names):
        version = store.live_release(name)
        live = store.get_release(name, version) if version is not None else None
        found[name] = Running(name, live, [i for i in instances if i.service == name],
                              running_ids)
    return found


def plan_workspace(ws: Workspace, progress: Progress | None = None,
                   ask_driver: bool = True) -> SpecPlan:
    wanted = wanted_services(ws, progress)
    return plan_changes(wanted, running_services(ws, set(wanted), ask_driver))
