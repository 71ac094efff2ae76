"""User and group names (USER, RUN after USER, COPY --chown) resolved to `uid:gid` from the
image's own /etc/passwd and /etc/group.

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
    if name.isdigit():
        uid, primary = name, name
    else:
        row = _row(files, "passwd", name, f"USER {user}")
        uid, primary = row[2], row[3]  # name:password:uid:gid:…
    if not has_group:
        return f"{uid}:{primary}"
    return f"{uid}:{_gid(files, group, f'USER {user}')}"


def resolve_chown(owner: str, layers: Sequence[Path]) -> str:
    """COPY --chown=`name[:group]` as `uid:gid`. Without a group the gid is the uid, as
    Docker documents it (not the user's primary group, unlike USER).

    >>> resolve_chown("1000", []), resolve_chown("10:20", [])
    ('1000:1000', '10:20')
    """
    name, has_group, group = owner.partition(":")
    if name.isdigit() and (not has_group or group.isdigit()):
        return f"{name}:{group if has_group else name}"
    files = _files_of(layers)
    what = f"--chown={owner}"
    uid = name if name.isdigit() else _row(files, "passwd", name, what)[2]
    return f"{uid}:{_gid(files, group, what) if has_group else uid}"


def _gid(files: dict[str, str], group: str, what: str) -> str:
    return group if group.isdigit() else _row(files, "group", group, what)[2]


_HINTS = {"passwd": "create it in a RUN step (useradd, adduser) before this line, or use a "
                    "numeric uid",
          "group": "create it in a RUN step (groupadd) before this line, or use a numeric gid"}


def _row(files: dict[str, str], table: str, name: str, what: str) -> list[str]:
    """The /etc/passwd or /etc/group row of `name`; an ImageError naming `what` without."""
    rows = _table(files.get(f"etc/{table}", ""), 4 if table == "passwd" else 3)
    if name not in rows:
        kind = "user" if table == "passwd" else "group"
        raise ImageError(f"{what}: the image's /etc/{table} has no {kind} {name!r}",
                         hint=_HINTS[table])
    return rows[name]


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
