"""`run` steps: a shell command in a bubblewrap sandbox over a writable copy of the image root.

What the command changes (new, changed and deleted paths) becomes one layer; deletions are
OCI whiteouts (`.wh.NAME`). The network is off unless the step asks for it. This module runs
and diffs; caching is the builder's business.
"""

from __future__ import annotations

import os
import posixpath
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from corral.errors import ImageError
from corral.images.build.layer import Compression, Entry, Kind, Layer, pack, source_date_epoch
from corral.images.build.run_user import RunAs, as_user, identity_userns, namespace_args
from corral.images.roots.unpack import apply_layer, remove_tree, unpack_image
from corral.spec.model import RunStep

# Paths bubblewrap creates as mount points when the image has none; they are sandbox
# plumbing, not image content.
MOUNTPOINTS = frozenset({"dev", "proc", "tmp", "etc/resolv.conf"})


@dataclass(frozen=True)
class PathStat:
    kind: str
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ino: int
    link: str


# Tools that honour these write the same bytes on every run: no stray stdlib .pyc files
# (their marshal output varies), hash-based .pyc for compileall, a fixed hash seed.
BUILD_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}


class Sandbox:
    """A writable root made from `layers`, kept across consecutive run steps of one build."""

    def __init__(self, layers: list[Path], scratch: Path) -> None:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise ImageError("run steps need bubblewrap, which is not installed",
                             hint="apt-get install bubblewrap")
        self.bwrap = bwrap
        scratch.mkdir(parents=True, exist_ok=True)
        self.work = scratch / f"run-{os.getpid()}-{secrets.token_hex(4)}"
        self.root = unpack_image(layers, self.work / "root")

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_: object) -> None:
        remove_tree(self.work)

    def apply(self, layer: Path) -> None:
        """Bring the root up to date with a layer taken from the step cache."""
        apply_layer(layer, self.root)

    def run(self, step: RunStep, env: dict[str, str], workdir: str, blobs: Path,
            compression: Compression = "none", *, argv: tuple[str, ...] | None = None,
            binds: list[Bind] | None = None,
            user: RunAs | None = None) -> tuple[Layer, Path, int]:
        """Run `step` (or `argv`, the program exactly) as `user` (root by default);
        return its layer, the blob's tmp path and how many paths changed. `binds` are
        mounted for this step only, so what is written there stays out of the layer."""
        before = snapshot(self.written)
        run_in_sandbox(self.bwrap, self.root, step, env, workdir, argv, binds or [], user)
        entries = self.changes(before, snapshot(self.written), user)
        layer, tmp = pack(entries, blobs, compression=compression)
        return layer, tmp, len(entries)

    @property
    def written(self) -> Path:
        """The folder a step's writes land in, snapshotted before and after it: the root."""
        return self.root

    def changes(self, before: dict[str, PathStat], after: dict[str, PathStat],
                user: RunAs | None) -> list[Entry]:
        """The layer entries for what a step changed between the two snapshots."""
        return changes(before, after, self.root, user.ids if user else (0, 0))


@dataclass(frozen=True)
class Bind:
    """A host path mounted at `target` for one step (a cache folder, a bind mount's files),
    or, with no host path, an empty tmpfs."""

    host: Path | None
    target: str
    readonly: bool = False


def run_in_sandbox(bwrap: str, root: Path, step: RunStep, env: dict[str, str], workdir: str,
         program: tuple[str, ...] | None, binds: list[Bind],
         user: RunAs | None = None) -> None:
    make_workdir(root, workdir, user.ids if user is not None else (0, 0))
    resolver = ["/etc/resolv.conf"] if step.network and Path("/etc/resolv.conf").exists() \
        else []
    stubs = mount_stubs(root, [*resolver, *(bind.target for bind in binds)])
    try:
        with identity_userns() as userns:
            _run_in_sandbox(bwrap, root, step, env, workdir, program, binds, user, userns)
    finally:
        remove_stubs(stubs)


def mount_stubs(root: Path, targets: list[str]) -> list[Path]:
    """The paths of `targets` and of their folders that `root` lacks: bubblewrap makes them
    as mount points, and `remove_stubs` takes them away after the step, as BuildKit does, so
    no empty mount point reaches the layer (a link on the way: left as it is)."""
    made: list[Path] = []
    for target in targets:
        current = root
        for part in (p for p in target.split("/") if p not in ("", ".")):
            current = current / part
            if current.is_symlink():
                break
            if not current.exists() and current not in made:
                made.append(current)
    return made


def remove_stubs(stubs: list[Path]) -> None:
    """Remove the mount points bubblewrap made, deepest first, if still empty (a step may
    have written beside a mount, in a folder made for it: that folder stays)."""
    for path in sorted(stubs, key=lambda p: len(p.parts), reverse=True):
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(info.st_mode) and not any(path.iterdir()):
            path.rmdir()
        elif stat.S_ISREG(info.st_mode) and info.st_size == 0:
            path.unlink()


