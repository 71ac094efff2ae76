"""The records that cross every port: releases, instances, deployments, events, backends.

Frozen dataclasses, plain data. Time is always a float of Unix seconds passed in by the
caller; nothing here reads a clock, generates an id or does I/O.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from corral.spec.model import ServiceSpec


class InstanceState(StrEnum):
    """Life of an instance: starting → ready → draining → stopped; or failed/gone at any time."""

    STARTING = "starting"  # process started, health not yet passed
    READY = "ready"  # health passed; may carry traffic
    UNHEALTHY = "unhealthy"  # was ready, now failing its check: gets no traffic
    DRAINING = "draining"  # no new requests; waiting for in-flight ones
    STOPPED = "stopped"  # stopped on purpose
    FAILED = "failed"  # exited or never became healthy

    @property
    def is_live(self) -> bool:
        return self in (InstanceState.STARTING, InstanceState.READY, InstanceState.UNHEALTHY,
                        InstanceState.DRAINING)


class DeploymentOutcome(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled back"
    ABORTED = "aborted"
    FAILED = "failed"


@dataclass(frozen=True)
class Release:
    """`service vN = image digest + config digest`. Written once, never updated."""

    service: str
    version: int
    image_digest: str
    config_digest: str
    config: dict[str, Any]  # the release config as JSON-able data (see core.release)
    created_at: float
    git_commit: str | None = None
    git_commit_time: float | None = None

    @property
    def label(self) -> str:
        return f"v{self.version}"

    @cached_property
    def spec(self) -> ServiceSpec:
        """The release config as the typed service spec it was made from, parsed once (on
        first use) and kept with the record: the engine reads `release.spec`, never the
        JSON form. Raises pydantic's ValidationError if the config is not a valid spec."""
        from corral.spec.model import ServiceSpec  # the spec model: not for every record

        return ServiceSpec.model_validate(self.config)


@dataclass(frozen=True)
class Instance:
    """One running copy of a release, as the store remembers it."""

    id: str
    service: str
    release: int
    image_digest: str
    address: str  # "127.0.0.1:PORT" where the app listens
    state: InstanceState
    created_at: float
    pid: int | None = None
    ended_at: float | None = None
    reason: str | None = None  # why it reached its current state, for humans

    def moved_to(self, state: InstanceState, *, now: float | None = None,
                 reason: str | None = None) -> Instance:
        ended = now if state in (InstanceState.STOPPED, InstanceState.FAILED) else self.ended_at
        return replace(self, state=state, ended_at=ended, reason=reason or self.reason)


@dataclass(frozen=True)
class Deployment:
    """Moving a service from one release to another. Persisted so it can be resumed."""

    id: int
    service: str
    strategy: str
    from_release: int | None
    to_release: int
    outcome: DeploymentOutcome
    started_at: float
    ended_at: float | None = None
    reason: str | None = None
    replicas: int = 1


@dataclass(frozen=True)
class DeploymentStep:
    """One step a deployment executed, with what was observed."""

    deployment_id: int
    seq: int
    kind: str
    detail: dict[str, Any]
    at: float


