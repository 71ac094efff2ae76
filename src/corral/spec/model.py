"""The spec (`corral.toml`) as frozen pydantic models: the desired state, and only that.

Every field carries its description so the JSON Schema (`corral schema`) and the spec
reference in docs/spec.md come from this one place. Unknown keys are errors everywhere.
This module validates shape and ranges; it never touches the file system.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from corral.spec.duration import DURATION_PATTERN, parse_duration

Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema({"type": "string", "pattern": DURATION_PATTERN, "examples": ["500ms", "10s"]}),
]

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ADDRESS = re.compile(r"^(?P<host>[0-9.]+|\[[0-9a-fA-F:]+\]|localhost):(?P<port>\d{1,5})$")
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _check_env(env: dict[str, str]) -> dict[str, str]:
    for key in env:
        if not _ENV_NAME.match(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
    return env


class Project(_Model):
    """[project]: what this spec describes."""

    name: str = Field(description="Project name; labels every image and instance.",
                      pattern=NAME_PATTERN)


class CopyStep(_Model):
    """One `copy` entry of an image: files from the build context into the image."""

    src: str = Field(description="Path relative to the spec's folder; a folder ends with '/'.")
    dest: str = Field(description="Absolute path inside the image.")
    exclude: tuple[str, ...] = Field(default=(), description="Glob patterns left out of `src`.")
    mode: int | None = Field(default=None, description="File mode for copied files, e.g. 0o644.")
    owner: str | None = Field(default=None, description="'uid:gid' for copied files (default 0:0).")

    @field_validator("dest")
    @classmethod
    def _absolute(cls, dest: str) -> str:
        if not dest.startswith("/"):
            raise ValueError(f"dest {dest!r} must be an absolute path inside the image")
        return dest

    @field_validator("src")
    @classmethod
    def _relative(cls, src: str) -> str:
        if src.startswith("/") or ".." in src.split("/"):
            raise ValueError(f"src {src!r} must be a path inside the spec's folder")
        return src


class RunStep(_Model):
    """A `run` entry written as a table, for steps that need more than a command line."""

    command: str = Field(description="Shell command run with /bin/sh -c inside the image root.")
    network: bool = Field(default=False, description="Give the step the host network.")


class ImageSpec(_Model):
    """[images.NAME]: a golden image built by corral."""

    base: str = Field(
        default="scratch",
        description='"scratch", "debian:SUITE" (debootstrap), "oci:HOST/REPO:TAG" or '
        '"oci:HOST/REPO@sha256:…", or "layout:PATH:TAG" (a local OCI layout).',
    )
    packages: tuple[str, ...] = Field(default=(), description="Debian packages for a debian base.")
    mirror: str = Field(default="http://deb.debian.org/debian",
                        description="Debian mirror for a debian base.")
    copy_: tuple[CopyStep, ...] = Field(default=(), alias="copy",
                                        description="Files copied into the image, in order.")
    run: tuple[str | RunStep, ...] = Field(
        default=(), description="Commands run in a bubblewrap sandbox over the image root.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment of the image.")
    workdir: str | None = Field(default=None, description="Working folder of the entrypoint.")
    user: str | None = Field(default=None, description="'uid[:gid]' the entrypoint runs as.")
    entrypoint: tuple[str, ...] | None = Field(default=None, description="Program and arguments.")
    cmd: tuple[str, ...] | None = Field(default=None, description="Arguments after entrypoint.")
    ports: tuple[int, ...] = Field(default=(), description="Ports the image listens on.")
    labels: dict[str, str] = Field(default_factory=dict, description="OCI labels.")
    dockerfile: str | None = Field(default=None,
                                   description="Build from this Dockerfile instead of the keys.")

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        return _check_env(env)

    @model_validator(mode="after")
    def _base_is_known(self) -> ImageSpec:
        base = self.base
        if not (base == "scratch" or base.startswith(("debian:", "oci:", "layout:"))):
            raise ValueError(
                f'base {base!r} is not one of "scratch", "debian:SUITE", "oci:REF", '
                '"layout:PATH:TAG"'
            )
        if self.packages and not base.startswith("debian:"):
            raise ValueError("packages can only be installed on a debian:SUITE base")
        return self


class RouterSpec(_Model):
    """`router = {…}` of a service: where its traffic comes in."""

    listen: str = Field(description="'HOST:PORT' the router listens on for this service.")
    kind: Literal["builtin"] = Field(default="builtin", description="Router implementation.")

    @field_validator("listen")
    @classmethod
    def _address(cls, listen: str) -> str:
        match = _ADDRESS.match(listen)
        if not match or not 0 < int(match.group("port")) < 65536:
            raise ValueError(f"listen {listen!r} must be HOST:PORT, e.g. 127.0.0.1:8080")
        return listen


class HealthSpec(_Model):
    """`health = {…}`: the HTTP check that gates traffic to an instance."""

    path: str = Field(default="/", description="HTTP path; any 2xx or 3xx answer is healthy.")
    interval: Duration = Field(default=1.0, description="Time between checks.")
    timeout: Duration = Field(default=1.0, description="Time one check may take.")
    healthy_after: int = Field(default=1, ge=1, description="Passes in a row to become ready.")
    unhealthy_after: int = Field(default=3, ge=1, description="Failures in a row to be unhealthy.")
    start_timeout: Duration = Field(
        default=30.0, description="Time a new instance has to become ready before the "
        "deployment fails.")

    @field_validator("path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"health path {path!r} must start with '/'")
        return path


class RollingSpec(_Model):
    """`rolling = {…}`: replace instances a few at a time."""

    max_surge: int = Field(default=1, ge=0, description="Instances above `replicas` at once.")
    max_unavailable: int = Field(default=0, ge=0,
                                 description="Ready instances below `replicas` allowed at once.")

    @model_validator(mode="after")
    def _progress_possible(self) -> RollingSpec:
        if self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("max_surge and max_unavailable cannot both be 0: nothing could move")
        return self


class BlueGreenSpec(_Model):
    """`blue_green = {…}`: start a whole new fleet, then switch all traffic at once."""

    preview: bool = Field(default=True, description="Route X-Corral-Release requests early.")
    auto_promote: bool = Field(default=True, description="Switch without `corral promote`.")
    rollback_window: Duration = Field(default=900.0,
                                      description="How long the old fleet stays warm.")


class CanarySpec(_Model):
    """`canary = {…}`: move traffic in steps, analysing the canary after each."""

    steps: tuple[int, ...] = Field(default=(10, 50, 100), description="Traffic percentages.")
    interval: Duration = Field(default=10.0, description="Time each step runs before analysis.")
    max_error_rate: float = Field(default=0.01, ge=0, le=1,
                                  description="Highest error rate of the canary that passes.")
    max_p99_latency: Duration = Field(default=0.5, description="Highest p99 latency that passes.")
    min_requests: int = Field(default=100, ge=0,
                              description="Requests needed before any verdict.")

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps or list(steps) != sorted(set(steps)) or steps[-1] != 100 or steps[0] <= 0:
            raise ValueError("steps must rise strictly, start above 0 and end at 100")
        return steps


class ServiceSpec(_Model):
    """[services.NAME]: a service: which image, how many instances, how traffic reaches it."""

    image: str = Field(description="An image name from [images] or a digest 'sha256:…'.")
    replicas: int = Field(default=1, ge=0, le=1000, description="Instances of the live release.")
    port: int = Field(default=8000, ge=1, le=65535,
                      description="Port the app listens on; the process driver gives each "
                      "instance its own port in the PORT variable.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment of instances.")
    command: tuple[str, ...] | None = Field(default=None,
                                            description="Replaces the image's entrypoint and cmd.")
    router: RouterSpec | None = Field(default=None, description="Traffic entry point.")
    health: HealthSpec = Field(default_factory=HealthSpec, description="Readiness check.")
    strategy: Literal["rolling", "blue-green", "canary"] = Field(
        default="rolling", description="How a deployment moves to a new release.")
    rolling: RollingSpec = Field(default_factory=RollingSpec, description="Rolling settings.")
    blue_green: BlueGreenSpec = Field(default_factory=BlueGreenSpec,
                                      description="Blue-green settings.")
    canary: CanarySpec = Field(default_factory=CanarySpec, description="Canary settings.")
    volumes: dict[str, str] = Field(
        default_factory=dict, description="name = absolute path inside instances; kept across "
        "replacements under .corral/volumes/SERVICE/NAME, never in the image.")
    stop_grace: Duration = Field(default=10.0,
                                 description="Time between SIGTERM and SIGKILL when stopping.")
    drain_timeout: Duration = Field(default=30.0,
                                    description="Longest wait for in-flight requests to finish.")

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        return _check_env(env)

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, volumes: dict[str, str]) -> dict[str, str]:
        for name, path in volumes.items():
            if not _NAME.match(name):
                raise ValueError(f"volume name {name!r} must match {NAME_PATTERN}")
            if not path.startswith("/"):
                raise ValueError(f"volume {name!r} path {path!r} must be absolute")
        return volumes


class Spec(_Model):
    """The whole `corral.toml`."""

    project: Project = Field(description="What this spec describes.")
    images: dict[str, ImageSpec] = Field(default_factory=dict, description="Golden images.")
    services: dict[str, ServiceSpec] = Field(default_factory=dict, description="Services.")

    @model_validator(mode="after")
    def _references(self) -> Spec:
        for kind, names in (("image", self.images), ("service", self.services)):
            for name in names:
                if not _NAME.match(name):
                    raise ValueError(f"{kind} name {name!r} must match {NAME_PATTERN}")
        listens: dict[str, str] = {}
        for name, service in self.services.items():
            if not (service.image in self.images or re.match(DIGEST_PATTERN, service.image)):
                known = ", ".join(sorted(self.images)) or "none"
                raise ValueError(
                    f"services.{name}.image: {service.image!r} is neither an image of this spec "
                    f"(known: {known}) nor a digest sha256:…")
            if service.router:
                other = listens.setdefault(service.router.listen, name)
                if other != name:
                    raise ValueError(f"services.{name}.router.listen {service.router.listen} is "
                                     f"also used by service {other!r}")
        return self