def make_workdir(root: Path, workdir: str, owner: tuple[int, int]) -> None:
    """The folders of a step's workdir that do not exist yet, made 0755 and owned by the
    user the step runs as (root by default), as BuildKit makes a WORKDIR written after USER
    (so `USER app`, `WORKDIR /home/app/public`, `RUN touch file` works). Existing folders
    stay as they are; at a link on the way, the rest is left to bubblewrap's --dir (as
    root), which resolves it within the image. Without root, the folders are corral's,
    which the sandbox maps to the step's user."""
    current = root
    for part in (p for p in workdir.split("/") if p not in ("", ".")):
        current = current / part
        if part == ".." or current.is_symlink() or (current.exists() and
                                                     not current.is_dir()):
            return
        if not current.exists():
            current.mkdir()
            current.chmod(0o755)
            if os.geteuid() == 0:
                os.chown(current, *owner)


def _run_in_sandbox(bwrap: str, root: Path, step: RunStep, env: dict[str, str], workdir: str,
                    program: tuple[str, ...] | None, binds: list[Bind],
                    user: RunAs | None, userns: int | None) -> None:
    # The image's own /tmp, as Docker runs a step: what one step writes there (or a COPY
    # put there) is in its layer and seen by the next. An image without one gets a private
    # tmpfs (1777, so a step run as a user may write there too), never part of a layer.
    tmp = [] if (root / "tmp").is_dir() and not (root / "tmp").is_symlink() else [
        "--perms", "1777", "--tmpfs", "/tmp"]
    argv = [bwrap, "--bind", str(root), "/", "--dev", "/dev", "--proc", "/proc", *tmp,
            "--die-with-parent", "--new-session",
            "--clearenv", *namespace_args(userns, step.network, user)]
    for bind in binds:
        if bind.host is None:
            argv += ["--tmpfs", bind.target]
        else:
            argv += ["--ro-bind" if bind.readonly else "--bind", str(bind.host), bind.target]
    if step.network and Path("/etc/resolv.conf").exists():
        argv += ["--ro-bind", "/etc/resolv.conf", "/etc/resolv.conf"]
    for key, value in {**BUILD_ENV, "SOURCE_DATE_EPOCH": str(source_date_epoch()),
                       **env}.items():
        argv += ["--setenv", key, value]
    # --dir creates the workdir inside the sandbox, so symlinks resolve within the image.
    switch, command = as_user(program or ("/bin/sh", "-c", step.command), user, root,
                              env.get("HOME") or None)  # an empty one: as unset
    argv += [*switch, "--dir", workdir, "--chdir", workdir, *command]
    if program is None and not (root / "bin" / "sh").exists() and \
            not (root / "bin").is_symlink():
        raise ImageError(f"run {step.command!r}: the image has no /bin/sh",
                         hint="run steps need a shell: use a debian base")
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL, check=False,
                          pass_fds=() if userns is None else (userns,))
    if done.returncode != 0:
        tail = "\n".join(done.stdout.decode(errors="replace").splitlines()[-10:])
        raise ImageError(
            f"run {step.command!r} failed with exit {done.returncode}:\n{tail}",
            hint="it runs with /bin/sh -c in the image root; the network is off unless the "
            "step says network = true")


def snapshot(root: Path) -> dict[str, PathStat]:
    """Metadata of every path under `root`, by name relative to it."""
    found: dict[str, PathStat] = {}
    pending = [("", root)]
    while pending:
        prefix, folder = pending.pop()
        with os.scandir(folder) as scan:
            for child in scan:
                info = child.stat(follow_symlinks=False)
                rel = prefix + child.name
                kind = _kind(info.st_mode)
                link = os.readlink(child.path) if kind == "symlink" else ""
                found[rel] = PathStat(kind, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid,
                                   info.st_size, info.st_mtime_ns, info.st_ino, link)
                if kind == "dir":
                    pending.append((rel + "/", Path(child.path)))
    return found


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "file" if stat.S_ISREG(mode) else "other"


def changes(before: dict[str, PathStat], after: dict[str, PathStat], root: Path,
            ids: tuple[int, int] = (0, 0)) -> list[Entry]:
    """Entries for what differs between two snapshots: new and changed paths, and a whiteout
    for each topmost deleted path. `ids`: who the step ran as (what our own uid stands for
    when bubblewrap mapped it)."""
    entries = []
    for rel, now in after.items():
        old = before.get(rel)
        if old == now or (old is None and rel in MOUNTPOINTS) or now.kind == "other":
            continue
        if now.kind == "dir" and old is not None and old.kind == "dir" and \
                (old.mode, old.uid, old.gid) == (now.mode, now.uid, now.gid):
            continue  # only its contents changed; they have entries of their own
        uid, gid = _owner(now.uid, ids[0]), _owner(now.gid, ids[1])
        if now.kind == "file":
            entries.append(Entry(rel, "file", now.mode, uid, gid, source=root / rel,
                                 size=now.size))
        else:
            kind: Kind = "dir" if now.kind == "dir" else "symlink"
            entries.append(Entry(rel, kind, now.mode, uid, gid, linkname=now.link))
    for rel in before:
        parent = posixpath.dirname(rel)
        if rel not in after and (not parent or parent in after):
            entries.append(Entry(posixpath.join(parent, ".wh." + posixpath.basename(rel)),
                                 "file", 0o644))
    return entries


def _owner(number: int, inside: int) -> int:
    # Without root, the sandbox maps our uid to the step's (0 unless USER): what it wrote
    # as that user is ours on disk.
    return inside if os.geteuid() != 0 and number == os.getuid() else number
