"""The backup file: a gzip'd tar whose first member, corral-backup.json (the manifest),
lists every other member with its size and sha256. Writing one atomically, and reading one
back only whole: a truncated, altered, extended or foreign file is refused with BackupError.
It must not know what the members mean (backup.py does).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.errors import BackupError

MANIFEST = "corral-backup.json"
FORMAT = 1
_HINT_DAMAGED = ("the file is damaged or was changed after it was written: take a new "
                 "backup (`corral backup`) or use an older one")


@dataclass(frozen=True)
class Archive:
    """A backup file read back whole, every member checked against the manifest."""

    manifest: dict[str, Any]
    members: dict[str, bytes]


def sha256_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_archive(path: Path, manifest: dict[str, Any], members: dict[str, bytes]) -> str:
    """Write the archive at `path` (via a temporary file and a rename: a crash leaves no
    half backup under the final name); return the file's sha256."""
    listed = {**manifest, "format": FORMAT,
              "members": {name: {"size": len(data), "sha256": sha256_of(data)}
                          for name, data in sorted(members.items())}}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("wb") as file:
        with tarfile.open(fileobj=file, mode="w:gz") as tar:
            _add(tar, MANIFEST, json.dumps(listed, indent=2, sort_keys=True).encode())
            for name, data in sorted(members.items()):
                _add(tar, name, data)
        file.flush()
        os.fsync(file.fileno())
    os.chmod(partial, 0o600)  # the ledger, logs and state are nobody else's to read
    partial.rename(path)
    return sha256_of(path.read_bytes())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def read_archive(path: Path) -> Archive:
    """The archive at `path`, refused (BackupError) unless every member is whole and listed."""
    members = _read_members(path)
    manifest = _manifest(path, members.pop(MANIFEST, None))
    listed: dict[str, Any] = manifest.get("members") or {}
    for name, entry in listed.items():
        data = members.get(name)
        if data is None:
            raise BackupError(f"backup {path}: member {name} is listed but missing",
                              hint=_HINT_DAMAGED)
        if len(data) != entry.get("size") or sha256_of(data) != entry.get("sha256"):
            raise BackupError(f"backup {path}: member {name} does not match its sha256 in "
                              "the manifest (altered)", hint=_HINT_DAMAGED)
    extra = sorted(set(members) - set(listed))
    if extra:
        raise BackupError(f"backup {path}: {', '.join(extra)} not listed in the manifest "
                          "(added after the backup was written)", hint=_HINT_DAMAGED)
    return Archive(manifest, members)


def _read_members(path: Path) -> dict[str, bytes]:
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            members: dict[str, bytes] = {}
            for info in tar:
                if not info.isfile() or info.name in members:
                    raise BackupError(f"backup {path}: unexpected entry {info.name!r}",
                                      hint=_HINT_DAMAGED)
                extracted = tar.extractfile(info)
                members[info.name] = extracted.read() if extracted else b""
            return members
    except FileNotFoundError:
        raise BackupError(f"backup {path} does not exist",
                          hint="name a file written by `corral backup`") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise BackupError(f"backup {path} is truncated or is not a corral backup: {exc}",
                          hint=_HINT_DAMAGED) from None


def _manifest(path: Path, data: bytes | None) -> dict[str, Any]:
    if data is None:
        raise BackupError(f"backup {path} has no {MANIFEST}: it is not a corral backup",
                          hint="name a file written by `corral backup`")
    try:
        manifest = json.loads(data)
    except ValueError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"backup {path}: {MANIFEST} is unreadable or of an unknown format",
                          hint="restore it with the corral version that wrote it")
    return manifest