@dataclass(frozen=True)
class Event:
    """One ledger entry: who did what to which subject, and why.

    `prev_hash`/`hash` chain every entry to the one before; the store fills both when it
    appends, inside the same transaction as the change the event records.
    """

    at: float
    actor: str
    action: str
    subject: str
    detail: dict[str, Any] = field(default_factory=dict)
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""

    def chained(self, seq: int, prev_hash: str) -> Event:
        """This event as entry `seq` after `prev_hash`, with its own hash computed."""
        linked = replace(self, seq=seq, prev_hash=prev_hash, hash="")
        return replace(linked, hash=linked.compute_hash())

    def compute_hash(self) -> str:
        body = json.dumps(
            {"seq": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
             "subject": self.subject, "detail": self.detail, "prev": self.prev_hash},
            sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class Backend:
    """A router's target: one instance of a service, with its traffic weight."""

    address: str  # "127.0.0.1:PORT"
    weight: int  # relative; 0 = no new requests (draining or not ready)
    release: str  # release label, e.g. "v7": stats are kept per release
    instance: str = ""  # instance id, for humans


@dataclass(frozen=True)
class ReleaseStats:
    """What a router saw of one release of a service since it started."""

    requests: int = 0
    errors: int = 0  # 5xx answers from backends
    failed_connections: int = 0  # connect/read failures that reached the client as 502/503/504
    latency_buckets: tuple[tuple[float, int], ...] = ()  # (upper bound seconds, cumulative count)
    latency_sum: float = 0.0


@dataclass(frozen=True)
class Limits:
    """What one instance may use (spec `resources`): bytes, cores, processes; None: no limit.
    `memory` is what it reserves (capacity admission), `memory_max` the hard limit."""

    memory: int | None = None
    memory_max: int | None = None
    cpus: float | None = None
    pids: int | None = None

    @property
    def memory_limit(self) -> int | None:
        """The hard memory limit: memory_max, else memory."""
        return self.memory_max if self.memory_max is not None else self.memory

    @property
    def is_empty(self) -> bool:
        return self.memory_limit is None and self.cpus is None and self.pids is None


@dataclass(frozen=True)
class Usage:
    """What one instance uses now, against its limits (None: not known or unlimited)."""

    memory: int | None = None  # bytes
    memory_limit: int | None = None
    cpu_seconds: float | None = None  # since it started
    cpus: float | None = None  # its CPU limit in cores
    pids: int | None = None
    pids_limit: int | None = None
    oom_kills: int = 0


@dataclass(frozen=True)
class UsageTally:
    """What one instance used within one clock hour, as the controller sampled it: the
    compact aggregate behind `corral cost`'s used hours (one row per instance and hour).

    `seconds` is the time the samples cover; memory is integrated over it (bytes times
    seconds), CPU is the time the instance's cgroup charged over it.
    """

    instance_id: str
    service: str
    release: int
    hour: float  # the start of the clock hour, epoch seconds
    seconds: float
    memory_byte_seconds: float
    cpu_seconds: float
    samples: int = 1


@dataclass(frozen=True)
class Capacity:
    """What the machine (or cluster) a driver runs instances on holds: bytes and cores in
    all, and memory free right now."""

    memory: int
    memory_available: int
    cpus: float


@dataclass(frozen=True)
class InstanceSpec:
    """Everything a driver needs to start one instance; computed by the engine."""

    id: str
    service: str
    release: int
    image_digest: str
    rootfs: str  # path of the unpacked, read-only image root
    argv: tuple[str, ...]
    env: dict[str, str]
    workdir: str = "/"
    user: str | None = None  # "uid[:gid]" from the image; the process driver maps it to 65534
    port: int = 8000  # what the app listens on; the process driver replaces it per instance
    volumes: dict[str, str] = field(default_factory=dict)  # host path -> path inside
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str | None = None  # the image's STOPSIGNAL (SIGINT, QUIT, 3); None: SIGTERM
    # Secret values, opened for this start only: a driver hands them to the instance and
    # never records, logs or shows them (repr=False keeps them out of any message).
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    secret_files: dict[str, str] = field(default_factory=dict, repr=False)  # path -> value
    limits: Limits = field(default_factory=Limits)
    allow_syscalls: tuple[str, ...] = ()  # denied by the default filter, allowed for this one



def signal_number(name: str | None) -> int:
    """The number of a STOPSIGNAL value as Docker accepts it (SIGINT, INT, 2); SIGTERM for
    None or a value this host does not know (the builder refuses those).

    >>> signal_number("QUIT"), signal_number("SIGINT"), signal_number("9"), signal_number(None)
    (3, 2, 9, 15)
    """
    import signal

    if not name:
        return int(signal.SIGTERM)
    if name.isdigit():
        return int(name)
    text = name.upper()
    found = signal.Signals.__members__.get(text if text.startswith("SIG") else "SIG" + text)
    return int(found if found is not None else signal.SIGTERM)


@dataclass(frozen=True)
class Observed:
    """An instance as the driver sees it right now."""

    id: str
    pid: int | None
    address: str
    running: bool
    exit_code: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    started_at: float | None = None
    oom_killed: bool = False  # ended by the OOM killer at its memory limit


@dataclass(frozen=True)
class ImageHealthcheck:
    """An image's Healthcheck (Docker's config key), durations in seconds (0: Docker's
    default). test: ("CMD", program, args…) or ("CMD-SHELL", line) or ("NONE",)."""

    test: tuple[str, ...]
    interval: float = 0.0
    timeout: float = 0.0
    start_period: float = 0.0
    retries: int = 0


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an image's OCI config."""

    digest: str  # manifest digest
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str | None = None
    ports: tuple[int, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    healthcheck: ImageHealthcheck | None = None
    stop_signal: str | None = None  # STOPSIGNAL: what the driver sends first when stopping


@dataclass(frozen=True)
class ImageSummary:
    """One image in the local store, for `corral images`."""

    digest: str
    names: tuple[str, ...]  # tags pointing at it, e.g. ("web:latest",)
    size: int  # bytes of config and layers
    created: float
