"""`corral export kubernetes`: hand a service's release to Kubernetes as manifest files.

Finds what to export (the live release, else the newest one not marked bad, else the
spec's image as built but never deployed), asks core/kubernetes.py or core/rollouts.py for
the objects and writes one YAML file per service. It talks to no Kubernetes API server and
changes nothing corral runs: every object is resolved before the first file is written.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from corral.core.kubernetes import (
    ExportedRelease,
    KubernetesExport,
    image_reference,
    release_to_export,
)
from corral.core.kubernetes import plain_objects as kubernetes_objects
from corral.core.release import service_of
from corral.core.rollouts import rollout_objects
from corral.engine.delivery.request import release_config_of
from corral.engine.images.build import service_spec
from corral.engine.images.trust import trusted
from corral.engine.workspace import Workspace, current_actor
from corral.errors import CorralError, ImageError, NotFound
from corral.ports.records import Event, ImageConfig, Release
from corral.spec.model import DIGEST_PATTERN, ServiceSpec

_REVISION_LABEL = "org.opencontainers.image.revision"  # engine/images/provenance.py


class _PlainDumper(yaml.SafeDumper):
    """YAML without anchors and aliases: every object reads on its own, as kubectl users
    expect, even where two parts of the data are one Python object."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


@dataclass(frozen=True)
class ExportRequest:
    """What `corral export kubernetes` was asked for, as parsed by the CLI."""

    services: tuple[str, ...] = ()  # empty: every service of the spec
    out_dir: Path | None = None  # None: kubernetes/ beside the spec
    rollouts: bool = False  # Argo Rollouts for blue-green and canary services
    registry: str | None = None  # "HOST[:PORT]/PREFIX" the cluster pulls images from


def export_kubernetes(ws: Workspace, request: ExportRequest) -> list[dict[str, Any]]:
    """Write DIR/SERVICE.yaml for each service; return what was written, a row each."""
    names = request.services or tuple(sorted(ws.loaded.spec.services))
    if not names:
        raise NotFound(f"{ws.loaded.path.name} has no services to export",
                       hint="add a [services.NAME] section")
    build = rollout_objects if request.rollouts else kubernetes_objects
    exports = [(release, build(release))
               for release in (exported_release(ws, name, request.registry) for name in names)]
    out_dir = (request.out_dir or ws.folder / "kubernetes").absolute()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = [_write(out_dir, release, export) for release, export in exports]
    except OSError as exc:
        raise CorralError(f"cannot write manifests to {out_dir}: {exc.strerror}",
                          hint="pick a writable folder with -o DIR") from None
    for row in rows:
        _record(ws, row)
    return rows


def _record(ws: Workspace, row: dict[str, Any]) -> None:
    """The ledger says which image and release were handed to a cluster, by whom: what
    happens there is out of corral's sight, what left is not."""
    ws.store.append_event(Event(
        at=time.time(), actor=current_actor(), action="release.exported",
        subject=row["service"], detail={"to": "kubernetes", "release": row["release"],
                                        "image": row["digest"], "file": row["file"]}))


def exported_release(ws: Workspace, name: str, registry: str | None) -> ExportedRelease:
    """The service's release as the cluster should run it, image pinned by digest."""
    spec = service_spec(ws, name)  # NotFound, with did-you-mean, for an unknown service
    release = chosen_release(ws, name)
    repository = spec.image if spec.image in ws.loaded.spec.images else name
    if release is not None:
        image = _image_config(ws, release.image_digest, f"{name} {release.label}")
        _refuse_unsigned(ws, name, release.spec, release.image_digest)
        return ExportedRelease(
            project=ws.loaded.spec.project.name, service=name, spec=release.spec,
            image=image_reference(registry, repository, release.image_digest),
            digest=release.image_digest, release=release.label,
            commit=release.git_commit, image_user=image.user)
    digest = _built_digest(ws, name, spec.image)
    image = _image_config(ws, digest, name)
    config = service_of(release_config_of(ws, spec, digest))
    _refuse_unsigned(ws, name, config, digest)
    return ExportedRelease(
        project=ws.loaded.spec.project.name, service=name, spec=config,
        image=image_reference(registry, repository, digest), digest=digest,
        commit=image.labels.get(_REVISION_LABEL), image_user=image.user)


def chosen_release(ws: Workspace, name: str) -> Release | None:
    store = ws.store
    return release_to_export(store.list_releases(name), store.live_release(name),
                             store.bad_releases(name))


def _built_digest(ws: Workspace, name: str, ref: str) -> str:
    """The digest the spec's image has now, without building it: an export pins what was
    built, it never builds."""
    if re.match(DIGEST_PATTERN, ref):
        return ref
    try:
        return ws.images.resolve(ref)
    except NotFound:
        raise NotFound(f"service {name!r} has no release and its image {ref!r} is not built: "
                       "there is no digest to export",
                       hint=f"build it first: corral build {ref} (or deploy it: corral "
                       f"deploy {name})") from None


def _refuse_unsigned(ws: Workspace, name: str, spec: ServiceSpec, digest: str) -> None:
    """A service that requires a signature is exported only with a signed image, as it is
    deployed only with one: a cluster checks no corral signature, so this is the gate."""
    if not spec.require_signature:
        return
    verdict = trusted(ws.images).verify(digest, list(spec.trusted_keys), ws.folder)
    if not verdict.ok:
        raise ImageError(f"{name}: refusing to export {digest[:19]}…: {verdict.reason()}",
                         hint=f"sign it with a trusted key (`corral sign {digest[:19]}…`) "
                         f"or check trusted_keys of [services.{name}]")


def _image_config(ws: Workspace, digest: str, what: str) -> ImageConfig:
    """The image's config (its user, provenance): it must be in the local store."""
    try:
        return ws.images.config(digest)
    except NotFound:
        raise NotFound(f"the image of {what} ({digest[:19]}…) is not in the local store",
                       hint="pull it back (corral pull HOST/REPO@" + digest + ") or build "
                       "it again: corral build") from None


def _write(out_dir: Path, release: ExportedRelease, export: KubernetesExport
           ) -> dict[str, Any]:
    """One file per service, replaced atomically: a reader never sees half of it."""
    path = out_dir / f"{export.service}.yaml"
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(yaml.dump_all(export.objects, Dumper=_PlainDumper, sort_keys=False,
                                  width=100))
    os.replace(temp, path)
    return {"service": export.service, "release": release.release, "image": release.image,
            "digest": release.digest, "commit": release.commit, "file": str(path),
            "objects": [f"{o['kind']}/{o['metadata']['name']}" for o in export.objects],
            "notes": list(export.notes)}
