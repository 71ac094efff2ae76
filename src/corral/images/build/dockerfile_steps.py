"""What each Dockerfile instruction inside a stage means: steps (COPY, ADD, RUN) and metadata.

A Stage collects one `FROM … [AS name]` section into a BuildPlan. Handlers take the parsed
Node (dockerfile_parser.py) and raise ValueError for what corral does not build, which
dockerfile.py turns into an ImageError naming file and line. No I/O beyond globbing the
build context.
"""

from __future__ import annotations

import glob
import posixpath
import re
import shlex
import signal
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from corral.images.build.dockerfile_parser import Node
from corral.images.build.dockerfile_syntax import substitute
from corral.images.build.dockerfile_words import expand_word, shell_words
from corral.images.build.dockerignore import IgnoreRules
from corral.images.build.healthcheck import parse_instruction
from corral.images.build.plan import (
    BindMount,
    BuildPlan,
    CacheMount,
    PlanCopyFrom,
    PlanFetch,
    PlanFile,
    PlanRun,
    PlanStep,
    PlanUnpack,
)
from corral.spec.model import CopyStep, ImageHealthcheckSpec, ImageSpec, RunStep

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_ARCHIVES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst")
DEFAULT_SHELL = ("/bin/sh", "-c")
_HEREDOC_WORD = re.compile(r"^\d*<<-?")


@dataclass(frozen=True)
class StageSite:
    """Where an instruction is and what it may reach: the context, its ignore rules, the
    escape character and how an image reference becomes a base string."""

    where: str
    context: Path
    ignore: IgnoreRules
    escape: str = "\\"
    image_base: Callable[[str], str] = lambda ref: ref


@dataclass
class Stage:
    index: int
    name: str
    base: str
    global_args: dict[str, str]
    build_args: dict[str, str]
    escape: str = "\\"
    ignore: IgnoreRules | None = None
    inherited: Stage | None = None  # FROM an earlier stage: its environment carries over
    named: dict[str, int] = field(default_factory=dict)  # earlier stages, for COPY --from
    # The base image's runtime "config", asked for only when an instruction needs its Env or
    # WorkingDir: a stage the target never reads pulls nothing while it is planned.
    base_config: Callable[[], dict[str, Any]] = lambda: {}
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    own_workdir: str | None = None  # WORKDIR as this stage (or the stage it is FROM) set it
    workdir_set: bool = False
    user: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    ports: list[int] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    healthcheck: ImageHealthcheckSpec | None = None
    shell: tuple[str, ...] = DEFAULT_SHELL
    stop_signal: str | None = None
    author: str | None = None  # MAINTAINER (deprecated by Docker, still written)
    steps: list[PlanStep] = field(default_factory=list)
    sites: list[str] = field(default_factory=list)  # "Dockerfile:LINE" of each step
    declared: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.inherited is not None:
            before = self.inherited
            self.base_config = lambda: {"Env": [f"{k}={v}" for k, v in before.values().items()],
                                        "WorkingDir": before.workdir}
            self.own_workdir, self.shell, self.user = before.own_workdir, before.shell, \
                before.user

    @property
    def workdir(self) -> str:
        """Where relative paths and RUN start: WORKDIR, else the base image's, else /."""
        if self.own_workdir is None:
            self.own_workdir = str(self.base_config().get("WorkingDir") or "/")
        return self.own_workdir

    def values(self) -> Mapping[str, str]:
        """What $NAME expands to here: ENVs, then ARGs, then the base image's Env (read only
        when a name is not found in the first two)."""
        return _Values({**self.args, **self.env}, self.base_config)

    def expand(self, word: str) -> str:
        return expand_word(word, self.values(), self.escape)

    def plan(self, image: ImageSpec) -> BuildPlan:
        metadata = ImageSpec.model_validate({
            "env": self.env, "workdir": self.workdir if self.workdir_set else None,
            "user": self.user, "entrypoint": self.entrypoint, "cmd": self.cmd,
            "ports": sorted(set(self.ports)), "labels": self.labels,
            "healthcheck": self.healthcheck})
        packages = image.packages if self.base.startswith("debian:") else ()
        return BuildPlan(base=self.base, packages=tuple(packages), mirror=image.mirror,
                         steps=tuple(self.steps), metadata=metadata, ignore=self.ignore or None,
                         stop_signal=self.stop_signal, author=self.author, name=self.name,
                         sites=tuple(self.sites))


