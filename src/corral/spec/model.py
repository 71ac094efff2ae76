"""The spec (`corral.toml`) as frozen pydantic models: the desired state, and only that.

Every field carries its description so the JSON Schema (`corral schema`) and the spec
reference in docs/spec.md come from this one place. Unknown keys are errors everywhere.
This module validates shape and ranges; it never touches the file system.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from corral.spec.fields import Duration, Size, SpecModel
from corral.spec.pipeline import PipelineSpec

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ADDRESS = re.compile(r"^(?P<host>[0-9.]+|\[[0-9a-fA-F:]+\]|localhost):(?P<port>\d{1,5})$")
DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"


def _checked_listen(listen: str) -> str:
    """A router's `listen`: HOST:PORT with a port in 1-65535 (the service's and an
    environment's overlay alike)."""
    match = _ADDRESS.match(listen)
    if not match or not 0 < int(match.group("port")) < 65536:
        raise ValueError(f"listen {listen!r} must be HOST:PORT, e.g. 127.0.0.1:8080")
    return listen


_Env = TypeVar("_Env", bound=dict[str, Any])


_Model = SpecModel


def _check_env(env: _Env) -> _Env:
    for key in env:
        if not _ENV_NAME.match(key):
            raise ValueError(f"{key!r} is not a valid environment variable name")
    return env


class BackupSchedule(_Model):
    """`backup = { every = "1h", keep = 24 }`: backups the controller takes by itself."""

    every: Duration = Field(description="Time between backups, e.g. 1h, 30m.", gt=0)
    keep: int = Field(default=24, ge=1, description="Newest scheduled backups kept; older "
                      "ones are deleted after each new one.")
    folder: str = Field(default=".corral/backups", description="Where they are written, "
                        "relative to the spec's folder (a mounted remote disk, ideally).")


class Project(_Model):
    """[project]: what this spec describes."""

    name: str = Field(description="Project name; labels every image and instance.",
                      pattern=NAME_PATTERN)
    store: str | None = Field(
        default=None,
        description="Where state and the ledger live: none is SQLite in .corral/state.db; "
                    "\"postgresql://USER@HOST/DATABASE\" (or \"postgresql:///DB?host=/SOCKET_DIR\")"
                    " is PostgreSQL, shared by a standby controller. The CORRAL_STORE "
                    "variable overrides it; keep passwords in ~/.pgpass, not in the spec. Not "
                    "with [environments] yet (refused): each keeps its own SQLite store.")
    backup: BackupSchedule | None = Field(
        default=None, description="Scheduled backups taken by the running controller, "
        "with retention; none: only `corral backup`.")


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


