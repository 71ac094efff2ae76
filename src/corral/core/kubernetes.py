"""Kubernetes manifests of one exported release: Deployment, Service, ConfigMap and the
PersistentVolumeClaims of its volumes, as plain dicts ready to be written as YAML.

Pure: the engine hands in an `ExportedRelease` (the release's service spec, its image
reference pinned by digest, the image's user) and writes what comes back. corral renders
manifests only; it never talks to a Kubernetes API server. Argo Rollouts objects for
blue-green and canary are in core/rollouts.py, which builds on the pod template made here.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral.ports.records import Release
from corral.spec.model import HealthSpec, SecretRef, ServiceSpec

Manifest = dict[str, Any]

NOBODY = 65534  # the uid/gid the process driver runs an image as when it names no other
PORT_NAME = "http"
VOLUME_SIZE = "1Gi"  # the spec says nothing about size: a default the user edits
TMP_VOLUME = "tmp"
UNRELEASED = "unreleased"
_NAME_LIMIT = 63  # a Service name is a DNS-1035 label


@dataclass(frozen=True)
class ExportedRelease:
    """What one service's manifests are made of. `release` is "v3", or None for an image
    built but never deployed (no release exists yet); `commit` is the git commit the image
    was built from, when known."""

    project: str
    service: str
    spec: ServiceSpec
    image: str  # "REGISTRY/REPO@sha256:…" (or "REPO@sha256:…" without a registry)
    digest: str
    release: str | None = None
    commit: str | None = None
    image_user: str | None = None  # the image config's "uid[:gid]" or user name

    @property
    def label(self) -> str:
        """What pods are told and labelled with: "v3", or "unreleased"."""
        return self.release or UNRELEASED


@dataclass(frozen=True)
class KubernetesExport:
    """The objects of one service, in the order `kubectl apply -f` should create them, and
    plain-words notes on what the export decided for the user to check."""

    service: str
    objects: tuple[Manifest, ...]
    notes: tuple[str, ...] = ()


def release_to_export(releases: Sequence[Release], live: int | None,
                      bad: Mapping[int, str]) -> Release | None:
    """The live release; else the newest one not marked bad (never made live, or
    replaced); None when there is none.

    >>> def r(version):
    ...     return Release("web", version, f"sha256:{version}", "sha256:c", {}, 0.0)
    >>> history = [r(1), r(2), r(3)]
    >>> [release_to_export(history, live, bad).version
    ...  for live, bad in ((2, {3: "rolled back"}), (None, {}), (None, {3: "rolled back"}))]
    [2, 3, 2]
    >>> release_to_export(history, None, {1: "x", 2: "x", 3: "x"}) is None
    True
    """
    by_version = {release.version: release for release in releases}
    if live is not None and live in by_version:
        return by_version[live]
    usable = [version for version in by_version if version not in bad]
    return by_version[max(usable)] if usable else None


def image_reference(registry: str | None, repository: str, digest: str) -> str:
    """The image as a cluster pulls it, by digest only (a tag could move).

    >>> image_reference("registry.local:5000/team", "web", "sha256:ab")
    'registry.local:5000/team/web@sha256:ab'
    >>> image_reference(None, "web", "sha256:ab")
    'web@sha256:ab'
    """
    prefix = f"{registry.rstrip('/')}/" if registry else ""
    return f"{prefix}{repository}@{digest}"


def selector_labels(release: ExportedRelease) -> dict[str, str]:
    """Labels that find a service's pods across releases (a Deployment's selector cannot
    change, so nothing release-specific is in it)."""
    return {"app.kubernetes.io/name": release.service,
            "app.kubernetes.io/part-of": release.project}


def release_labels(release: ExportedRelease) -> dict[str, str]:
    """Every object's labels: the selector's, plus what was exported. Label values hold at
    most 63 characters, so the digest is cut to 12 hex digits, as `corral images` shows it;
    the whole digest is in the `corral.dev/image-digest` annotation and in the image.

    >>> from corral.spec.model import ServiceSpec
    >>> r = ExportedRelease("shop", "web", ServiceSpec(image="web"), "web@sha256:" + "a" * 64,
    ...                     "sha256:" + "a" * 64, release="v3", commit="c0ffee")
    >>> labels = release_labels(r)
    >>> labels["corral.dev/release"], labels["corral.dev/digest"], labels["corral.dev/commit"]
    ('v3', 'aaaaaaaaaaaa', 'c0ffee')
    """
    labels = {**selector_labels(release), "app.kubernetes.io/managed-by": "corral",
              "corral.dev/release": release.label,
              "corral.dev/digest": release.digest.removeprefix("sha256:")[:12]}
    if release.release:
        labels["app.kubernetes.io/version"] = release.release
    if release.commit:
        labels["corral.dev/commit"] = release.commit
    return labels


def metadata(release: ExportedRelease, name: str) -> Manifest:
    return {"name": name, "labels": release_labels(release),
            "annotations": {"corral.dev/image-digest": release.digest}}


def child_name(service: str, suffix: str) -> str:
    """`SERVICE-SUFFIX`, the service part shortened so the whole fits a DNS-1035 label.

    >>> child_name("web", "preview")
    'web-preview'
    >>> len(child_name("a" * 63, "preview"))
    63
    """
    return f"{service[:_NAME_LIMIT - len(suffix) - 1]}-{suffix}"


def whole_seconds(seconds: float, at_least: int = 1) -> int:
    """Kubernetes counts probe and grace times in whole seconds: round up, never below
    `at_least` (a 300 ms interval becomes 1 s, the shortest Kubernetes allows).

    >>> whole_seconds(0.3), whole_seconds(2.0), whole_seconds(0.0, at_least=0)
    (1, 2, 0)
    """
    return max(at_least, math.ceil(seconds))


def probe(health: HealthSpec, *, readiness: bool) -> Manifest:
    """A probe doing what corral's check does. Liveness probes must have successThreshold
    1 (Kubernetes refuses more); readiness keeps `healthy_after`."""
    if health.kind == "http":
        action: Manifest = {"httpGet": {"path": health.path, "port": PORT_NAME}}
    elif health.kind == "tcp":
        action = {"tcpSocket": {"port": PORT_NAME}}
    else:
        action = {"exec": {"command": list(health.command)}}
    return {**action, "initialDelaySeconds": whole_seconds(health.start_grace, at_least=0),
            "periodSeconds": whole_seconds(health.interval),
            "timeoutSeconds": whole_seconds(health.timeout),
            "successThreshold": health.healthy_after if readiness else 1,
            "failureThreshold": health.unhealthy_after}


def run_as(image_user: str | None) -> tuple[int, int]:
    """The uid and gid pods run as: the image's own numeric non-root user, else nobody,
    as the process driver does (runAsNonRoot needs a number it can check).

    >>> run_as("1000:1000"), run_as("1000"), run_as("0"), run_as("app"), run_as(None)
    ((1000, 1000), (1000, 1000), (65534, 65534), (65534, 65534), (65534, 65534))
    """
    uid, _, gid = (image_user or "").partition(":")
    if not uid.isdigit() or int(uid) == 0:
        return NOBODY, NOBODY
    return int(uid), int(gid) if gid.isdigit() and int(gid) != 0 else int(uid)


def config_map_name(release: ExportedRelease, data: dict[str, str]) -> str:
    """Named after its content: a changed config is a new, immutable ConfigMap and so a new
    pod template, never an edit under running pods."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return child_name(release.service, "config-" + hashlib.sha256(canonical.encode())
                      .hexdigest()[:10])