class _Values(Mapping[str, str]):
    """This stage's names, with the base image's Env behind them, fetched on a miss."""

    def __init__(self, own: dict[str, str], base: Callable[[], dict[str, Any]]) -> None:
        self.own, self.base = own, base
        self.below: dict[str, str] | None = None

    def _base_env(self) -> dict[str, str]:
        if self.below is None:
            env = self.base().get("Env") or []
            self.below = dict(str(item).partition("=")[::2] for item in env)
        return self.below

    def __getitem__(self, name: str) -> str:
        return self.own[name] if name in self.own else self._base_env()[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**self._base_env(), **self.own})

    def __len__(self) -> int:
        return len({**self._base_env(), **self.own})


def _flags(node: Node, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """Flag values by name (repeatable flags keep every value)."""
    found: dict[str, list[str]] = {}
    for flag in node.flags:
        name, _, value = flag[2:].partition("=")
        if name not in allowed:
            raise ValueError(f"the flag --{name} is not supported (only "
                             f"{', '.join('--' + a for a in allowed) or 'none'})")
        found.setdefault(name, []).append(value)
    return found


def _words(stage: Stage, node: Node) -> list[str]:
    """Arguments with quotes removed and variables expanded (JSON form: expanded only)."""
    if node.is_json:
        return [substitute(word, stage.values()) for word in node.words]
    raw = shell_words(node.args, raw_quotes=True, escape=stage.escape, keep_escapes=True)
    return [stage.expand(word) for word in raw]


def _copy(stage: Stage, node: Node, site: StageSite, *, add: bool = False) -> None:
    flags = {name: [stage.expand(v) for v in values] for name, values in _flags(
        node, ("chown", "chmod", "link", "checksum") if add else
        ("chown", "chmod", "link", "from")).items()}
    mode = int(flags["chmod"][-1], 8) if "chmod" in flags else None
    owner = _owner(flags["chown"][-1] if "chown" in flags else None)
    words = _words(stage, node)
    if len(words) < 2:
        raise ValueError("needs at least one source and a destination")
    *sources, dest = words
    into_folder = dest.endswith(("/", "/.")) or dest == "." or len(sources) > 1
    dest = posixpath.normpath(posixpath.join(stage.workdir, dest))
    dest = dest + "/" if into_folder and dest != "/" else dest
    if node.heredocs:
        _copy_heredocs(stage, node, sources, dest, mode, owner)
    elif "from" in flags:
        source = _copy_source(stage, flags["from"][-1], site)
        stage.steps.append(PlanCopyFrom(tuple(posixpath.join("/", s) for s in sources), dest,
                                        source, mode, owner))
    elif add and any(_URL.match(source) for source in sources):
        _add_urls(stage, sources, dest, flags.get("checksum", [None])[-1], mode, owner)
    else:
        if "checksum" in flags:
            raise ValueError("--checksum applies to a URL")
        _copy_local(stage, sources, dest, into_folder, mode, owner, site, add)


def _add_urls(stage: Stage, sources: list[str], dest: str, checksum: str | None,
              mode: int | None, owner: str | None) -> None:
    """ADD URL: an http(s) file, named by the last part of its path in a folder dest."""
    if not all(_URL.match(source) for source in sources):
        raise ValueError("ADD takes URLs or context files, not both in one instruction")
    if checksum is not None and (len(sources) > 1 or
                                 not re.fullmatch(r"sha256:[0-9a-f]{64}", checksum)):
        raise ValueError(f"--checksum={checksum}: one URL and sha256:<64 hex digits>")
    for url in sources:
        scheme = url.partition(":")[0].lower()
        if scheme not in ("http", "https") or url.endswith(".git") or "@" in url.split("/")[2]:
            raise ValueError(f"{url!r}: ADD fetches http and https files only (no git "
                             "repositories, no credentials in URLs)")
        name = posixpath.basename(urllib.parse.urlsplit(url).path)
        if dest.endswith("/") and not name:
            raise ValueError(f"{url!r} names no file: give the destination's file name")
        stage.steps.append(PlanFetch(url, dest + name if dest.endswith("/") else dest,
                                     checksum, mode, owner))


def _copy_source(stage: Stage, name: str, site: StageSite) -> str:
    if name.lower() in stage.named:
        return f"stage:{stage.named[name.lower()]}"
    if name.isdigit():
        raise ValueError(f"--from={name}: there is no stage {name} before this one")
    return site.image_base(name)


def _copy_heredocs(stage: Stage, node: Node, sources: list[str], dest: str, mode: int | None,
                   owner: str | None) -> None:
    docs = {doc.name: doc for doc in node.heredocs}
    for source in sources:
        name = _HEREDOC_WORD.sub("", source).strip("'\"")
        doc = docs.get(name)
        if doc is None:
            raise ValueError(f"{source!r}: COPY takes either heredocs or context files, "
                             "not both")
        # Only variables expand in a heredoc (unless its name was quoted); quotes are content.
        content = substitute(doc.content, stage.values()) if doc.expand else doc.content
        target = dest + name if dest.endswith("/") else dest
        stage.steps.append(PlanFile(target, content, mode, owner))


def _copy_local(stage: Stage, sources: list[str], dest: str, into_folder: bool,
                mode: int | None, owner: str | None, site: StageSite, add: bool) -> None:
    for source in sources:
        for match in _expand(source, site.context, add, site.ignore):
            is_dir = (site.context / match).is_dir()
            if add and not is_dir and match.endswith(_ARCHIVES):
                if mode is not None or owner is not None:
                    raise ValueError(f"{match!r} is unpacked with the owners and modes its "
                                     "archive gives; --chown and --chmod apply to files only")
                if match.endswith(".tar.zst"):
                    raise ValueError(f"{match!r}: zstd archives are not unpacked (use gzip, "
                                     "bzip2 or xz, or COPY it and unpack it in a RUN step)")
                stage.steps.append(PlanUnpack(match, dest.rstrip("/") or "/"))
                continue
            target = dest if is_dir or not into_folder else dest.rstrip("/") + "/"
            exclude = (".corral", ".git") if match == "." else ()
            stage.steps.append(CopyStep(src=match, dest=target, mode=mode, owner=owner,
                                        exclude=exclude))


def _expand(source: str, context: Path, add: bool, ignore: IgnoreRules) -> list[str]:
    if _URL.match(source):
        raise ValueError(f"{source!r} is a URL; COPY takes local files only (ADD fetches "
                         "URLs)")
    if source.startswith("/") or ".." in source.split("/"):
        raise ValueError(f"{source!r} is outside the build context")
    if not glob.has_magic(source):
        if source.strip("/") not in ("", ".") and ignore.ignored(source):
            raise ValueError(f"{source!r} is excluded by .dockerignore")
        return [source.rstrip("/") or "."]
    matches = sorted(m for m in glob.glob(source, root_dir=context) if not ignore.ignored(m))
    if not matches:
        raise ValueError(f"{source!r} matches no file in {context}")
    return matches


def _owner(chown: str | None) -> str | None:
    """`--chown` as written: numbers, or names the build resolves from the stage's
    /etc/passwd and /etc/group when it makes the layer (passwd.resolve_chown)."""
    if chown is None:
        return None
    if not re.fullmatch(r"[^:\s]+(:[^:\s]+)?", chown):
        raise ValueError(f"--chown={chown}: use user[:group], by name or number")
    return chown


def _run(stage: Stage, node: Node, site: StageSite) -> None:
    flags = _flags(node, ("network", "mount"))
    network = flags.get("network", ["default"])[-1]  # Docker's default: the network
    if network not in ("none", "default", "host"):
        raise ValueError(f"--network={network}: use default (the default), none or host")
    mounts = [_mount(stage.expand(value), stage, site) for value in flags.get("mount", [])]
    caches = tuple(m for m in mounts if isinstance(m, CacheMount))
    binds = tuple(m for m in mounts if isinstance(m, BindMount))
    tmpfs = tuple(m for m in mounts if isinstance(m, str))
    command, argv = _run_command(stage, node)
    env = {**stage.args, **stage.env}
    user = None if stage.user in (None, "0", "root", "0:0", "root:root") else stage.user
    stage.steps.append(PlanRun(RunStep(command=command, network=network != "none"), env,
                               stage.workdir, argv, caches=caches, binds=binds, user=user,
                               tmpfs=tmpfs))


def _run_command(stage: Stage, node: Node) -> tuple[str, tuple[str, ...] | None]:
    """(the command text, the exact argv when it is not `/bin/sh -c command`)."""
    if node.is_json:
        if not node.words:
            raise ValueError("the exec form needs a program")
        return shlex.join(node.words), None
    command = node.args
    if node.heredocs:
        only = len(node.heredocs) == 1 and _HEREDOC_WORD.match(command.strip()) and \
            len(command.split()) == 1
        doc = node.heredocs[0]
        if only and not doc.content.startswith("#!"):
            command = _chomp(doc.content) if doc.chomp else doc.content
        else:  # the shell reads the heredocs itself, as it would in a script
            if only:
                command = 'f=$(mktemp) && cat > "$f" ' + command + ' && chmod +x "$f" && "$f"'
            command += "\n" + "".join(f"{d.content}{d.name}\n" for d in node.heredocs)
    if not command.strip():
        raise ValueError("needs a command")
    return command, None if stage.shell == DEFAULT_SHELL else (*stage.shell, command)


def _chomp(content: str) -> str:
    return re.sub(r"(?m)^\t+", "", content)


def _mount(value: str, stage: Stage, site: StageSite) -> CacheMount | BindMount | str:
    """A cache mount, a bind mount, or a tmpfs mount's target."""
    options = dict(part.partition("=")[::2] for part in value.split(",") if part)
    kind = options.pop("type", "bind")
    if kind == "cache":
        return _cache_mount(options)
    if kind == "bind":
        return _bind_mount(options, stage, site)
    if kind == "tmpfs":
        target = _pop_target(options)
        options.pop("size", None)  # a tmpfs grows as it is written; no limit is kept
        if not target or options:
            raise ValueError("--mount=type=tmpfs takes target=PATH (and size, ignored)")
        return _in_workdir(stage, target)
    raise ValueError(f"--mount=type={kind} is not supported (only cache, bind and tmpfs; "
                     "secrets are given to instances at start, never to builds)")


def _bind_mount(options: dict[str, str], stage: Stage, site: StageSite) -> BindMount:
    """BuildKit's bind mount: source (default: the whole context or root), target (relative
    to the workdir), from (a stage or an image; default: the build context), readonly/ro
    (the default) or rw/readwrite (writes thrown away)."""
    target = _pop_target(options)
    if not target:
        raise ValueError("--mount=type=bind needs target=PATH")
    source = options.pop("source", None) or options.pop("src", None) or "."
    origin = options.pop("from", None)
    writable = False
    for flag in ("rw", "readwrite"):
        if flag in options:
            writable = options.pop(flag) in ("", "true")
    for flag in ("ro", "readonly"):
        if flag in options:
            writable = options.pop(flag) not in ("", "true")
    if options:
        raise ValueError(f"--mount=type=bind: option(s) {', '.join(sorted(options))} are "
                         "not supported (only source, target, from, rw, readonly)")
    if origin is None:
        if source.startswith("/") or ".." in source.split("/"):
            raise ValueError(f"--mount=type=bind,source={source} is outside the build "
                             "context")
        return BindMount(source=posixpath.normpath(source), target=_in_workdir(stage, target),
                         writable=writable)
    return BindMount(source=posixpath.normpath(posixpath.join("/", source)),
                     target=_in_workdir(stage, target),
                     origin=_copy_source(stage, origin, site), writable=writable)


def _pop_target(options: dict[str, str]) -> str:
    return options.pop("target", "") or options.pop("dst", "") or \
        options.pop("destination", "")


def _in_workdir(stage: Stage, target: str) -> str:
    return posixpath.normpath(posixpath.join(stage.workdir, target))


def _cache_mount(options: dict[str, str]) -> CacheMount:
    target = _pop_target(options)
    if not target.startswith("/"):
        raise ValueError("--mount=type=cache needs target=/absolute/path")
    cache_id = options.pop("id", "") or target
    options.pop("sharing", None)  # one build runs at a time per project: always "locked"
    access = _cache_access(options.pop("uid", None), options.pop("gid", None),
                           options.pop("mode", None))
    if options:
        raise ValueError(f"--mount=type=cache: option(s) {', '.join(sorted(options))} are "
                         "not supported (only target, id, sharing, uid, gid, mode)")
    return CacheMount(id=cache_id, target=posixpath.normpath(target), access=access)


def _cache_access(uid: str | None, gid: str | None,
                  mode: str | None) -> tuple[int, int, int] | None:
    """BuildKit's uid=, gid= (numbers, default 0) and mode= (octal, default 0755)."""
    if uid is None and gid is None and mode is None:
        return None
    for name, value in (("uid", uid), ("gid", gid)):
        if value is not None and not value.isdigit():
            raise ValueError(f"--mount=type=cache: {name}={value} is not a number")
    if mode is not None and not re.fullmatch(r"0?[0-7]{3,4}", mode):
        raise ValueError(f"--mount=type=cache: mode={mode} is not an octal mode (e.g. 0755)")
    return int(uid or 0), int(gid or 0), int(mode or "755", 8)


def _env(stage: Stage, node: Node, site: StageSite) -> None:
    pairs = _pairs(stage, node)
    try:  # the names the spec's env accepts, so the plan's metadata always validates
        ImageSpec(env=pairs)
    except ValidationError as exc:
        raise ValueError(str(exc.errors()[0]["msg"]).removeprefix("Value error, ")) from None
    stage.env.update(pairs)


def _label(stage: Stage, node: Node, site: StageSite) -> None:
    stage.labels.update(_pairs(stage, node))


def _pairs(stage: Stage, node: Node) -> dict[str, str]:
    values = node.words
    if not values:
        raise ValueError("needs KEY=VALUE")
    return {stage.expand(values[i]): stage.expand(values[i + 1])
            for i in range(0, len(values), 3)}


def split_arg(word: str) -> tuple[str, bool, str]:
    """`ARG NAME[=DEFAULT]`'s word as (name, has a default, default); a bad name is an error.

    >>> split_arg("VERSION=1.2"), split_arg("DEBUG")
    (('VERSION', True, '1.2'), ('DEBUG', False, ''))
    """
    name, has_default, default = word.partition("=")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"{name!r} is not a valid argument name")
    return name, bool(has_default), default