class ImageHealthcheckSpec(_Model):
    """`healthcheck = {…}` of an image: Docker's HEALTHCHECK, written into the image config
    (docker, podman and skopeo show it). A service without `health` uses it for readiness."""

    command: tuple[str, ...] | str = Field(
        description='["program", "arg", …] (Docker\'s CMD form) or "a shell line" (CMD-SHELL, '
        'run with /bin/sh -c); ["NONE"] disables a healthcheck inherited from the base.')
    interval: Duration = Field(default=30.0, description="Time between checks.")
    timeout: Duration = Field(default=30.0, description="Time one check may take.")
    start_grace: Duration = Field(default=0.0, description="Time after start before failures "
                                  "count (Docker's start period).")
    retries: int = Field(default=3, ge=1, description="Failures in a row to be unhealthy.")

    @field_validator("command")
    @classmethod
    def _command(cls, command: tuple[str, ...] | str) -> tuple[str, ...] | str:
        if not (command.strip() if isinstance(command, str) else command):
            raise ValueError("a healthcheck needs a command")
        return command


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
    healthcheck: ImageHealthcheckSpec | None = Field(
        default=None, description="Health check written into the image config (Docker's "
        "Healthcheck); the readiness check of services that have no `health`.")
    build_args: dict[str, str] = Field(
        default_factory=dict, description="Values of the Dockerfile's ARGs (with `dockerfile`; "
        "`corral build --build-arg NAME=VALUE` adds to them). Part of the step cache keys.")
    compression: Literal["none", "gzip"] = Field(
        default="none", description='Layer format: "none" stores plain tar layers (fast to '
        'pack and unpack, the default), "gzip" compresses them for images pushed over slow '
        "links. Part of the image digest; see docs/adr/0007-uncompressed-layers.md.")
    dockerfile: str | None = Field(
        default=None, description="Build from this Dockerfile (relative to the spec's folder, "
        "which is the build context) instead of the keys above; `packages` then go into "
        "`FROM debian:SUITE`.")
    target: str | None = Field(
        default=None, description="The Dockerfile stage to build (FROM … AS NAME); default: "
        "the last one. Only the stages it needs are built.")
    default_registry: str | None = Field(
        default=None, description="Registry (HOST[:PORT]) for a Dockerfile's `FROM NAME:TAG` "
        "without a host, e.g. python:3.11-slim → HOST/library/python:3.11-slim. Set it for "
        "every image with `[images] default_registry = \"HOST\"`. Unset: such a FROM is an "
        "error, never a silent pull from Docker Hub.")

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
        if self.packages and not (base.startswith("debian:") or self.dockerfile):
            raise ValueError("packages can only be installed on a debian:SUITE base")
        if self.dockerfile:  # images.dockerfile: the Dockerfile says the rest
            extra = sorted(type(self).model_fields[k].alias or k for k in self.model_fields_set
                           if k not in ("dockerfile", "packages", "mirror", "build_args",
                                        "target", "default_registry"))
            if extra:
                raise ValueError(f"with dockerfile, only packages, mirror and build_args "
                                 f"may be set "
                                 f"(for FROM debian:SUITE); remove {', '.join(extra)}")
        if self.build_args and not self.dockerfile:
            raise ValueError("build_args are for Dockerfile ARGs; set `dockerfile` or remove them")
        return self


class RouterTlsSpec(_Model):
    """`router.tls = { cert = "…", key = "…" }`: terminate TLS with this certificate."""

    cert: str = Field(description="PEM certificate (chain) file, relative to the spec's folder.")
    key: str = Field(description="PEM private key file, relative to the spec's folder.")


class RouterTimeoutsSpec(_Model):
    """`router.timeouts = {…}`: how long the router waits, per service. Unset keys keep the
    router's defaults (connect 3s, request 60s, read 60s, client_idle 75s, header 10s)."""

    connect: Duration | None = Field(default=None, description="Connecting to an instance.")
    request: Duration | None = Field(default=None,
                                     description="From sending a request to the answer's head.")
    read: Duration | None = Field(default=None,
                                  description="Between two reads of an answer's body.")
    client_idle: Duration | None = Field(
        default=None, description="A keep-alive client may wait this long between requests.")
    header: Duration | None = Field(
        default=None, description="A client must send a request head within this (slowloris).")

    def as_seconds(self) -> dict[str, float]:
        """The router's own names: `request` is the time to the first byte of the answer."""
        names = {"connect": "connect", "request": "first_byte", "read": "read",
                 "client_idle": "client_idle", "header": "header"}
        return {names[k]: float(v) for k, v in self.model_dump().items() if v is not None}


class RouterSpec(_Model):
    """`router = {…}` of a service: where its traffic comes in.

    One router process serves every service of a project, so `kind` and `workers` must be
    the same for all services that set them."""

    listen: str = Field(description="'HOST:PORT' the router listens on for this service.")
    kind: Literal["builtin", "haproxy"] = Field(
        default="builtin", description='Router implementation: "builtin" or "haproxy".')
    workers: int = Field(default=0, ge=0, le=256,
                         description="builtin: worker processes sharing each port (0: one "
                                     "per core); haproxy: threads (0: HAProxy's default).")
    tls: RouterTlsSpec | None = Field(default=None, description="Terminate TLS.")
    timeouts: RouterTimeoutsSpec | None = Field(default=None, description="Router timeouts.")

    @field_validator("listen")
    @classmethod
    def _address(cls, listen: str) -> str:
        return _checked_listen(listen)


