"""`USER name` resolved to `uid:gid` from the image's own /etc/passwd and /etc/group.

Docker resolves a user name when a container starts; corral resolves it once, at build time,
so every driver runs the same numeric ids and a missing user fails the build, not a deploy.
Reads the files from the image's layers (top layer first); writes nothing.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from pathlib import Path

from corral.errors import ImageError

_WANTED = ("etc/passwd", "etc/group")


def resolve_user(user: str, layers: Sequence[Path]) -> str:
    """`name[:group]` as `uid:gid`; numeric parts stay as they are.

    >>> resolve_user("1000:1000", [])
    '1000:1000'
    """
    name, has_group, group = user.partition(":")
    if name.isdigit() and (not has_group or group.isdigit()):
        return user
    files = _files_of(layers)
    users = _table(files.get("etc/passwd", ""), 4)
    if name.isdigit():
        uid, primary = name, name
    elif name in users:
        uid, primary = users[name][2], users[name][3]  # name:password:uid:gid:…
    else:
        raise ImageError(f"USER {user}: the image's /etc/passwd has no user {name!r}",
                         hint="create it in a RUN step (useradd, adduser) before USER, or "
                         "use a numeric uid")
    if not has_group:
        return f"{uid}:{primary}"
    if group.isdigit():
        return f"{uid}:{group}"
    groups = _table(files.get("etc/group", ""), 3)
    if group not in groups:
        raise ImageError(f"USER {user}: the image's /etc/group has no group {group!r}",
                         hint="create it in a RUN step (groupadd), or use a numeric gid")
    return f"{uid}:{groups[group][2]}"  # name:password:gid:members


def _table(text: str, fields: int) -> dict[str, list[str]]:
    rows = (line.split(":") for line in text.splitlines() if line and not line.startswith("#"))
    return {row[0]: row for row in rows if len(row) >= fields}


def _files_of(layers: Sequence[Path]) -> dict[str, str]:
    """The newest content of /etc/passwd and /etc/group across `layers` (a whiteout hides
    an older copy)."""
    found: dict[str, str] = {}
    gone: set[str] = set()
    for path in reversed(layers):
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                hidden = name.replace(".wh.", "", 1)
                if name != hidden and hidden in _WANTED:
                    gone.add(hidden)
                if name in _WANTED and name not in found and name not in gone \
                        and member.isfile():
                    data = tar.extractfile(member)
                    found[name] = data.read().decode(errors="replace") if data else ""
        gone |= set(found)
        if len(found) == len(_WANTED):
            break
    return found
