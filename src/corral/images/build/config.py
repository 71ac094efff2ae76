"""The OCI image config and manifest documents: made from a spec, read back as ImageConfig.

`created` comes from SOURCE_DATE_EPOCH (default 0), never from the clock, so the config
digest (and the manifest's) depends on the inputs only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from corral.images.build.debian import host_architecture
from corral.images.build.healthcheck import docker_healthcheck, read_healthcheck
from corral.images.build.layer import Layer, source_date_epoch
from corral.images.oci.layout import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from corral.ports.records import ImageConfig
from corral.spec.model import ImageSpec

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def image_config(base: dict[str, Any], image: ImageSpec, labels: dict[str, str] | None,
                 layers: Sequence[Layer], *, stop_signal: str | None = None,
                 author: str | None = None) -> dict[str, Any]:
    """The config document: the base's runtime config overlaid with the spec's keys (and a
    Dockerfile's STOPSIGNAL and MAINTAINER, the config's `author`)."""
    env = image_env(base, image)
    runtime: dict[str, Any] = {"Env": [f"{k}={v}" for k, v in env.items()]}
    entrypoint = image.entrypoint if image.entrypoint is not None else base.get("Entrypoint")
    # A new entrypoint drops the base's cmd, which was written for the old one.
    cmd = image.cmd if image.cmd is not None else (
        None if image.entrypoint is not None else base.get("Cmd"))
    workdir = image.workdir or base.get("WorkingDir")
    user = image.user or base.get("User")
    ports = {**(base.get("ExposedPorts") or {}), **{f"{p}/tcp": {} for p in image.ports}}
    merged_labels = {**(base.get("Labels") or {}), **image.labels, **(labels or {})}
    healthcheck = docker_healthcheck(image.healthcheck) if image.healthcheck is not None \
        else base.get("Healthcheck")
    optional: tuple[tuple[str, Any], ...] = (
        ("Entrypoint", entrypoint), ("Cmd", cmd), ("WorkingDir", workdir), ("User", user),
        ("ExposedPorts", ports), ("Labels", merged_labels), ("Healthcheck", healthcheck),
        ("StopSignal", stop_signal or base.get("StopSignal")))
    for key, value in optional:
        if value:
            runtime[key] = list(value) if isinstance(value, tuple) else value
    created = datetime.fromtimestamp(source_date_epoch(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "created": created,
        **({"author": author} if author else {}),
        "architecture": host_architecture(),
        "os": "linux",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        # One entry per layer: buildah (1.28) refuses to build FROM an image whose history
        # does not count its layers; the fixed time keeps the digest reproducible.
        "history": [{"created": created, "created_by": "corral build"} for _ in layers],
    }


def image_env(base: dict[str, Any], image: ImageSpec) -> dict[str, str]:
    """Default PATH, then the base's Env, then the spec's env (later wins)."""
    env = {"PATH": DEFAULT_PATH}
    for item in base.get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    env.update(image.env)
    return env


def image_manifest(config_digest: str, config_size: int, layers: Sequence[Layer],
                   annotations: dict[str, str] | None = None) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                   for layer in layers],
    }
    if annotations:
        manifest["annotations"] = annotations
    return manifest


def runtime_config(digest: str, config: dict[str, Any]) -> ImageConfig:
    """The ImageConfig record of manifest `digest` whose config document is `config`."""
    runtime = config.get("config") or {}
    env = {}
    for item in runtime.get("Env") or []:
        key, _, value = str(item).partition("=")
        env[key] = value
    ports = []
    for exposed in runtime.get("ExposedPorts") or {}:
        number = str(exposed).partition("/")[0]
        if number.isdigit():
            ports.append(int(number))
    return ImageConfig(
        digest=digest,
        entrypoint=tuple(runtime.get("Entrypoint") or ()),
        cmd=tuple(runtime.get("Cmd") or ()),
        env=env,
        workdir=runtime.get("WorkingDir") or "/",
        user=runtime.get("User") or None,
        ports=tuple(sorted(ports)),
        labels=dict(runtime.get("Labels") or {}),
        healthcheck=read_healthcheck(runtime.get("Healthcheck")),
        stop_signal=runtime.get("StopSignal") or None,
    )


def created_time(config: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(config.get("created"))).timestamp()
    except ValueError:
        return 0.0