class HealthSpec(_Model):
    """`health = {…}` (readiness: gates traffic) or `liveness = {…}` (ongoing: a failing
    instance is replaced by a new one): an http, tcp or exec check."""

    kind: Literal["http", "tcp", "exec"] = Field(
        default="http", description="http: GET `path`; tcp: connect to the instance's port; "
        "exec: run `command` inside the instance's sandbox, exit code 0 passes.")
    path: str = Field(default="/", description="HTTP path; any 2xx or 3xx answer is healthy.")
    command: tuple[str, ...] = Field(default=(), description="exec: program and arguments.")
    start_grace: Duration = Field(default=0.0,
                                  description="Time after start before the first check.")
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

    @model_validator(mode="after")
    def _exec_has_command(self) -> HealthSpec:
        if self.kind == "exec" and not self.command:
            raise ValueError('an exec check needs command = ["program", "arg", …]')
        return self


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
    insufficient_traffic: Literal["fail", "pass"] = Field(
        default="fail", description="Verdict when `min_requests` is not reached by "
        "`analysis_deadline`; either way it is recorded, never silent.")
    analysis_deadline: Duration = Field(
        default=300.0, description="Longest an analysis waits for `min_requests`.")
    max_consecutive_failures: int = Field(
        default=1, ge=1, description="Failed analyses in a row that roll the canary back.")

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps or list(steps) != sorted(set(steps)) or steps[-1] != 100 or steps[0] <= 0:
            raise ValueError("steps must rise strictly, start above 0 and end at 100")
        return steps


class SecretRef(_Model):
    """`{ secret = "NAME" }`: the value of secret NAME of the environment (`corral secret
    set`), given at start; never in the image, the spec, logs or the ledger."""

    secret: str = Field(description="Name of the secret.", pattern=NAME_PATTERN.replace(
        "a-z0-9-", "a-z0-9_-"))
    version: int | None = Field(default=None, ge=1, description="Set by corral in a "
                                "release (the version deployed); leave it out in the spec.")


class ResourcesSpec(_Model):
    """`resources = {…}`: what one instance reserves and may use at most (cgroups)."""

    memory: Size | None = Field(
        default=None, description='Memory one instance reserves, e.g. "256M": what capacity '
        "admission counts; also its hard limit unless memory_max is set.")
    memory_max: Size | None = Field(
        default=None, description="Memory one instance may use at most; above it the OOM "
        "killer ends it and it is replaced (cause=oom).")
    cpus: float | None = Field(default=None, gt=0, le=1024,
                               description="CPU time one instance may use, in cores (0.5: "
                               "half a core).")
    pids: int | None = Field(default=None, ge=8, le=4_194_304,
                             description="Processes and threads one instance may hold "
                             "(caps a fork bomb).")

    @model_validator(mode="after")
    def _max_above_reserved(self) -> ResourcesSpec:
        if self.memory is not None and self.memory < 4 << 20:
            raise ValueError("memory must be at least 4M: less cannot start a process")
        if self.memory_max is not None and self.memory is not None \
                and self.memory_max < self.memory:
            raise ValueError(f"memory_max ({self.memory_max} bytes) must not be below memory "
                             f"({self.memory} bytes)")
        return self


class CapacitySpec(_Model):
    """`[capacity]`: what capacity admission keeps for the system beside the instances."""

    reserve_memory: Size = Field(default=0, description='Memory kept for the system, e.g. '
                                 '"1G"; deployments may not reserve it.')
    reserve_cpus: float = Field(default=0.0, ge=0, description="Cores kept for the system.")


