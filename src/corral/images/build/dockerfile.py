"""Dockerfiles read into a build plan: a base, ordered copy/run steps and image metadata.

Supports FROM (scratch, debian:SUITE as the debootstrap base, an image built by corral),
COPY, ADD (local files), RUN, ENV, ARG (values from build_args), WORKDIR, USER, ENTRYPOINT,
CMD, EXPOSE, LABEL, HEALTHCHECK.
Everything else is an ImageError naming the file, line and instruction. It parses and maps;
it never builds (builder.py runs the plan with the same step machinery as the spec keys).
"""

from __future__ import annotations

import glob
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral.errors import ImageError
from corral.images.build.dockerfile_syntax import (
    command_form,
    json_list,
    pairs,
    read_instructions,
    split_flags,
    substitute,
)
from corral.images.build.dockerignore import IgnoreRules, read_ignore_file
from corral.images.build.healthcheck import parse_instruction
from corral.images.build.plan import BuildPlan, PlanRun
from corral.spec.model import CopyStep, ImageHealthcheckSpec, ImageSpec, RunStep

_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst")
_UNSUPPORTED_HINTS = {
    "ONBUILD": "corral images do not carry triggers; put the steps in this Dockerfile",
    "VOLUME": "declare volumes in [services.NAME] volumes = {…}",
    "SHELL": "RUN always uses /bin/sh -c",
    "STOPSIGNAL": "instances stop with SIGTERM, then SIGKILL after stop_grace",
    "MAINTAINER": 'use LABEL org.opencontainers.image.authors="…"',
}

LocalImage = Callable[[str], str | None]  # "NAME[:TAG]" -> a base string, or None


@dataclass
class _State:
    base: str | None = None
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    workdir_set: bool = False
    user: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    ports: list[int] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    healthcheck: ImageHealthcheckSpec | None = None
    steps: list[CopyStep | PlanRun] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)  # given: --build-arg, build_args
    declared: set[str] = field(default_factory=set)  # ARG names this Dockerfile has


def plan_dockerfile(path: Path, context: Path, image: ImageSpec,
                    local_image: LocalImage) -> BuildPlan:
    """The build plan of the Dockerfile at `path`; `image` brings packages and mirror."""
    state = _State(build_args=dict(image.build_args))
    ignore = read_ignore_file(context, path)
    for instruction in read_instructions(path):
        handler = _HANDLERS.get(instruction.keyword)
        where = f"{path.name}:{instruction.line}"
        if handler is None:
            hint = _UNSUPPORTED_HINTS.get(instruction.keyword,
                                          "see docs/commands/build.md for what is supported")
            raise ImageError(f"{where}: {instruction.keyword} is not supported by corral",
                             hint=hint)
        if state.base is None and instruction.keyword not in ("FROM", "ARG"):
            raise ImageError(f"{where}: {instruction.keyword} before FROM",
                             hint="a Dockerfile starts with FROM (ARG may come before it)")
        try:
            handler(state, instruction.args, _Site(where, context, local_image, ignore))
        except ValueError as exc:
            raise ImageError(f"{where}: {instruction.keyword} {instruction.args}: {exc}",
                             hint="see docs/commands/build.md for the supported forms") from None
    if state.base is None:
        raise ImageError(f"{path.name}: no FROM line", hint="start with FROM scratch, FROM "
                         "debian:bookworm or FROM an image built by corral")
    metadata = ImageSpec.model_validate({
        "env": state.env, "workdir": state.workdir if state.workdir_set else None,
        "user": state.user, "entrypoint": state.entrypoint, "cmd": state.cmd,
        "ports": sorted(set(state.ports)), "labels": state.labels,
        "healthcheck": state.healthcheck})
    packages = image.packages if state.base.startswith("debian:") else ()
    if image.packages and not packages:
        raise ImageError(f"{path.name}: packages are listed in the spec but FROM is not "
                         "debian:SUITE", hint="remove `packages`, or use FROM debian:bookworm")
    unused = sorted(set(state.build_args) - state.declared)
    warnings = (f"build arg(s) {', '.join(unused)} not consumed: {path.name} has no ARG of "
                "that name",) if unused else ()
    return BuildPlan(base=state.base, packages=tuple(packages), mirror=image.mirror,
                     steps=tuple(state.steps), metadata=metadata, warnings=warnings,
                     ignore=ignore or None)


@dataclass(frozen=True)
class _Site:
    where: str
    context: Path
    local_image: LocalImage
    ignore: IgnoreRules


def _from(state: _State, args: str, site: _Site) -> None:
    if state.base is not None:
        raise ValueError("a second FROM (multi-stage builds) is not supported")
    words = substitute(args, state.args).split()
    if len(words) != 1 or words[0].startswith("--"):
        raise ValueError("multi-stage builds (FROM … AS name) and --platform are not supported")
    ref = words[0]
    if ref == "scratch" or re.fullmatch(r"debian:[a-z]+", ref):
        state.base = ref
        return
    found = site.local_image(ref)
    if found is None:
        raise ValueError(f"{ref!r} is neither scratch, debian:SUITE nor an image built by "
                         "corral (corral never pulls from Docker Hub)")
    state.base = found


