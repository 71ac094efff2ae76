"""A build plan: the base, the ordered layer steps and the image metadata of one image.

Both ways to describe an image (the spec's keys and a Dockerfile) become a plan, so one
builder, one step cache and one reproducibility story serve both. Pure data; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from corral.images.build.dockerignore import IgnoreRules
from corral.spec.model import CopyStep, ImageSpec, RunStep


@dataclass(frozen=True)
class PlanRun:
    """A run step with the environment and working folder it runs with."""

    step: RunStep
    env: dict[str, str]
    workdir: str
    # The program exactly (a Dockerfile's SHELL, or a heredoc script); None: /bin/sh -c.
    argv: tuple[str, ...] | None = None
    caches: tuple[CacheMount, ...] = ()  # RUN --mount=type=cache
    binds: tuple[BindMount, ...] = ()  # RUN --mount=type=bind
    tmpfs: tuple[str, ...] = ()  # RUN --mount=type=tmpfs: empty folders, gone after the step
    # USER in effect (`name[:group]` or numbers, as written); None: root. Resolved from the
    # image's /etc/passwd below the step only when the step runs (a cached step reads none).
    user: str | None = None


@dataclass(frozen=True)
class CacheMount:
    """A build cache folder mounted at `target` during one run step, never in the image;
    steps naming the same `id` share it, between builds too."""

    id: str
    target: str
    # uid, gid and mode the folder is given when mounted (BuildKit's uid=, gid=, mode=), so a
    # step run as a USER may write there; None: as made (root's, 0755).
    access: tuple[int, int, int] | None = None

    def key(self) -> dict[str, object]:
        """What the step key holds of this mount (`access` only when set: the keys of
        steps written before it existed stay as they were)."""
        found: dict[str, object] = {"id": self.id, "target": self.target}
        return found if self.access is None else {**found, "access": list(self.access)}


@dataclass(frozen=True)
class BindMount:
    """RUN --mount=type=bind: files of the build context (or of a stage or an image) mounted
    at `target` for one step, never in the image; read-only unless `writable`, and then
    what the step writes there is thrown away, as BuildKit does."""

    source: str  # a path in the context (relative), or in the `origin` root (absolute)
    target: str  # absolute, a relative target already joined to the step's workdir
    origin: str | None = None  # "stage:N" or a base string; None: the build context
    writable: bool = False


@dataclass(frozen=True)
class PlanCopyFrom:
    """COPY --from: paths of another stage's root (`stage:N`) or of an image (a base string),
    resolved when the builder has that root."""

    sources: tuple[str, ...]  # absolute paths in that root; globs allowed
    dest: str
    source: str
    mode: int | None = None
    owner: str | None = None


@dataclass(frozen=True)
class PlanFile:
    """COPY <<NAME DEST: one file written from a heredoc."""

    dest: str
    content: str
    mode: int | None = None
    owner: str | None = None


@dataclass(frozen=True)
class PlanUnpack:
    """ADD of a local tar archive (plain, gzip, bzip2 or xz): its members unpacked under
    `dest`, with the modes and owners the archive gives them, as Docker does."""

    source: str  # the archive, relative to the build context
    dest: str  # the folder it is unpacked into (absolute)


@dataclass(frozen=True)
class PlanFetch:
    """ADD of a URL: the file downloaded to `dest` (mode 0600 unless --chmod, as Docker
    does). With `checksum` ("sha256:HEX") the layer is keyed by it and a cached build
    fetches nothing; without, every build downloads it and keys the layer by its content."""

    url: str
    dest: str
    checksum: str | None = None
    mode: int | None = None
    owner: str | None = None


PlanStep = CopyStep | PlanRun | PlanCopyFrom | PlanFile | PlanUnpack | PlanFetch


@dataclass(frozen=True)
class BuildPlan:
    base: str
    packages: tuple[str, ...]
    mirror: str
    steps: tuple[PlanStep, ...]
    metadata: ImageSpec  # env, workdir, user, entrypoint, cmd, ports, labels, healthcheck
    warnings: tuple[str, ...] = ()  # e.g. build args no ARG consumed
    ignore: IgnoreRules | None = None  # a Dockerfile build's .dockerignore
    # A Dockerfile's earlier stages, by index: `base` or a PlanCopyFrom may name "stage:N".
    stages: tuple[BuildPlan, ...] = ()
    stop_signal: str | None = None  # STOPSIGNAL
    author: str | None = None  # MAINTAINER
    notes: tuple[str, ...] = ()  # what the build decided for the user (a resolved FROM, …)
    name: str = ""  # the stage's name (FROM … AS name) or its index
    sites: tuple[str, ...] = ()  # where each step was written ("Dockerfile:LINE"), if known

    @property
    def base_spec(self) -> ImageSpec:
        return ImageSpec(base=self.base, packages=self.packages, mirror=self.mirror)


def spec_plan(image: ImageSpec) -> BuildPlan:
    """The plan of an image described by spec keys: copy steps first, then run steps, each
    run with the spec's env (over the base's) in the spec's workdir."""
    runs = tuple(PlanRun(command if isinstance(command, RunStep) else RunStep(command=command),
                         dict(image.env), image.workdir or "/") for command in image.run)
    return BuildPlan(base=image.base, packages=image.packages, mirror=image.mirror,
                     steps=(*image.copy_, *runs), metadata=image)