class ServiceSpec(_Model):
    """[services.NAME]: a service: which image, how many instances, how traffic reaches it."""

    image: str = Field(description="An image name from [images] or a digest 'sha256:…'.")
    replicas: int = Field(default=1, ge=0, le=1000, description="Instances of the live release.")
    port: int = Field(default=8000, ge=1, le=65535,
                      description="Port the app listens on; the process driver gives each "
                      "instance its own port in the PORT variable.")
    env: dict[str, str | SecretRef] = Field(
        default_factory=dict, description='Environment of instances; a value may be '
        '{ secret = "NAME" }.')
    files: dict[str, SecretRef] = Field(
        default_factory=dict, description='Secret files: "/run/secrets/db" = { secret = '
        '"NAME" }, on tmpfs, mode 0400, owned by the instance\'s user.')
    command: tuple[str, ...] | None = Field(default=None,
                                            description="Replaces the image's entrypoint and cmd.")
    router: RouterSpec | None = Field(default=None, description="Traffic entry point.")
    health: HealthSpec = Field(default_factory=HealthSpec, description="Readiness check.")
    liveness: HealthSpec | None = Field(
        default=None, description="Ongoing check of ready instances; one that fails it "
        "`unhealthy_after` times in a row is replaced, never restarted in place.")
    driver: Literal["process", "container", "swarm"] = Field(
        default="process", description="What runs instances: `process` (bubblewrap "
        "sandboxes), `container` (a Docker engine: dockerd or podman, see [drivers.container]) "
        "or `swarm` (Docker Swarm services, see [drivers.swarm]). Every service of a project "
        "uses the same driver.")
    strategy: Literal["rolling", "blue-green", "canary"] = Field(
        default="rolling", description="How a deployment moves to a new release.")
    rolling: RollingSpec = Field(default_factory=RollingSpec, description="Rolling settings.")
    blue_green: BlueGreenSpec = Field(default_factory=BlueGreenSpec,
                                      description="Blue-green settings.")
    canary: CanarySpec = Field(default_factory=CanarySpec, description="Canary settings.")
    resources: ResourcesSpec | None = Field(
        default=None, description="Per-instance memory, CPU and process limits (none: "
        "unlimited, and not counted by capacity admission).")
    allow_syscalls: tuple[str, ...] = Field(
        default=(), description='System calls the process driver\'s seccomp filter denies by '
        'default that this service may make anyway, e.g. ["ptrace"]; recorded in the release.')
    volumes: dict[str, str] = Field(
        default_factory=dict, description="name = absolute path inside instances; kept across "
        "replacements under .corral/volumes/SERVICE/NAME, never in the image.")
    stop_grace: Duration = Field(default=10.0,
                                 description="Time between SIGTERM and SIGKILL when stopping.")
    drain_timeout: Duration = Field(default=30.0,
                                    description="Longest wait for in-flight requests to finish.")
    # images.signing: deploys refuse an image without a valid signature by a trusted key.
    require_signature: bool = Field(
        default=False, description="Refuse to deploy an image that no key of `trusted_keys` "
        "signed (`corral sign`).")
    trusted_keys: tuple[str, ...] = Field(
        default=(), description='Public keys trusted to sign this service\'s images: PEM '
        'files relative to the spec\'s folder (e.g. "keys/ci.pub") or inline '
        '"ed25519:BASE64" (printed by `corral keygen`).')

    @property
    def plain_env(self) -> dict[str, str]:
        """The env's literal values. Its secret references are left out: their values reach
        an instance apart (InstanceSpec.secret_env), never through what is recorded."""
        return {key: value for key, value in self.env.items() if isinstance(value, str)}

    @property
    def env_secrets(self) -> dict[str, SecretRef]:
        """The env's secret references, `{ secret = "NAME" }`, by variable."""
        return {key: value for key, value in self.env.items() if isinstance(value, SecretRef)}

    @model_validator(mode="after")
    def _signature_needs_keys(self) -> ServiceSpec:
        if self.require_signature and not self.trusted_keys:
            raise ValueError("require_signature = true needs at least one key in trusted_keys")
        return self

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
        return _check_env(env)

    @field_validator("files")
    @classmethod
    def _files(cls, files: dict[str, SecretRef]) -> dict[str, SecretRef]:
        for path in files:
            if not path.startswith("/") or path.endswith("/") or ".." in path.split("/"):
                raise ValueError(f"secret file {path!r} must be an absolute file path")
        return files

    @field_validator("allow_syscalls")
    @classmethod
    def _syscalls(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not re.match(r"^[a-z_][a-z0-9_]{0,63}$", name):
                raise ValueError(f"allow_syscalls: {name!r} is not a system call name "
                                 "(write it as in `man 2 syscalls`, e.g. \"ptrace\")")
        return names

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, volumes: dict[str, str]) -> dict[str, str]:
        for name, path in volumes.items():
            if not _NAME.match(name):
                raise ValueError(f"volume name {name!r} must match {NAME_PATTERN}")
            if not path.startswith("/"):
                raise ValueError(f"volume {name!r} path {path!r} must be absolute")
        return volumes