def config_data(release: ExportedRelease) -> dict[str, str]:
    """The service's plain environment, plus PORT, which corral always gives an instance.
    Secret references are not config: they become secretKeyRefs (secret_env)."""
    return {**release.spec.plain_env, "PORT": str(release.spec.port)}


SECRET_KEY = "value"  # the key holding a secret's value in its Kubernetes Secret


def secret_name(ref: SecretRef) -> str:
    """The Kubernetes Secret for corral secret `ref` (names allow no `_`).

    >>> secret_name(SecretRef(secret="db_password"))
    'db-password'
    """
    return ref.secret.replace("_", "-")


def secret_env(release: ExportedRelease) -> list[Manifest]:
    """`env = { X = { secret = … } }` as references to Secrets the cluster holds: values
    never leave corral's encrypted store, so the export names them and nothing more."""
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name(ref),
                                                         "key": SECRET_KEY}}}
            for key, ref in sorted(release.spec.env_secrets.items())]


def secret_names(release: ExportedRelease) -> list[str]:
    refs = [*release.spec.env_secrets.values(), *release.spec.files.values()]
    return sorted({secret_name(ref) for ref in refs})


def config_map(release: ExportedRelease) -> Manifest:
    data = config_data(release)
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(release, config_map_name(release, data)),
            "immutable": True, "data": data}