def _arg(stage: Stage, node: Node, site: StageSite) -> None:
    for word in node.words:
        name, has_default, default = split_arg(word)
        stage.declared.add(name)
        if name in stage.build_args:
            stage.args[name] = stage.build_args[name]
        elif has_default:
            stage.args[name] = stage.expand(default)
        else:  # ARG NAME inside a stage brings in the value of a global ARG NAME
            stage.args[name] = stage.global_args.get(name, stage.args.get(name, ""))


def _workdir(stage: Stage, node: Node, site: StageSite) -> None:
    stage.own_workdir = posixpath.normpath(posixpath.join(stage.workdir,
                                                          stage.expand(node.args)))
    stage.workdir_set = True


def _user(stage: Stage, node: Node, site: StageSite) -> None:
    stage.user = stage.expand(node.args) or None


def _command(stage: Stage, node: Node) -> tuple[str, ...]:
    if node.flags:
        raise ValueError(f"{node.name} takes no flags ({node.flags[0]})")
    if node.is_json:
        return node.words
    if not node.args:
        raise ValueError("needs a command")
    return (*stage.shell, node.args)


def _entrypoint(stage: Stage, node: Node, site: StageSite) -> None:
    stage.entrypoint = _command(stage, node)
    stage.cmd = None  # as in Docker: a new ENTRYPOINT drops the CMD written before it