class LogsSpec(_Model):
    """Central logs: every instance's stdout and stderr, kept in .corral/logs.db."""

    max_age: Duration = Field(default=7 * 86400.0,
                              description="Lines older than this are deleted.")
    max_lines: int | None = Field(default=10_000_000, ge=1,
                                  description="At most this many lines are kept (newest).")
    max_mb: int | None = Field(default=2048, ge=1,
                               description="The log database is kept under about this size.")
    loki: str | None = Field(
        default=None, description="Also ship lines to this Loki base URL "
        "(e.g. 'http://127.0.0.1:3100'), through its push API.")
    loki_labels: dict[str, str] = Field(default_factory=dict,
                                        description="Extra labels on every shipped stream.")


class ObserveSpec(_Model):
    """Logs and metrics of the controller."""

    logs: LogsSpec = Field(default_factory=LogsSpec, description="Central log settings.")
    metrics_listen: str | None = Field(
        default=None, description="'127.0.0.1:PORT': also serve /metrics over TCP there "
        "(the API itself is on a unix socket). CORRAL_METRICS_LISTEN overrides it.")

    @field_validator("metrics_listen")
    @classmethod
    def _loopback(cls, listen: str | None) -> str | None:
        if listen is not None and not _ADDRESS.match(listen):
            raise ValueError(f"metrics_listen {listen!r} must be 'HOST:PORT'")
        return listen


class GcSpec(_Model):
    """What `corral gc` keeps so that `corral rollback --to vN` still finds its image."""

    keep_releases: int = Field(
        default=5, ge=0, description="Releases kept per service besides the live one, "
        "counted as releases (several sharing one image count as several).")
    keep_for: Duration = Field(
        default=7 * 86400.0, description="Every release live or made this recently is kept "
        "too, however many came after it.")


class ContainerDriverSpec(_Model):
    """[drivers.container]: the Docker engine that runs instances of `driver = "container"`."""

    docker_host: str | None = Field(
        default=None, description="Engine API address, e.g. 'unix:///run/podman/podman.sock' "
        "(default: DOCKER_HOST, then unix:///var/run/docker.sock).")


class SwarmDriverSpec(_Model):
    """[drivers.swarm]: the swarm that runs instances of `driver = "swarm"`."""

    docker_host: str | None = Field(
        default=None, description="Engine API address of a manager node "
        "(default: DOCKER_HOST, then unix:///var/run/docker.sock).")
    registry: str | None = Field(
        default=None, description="'HOST:PORT/PREFIX' where corral pushes each release's "
        "image so every node pulls it by digest (required by the swarm driver).")
    insecure_registry: bool = Field(
        default=False, description="The registry speaks plain HTTP (every node's dockerd "
        "must list it in insecure-registries too).")
    start_timeout: Duration = Field(
        default=60.0, description="Longest wait for an instance's task to run (pull "
        "included) before its start fails.")


class DriversSpec(_Model):
    """[drivers]: settings of the drivers services name with `driver`."""

    container: ContainerDriverSpec = Field(default_factory=ContainerDriverSpec,
                                           description="The container driver.")
    swarm: SwarmDriverSpec = Field(default_factory=SwarmDriverSpec,
                                   description="The swarm driver.")