def container_security() -> Manifest:
    """What the process driver's sandbox guarantees, said to the kubelet: a read-only
    root, no capabilities, no privilege gain, the runtime's default seccomp filter."""
    return {"allowPrivilegeEscalation": False, "privileged": False,
            "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def pod_security(release: ExportedRelease) -> Manifest:
    uid, gid = run_as(release.image_user)
    security: Manifest = {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid,
                          "seccompProfile": {"type": "RuntimeDefault"}}
    if release.spec.volumes:
        security["fsGroup"] = gid  # so the non-root user can write its volumes
    return security


def corral_env(release: ExportedRelease) -> list[Manifest]:
    """CORRAL_SERVICE, CORRAL_RELEASE and CORRAL_INSTANCE (the pod's name), as corral
    gives every instance."""
    return [{"name": "CORRAL_SERVICE", "value": release.service},
            {"name": "CORRAL_RELEASE", "value": release.label},
            {"name": "CORRAL_INSTANCE",
             "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]


def volume_claim_name(release: ExportedRelease, volume: str) -> str:
    return child_name(release.service, volume)


def pod_volumes(release: ExportedRelease) -> tuple[list[Manifest], list[Manifest]]:
    """(volumes, mounts): a private writable /tmp, as the sandbox has, and one claim per
    declared volume."""
    volumes: list[Manifest] = [{"name": TMP_VOLUME, "emptyDir": {}}]
    mounts: list[Manifest] = [{"name": TMP_VOLUME, "mountPath": "/tmp"}]
    for name, path in sorted(release.spec.volumes.items()):
        volumes.append({"name": f"volume-{name}", "persistentVolumeClaim":
                        {"claimName": volume_claim_name(release, name)}})
        mounts.append({"name": f"volume-{name}", "mountPath": path})
    for index, (path, ref) in enumerate(sorted(release.spec.files.items())):
        # one file, read-only and 0400 as corral's tmpfs secret files are
        file_name = path.rsplit("/", 1)[-1]
        volumes.append({"name": f"secret-{index}", "secret": {
            "secretName": secret_name(ref), "defaultMode": 0o400,
            "items": [{"key": SECRET_KEY, "path": file_name}]}})
        mounts.append({"name": f"secret-{index}", "mountPath": path, "subPath": file_name,
                       "readOnly": True})
    return volumes, mounts


def container(release: ExportedRelease) -> Manifest:
    spec = release.spec
    _, mounts = pod_volumes(release)
    made: Manifest = {"name": release.service, "image": release.image,
                      "imagePullPolicy": "IfNotPresent"}
    if spec.command:  # replaces the image's entrypoint and cmd, as in corral
        made["command"] = list(spec.command)
    made.update({
        "ports": [{"name": PORT_NAME, "containerPort": spec.port, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": config_map_name(release, config_data(release))}}],
        "env": corral_env(release) + secret_env(release),
        "readinessProbe": probe(spec.health, readiness=True),
        "securityContext": container_security(),
        "volumeMounts": mounts,
    })
    if spec.liveness is not None:
        made["livenessProbe"] = probe(spec.liveness, readiness=False)
    if requirements := container_resources(release):
        made["resources"] = requirements
    return made


def container_resources(release: ExportedRelease) -> Manifest:
    """Spec `resources` as requests and limits: memory is requested, memory_max (else
    memory) the limit; cpus both, in millicores (as the process driver's quota is both
    share and cap). `pids` has no per-container field (see common_notes).

    >>> from corral.spec.model import ResourcesSpec
    >>> spec = ServiceSpec(image="web", resources=ResourcesSpec(
    ...     memory=256 << 20, memory_max=384 << 20, cpus=0.5, pids=64))
    >>> container_resources(ExportedRelease("shop", "web", spec, "web@sha256:0", "sha256:0"))
    ... # doctest: +NORMALIZE_WHITESPACE
    {'requests': {'memory': '256Mi', 'cpu': '500m'},
     'limits': {'memory': '384Mi', 'cpu': '500m'}}
    """
    declared = release.spec.resources
    if declared is None:
        return {}
    requests: Manifest = {}
    limits: Manifest = {}
    if declared.memory is not None:
        requests["memory"] = quantity(declared.memory)
    hard = declared.memory_max if declared.memory_max is not None else declared.memory
    if hard is not None:
        limits["memory"] = quantity(hard)
    if declared.cpus is not None:
        requests["cpu"] = limits["cpu"] = f"{max(1, round(declared.cpus * 1000))}m"
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def quantity(size: int) -> str:
    """Bytes as a Kubernetes quantity, in the largest binary unit that holds them whole.

    >>> quantity(1 << 30), quantity(384 << 20), quantity(1536), quantity(1000)
    ('1Gi', '384Mi', '1536', '1000')
    """
    for unit, shift in (("Ti", 40), ("Gi", 30), ("Mi", 20)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return str(size)


def pod_template(release: ExportedRelease) -> Manifest:
    volumes, _ = pod_volumes(release)
    return {"metadata": {"labels": release_labels(release),
                         "annotations": {"corral.dev/image-digest": release.digest}},
            "spec": {"automountServiceAccountToken": False,
                     "enableServiceLinks": False,
                     "terminationGracePeriodSeconds": whole_seconds(release.spec.stop_grace),
                     "securityContext": pod_security(release),
                     "containers": [container(release)],
                     "volumes": volumes}}


def workload_spec(release: ExportedRelease) -> Manifest:
    """What a Deployment and an Argo Rollout share. `start_timeout` (time a new instance
    has to become ready) is the nearest thing to the progress deadline."""
    return {"replicas": release.spec.replicas, "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": whole_seconds(release.spec.health.start_timeout),
            "selector": {"matchLabels": selector_labels(release)},
            "template": pod_template(release)}


def deployment(release: ExportedRelease) -> Manifest:
    rolling = release.spec.rolling
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(release, release.service),
            "spec": {**workload_spec(release),
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": rolling.max_surge,
                                                    "maxUnavailable": rolling.max_unavailable}}}}


def service(release: ExportedRelease, name: str | None = None) -> Manifest:
    """The cluster's entry to the pods: the router's port when the spec has a router,
    else the app's own port."""
    spec = release.spec
    port = int(spec.router.listen.rpartition(":")[2]) if spec.router else spec.port
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(release, name or release.service),
            "spec": {"type": "ClusterIP", "selector": selector_labels(release),
                     "ports": [{"name": PORT_NAME, "port": port, "targetPort": PORT_NAME,
                                "protocol": "TCP"}]}}


def volume_claims(release: ExportedRelease) -> list[Manifest]:
    """A claim per volume, ReadWriteMany: in corral every instance of a service shares
    its volume folder; a cluster without such storage needs the access mode edited."""
    return [{"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": metadata(release, volume_claim_name(release, name)),
             "spec": {"accessModes": ["ReadWriteMany"],
                      "resources": {"requests": {"storage": VOLUME_SIZE}}}}
            for name in sorted(release.spec.volumes)]


def common_notes(release: ExportedRelease) -> list[str]:
    """What the user should check by hand: what the spec does not say for Kubernetes."""
    notes = []
    if release.release is None:
        notes.append("no release of this service exists yet: exported from the spec and "
                     "the built image, labelled corral.dev/release=unreleased")
    if "@" in release.image and "/" not in release.image.partition("@")[0]:
        notes.append("the image has no registry: push it (corral push HOST/PREFIX/NAME) and "
                     "export with --registry HOST/PREFIX so the cluster can pull it")
    if release.spec.volumes:
        notes.append(f"volumes become PersistentVolumeClaims of {VOLUME_SIZE}, "
                     "ReadWriteMany (shared by all pods, as in corral): set size and "
                     "access mode for your cluster's storage")
    if names := secret_names(release):
        notes.append(f"secrets are referenced, never exported: create Secret(s) "
                     f"{', '.join(names)} with key {SECRET_KEY!r} in the cluster "
                     f"(kubectl create secret generic NAME --from-literal={SECRET_KEY}=…)")
    if release.spec.router and release.spec.router.tls:
        notes.append("router.tls is not exported: terminate TLS in your ingress")
    if release.spec.resources and release.spec.resources.pids is not None:
        notes.append(f"resources.pids ({release.spec.resources.pids}) is not exported: "
                     "Kubernetes has no per-container process limit; the kubelet's "
                     "podPidsLimit caps every pod of a node")
    return notes


def plain_objects(release: ExportedRelease) -> KubernetesExport:
    """A Deployment with its Service, ConfigMap and volume claims. Blue-green and canary
    need Argo Rollouts (core/rollouts.py); without it they are rolled out as rolling."""
    notes = common_notes(release)
    if release.spec.strategy != "rolling":
        notes.append(f"strategy {release.spec.strategy} exported as a rolling Deployment: "
                     "use --rollouts for an Argo Rollouts Rollout")
    objects = [config_map(release), *volume_claims(release), service(release),
               deployment(release)]
    return KubernetesExport(release.service, tuple(objects), tuple(notes))