def _copy(state: _State, args: str, site: _Site, *, add: bool = False) -> None:
    flags, words = split_flags(shlex.split(substitute(args, _values(state))), ("chown", "chmod"))
    if len(words) < 2:
        raise ValueError("needs at least one source and a destination")
    *sources, dest = words
    into_folder = dest.endswith(("/", "/.")) or dest == "." or len(sources) > 1
    dest = posixpath.normpath(posixpath.join(state.workdir, dest))
    dest = dest + "/" if into_folder and dest != "/" else dest
    mode = int(flags["chmod"], 8) if "chmod" in flags else None
    owner = _owner(flags.get("chown"))
    for source in sources:
        for match in _expand(source, site.context, add, site.ignore):
            is_dir = (site.context / match).is_dir()
            target = dest if is_dir or not into_folder else dest.rstrip("/") + "/"
            exclude = (".corral", ".git") if match == "." else ()
            state.steps.append(CopyStep(src=match, dest=target, mode=mode, owner=owner,
                                        exclude=exclude))


def _expand(source: str, context: Path, add: bool, ignore: IgnoreRules) -> list[str]:
    if re.match(r"^[a-z][a-z0-9+.-]*://", source):
        raise ValueError(f"{source!r} is a URL; ADD takes local files only (download it in "
                         "the build context, or in a RUN step with network)")
    if source.startswith("/") or ".." in source.split("/"):
        raise ValueError(f"{source!r} is outside the build context")
    if add and source.endswith(_ARCHIVES):
        raise ValueError(f"{source!r}: ADD does not unpack archives in corral; COPY it and "
                         "unpack it in a RUN step")
    if not glob.has_magic(source):
        if source.strip("/") not in ("", ".") and ignore.ignored(source):
            raise ValueError(f"{source!r} is excluded by .dockerignore")
        return [source.rstrip("/") or "."]
    matches = sorted(m for m in glob.glob(source, root_dir=context) if not ignore.ignored(m))
    if not matches:
        raise ValueError(f"{source!r} matches no file in {context}")
    return matches


def _owner(chown: str | None) -> str | None:
    if chown is None:
        return None
    if not re.fullmatch(r"\d+(:\d+)?", chown):
        raise ValueError(f"--chown={chown}: use numeric uid[:gid]; user names need the "
                         "image's /etc/passwd, which corral does not read")
    return chown


def _run(state: _State, args: str, site: _Site) -> None:
    flags, words = split_flags(args.split(" "), ("network",))
    command = " ".join(words).strip()
    if command.startswith("["):
        command = shlex.join(json_list(command))
    if "<<" in command and re.search(r"<<-?\s*['\"]?[A-Z]+", command):
        raise ValueError("heredocs are not supported; put the script in a file and COPY it")
    if state.user not in (None, "0", "root", "0:0"):
        raise ValueError(f"RUN after USER {state.user} is not supported (build steps run as "
                         "root); move USER below the RUN lines")
    network = flags.get("network", "none")
    if network not in ("none", "default", "host"):
        raise ValueError(f"--network={network}: use none (the default), default or host")
    env = {**state.args, **state.env}
    state.steps.append(PlanRun(RunStep(command=command, network=network != "none"), env,
                               state.workdir))


def _env(state: _State, args: str, site: _Site) -> None:
    state.env.update(pairs(args, _values(state), legacy=True))


def _arg(state: _State, args: str, site: _Site) -> None:
    name, has_default, default = args.strip().partition("=")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"{name!r} is not a valid argument name")
    state.declared.add(name)
    if name in state.build_args:
        state.args[name] = state.build_args[name]
    elif has_default:
        words = shlex.split(default)
        state.args[name] = substitute(words[0] if words else "", _values(state))
    else:
        state.args.setdefault(name, "")


def _workdir(state: _State, args: str, site: _Site) -> None:
    folder = substitute(args.strip(), _values(state))
    state.workdir = posixpath.normpath(posixpath.join(state.workdir, folder))
    state.workdir_set = True


def _user(state: _State, args: str, site: _Site) -> None:
    state.user = substitute(args.strip(), _values(state)) or None


def _entrypoint(state: _State, args: str, site: _Site) -> None:
    state.entrypoint = command_form(args)
    state.cmd = None  # as in Docker: a new ENTRYPOINT drops the CMD written before it


def _cmd(state: _State, args: str, site: _Site) -> None:
    state.cmd = command_form(args)


def _expose(state: _State, args: str, site: _Site) -> None:
    for word in substitute(args, _values(state)).split():
        number, _, protocol = word.partition("/")
        if protocol not in ("", "tcp") or not number.isdigit():
            raise ValueError(f"{word!r}: only tcp ports (8000 or 8000/tcp) are supported")
        state.ports.append(int(number))


def _healthcheck(state: _State, args: str, site: _Site) -> None:
    state.healthcheck = parse_instruction(args)


def _label(state: _State, args: str, site: _Site) -> None:
    state.labels.update(pairs(args, _values(state), legacy=False))


def _values(state: _State) -> dict[str, str]:
    return {**state.args, **state.env}


_HANDLERS: dict[str, Callable[[_State, str, _Site], None]] = {
    "FROM": _from, "COPY": _copy, "ADD": lambda s, a, site: _copy(s, a, site, add=True),
    "RUN": _run, "ENV": _env, "ARG": _arg, "WORKDIR": _workdir, "USER": _user,
    "ENTRYPOINT": _entrypoint, "CMD": _cmd, "EXPOSE": _expose, "LABEL": _label,
    "HEALTHCHECK": _healthcheck,
}