class ServiceOverlay(_Model):
    """`[environments.NAME.services.SERVICE]`: what differs for SERVICE in this
    environment; spec/environments.py merges it (its docstring and docs/spec.md say how)."""

    replicas: int | None = Field(default=None, ge=0, le=1000,
                                 description="Replaces the service's `replicas`.")
    strategy: Literal["rolling", "blue-green", "canary"] | None = Field(
        default=None, description="Replaces the service's `strategy`.")
    listen: str | None = Field(default=None, description="Replaces the service's "
                               "`router.listen` (a router is added if it has none).")
    driver: Literal["process", "container", "swarm"] | None = Field(
        default=None, description="Replaces the service's `driver` (every service of the "
        "environment still runs on one driver).")
    resources: ResourcesSpec | None = Field(
        default=None, description="Replaces the service's whole `resources` (a key it "
        "leaves out is unlimited in this environment).")
    env: dict[str, str | SecretRef] = Field(
        default_factory=dict, description="Added to the service's `env`; a key set in both "
        "takes this value.")

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str | SecretRef]) -> dict[str, str | SecretRef]:
        return _check_env(env)

    @field_validator("listen")
    @classmethod
    def _address(cls, listen: str | None) -> str | None:
        return None if listen is None else _checked_listen(listen)


class EnvironmentSpec(_Model):
    """`[environments.NAME]`: a target with its own releases, instances, router and ledger
    (state in `.corral/env/NAME/`; images are shared, so a digest is promoted, never rebuilt).

    The merge is explicit and one level deep, never inherited further: for each service an
    environment names in `[environments.NAME.services.SERVICE]`, `replicas`, `strategy`,
    `listen`, `driver` and `resources` (the whole table) replace the service's value; `env`
    adds its keys to the service's `env`, a key set in both taking the environment's value.
    No other key can differ between environments. `corral validate --env NAME --print` shows
    the result."""

    default: bool = Field(default=False, description="Commands without --env act on this "
                          "environment (at most one is the default).")
    require_passed: tuple[str, ...] = Field(
        default=(), description="Environments an image must have been live and healthy in, "
        "for `min_soak`, before it may be deployed or promoted here.")
    min_soak: Duration = Field(default=0.0, description="How long an image must have been "
                               "live in each of `require_passed` (e.g. \"10m\").")
    services: dict[str, ServiceOverlay] = Field(
        default_factory=dict, description="Per-service overlays (replicas, strategy, listen, "
        "driver, resources, env).")


LOOPBACK_HOSTS = ("127.0.0.1", "[::1]", "localhost")


def listen_problem(listen: str, has_tls: bool) -> str | None:
    """What is wrong with the controller's TCP address, or None. Off loopback the API faces
    a network, so it must speak TLS: tokens never cross a wire in clear text.

    >>> listen_problem("127.0.0.1:8443", False) is None, listen_problem("0.0.0.0:8443", True)
    (True, None)
    >>> listen_problem("0.0.0.0:8443", False)
    '0.0.0.0:8443 is not loopback: set [controller] tls = { cert, key } to listen there'
    """
    match = _ADDRESS.match(listen)
    if match is None:
        return f"{listen!r} must be 'HOST:PORT' (e.g. '127.0.0.1:8443')"
    host = match.group("host")
    if host not in LOOPBACK_HOSTS and not host.startswith("127.") and not has_tls:
        return f"{listen} is not loopback: set [controller] tls = {{ cert, key }} to listen there"
    return None


