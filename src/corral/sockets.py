"""Unix socket paths that fit, wherever the project folder is.

A unix socket's path must fit in `sun_path`: 107 bytes, and HAProxy's stats socket only 97
(it binds `PATH.PID.tmp` first). A project in a deep folder (`/home/…/src/github.com/team/
service/.corral/run/haproxy.sock`) passes that easily, so a socket in the run folder would
fail to bind there. `fitting(path)` keeps `path` when it fits; otherwise it names the same
file through a short symlink to its folder (`/tmp/corral-UID/HASH/NAME`, or under
`$XDG_RUNTIME_DIR`). The socket file itself stays in the run folder, and every process that
computes the path from the same folder gets the same short name, so a client finds the
server without any record of where it went.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

SUN_PATH_MAX = 107  # sun_path holds 108 bytes with the NUL
HAPROXY_SOCKET_MAX = 97  # HAProxy refuses a longer `stats socket` path


def fitting(path: Path, limit: int = SUN_PATH_MAX) -> Path:
    """`path`, or a short name for the same file when `path` is longer than `limit` bytes.

    >>> fitting(Path("/srv/app/.corral/run/router.sock"))
    PosixPath('/srv/app/.corral/run/router.sock')
    """
    if len(os.fsencode(path)) <= limit:
        return path
    folder = path.parent.resolve()
    link = _short_dir() / hashlib.sha256(os.fsencode(folder)).hexdigest()[:16]
    _point(link, folder)
    return link / path.name


def _short_dir() -> Path:
    """A folder only this user can write, for the symlinks (checked: /tmp is shared)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    base = Path(runtime) / "corral" if runtime else \
        Path(tempfile.gettempdir()) / f"corral-{os.getuid()}"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = base.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        raise OSError(f"{base} is not a folder private to uid {os.getuid()}: refusing to "
                      "put socket links there")
    return base


def _point(link: Path, folder: Path) -> None:
    """Make `link` a symlink to `folder`, replacing a stale one atomically."""
    try:
        if Path(os.readlink(link)) == folder:
            return
    except OSError:
        pass
    partial = link.with_name(f".{link.name}-{os.getpid()}")
    partial.unlink(missing_ok=True)
    partial.symlink_to(folder)
    os.replace(partial, link)
