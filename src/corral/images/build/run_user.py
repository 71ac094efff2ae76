"""Who a run step runs as, and the bubblewrap arguments that make it so.

As root, a step runs in a user namespace that maps every id to itself: the step is root
there (so `useradd -m`, `chown` and apt's own privilege drop work, as in Docker), yet its
capabilities reach nothing outside the sandbox. bubblewrap maps only one id when it makes
a user namespace, so corral makes this one itself and hands it over (`--userns FD`).

A step after `USER app` runs as that user's uid and gid (resolved from the image's
/etc/passwd below the step): bubblewrap sets up the sandbox as root, then gosu, a static
setuid-setgid-exec helper bound into the sandbox's /dev, switches to the user and execs
the command, with the user's supplementary groups and HOME from the image's own files.
Files the step writes are that user's, in the sandbox and in the layer.

Without root, bubblewrap's own user namespace maps the caller to the step's ids instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from corral.errors import ImageError
from corral.images.build.passwd import resolve_user

# Where gosu is bound inside the sandbox: /dev is bubblewrap's tmpfs, so nothing of it
# reaches the image root or the layer.
SWITCH_USER = "/dev/.corral-gosu"
_ALL_IDS = 4294967295  # 0 … 2^32-2, the whole id range: every file keeps its owner


@dataclass(frozen=True)
class RunAs:
    """The user a run step runs as."""

    uid: int
    gid: int
    # What gosu is given: the uid alone when USER named no group (gosu then takes the
    # primary and supplementary groups from the image's files, as Docker does), else uid:gid.
    spec: str

    @property
    def ids(self) -> tuple[int, int]:
        return self.uid, self.gid


def run_as(user: str, layers: Sequence[Path]) -> RunAs:
    """USER `user` (name or number, with or without a group) in the image whose layers
    are `layers`; an unknown name is an ImageError with a hint."""
    resolved = resolve_user(user, layers)  # "uid:gid", or a lone numeric uid as written
    uid, _, gid = resolved.partition(":")
    return RunAs(int(uid), int(gid or 0), resolved if ":" in user else uid)


def namespace_args(userns: int | None, network: bool, user: RunAs | None) -> list[str]:
    """bubblewrap's namespace flags: the identity user namespace `userns` when there is one
    (corral is root); as root without one, no user namespace at all (what bubblewrap's
    `--unshare-all` does then); not root, bubblewrap's own one mapping the caller to `user`
    (root by default)."""
    if userns is not None:
        flags = ["--userns", str(userns), "--unshare-ipc", "--unshare-pid", "--unshare-uts",
                 "--unshare-cgroup-try"]
        return flags if network else [*flags, "--unshare-net"]
    flags = ["--unshare-all"]
    if os.geteuid() != 0:
        uid, gid = user.ids if user else (0, 0)
        flags += ["--unshare-user", "--uid", str(uid), "--gid", str(gid)]
    return [*flags, "--share-net"] if network else flags


def as_user(command: tuple[str, ...], user: RunAs | None, root: Path,
            home: str | None = None) -> tuple[list[str], tuple[str, ...]]:
    """(bubblewrap arguments, the program) that run `command` as `user`: through gosu when
    corral is root; unchanged otherwise (root, or bubblewrap mapped the ids already).
    gosu sets HOME from the user's passwd entry; a HOME the step's environment has (an
    `ENV HOME`, or the base's) is kept, as Docker keeps it, through the image's `env`."""
    if user is None or user.ids == (0, 0) or os.geteuid() != 0:
        return [], command
    gosu = shutil.which("gosu") or shutil.which("gosu", path="/usr/sbin:/usr/bin")
    if gosu is None:
        raise ImageError("RUN after a non-root USER needs gosu to switch to that user, and "
                         "it is not installed", hint="apt-get install gosu")
    env = next((f"/{p}" for p in ("usr/bin/env", "bin/env") if (root / p).exists()), None)
    keep = (env, f"HOME={home}") if home is not None and env is not None else ()
    return ["--ro-bind", gosu, SWITCH_USER], (SWITCH_USER, user.spec, *keep, *command)


@contextlib.contextmanager
def identity_userns() -> Iterator[int | None]:
    """A file descriptor of a new user namespace mapping every uid and gid to itself, held
    open for one step; None when corral is not root (only root may write such a map) or
    the kernel will not make one (the step then runs as before: no user namespace)."""
    fd = _open_identity_userns() if os.geteuid() == 0 else None
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _open_identity_userns() -> int | None:
    # A short-lived process makes the namespace (unshare) and waits; once its maps are
    # written and the namespace is open here, it may go: the descriptor keeps it alive.
    try:
        holder = subprocess.Popen(["unshare", "--user", "--", "/bin/sh", "-c", "echo; read _"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return None  # no util-linux: bubblewrap's own namespaces only
    assert holder.stdin is not None and holder.stdout is not None
    try:
        if not holder.stdout.readline():
            return None  # user namespaces are off (user.max_user_namespaces = 0)
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{holder.pid}/{name}").write_text(f"0 0 {_ALL_IDS}\n")
        return os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY)
    except OSError:
        return None
    finally:
        holder.stdin.close()
        holder.wait()
        holder.stdout.close()
