"""Dockerfiles read into a build plan: stages, each a base, ordered steps and image metadata.

Supports FROM (scratch, debian:SUITE as the debootstrap base, an image built by corral, an
image in a registry, an earlier stage; `AS name`), COPY/ADD (local files, `--from`,
heredocs), RUN (`--network`, `--mount=type=cache`, heredocs), SHELL, ENV, ARG, WORKDIR, USER,
ENTRYPOINT, CMD, EXPOSE, LABEL, HEALTHCHECK, STOPSIGNAL and the `# syntax=` / `# escape=`
directives. Everything else is an ImageError naming the file, line and instruction. It
parses and maps; it never builds (builder.py runs the plan with the step machinery the spec
keys use) and never reaches a registry (a reference becomes an `oci:` base string).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from corral.errors import CorralError, ImageError
from corral.images.build.dockerfile_parser import (
    Node,
    ParsedDockerfile,
    ParseError,
    parse_dockerfile,
)
from corral.images.build.dockerfile_steps import STEP_HANDLERS, Stage, StageSite, split_arg
from corral.images.build.dockerfile_words import expand_word
from corral.images.build.dockerignore import read_ignore_file
from corral.images.build.plan import BuildPlan
from corral.spec.model import ImageSpec

_UNSUPPORTED_HINTS = {
    "ONBUILD": "corral images do not carry triggers; put the steps in this Dockerfile",
}

LocalImage = Callable[[str], str | None]  # "NAME[:TAG]" -> a base string, or None
BaseConfig = Callable[[str], dict[str, Any]]  # a base string -> its runtime "config"


@dataclass
class _File:
    """What the whole Dockerfile shares: the ARGs before the first FROM, the stages so far."""

    build_args: dict[str, str]
    global_args: dict[str, str] = field(default_factory=dict)
    declared: set[str] = field(default_factory=set)
    stages: list[Stage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def plan_dockerfile(path: Path, context: Path, image: ImageSpec, local_image: LocalImage,
                    base_config: BaseConfig | None = None) -> BuildPlan:
    """The build plan of the Dockerfile at `path` for `image.target` (default: the last
    stage); `image` brings packages, mirror, build args and the default registry.
    `base_config` gives a registry or local base's config (its Env expands $VARs, as in
    Docker); without it such a base counts as empty."""
    parsed = _parse(path)
    ignore = read_ignore_file(context, path)
    whole = _File(build_args=dict(image.build_args))
    if "syntax" in parsed.directives:
        whole.notes.append(f"{path.name}: # syntax={parsed.directives['syntax']} is ignored; "
                           "corral reads the Dockerfile with its own parser")
    def resolve(ref: str) -> str:
        """An image reference as a base string; a default-registry one is said out loud."""
        base = image_base(ref, image.default_registry, local_image)
        if base.startswith("oci:") and not has_registry_host(ref):
            whole.notes.append(f"{ref}: pulled from {base[len('oci:'):]} "
                               f"(default_registry {image.default_registry})")
        return base

    for node in parsed.nodes:
        where = f"{path.name}:{node.line}"
        try:
            _dispatch(whole, node, StageSite(where, context, ignore, parsed.escape, resolve),
                      base_config or (lambda _: {}))
        except ValueError as exc:
            written = " ".join([*node.flags, node.args])
            raise ImageError(f"{where}: {node.name} {written}: {exc}",
                             hint="see docs/commands/build.md for the supported forms") from None
    if not whole.stages:
        raise ImageError(f"{path.name}: no FROM line", hint="start with FROM scratch, FROM "
                         "debian:bookworm, FROM an image built by corral or FROM a registry "
                         "image")
    return _target_plan(path, whole, image)


def _parse(path: Path) -> ParsedDockerfile:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ImageError(f"dockerfile {path}: cannot be read ({exc.strerror})",
                         hint="`dockerfile` is a path relative to the spec's folder") from None
    try:
        return parse_dockerfile(text)
    except ParseError as exc:
        if exc.message == "file with no instructions":
            raise ImageError(f"{path.name}: no FROM line", hint="start with FROM scratch, FROM "
                             "debian:bookworm or FROM a registry image") from None
        raise ImageError(f"{path.name}:{exc.line}: {exc.message}",
                         hint="see docs/commands/build.md for the Dockerfile syntax") from None


def _dispatch(whole: _File, node: Node, site: StageSite, base_config: BaseConfig) -> None:
    name = node.name
    if name == "FROM":
        whole.stages.append(_from(whole, node, site, base_config))
        return
    if name == "ARG" and not whole.stages:
        _global_arg(whole, node)
        return
    handler = STEP_HANDLERS.get(name)
    if handler is None:
        hint = _UNSUPPORTED_HINTS.get(name, "see docs/commands/build.md for what is supported")
        raise ImageError(f"{site.where}: {name} is not supported by corral", hint=hint)
    if not whole.stages:
        raise ImageError(f"{site.where}: {name} before FROM",
                         hint="a Dockerfile starts with FROM (ARG may come before it)")
    stage = whole.stages[-1]
    handler(stage, node, site)
    stage.sites += [site.where] * (len(stage.steps) - len(stage.sites))
    whole.declared |= stage.declared


def _global_arg(whole: _File, node: Node) -> None:
    for word in node.words:
        name, has_default, default = split_arg(word)
        whole.declared.add(name)
        if name in whole.build_args:
            whole.global_args[name] = whole.build_args[name]
        elif has_default:
            whole.global_args[name] = expand_word(default, whole.global_args)
        else:
            whole.global_args.setdefault(name, "")


def _from(whole: _File, node: Node, site: StageSite, base_config: BaseConfig) -> Stage:
    for flag in node.flags:
        name, _, value = flag.partition("=")
        if name != "--platform":
            raise ValueError(f"the flag {name} is not supported")
        _check_platform(value)
    words = node.words
    if len(words) == 3 and words[1].lower() == "as":
        ref, name = expand_word(words[0], whole.global_args), words[2].lower()
    elif len(words) == 1:
        ref, name = expand_word(words[0], whole.global_args), str(len(whole.stages))
    else:
        raise ValueError("use FROM IMAGE or FROM IMAGE AS NAME")
    if any(stage.name == name for stage in whole.stages):
        raise ValueError(f"a stage named {name!r} is already defined")
    base = _base_of(ref, whole, site)
    inherited = _stage_of(whole, base)
    where = site.where

    def config() -> dict[str, Any]:
        if not base.startswith(("oci:", "layout:")):
            return {}
        try:
            return base_config(base)
        except CorralError as exc:  # named at the FROM that needs it
            raise type(exc)(f"{where}: FROM {ref}: {exc.message}", hint=exc.hint) from None

    return Stage(index=len(whole.stages), name=name, base=base, global_args=whole.global_args,
                 build_args=whole.build_args, escape=site.escape, ignore=site.ignore,
                 inherited=inherited, named=_stage_names(whole), base_config=config)


def _check_platform(value: str) -> None:
    """--platform=$BUILDPLATFORM (or the host's own platform) is what corral builds anyway."""
    from corral.images.build.debian import host_architecture

    host = f"linux/{host_architecture()}"
    if value not in ("", host) and not value.startswith("$"):
        raise ValueError(f"--platform={value}: corral builds for this machine ({host}) only")


def _stage_of(whole: _File, base: str) -> Stage | None:
    return whole.stages[int(base[len("stage:"):])] if base.startswith("stage:") else None


def _stage_names(whole: _File) -> dict[str, int]:
    names = {stage.name: stage.index for stage in whole.stages}
    return {**names, **{str(stage.index): stage.index for stage in whole.stages}}


def _base_of(ref: str, whole: _File, site: StageSite) -> str:
    """The base string of a FROM reference: an earlier stage, scratch, debian:SUITE (the
    debootstrap root), an image built by corral, or a registry image (`oci:`)."""
    for stage in whole.stages:
        if stage.name == ref.lower():
            return f"stage:{stage.index}"
    if ref == "scratch" or re.fullmatch(r"debian:[a-z]+", ref):
        return ref
    return site.image_base(ref)


def image_base(ref: str, default_registry: str | None, local_image: LocalImage) -> str:
    """The base string of an image reference that is not a stage (used by FROM and by
    COPY --from): with a registry host, that registry; else an image built by corral, else
    the default registry (Docker Hub's `library/` prefix added to one-word names)."""
    if has_registry_host(ref):
        return f"oci:{ref}"
    local = local_image(ref)
    if local is not None:
        return local
    if default_registry:
        path = ref if "/" in ref.partition(":")[0].partition("@")[0] else f"library/{ref}"
        return f"oci:{default_registry.rstrip('/')}/{path}"
    raise ValueError(f"{ref!r} names no registry host, is not an image built by corral, and "
                     "no default registry is set (corral never pulls from Docker Hub "
                     "silently)")


def has_registry_host(ref: str) -> bool:
    """Docker's rule: the first path part is a host if it has a '.' or a ':' or is
    localhost (`127.0.0.1:5000/app`, `ghcr.io/x/y`; not `library/python`)."""
    first, slash, _ = ref.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _target_plan(path: Path, whole: _File, image: ImageSpec) -> BuildPlan:
    names = {stage.name: stage.index for stage in whole.stages}
    target = image.target
    if target is None:
        index = len(whole.stages) - 1
    elif target.lower() in names:
        index = names[target.lower()]
    else:
        raise ImageError(f"{path.name}: no stage named {target!r} (--target)",
                         hint=f"stages: {', '.join(sorted(names))}")
    plans = [stage.plan(image) for stage in whole.stages[:index + 1]]
    if image.packages and not any(p.base.startswith("debian:") for p in plans):
        raise ImageError(f"{path.name}: packages are listed in the spec but no FROM is "
                         "debian:SUITE", hint="remove `packages`, or use FROM debian:bookworm")
    unused = sorted(set(whole.build_args) - whole.declared)
    warnings = (f"build arg(s) {', '.join(unused)} not consumed: {path.name} has no ARG of "
                "that name",) if unused else ()
    final = plans[index]
    return replace(final, stages=tuple(plans[:index]), warnings=warnings,
                   notes=tuple(whole.notes) + final.notes)