def _cmd(stage: Stage, node: Node, site: StageSite) -> None:
    stage.cmd = _command(stage, node)


def _shell(stage: Stage, node: Node, site: StageSite) -> None:
    if not node.is_json or not node.words:
        raise ValueError('SHELL takes the JSON form, e.g. SHELL ["/bin/bash", "-c"]')
    stage.shell = node.words


def _stopsignal(stage: Stage, node: Node, site: StageSite) -> None:
    name = stage.expand(node.args)
    if not is_signal(name):
        raise ValueError(f"{name!r} is not a signal (use a name like SIGINT or a number)")
    stage.stop_signal = name


def is_signal(name: str) -> bool:
    """SIGQUIT, QUIT and 3 all name a signal; SIGRTMIN+3 and the like are refused."""
    if name.isdigit():
        return int(name) in {s.value for s in signal.Signals}
    text = name.upper()
    return (text if text.startswith("SIG") else "SIG" + text) in signal.Signals.__members__


def _maintainer(stage: Stage, node: Node, site: StageSite) -> None:
    """Docker's deprecated MAINTAINER: the config's `author`, as Docker writes it."""
    stage.author = stage.expand(node.args).strip() or None


def _volume(stage: Stage, node: Node, site: StageSite) -> None:
    paths = _words(stage, node)
    example = ", ".join(f'{posixpath.basename(p.rstrip("/")) or "data"} = "{p}"'
                        for p in paths)
    raise ValueError(f"images carry no volumes in corral; declare them on the service "
                     f"instead: [services.NAME] volumes = {{ {example} }}")


def _expose(stage: Stage, node: Node, site: StageSite) -> None:
    for word in _words(stage, node):
        number, _, protocol = word.partition("/")
        if protocol not in ("", "tcp") or not number.isdigit():
            raise ValueError(f"{word!r}: only tcp ports (8000 or 8000/tcp) are supported")
        stage.ports.append(int(number))


def _healthcheck(stage: Stage, node: Node, site: StageSite) -> None:
    stage.healthcheck = parse_instruction(" ".join([*node.flags, node.args]).strip())


STEP_HANDLERS: dict[str, Callable[[Stage, Node, StageSite], None]] = {
    "COPY": _copy, "ADD": lambda s, n, site: _copy(s, n, site, add=True),
    "RUN": _run, "ENV": _env, "ARG": _arg, "WORKDIR": _workdir, "USER": _user,
    "ENTRYPOINT": _entrypoint, "CMD": _cmd, "EXPOSE": _expose, "LABEL": _label,
    "HEALTHCHECK": _healthcheck, "SHELL": _shell, "STOPSIGNAL": _stopsignal,
    "VOLUME": _volume, "MAINTAINER": _maintainer,
}