class ControllerSpec(_Model):
    """The controller's API beyond its unix socket: HTTP on TCP, with tokens (`corral token`)."""

    listen: str | None = Field(
        default=None, description="'HOST:PORT': also serve the API and the dashboard there "
        "(`corral up --listen` overrides it). Off loopback, tls is required.")
    tls: RouterTlsSpec | None = Field(default=None, description="Serve HTTPS with this "
                                      "certificate and key (PEM files, relative to the spec).")
    auth_failures: int = Field(default=10, ge=1, description="Failed sign-ins a client address "
                               "may make per auth_window before it is refused for a while.")
    auth_window: Duration = Field(default=60.0, description="The window of auth_failures.")

    @model_validator(mode="after")
    def _listen(self) -> ControllerSpec:
        problem = self.listen and listen_problem(self.listen, self.tls is not None)
        if problem:
            raise ValueError(f"controller.listen: {problem}")
        return self


class Spec(_Model):
    """The whole `corral.toml`."""

    project: Project = Field(description="What this spec describes.")
    images: dict[str, ImageSpec] = Field(
        default_factory=dict, description="Golden images.",
        json_schema_extra={"properties": {"default_registry": {
            "type": "string", "description": "Registry (HOST[:PORT]) of every image's "
            "Dockerfile `FROM NAME:TAG` without a host (images.NAME.default_registry)."}}})
    services: dict[str, ServiceSpec] = Field(default_factory=dict, description="Services.")
    observe: ObserveSpec = Field(default_factory=ObserveSpec,
                                 description="Central logs and metrics.")
    gc: GcSpec = Field(default_factory=GcSpec, description="What `corral gc` keeps.")
    drivers: DriversSpec = Field(default_factory=DriversSpec, description="Driver settings.")
    pipeline: PipelineSpec | None = Field(
        default=None, description="Build, test, deploy and promote each commit of a git "
        "branch (`corral pipeline run`, `corral watch`).")
    environments: dict[str, EnvironmentSpec] = Field(
        default_factory=dict, description="Named targets (staging, prod), each with its own "
        "releases, instances, router and ledger; see docs/spec.md's Environments.")
    controller: ControllerSpec = Field(default_factory=ControllerSpec,
                                       description="The API on TCP, with tokens.")

    capacity: CapacitySpec = Field(default_factory=CapacitySpec,
                                   description="What capacity admission keeps for the system.")

    @model_validator(mode="before")
    @classmethod
    def _default_registry(cls, data: Any) -> Any:
        """`[images] default_registry = "HOST"` is a setting, not an image: it becomes
        each image's `default_registry` unless the image sets its own."""
        images = data.get("images") if isinstance(data, dict) else None
        if not isinstance(images, dict) or not isinstance(images.get("default_registry"), str):
            return data
        images = dict(images)
        registry = images.pop("default_registry")
        images = {name: {"default_registry": registry, **table}
                  if isinstance(table, dict) else table for name, table in images.items()}
        return {**data, "images": images}

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
        _check_one_router(self.services)
        _check_one_driver(self.services)
        if self.driver == "swarm" and not self.drivers.swarm.registry:
            raise ValueError('driver = "swarm" needs [drivers.swarm] registry = '
                             '"HOST:PORT/PREFIX": the nodes pull images from there')
        return self  # environments across services: spec/environments.py, run by load.py

    @property
    def driver(self) -> str:
        """The driver of every service (`process` for a spec without services)."""
        return next((s.driver for s in self.services.values()), "process")


def _check_one_router(services: dict[str, ServiceSpec]) -> None:
    """One router process serves all services: they must agree on its kind and workers."""
    routed = [(name, s.router) for name, s in services.items() if s.router is not None]
    for key in ("kind", "workers"):
        values = {getattr(router, key) for _, router in routed}
        if len(values) > 1:
            detail = ", ".join(f"services.{name}.router.{key} = {getattr(router, key)!r}"
                               for name, router in routed)
            raise ValueError(f"one router serves every service of a project, so router.{key} "
                             f"must be the same for all of them ({detail})")


def _check_one_driver(services: dict[str, ServiceSpec]) -> None:
    """One controller drives one engine: every service names the same driver."""
    drivers = {s.driver for s in services.values()}
    if len(drivers) > 1:
        detail = ", ".join(f"services.{name}.driver = {s.driver!r}"
                           for name, s in services.items())
        raise ValueError(f"every service of a project runs on the same driver ({detail})")
